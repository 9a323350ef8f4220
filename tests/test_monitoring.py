"""Monitoring on real PostgreSQL, real dbt and real Evidently, with the generator's injected drift.

Three private databases hold 72 days of xs data: one with a category-preference shift of 20% of the
users, one with a 20-point device-mix shift, one with a 15% price inflation of new listings, all from
``ONSET``. The checks must fire after the
onset and stay quiet before it; the Dagster checks, the alert sensors (table, log, webhook) and the
CLI are exercised on the same data.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner
from monitoring_support import (
    DAYS,
    END,
    ONSET,
    WebhookReceiver,
    load_drifted,
    private_database,
    sparse_categories,
)

from fs_platform.cli import main as cli
from fs_platform.definitions import defs
from fs_platform.defs.features.assets import feature_dbt_assets
from fs_platform.defs.ingestion.assets import raw_user_interactions
from fs_platform.defs.monitoring.checks import (
    USER_FEATURES,
    completeness_check,
    drift_metadata,
    feature_drift_checks,
    input_drift_check,
    null_range_checks,
    rejected_rate_check,
)
from fs_platform.defs.monitoring.sensors import monitoring_alert_sensor, run_failure_alert_sensor
from fs_platform.defs.resources import PostgresResource
from fs_platform.dev import detection
from fs_platform.features.registry import load_registry
from fs_platform.infra.runtime import pg_connect
from fs_platform.ingestion.load import ingest_interactions_file
from fs_platform.monitoring import alerts, drift_data, drift_reports, quality
from fs_platform.monitoring.settings import OTHER_CATEGORY, ColumnRule, drift_settings, rules

BEFORE, AT, AFTER = ONSET - timedelta(days=7), ONSET, ONSET + timedelta(days=7)
#: the first day of events of the test databases
FIRST_DAY = END - timedelta(days=DAYS)
#: what a Python repr looks like inside a message: datetime.date(...), a tuple of dates or strings
REPR = re.compile(r"datetime\.|\((?:datetime|date\(|\d{4}, \d|')")


def assert_readable(text: str) -> None:
    """No Python repr in a message meant for people (dates must be ISO strings)."""
    assert not REPR.search(text), text


@pytest.fixture(scope="module")
def category_db(service_urls, tmp_path_factory):
    """Category shift from ONSET; feature partitions ONSET - 7, ONSET, ONSET + 7 (real dbt)."""
    with private_database(service_urls["server_url"], "fs_test_mon_cat") as url:
        load_drifted(url, "category_shift", tmp_path_factory.mktemp("category_data"))
        detection.build_partitions(
            url, [BEFORE, AT, AFTER], target_path="target/test_monitoring", in_process=False
        )
        yield url


@pytest.fixture(scope="module")
def device_db(service_urls, tmp_path_factory):
    with private_database(service_urls["server_url"], "fs_test_mon_dev") as url:
        load_drifted(url, "device_shift", tmp_path_factory.mktemp("device_data"))
        yield url


@pytest.fixture(scope="module")
def price_db(service_urls, tmp_path_factory):
    """15% price inflation of the listings created from ONSET (input drift needs no dbt partitions)."""
    with private_database(service_urls["server_url"], "fs_test_mon_price") as url:
        load_drifted(url, "price_inflation", tmp_path_factory.mktemp("price_data"))
        yield url


@pytest.fixture()
def conn(category_db):
    connection = pg_connect(category_db)
    yield connection
    connection.rollback()
    connection.close()


# ------------------------------------------------------------------ detection with and without drift


def test_input_drift_fires_on_the_device_shift_and_not_the_day_before(device_db, tmp_path):
    connection = pg_connect(device_db)
    quiet = drift_reports.input_drift(connection, ONSET, root=tmp_path)  # judges ONSET - 1
    loud = drift_reports.input_drift(connection, ONSET + timedelta(days=1), root=tmp_path)  # judges ONSET
    connection.close()
    assert not quiet.drift_detected, quiet.columns
    assert loud.drifted_columns == ["device_type"], loud.columns
    assert loud.columns["device_type"]["value"] > 2 * quiet.columns["device_type"]["value"]
    # the saved report is Evidently's, for the judged day, with the per-column summary beside it
    html = Path(loud.html_path)
    assert html.parent.name == (ONSET + timedelta(days=1)).isoformat() and html.stat().st_size > 100_000
    assert "device_type" in html.read_text() and "Drift" in html.read_text()
    summary = json.loads(Path(loud.summary_path).read_text())
    assert summary["drifted_columns"] == ["device_type"] and summary["current"] == f"interactions of {ONSET}"
    snapshot = json.loads(Path(loud.json_path).read_text())
    assert any("ValueDrift" in m["metric_name"] for m in snapshot["metrics"])


def test_input_drift_sees_the_category_shift_on_its_first_day(conn, tmp_path):
    quiet = drift_reports.input_drift(conn, ONSET, root=tmp_path)
    loud = drift_reports.input_drift(conn, ONSET + timedelta(days=1), root=tmp_path)
    assert not quiet.drift_detected, quiet.columns
    assert "engaged_category_novelty" in loud.drifted_columns, loud.columns


def test_input_drift_sees_the_price_inflation_of_new_listings_on_its_first_day(price_db, tmp_path):
    connection = pg_connect(price_db)
    quiet = drift_reports.input_drift(connection, ONSET, root=tmp_path)  # judges ONSET - 1
    loud = drift_reports.input_drift(connection, ONSET + timedelta(days=1), root=tmp_path)  # judges ONSET
    connection.close()
    column = drift_reports.NEW_LISTING_PRICE
    assert not quiet.drift_detected, quiet.columns
    assert loud.drifted_columns == [column], loud.columns
    judged = loud.columns[column]
    assert judged["method"] == "t_test" and judged["drifts_when"] == "p < 0.005"
    assert judged["value"] < 0.005 < quiet.columns[column]["value"]
    # a day of new listings against four weeks of them: a few hundred vs ten thousand or more
    assert judged["current_values"] >= 200 and judged["reference_values"] >= 20 * judged["current_values"]
    # the operator reads the move as a percentage: +15% injected, sampling noise a few points
    note = next(n for n in loud.notes if n.startswith("new listings priced"))
    move = float(note.split("priced ")[1].split("%")[0])
    assert 8 <= move <= 22, note


def test_new_listing_prices_stay_quiet_without_drift_and_skip_thin_days(price_db, tmp_path):
    connection = pg_connect(price_db)
    column = drift_reports.NEW_LISTING_PRICE
    try:
        for day in (ONSET - timedelta(days=2), ONSET - timedelta(days=1)):  # judge ONSET - 3, ONSET - 2
            result = drift_reports.input_drift(connection, day, root=tmp_path)
            assert not result.drift_detected, (day, result.columns)
            assert result.columns[column]["value"] >= 0.005 and not result.columns[column]["skipped"]
        # fewer new listings than min_values: not judged, said so, never an alarm on noise
        thin = {"columns": {column: {"min_values": 100_000}}}
        result = drift_reports.input_drift(
            connection, ONSET + timedelta(days=1), override=thin, root=tmp_path
        )
    finally:
        connection.close()
    assert result.columns[column]["value"] is None and not result.columns[column]["drifted"]
    assert column not in result.drifted_columns
    note = next(n for n in result.notes if n.startswith(f"{column} skipped:"))
    # the real counts, and what was needed: "412 current values (10,870 reference), needs at least 100,000 ..."
    current, reference = result.columns[column]["current_values"], result.columns[column]["reference_values"]
    assert 0 < current < 100_000 and reference > current
    assert note == (
        f"{column} skipped: {current:,} current values ({reference:,} reference), "
        "needs at least 100,000 current values"
    )


def test_feature_drift_fires_a_week_into_the_category_shift_only(conn, tmp_path):
    quiet = drift_reports.feature_drift(conn, AT, root=tmp_path)  # ONSET vs ONSET - 7: both before
    loud = drift_reports.feature_drift(conn, AFTER, root=tmp_path)  # ONSET + 7 vs ONSET
    assert quiet.reference == f"user_features partition {BEFORE}"
    assert not quiet.drift_detected, quiet.columns
    assert loud.drift_detected and "category_affinity_top_share" in loud.drifted_columns, loud.columns
    assert set(loud.columns) >= {
        "activity_score",
        "price_sensitivity",
        "category_affinity_top",
        "city_affinity_top",
    }


def test_prediction_drift_compares_scores_with_the_models_test_days(category_db, tmp_path):
    model = detection.train_model(category_db, BEFORE, AT - timedelta(days=1), tmp_path)
    connection = pg_connect(category_db)
    same = drift_reports.prediction_drift(connection, AT, model=model, root=tmp_path)  # its test days
    later = drift_reports.prediction_drift(connection, AFTER, model=model, root=tmp_path)
    connection.close()
    assert same.decisive == ["score"] and not same.drift_detected, same.columns
    assert 0 < same.columns["score"]["value"] < 0.1
    # a week into the shift the users' affinity for what they now look at has moved
    assert later.columns["user_category_affinity"]["value"] > same.columns["user_category_affinity"]["value"]
    assert Path(later.html_path).exists()


def test_settings_are_validated_and_overridable(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="neither a distance method"):
        drift_settings("input", {"columns": {"device_type": {"method": "anova"}}})
    with pytest.raises(ValueError, match="threshold must be below 1"):
        drift_settings("input", {"columns": {"engaged_price": {"method": "ks", "threshold": 1.5}}})
    with pytest.raises(ValueError, match="min_values"):
        drift_settings("input", {"columns": {"engaged_price": {"min_values": 0}}})
    rule = rules(drift_settings("input"))["new_listing_log_price_vs_category"]
    assert rule.drifted(0.001) and not rule.drifted(0.2) and not rule.drifted(None)
    assert rules(drift_settings("input"))["engaged_price"].drifted(0.31)
    with pytest.raises(ValueError, match="unknown drift check"):
        drift_settings("nope")
    path = tmp_path / "drift.json"
    # feature drift's columns and thresholds come from the view's yml; the file still overrides them
    declared = drift_data.feature_drift_columns(load_registry().view("user_features"))
    assert declared == {
        "category_affinity_top": {"method": "jensenshannon", "threshold": 0.05, "kind": "cat"},
        "category_affinity_top_share": {"method": "wasserstein", "threshold": 0.04, "kind": "num"},
        "category_affinity_keys": {"method": "wasserstein", "threshold": 0.08, "kind": "num"},
        "city_affinity_top": {"method": "jensenshannon", "threshold": 0.05, "kind": "cat"},
        "city_affinity_keys": {"method": "wasserstein", "threshold": 0.08, "kind": "num"},
        "price_sensitivity": {"method": "wasserstein", "threshold": 0.08, "kind": "num"},
        "activity_score": {"method": "wasserstein", "threshold": 0.08, "kind": "num"},
    }
    path.write_text(json.dumps({"features": {"columns": {"city_affinity_top": {"threshold": 0.5}}}}))
    monkeypatch.setenv("FS_DRIFT_CONFIG", str(path))
    merged = drift_settings("features", columns=declared)["columns"]
    assert merged["city_affinity_top"] == {**declared["city_affinity_top"], "threshold": 0.5}
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        drift_settings("features")


def test_too_little_data_and_unknown_columns_are_clear_errors(conn, tmp_path):
    with pytest.raises(drift_reports.NotEnoughData, match="fewer than the"):
        drift_reports.feature_drift(conn, AFTER, reference_partition=AFTER - timedelta(days=1), root=tmp_path)
    typo = {"columns": {"top_catgory": {"method": "jensenshannon", "threshold": 0.1, "kind": "cat"}}}
    with pytest.raises(ValueError, match="unknown drift column"):
        drift_reports.feature_drift(conn, AFTER, override=typo, root=tmp_path)


# ------------------------------------------------------------------ sparse categories


def _sparse_rules(**sparse: int) -> dict[str, ColumnRule]:
    """category_id's method and threshold on a synthetic long-tailed column, plus a numeric one."""
    return {
        "listing_category": ColumnRule("jensenshannon", 0.1, "cat", **sparse),
        "amount": ColumnRule("wasserstein", 0.3, "num"),
    }


