"""A small, bounded HTTP/1.1 load generator on raw sockets (keep-alive, closed loop).

Raw sockets rather than httpx: on a 2-CPU machine the client shares the CPUs with the server,
and httpx spends ~0.3 ms of Python per request — more than the server under test. Each
connection has at most one request in flight and runs a fixed number of requests, so the
load is bounded by construction.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


def post_json(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Connection:
    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def request(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buffer:
            self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        match = _LENGTH.search(head)
        length = int(match.group(1)) if match else 0
        while len(rest) < length:
            chunk = self.sock.recv(262_144)
            if not chunk:
                raise ConnectionError("server closed the connection")
            rest += chunk
        self.buffer = rest[length:]
        return int(head[9:12]), rest[:length]

    def _recv(self) -> None:
        chunk = self.sock.recv(262_144)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def latencies(host: str, port: int, requests: Sequence[bytes]) -> tuple[list[float], int]:
    """Send ``requests`` one after the other on one connection: (seconds each, non-200 count)."""
    conn = Connection(host, port)
    times: list[float] = []
    errors = 0
    try:
        for raw in requests:
            started = time.perf_counter()
            status, _ = conn.request(raw)
            times.append(time.perf_counter() - started)
            errors += status != 200
    finally:
        conn.close()
    return times, errors


def throughput(host: str, port: int, per_connection: Sequence[Sequence[bytes]]) -> tuple[float, int, int]:
    """One thread and connection per request list, all at once: (requests/s, requests, errors)."""
    results: list[tuple[int, int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(per_connection) + 1)

    def worker(requests: Sequence[bytes]) -> None:
        conn = Connection(host, port)
        errors = 0
        barrier.wait()
        for raw in requests:
            status, _ = conn.request(raw)
            errors += status != 200
        conn.close()
        with lock:
            results.append((len(requests), errors))

    threads = [threading.Thread(target=worker, args=(reqs,)) for reqs in per_connection]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    total = sum(n for n, _ in results)
    return total / elapsed, total, sum(e for _, e in results)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def serving_api(env: dict[str, str]) -> Iterator[int]:
    """``fs-platform serve`` (one uvicorn worker) on a free loopback port until the block ends;
    yields the port once /readyz answers 200."""
    from fs_platform.infra.runtime import _free_port

    port = _free_port()
    cli = Path(sys.executable).with_name("fs-platform")
    server = subprocess.Popen(
        [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(port)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = Connection("127.0.0.1", port, timeout=2)
            status, _ = conn.request(get("/readyz"))
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("fs-platform serve did not become ready")
        time.sleep(0.2)
