"""POST /v1/score against real Redis snapshots and a real LightGBM model from the registry.

The decisive test: for examples of the training set whose user snapshot is the one being served,
the API's probability equals the offline model's prediction on the training set's own row (no
train/serve skew), for known and cold-start users; then a new promotion is served without a restart.
"""

from __future__ import annotations

import typing
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from online_support import delete_prefix

from fs_platform.features.registry import load_registry
from fs_platform.infra.config import get_settings
from fs_platform.infra.runtime import pg_connect
from fs_platform.ingestion.vocabulary import DEVICE_TYPES
from fs_platform.model import registry as model_registry
from fs_platform.model.scoring import ScoringContext, input_refs, model_columns
from fs_platform.model.training import train
from fs_platform.online.features import get_online_features
from fs_platform.online.store import OnlineStore, connect
from fs_platform.online.sync import sync_snapshot
from fs_platform.retrieval import training_set
from fs_platform.serving import create_app, schemas
from fs_platform.serving.model_provider import ModelProvider

FOREVER = timedelta(days=100_000)
UNKNOWN = "00000000-0000-4000-8000-000000000000"
FIRST_DAY, LAST_DAY = date(2026, 2, 22), date(2026, 2, 28)  # the warehouse's snapshots: 02-27, 02-28


@pytest.fixture(scope="module")
def scoring(warehouse, tmp_path_factory):
    """Users and listings synced under a private prefix, a training set and a promoted model."""
    folder = tmp_path_factory.mktemp("scoring")
    prefix = f"{warehouse.prefix}:score"
    conn = pg_connect(warehouse.database_url)
    client = connect(warehouse.redis_url, 10)
    for kind in ("user_features", "listing_features"):
        sync_snapshot(kind, conn, client, prefix=prefix)
    config = training_set.TrainingSetConfig(start=FIRST_DAY, end=LAST_DAY, validation_days=1, test_days=1)
    built = training_set.build(conn, config, root=folder / "training_sets")
    conn.close()
    frame = training_set.load(built.path)
    models = folder / "models"
    version = model_registry.save(train(frame, params={"min_data_in_leaf": 20}), {}, root=models).name
    model_registry.promote(version, models)
    yield {"prefix": prefix, "frame": frame, "models": models, "version": version}
    delete_prefix(client, prefix)


def _client(warehouse, scoring, models: Path | None = None) -> TestClient:
    store = OnlineStore(connect(warehouse.redis_url, 2), prefix=scoring["prefix"], max_age=FOREVER)
    provider = ModelProvider(models or scoring["models"])
    return TestClient(create_app(store, replace(get_settings(), api_keys=()), provider))


def _request(row: pd.Series, listing_ids: list[str] | None = None) -> dict:
    return {
        "user_id": row["user_id"],
        "listing_ids": listing_ids or [row["listing_id"]],
        "context": {"device_type": row["device_type"], "timestamp": row["example_time"].isoformat()},
    }


def _served_examples(scoring) -> pd.DataFrame:
    """Examples of the last day whose listing is in the online store: their user snapshot (if any)
    and their item features are the ones in Redis. (A listing created after the last partition has
    no item features in training and is not served yet: see the test below.)"""
    last = _last_day_examples(scoring)
    return last[last["category_id"].notna()]


def _last_day_examples(scoring) -> pd.DataFrame:
    frame = scoring["frame"]
    last = frame[frame["example_date"] == LAST_DAY.isoformat()]
    as_of = pd.Timestamp(datetime(2026, 2, 28, tzinfo=UTC))
    assert (last["features_as_of"].isna() | (last["features_as_of"] == as_of)).all()
    return last


def test_listings_newer_than_the_last_partition_are_unknown_online_and_featureless_offline(
    warehouse, scoring
):
    """A listing created after the latest partition has no item features at any partition: training
    leaves them null and the online store does not hold it yet, so /v1/score reports it unknown."""
    last = _last_day_examples(scoring)
    newer = last[last["category_id"].isna()]
    assert len(newer) >= 1  # xs creates listings every day, some get events on their first day
    store = OnlineStore(connect(warehouse.redis_url, 2), prefix=scoring["prefix"], max_age=FOREVER)
    client = _client(warehouse, scoring)
    for _, row in newer.head(20).iterrows():
        assert store.get_listing(row["listing_id"]).features is None
        assert pd.isna(row["price_pct"]) and pd.isna(row["price"])
        response = client.post("/v1/score", json=_request(row))
        assert response.status_code == 200 and response.json()["unknown_listings"] == [row["listing_id"]]