def test_sparse_high_cardinality_column_without_drift_stays_quiet(tmp_path):
    # ~1.2k current events over 1,096 mostly rare categories, reference four weeks of the same
    reference = sparse_categories(1_200 * 28, 1_096, seed=1)
    current = sparse_categories(1_200, 1_096, seed=2)
    judged, _, _ = drift_reports.compare(current, reference, _sparse_rules(), tmp_path / "sparse")
    column = judged["listing_category"]
    assert not column["drifted"] and not column["skipped"] and column["value"] < 0.07, column
    assert column["categories"] == 1_096 and column["pooled_categories"] > 1_000
    assert 2 <= column["compared_categories"] <= 30
    # the same samples compared category by category (no pooling) are what raised the false alarm
    raw, _, _ = drift_reports.compare(
        current,
        reference,
        _sparse_rules(min_category_count=1, min_values_per_category=1),
        tmp_path / "unpooled",
    )
    assert raw["listing_category"]["drifted"] and raw["listing_category"]["value"] > 0.3


def test_a_shift_in_a_frequent_category_still_drifts(tmp_path):
    reference = sparse_categories(1_200 * 28, 1_096, seed=1)
    current = sparse_categories(1_200, 1_096, seed=3, boost=(0, 0.2))  # its top category 6 % -> 20 %
    judged, html, _ = drift_reports.compare(current, reference, _sparse_rules(), tmp_path / "shift")
    column = judged["listing_category"]
    assert column["drifted"] and column["value"] > 0.12, column
    assert OTHER_CATEGORY in html.read_text()  # the report shows the pooled bucket


