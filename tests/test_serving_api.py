"""The serving API against real Redis and real features: routes, errors, auth, metrics,
concurrent readers during snapshot flips (real uvicorn), request size limits (real uvicorn),
and a Redis outage and return, also under 100 concurrent requests."""

from __future__ import annotations

import asyncio
import re
import signal
import statistics
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from online_support import (
    PrivateRedis,
    free_port,
)

from fs_platform.infra.config import get_settings
from fs_platform.infra.runtime import pg_connect
from fs_platform.online.store import OnlineStore, connect
from fs_platform.online.sync import sync_snapshot
from fs_platform.serving import create_app, schemas

FOREVER = timedelta(days=100_000)
UNKNOWN = "00000000-0000-4000-8000-000000000000"
README = Path(__file__).resolve().parent.parent / "README.md"


def _sync(warehouse, prefix, kind="user_features", redis_url=None, **kwargs):
    conn = pg_connect(warehouse.database_url)
    try:
        return sync_snapshot(
            kind, conn, connect(redis_url or warehouse.redis_url, 10), prefix=prefix, **kwargs
        )
    finally:
        conn.close()


def _app(warehouse, prefix, *, redis_url=None, api_keys=(), timeout=0.5, **store_kwargs):
    store_kwargs.setdefault("max_age", FOREVER)
    store = OnlineStore(connect(redis_url or warehouse.redis_url, timeout), prefix=prefix, **store_kwargs)
    return create_app(store, replace(get_settings(), api_keys=tuple(api_keys)))


def test_readyz_is_false_before_the_first_sync(warehouse, prefix):
    client = TestClient(_app(warehouse, prefix))
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False and ready.json()["redis"] is True
    response = client.get(f"/v1/users/{next(iter(warehouse.users))}/features")
    assert response.status_code == 503 and "no user_features snapshot" in response.json()["detail"]
    _sync(warehouse, prefix)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["snapshots"]["user_features"]["as_of"] == warehouse.as_of.isoformat()


def test_feature_routes_and_their_errors(warehouse, prefix):
    users = _sync(warehouse, prefix)
    _sync(warehouse, prefix, "listing_features")
    client = TestClient(_app(warehouse, prefix))
    user_id, features = next(iter(warehouse.users.items()))

    body = client.get(f"/v1/users/{user_id}/features").json()
    assert body["features"] == features and body["user_id"] == user_id
    assert body["snapshot"]["snapshot_id"] == users.snapshot_id and body["snapshot"]["stale"] is False
    some = client.get(f"/v1/users/{user_id}/features", params={"names": "activity_score,price_sensitivity"})
    assert set(some.json()["features"]) == {"activity_score", "price_sensitivity"}

    listing_id, listing = next(iter(warehouse.listings.items()))
    got = client.get(f"/v1/listings/{listing_id}/features").json()["features"]
    assert got == listing

    ids = [*list(warehouse.users)[:5], UNKNOWN, list(warehouse.users)[0]]
    batch = client.post("/v1/features/batch", json={"user_ids": ids}).json()
    assert (batch["found"], batch["missing"]) == (5, 1)
    assert [r["user_id"] for r in batch["results"]] == ids[:6]  # request order, duplicates once
    assert batch["results"][5] == {"user_id": UNKNOWN, "found": False, "features": None}
    assert all(r["features"] == warehouse.users[r["user_id"]] for r in batch["results"][:5])

    # 404 / 422 with a message that says what is wrong
    missing = client.get(f"/v1/users/{UNKNOWN}/features")
    assert missing.status_code == 404 and UNKNOWN in missing.json()["detail"]
    assert client.get(f"/v1/listings/{UNKNOWN}/features").status_code == 404
    bad = client.get("/v1/users/not-a-uuid/features")
    assert bad.status_code == 422 and "not a valid UUID: 'not-a-uuid'" in bad.json()["detail"]
    oversize = client.post("/v1/features/batch", json={"user_ids": [user_id] * 1001})
    assert oversize.status_code == 422 and "at most 1000" in oversize.json()["detail"]
    assert "empty" in client.post("/v1/features/batch", json={"user_ids": []}).json()["detail"]
    mixed = client.post("/v1/features/batch", json={"user_ids": [user_id, "nope"]})
    assert mixed.status_code == 422 and "user_ids 1" in mixed.json()["detail"]
    unknown_name = client.get(f"/v1/users/{user_id}/features", params={"names": "colour"})
    assert unknown_name.status_code == 422 and "colour" in unknown_name.json()["detail"]


