"""Online store and serving API speed, measured side by side in one run.

- sync: ``features.user_features``-shaped rows (synthesised in Postgres, see below) published to
  Redis as one snapshot, vs ``redis-benchmark -c 1 -P 1000 -t set -d <mean value size>`` on the
  same server: the speed limit of pipelined writes from one client;
- in-process reads: ``OnlineStore.get_user`` / ``get_users(100)`` (cache off) vs raw redis-py
  ``HGET`` / ``HMGET`` of the same snapshot keys, interleaved call by call;
- the in-process cache on vs off over the same request stream, at hit mixes from 0 to 100 %, for
  batches of 1 and 100 (throughput ratio and p99 of each);
- HTTP: ``fs-platform serve`` on 127.0.0.1 (one worker, cache off) driven by a raw-socket
  keep-alive load generator (``bench/http_load.py``): latency at concurrency 1 for 1 and 100
  users, throughput at concurrency 8 for 1 user.

The rows are synthesised (not computed by dbt) so the benchmark needs no event data: users with
1-4 categories and 1-3 cities of random shares and random scores, the shape and value size
(~130 bytes) of the real features.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import redis

from bench import http_load
from bench.common import target, write_result
from bench.database import bench_database
from fs_platform.infra.runtime import ensure_services, pg_connect
from fs_platform.online.store import KeyLayout, OnlineStore, connect
from fs_platform.online.sync import sync_snapshot
from fs_platform.online.views import online_views

PREFIX = "fs_bench"
SOURCE = "bench_online.user_features"
USERS_AT = {"xs": 20_000, "s": 100_000, "m": 1_000_000}
READS_AT = {"xs": 3_000, "s": 10_000, "m": 10_000}  # calls per in-process read measurement
HTTP_AT = {"xs": 2_000, "s": 5_000, "m": 5_000}  # requests per HTTP latency measurement
BENCHMARK_DB = 15  # redis-benchmark's keys go to their own database and are removed afterwards

SYNTH_SQL = """
drop table if exists bench_online.user_features;
create table bench_online.user_features as
select u.user_id, c.affinity as category_affinity, t.affinity as city_affinity,
       case when random() < 0.05 then null else random() end as price_sensitivity,
       random() * 0.999 as activity_score,
       %(as_of)s::timestamptz as as_of, now() as last_updated_at
from (select gen_random_uuid() as user_id,
             1 + floor(random() ^ 2 * 4)::int as n_cat, 1 + floor(random() ^ 2 * 3)::int as n_city
      from generate_series(1, %(users)s)) u
cross join lateral (
    select jsonb_object_agg(k, w / total) as affinity
    from (select 'cat_' || lpad(floor(random() * 40)::text, 2, '0') as k, w, sum(w) over () as total
          from (select random() as w from generate_series(1, u.n_cat)) g) x) c
cross join lateral (
    select jsonb_object_agg(k, w / total) as affinity
    from (select 'city_' || lpad(floor(random() * 60)::text, 2, '0') as k, w, sum(w) over () as total
          from (select random() as w from generate_series(1, u.n_city)) g) x) t;
