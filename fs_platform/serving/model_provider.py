"""The promoted model for the scoring route, reloaded as soon as the registry's ``current`` moves.

Why re-read the pointer on every request: promotion is a one-line file replaced atomically
(``model_registry.promote``), reading it costs microseconds, and a new model then serves from the
next request on, without a restart or a polling thread. Loading happens once per version, under a
lock, and a version that fails to load leaves the previous model serving.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import lightgbm as lgb

from fs_platform.model import registry as model_registry
from fs_platform.model.registry import RegisteredModel

log = logging.getLogger(__name__)


class NoModel(Exception):
    """No model has been promoted yet (the API answers 503)."""


class ModelProvider:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._model: RegisteredModel | None = None
        self._lock = threading.Lock()
        self.load_errors = 0

    def current(self) -> RegisteredModel:
        """The promoted model; loads a newly promoted version on first use."""
        version = model_registry.current_version(self.root)
        model = self._model
        if version is not None and (model is None or model.version != version):
            model = self._load(version)
        if model is None:
            raise NoModel(
                f"no model has been promoted in {self.root} yet "
                "(materialize ctr_model; its promotion check sets `current`)"
            )
        return model

    def _load(self, version: str) -> RegisteredModel | None:
        with self._lock:
            if self._model is not None and self._model.version == version:
                return self._model
            try:
                self._model = model_registry.load(version, self.root)
                log.info("serving model %s", version)
            except (
                OSError,
                ValueError,
                KeyError,
                lgb.basic.LightGBMError,
            ) as exc:  # keep serving the previous model
                self.load_errors += 1
                log.error("cannot load promoted model %s, keeping %s: %s", version, self._model, exc)
            return self._model
