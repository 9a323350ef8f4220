"""Point-in-time training set and contact model on real PostgreSQL, dbt features and Dagster runs.

One xs data set and one range of feature partitions per module (building features is the slow
part); the tests that change tables do it inside a transaction they roll back.
"""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from feature_pipeline import fresh_features, run_partition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference.training_set import reference_examples

from fs_platform.cli import main
from fs_platform.definitions import defs
from fs_platform.defs.model.assets import TrainingSetRunConfig, ctr_model_asset, training_set_asset
from fs_platform.defs.model.checks import ctr_model_promotion
from fs_platform.dev.synthetic import generate
from fs_platform.ingestion.load import ingest_listings_file
from fs_platform.model import registry as model_registry
from fs_platform.model import workflow
from fs_platform.model.training import evaluate, roc_auc
from fs_platform.retrieval import training_set

END = date(2026, 3, 1)  # exclusive end of the generated events
DAYS = 12  # events on 02-17 .. 02-28
FEATURE_DAYS = (END - timedelta(days=9), END - timedelta(days=1))  # snapshots 02-20 .. 02-28
EXAMPLES = (END - timedelta(days=11), END - timedelta(days=1))  # 02-18 .. 02-28: early days lack snapshots
MODEL_EXAMPLES = (END - timedelta(days=8), END - timedelta(days=1))  # 02-21 .. 02-28: 4 train, 2 val, 2 test
COMPARED = (
    "example_time",
    "features_as_of",
    "label",
    "device_type",
    "day_of_week",
    "hour_of_day",
    "category_id",
    "city",
    "price",
    "price_pct",
    "price_sensitivity",
    "activity_score",
    "user_category_affinity",
    "user_city_affinity",
    "price_gap",
)
FEATURE_COLUMNS = [c for c in COMPARED if c != "label"]


@pytest.fixture(scope="module")
def world(service_urls, tmp_path_factory):
    """xs events ingested, feature snapshots 02-20..02-28 built by one Dagster backfill run."""
    data = generate("xs", days=DAYS, seed=11, end=END)
    folder = tmp_path_factory.mktemp("train_data")
    conn = fresh_features(service_urls["database_url"], data.listings, data.events, folder, *FEATURE_DAYS)
    yield {"data": data, "conn": conn, "database_url": service_urls["database_url"]}
    conn.close()


@pytest.fixture()
def conn(world):
    connection = world["conn"]
    yield connection
    connection.rollback()


def _config(first: date, last: date, **kwargs) -> training_set.TrainingSetConfig:
    return training_set.TrainingSetConfig(start=first, end=last, validation_days=2, test_days=2, **kwargs)


def _db_inputs(conn) -> tuple[list, list, dict]:
    with conn.cursor() as cur:
        cur.execute(
            "select event_id::text, user_id::text, listing_id::text, event_type, occurred_at, device_type, "
            "ingested_at from raw.user_interactions"
        )
        events = cur.fetchall()
        cur.execute(
            "select user_id::text, as_of, category_affinity, city_affinity, price_sensitivity, activity_score "
            "from features.user_features_history"
        )
        history = cur.fetchall()
        cur.execute(
            "select listing_id::text, as_of, category_id, city, price, price_pct "
            "from features.listing_features_history"
        )
        listings: dict[str, list] = {}
        for row in cur.fetchall():
            item = dict(zip(("category_id", "city", "price", "price_pct"), row[2:], strict=True))
            listings.setdefault(row[0], []).append((row[1], item))
    return events, history, listings


def _same(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)) or a is pd.NaT:
        return b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NaT
    if isinstance(a, float | np.floating) or isinstance(b, float | np.floating):
        return (
            b is not None
            and not pd.isna(b)
            and math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-15)
        )
    if isinstance(a, pd.Timestamp | datetime):
        return not pd.isna(b) and pd.Timestamp(a) == pd.Timestamp(b)
    return a == b


