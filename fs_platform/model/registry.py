"""A folder-based model registry: ``$FS_HOME/models/<version>/`` plus a ``current`` pointer.

Why a folder: the serving API and the training job only share a file system (or a mounted
volume), and a version folder with the LightGBM text model and a ``metadata.json`` is readable
by both without another service. Promotion rewrites the one-line ``current`` file atomically
(write a temporary file, ``os.replace``), so a reader sees the old or the new version, never
half of one.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from fs_platform.infra.config import get_settings
from fs_platform.model.training import TrainedModel, predict
from fs_platform.retrieval.training_set import FEATURE_SERVICE

MODEL_FILE = "model.txt"
METADATA_FILE = "metadata.json"
CURRENT = "current"


def registry_dir() -> Path:
    return get_settings().model_registry_dir


@dataclass
class RegisteredModel:
    """A model loaded back from the registry: booster plus its metadata."""

    version: str
    path: Path
    booster: lgb.Booster
    metadata: dict

    @property
    def features(self) -> list[str]:
        return list(self.metadata["features"])

    @property
    def feature_service(self) -> str:
        """The feature service the model was trained on (and so is served); older versions did not
        record it and were all trained on the contact training set's."""
        return self.metadata.get("feature_service", FEATURE_SERVICE)

    @property
    def levels(self) -> dict[str, list[str]]:
        return dict(self.metadata["category_levels"])

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return predict(self.booster, frame, self.features, self.levels)


def new_version(data_fingerprint: str) -> str:
    """Sortable by time, traceable to its data, unique even for two trainings in one second."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{data_fingerprint[:8]}-{uuid.uuid4().hex[:4]}"


def save(model: TrainedModel, metadata: dict, root: Path | None = None, version: str | None = None) -> Path:
    """Write model file and metadata into a new version folder (never overwrites a version)."""
    root = root or registry_dir()
    version = version or new_version(metadata.get("data_fingerprint", "nodata"))
    path = root / version
    path.mkdir(parents=True, exist_ok=False)
    model.booster.save_model(str(path / MODEL_FILE), num_iteration=model.best_iteration)
    full = {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_file": MODEL_FILE,
        "features": model.features,
        "category_levels": model.levels,
        "params": {k: v for k, v in model.params.items() if k != "metric"},
        "best_iteration": model.best_iteration,
        "metrics": model.metrics,
        "feature_importance_gain": model.feature_importance,
        **metadata,
    }
    (path / METADATA_FILE).write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
    return path


def load(version: str, root: Path | None = None) -> RegisteredModel:
    root = root or registry_dir()
    path = root / version
    metadata = json.loads((path / METADATA_FILE).read_text())
    booster = lgb.Booster(model_file=str(path / metadata.get("model_file", MODEL_FILE)))
    return RegisteredModel(version=version, path=path, booster=booster, metadata=metadata)


def current_version(root: Path | None = None) -> str | None:
    pointer = (root or registry_dir()) / CURRENT
    if not pointer.exists():
        return None
    return pointer.read_text().strip() or None


def load_current(root: Path | None = None) -> RegisteredModel | None:
    version = current_version(root)
    return load(version, root) if version else None


def promote(version: str, root: Path | None = None) -> None:
    """Point ``current`` at ``version`` atomically."""
    root = root or registry_dir()
    if not (root / version / METADATA_FILE).exists():
        raise FileNotFoundError(f"no model version {version} under {root}")
    tmp = root / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(version + "\n")
    os.replace(tmp, root / CURRENT)
    history = root / "promotions.log"
    with history.open("a") as log:
        log.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} {version}\n")


def versions(root: Path | None = None) -> list[str]:
    root = root or registry_dir()
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if (p / METADATA_FILE).exists())