def test_columns_with_too_few_values_per_category_are_skipped_with_the_reason(tmp_path):
    # 100 equally likely categories, 1,200 current values: 12 per category, the distance would be noise
    reference = sparse_categories(30_000, 100, seed=4)
    current = sparse_categories(1_200, 100, seed=5)
    reference["listing_category"] = [f"u{i % 100}" for i in range(len(reference))]
    current["listing_category"] = [f"u{i % 100}" for i in range(len(current))]
    current["empty"] = reference["empty"] = None
    rules_ = {**_sparse_rules(), "empty": ColumnRule("jensenshannon", 0.1, "cat")}
    judged, _, _ = drift_reports.compare(current, reference, rules_, tmp_path / "thin")
    assert judged["listing_category"]["value"] is None and not judged["listing_category"]["drifted"]
    assert judged["listing_category"]["skipped"] == (
        "sparse: 1,200 current values over 100 compared categories (12.0 per category), needs 20 per category"
    )
    assert judged["empty"]["skipped"] == "no values in either the current or the reference data"
    assert judged["amount"]["skipped"] is None and judged["amount"]["value"] is not None


def test_sparse_category_minimums_are_settings(tmp_path, monkeypatch):
    defaults = rules(drift_settings("input"))["category_id"]
    assert (defaults.min_category_count, defaults.min_values_per_category) == (10, 20)
    path = tmp_path / "drift.json"
    path.write_text(
        json.dumps(
            {"input": {"min_category_count": 25, "columns": {"device_type": {"min_values_per_category": 50}}}}
        )
    )
    monkeypatch.setenv("FS_DRIFT_CONFIG", str(path))
    configured = rules(drift_settings("input"))
    assert configured["category_id"].min_category_count == 25
    assert configured["device_type"].min_values_per_category == 50
    assert configured["category_id"].min_values_per_category == 20
    with pytest.raises(ValueError, match="min_category_count must be a positive integer"):
        drift_settings("input", {"min_category_count": 0})


