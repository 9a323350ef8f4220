"""The feature registry: entities, feature views, feature services and on-demand features.

Everything is declared beside the SQL (docs/feature_views.md):

- entities once, in ``dbt_project.yml`` (``vars.entities``: name -> join key);
- a feature view is a dbt model whose ``meta.feature_view`` names its entity, timestamp column,
  TTL and whether it is served online; its feature columns carry ``meta.feature`` (type,
  validation, null policy, default) and their yml description;
- a feature service is a dbt exposure (``type: ml``) whose ``meta.feature_service.features`` lists
  feature references (``view:feature``, ``on_demand:name``);
- on-demand features are the Python functions of ``fs_platform.features.on_demand``.

Loading reads the dbt manifest and checks every declaration; a mistake fails with a message that
names the model (or exposure) and the column.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from fs_platform.infra.dbt import DBT_PROJECT_DIR, ensure_manifest

FEATURE_TYPES = ("numeric", "categorical", "boolean", "map")
#: what feature drift judges of a map feature: its top key, that key's value and its number of keys
MAP_DRIFT_PARTS = ("top", "top_share", "keys")
NULL_POLICIES = ("allow", "reject", "default")
ON_DEMAND = "on_demand"


class RegistryError(ValueError):
    """A feature declaration is invalid (the message names the model and the column)."""


@dataclass(frozen=True)
class Entity:
    name: str
    join_key: str
    description: str = ""


@dataclass(frozen=True)
class Feature:
    """One feature column of a view, with its declared rules."""

    view: str
    name: str
    type: str
    description: str = ""
    data_type: str | None = None
    min: float | None = None
    max: float | None = None
    max_inclusive: bool = True
    allowed_values: tuple[Any, ...] | None = None
    null_policy: str = "allow"
    default: Any = None
    #: a map feature's values add up to this (shares); None: no rule on the sum
    sums_to: float | None = None
    #: drift thresholds (docs/monitoring.md): {threshold, method?}; for a map {top, top_share, keys}
    drift: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.name}"

    @property
    def rule(self) -> str:
        """The validation rule in words (`fs-platform features list`)."""
        parts = []
        if self.min is not None or self.max is not None:
            low = "-inf" if self.min is None else f"{self.min:g}"
            high = "inf" if self.max is None else f"{self.max:g}"
            close = "]" if self.max_inclusive and self.max is not None else ")"
            parts.append(f"{'values ' if self.type == 'map' else ''}[{low}, {high}{close}")
        if self.allowed_values is not None:
            parts.append("in {" + ", ".join(map(str, self.allowed_values)) + "}")
        if self.sums_to is not None:
            parts.append(f"sum {self.sums_to:g}")
        parts.append(
            f"null: {self.null_policy}" + (f" -> {self.default}" if self.null_policy == "default" else "")
        )
        return "; ".join(parts)

    def accepts(self, value: Any) -> bool:
        """Whether one non-null value satisfies the declared range and allowed values."""
        values = value.values() if self.type == "map" and isinstance(value, dict) else (value,)
        for v in values:
            if self.allowed_values is not None and v not in self.allowed_values:
                return False
            if self.min is not None or self.max is not None:
                if not isinstance(v, int | float) or isinstance(v, bool) or math.isnan(v):
                    return False
                if self.min is not None and v < self.min:
                    return False
                if self.max is not None and (v > self.max or (not self.max_inclusive and v >= self.max)):
                    return False
        return True


@dataclass(frozen=True)
class FeatureView:
    """A dbt model of feature rows keyed by (entity key, timestamp)."""

    name: str
    model: str
    schema: str
    entity: Entity
    timestamp: str
    ttl: timedelta
    online: bool
    online_model: str | None
    #: (schema, table) of the model the online store publishes (the latest partition), if online
    online_relation: tuple[str, str] | None
    #: the model's dbt materialization (a ``view`` is computed on every read)
    materialized: str
    owner: str
    tags: tuple[str, ...]
    description: str
    features: tuple[Feature, ...]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise RegistryError(f"feature view {self.name} has no feature {name!r} (it has {self.feature_names})")

    @property
    def relation(self) -> tuple[str, str]:
        """(schema, table) of the view's offline rows."""
        return self.schema, self.model

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