def _expected_service_row(user: dict | None, listing: dict | None) -> dict:
    """The contact service's values of one (user, listing) row, written from the formulas of the
    docs (not from the on-demand code): a share is 0 when the user's map lacks the key (also when
    the listing is unknown), null when the user is unknown."""
    row = {
        f"user_features:{n}": None if user is None else user[n]
        for n in ("price_sensitivity", "activity_score")
    }
    for name in ("price", "price_pct", "is_premium", "image_count", "category_id", "city"):
        row[f"listing_features:{name}"] = None if listing is None else listing[name]
    for name, key in (("category", "category_id"), ("city", "city")):
        shares = None if user is None else user[f"{name}_affinity"]
        value = None if listing is None else listing[key]
        row[f"on_demand:user_{name}_affinity"] = None if shares is None else shares.get(value, 0.0)
    pct = None if listing is None else listing["price_pct"]
    sens = None if user is None else user["price_sensitivity"]
    row["on_demand:price_gap"] = None if pct is None or sens is None else abs(pct - sens)
    return row


def test_generic_route_serves_any_view_or_service_for_any_entity_rows(warehouse, prefix):
    _sync(warehouse, prefix)
    _sync(warehouse, prefix, "listing_features")
    client = TestClient(_app(warehouse, prefix))
    users, listings = list(warehouse.users), list(warehouse.listings)
    user_ids = [*users[:40], UNKNOWN, users[0]]
    listing_ids = [*listings[:40], listings[1], UNKNOWN]
    response = client.post(
        "/v1/features/get",
        json={"features": "contact_model", "entities": {"user_id": user_ids, "listing_id": listing_ids}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"] == len(user_ids) and set(body["snapshots"]) == {"user_features", "listing_features"}
    assert body["found"]["user_features"] == [u != UNKNOWN for u in user_ids]
    for i, (u, li) in enumerate(zip(user_ids, listing_ids, strict=True)):
        expected = _expected_service_row(warehouse.users.get(u), warehouse.listings.get(li))
        assert list(expected) == body["features"]
        for ref, value in expected.items():
            got = body["values"][ref][i]
            if value is None or isinstance(value, str | bool):
                assert got == value, (ref, i)
            else:
                assert got == pytest.approx(value, rel=1e-12, abs=1e-15), (ref, i)

    # any references, one entity only; a service name inside a list expands in place
    one = client.post(
        "/v1/features/get",
        json={"features": ["user_features:category_affinity"], "entities": {"user_id": users[:3]}},
    ).json()
    assert one["values"]["user_features:category_affinity"] == [
        warehouse.users[u]["category_affinity"] for u in users[:3]
    ]
    assert set(one["snapshots"]) == {"user_features"}

    for payload, message in (
        ({"features": ["user_features:colour"], "entities": {"user_id": users[:1]}}, "no feature 'colour'"),
        ({"features": ["nope:x"], "entities": {"user_id": users[:1]}}, "names no feature view"),
        (
            {"features": "contact_model", "entities": {"user_id": users[:1]}},
            "needs the entity key 'listing_id'",
        ),
        (
            {"features": "contact_model", "entities": {"user_id": users[:2], "listing_id": listings[:1]}},
            "differ in length",
        ),
        ({"features": "contact_model", "entities": {}}, "entities is empty"),
        (
            {"features": ["user_features:activity_score"], "entities": {"user_id": users[:1] * 1001}},
            "1001 entity rows",
        ),
        ({"features": ["user_features:activity_score"], "entities": {"user_id": ["nope"]}}, "UUID"),
    ):
        bad = client.post("/v1/features/get", json=payload)
        assert bad.status_code == 422 and message in bad.json()["detail"], (payload, bad.text)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{not json", "application/json", "body: not valid JSON: Expecting property name"),
        (b"\xff{}", "application/json", "body: not valid JSON: not UTF-8 text"),
        (b"", "application/json", "body: the request body is empty"),
        (b"[1, 2]", "application/json", "body: the request body must be a JSON object, not an array"),
        (b"null", "application/json", "body: the request body must be a JSON object, not null"),
        (b'{"user_ids": []}', "text/plain", "body: not a JSON body: send a JSON object with Content-Type"),
        (b"{not json", None, "body: not a JSON body"),
    ],
)
def test_bodies_that_are_not_a_json_object_get_422_with_one_line(
    warehouse, prefix, body, content_type, message
):
    """Never FastAPI's bare 400: the README promises 422 for every malformed input."""
    client = TestClient(_app(warehouse, prefix))
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v1/features/batch", content=body, headers=headers)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(message) and "\n" not in detail, detail
    assert response.json()["errors"][0]["loc"] == ["body"]


def test_stale_features_are_flagged_not_hidden(warehouse, prefix):
    _sync(warehouse, prefix)
    client = TestClient(_app(warehouse, prefix, max_age=timedelta(hours=1)))
    response = client.get(f"/v1/users/{next(iter(warehouse.users))}/features")
    assert response.status_code == 200
    assert response.json()["snapshot"]["stale"] is True and response.headers["X-Features-Stale"] == "true"


def test_api_keys(warehouse, prefix):
    _sync(warehouse, prefix)
    client = TestClient(_app(warehouse, prefix, api_keys=("k-one", "k-two")))
    url = f"/v1/users/{next(iter(warehouse.users))}/features"
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.get(url, headers={"X-API-Key": "k-two"}).status_code == 200
    assert client.post("/v1/features/batch", json={"user_ids": [UNKNOWN]}).status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]