# ------------------------------------------------------------------ warm-up and readable messages


def test_feature_drift_on_a_short_history_is_skipped_as_warming_up(conn, tmp_path):
    history = (BEFORE - FIRST_DAY).days  # days of events before AT's reference partition
    with pytest.raises(drift_reports.WarmingUp) as raised:
        drift_reports.feature_drift(conn, AT, override={"warmup_days": history + 1}, root=tmp_path)
    assert str(raised.value) == (
        f"warming up: {history} of {history + 1} days of history before the reference partition "
        f"{BEFORE.isoformat()} (events start {FIRST_DAY.isoformat()})"
    )
    # a week into the data, as on a new deployment: the reference partition precedes the events
    with pytest.raises(drift_reports.WarmingUp, match="warming up: 0 of 42 days of history"):
        drift_reports.feature_drift(conn, FIRST_DAY + timedelta(days=7), root=tmp_path)
    assert not drift_reports.feature_drift(conn, AT, root=tmp_path).warmup


def test_input_drift_on_a_short_history_says_it_is_warming_up(conn, tmp_path):
    partition = FIRST_DAY + timedelta(days=15)  # judges day FIRST_DAY + 14 against 14 days
    result = drift_reports.input_drift(conn, partition, root=tmp_path)
    day = partition - timedelta(days=1)
    assert result.warmup == (
        f"warming up: 14 of 28 days of history before {day.isoformat()} for its 28-day reference "
        f"(events start {FIRST_DAY.isoformat()})"
    )
    assert drift_metadata(result)["warmup"].value == result.warmup
    assert json.loads(Path(result.summary_path).read_text())["warmup"] == result.warmup
    assert drift_reports.input_drift(conn, AT, root=tmp_path).warmup is None