def _assert_matches_reference(frame: pd.DataFrame, expected: dict) -> None:
    actual = {(r["user_id"], r["listing_id"], r["example_date"]): r for r in frame.to_dict("records")}
    assert len(actual) == len(frame), "two rows for one (user, listing, day)"
    assert set(actual) == set(expected), (len(actual), len(expected))
    for key, exp in expected.items():
        row = actual[key]
        for column in COMPARED:
            assert _same(exp[column], row[column]), (key, column, exp[column], row[column])


def test_asset_matches_brute_force_reference(world, conn):
    """The training_set asset (a real Dagster run) equals the plain-Python join row for row, with
    missing snapshots as nulls; the Parquet folder, split and metadata are as documented."""
    first, last = EXAMPLES
    run_config = {
        "ops": {
            "training_set": {
                "config": {
                    "start_date": first.isoformat(),
                    "end_date": last.isoformat(),
                    "validation_days": 2,
                    "test_days": 2,
                }
            }
        }
    }
    result = dg.materialize([training_set_asset], resources=defs.resources, run_config=run_config)
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    path = Path(meta["path"].value)
    frame = training_set.load(path)
    expected = reference_examples(*_db_inputs(conn), first, last)
    _assert_matches_reference(frame, expected)

    assert meta["dagster/row_count"].value == len(frame) == len(expected)
    assert frame["features_as_of"].isna().any() and frame["features_as_of"].notna().any()
    assert sorted(p.name for p in path.glob("example_date=*")) == [
        f"example_date={(first + timedelta(days=k)).isoformat()}" for k in range((last - first).days + 1)
    ]
    splits = meta["splits"].value
    assert splits["test"]["first_day"] == (last - timedelta(days=1)).isoformat()
    assert splits["validation"]["last_day"] == (last - timedelta(days=2)).isoformat()
    assert sum(s["rows"] for s in splits.values()) == len(frame)
    for name, s in splits.items():
        part = frame[frame["split"] == name]
        assert part["example_date"].between(s["first_day"], s["last_day"]).all()
        assert s["positive_rate"] == pytest.approx(part["label"].mean())
    assert meta["fingerprint"].value == path.name
    assert meta["features"].value == list(training_set.FEATURES)
    # same data and knobs -> same fingerprint
    rebuilt = training_set.build(conn, _config(first, last), write=False)
    assert rebuilt.fingerprint == path.name


def test_staleness_and_availability_lag_match_reference(world, conn):
    """Other knobs, same agreement; with a 4 h lag no example uses a snapshot younger than 4 h,
    so the night's examples fall back to the day before."""
    first, last = EXAMPLES
    lag, staleness = timedelta(hours=4), timedelta(hours=36)
    built = training_set.build(
        conn, _config(first, last, availability_lag=lag, max_staleness=staleness), write=False
    )
    events, history, listings = _db_inputs(conn)
    _assert_matches_reference(
        built.frame,
        reference_examples(
            events, history, listings, first, last, max_staleness=staleness, availability_lag=lag
        ),
    )
    f = built.frame.dropna(subset=["features_as_of"])
    assert (f["features_as_of"] + lag <= f["example_time"]).all()
    assert (f["features_as_of"] >= f["example_time"] - staleness).all()
    night = f[f["hour_of_day"] < 4]
    assert len(night) and (night["example_time"] - night["features_as_of"] >= timedelta(hours=24)).all()