@dataclass(frozen=True)
class FeatureService:
    """A named list of feature references a model is trained and served on."""

    name: str
    features: tuple[str, ...]
    description: str = ""
    owner: str = ""


@dataclass
class Registry:
    entities: dict[str, Entity]
    views: dict[str, FeatureView]
    services: dict[str, FeatureService]
    on_demand: dict[str, Any] = field(default_factory=dict)

    def view(self, name: str) -> FeatureView:
        try:
            return self.views[name]
        except KeyError:
            raise RegistryError(f"no feature view {name!r} (views: {sorted(self.views)})") from None

    def online_views(self) -> list[FeatureView]:
        return [v for v in self.views.values() if v.online]

    def expand(self, refs: str | Sequence[str]) -> list[str]:
        """Feature references of a service name or a list of references (services expand in place),
        checked to exist; order kept, duplicates dropped."""
        items = [refs] if isinstance(refs, str) else list(refs)
        out: list[str] = []
        for item in items:
            if item in self.services:
                out.extend(self.services[item].features)
            else:
                out.append(item)
        for ref in out:
            self.check_ref(ref, "request")
        return list(dict.fromkeys(out))

    def check_ref(self, ref: str, where: str) -> None:
        view, sep, name = ref.partition(":")
        if not sep or not name:
            raise RegistryError(f"{where}: feature reference {ref!r} is not 'view:feature' or a service name")
        if view == ON_DEMAND:
            if name not in self.on_demand:
                raise RegistryError(f"{where}: no on-demand feature {name!r} (have {sorted(self.on_demand)})")
            return
        if view not in self.views:
            raise RegistryError(
                f"{where}: feature reference {ref!r} names no feature view (views: {sorted(self.views)})"
            )
        if name not in self.views[view].feature_names:
            raise RegistryError(
                f"{where}: feature view {view} has no feature {name!r} (it has {self.views[view].feature_names})"
            )

    def features(self) -> list[Feature]:
        return [f for v in self.views.values() for f in v.features]


def load_registry(project_dir: Path = DBT_PROJECT_DIR, manifest_path: Path | None = None) -> Registry:
    """The registry of a dbt project (its manifest is parsed first when missing or stale)."""
    from fs_platform.features.on_demand import ON_DEMAND_FEATURES

    project = yaml.safe_load((project_dir / "dbt_project.yml").read_text())
    manifest = json.loads((manifest_path or ensure_manifest(project_dir)).read_text())
    entities = _entities(project)
    views: dict[str, FeatureView] = {}
    models = [node for node in manifest["nodes"].values() if node["resource_type"] == "model"]
    schemas = {node["name"]: node["schema"] for node in models}
    for node in models:
        meta = node.get("config", {}).get("meta") or {}
        if "feature_view" not in meta:
            continue
        view = _view(node, meta, entities, schemas)
        if view.name in views:
            raise RegistryError(
                f"model {node['name']}: feature view name {view.name!r} is already declared by model "
                f"{views[view.name].model}"
            )
        views[view.name] = view
    registry = Registry(entities, views, {}, dict(ON_DEMAND_FEATURES))
    for fn in registry.on_demand.values():
        for ref in fn.inputs:
            registry.check_ref(ref, f"on-demand feature {fn.name}")
    for exposure in manifest.get("exposures", {}).values():
        meta = exposure.get("config", {}).get("meta") or exposure.get("meta") or {}
        declared = meta.get("feature_service")
        if declared is None:
            continue
        name = exposure["name"]
        refs = declared.get("features") or []
        if not refs:
            raise RegistryError(f"exposure {name}: feature_service lists no features")
        if len(set(refs)) != len(refs):
            dupes = sorted({r for r in refs if refs.count(r) > 1})
            raise RegistryError(f"exposure {name}: feature_service lists {dupes} more than once")
        for ref in refs:
            registry.check_ref(ref, f"exposure {name}")
        if name in views:
            raise RegistryError(f"exposure {name}: a feature service may not share a feature view's name")
        owner = (exposure.get("owner") or {}).get("name") or ""
        registry.services[name] = FeatureService(name, tuple(refs), exposure.get("description", ""), owner)
    return registry