def test_api_scores_equal_the_offline_model_on_training_rows(warehouse, scoring):
    client = _client(warehouse, scoring)
    examples = _served_examples(scoring)
    with_user = examples[examples["features_as_of"].notna()].head(150)
    cold = examples[examples["features_as_of"].isna()].head(30)
    assert len(with_user) >= 50 and len(cold) >= 5, (len(with_user), len(cold))
    model = model_registry.load(scoring["version"], scoring["models"])
    for part, user_found in ((with_user, True), (cold, False)):
        expected = model.predict(part)
        for (_, row), p in zip(part.iterrows(), expected, strict=True):
            response = client.post("/v1/score", json=_request(row))
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["user_found"] is user_found
            assert body["model_version"] == scoring["version"]
            assert body["unknown_listings"] == []
            [result] = body["results"]
            assert result["listing_id"] == row["listing_id"]
            assert result["probability"] == pytest.approx(p, rel=1e-9, abs=1e-12)


def test_online_feature_rows_equal_the_training_rows(warehouse, scoring):
    """Feature by feature (so a feature the model happens to ignore is checked too), read as the
    model's feature service exactly as /v1/score reads it."""
    store = OnlineStore(connect(warehouse.redis_url, 2), prefix=scoring["prefix"], max_age=FOREVER)
    registry = load_registry()
    model = model_registry.load(scoring["version"], scoring["models"])
    assert model.feature_service == training_set.FEATURE_SERVICE
    refs = input_refs(model, registry)
    assert set(refs) | {"day_of_week", "hour_of_day", "device_type"} == set(training_set.FEATURES)
    examples = _served_examples(scoring)
    for _, row in examples.iterrows():
        entities = {"user_id": [row["user_id"]], "listing_id": [row["listing_id"]]}
        served = get_online_features(store, registry, list(refs.values()), entities)
        context = ScoringContext(row["device_type"], row["example_time"].to_pydatetime())
        online = {
            name: column[0] for name, column in model_columns(model, refs, served.values, context).items()
        }
        for name in training_set.FEATURES:
            offline = row[name]
            if pd.isna(offline):
                assert online[name] is None or pd.isna(online[name]), (name, row["user_id"], online[name])
            elif name in training_set.CATEGORICAL_FEATURES:
                assert online[name] == offline, name
            else:
                assert online[name] == pytest.approx(float(offline), rel=1e-12, abs=1e-15), name


def test_candidates_are_ranked_and_unknown_listings_reported(warehouse, scoring):
    client = _client(warehouse, scoring)
    row = _served_examples(scoring).dropna(subset=["features_as_of"]).iloc[0]
    candidates = list(warehouse.listings)[:120]
    response = client.post("/v1/score", json=_request(row, [*candidates, UNKNOWN, candidates[0]]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["unknown_listings"] == [UNKNOWN]
    probabilities = [r["probability"] for r in body["results"]]
    assert len(probabilities) == len(candidates)  # the duplicate is scored once
    assert probabilities == sorted(probabilities, reverse=True)
    assert len(set(probabilities)) > 10 and all(0 < p < 1 for p in probabilities)
    assert {r["listing_id"] for r in body["results"]} == set(candidates)
    assert body["snapshots"]["user_features"]["as_of"] == warehouse.as_of.isoformat()
    assert response.headers["X-Model-Version"] == scoring["version"]

    only_unknown = client.post("/v1/score", json=_request(row, [UNKNOWN]))
    assert only_unknown.status_code == 200
    assert only_unknown.json()["results"] == [] and only_unknown.json()["unknown_listings"] == [UNKNOWN]


def test_a_new_promotion_is_served_without_restart(warehouse, scoring, tmp_path):
    models = tmp_path / "models"
    client = _client(warehouse, scoring, models)
    row = _served_examples(scoring).dropna(subset=["features_as_of"]).iloc[0]
    response = client.post("/v1/score", json=_request(row))
    assert response.status_code == 503 and "no model has been promoted" in response.json()["detail"]

    first = model_registry.save(
        train(scoring["frame"], params={"min_data_in_leaf": 20}), {}, root=models
    ).name
    model_registry.promote(first, models)
    assert client.post("/v1/score", json=_request(row)).json()["model_version"] == first

    # a different model (fewer features): the next request uses it, with its own predictions
    second_model = train(scoring["frame"], features=["hour_of_day", "device_type", "price_pct"])
    second = model_registry.save(second_model, {}, root=models, version=f"{first}-b").name
    model_registry.promote(second, models)
    body = client.post("/v1/score", json=_request(row)).json()
    assert body["model_version"] == second
    expected = model_registry.load(second, models).predict(row.to_frame().T.infer_objects())
    assert body["results"][0]["probability"] == pytest.approx(expected[0], rel=1e-9)

    # a promoted version that cannot be loaded leaves the previous model serving
    broken = models / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text("{}")
    model_registry.promote("broken", models)
    assert client.post("/v1/score", json=_request(row)).json()["model_version"] == second


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"context": {"device_type": "tablet"}}, "device_type"),
        ({"context": {"device_type": "ios", "timestamp": "2026-02-28T10:00:00"}}, "needs a timezone"),
        ({"listing_ids": []}, "listing_ids is empty"),
        ({"listing_ids": [UNKNOWN] * 501}, "too many candidates: 501"),
        ({"listing_ids": ["not-a-uuid"]}, "not a valid UUID"),
        ({"user_id": "42"}, "not a valid UUID"),
        ({"context": None}, "context"),
        ({"extra": 1}, "extra"),
        ({"context": {"timestamp": 0}}, "timestamp 1970-01-01T00:00:00+00:00 is out of range"),
        ({"context": {"timestamp": "1999-12-31T23:59:59+00:00"}}, "is out of range: send a time from 2000"),
        (
            {"context": {"timestamp": "2999-01-01T00:00:00+00:00"}},
            "timestamp 2999-01-01T00:00:00+00:00 is out",
        ),
        (
            {"context": {"timestamp": (datetime.now(UTC) + timedelta(days=2)).isoformat()}},
            "to one day after now",
        ),
    ],
)
def test_invalid_score_requests_get_422_with_a_message(warehouse, scoring, change, message):
    client = _client(warehouse, scoring)
    request = {"user_id": UNKNOWN, "listing_ids": [UNKNOWN], "context": {"device_type": "web"}, **change}
    response = client.post("/v1/score", json=request)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_the_request_schema_accepts_exactly_the_warehouse_device_types():
    literal = typing.get_type_hints(schemas.ScoreContext)["device_type"]
    assert set(typing.get_args(literal)) == set(DEVICE_TYPES)