def _perturb(cur, rng: random.Random, examples: pd.DataFrame, lag: timedelta) -> None:
    """Change the world only at or after each example's time: history snapshots the example may not
    see yet (as_of + lag > t) are rewritten, deleted or added; raw events at or after t are added."""
    for row in examples.itertuples():
        t = row.example_time.to_pydatetime()
        kind = rng.choice(["rewrite", "delete", "insert", "events"])
        if kind == "rewrite":
            cur.execute(
                "update features.user_features_history set activity_score = %s, price_sensitivity = %s, "
                "category_affinity = jsonb_build_object(%s, 1.0) "
                "where user_id = %s and as_of + %s > %s",
                (rng.random() * 0.99, rng.random(), row.category_id or "x", row.user_id, lag, t),
            )
        elif kind == "delete":
            cur.execute(
                "delete from features.user_features_history where user_id = %s and as_of + %s > %s",
                (row.user_id, lag, t),
            )
        elif kind == "insert":
            # a snapshot stamped inside (t - lag, t + 2 days]: not available at t
            as_of = t - lag + timedelta(seconds=rng.randint(1, 2 * 86400))
            cur.execute(
                "insert into features.user_features_history (user_id, category_affinity, city_affinity, "
                "price_sensitivity, activity_score, as_of, last_updated_at) "
                "values (%s, %s, %s, %s, %s, %s, now()) on conflict (user_id, as_of) do nothing",
                (row.user_id, json.dumps({row.category_id or "x": 1.0}), json.dumps({}), 0.5, 0.5, as_of),
            )
        else:
            # events of the same pair and user at or after t (same day or later)
            for seconds in (0, rng.randint(1, 3 * 86400)):
                cur.execute(
                    "insert into raw.user_interactions (event_id, user_id, listing_id, event_type, occurred_at, "
                    "device_type) values (gen_random_uuid(), %s, %s, %s, %s, %s)",
                    (
                        row.user_id,
                        row.listing_id,
                        rng.choice(["impression", "listing_viewed", "listing_contact_clicked"]),
                        t + timedelta(seconds=seconds),
                        rng.choice(["ios", "android", "web", "other"]),
                    ),
                )


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), lag_hours=st.sampled_from([0, 4]))
def test_changes_at_or_after_example_time_do_not_change_features(world, conn, seed, lag_hours):
    """Property: rewriting/deleting/adding snapshots the example cannot see yet, or adding events at or
    after its time, leaves every feature of that example unchanged (only its label may change)."""
    first, last = MODEL_EXAMPLES
    lag = timedelta(hours=lag_hours)
    config = _config(first, last, availability_lag=lag)
    try:
        before = training_set.build(conn, config, write=False).frame
        rng = random.Random(seed)
        # one example per user: a perturbation after one example may precede another of the same user
        one_per_user = before.drop_duplicates("user_id").index.tolist()
        chosen = before.loc[rng.sample(one_per_user, 25)]
        with conn.cursor() as cur:
            _perturb(cur, rng, chosen, lag)
        after = training_set.build(conn, config, write=False).frame
    finally:
        conn.rollback()
    keys = ["user_id", "listing_id", "example_date"]
    merged = chosen[keys + FEATURE_COLUMNS].merge(
        after[keys + FEATURE_COLUMNS], on=keys, suffixes=("", "_after")
    )
    assert len(merged) == len(chosen)
    for column in FEATURE_COLUMNS:
        for a, b in zip(merged[column], merged[f"{column}_after"], strict=True):
            assert _same(a, b), (column, a, b)