def _entities(project: dict) -> dict[str, Entity]:
    declared = (project.get("vars") or {}).get("entities")
    if not isinstance(declared, dict) or not declared:
        raise RegistryError("dbt_project.yml: vars.entities declares no entity (name: {join_key: ...})")
    out = {}
    for name, spec in declared.items():
        if not isinstance(spec, dict) or not spec.get("join_key"):
            raise RegistryError(f"dbt_project.yml: entity {name!r} needs a join_key")
        out[name] = Entity(name, spec["join_key"], spec.get("description", ""))
    keys = [e.join_key for e in out.values()]
    if len(set(keys)) != len(keys):
        raise RegistryError(f"dbt_project.yml: two entities share a join key ({keys})")
    return out


def _view(node: dict, meta: dict, entities: dict[str, Entity], schemas: dict[str, str]) -> FeatureView:
    model = node["name"]
    spec = meta["feature_view"] or {}
    if not isinstance(spec, dict):
        raise RegistryError(f"model {model}: meta.feature_view must be a mapping")
    entity_name = spec.get("entity")
    if entity_name not in entities:
        raise RegistryError(f"model {model}: unknown entity {entity_name!r} (declared: {sorted(entities)})")
    entity = entities[entity_name]
    columns = node.get("columns") or {}
    timestamp = spec.get("timestamp", "as_of")
    for needed, what in ((entity.join_key, "entity key"), (timestamp, "timestamp")):
        if needed not in columns:
            raise RegistryError(f"model {model}: the {what} column {needed!r} is not declared in its yml")
    ttl_days = spec.get("ttl_days", 7)
    if not isinstance(ttl_days, int | float) or ttl_days <= 0:
        raise RegistryError(f"model {model}: ttl_days must be a positive number, got {ttl_days!r}")
    name = spec.get("name") or model
    features = []
    for column in columns.values():
        column_meta = column.get("meta") or column.get("config", {}).get("meta") or {}
        if "feature" not in column_meta:
            continue
        features.append(_feature(name, model, column, column_meta["feature"] or {}))
    if not features:
        raise RegistryError(f"model {model}: feature view {name} declares no feature column (meta.feature)")
    online = bool(spec.get("online", False))
    online_model = spec.get("online_model") or (model if online else None)
    if online_model is not None and online_model not in schemas:
        raise RegistryError(f"model {model}: online_model {online_model!r} is not a model of the project")
    return FeatureView(
        name=name,
        model=model,
        schema=node["schema"],
        entity=entity,
        timestamp=timestamp,
        ttl=timedelta(days=ttl_days),
        online=online,
        online_model=online_model,
        online_relation=(schemas[online_model], online_model) if online and online_model else None,
        materialized=node.get("config", {}).get("materialized", "view"),
        owner=meta.get("owner", ""),
        tags=tuple(meta.get("tags") or ()),
        description=" ".join((node.get("description") or "").split()),
        features=tuple(features),
    )