def _probabilities(client: TestClient, request: dict) -> dict[str, float]:
    response = client.post("/v1/score", json=request)
    assert response.status_code == 200, response.text
    return {r["listing_id"]: r["probability"] for r in response.json()["results"]}


def test_score_context_defaults_to_device_other_and_now(warehouse, scoring):
    """A request without device_type (or without any context) is scored, not refused."""
    client = _client(warehouse, scoring)
    row = _served_examples(scoring).dropna(subset=["features_as_of"]).iloc[0]
    base = {"user_id": row["user_id"], "listing_ids": list(warehouse.listings)[:50]}

    def scored(context: dict | None) -> dict[str, float]:
        return _probabilities(client, base if context is None else {**base, "context": context})

    at = "2026-02-28T18:30:00+00:00"
    other = scored({"device_type": "other", "timestamp": at})
    assert scored({"timestamp": at}) == other
    # not vacuous: the model tells devices and hours apart
    assert any(scored({"device_type": d, "timestamp": at}) != other for d in ("ios", "android", "web"))
    assert scored({"device_type": "other", "timestamp": "2026-02-28T06:30:00+00:00"}) != other

    before = datetime.now(UTC)
    defaulted = [scored({}), scored(None)]
    after = datetime.now(UTC)
    # "now" as the scorer used it: the hour and day of one of the two explicit times around it
    explicit = [scored({"device_type": "other", "timestamp": t.isoformat()}) for t in (before, after)]
    assert all(d in explicit for d in defaulted)


def test_timestamp_bounds_are_inclusive_at_2000_and_checked_against_now():
    context = schemas.ScoreContext.model_validate({"timestamp": "2000-01-01T00:00:00+00:00"})
    assert context.timestamp == schemas.MIN_TIMESTAMP
    soon = datetime.now(UTC) + timedelta(hours=23)
    assert schemas.ScoreContext.model_validate({"timestamp": soon.isoformat()}).timestamp == soon


def test_the_openapi_schema_documents_the_context_defaults(warehouse, scoring):
    components = _client(warehouse, scoring).get("/openapi.json").json()["components"]["schemas"]
    context = components["ScoreContext"]["properties"]
    assert context["device_type"]["enum"] == list(DEVICE_TYPES)
    assert context["device_type"]["default"] == "other"
    assert "the time of the request" in context["timestamp"]["description"]
    assert "2000-01-01" in context["timestamp"]["description"]
    assert "context" not in components["ScoreRequest"].get("required", [])