def test_gaps_in_history_pick_last_snapshot_within_staleness(world, conn):
    """A hand-made user with snapshots at D-9 and D-5 only: an example on D uses D-5 when it is
    within max_staleness (bound inclusive), else nulls — never the older D-9."""
    user, listing_day = "00000000-0000-4000-8000-0000000000aa", END - timedelta(days=3)
    d = datetime.combine(listing_day, datetime.min.time(), tzinfo=UTC)
    with conn.cursor() as cur:
        cur.execute("select listing_id::text, category_id from features.listing_features limit 1")
        listing, category = cur.fetchone()
        for days_before, share in ((9, 0.9), (5, 0.4)):
            cur.execute(
                "insert into features.user_features_history (user_id, category_affinity, city_affinity, "
                "price_sensitivity, activity_score, activity_weight, as_of, last_updated_at) "
                "values (%s, %s, '{}', 0.3, %s, 1.0, %s, now())",
                (user, json.dumps({category: share}), share, d - timedelta(days=days_before)),
            )
        for occurred in (d, d + timedelta(hours=10)):  # two pairs: other listing at midnight exactly
            cur.execute(
                "select listing_id::text from features.listing_features offset %s limit 1", (occurred.hour,)
            )
            cur.execute(
                "insert into raw.user_interactions (event_id, user_id, listing_id, event_type, occurred_at, "
                "device_type) values (gen_random_uuid(), %s, %s, 'listing_viewed', %s, 'web')",
                (user, cur.fetchone()[0] if occurred.hour else listing, occurred),
            )

    def user_rows(**kwargs) -> pd.DataFrame:
        frame = training_set.query_examples(
            conn, _config(listing_day - timedelta(days=4), listing_day, **kwargs)
        )
        return frame[frame["user_id"] == user].sort_values("example_time")

    rows = user_rows(max_staleness=timedelta(days=7))
    assert len(rows) == 2
    assert (rows["features_as_of"] == pd.Timestamp(d - timedelta(days=5))).all()
    assert rows["activity_score"].tolist() == [0.4, 0.4]
    assert rows.iloc[0]["user_category_affinity"] == 0.4
    # the midnight example sits exactly on the 5-day bound (kept); the 10:00 one is past it (nulls)
    rows = user_rows(max_staleness=timedelta(days=5))
    assert rows.iloc[0]["features_as_of"] == pd.Timestamp(d - timedelta(days=5))
    assert pd.isna(rows.iloc[1]["features_as_of"]) and pd.isna(rows.iloc[1]["activity_score"])
    assert pd.isna(rows.iloc[1]["user_category_affinity"])
    # staleness 4 days: D-5 too old, D-9 older still -> nulls, the example is kept
    rows = user_rows(max_staleness=timedelta(days=4))
    assert len(rows) == 2 and rows["features_as_of"].isna().all()
    # the lag bound is inclusive too: D-5 + 5 days is available exactly at D 00:00; one second more
    # lag and the midnight example falls back to D-9 (within a 10-day staleness)
    rows = user_rows(max_staleness=timedelta(days=7), availability_lag=timedelta(days=5))
    assert rows.iloc[0]["features_as_of"] == pd.Timestamp(d - timedelta(days=5))
    rows = user_rows(max_staleness=timedelta(days=10), availability_lag=timedelta(days=5, seconds=1))
    assert rows.iloc[0]["features_as_of"] == pd.Timestamp(d - timedelta(days=9))
    assert rows.iloc[1]["features_as_of"] == pd.Timestamp(d - timedelta(days=5))


def _model_run(instance, **model_config) -> dg.ExecuteInJobResult:
    first, last = MODEL_EXAMPLES
    run_config = {
        "ops": {
            "training_set": {
                "config": {
                    "start_date": first.isoformat(),
                    "end_date": last.isoformat(),
                    "validation_days": 2,
                    "test_days": 2,
                }
            },
            "ctr_model": {"config": model_config},
        }
    }
    return dg.materialize(
        [training_set_asset, ctr_model_asset, ctr_model_promotion],
        resources=defs.resources,
        run_config=run_config,
        instance=instance,
        raise_on_error=False,
    )


def _check(result: dg.ExecuteInJobResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def _version(result: dg.ExecuteInJobResult) -> str:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["ctr_model"]]
    return events[0].materialization.metadata["version"].value


