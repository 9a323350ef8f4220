"""Publish a feature table from Postgres to Redis as one atomic snapshot.

Steps, and why each is safe to die in:

1. a consistent read (REPEATABLE READ) of the source with a server-side cursor; Postgres builds
   each value (``json_build_array(...)::text``) so Python only moves bytes;
Every online feature view (``fs_platform.online.views``) is synced the same way, from the model
its yml names as ``online_model`` (the latest partition), one value array per entity in the view's
declared feature order.

2. pipelined ``HSET`` batches into a *new* hash ``{prefix}:{view}:snap:{id}`` that carries a TTL
   while it is written (re-armed with every batch): a sync killed here leaves a partial hash
   nobody points to, and it expires;
3. one Lua script checks the new hash is complete (``HLEN`` = rows read), points
   ``{prefix}:{view}:current`` at it, removes its TTL and gives the replaced snapshot a short
   grace TTL (readers already holding its id finish, then it disappears). Scripts run
   atomically, so readers see the old pointer or the new one, nothing in between.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg2.extensions
import redis
from psycopg2 import sql

from fs_platform.online.store import VALUE_FORMAT, KeyLayout
from fs_platform.online.views import OnlineView, online_views

_FLIP_LUA = """
local n = redis.call('HLEN', KEYS[2])
if n ~= tonumber(ARGV[2]) then
  return redis.error_reply('INCOMPLETE snapshot ' .. ARGV[1] .. ' has ' .. n .. ' of ' .. ARGV[2] .. ' rows')
end
local old = redis.call('HGET', KEYS[1], 'id')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('PERSIST', KEYS[2])
if old and old ~= ARGV[1] then
  local grace = tonumber(ARGV[3])
  if grace > 0 then redis.call('EXPIRE', ARGV[4] .. old, grace) else redis.call('UNLINK', ARGV[4] .. old) end
end
return old or ''
"""

FETCH_ROWS = 10_000  # rows per FETCH from the server-side cursor
MAX_IN_FLIGHT = 8  # HSET batches sent before their replies are read (bounds memory, overlaps work)


class SyncError(Exception):
    """The sync could not publish a snapshot; the previous one keeps serving."""


@dataclass(frozen=True)
class SyncProgress:
    """Handed to ``on_batch`` after every batch sent (tests use it to kill a sync midway)."""

    kind: str
    snapshot_id: str
    rows_sent: int
    client_id: int


@dataclass(frozen=True)
class SyncResult:
    kind: str
    snapshot_id: str
    rows: int
    bytes: int
    seconds: float
    as_of: datetime
    replaced: str | None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def new_snapshot_id() -> str:
    """Sortable by creation time, unique across concurrent syncs."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def sync_snapshot(
    view: str | OnlineView,
    conn: psycopg2.extensions.connection,
    client: redis.Redis,
    *,
    prefix: str = "fs",
    source: str | None = None,
    batch_size: int = 2000,
    build_ttl: int = 3600,
    grace_seconds: int = 60,
    allow_empty: bool = False,
    on_batch: Callable[[SyncProgress], None] | None = None,
) -> SyncResult:
    """Copy ``source`` (default: the view's online model) into a new snapshot and flip to it;
    ``view`` is an online view or the name of one of the project's."""
    kind = online_views()[view] if isinstance(view, str) else view
    started = time.perf_counter()
    layout = KeyLayout(prefix)
    snapshot_id = new_snapshot_id()
    key = layout.snapshot(kind.name, snapshot_id)
    source = source or kind.source_name
    relation = _relation(source)
    with _read_transaction(conn):
        expected, as_of = _summary(conn, kind, relation)
        if expected == 0 and not allow_empty:
            raise SyncError(f"{source} is empty: keeping the current {kind.name} snapshot")
        writer = _SnapshotWriter(client, key.encode(), build_ttl)
        try:
            with conn.cursor(name=f"online_sync_{kind.name}") as cursor:
                cursor.execute(
                    sql.SQL("select {id}::text, {value}::text from {relation}").format(
                        id=sql.Identifier(kind.id_name),
                        value=_value_sql(kind),
                        relation=relation,
                    )
                )
                with closing(_Prefetcher(cursor)) as chunks:
                    for rows in chunks:
                        for start in range(0, len(rows), batch_size):
                            writer.send(rows[start : start + batch_size])
                            if on_batch is not None:
                                on_batch(SyncProgress(kind.name, snapshot_id, writer.rows, writer.client_id))
            writer.finish()
        except BaseException:
            writer.abort()
            raise
    if writer.rows != expected:
        raise SyncError(f"read {writer.rows} rows from {relation.as_string(conn)}, counted {expected}")
    seconds = time.perf_counter() - started
    meta = {
        "id": snapshot_id,
        "as_of": as_of.isoformat(),
        "written_at": datetime.now(UTC).isoformat(),
        "rows": writer.rows,
        "bytes": writer.bytes,
        "format": VALUE_FORMAT,
        "seconds": round(seconds, 3),
        "source": source,
    }
    flip = client.register_script(_FLIP_LUA)
    try:
        replaced = flip(
            keys=[layout.pointer(kind.name), key],
            args=[
                snapshot_id,
                writer.rows,
                grace_seconds,
                layout.snapshot_prefix(kind.name),
                *[part for item in meta.items() for part in item],
            ],
        )
    except redis.ResponseError as exc:
        raise SyncError(f"flip to {kind.name} snapshot {snapshot_id} refused: {exc}") from exc
    return SyncResult(
        kind=kind.name,
        snapshot_id=snapshot_id,
        rows=writer.rows,
        bytes=writer.bytes,
        seconds=time.perf_counter() - started,
        as_of=as_of,
        replaced=replaced.decode() if replaced else None,
    )