def test_messages_show_dates_as_iso_strings(conn, tmp_path):
    # the first day of events: its reference (28 days before the events) holds only new listings, so
    # a minimum between the two sizes makes the reference the side that is too small
    day = FIRST_DAY
    window = drift_data.input_window(day, 28)
    sizes = [
        len(drift_data.interactions_frame(conn, *days, novelty=False, catalogue_at=day))
        for days in (window.current, window.reference)
    ]
    assert sizes[0] > sizes[1], sizes
    with pytest.raises(drift_reports.NotEnoughData) as raised:
        drift_reports.input_drift(
            conn, day + timedelta(days=1), override={"min_current_rows": sizes[1] + 1}, root=tmp_path
        )
    reference_days = f"{(day - timedelta(days=28)).isoformat()}..{(day - timedelta(days=1)).isoformat()}"
    assert str(raised.value).startswith(f"interactions of {reference_days}: {sizes[1]} rows"), raised.value
    assert_readable(str(raised.value))
    result = drift_reports.input_drift(conn, AT, root=tmp_path)
    day = AT - timedelta(days=1)
    assert result.current == f"interactions of {day.isoformat()}"
    assert result.reference == (
        f"interactions of {(day - timedelta(days=28)).isoformat()}..{(day - timedelta(days=1)).isoformat()}"
    )
    for text in [result.current, result.reference, *result.notes]:
        assert_readable(text)
    assert drift_reports.day_range(date(2026, 11, 2), date(2026, 11, 8)) == "2026-11-02..2026-11-08"


# ------------------------------------------------------------------ data quality


def test_completeness_errors_when_users_lose_their_rows(conn):
    assert quality.completeness(conn, AFTER).share == 1.0
    with conn.cursor() as cur:  # lose 10% of the snapshot (rolled back by completeness())
        cur.execute(
            "delete from features.user_features_history where as_of = %s and ctid in "
            "(select ctid from features.user_features_history where as_of = %s order by user_id "
            "limit (select count(*) / 10 from features.user_features_history where as_of = %s))",
            (pd.Timestamp(AFTER, tz="UTC"),) * 3,
        )
    measured = quality.completeness(conn, AFTER)
    assert 0.85 < measured.share < 0.95 and measured.active_users == measured.snapshot_rows + (
        measured.active_users - measured.with_features
    )