def test_ctr_model_trains_registers_promotes_and_refuses(world):
    """Train through Dagster: artefacts in the registry, sane metrics beside the baselines and the
    ground truth; the check promotes the first model, refuses a worse one, accepts an equal one."""
    instance = dg.DagsterInstance.ephemeral()
    result = _model_run(instance)
    assert result.success
    version = _version(result)
    assert _check(result).passed
    assert model_registry.current_version() == version

    folder = model_registry.registry_dir() / version
    for name in (
        "model.txt",
        "metadata.json",
        "report/roc.png",
        "report/calibration.png",
        "report/feature_importance.png",
    ):
        assert (folder / name).stat().st_size > 0, name
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["features"] == list(training_set.FEATURES)
    assert set(meta["category_levels"]) == set(training_set.CATEGORICAL_FEATURES)
    assert meta["category_levels"]["device_type"] == ["android", "ios", "other", "web"]
    assert meta["training_window"]["test"]["last_day"] == MODEL_EXAMPLES[1].isoformat()
    assert len(meta["data_fingerprint"]) == 16
    metrics = meta["metrics"]
    model, glob, aff = metrics["model"], metrics["baseline_global_rate"], metrics["baseline_affinity_only"]
    assert glob["roc_auc"] == 0.5
    assert model["roc_auc"] > 0.6 and model["roc_auc"] > aff["roc_auc"] - 0.02
    assert model["log_loss"] < glob["log_loss"]
    assert 0 <= model["ece"] < 0.05 and 0 < model["pr_auc"] < 1
    assert meta["feature_service"] == training_set.FEATURE_SERVICE
    # the lambdarank ranker is reported beside the classifier on the same (user, day) queries
    ranker = metrics["ranker"]
    assert 0 < model["ndcg_at_10"] <= 1 and 0 < ranker["ndcg_at_10"] <= 1
    assert ranker["examples"] == model["examples"] and ranker["roc_auc"] > 0.55

    # the ground truth's AUC on the same test examples (the best achievable): reported, and the
    # registry model scores exactly as in training
    frame = training_set.load(Path(meta["training_set_path"]))
    test = frame[frame["split"] == "test"]
    loaded = model_registry.load(version)
    p = loaded.predict(test)
    assert evaluate(test["label"].to_numpy(), p)["roc_auc"] == pytest.approx(model["roc_auc"], abs=1e-12)
    truth = world["data"].ground_truth.assign(example_date=lambda g: g["day"].dt.strftime("%Y-%m-%d"))
    joined = test.assign(p=p).merge(truth, on=["user_id", "listing_id", "example_date"], how="inner")
    assert len(joined) > 0.9 * len(test)
    true_auc = roc_auc(joined["label_x"].to_numpy(), joined["true_p"].to_numpy())
    model_auc = roc_auc(joined["label_x"].to_numpy(), joined["p"].to_numpy())
    print(
        f"\nxs test days: model AUC {model_auc:.4f}, true-p AUC {true_auc:.4f} "
        f"(ratio {model_auc / true_auc:.3f}), affinity-only {aff['roc_auc']:.4f}, global rate 0.5"
    )
    assert true_auc > model_auc * 0.9

    worse = _model_run(instance, features=["hour_of_day", "day_of_week"])
    assert not _check(worse).passed
    assert not worse.success  # the blocking check fails the run
    assert model_registry.current_version() == version
    assert "refused" in _check(worse).metadata["reason"].value

    again = _model_run(instance)  # same data, deterministic training: equal, so "not worse"
    assert _check(again).passed
    assert model_registry.current_version() == _version(again) != version


# ---------------------------------------------------------------- windows that cannot be trained on


def _failure_message(result: dg.ExecuteInJobResult) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    return failure.step_failure_data.user_failure_data.description


def test_a_window_without_training_days_fails_first_with_the_same_line_everywhere(world, monkeypatch):
    """10 days with 7 + 7 held out: the config, the Dagster asset and the CLI refuse with one line that
    says what to change, before any query runs."""
    expected = (
        "the window 2026-11-20..2026-11-29 has 10 days: 7 validation + 7 test days leave no training "
        "days; use days >= 15 (or an earlier start) or fewer validation/test days"
    )
    with pytest.raises(training_set.TrainingSetWindowError) as raised:
        TrainingSetRunConfig(days=10, end_date="2026-11-29").to_config()
    assert str(raised.value) == expected

    run_config = {"ops": {"training_set": {"config": {"days": 10, "end_date": "2026-11-29"}}}}
    result = dg.materialize(
        [training_set_asset], resources=defs.resources, run_config=run_config, raise_on_error=False
    )
    assert not result.success
    assert _failure_message(result) == expected

    monkeypatch.setenv("FS_DATABASE_URL", world["database_url"])
    cli = CliRunner().invoke(main, ["training-set", "--days", "10", "--end", "2026-11-29"])
    assert cli.exit_code == 1
    assert cli.stderr == f"Error: {expected}\n"