alter table bench_online.user_features add primary key (user_id);
"""


def _prepare_rows(database_url: str, users: int) -> list[str]:
    """The synthetic source table (rebuilt only when its size is wrong); returns its ids."""
    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        cur.execute("create schema if not exists bench_online")
        cur.execute("select to_regclass(%s) is not null", (SOURCE,))
        exists = cur.fetchone()[0]
        count = 0
        if exists:
            cur.execute(f"select count(*) from {SOURCE}")
            count = cur.fetchone()[0]
        if count != users:
            as_of = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            cur.execute(SYNTH_SQL, {"users": users, "as_of": as_of})
        else:  # keep the snapshot fresh (not stale) for the serving measurements
            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            cur.execute(f"update {SOURCE} set as_of = %s where as_of <> %s", (today, today))
        conn.commit()
        cur.execute(f"select user_id::text from {SOURCE}")
        ids = [row[0] for row in cur.fetchall()]
    conn.close()
    return ids


def _sync_best(database_url: str, redis_url: str, runs: int) -> tuple[object, list[float]]:
    conn = pg_connect(database_url)
    client = connect(redis_url, 30)
    results = []
    for _ in range(max(3, runs + 2)):  # the first run warms Postgres' cache and Redis' allocator
        results.append(
            sync_snapshot("user_features", conn, client, prefix=PREFIX, source=SOURCE, grace_seconds=5)
        )
    conn.close()
    client.close()
    best = max(results[1:], key=lambda r: r.rows_per_second)
    return best, [r.rows_per_second for r in results[1:]]


def _redis_benchmark(redis_url: str, value_size: int, requests: int) -> float | None:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return None
    client = redis.Redis.from_url(redis_url)
    host = client.connection_pool.connection_kwargs.get("host", "127.0.0.1")
    port = client.connection_pool.connection_kwargs.get("port", 6379)
    args = [exe, "-h", str(host), "-p", str(port), "-c", "1", "-P", "1000", "-t", "set"]
    args += [
        "-d",
        str(value_size),
        "-n",
        str(requests),
        "-r",
        str(requests),
        "--dbnum",
        str(BENCHMARK_DB),
        "--csv",
    ]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=600, check=True).stdout
        line = [row for row in out.splitlines() if row.startswith('"SET"')][-1]
        rps = float(line.split(",")[1].strip('"'))
    except (subprocess.SubprocessError, IndexError, ValueError):
        return None  # e.g. a server with a single database: reported as skipped
    scratch = redis.Redis.from_url(redis_url, db=BENCHMARK_DB)
    keys = list(scratch.scan_iter(match="key:*", count=10_000))
    for start in range(0, len(keys), 10_000):
        scratch.unlink(*keys[start : start + 10_000])
    return rps


def _interleaved(calls: int, ours, theirs) -> tuple[list[float], list[float]]:
    """Time ours(i) and theirs(i) alternately so both see the same machine noise."""
    mine, raw = [], []
    for i in range(calls):
        started = time.perf_counter()
        ours(i)
        mine.append(time.perf_counter() - started)
        started = time.perf_counter()
        theirs(i)
        raw.append(time.perf_counter() - started)
    return mine, raw


def _reads(redis_url: str, ids: list[str], calls: int) -> dict[str, float]:
    store = OnlineStore(connect(redis_url, 1.0), prefix=PREFIX, max_age=timedelta(days=3650))
    raw = redis.Redis.from_url(redis_url)
    snapshot = store.snapshot("user_features")
    key = KeyLayout(PREFIX).snapshot("user_features", snapshot.snapshot_id)
    rng = random.Random(7)
    singles = [rng.choice(ids) for _ in range(calls)]
    batches = [rng.sample(ids, 100) for _ in range(calls)]
    _interleaved(300, lambda i: store.get_user(singles[i]), lambda i: raw.hget(key, singles[i]))  # warm-up
    one, one_raw = _interleaved(
        calls, lambda i: store.get_user(singles[i]), lambda i: raw.hget(key, singles[i])
    )
    hundred, hundred_raw = _interleaved(
        calls, lambda i: store.get_users(batches[i]), lambda i: raw.hmget(key, batches[i])
    )
    cached = OnlineStore(connect(redis_url, 1.0), prefix=PREFIX, cache_size=10_000, cache_ttl=60)
    hot = singles[:1000]
    for user in hot:
        cached.get_user(user)
    cached_times = [_timed(lambda u=u: cached.get_user(u)) for u in hot for _ in range(3)]
    p = http_load.percentile
    return {
        "read_1_p50_us": p(one, 0.5) * 1e6,
        "read_1_p99_us": p(one, 0.99) * 1e6,
        "raw_hget_p50_us": p(one_raw, 0.5) * 1e6,
        "raw_hget_p99_us": p(one_raw, 0.99) * 1e6,
        "read_100_p50_us": p(hundred, 0.5) * 1e6,
        "read_100_p99_us": p(hundred, 0.99) * 1e6,
        "raw_hmget_100_p50_us": p(hundred_raw, 0.5) * 1e6,
        "raw_hmget_100_p99_us": p(hundred_raw, 0.99) * 1e6,
        "read_1_cached_p50_us": p(cached_times, 0.5) * 1e6,
        "read_1_cached_p99_us": p(cached_times, 0.99) * 1e6,
    }


def _alternating(calls: int, ours, theirs) -> tuple[list[float], list[float]]:
    """Time ours(i) and theirs(i) on the same input, taking turns at going first: the second read
    of the same ids finds Redis's and the CPU's caches warm (worth ~30 % at 100 ids), so a fixed
    order would favour whichever always goes second."""
    mine, other = [0.0] * calls, [0.0] * calls
    for i in range(calls):
        pair = ((ours, mine), (theirs, other)) if i % 2 == 0 else ((theirs, other), (ours, mine))
        for fn, times in pair:
            started = time.perf_counter()
            fn(i)
            times[i] = time.perf_counter() - started
    return mine, other


#: share of requests whose ids are all hot (cached unless evicted), per measured mix
CACHE_HIT_MIXES = (0.0, 0.1, 0.5, 0.9, 1.0)


def _cache_vs_off(redis_url: str, ids: list[str], requests: int) -> dict[str, float]:
    """The in-process cache (the serving default: 10,000 rows, 1 s TTL) against no cache over the
    same request stream, request by request taking turns at going first, for batches of 1 and 100 users and mixes
    of hot and cold requests, after 600 untimed requests of the same mix (the steady state). A hot
    request asks for ids of a 2,000-user hot set, a cold one for random other ids; the hit ratio
    reached is reported beside each mix (a batch is a hit only when all its ids are cached, and
    cold inserts evict hot rows first in, first out, so it is at most the mix)."""
    rng = random.Random(13)
    hot, cold = ids[:2000], ids[2000:]
    out: dict[str, float] = {}
    p = http_load.percentile
    for batch in (1, 100):
        for mix in CACHE_HIT_MIXES:
            cached = OnlineStore(
                connect(redis_url, 1.0), prefix=PREFIX, max_age=timedelta(days=3650), cache_size=10_000
            )
            plain = OnlineStore(connect(redis_url, 1.0), prefix=PREFIX, max_age=timedelta(days=3650))
            for start in range(0, len(hot), 100):  # warm: the hot set is cached
                cached.get_users(hot[start : start + 100])
                plain.get_users(hot[start : start + 100])

            def mixed(n: int, mix: float = mix, batch: int = batch) -> list[list[str]]:
                return [
                    rng.sample(hot, batch) if rng.random() < mix else rng.sample(cold, batch)
                    for _ in range(n)
                ]

            for ids_ in mixed(600):  # steady state: past the cache's first admission windows
                cached.get_users(ids_)
                plain.get_users(ids_)
            cached.cache_hits = cached.cache_misses = 0
            stream = mixed(requests)
            on, off = _alternating(
                requests,
                lambda i, c=cached, s=stream: c.get_users(s[i]),
                lambda i, p=plain, s=stream: p.get_users(s[i]),
            )
            key = f"cache_b{batch}_hit{round(mix * 100)}"
            out[f"{key}_hit_ratio"] = cached.cache_hit_ratio
            out[f"{key}_throughput_on_vs_off"] = sum(off) / sum(on)
            out[f"{key}_p99_on_us"] = p(on, 0.99) * 1e6
            out[f"{key}_p99_off_us"] = p(off, 0.99) * 1e6
    return out


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _http(redis_url: str, ids: list[str], requests: int) -> dict[str, float]:
    env = {
        "FS_REDIS_URL": redis_url,
        "FS_REDIS_PREFIX": PREFIX,
        "FS_ONLINE_CACHE_SIZE": "0",  # every request goes to Redis: the honest path
        "FS_API_KEYS": "",
    }
    with http_load.serving_api(env) as port:
        rng = random.Random(11)
        singles = [http_load.get(f"/v1/users/{rng.choice(ids)}/features") for _ in range(requests)]
        batches = [
            http_load.post_json("/v1/features/batch", orjson.dumps({"user_ids": rng.sample(ids, 100)}))
            for _ in range(requests)
        ]
        refs = [f"user_features:{name}" for name in online_views()["user_features"].features]
        generic = [
            http_load.post_json(
                "/v1/features/get",
                orjson.dumps({"features": refs, "entities": {"user_id": rng.sample(ids, 100)}}),
            )
            for _ in range(requests)
        ]
        http_load.latencies("127.0.0.1", port, singles[:500])  # warm-up
        http_load.latencies("127.0.0.1", port, generic[:200])
        one, errors_one = http_load.latencies("127.0.0.1", port, singles)
        # the batch route and the generic route on the same 100 users, in alternating halves
        half = requests // 2
        hundred, errors_hundred = http_load.latencies("127.0.0.1", port, batches[:half])
        generic_times, errors_generic = http_load.latencies("127.0.0.1", port, generic[:half])
        more, more_errors = http_load.latencies("127.0.0.1", port, batches[half:])
        hundred, errors_hundred = hundred + more, errors_hundred + more_errors
        more, more_errors = http_load.latencies("127.0.0.1", port, generic[half:])
        generic_times, errors_generic = generic_times + more, errors_generic + more_errors
        per_connection = [singles[k::8] for k in range(8)]
        rps, total, errors_c8 = http_load.throughput("127.0.0.1", port, per_connection)
    p = http_load.percentile
    return {
        "http_1_p50_ms": p(one, 0.5) * 1e3,
        "http_1_p99_ms": p(one, 0.99) * 1e3,
        "http_100_p50_ms": p(hundred, 0.5) * 1e3,
        "http_100_p99_ms": p(hundred, 0.99) * 1e3,
        "http_generic_100_p50_ms": p(generic_times, 0.5) * 1e3,
        "http_generic_100_p99_ms": p(generic_times, 0.99) * 1e3,
        "http_1_c8_requests_per_second": rps,
        "http_requests_measured": len(one) + len(hundred) + total,
        "http_errors": errors_one + errors_hundred + errors_generic + errors_c8,
    }


def cleanup(redis_url: str, prefix: str = PREFIX) -> None:
    """UNLINK every key of a benchmark's prefix (never FLUSHDB: the Redis may be shared)."""
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.unlink(*keys)


