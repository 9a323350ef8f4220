"""Test helpers for the monitoring tests: private databases loaded with drifted synthetic data."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import numpy as np
import pandas as pd
import psycopg2

from fs_platform.dev import detection
from fs_platform.dev.synthetic import generate

#: data end (exclusive); the drift starts two weeks before it
END = date(2026, 9, 1)
DAYS = 72
ONSET = END - timedelta(days=14)


@contextmanager
def private_database(server_url: str, prefix: str) -> Iterator[str]:
    """A database of our own on the test server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"create database {name}")
    try:
        yield urlunparse(urlparse(server_url)._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cur:
            cur.execute(f"drop database if exists {name} with (force)")
        admin.close()


def load_drifted(database_url: str, drift: str, folder: Path, seed: int = 11) -> None:
    """``DAYS`` days of xs data with ``drift`` from ``ONSET``, through the real ingestion."""
    data = generate("xs", days=DAYS, seed=seed, end=END, drift=drift, drift_from=ONSET)
    detection.load(database_url, data, folder)


class WebhookReceiver:
    """A local HTTP server that keeps the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        received: list[dict] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def sparse_categories(
    rows: int, categories: int, seed: int, *, boost: tuple[int, float] | None = None
) -> pd.DataFrame:
    """``rows`` draws of a long-tailed categorical column (Zipf-like, ``categories`` values, most of
    them rare) plus a numeric column; ``boost=(category, share)`` gives one category that share."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, categories + 1) ** 0.8
    weights /= weights.sum()
    if boost is not None:
        index, share = boost
        weights = weights * (1 - share) / (1 - weights[index])
        weights[index] = share
    return pd.DataFrame(
        {
            "listing_category": [f"c{i:04d}" for i in rng.choice(categories, size=rows, p=weights)],
            "amount": rng.normal(size=rows),
        }
    )
