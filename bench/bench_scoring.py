"""`POST /v1/score` latency at one scale: 100 candidates per request, concurrency 1.

Serves the model the training benchmark just trained (its registry under the bench folder) on the
bench database's real ``user_features`` and ``listing_features``, synced to Redis under a bench
prefix. ``fs-platform serve`` runs with the feature cache off (every request reads Redis) and is
driven by the raw-socket keep-alive load generator (``bench/http_load.py``).

Side by side in the same run, the two parts a score request cannot avoid: the HTTP round trip of
``/v1/features/batch`` for 100 users (one Redis read, JSON out) and the model alone, LightGBM's
``predict`` on 100 pre-encoded rows in-process.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson

from bench import bench_online, http_load
from bench.bench_training import registry_root
from bench.common import target, write_result
from bench.database import bench_database
from fs_platform.infra.runtime import ensure_services, pg_connect
from fs_platform.ingestion.vocabulary import DEVICE_TYPES
from fs_platform.model import registry as model_registry
from fs_platform.online.store import connect
from fs_platform.online.sync import sync_snapshot

PREFIX = "fs_bench_score"
CANDIDATES = 100
REQUESTS_AT = {"xs": 1_000, "s": 3_000, "m": 3_000}


def _sync(database_url: str, redis_url: str) -> tuple[list[str], list[str]]:
    conn = pg_connect(database_url)
    client = connect(redis_url, 30)
    for kind in ("user_features", "listing_features"):
        sync_snapshot(kind, conn, client, prefix=PREFIX)
    with conn.cursor() as cur:
        cur.execute("select user_id::text from features.user_features")
        users = [r[0] for r in cur.fetchall()]
        cur.execute("select listing_id::text from features.listing_features")
        listings = [r[0] for r in cur.fetchall()]
    conn.close()
    return users, listings


def _requests(users: list[str], listings: list[str], n: int) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(5)
    now = datetime.now(UTC).isoformat()
    score, batch = [], []
    for _ in range(n):
        body = {
            "user_id": rng.choice(users),
            "listing_ids": rng.sample(listings, CANDIDATES),
            "context": {"device_type": rng.choice(DEVICE_TYPES), "timestamp": now},
        }
        score.append(http_load.post_json("/v1/score", orjson.dumps(body)))
        batch.append(
            http_load.post_json("/v1/features/batch", orjson.dumps({"user_ids": rng.sample(users, 100)}))
        )
    return score, batch


def _model_only(registry: Path, calls: int) -> list[float]:
    """LightGBM alone on 100 encoded rows (the floor of any scoring request)."""
    model = model_registry.load_current(registry)
    rng = np.random.default_rng(0)
    matrix = rng.random((CANDIDATES, len(model.features)))  # any finite input: the tree walk costs the same
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        model.booster.predict(matrix, num_iteration=model.booster.best_iteration or None, num_threads=1)
        times.append(time.perf_counter() - started)
    return times


def run(scale: str, runs: int, workdir: Path) -> Path:
    registry = registry_root(workdir, scale)
    if model_registry.current_version(registry) is None:
        raise SystemExit(
            f"no model in {registry}: run the training benchmark first (--only training scoring)"
        )
    database_url = bench_database(scale)
    redis_url = ensure_services().redis_url
    requests = REQUESTS_AT[scale]
    try:
        users, listings = _sync(database_url, redis_url)
        score, batch = _requests(users, listings, requests)
        env = {
            "FS_REDIS_URL": redis_url,
            "FS_REDIS_PREFIX": PREFIX,
            "FS_ONLINE_CACHE_SIZE": "0",
            "FS_API_KEYS": "",
            "FS_MODEL_REGISTRY_DIR": str(registry),
            "FS_ONLINE_MAX_AGE_HOURS": "1000000",
        }
        with http_load.serving_api(env) as port:
            http_load.latencies("127.0.0.1", port, score[: requests // 5])  # warm-up
            scores, score_errors = [], 0
            batches, batch_errors = [], 0
            for _ in range(max(1, runs)):
                t, e = http_load.latencies("127.0.0.1", port, score)
                scores += t
                score_errors += e
                t, e = http_load.latencies("127.0.0.1", port, batch)
                batches += t
                batch_errors += e
    finally:
        bench_online.cleanup(redis_url, PREFIX)
    model_only = _model_only(registry, requests)
    p = http_load.percentile
    metrics = {
        "users": len(users),
        "listings": len(listings),
        "candidates_per_request": CANDIDATES,
        "model_version": model_registry.current_version(registry),
        "score_p50_ms": p(scores, 0.5) * 1e3,
        "score_p99_ms": p(scores, 0.99) * 1e3,
        "batch_features_100_p50_ms": p(batches, 0.5) * 1e3,
        "batch_features_100_p99_ms": p(batches, 0.99) * 1e3,
        "model_predict_100_p50_ms": p(model_only, 0.5) * 1e3,
        "model_predict_100_p99_ms": p(model_only, 0.99) * 1e3,
        "requests_measured": len(scores) + len(batches),
        "errors": score_errors + batch_errors,
    }
    ratios = {
        "score_p99_vs_batch_features_100_p99": metrics["score_p99_ms"] / metrics["batch_features_100_p99_ms"],
        "score_p50_vs_batch_features_100_p50": metrics["score_p50_ms"] / metrics["batch_features_100_p50_ms"],
    }
    targets = [
        target("/v1/score p99, 100 candidates, concurrency 1 (ms)", metrics["score_p99_ms"], "<= 10"),
        target("score requests answered non-200", float(score_errors), "<= 0"),
    ]
    notes = (
        f"{len(users):,} users and {len(listings):,} listings of the bench database synced to Redis; "
        f"model {metrics['model_version']} from the training benchmark; 1 uvicorn worker, cache off, "
        "client and server on the same 2 CPUs."
    )
    return write_result("scoring", scale, metrics, ratios, targets, notes=notes)