def test_the_default_window_is_the_one_constant():
    """The asset's default window and the CLI's (through window_config) are DEFAULT_DAYS, which is
    the train, validation and test days added up."""
    today = date(2026, 12, 1)
    config = TrainingSetRunConfig().to_config(today=today)
    assert config == training_set.window_config(today=today)
    assert (config.end - config.start).days + 1 == training_set.DEFAULT_DAYS == 35 + 7 + 7
    ranges = config.split_ranges()
    assert (ranges["train"][1] - ranges["train"][0]).days + 1 == training_set.DEFAULT_TRAIN_DAYS


def test_a_window_past_the_data_is_refused_before_the_join(world, conn):
    """Test days after the last event: refused by the coverage probe, nothing written."""
    root = training_set.training_sets_dir()
    before = sorted(p.name for p in root.iterdir()) if root.exists() else []
    config = _config(END - timedelta(days=3), END + timedelta(days=2))  # test days 03-02..03-03
    with pytest.raises(training_set.TrainingSetWindowError) as raised:
        training_set.build(conn, config)
    assert str(raised.value) == (
        "the test days 2026-03-02..2026-03-03 of the window 2026-02-26..2026-03-03 have no events "
        "(events cover only 2026-02-26..2026-02-28 in it); move the window (start/end) or use fewer days"
    )
    assert (sorted(p.name for p in root.iterdir()) if root.exists() else []) == before


def test_a_split_without_positives_is_refused_after_the_join(world, conn):
    """The test days lose their contacts and favourites (in a transaction rolled back): the build
    stops with the split, its days and its size instead of writing a set training cannot use."""
    first, last = MODEL_EXAMPLES
    with conn.cursor() as cur:
        cur.execute(
            "delete from raw.user_interactions where occurred_at >= %s and event_type = any(%s)",
            (f"{last - timedelta(days=1)}T00:00:00Z", ["listing_contact_clicked", "listing_favorited"]),
        )
    with pytest.raises(training_set.TrainingSetWindowError) as raised:
        training_set.build(conn, _config(first, last), write=False)
    message = str(raised.value)
    assert message.startswith("the test split (2026-02-27..2026-02-28) has ")
    assert message.endswith(
        " examples, all negative, but it needs both positive and negative examples; use more days "
        "(days, validation_days, test_days) or a window with more events"
    )


# ---------------------------------------------------------------- promotion against the baselines


@pytest.fixture(scope="module")
def model_set(world, tmp_path_factory) -> Path:
    """The MODEL_EXAMPLES training set, written to a folder of its own."""
    built = training_set.build(
        world["conn"], _config(*MODEL_EXAMPLES), root=tmp_path_factory.mktemp("model_set")
    )
    world["conn"].rollback()
    return built.path


def test_a_first_model_that_loses_to_the_baselines_is_not_promoted(model_set, tmp_path):
    """No current model is no excuse: a model on the hour and weekday only loses to the affinity-only
    baseline and is refused by the baseline rule; the full model beats both and is promoted."""
    weak = workflow.train_and_register(model_set, features=["hour_of_day", "day_of_week"], root=tmp_path)
    decision = workflow.promote_if_better(weak.version, tmp_path)
    metrics = weak.trained.metrics
    assert decision.candidate_auc <= metrics["baseline_affinity_only"]["roc_auc"]
    assert not decision.promoted and decision.current is None
    assert decision.rule == "baselines"
    assert decision.reason.startswith("refused by the baseline rule: AUC ")
    assert decision.baseline_auc == metrics["baseline_affinity_only"]["roc_auc"]
    assert decision.baseline_log_loss == pytest.approx(metrics["baseline_global_rate"]["log_loss"], abs=1e-12)
    assert model_registry.current_version(tmp_path) is None

    full = workflow.train_and_register(model_set, root=tmp_path)
    decision = workflow.promote_if_better(full.version, tmp_path)
    assert decision.promoted and decision.rule == "no current model", decision.reason
    assert decision.candidate_auc > decision.baseline_auc
    assert decision.candidate_log_loss < decision.baseline_log_loss
    assert decision.reason.startswith("promoted: no current model and beats the baselines")
    assert model_registry.current_version(tmp_path) == full.version


# ---------------------------------------------------------------- fs-platform training-set / train