def test_range_rules_come_from_the_declarations_and_count_violations(conn):
    registry = load_registry()
    users = registry.view("user_features")
    # one rule per declaration of the yml: null policy reject, the range, a map's sum
    assert set(quality.rule_predicates(users)) == {
        "category_affinity_null",
        "category_affinity_out_of_[0,1]",
        "category_affinity_not_summing_to_1",
        "city_affinity_null",
        "city_affinity_out_of_[0,1]",
        "city_affinity_not_summing_to_1",
        "price_sensitivity_out_of_[0,1]",
        "activity_score_null",
        "activity_score_out_of_[0,1)",
    }
    clean = quality.range_violations(conn, AFTER, users)
    assert clean.rows > 1000 and clean.violating_rows == 0 and not any(clean.per_rule.values())
    # a count always with its unit: "877" alone next to "passed" read as 877 violations
    assert clean.summary == f"0 of {clean.rows:,} rows violate a null/range rule"
    with conn.cursor() as cur:
        cur.execute(
            "update features.user_features_history set activity_score = 1.5, "
            "category_affinity = '{\"cat_00\": 0.5}' where as_of = %s and user_id in "
            "(select user_id from features.user_features_history where as_of = %s order by user_id limit 3)",
            (pd.Timestamp(AFTER, tz="UTC"),) * 2,
        )
        cur.execute(
            'update features.user_features_history set city_affinity = \'{"a": 1.25, "b": -0.25}\' '
            "where as_of = %s and user_id in (select user_id from features.user_features_history "
            "where as_of = %s order by user_id desc limit 2)",
            (pd.Timestamp(AFTER, tz="UTC"),) * 2,
        )
    broken = quality.range_violations(conn, AFTER, users)
    assert broken.per_rule["activity_score_out_of_[0,1)"] == 3
    assert broken.per_rule["category_affinity_not_summing_to_1"] == 3
    assert broken.per_rule["city_affinity_out_of_[0,1]"] == 2  # sums to 1, but values outside [0, 1]
    assert broken.per_rule["city_affinity_not_summing_to_1"] == 0
    assert broken.violating_rows == 5  # the first 3 rows break two rules each
    assert broken.summary == (
        f"5 of {broken.rows:,} rows violate a null/range rule: category_affinity_not_summing_to_1: 3 rows, "
        "city_affinity_out_of_[0,1]: 2 rows, activity_score_out_of_[0,1): 3 rows"
    )
    assert quality.RangeViolations(0, 0, {}).summary == "empty snapshot: 0 rows"
    conn.rollback()


def test_range_rules_of_allowed_values_and_exclusive_bounds(conn):
    """Rules a view may declare that the shipped ones do not use: allowed values (scalar and map)."""
    listings = load_registry().view("listing_features")
    declared = {f.name: f for f in listings.features}
    strict = replace(
        listings,
        features=(
            replace(declared["city"], allowed_values=("nowhere",)),
            replace(declared["price_pct"], min=0, max=0.5, max_inclusive=False),
            replace(declared["is_premium"], null_policy="reject"),
        ),
    )
    measured = quality.range_violations(conn, AFTER, strict)
    with conn.cursor() as cur:
        cur.execute(
            "select count(*), count(*) filter (where city <> 'nowhere'), count(*) filter (where price_pct >= 0.5), "
            "count(*) filter (where is_premium is null), count(*) filter (where city is null) from features.listing_features_history where as_of = %s",
            (pd.Timestamp(AFTER, tz="UTC"),),
        )
        rows, bad_city, high_pct, null_premium, null_city = cur.fetchone()
    conn.rollback()
    assert rows > 100 and measured.rows == rows
    assert measured.per_rule == {
        "city_null": null_city,  # declared in the yml, kept by replace()
        "city_not_in_allowed_values": bad_city,
        "price_pct_out_of_[0,0.5)": high_pct,
        "is_premium_null": null_premium,
    }
    assert 0 < high_pct < rows and bad_city == rows
    # the shipped declarations of the listing view hold on real data
    assert quality.range_violations(conn, AFTER, listings).violating_rows == 0


# ------------------------------------------------------------------ Dagster checks, sensors, alerts


