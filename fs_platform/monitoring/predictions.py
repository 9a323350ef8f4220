"""Model scores for prediction drift: the promoted model on recent examples and on its test days."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import psycopg2.extensions

from fs_platform.model import registry as model_registry
from fs_platform.retrieval import training_set

#: columns of the score frame besides ``score``: the inputs that explain a moved score
EXPLAIN = ("device_type", "user_category_affinity", "price_gap")


def load_model(model: model_registry.RegisteredModel | None = None) -> model_registry.RegisteredModel:
    """The given model, else the promoted one (a clear error when nothing is promoted yet)."""
    if model is not None:
        return model
    current = model_registry.load_current()
    if current is None:
        raise FileNotFoundError(
            f"no promoted model under {model_registry.registry_dir()}: materialize ctr_model first"
        )
    return current


def _scored(model: model_registry.RegisteredModel, frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[list(EXPLAIN)].copy()
    out["score"] = model.predict(frame) if len(frame) else []
    return out[["score", *EXPLAIN]]


def reference_scores(model: model_registry.RegisteredModel) -> pd.DataFrame:
    """Scores on the test split of the training set the model was trained on."""
    frame = training_set.load(Path(model.metadata["training_set_path"]))
    return _scored(model, frame[frame["split"] == "test"])


def current_scores(
    conn: psycopg2.extensions.connection, model: model_registry.RegisteredModel, first: date, last: date
) -> pd.DataFrame:
    """Scores on the point-in-time examples of ``first..last`` (built exactly like training examples)."""
    # the config needs room for a train/validation/test split; only first..last is kept
    config = training_set.TrainingSetConfig(
        start=first - timedelta(days=2), end=last, validation_days=1, test_days=1
    )
    examples = training_set.query_examples(conn, config)
    conn.rollback()
    keep = (examples["example_date"] >= first.isoformat()) & (examples["example_date"] <= last.isoformat())
    return _scored(model, examples[keep.to_numpy()])