def _feature(view: str, model: str, column: dict, spec: dict) -> Feature:
    where = f"model {model}, column {column['name']}"
    kind = spec.get("type")
    if kind not in FEATURE_TYPES:
        raise RegistryError(f"{where}: feature type {kind!r} is not one of {FEATURE_TYPES}")
    policy = spec.get("null_policy", "allow")
    if policy not in NULL_POLICIES:
        raise RegistryError(f"{where}: null_policy {policy!r} is not one of {NULL_POLICIES}")
    low, high = spec.get("min"), spec.get("max")
    for bound in (low, high):
        if bound is not None and (not isinstance(bound, int | float) or isinstance(bound, bool)):
            raise RegistryError(f"{where}: min/max must be numbers, got {bound!r}")
    if (low is not None or high is not None) and kind not in ("numeric", "map"):
        raise RegistryError(f"{where}: min/max apply to numeric and map features, not {kind}")
    if low is not None and high is not None and low > high:
        raise RegistryError(f"{where}: min {low} is above max {high}")
    allowed = spec.get("allowed_values")
    sums_to = spec.get("sums_to")
    if sums_to is not None and (
        kind != "map" or not isinstance(sums_to, int | float) or isinstance(sums_to, bool)
    ):
        raise RegistryError(f"{where}: sums_to must be a number on a map feature, got {sums_to!r} on {kind}")
    drift = spec.get("drift")
    if drift is not None:
        drift_keys = MAP_DRIFT_PARTS if kind == "map" else ("threshold", "method")
        if not isinstance(drift, dict) or not drift or set(drift) - set(drift_keys):
            raise RegistryError(f"{where}: drift must be a mapping of {drift_keys}, got {drift!r}")
        if kind != "map" and "threshold" not in drift:
            raise RegistryError(f"{where}: drift needs a threshold")
    feature = Feature(
        view=view,
        name=column["name"],
        type=kind,
        description=" ".join((column.get("description") or "").split()),
        data_type=column.get("data_type"),
        min=low,
        max=high,
        max_inclusive=bool(spec.get("max_inclusive", True)),
        allowed_values=tuple(allowed) if allowed is not None else None,
        null_policy=policy,
        default=spec.get("default"),
        sums_to=sums_to,
        drift=drift,
    )
    if policy == "default":
        if feature.default is None:
            raise RegistryError(f"{where}: null_policy default needs a default value")
        if not feature.accepts(feature.default):
            raise RegistryError(f"{where}: default {feature.default!r} is outside its rule ({feature.rule})")
    elif "default" in spec:
        raise RegistryError(f"{where}: a default is only used with null_policy: default")
    return feature


def feature_registry(registry: Registry | None = None) -> list[dict]:
    """One entry per feature (views, then on-demand), for `fs-platform features list --json`."""
    registry = registry or load_registry()
    entries = []
    for view in sorted(registry.views.values(), key=lambda v: v.name):
        for f in view.features:
            entries.append(
                {
                    "view": view.name,
                    "model": view.model,
                    "feature": f.name,
                    "entity": view.entity.name,
                    "type": f.type,
                    "data_type": f.data_type,
                    "rule": f.rule,
                    "ttl_days": view.ttl.total_seconds() / 86400,
                    "online": view.online,
                    "owner": view.owner,
                    "tags": list(view.tags),
                    "description": f.description,
                }
            )
    for fn in sorted(registry.on_demand.values(), key=lambda f: f.name):
        entries.append(
            {
                "view": ON_DEMAND,
                "model": None,
                "feature": fn.name,
                "entity": None,
                "type": fn.type,
                "data_type": None,
                "rule": "computed from " + ", ".join(fn.inputs),
                "ttl_days": None,
                "online": True,
                "owner": fn.owner,
                "tags": [],
                "description": fn.description,
            }
        )
    return entries


def format_registry(registry: Registry | None = None) -> str:
    """The registry as the text `fs-platform features list` prints: views, features, services."""
    registry = registry or load_registry()
    lines = []
    for view in sorted(registry.views.values(), key=lambda v: v.name):
        flags = f"entity {view.entity.name} ({view.entity.join_key}), ttl {view.ttl.days} d, " + (
            "online" if view.online else "offline only"
        )
        lines.append(f"{view.name}  [model {view.model}; {flags}; owner {view.owner or '-'}]")
        for f in view.features:
            lines.append(f"  {f.name:22} {f.type:12} {f.rule:34} {f.description}")
        lines.append("")
    if registry.on_demand:
        lines.append("on_demand  [computed at retrieval and serving time from other features]")
        for fn in sorted(registry.on_demand.values(), key=lambda f: f.name):
            lines.append(f"  {fn.name:22} {fn.type:12} {'from ' + ', '.join(fn.inputs):34} {fn.description}")
        lines.append("")
    for service in sorted(registry.services.values(), key=lambda s: s.name):
        lines.append(f"service {service.name}: {', '.join(service.features)}")
    return "\n".join(lines).rstrip() + "\n"


def refs_by_view(refs: Iterable[str]) -> dict[str, list[str]]:
    """Group feature references by view, in first-seen order."""
    grouped: dict[str, list[str]] = {}
    for ref in refs:
        view, _, name = ref.partition(":")
        grouped.setdefault(view, []).append(name)
    return grouped