def _resources(database_url: str) -> dict:
    return {**defs.resources, "postgres": PostgresResource(database_url=database_url)}


def _instance(database_url: str):
    """A Dagster instance with Postgres storage in the private database, like production's."""
    url = database_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    return dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": url}}})


def test_checks_in_dagster_link_reports_and_alert_once(category_db, tmp_path, monkeypatch):
    monkeypatch.setenv("FS_HOME", str(tmp_path))
    checks = [input_drift_check, *feature_drift_checks, completeness_check, *null_range_checks]
    with _instance(category_db) as instance, WebhookReceiver() as hook:
        monkeypatch.setenv("FS_ALERT_WEBHOOK_URL", hook.url)
        # as the daily job runs them: after the partition's dbt build (here only of user_features), same run
        result = dg.materialize(
            [feature_dbt_assets, *checks],
            selection=dg.AssetSelection.assets(USER_FEATURES),
            partition_key=AFTER.isoformat(),
            resources=_resources(category_db),
            instance=instance,
        )
        assert result.success
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert {"input_drift", "feature_drift", "completeness", "null_range_violations"} <= set(evaluations)
        drift = evaluations["feature_drift"]
        assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
        assert drift.partition == AFTER.isoformat()
        report = Path(drift.metadata["report"].value)
        assert report.exists() and report.is_relative_to(tmp_path / "reports" / AFTER.isoformat())
        table = {r.data["column"]: r.data for r in drift.metadata["columns"].value.records}
        assert table["category_affinity_top_share"]["drifted"] and not table["city_affinity_top"]["drifted"]
        assert evaluations["completeness"].passed and evaluations["null_range_violations"].passed
        quality_check = evaluations["null_range_violations"]
        rows = quality_check.metadata["snapshot_rows"].value
        assert rows > 1000 and quality_check.metadata["violating_rows"].value == 0
        assert quality_check.description == f"0 of {rows:,} rows violate a null/range rule"
        assert "rows" not in quality_check.metadata  # the bare count the demo printed as "passed 877"
        # what the UI and the alerts show is for people: no Python reprs, dates as ISO strings
        for evaluation in evaluations.values():
            assert_readable(evaluation.description or "")
            for value in evaluation.metadata.values():
                if isinstance(value, dg.TextMetadataValue):
                    assert_readable(value.value)

        # contexts entered with `with`: an un-entered one leaves a disposed instance published
        with dg.build_sensor_context(instance=instance, resources=_resources(category_db)) as context:
            monitoring_alert_sensor(context)
            cursor = context.cursor
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources=_resources(category_db)
        ) as again:
            monitoring_alert_sensor(again)  # nothing new: no second alert
        connection = pg_connect(category_db)
        stored = [a for a in alerts.recent(connection) if a["kind"] == "drift"]
        connection.close()
    assert [(a["check_name"], a["partition"], a["severity"]) for a in stored] == [
        ("feature_drift", AFTER.isoformat(), "WARN")
    ]
    assert stored[0]["report"] == str(report) and stored[0]["webhook_status"] == "HTTP 204"
    assert len(hook.received) == 1 and hook.received[0]["alert"]["report"] == str(report)
    logged = [json.loads(line) for line in (tmp_path / "logs" / "alerts.jsonl").read_text().splitlines()]
    assert [entry["check_name"] for entry in logged] == ["feature_drift"]


def test_run_failure_sensor_records_the_failed_run(category_db, tmp_path, monkeypatch):
    monkeypatch.setenv("FS_HOME", str(tmp_path))
    monkeypatch.delenv("FS_ALERT_WEBHOOK_URL", raising=False)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [feature_dbt_assets],
            partition_key=AFTER.isoformat(),
            resources=_resources(category_db),
            instance=instance,
            run_config={"ops": {"feature_dbt_assets": {"config": {"dbt_vars_json": "{not json"}}}},
            raise_on_error=False,
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        with dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert_sensor",
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            resources=_resources(category_db),
        ) as status_context:
            run_failure_alert_sensor(status_context.for_run_failure())
    connection = pg_connect(category_db)
    stored = [a for a in alerts.recent(connection) if a["kind"] == "run_failure"]
    connection.close()
    assert len(stored) == 1 and stored[0]["run_id"] == result.run_id
    assert stored[0]["partition"] == AFTER.isoformat() and stored[0]["severity"] == "ERROR"


