"""Historical retrieval: any feature of any view, as of each row of an entity frame.

For every input row and every requested feature view, the view's row for the row's entity key
with the latest ``as_of`` such that ``as_of + availability_lag <= event_timestamp`` and
``as_of >= event_timestamp - ttl`` (both bounds inclusive); no such row gives nulls. Every
input row comes back once, in input order and with its index and columns untouched; rows that
share keys and timestamp are never merged. On-demand features are computed afterwards from the
joined values by the same functions serving uses (docs/retrieval.md).

The frame goes to PostgreSQL in chunks (COPY into a temporary table with a row number); each
view is joined with one index probe per row, so the cost grows linearly with the frame, and the
answer comes back by COPY as CSV into typed arrays.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg2 import sql

from fs_platform.features.registry import ON_DEMAND, FeatureView, Registry, load_registry, refs_by_view

DEFAULT_TIMESTAMP_COLUMN = "event_timestamp"
CHUNK_ROWS = 50_000


class RetrievalError(ValueError):
    """The request cannot be answered as asked (the message says why, in one line)."""


@dataclass(frozen=True)
class RetrievalPlan:
    """What one request joins: the views with their features, and the on-demand features."""

    views: dict[str, list[str]]  # view -> features to fetch (requested + on-demand inputs)
    on_demand: list[str]
    requested: list[str]  # the output columns' references, in request order


def plan_retrieval(registry: Registry, features: str | Sequence[str]) -> RetrievalPlan:
    """Expand services, check every reference, add the views on-demand features read."""
    requested = registry.expand(features)
    if not requested:
        raise RetrievalError("no features requested")
    fetch = [r for r in requested if not r.startswith(f"{ON_DEMAND}:")]
    on_demand = [r.partition(":")[2] for r in requested if r.startswith(f"{ON_DEMAND}:")]
    for name in on_demand:
        fetch.extend(registry.on_demand[name].inputs)
    views = {view: list(dict.fromkeys(names)) for view, names in refs_by_view(dict.fromkeys(fetch)).items()}
    return RetrievalPlan(views, on_demand, requested)


def output_name(ref: str, full_feature_names: bool) -> str:
    view, _, name = ref.partition(":")
    return f"{view}__{name}" if full_feature_names else name


def get_historical_features(
    conn: psycopg2.extensions.connection,
    entity_df: pd.DataFrame,
    features: str | Sequence[str],
    *,
    registry: Registry | None = None,
    timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN,
    availability_lag: timedelta = timedelta(0),
    full_feature_names: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """``entity_df`` with one column per requested feature (a service name or ``view:feature`` /
    ``on_demand:name`` references) as of each row's ``timestamp_column`` (see the module doc).

    Columns are named by feature (``view__feature`` with ``full_feature_names``). ``on_progress``
    is called with the number of rows finished after each chunk. Runs in the caller's transaction
    (it sees the caller's uncommitted changes) and leaves nothing behind but that transaction.
    """
    registry = registry or load_registry()
    plan = plan_retrieval(registry, features)
    if availability_lag < timedelta(0):
        raise RetrievalError("availability_lag must not be negative")
    names = [output_name(r, full_feature_names) for r in plan.requested]
    clashes = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(entity_df.columns)))
    if clashes:
        raise RetrievalError(
            f"output column(s) {clashes} would be ambiguous: pass full_feature_names=True "
            "(columns named view__feature) or rename the entity frame's columns"
        )
    views = [registry.view(v) for v in plan.views]
    timestamps = _timestamps(entity_df, timestamp_column)
    keys = {view.entity.join_key: _keys(entity_df, view) for view in views}

    chunks: dict[str, list[np.ndarray]] = {
        f"{view}:{feature}": [] for view, names in plan.views.items() for feature in names
    }
    with conn.cursor() as cur:
        for start in range(0, len(entity_df), CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, len(entity_df))
            _load_chunk(cur, keys, timestamps, start, stop)
            for view in views:
                for ref, values in _join_view(
                    cur, view, plan.views[view.name], availability_lag, stop - start
                ):
                    chunks[ref].append(values)
            cur.execute("drop table pg_temp.fs_entity_rows")
            if on_progress:
                on_progress(stop)
    empty = np.empty(0, dtype=object)
    fetched = {ref: np.concatenate(parts) if parts else empty for ref, parts in chunks.items()}

    out = entity_df.copy()
    inputs = pd.DataFrame(fetched, index=entity_df.index)
    for ref, name in zip(plan.requested, names, strict=True):
        view, _, feature = ref.partition(":")
        if view == ON_DEMAND:
            out[name] = registry.on_demand[feature].compute(inputs).to_numpy()
        else:
            out[name] = _typed(inputs[ref], registry.view(view).feature(feature).type)
    return out


def _timestamps(entity_df: pd.DataFrame, column: str) -> pd.Series:
    if column not in entity_df.columns:
        raise RetrievalError(f"the entity frame has no {column!r} column (the time of each row)")
    try:
        ts = pd.to_datetime(entity_df[column], utc=True)
    except (ValueError, TypeError) as exc:
        raise RetrievalError(f"column {column!r} is not a timestamp: {exc}") from exc
    missing = np.flatnonzero(ts.isna().to_numpy())
    if len(missing):
        raise RetrievalError(f"{len(missing)} row(s) have no {column} (first at position {missing[0]})")
    return ts


def _keys(entity_df: pd.DataFrame, view: FeatureView) -> list[str | None]:
    """The view's entity key per row as canonical text; null keys stay null (they match nothing)."""
    key = view.entity.join_key
    if key not in entity_df.columns:
        raise RetrievalError(f"feature view {view.name} needs entity key column {key!r} in the entity frame")
    out: list[str | None] = []
    for position, value in enumerate(entity_df[key].tolist()):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            out.append(None)
            continue
        try:
            out.append(str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))))
        except ValueError:
            raise RetrievalError(f"{key} {value!r} at position {position} is not a UUID") from None
    return out