def run(scale: str, runs: int, workdir: Path) -> Path:
    users = USERS_AT[scale]
    database_url = bench_database(scale)
    redis_url = ensure_services().redis_url
    started = time.perf_counter()
    ids = _prepare_rows(database_url, users)
    prepare_seconds = time.perf_counter() - started
    try:
        best, rates = _sync_best(database_url, redis_url, runs)
        value_size = round(best.bytes / best.rows)
        set_rps = _redis_benchmark(redis_url, value_size, best.rows)
        reads = _reads(redis_url, ids, READS_AT[scale])
        cache = _cache_vs_off(redis_url, ids, READS_AT[scale] // 2)
        http = _http(redis_url, ids, HTTP_AT[scale])
    finally:
        cleanup(redis_url)

    metrics = {
        "users": best.rows,
        "synthesise_rows_seconds": prepare_seconds,
        "sync_seconds": best.seconds,
        "sync_users_per_second": best.rows_per_second,
        "sync_users_per_second_all_runs_min": min(rates),
        "snapshot_bytes": best.bytes,
        "mean_value_bytes": best.bytes / best.rows,
        **reads,
        **cache,
        **http,
    }
    ratios = {
        "read_1_p99_vs_raw_hget_p99": reads["read_1_p99_us"] / reads["raw_hget_p99_us"],
        "read_100_p99_vs_raw_hmget_p99": reads["read_100_p99_us"] / reads["raw_hmget_100_p99_us"],
        "read_1_p50_vs_raw_hget_p50": reads["read_1_p50_us"] / reads["raw_hget_p50_us"],
        "read_100_p50_vs_raw_hmget_p50": reads["read_100_p50_us"] / reads["raw_hmget_100_p50_us"],
        "http_generic_100_p99_vs_batch_route_p99": http["http_generic_100_p99_ms"] / http["http_100_p99_ms"],
    }
    notes = (
        f"{best.rows:,} synthetic user_features-shaped rows (Postgres-generated, mean value "
        f"{value_size} B). HTTP: `fs-platform serve`, 1 uvicorn worker, cache off, raw-socket "
        "keep-alive load generator (bench/http_load.py) on the same machine. redis-benchmark writes "
        f"{best.rows:,} distinct keys (-r) into database {BENCHMARK_DB}, removed afterwards."
    )
    if set_rps is not None:
        metrics["redis_benchmark_set_per_second"] = set_rps
        ratios["sync_vs_redis_benchmark_set"] = best.rows_per_second / set_rps
    else:
        notes += (
            " redis-benchmark not found on PATH (or it failed): the sync / redis-benchmark ratio is skipped."
        )
    slowest_mix = min((k for k in cache if k.endswith("_throughput_on_vs_off")), key=lambda k: cache[k])
    ratios["cache_on_vs_off_throughput_worst_mix"] = cache[slowest_mix]
    targets = [
        target(
            "generic route p99 / batch route p99, 100 users",
            ratios["http_generic_100_p99_vs_batch_route_p99"],
            "<= 1.3",
        ),
        target(
            f"cache on / off throughput, worst mix ({slowest_mix.removesuffix('_throughput_on_vs_off')})",
            cache[slowest_mix],
            ">= 0.95",
        ),
        target("sync throughput (users/s)", best.rows_per_second, ">= 200000"),
        target("in-process read p99, 1 user / raw HGET", ratios["read_1_p99_vs_raw_hget_p99"], "<= 3"),
        target("in-process read p99, 100 users / raw HMGET", ratios["read_100_p99_vs_raw_hmget_p99"], "<= 3"),
        target("HTTP p99, 1 user, concurrency 1 (ms)", http["http_1_p99_ms"], "<= 2"),
        target("HTTP p99, 100 users, concurrency 1 (ms)", http["http_100_p99_ms"], "<= 6"),
    ]
    return write_result("online", scale, metrics, ratios, targets, notes=notes)