def test_webhook_failure_never_loses_the_alert(category_db, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("FS_HOME", str(tmp_path))
    monkeypatch.setenv("FS_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hooks/s3cret-token")
    connection = pg_connect(category_db)
    alert = alerts.Alert(kind="quality", severity="WARN", message="test", dedup_key=f"test:{tmp_path.name}")
    with caplog.at_level("WARNING"):
        assert alerts.record(connection, alert) is True
    assert "alert webhook" in caplog.text and "s3cret-token" not in caplog.text  # the URL is a secret
    assert alerts.record(connection, alert) is False  # same key: recorded once
    stored = next(a for a in alerts.recent(connection) if a["dedup_key"] == alert.dedup_key)
    connection.close()
    assert stored["webhook_status"].startswith("error")


def test_rejected_row_rate_warns_above_a_tenth_of_a_percent(device_db, tmp_path):
    connection = pg_connect(device_db)
    assert quality.rejected_rate(connection).rate == 0.0
    bad = pd.DataFrame(
        {
            "event_id": [f"00000000-0000-4000-8000-{i:012d}" for i in range(600)],
            "user_id": "00000000-0000-4000-8000-000000000001",
            "listing_id": "00000000-0000-4000-8000-000000000002",
            "event_type": "listing_shared",  # unknown type: every row rejected
            "occurred_at": "2026-08-01T10:00:00Z",
            "device_type": "ios",
        }
    )
    bad.to_csv(tmp_path / "partner.csv", index=False)
    ingest_interactions_file(connection, tmp_path / "partner.csv")
    measured = quality.rejected_rate(connection)
    connection.close()
    assert measured.rejected == 600 and measured.rate > quality.REJECTED_RATE_MAX
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_user_interactions, rejected_rate_check],
            selection=dg.AssetSelection.checks(rejected_rate_check),
            resources=_resources(device_db),
            instance=instance,
            raise_on_error=False,
        )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN


# ------------------------------------------------------------------ CLI


def test_cli_writes_the_reports_of_a_partition(category_db, tmp_path, monkeypatch):
    monkeypatch.setenv("FS_DATABASE_URL", category_db)
    runner = CliRunner()
    out = runner.invoke(
        cli,
        [
            "drift",
            "report",
            "--date",
            AFTER.isoformat(),
            "--check",
            "input",
            "--check",
            "features",
            "--out",
            str(tmp_path),
        ],
    )
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line for line in out.output.splitlines()}
    assert (
        "DRIFT in" in lines["feature_drift"] and str(tmp_path / AFTER.isoformat()) in lines["feature_drift"]
    )
    assert (tmp_path / AFTER.isoformat() / "feature_drift.html").exists()
    assert (tmp_path / AFTER.isoformat() / "input_drift.json").exists()
    empty = runner.invoke(
        cli, ["drift", "report", "--date", "2026-01-05", "--check", "features", "--out", str(tmp_path)]
    )
    assert empty.exit_code == 1 and "not written" in empty.output
    assert "warming up: 0 of 42 days of history before the reference partition 2025-12-29" in empty.output


def test_monitoring_is_wired_into_the_code_location():
    job = defs.resolve_job_def("daily_features_job")
    in_daily_job = {k.name for k in job.asset_layer.asset_graph.asset_check_keys}
    assert {"input_drift", "feature_drift", "completeness", "null_range_violations"} <= in_daily_job
    assert defs.get_sensor_def("monitoring_alert_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.get_sensor_def("run_failure_alert_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.get_schedule_def("prediction_drift_job_schedule").cron_schedule == "30 4 * * *"
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    assert specs["user_features"].freshness_policy is not None  # freshness, visible in the UI
