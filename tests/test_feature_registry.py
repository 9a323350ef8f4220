"""The feature registry: declarations read from the dbt manifest, and every kind of mistake refused
at load with a message naming the model (or exposure) and the column."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from fs_platform.definitions import defs
from fs_platform.features.registry import RegistryError, load_registry
from fs_platform.infra.dbt import DBT_PROJECT_DIR, dbt_executable, ensure_manifest
from fs_platform.monitoring import quality

USER_VIEW = "model.fs_platform.user_features_history"
LISTING_VIEW = "model.fs_platform.listing_features_history"
SERVICE = "exposure.fs_platform.contact_model"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(ensure_manifest().read_text())


def _load(tmp_path: Path, manifest: dict):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    return load_registry(DBT_PROJECT_DIR, manifest_path=path)


def test_the_project_declares_three_views_three_on_demand_features_and_a_service(manifest, tmp_path):
    registry = _load(tmp_path, manifest)
    assert set(registry.views) == {"user_features", "listing_features", "listing_engagement"}
    users = registry.view("user_features")
    assert (users.model, users.entity.join_key, users.ttl.days, users.online) == (
        "user_features_history",
        "user_id",
        7,
        True,
    )
    activity = users.feature("activity_score")
    assert (activity.min, activity.max, activity.max_inclusive, activity.null_policy) == (
        0,
        1,
        False,
        "reject",
    )
    assert activity.accepts(0.5) and not activity.accepts(1.0) and not activity.accepts(-0.1)
    shares = users.feature("category_affinity")
    assert shares.accepts({"a": 0.2, "b": 0.8}) and not shares.accepts({"a": 1.5})
    assert registry.view("listing_features").feature("image_count").default == 0
    assert registry.view("user_features").online_relation == ("features", "user_features")
    assert set(registry.on_demand) == {"user_category_affinity", "user_city_affinity", "price_gap"}
    service = registry.expand("contact_model")
    assert "on_demand:price_gap" in service and "user_features:price_sensitivity" in service


def _broken(manifest: dict, change) -> dict:
    broken = copy.deepcopy(manifest)
    change(broken)
    return broken


def _column_meta(node: dict, column: str) -> dict:
    return node["columns"][column].setdefault("meta", {})


CASES = {
    "unknown entity": (
        lambda m: m["nodes"][USER_VIEW]["config"]["meta"]["feature_view"].update(entity="buyer"),
        "model user_features_history: unknown entity 'buyer'",
    ),
    "feature without a type": (
        lambda m: _column_meta(m["nodes"][USER_VIEW], "price_sensitivity")["feature"].pop("type"),
        "model user_features_history, column price_sensitivity: feature type None",
    ),
    "default outside its range": (
        lambda m: _column_meta(m["nodes"][LISTING_VIEW], "image_count")["feature"].update(default=-1),
        "model listing_features_history, column image_count: default -1 is outside its rule",
    ),
    "default without the policy": (
        lambda m: _column_meta(m["nodes"][USER_VIEW], "price_sensitivity")["feature"].update(default=0.5),
        "column price_sensitivity: a default is only used with null_policy: default",
    ),
    "min above max": (
        lambda m: _column_meta(m["nodes"][USER_VIEW], "price_sensitivity")["feature"].update(min=2),
        "column price_sensitivity: min 2 is above max 1",
    ),
    "sum rule on a scalar": (
        lambda m: _column_meta(m["nodes"][USER_VIEW], "price_sensitivity")["feature"].update(sums_to=1),
        "column price_sensitivity: sums_to must be a number on a map feature, got 1 on numeric",
    ),
    "drift of an unknown map part": (
        lambda m: _column_meta(m["nodes"][USER_VIEW], "city_affinity")["feature"].update(
            drift={"median": 0.1}
        ),
        "column city_affinity: drift must be a mapping of ('top', 'top_share', 'keys')",
    ),
    "drift without a threshold": (
        lambda m: _column_meta(m["nodes"][USER_VIEW], "price_sensitivity")["feature"].update(
            drift={"method": "psi"}
        ),
        "column price_sensitivity: drift needs a threshold",
    ),
    "duplicate view name": (
        lambda m: m["nodes"][LISTING_VIEW]["config"]["meta"]["feature_view"].update(name="user_features"),
        "feature view name 'user_features' is already declared by model",
    ),
    "missing timestamp column": (
        lambda m: m["nodes"][USER_VIEW]["columns"].pop("as_of"),
        "model user_features_history: the timestamp column 'as_of' is not declared",
    ),
    "service naming a missing feature": (
        lambda m: m["exposures"][SERVICE]["config"]["meta"]["feature_service"]["features"].append(
            "user_features:nope"
        ),
        "exposure contact_model: feature view user_features has no feature 'nope'",
    ),
    "service listing a feature twice": (
        lambda m: m["exposures"][SERVICE]["config"]["meta"]["feature_service"]["features"].append(
            "listing_features:price"
        ),
        "exposure contact_model: feature_service lists ['listing_features:price'] more than once",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_declarations_fail_at_load_naming_model_and_column(manifest, tmp_path, case):
    change, message = CASES[case]
    with pytest.raises(RegistryError) as caught:
        _load(tmp_path, _broken(manifest, change))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_view_added_as_sql_and_yml_appears_in_the_registry(tmp_path):
    """A copy of the dbt project with one more model (SQL + yml, no Python): dbt parses it and the
    registry lists the view, its features and a service that uses it."""
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "models/marts/listing_popularity.sql").write_text(
        "select listing_id, as_of, 1.0::double precision as popularity from {{ ref('listing_features_history') }}\n"
    )
    (project / "models/marts/_listing_popularity.yml").write_text(
        """version: 2
models:
  - name: listing_popularity
    config:
      materialized: view
      meta:
        owner: "team:search"
        feature_view: {entity: listing, timestamp: as_of, ttl_days: 3}
    columns:
      - {name: listing_id, data_type: uuid}
      - {name: as_of, data_type: timestamp with time zone}
      - name: popularity
        description: How popular the listing is.
        meta: {feature: {type: numeric, min: 0}}
exposures:
  - name: search_model
    type: ml
    owner: {name: "team:search", email: search@fs-platform.invalid}
    depends_on: [ref('listing_popularity')]
    config:
      meta:
        feature_service: {features: ["listing_popularity:popularity", "listing_features:price_pct"]}
"""
    )
    subprocess.run(
        [dbt_executable(), "parse", "--profiles-dir", str(project), "--quiet"], cwd=project, check=True
    )
    registry = load_registry(project)
    view = registry.view("listing_popularity")
    assert (view.owner, view.ttl.days, view.feature("popularity").description) == (
        "team:search",
        3,
        "How popular the listing is.",
    )
    assert registry.expand("search_model") == ["listing_popularity:popularity", "listing_features:price_pct"]
    # its declared rule becomes a null/range check with no code change
    assert list(quality.rule_predicates(view)) == ["popularity_out_of_[0,inf)"]


def test_feature_views_show_their_registry_entry_in_dagster():
    spec = defs.resolve_asset_graph().get(dg.AssetKey("user_features_history"))
    assert spec.tags["feature_view"] == "user_features"
    table = spec.metadata["feature_view"].value
    assert "| `price_sensitivity` | numeric | [0, 1]; null: allow |" in table
    assert spec.metadata["feature_view/entity"].value == "user (user_id)"
