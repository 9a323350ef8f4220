"""Ticks the daemon evaluates under `make ui`: the inbox sensor, the daily 03:00 UTC schedule and the
automation that syncs Redis, evaluated against a real (Postgres-backed) Dagster instance, and the
runs they request executed and checked (tests/ui_support.py builds the state once per session)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from ui_support import ONLINE_ASSETS, SCHEDULED_DAYS, open_instance

from fs_platform.definitions import defs
from fs_platform.defs.features.assets import feature_dbt_assets
from fs_platform.infra.runtime import pg_connect
from fs_platform.online.store import OnlineStore


@pytest.fixture(scope="module")
def state(ui_state):
    """The shared state, with os.environ pointing at it while this module runs."""
    with ui_state.activated() as active:
        yield active


def _materialized(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    out = {}
    for record in records:
        mat = record.event_log_entry.asset_materialization
        key = mat.asset_key.to_user_string() + (f"[{mat.partition}]" if mat.partition else "")
        out[key] = mat.metadata
    return out


def test_state_is_on_a_postgres_instance(state):
    with open_instance() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.root_directory == state.env["DAGSTER_HOME"]
    print("build seconds:", {k: round(v, 1) for k, v in state.seconds.items()})


def test_inbox_sensor_tick_requests_one_ingestion_run(state):
    tick = state.inbox_tick
    [request] = tick.requests
    assert set(request.asset_selection) == {dg.AssetKey("raw_listings"), dg.AssetKey("raw_user_interactions")}
    files = request.run_config["ops"]["raw_user_interactions"]["config"]["files"]
    assert len(files) == 9 and request.run_key == "|".join(sorted([*files, *_listing_files(request)]))
    # the next tick sees the same (now archived) files as done
    assert not state.inbox_tick_again.run_requests
    assert "no new files" in state.inbox_tick_again.skip_message

    with open_instance() as instance:
        [run_id] = tick.run_ids
        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/sensor_name"] == "inbox_sensor"
        meta = _materialized(instance, run_id)
    assert set(meta) == {"raw_listings", "raw_user_interactions"}
    events = meta["raw_user_interactions"]
    assert events["files"].value == 9 and events["rows_accepted"].value > 10_000
    assert events["rows_read"].value == events["rows_accepted"].value + events["rows_rejected"].value + (
        events["rows_duplicate"].value
    )
    assert not list((state.home / "inbox" / "interactions").iterdir())
    archived = {p.name for p in (state.home / "archive" / "interactions").iterdir()}
    assert {Path(f).name for f in files} <= archived


def _listing_files(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"]["raw_listings"]["config"]["files"]


def test_schedule_ticks_request_partition_d_and_the_runs_build_it(state):
    assert [len(t.requests) for t in state.schedule_ticks] == [1, 1]
    conn = pg_connect(state.database_url)
    with open_instance() as instance:
        for day, tick in zip(SCHEDULED_DAYS, state.schedule_ticks, strict=True):
            [request] = tick.requests
            assert request.partition_key == day.isoformat()
            assert request.tags["dagster/partition"] == day.isoformat()
            [run_id] = tick.run_ids
            run = instance.get_run_by_id(run_id)
            assert run.status == dg.DagsterRunStatus.SUCCESS and run.job_name == "daily_features_job"
            assert run.tags["dagster/schedule_name"] == "daily_features_job_schedule"
            meta = _materialized(instance, run_id)
            history = meta[f"user_features_history[{day}]"]
            assert history["users"].value == history["dagster/row_count"].value > 100
            assert f"user_features[{day}]" in meta and f"listing_features[{day}]" in meta
            # the dbt data tests ran as asset checks of this partition's run, all passed
            checks = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in checks.records]
            dbt_tests = [e for e in evaluations if e.asset_check_key in feature_dbt_assets.check_keys]
            assert len(dbt_tests) >= 10 and all(e.passed for e in dbt_tests)
            assert any(e.asset_check_key.name.startswith("json_shares_sum_to_one") for e in dbt_tests)
            with conn.cursor() as cur:
                cur.execute(
                    "select count(*) from features.user_features_history where as_of = %s",
                    (datetime(day.year, day.month, day.day, tzinfo=UTC),),
                )
                assert cur.fetchone()[0] == history["users"].value
    conn.close()


def test_sync_automation_requests_redis_sync_only_after_the_marts_change(state):
    assert state.automation_before.total_requested == 0  # no mart yet: nothing to publish
    for key in ONLINE_ASSETS:
        assert state.automation_tick.get_num_requested(key) == 1, key
    assert state.automation_after_sync.total_requested == 0  # handled: not requested again
    with open_instance() as instance:
        meta = _materialized(instance, state.sync_run_id)
    users = meta["online_user_features"]
    assert users["dagster/row_count"].value > 100
    latest = state.schedule_ticks[-1].requests[0].partition_key
    assert users["as_of"].value == datetime.fromisoformat(latest).replace(tzinfo=UTC).timestamp()
    # the snapshot the sync published is the one Redis serves, under this run's key prefix
    served = OnlineStore.from_settings(redis_url=state.redis_url).snapshot("user_features")
    assert served is not None and served.snapshot_id == users["snapshot_id"].value
    assert served.rows == users["dagster/row_count"].value


def test_the_sensor_and_schedule_definitions_are_on_by_default():
    assert defs.resolve_sensor_def("inbox_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert (
        defs.resolve_sensor_def("online_store_sync_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    )
    schedule = defs.resolve_schedule_def("daily_features_job_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 3 * * *", "UTC")
