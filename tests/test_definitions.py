"""The Dagster code location: loads, validates, and wires schedules, sensors, freshness and checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd

from fs_platform.definitions import defs
from fs_platform.features.registry import feature_registry

REPO = Path(__file__).resolve().parent.parent


def test_dagster_definitions_validate(service_urls):
    from fs_platform.infra.instance import prepare_environment

    prepare_environment()  # dagster.yaml (Postgres storage) reads FS_PG_* from the environment
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "fs_platform.definitions"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_asset_graph_and_freshness():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "raw_listings",
        "raw_user_interactions",
        "stg_user_interactions",
        "int_user_listing_daily",
        "user_features",
        "user_features_history",
        "listing_features",
        "listing_features_history",
        "stg_listing_versions",
        "int_category_price_ranks",
    } <= keys
    # dbt sources resolve to the ingestion assets
    upstream = {k.to_user_string() for k in graph.get(dg.AssetKey("stg_user_interactions")).parent_keys}
    assert upstream == {"raw_user_interactions"}
    versions_upstream = graph.get(dg.AssetKey("stg_listing_versions")).parent_keys
    assert dg.AssetKey("raw_listings") in versions_upstream  # written by the listings ingestion
    # the training set reads the user and the listing histories
    training_upstream = {k.to_user_string() for k in graph.get(dg.AssetKey("training_set")).parent_keys}
    assert {"user_features_history", "listing_features_history"} <= training_upstream
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    policy = specs["user_features"].freshness_policy
    assert policy is not None and policy.deadline_cron == "0 4 * * *" and policy.timezone == "UTC"
    assert specs["user_features"].description and "latest snapshot" in specs["user_features"].description
    assert specs["user_features"].partitions_def is not None
    checks = {k.name for k in graph.asset_check_keys if k.asset_key == dg.AssetKey("user_features")}
    assert any(name.startswith("json_shares_sum_to_one") for name in checks)


def test_daily_schedule_requests_partition_d_at_0300_utc():
    schedule = defs.get_schedule_def("daily_features_job_schedule")
    assert schedule.cron_schedule == "0 3 * * *" and schedule.execution_timezone == "UTC"
    # contexts are entered: one that is not leaves its instance published to later tests
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=pd.Timestamp("2026-03-10 03:00", tz="UTC").to_pydatetime(),
        ) as context,
    ):
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-03-10"


def test_feature_registry_lists_every_served_feature():
    entries = {(e["view"], e["feature"]): e for e in feature_registry()}
    assert {"category_affinity", "city_affinity", "price_sensitivity", "activity_score"} <= {
        f for v, f in entries if v == "user_features"
    }
    assert entries[("user_features", "activity_score")]["rule"] == "[0, 1); null: reject"
    assert entries[("listing_features", "price_pct")]["owner"] == "team:feature-platform"
    assert entries[("on_demand", "price_gap")]["rule"].startswith("computed from listing_features:price_pct")
    cli = Path(sys.executable).with_name("fs-platform")
    out = subprocess.run([str(cli), "features", "list"], capture_output=True, text=True, check=True).stdout
    assert "price_sensitivity" in out and "[0, 1]" in out and "service contact_model:" in out
