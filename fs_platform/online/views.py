"""Which feature views the online store serves, and the shape of their values, from the registry.

Every view declared ``online: true`` (docs/feature_views.md) is published as its own snapshot
(``{prefix}:{view}:snap:{id}``), keyed by the entity's join key, with one JSON array per entity in
the view's declared feature order. Nothing here names a feature: adding an online view in yml
adds a snapshot, a sync asset and an API answer.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from fs_platform.features.registry import FeatureView, Registry, load_registry


@dataclass(frozen=True)
class OnlineView:
    """One served feature view: its Redis name, entity key and value-array order."""

    name: str
    entity: str
    id_name: str
    features: tuple[str, ...]
    #: (schema, table) the sync reads: the view's latest partition
    source: tuple[str, str]
    timestamp: str = "as_of"

    @classmethod
    def of(cls, view: FeatureView) -> OnlineView:
        if view.online_relation is None:
            raise ValueError(f"feature view {view.name} is not online")
        return cls(
            name=view.name,
            entity=view.entity.name,
            id_name=view.entity.join_key,
            features=tuple(view.feature_names),
            source=view.online_relation,
            timestamp=view.timestamp,
        )

    @property
    def source_name(self) -> str:
        return ".".join(self.source)


def online_views(registry: Registry | None = None) -> dict[str, OnlineView]:
    """Every online view of ``registry`` (default: the project's), by name."""
    if registry is None:
        return dict(_project_views())
    return {v.name: OnlineView.of(v) for v in registry.views.values() if v.online}


@functools.cache
def _project_views() -> Mapping[str, OnlineView]:
    return online_views(load_registry())


def entity_view(views: Mapping[str, OnlineView], entity: str) -> OnlineView:
    """The view the per-entity convenience routes serve: the entity's only online view, or the one
    named ``<entity>_features`` when it has several (the generic route serves all of them)."""
    candidates = [v for v in views.values() if v.entity == entity]
    if len(candidates) == 1:
        return candidates[0]
    for view in candidates:
        if view.name == f"{entity}_features":
            return view
    raise LookupError(
        f"entity {entity!r} has {len(candidates)} online views {[v.name for v in candidates]} "
        f"and none is named {entity}_features"
    )