def _value_sql(kind: OnlineView) -> sql.Composable:
    """The value array, built by Postgres, in the view's feature order."""
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in kind.features)
    return sql.SQL("json_build_array({})").format(columns)


def _relation(name: str) -> sql.Composable:
    """``schema.table`` as quoted identifiers (the name is configuration, never user input)."""
    return sql.Identifier(*name.split(".", 1))


@contextmanager
def _read_transaction(conn: psycopg2.extensions.connection) -> Iterator[None]:
    """One snapshot of the database for the count and the rows; UTC timestamps, exact floats."""
    conn.rollback()
    with conn.cursor() as cur:
        # psycopg2 opens the transaction itself unless autocommit; either way this comes first
        cur.execute(
            "begin isolation level repeatable read read only"
            if conn.autocommit
            else "set transaction isolation level repeatable read read only"
        )
        # shortest exact float text (PG 12+ default, pinned in case the server overrides it)
        cur.execute("set local extra_float_digits = 1; set local timezone = 'UTC'")
    try:
        yield
    finally:
        if conn.autocommit:
            with conn.cursor() as cur:
                cur.execute("rollback")
        else:
            conn.rollback()


def _summary(
    conn: psycopg2.extensions.connection, kind: OnlineView, relation: sql.Composable
) -> tuple[int, datetime]:
    """Row count and the snapshot's as_of: the one value of the view's timestamp column."""
    with conn.cursor() as cur:
        stamp = sql.Identifier(kind.timestamp)
        cur.execute(sql.SQL("select count(*), min({0}), max({0}) from {1}").format(stamp, relation))
        rows, first, last = cur.fetchone()
        if first != last:
            raise SyncError(
                f"{relation.as_string(conn)} mixes {kind.timestamp} {first} and {last}: not one snapshot"
            )
        return rows, last or datetime.now(UTC)


class _Prefetcher:
    """Fetches the next chunk of rows in a thread while the caller sends the current one.

    psycopg2 releases the GIL while Postgres builds the next chunk's JSON, so reading and
    writing overlap (about a third off the sync time). The queue is bounded: memory stays
    at a few chunks whatever the table size.
    """

    def __init__(self, cursor: psycopg2.extensions.cursor, depth: int = 3) -> None:
        self.cursor = cursor
        self.chunks: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="online-sync-fetch", daemon=True)
        self.thread.start()

    def _produce(self) -> None:
        try:
            while not self.stop.is_set():
                rows = self.cursor.fetchmany(FETCH_ROWS)
                self._put(rows)
                if not rows:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def _put(self, item: object) -> None:
        while not self.stop.is_set():
            try:
                self.chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[list[tuple[str, str]]]:
        while True:
            item = self.chunks.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item

    def close(self) -> None:
        """Stop the thread before the transaction ends (it uses the same connection)."""
        self.stop.set()
        self.thread.join()


class _SnapshotWriter:
    """Pipelined HSETs of pre-encoded values on one dedicated connection.

    Commands are packed here (one ``b"".join`` per batch) rather than by redis-py's generic
    packer: it is the hot loop of the sync, and about three times faster this way.
    """

    def __init__(self, client: redis.Redis, key: bytes, ttl: int) -> None:
        self.client = client
        self.key = key
        self.pool = client.connection_pool
        self.conn = self.pool.get_connection()
        try:
            self.conn.send_command("CLIENT", "ID")
            self.client_id = int(self.conn.read_response())
        except BaseException:
            self.abort()
            raise
        self.expire = b"".join(self.conn.pack_command("EXPIRE", key, ttl))
        self.rows = 0
        self.bytes = 0
        self.pending = 0

    def send(self, rows: list[tuple[str, str]]) -> None:
        key = self.key
        parts = [b"*%d\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n" % (2 + 2 * len(rows), len(key), key)]
        size = 0
        for entity_id, value in rows:
            idb = entity_id.encode()
            vb = value.encode()
            size += len(vb)
            parts.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(idb), idb, len(vb), vb))
        parts.append(self.expire)  # re-armed each batch: a slow sync never outlives its own TTL
        self.conn.send_packed_command([b"".join(parts)], check_health=False)
        self.pending += 2
        self.rows += len(rows)
        self.bytes += size
        while self.pending > 2 * MAX_IN_FLIGHT:
            self._read_one()

    def _read_one(self) -> None:
        self.pending -= 1
        self.conn.read_response()  # raises ResponseError (OOM, WRONGTYPE ...) or ConnectionError

    def finish(self) -> None:
        while self.pending:
            self._read_one()
        self.pool.release(self.conn)

    def abort(self) -> None:
        """Drop the connection (unread replies make it unusable); the partial hash keeps its TTL."""
        self.conn.disconnect()
        self.pool.release(self.conn)
