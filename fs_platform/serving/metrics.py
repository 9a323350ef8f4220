"""Prometheus metrics of the serving API, in a registry per app (tests build several apps).

Latency is measured by a plain ASGI middleware (not Starlette's BaseHTTPMiddleware, which costs
a task and a queue per request) and labelled with the route *template*, so ids never become
label values.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fs_platform.online.store import OnlineStore

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    def __init__(self, store: OnlineStore) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "fs_serving_request_duration_seconds",
            "Request latency by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "fs_serving_requests",
            "Requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "fs_serving_errors",
            "Failed requests by cause (redis_unavailable, no_snapshot, no_model, invalid_request, "
            "unauthorized, body_too_large, headers_too_large, internal).",
            ["cause"],
            registry=self.registry,
        )
        self.stale = Counter(
            "fs_serving_stale_responses",
            "Responses served from a snapshot older than the max age.",
            ["view"],
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(store))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route).observe(seconds)
        self.requests.labels(method, route, str(status)).inc()


class _StoreCollector(Collector):
    """Cache counters and snapshot age, read from the store at scrape time."""

    def __init__(self, store: OnlineStore) -> None:
        self.store = store

    def describe(self) -> list:
        return []  # collected lazily: no Redis call when the collector is registered

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        store = self.store
        hits = CounterMetricFamily("fs_serving_cache_hits", "Reads answered from the in-process cache.")
        hits.add_metric([], store.cache_hits)
        misses = CounterMetricFamily("fs_serving_cache_misses", "Reads that went to Redis (cache on).")
        misses.add_metric([], store.cache_misses)
        ratio = GaugeMetricFamily("fs_serving_cache_hit_ratio", "cache hits / (hits + misses) since start.")
        ratio.add_metric([], store.cache_hit_ratio)
        age = GaugeMetricFamily(
            "fs_serving_snapshot_age_seconds",
            "Now minus as_of of the snapshot served, per online feature view.",
            labels=["view"],
        )
        rows = GaugeMetricFamily(
            "fs_serving_snapshot_rows",
            "Rows in the snapshot served, per online feature view.",
            labels=["view"],
        )
        for kind in store.views:
            try:
                info = store.snapshot(kind)
            except Exception:  # Redis down: the error counters and /readyz tell that story
                info = store.last_snapshot.get(kind)
            if info is not None:
                age.add_metric([kind], info.age_seconds())
                rows.add_metric([kind], info.rows)
        yield from (hits, misses, ratio, age, rows)


class MetricsMiddleware:
    """Times every HTTP request and counts it by route template and status."""

    def __init__(self, app, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], path, status, time.perf_counter() - started)