def _load_chunk(cur, keys: dict[str, list[str | None]], timestamps: pd.Series, start: int, stop: int) -> None:
    columns = list(keys)
    cur.execute("drop table if exists pg_temp.fs_entity_rows")  # left by a call that failed midway
    cur.execute(
        sql.SQL("create temporary table fs_entity_rows (row_no integer, {}, ts timestamptz)").format(
            sql.SQL(", ").join(sql.SQL("{} uuid").format(sql.Identifier(c)) for c in columns)
        )
    )
    buffer = io.StringIO()
    ts_text = timestamps.iloc[start:stop].map(lambda t: t.isoformat()).tolist()
    for offset, row in enumerate(range(start, stop)):
        values = [str(offset), *(keys[c][row] or "\\N" for c in columns), ts_text[offset]]
        buffer.write("\t".join(values) + "\n")
    buffer.seek(0)
    cur.copy_expert(
        sql.SQL("copy fs_entity_rows (row_no, {}, ts) from stdin").format(
            sql.SQL(", ").join(map(sql.Identifier, columns))
        ),
        buffer,
    )
    cur.execute("analyze fs_entity_rows")


def _join_view(cur, view: FeatureView, features: list[str], lag: timedelta, rows: int):
    """(reference, values in row order) for each feature of ``view``: one backward index probe
    per entity row for the latest row within [ts - ttl, ts - lag].

    The probe finds the timestamp first (``max``, reading only the key and timestamp columns) and
    only then the features of that one row: on a view such as listing_features_history, whose
    features are computed per row, ``order by ... limit 1`` computed them for every candidate
    partition before sorting (four times the cost at a 7-day TTL).

    The rows leave PostgreSQL by ``COPY ... TO STDOUT`` as CSV parsed by pyarrow into typed columns
    (a third of the time and memory of fetching Python tuples); maps are parsed with orjson."""
    key, ts_col = sql.Identifier(view.entity.join_key), sql.Identifier(view.timestamp)
    query = sql.SQL(
        """
        select e.row_no, {selected}
        from fs_entity_rows e
        left join lateral (
            select {inner}
            from {relation} f
            where f.{key} = e.{key}
              and f.{ts} = (
                  select max(g.{ts}) from {relation} g
                  where g.{key} = e.{key}
                    and g.{ts} <= e.ts - %(lag)s::interval
                    and g.{ts} >= e.ts - %(ttl)s::interval
              )
            limit 1
        ) v on true
        order by e.row_no
        """
    ).format(
        selected=sql.SQL(", ").join(sql.SQL("v.{}").format(sql.Identifier(f)) for f in features),
        inner=sql.SQL(", ").join(sql.SQL("f.{}").format(sql.Identifier(f)) for f in features),
        relation=sql.Identifier(*view.relation),
        key=key,
        ts=ts_col,
    )
    bound = cur.mogrify(query, {"lag": lag, "ttl": view.ttl})
    buffer = io.BytesIO()
    cur.copy_expert(b"copy (" + bound + b") to stdout with (format csv)", buffer)
    buffer.seek(0)
    kinds = {f: view.feature(f).type for f in features}
    table = pa_csv.read_csv(
        buffer,
        read_options=pa_csv.ReadOptions(column_names=["row_no", *features]),
        convert_options=pa_csv.ConvertOptions(
            column_types={"row_no": pa.int64(), **{f: _ARROW_TYPES[k] for f, k in kinds.items()}},
            true_values=["t"],
            false_values=["f"],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    if table.num_rows != rows:
        raise RuntimeError(f"{view.name}: {table.num_rows} rows back for {rows} entity rows")
    for feature, kind in kinds.items():
        column = table.column(feature)
        if kind == "numeric":
            values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        else:
            values = np.asarray(column.to_pylist(), dtype=object)
            if kind == "map":
                values = np.asarray([None if v is None else orjson.loads(v) for v in values], dtype=object)
        yield f"{view.name}:{feature}", values


#: how each feature type is read from the CSV (maps as text, parsed afterwards)
_ARROW_TYPES = {
    "numeric": pa.float64(),
    "boolean": pa.bool_(),
    "categorical": pa.string(),
    "map": pa.string(),
}


def _typed(values: pd.Series, kind: str) -> pd.Series | np.ndarray:
    """Numeric features as float (null -> NaN), booleans as nullable booleans, the rest as objects."""
    if kind == "numeric":
        return pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    if kind == "boolean":
        return values.astype("boolean").to_numpy()
    return values.to_numpy()


def read_entity_frame(path: Path) -> pd.DataFrame:
    """An entity frame from Parquet or CSV (by suffix), with a one-line error when unreadable."""
    try:
        return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise RetrievalError(f"cannot read entity frame {path}: {' '.join(str(exc).split())}") from exc


def write_features(frame: pd.DataFrame, path: Path, feature_columns: Sequence[str]) -> None:
    """Write a retrieved frame as Parquet or CSV (by suffix); map features become JSON text."""
    if path.suffix not in (".parquet", ".csv"):
        raise RetrievalError(f"output {path} must end in .parquet or .csv")
    frame = frame.copy()
    for column in feature_columns:
        if frame[column].map(lambda v: isinstance(v, dict)).any():
            frame[column] = frame[column].map(
                lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict) else None
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
