"""Online retrieval: any feature references (or a feature service) for any entity rows.

What the generic route and ``score`` both call. Each view needed (the references' own views and
the inputs of the on-demand features asked for) is read once, from one snapshot, for the distinct
keys of its entity; on-demand features are then computed by the same registered functions
historical retrieval uses, on the same column layout (``view:feature``), so a cross feature
served online is the one a model was trained on by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fs_platform.features.registry import ON_DEMAND, Registry
from fs_platform.online.store import FeatureBatch, OnlineStore, canonical_id
from fs_platform.retrieval.historical import plan_retrieval


class OnlineRequestError(ValueError):
    """The request cannot be answered as asked (the message says why; the API answers 422)."""


@dataclass(frozen=True)
class OnlineFeatures:
    """Columns of feature values, one entry per entity row, and the snapshot each view came from."""

    refs: list[str]
    rows: int
    values: dict[str, list[Any]]  # ref -> one value per row (None: unknown entity or null feature)
    found: dict[str, list[bool]]  # view -> whether the view's snapshot knows the row's entity
    batches: dict[str, FeatureBatch]  # view -> the read (snapshot, stale flag)


def get_online_features(
    store: OnlineStore,
    registry: Registry,
    features: str | Sequence[str],
    entities: Mapping[str, Sequence[str]],
) -> OnlineFeatures:
    """``features`` (references and/or service names) for the rows of ``entities`` (join key ->
    one id per row; every key the views need, all of the same length)."""
    try:
        plan = plan_retrieval(registry, features)  # the same expansion historical retrieval uses
    except ValueError as exc:
        raise OnlineRequestError(str(exc)) from exc
    refs = plan.requested
    on_demand = [registry.on_demand[name] for name in plan.on_demand]
    lengths = {key: len(ids) for key, ids in entities.items()}
    if len(set(lengths.values())) > 1:
        raise OnlineRequestError(f"entity columns differ in length: {lengths}")
    rows = next(iter(lengths.values()), 0)

    columns: dict[str, list[Any]] = {}
    found: dict[str, list[bool]] = {}
    batches: dict[str, FeatureBatch] = {}
    for view_name, names in plan.views.items():
        try:
            view = store.view(view_name)
        except ValueError as exc:
            raise OnlineRequestError(str(exc)) from exc
        if view.id_name not in entities:
            raise OnlineRequestError(
                f"feature view {view_name} needs the entity key {view.id_name!r} (got {sorted(entities)})"
            )
        try:
            keys = [canonical_id(i) for i in entities[view.id_name]]
        except ValueError as exc:
            raise OnlineRequestError(f"{view.id_name}: not a valid UUID ({exc})") from exc
        batch = store.get_many(view, keys)
        batches[view_name] = batch
        read = [batch.rows[k] for k in keys]
        found[view_name] = [r is not None for r in read]
        for name in names:
            columns[f"{view_name}:{name}"] = [None if r is None else r[name] for r in read]

    for fn in on_demand:
        frame = pd.DataFrame({ref: pd.Series(columns[ref], dtype=object) for ref in fn.inputs})
        computed = fn.compute(frame).to_numpy()
        columns[f"{ON_DEMAND}:{fn.name}"] = [None if np.isnan(v) else float(v) for v in computed]
    return OnlineFeatures(refs, rows, {ref: columns[ref] for ref in refs}, found, batches)