def test_openapi_documents_every_route_with_examples(warehouse, prefix):
    schema = TestClient(_app(warehouse, prefix)).get("/openapi.json").json()
    paths = schema["paths"]
    assert {
        "/v1/users/{user_id}/features",
        "/v1/features/batch",
        "/v1/listings/{listing_id}/features",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(paths)
    for path, operations in paths.items():
        for operation in operations.values():
            assert operation.get("summary"), path
    components = schema["components"]["schemas"]
    for model in ("UserFeaturesResponse", "BatchResponse", "BatchRequest", "ListingFeaturesResponse"):
        assert components[model].get("examples"), model
    user_route = paths["/v1/users/{user_id}/features"]["get"]
    assert set(user_route["responses"]) == {"200", "404", "422", "431", "503"}
    for path in ("/v1/features/batch", "/v1/score"):
        assert set(paths[path]["post"]["responses"]) == {"200", "413", "422", "431", "503"}, path
    assert set(paths["/v1/features/get"]["post"]["responses"]) == {"200", "413", "422", "431", "503"}
    assert "1000 user ids" in schema["info"]["description"]
    assert components["BatchRequest"]["properties"]["user_ids"]["maxItems"] == schemas.MAX_BATCH


def test_readme_lists_every_documented_error_code_and_limit(warehouse, prefix):
    """The README's serving section names each status code the OpenAPI schema documents."""
    schema = TestClient(_app(warehouse, prefix, api_keys=("k",))).get("/openapi.json").json()
    codes = {
        code
        for path, operations in schema["paths"].items()
        if path.startswith("/v1/")
        for operation in operations.values()
        for code in operation["responses"]
        if code != "200"
    }
    assert codes == {"401", "403", "404", "413", "422", "431", "503"}
    section = README.read_text().split("## Online store and serving API", 1)[1].split("\n## ", 1)[0]
    for code in codes:
        assert re.search(rf"\b{code}\b", section), f"README does not mention {code}"
    for limit in ("1000", "500", "1 MiB", "16 KiB"):
        assert limit in section, limit


def test_metrics_are_exposed(warehouse, prefix):
    _sync(warehouse, prefix)
    client = TestClient(_app(warehouse, prefix, cache_size=100, cache_ttl=60))
    user_id = next(iter(warehouse.users))
    for _ in range(3):
        client.get(f"/v1/users/{user_id}/features")
    client.get("/v1/users/bad/features")
    text = client.get("/metrics").text
    assert (
        'fs_serving_request_duration_seconds_bucket{le="0.005",method="GET",route="/v1/users/{user_id}/features"}'
        in text
    )
    assert (
        'fs_serving_requests_total{method="GET",route="/v1/users/{user_id}/features",status="422"} 1.0'
        in text
    )
    assert "fs_serving_cache_hit_ratio 0.666" in text  # 2 of 3 reads from the cache
    assert 'fs_serving_snapshot_age_seconds{view="user_features"}' in text
    assert 'fs_serving_errors_total{cause="invalid_request"} 1.0' in text


class _Server:
    """The app under a real uvicorn server in a thread (thread pool, sockets, keep-alive)."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_concurrent_batches_during_snapshot_flips_never_mix_snapshots(warehouse, prefix):
    (as_of_a, view_a), (as_of_b, view_b) = sorted(warehouse.views.items())
    expected = {
        as_of_a.isoformat(): warehouse.history[as_of_a],
        as_of_b.isoformat(): warehouse.history[as_of_b],
    }
    ids = sorted(set(warehouse.history[as_of_a]) | set(warehouse.history[as_of_b]))
    _sync(warehouse, prefix, source=view_a)
    stop = threading.Event()
    seen: list[str] = []
    failures: list[str] = []

    def reader(url: str, offset: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            i = offset
            while not stop.is_set():
                chunk = ids[(i * 97) % len(ids) :][:400]
                i += 1
                response = http.post("/v1/features/batch", json={"user_ids": chunk})
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                body = response.json()
                as_of = body["snapshot"]["as_of"]
                seen.append(as_of)
                truth = expected[as_of]
                for item in body["results"]:  # every row from that one snapshot
                    if item["features"] != truth.get(item["user_id"]):
                        failures.append(f"{item['user_id']} differs from snapshot {as_of}")

    app = _app(warehouse, prefix, cache_size=5000, cache_ttl=0.05)
    with _Server(app) as url:
        threads = [threading.Thread(target=reader, args=(url, k)) for k in range(4)]
        for thread in threads:
            thread.start()
        for flip in range(16):
            _sync(warehouse, prefix, source=view_b if flip % 2 == 0 else view_a, grace_seconds=5)
            time.sleep(0.03)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures, failures[:5]
    assert len(seen) > 50 and set(seen) == set(expected)  # both snapshots were served


def test_redis_outage_gives_503_quickly_and_recovers_without_restart(warehouse, tmp_path):
    private = PrivateRedis(tmp_path)
    private.start()
    try:
        prefix = "fs_outage"
        _sync(warehouse, prefix, redis_url=private.url)
        connect(private.url, 1).save()  # so a restarted server comes back with the snapshot
        client = TestClient(_app(warehouse, prefix, redis_url=private.url, timeout=0.3))
        url = f"/v1/users/{next(iter(warehouse.users))}/features"
        batch = {"user_ids": list(warehouse.users)[:50]}
        assert client.get(url).status_code == 200

        private.signal(signal.SIGSTOP)  # frozen: accepts connections, never answers
        try:
            for request in (lambda: client.get(url), lambda: client.post("/v1/features/batch", json=batch)):
                started = time.monotonic()
                response = request()
                assert response.status_code == 503 and "unavailable" in response.json()["detail"]
                assert time.monotonic() - started < 2.0  # bounded: ~2 x the 0.3 s timeout
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200
        finally:
            private.signal(signal.SIGCONT)
        _served_again(client, url)  # thawed: served again

        private.kill()  # down: connection refused
        started = time.monotonic()
        assert client.get(url).status_code == 503
        assert time.monotonic() - started < 2.0
        assert client.get("/readyz").json()["redis"] is False
        private.start()  # back (same port, snapshot reloaded from the dump): no API restart
        _served_again(client, url)
        assert client.post("/v1/features/batch", json=batch).json()["found"] == 50
        assert client.get("/readyz").status_code == 200
        assert 'fs_serving_errors_total{cause="redis_unavailable"}' in client.get("/metrics").text
    finally:
        private.kill()


def _served_again(client: httpx.Client, url: str, within: float = 5.0) -> float:
    """Seconds until ``url`` is served (200) again; the breaker's cooldown (1 s) plus one probe
    bound it, ``within`` is generous for a loaded machine."""
    started = time.monotonic()
    while (status := client.get(url).status_code) != 200:
        assert status == 503, status
        assert time.monotonic() - started < within, "the API did not recover by itself"
        time.sleep(0.05)
    return time.monotonic() - started


async def _concurrent(url: str, path: str, n: int) -> list[tuple[int, float]]:
    """``n`` GETs sent at once, each on its own connection: (status, seconds) per request."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:

        async def one() -> tuple[int, float]:
            started = time.monotonic()
            response = await http.get(path)
            return response.status_code, time.monotonic() - started

        return await asyncio.gather(*(one() for _ in range(n)))


def test_frozen_redis_fails_100_concurrent_requests_fast_and_recovers(warehouse, tmp_path):
    """Each blocked call holds a worker thread for up to 2 x the timeout; without the circuit
    breaker the requests queued behind the 40 threads waited 2-3 timeouts for their 503."""
    timeout = 0.5  # FS_REDIS_TIMEOUT_SECONDS' default
    bound = 2 * timeout + 0.5  # the documented bound (README, OpenAPI)
    private = PrivateRedis(tmp_path)
    private.start()
    try:
        prefix = "fs_breaker"
        _sync(warehouse, prefix, redis_url=private.url)
        app = _app(warehouse, prefix, redis_url=private.url, timeout=timeout)
        store = app.state.store
        path = f"/v1/users/{next(iter(warehouse.users))}/features"
        with _Server(app) as url:
            assert {s for s, _ in asyncio.run(_concurrent(url, path, 100))} == {200}

            private.signal(signal.SIGSTOP)  # frozen: accepts connections, never answers
            try:
                results = asyncio.run(_concurrent(url, path, 100))
                statuses = [s for s, _ in results]
                seconds = sorted(t for _, t in results)
                assert statuses == [503] * 100, statuses
                assert seconds[-1] < bound, (statistics.median(seconds), seconds[-1])
                assert store.breaker.is_open and store.breaker.opened == 1
                with httpx.Client(base_url=url, timeout=10) as http:
                    started = time.monotonic()
                    response = http.get(path)  # while open: no wait at all
                    assert response.status_code == 503 and "failing fast" in response.json()["detail"]
                    assert response.headers["Retry-After"] == "1"
                    assert time.monotonic() - started < timeout
                    ready = http.get("/readyz")
                    assert ready.status_code == 503 and ready.json()["redis"] is False
            finally:
                private.signal(signal.SIGCONT)
            with httpx.Client(base_url=url, timeout=10) as http:
                _served_again(http, path)
            assert not store.breaker.is_open
            assert {s for s, _ in asyncio.run(_concurrent(url, path, 100))} == {200}
    finally:
        private.kill()


def test_request_size_limits_over_real_http(warehouse, prefix):
    """Headers over 16 KiB -> 431, bodies over 1 MiB -> 413 (declared or chunked), each with a
    message; a body just under the limit is still read and answered."""
    _sync(warehouse, prefix)
    user_id = next(iter(warehouse.users))
    app = _app(warehouse, prefix)
    with _Server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        path = f"/v1/users/{user_id}/features"
        assert http.get(path, headers={"X-Padding": "a" * 15_000}).status_code == 200
        for size in (17 * 1024, 1_000_000):
            big = http.get(path, headers={"X-Padding": "a" * size})
            assert big.status_code == 431, size
            assert big.json()["detail"].startswith("request headers too large")
            assert "at most 16384" in big.json()["detail"]

        payload = b'{"user_ids": ["' + user_id.encode() + b'"]}'
        under = payload + b" " * (schemas.MAX_BODY_BYTES - len(payload))  # exactly at the limit
        response = http.post(
            "/v1/features/batch", content=under, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200 and response.json()["found"] == 1

        over = b" " * (schemas.MAX_BODY_BYTES + 1)
        response = http.post("/v1/features/batch", content=over, headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert response.json()["detail"] == "request body too large: 1048577 bytes, at most 1048576"

    def chunks(total: int, size: int = 64 * 1024):
        yield payload
        for _ in range(total // size):
            yield b" " * size

    with _Server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        headers = {"Content-Type": "application/json"}  # no Content-Length: chunked
        small = http.post("/v1/features/batch", content=chunks(256 * 1024), headers=headers)
        assert small.status_code == 200 and small.json()["found"] == 1
        streamed = http.post("/v1/features/batch", content=chunks(2 * 1024 * 1024), headers=headers)
        assert streamed.status_code == 413
        assert streamed.json()["detail"].startswith("request body too large: over ")
        text = http.get("/metrics").text
        assert 'fs_serving_errors_total{cause="body_too_large"} 2.0' in text
        assert 'fs_serving_errors_total{cause="headers_too_large"} 2.0' in text