def test_cli_builds_trains_and_decides_like_the_assets(world, model_set, tmp_path, monkeypatch):
    """`training-set` writes the same set (same fingerprint) as the asset code; `train` on it
    registers a model and prints its metrics beside the baselines and the promotion decision."""
    monkeypatch.setenv("FS_DATABASE_URL", world["database_url"])
    monkeypatch.setenv("FS_MODEL_REGISTRY_DIR", str(tmp_path / "models"))
    first, last = MODEL_EXAMPLES
    window = ["--start", str(first), "--end", str(last), "--validation-days", "2", "--test-days", "2"]
    built = CliRunner().invoke(main, ["training-set", *window], catch_exceptions=False)
    assert built.exit_code == 0, built.stderr
    assert built.stdout.startswith(f"training set {model_set.name}: ")
    assert "  test       2026-02-27..2026-02-28 " in built.stdout

    trained = CliRunner().invoke(main, ["train", "--training-set", str(model_set)], catch_exceptions=False)
    assert trained.exit_code == 0, trained.stderr
    (version,) = model_registry.versions(tmp_path / "models")
    meta = json.loads((tmp_path / "models" / version / "metadata.json").read_text())
    lines = trained.stdout.splitlines()
    assert f"ctr_model {version} (registry {tmp_path / 'models' / version}):" in lines
    model_row = next(line for line in lines if line.startswith("  model "))
    assert f"{meta['metrics']['model']['roc_auc']:8.4f}" in model_row
    assert any(line.startswith("  baseline_affinity_only ") for line in lines)
    assert (
        "promotion (no current model rule): promoted: no current model and beats the baselines"
        in trained.stdout
    )
    assert lines[-1] == f"current model: {version}"


def test_repricing_a_listing_today_changes_no_existing_example(world, conn, tmp_path):
    """Item features are as of the example time: a listing re-delivered today with another price
    and category (a new version valid from now) leaves every existing example and partition as it
    was, after dbt has run again."""
    first, last = EXAMPLES
    before = training_set.query_examples(conn, _config(first, last))
    listing = before.dropna(subset=["price"])["listing_id"].iloc[0]
    with conn.cursor() as cur:
        cur.execute(
            "select category_id, city, price::float8, is_premium, image_count, created_at "
            "from raw.listings where listing_id = %s",
            (listing,),
        )
        category, city, price, premium, images, created = cur.fetchone()
    conn.commit()
    changed = pd.DataFrame(
        [
            {
                "listing_id": listing,
                "category_id": f"{category}_relisted",
                "city": city,
                "price": price * 3 + 1,
                "is_premium": not premium,
                "image_count": images + 1,
                "created_at": created,
            }
        ]
    )
    changed.to_parquet(tmp_path / "repriced.parquet")
    report = ingest_listings_file(conn, tmp_path / "repriced.parquet")
    assert report.versions_added == 1
    assert run_partition(FEATURE_DAYS[1]).success  # dbt rebuilds the versions and the last partition
    after = training_set.query_examples(conn, _config(first, last))
    assert len(after) == len(before)
    for column in FEATURE_COLUMNS:
        for a, b in zip(before[column], after[column], strict=True):
            assert _same(a, b), (column, a, b)


def test_ndcg_at_k_against_hand_computed_queries():
    from fs_platform.model.training import ndcg_at_k

    queries = np.array([0, 0, 0, 1, 1, 2, 2])
    y = np.array([0, 1, 1, 1, 0, 0, 0])
    score = np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.5, 0.4])
    # query 0: ranking (0, 1, 1) -> DCG 1/log2(3) + 1/log2(4); ideal 1 + 1/log2(3)
    q0 = (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    # query 1: the positive second -> 1/log2(3); query 2 has no positive and is left out
    q1 = 1 / np.log2(3)
    assert ndcg_at_k(queries, y, score) == pytest.approx((q0 + q1) / 2, rel=1e-12)
    assert ndcg_at_k(queries, y, score, k=1) == pytest.approx(0.0)
    assert ndcg_at_k(queries, y, -score, k=3) == pytest.approx(
        ((1 + 1 / np.log2(3)) / (1 + 1 / np.log2(3)) + 1.0) / 2
    )
