"""The point-in-time correct training set, built by one SQL query in PostgreSQL.

Why in the database: the join "latest snapshot of this user with ``as_of + availability_lag <= t``
and ``as_of >= t - max_staleness``" is an index probe per example on the history's primary key
``(user_id, as_of)`` (a ``LATERAL ... ORDER BY as_of DESC LIMIT 1``), which PostgreSQL does for
millions of examples without moving the history out of the warehouse. Python only receives the
finished rows (through ``COPY ... TO STDOUT``, the fastest way out of PostgreSQL), validates them
with pandera, splits them by date and writes Parquet partitioned by date.

The listing's item features follow the same rule: the latest listing partition ``T_l`` with
``T_l + availability_lag <= t`` and ``T_l >= t - max_staleness``, the version of the listing in force
just before ``T_l`` and its price percentile among the category's listings live at ``T_l``, so a
listing re-priced today changes no existing example.

One example per (user_id, listing_id, UTC day) with at least one event of the pair that day;
example time ``t`` = the pair's first event that day; label = a contact or favourite that day.
Every example is kept: examples without a usable snapshot get null user features. Among events
tied at the first timestamp, the earliest delivered (``ingested_at``, then ``event_id``) gives the
device, so a late delivery can never change an existing example's features.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import psycopg2.extensions
import pyarrow as pa_arrow
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
from pandera.typing import Series

from fs_platform.infra.config import get_settings
from fs_platform.ingestion.vocabulary import DEVICE_TYPES, POSITIVE_EVENT_TYPES

#: the model's inputs, in a fixed order; categorical ones become pandas ``category`` in the model
CATEGORICAL_FEATURES: tuple[str, ...] = ("device_type", "category_id", "city")
NUMERIC_FEATURES: tuple[str, ...] = (
    "price_sensitivity",
    "activity_score",
    "price",
    "price_pct",
    "is_premium",
    "image_count",
    "day_of_week",
    "hour_of_day",
    "user_category_affinity",
    "user_city_affinity",
    "price_gap",
)
FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
#: the feature service (dbt exposure) whose references these columns are, plus the context
#: features; a model trained on this set is served exactly that service (``model.scoring``)
FEATURE_SERVICE = "contact_model"
#: identity, time and bookkeeping columns kept beside the features (not model inputs)
KEY_COLUMNS: tuple[str, ...] = ("user_id", "listing_id", "example_date", "example_time", "features_as_of")
SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: The default window, read by the ``training_set`` asset's run config and ``fs-platform
#: training-set`` alike: 35 training days + 7 validation + 7 test. With 14 training days (28 in
#: all) the model is short of examples (test AUC 0.774 against 0.777 with 35, same scale-s test days).
DEFAULT_VALIDATION_DAYS = 7
DEFAULT_TEST_DAYS = 7
DEFAULT_TRAIN_DAYS = 35
DEFAULT_DAYS = DEFAULT_TRAIN_DAYS + DEFAULT_VALIDATION_DAYS + DEFAULT_TEST_DAYS
DEFAULT_MAX_STALENESS_HOURS = 168.0
#: the stages ``build`` reports to its ``progress`` callback, in order
BUILD_STAGES: tuple[str, ...] = ("check the window", "query examples", "split and validate", "write Parquet")


class TrainingSetWindowError(ValueError):
    """The requested days cannot give the model a train, validation and test split with both
    classes; the message is one line that says what to change."""


# The examples are grouped from raw events; the user snapshot is a LATERAL probe of the history's
# primary key (user_id, as_of) backwards from t - availability_lag, bounded by t - max_staleness.
# Cross features are null when there is no snapshot (unknown), 0 when the snapshot lacks the key.
EXAMPLES_SQL = """
with pair_day as (
    select e.user_id,
           e.listing_id,
           (e.occurred_at at time zone 'UTC')::date as example_date,
           min(e.occurred_at) as example_time,
           (array_agg(e.device_type order by e.occurred_at, e.ingested_at, e.event_id))[1] as device_type,
           bool_or(e.event_type = any(%(positive_event_types)s))::int as label
    from raw.user_interactions e
    where e.occurred_at >= %(start)s::timestamptz and e.occurred_at < %(end)s::timestamptz
    group by 1, 2, 3
),
examples as (
    -- T_l: the latest listing partition the example could have seen (the same lag and staleness
    -- as the user's snapshot), one backward probe of the price lists' (as_of, category_id) index
    select p.*,
           (select lp.as_of from features.int_category_price_ranks lp
             where lp.as_of <= p.example_time - %(availability_lag)s::interval
               and lp.as_of >= p.example_time - %(max_staleness)s::interval
             order by lp.as_of desc
             limit 1) as listing_as_of
    from pair_day p
),
listing_partitions as (
    select distinct listing_as_of as as_of from examples where listing_as_of is not null
),
listing_at as (
    -- listing_features_history for the partitions the examples read, in bulk: the version in force
    -- just before T (macro version_in_force) and price_pct = percent_rank among the category's
    -- priced listings live at T, one sort per partition. Probing the view per example unpacks a
    -- category's price list each time (~50 us; minutes for millions of examples). The training-set
    -- tests check both against the brute-force reference.
    select p.as_of, v.listing_id, v.category_id, v.city, v.price::float8 as price, v.is_premium, v.image_count,
           case when v.price is not null then
               percent_rank() over (partition by p.as_of, v.category_key, v.price is null order by v.price::float8)
           end as price_pct
    from listing_partitions p
    join staging.stg_listing_versions v
      on v.valid_from < p.as_of and (v.valid_to is null or v.valid_to >= p.as_of) and v.live_from < p.as_of
)
select p.user_id,
       p.listing_id,
       to_char(p.example_date, 'YYYY-MM-DD') as example_date,
       p.example_time,
       h.as_of as features_as_of,
       p.label,
       h.price_sensitivity,
       h.activity_score,
       l.price,
       l.price_pct,
       l.is_premium::int as is_premium,
       l.image_count,
       (extract(isodow from p.example_time at time zone 'UTC') - 1)::int as day_of_week,
       extract(hour from p.example_time at time zone 'UTC')::int as hour_of_day,
       case when h.user_id is not null
            then coalesce((h.category_affinity ->> l.category_id)::float8, 0) end as user_category_affinity,
       case when h.user_id is not null
            then coalesce((h.city_affinity ->> l.city)::float8, 0) end as user_city_affinity,
       abs(l.price_pct - h.price_sensitivity) as price_gap,
       p.device_type,
       l.category_id,
       l.city
from examples p
left join lateral (
    select s.user_id, s.as_of, s.category_affinity, s.city_affinity, s.price_sensitivity, s.activity_score
    from features.user_features_history s
    where s.user_id = p.user_id
      and s.as_of <= p.example_time - %(availability_lag)s::interval
      and s.as_of >= p.example_time - %(max_staleness)s::interval
    order by s.as_of desc
    limit 1
) h on true
left join listing_at l on l.listing_id = p.listing_id and l.as_of = p.listing_as_of
"""

_ARROW_TYPES: dict[str, pa_arrow.DataType] = {
    "user_id": pa_arrow.string(),
    "listing_id": pa_arrow.string(),
    "example_date": pa_arrow.string(),
    "example_time": pa_arrow.timestamp("us", tz="UTC"),
    "features_as_of": pa_arrow.timestamp("us", tz="UTC"),
    "label": pa_arrow.int8(),
    "price_sensitivity": pa_arrow.float64(),
    "activity_score": pa_arrow.float64(),
    "price": pa_arrow.float64(),
    "price_pct": pa_arrow.float64(),
    "is_premium": pa_arrow.float64(),
    "image_count": pa_arrow.float64(),
    "day_of_week": pa_arrow.int8(),
    "hour_of_day": pa_arrow.int8(),
    "user_category_affinity": pa_arrow.float64(),
    "user_city_affinity": pa_arrow.float64(),
    "price_gap": pa_arrow.float64(),
    "device_type": pa_arrow.string(),
    "category_id": pa_arrow.string(),
    "city": pa_arrow.string(),
}
COLUMNS: tuple[str, ...] = (*_ARROW_TYPES, "split")


@dataclass(frozen=True)
class TrainingSetConfig:
    """What to build: example days ``start..end`` (inclusive, UTC) and the PIT knobs.

    The last ``test_days`` days are the test split, the ``validation_days`` before them validation,
    the rest training (a time-based split: the model is judged on days it never saw).
    """

    start: date
    end: date
    max_staleness: timedelta = timedelta(hours=DEFAULT_MAX_STALENESS_HOURS)
    availability_lag: timedelta = timedelta(0)
    validation_days: int = DEFAULT_VALIDATION_DAYS
    test_days: int = DEFAULT_TEST_DAYS

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise TrainingSetWindowError(f"end {self.end} is before start {self.start}")
        if self.max_staleness < timedelta(0) or self.availability_lag < timedelta(0):
            raise ValueError("max_staleness and availability_lag must not be negative")
        if self.validation_days < 1 or self.test_days < 1:
            raise TrainingSetWindowError("validation_days and test_days must be at least 1")
        days = (self.end - self.start).days + 1
        held_out = self.validation_days + self.test_days
        if days <= held_out:
            raise TrainingSetWindowError(
                f"the window {self.start}..{self.end} has {days} days: {self.validation_days} validation + "
                f"{self.test_days} test days leave no training days; use days >= {held_out + 1} "
                f"(or an earlier start) or fewer validation/test days"
            )

    @property
    def validation_start(self) -> date:
        return self.end - timedelta(days=self.test_days + self.validation_days - 1)

    @property
    def test_start(self) -> date:
        return self.end - timedelta(days=self.test_days - 1)

    def split_ranges(self) -> dict[str, tuple[date, date]]:
        return {
            "train": (self.start, self.validation_start - timedelta(days=1)),
            "validation": (self.validation_start, self.test_start - timedelta(days=1)),
            "test": (self.test_start, self.end),
        }

    def to_json(self) -> dict:
        out: dict = asdict(self)
        for key, value in out.items():
            if isinstance(value, date):
                out[key] = value.isoformat()
            elif isinstance(value, timedelta):
                out[key] = f"{value.total_seconds():g}s"
        return out


def window_config(
    *,
    start: date | None = None,
    end: date | None = None,
    days: int = DEFAULT_DAYS,
    validation_days: int = DEFAULT_VALIDATION_DAYS,
    test_days: int = DEFAULT_TEST_DAYS,
    max_staleness_hours: float = DEFAULT_MAX_STALENESS_HOURS,
    availability_lag_hours: float = 0.0,
    today: date | None = None,
) -> TrainingSetConfig:
    """The config of a run: no ``end`` -> yesterday (UTC); no ``start`` -> ``days`` days ending at ``end``.

    One function so that the Dagster run config and the CLI options mean the same thing.
    """
    end = end or (today or datetime.now(UTC).date()) - timedelta(days=1)
    if start is None and days < 1:
        raise TrainingSetWindowError(f"days must be at least 1 (got {days})")
    start = start or end - timedelta(days=days - 1)
    return TrainingSetConfig(
        start=start,
        end=end,
        max_staleness=timedelta(hours=max_staleness_hours),
        availability_lag=timedelta(hours=availability_lag_hours),
        validation_days=validation_days,
        test_days=test_days,
    )


def _day_range(first: date, last: date) -> str:
    return f"{first}" if first == last else f"{first}..{last}"


def check_coverage(conn: psycopg2.extensions.connection, config: TrainingSetConfig) -> None:
    """Before the join: every split's days hold at least one event (a BRIN-indexed probe per split).

    Why: without it a window past the data builds and writes a training set that only fails later,
    in training, as "the train split needs both positive and negative examples (0 rows)".
    """
    with conn.cursor() as cur:
        for name, (first, last) in config.split_ranges().items():
            cur.execute(
                "select exists (select 1 from raw.user_interactions "
                "where occurred_at >= %s::date::timestamptz and occurred_at < %s::date::timestamptz)",
                (first.isoformat(), (last + timedelta(days=1)).isoformat()),
            )
            if cur.fetchone()[0]:
                continue
            cur.execute(
                "select min(occurred_at at time zone 'UTC')::date, max(occurred_at at time zone 'UTC')::date "
                "from raw.user_interactions "
                "where occurred_at >= %s::date::timestamptz and occurred_at < %s::date::timestamptz",
                (config.start.isoformat(), (config.end + timedelta(days=1)).isoformat()),
            )
            low, high = cur.fetchone()
            found = f"events cover only {_day_range(low, high)}" if low else "there are no events at all"
            raise TrainingSetWindowError(
                f"the {name} days {_day_range(first, last)} of the window {config.start}..{config.end} have "
                f"no events ({found} in it); move the window (start/end) or use fewer days"
            )


def check_splits(frame: pd.DataFrame, ranges: dict[str, tuple[date, date]] | None = None) -> None:
    """After the join: every split has positive and negative examples (the model needs both to train,
    stop early and be judged). ``ranges`` names the days in the message when known."""
    for name in SPLITS:
        labels = frame.loc[frame["split"] == name, "label"]
        if labels.nunique() >= 2:
            continue
        days = f" ({_day_range(*ranges[name])})" if ranges else ""
        found = (
            "no examples"
            if labels.empty
            else f"{len(labels):,} examples, all {'positive' if labels.iloc[0] else 'negative'}"
        )
        raise TrainingSetWindowError(
            f"the {name} split{days} has {found}, but it needs both positive and negative examples; "
            f"use more days (days, validation_days, test_days) or a window with more events"
        )


class TrainingSetSchema(pa.DataFrameModel):
    """The training set's contract: types, ranges and closed vocabularies.

    Text columns are declared ``object`` and checked by ``holds_strings`` (one C-level type
    inference per column) instead of ``Series[str]``, whose check calls a Python lambda per value:
    that alone was 60% of validating two million examples.
    """

    user_id: Series[object] = pa.Field(str_length={"min_value": 36, "max_value": 36})
    listing_id: Series[object] = pa.Field(str_length={"min_value": 36, "max_value": 36})
    example_date: Series[object] = pa.Field(str_matches=r"^\d{4}-\d{2}-\d{2}$")
    example_time: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "us", "tz": "UTC"})
    features_as_of: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=True, dtype_kwargs={"unit": "us", "tz": "UTC"}
    )
    label: Series[np.int8] = pa.Field(isin=[0, 1])
    price_sensitivity: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    activity_score: Series[float] = pa.Field(ge=0, lt=1, nullable=True)
    price: Series[float] = pa.Field(ge=0, nullable=True)
    price_pct: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    is_premium: Series[float] = pa.Field(isin=[0.0, 1.0], nullable=True)
    image_count: Series[float] = pa.Field(ge=0, nullable=True)
    day_of_week: Series[np.int8] = pa.Field(ge=0, le=6)
    hour_of_day: Series[np.int8] = pa.Field(ge=0, le=23)
    user_category_affinity: Series[float] = pa.Field(ge=0, le=1 + 1e-9, nullable=True)
    user_city_affinity: Series[float] = pa.Field(ge=0, le=1 + 1e-9, nullable=True)
    price_gap: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    device_type: Series[object] = pa.Field(isin=list(DEVICE_TYPES))
    category_id: Series[object] = pa.Field(nullable=True)
    city: Series[object] = pa.Field(nullable=True)
    split: Series[object] = pa.Field(isin=list(SPLITS))

    class Config:
        strict = True
        ordered = True

    @pa.check("user_id", "listing_id", "example_date", "device_type", "category_id", "city", "split")
    def holds_strings(cls, series: pd.Series) -> bool:
        """Every non-null value is a ``str``."""
        return pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")

    @pa.dataframe_check
    def snapshot_precedes_example(cls, df: pd.DataFrame) -> Series[bool]:
        """No leakage: a snapshot used by an example has its cutoff at or before the example time."""
        return df["features_as_of"].isna() | (df["features_as_of"] <= df["example_time"])


@dataclass
class TrainingSet:
    """A built training set: the frame, where it was written, and its description."""

    frame: pd.DataFrame
    path: Path | None
    config: TrainingSetConfig
    fingerprint: str
    metadata: dict = field(default_factory=dict)


def _interval(value: timedelta) -> str:
    return f"{value.total_seconds()} seconds"


def render_sql(cur: psycopg2.extensions.cursor, config: TrainingSetConfig) -> str:
    """The examples query with its parameters bound (COPY cannot take parameters)."""
    params = {
        "start": f"{config.start.isoformat()}T00:00:00+00:00",
        "end": f"{(config.end + timedelta(days=1)).isoformat()}T00:00:00+00:00",
        "availability_lag": _interval(config.availability_lag),
        "max_staleness": _interval(config.max_staleness),
        "positive_event_types": list(POSITIVE_EVENT_TYPES),
    }
    return cur.mogrify(EXAMPLES_SQL, params).decode()


def query_examples(conn: psycopg2.extensions.connection, config: TrainingSetConfig) -> pd.DataFrame:
    """Run the PIT query and return the examples (unsplit, in a canonical order).

    Runs inside the caller's transaction (tests perturb tables and roll back); the caller ends it.
    """
    buffer = io.BytesIO()
    with conn.cursor() as cur:
        # timestamps leave as UTC ISO text whatever the server's or the role's time zone is
        cur.execute("set local timezone = 'UTC'")
        cur.copy_expert(f"copy ({render_sql(cur, config)}) to stdout with (format csv, header true)", buffer)
    buffer.seek(0)
    table = pa_csv.read_csv(
        buffer,
        convert_options=pa_csv.ConvertOptions(
            column_types=_ARROW_TYPES, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    # sorted in Arrow (multi-threaded C++, several times faster than pandas on 2M string keys);
    # (example_date, user_id, listing_id) is unique, so the order is total
    table = table.select(list(_ARROW_TYPES)).sort_by(
        [("example_date", "ascending"), ("user_id", "ascending"), ("listing_id", "ascending")]
    )
    return table.to_pandas(types_mapper=None)  # strings arrive as ``object`` columns of str


def assign_split(frame: pd.DataFrame, config: TrainingSetConfig) -> pd.DataFrame:
    """Time-based split by example date (the ranges of ``config.split_ranges``)."""
    validation, test = config.validation_start.isoformat(), config.test_start.isoformat()
    dates = frame["example_date"]
    # one comparison per distinct day, then a lookup (string comparisons on every row cost seconds)
    split_of = {
        d: "test" if d >= test else "validation" if d >= validation else "train" for d in dates.unique()
    }
    return frame.assign(split=dates.map(split_of).astype(object))


def fingerprint(frame: pd.DataFrame, config: TrainingSetConfig) -> str:
    """Content hash of the rows and the config: same data and knobs -> same folder name."""
    digest = hashlib.sha256(json.dumps(config.to_json(), sort_keys=True).encode())
    digest.update(",".join(frame.columns).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def describe(frame: pd.DataFrame, config: TrainingSetConfig, fp: str) -> dict:
    """Rows and positive rate per split, date range, features: the asset's metadata."""
    per_split = {}
    for name, (first, last) in config.split_ranges().items():
        part = frame[frame["split"] == name]
        per_split[name] = {
            "rows": len(part),
            "positive_rate": float(part["label"].mean()) if len(part) else None,
            "first_day": first.isoformat(),
            "last_day": last.isoformat(),
        }
    return {
        "rows": len(frame),
        "positive_rate": float(frame["label"].mean()) if len(frame) else None,
        "share_without_user_features": float(frame["features_as_of"].isna().mean()) if len(frame) else None,
        "start": config.start.isoformat(),
        "end": config.end.isoformat(),
        "splits": per_split,
        "features": list(FEATURES),
        "feature_service": FEATURE_SERVICE,
        "categorical_features": list(CATEGORICAL_FEATURES),
        "fingerprint": fp,
        "config": config.to_json(),
    }


def training_sets_dir() -> Path:
    return get_settings().home / "training_sets"


def write_parquet(frame: pd.DataFrame, root: Path, fp: str, metadata: dict) -> Path:
    """Parquet partitioned by ``example_date`` under ``root/<fingerprint>/``, written to a temporary
    folder and renamed, so a reader never sees half a training set; an existing identical set is kept."""
    target = root / fp
    if (target / "_metadata.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{fp}.{uuid.uuid4().hex[:8]}.tmp"
    table = pa_arrow.Table.from_pandas(frame, preserve_index=False)
    ds.write_dataset(
        table,
        staging,
        format="parquet",
        partitioning=ds.partitioning(pa_arrow.schema([("example_date", pa_arrow.string())]), flavor="hive"),
        existing_data_behavior="error",
    )
    (staging / "_metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True))
    if target.exists():  # a half-written leftover of a killed run
        shutil.rmtree(target)
    staging.rename(target)
    (root / "latest").write_text(fp + "\n")
    return target


def load(path: Path) -> pd.DataFrame:
    """Read a written training set back with the column order and types of the build."""
    table = ds.dataset(
        path,
        format="parquet",
        partitioning=ds.partitioning(pa_arrow.schema([("example_date", pa_arrow.string())]), flavor="hive"),
    ).to_table()
    frame = table.to_pandas()
    for name in ("device_type", "category_id", "city", "user_id", "listing_id", "example_date", "split"):
        frame[name] = frame[name].astype(object)
    frame = frame[list(COLUMNS)]
    return frame.sort_values(["example_date", "user_id", "listing_id"], kind="stable", ignore_index=True)


def latest_path(root: Path | None = None) -> Path:
    """The most recently written training set (the ``latest`` pointer)."""
    root = root or training_sets_dir()
    pointer = root / "latest"
    if not pointer.exists():
        raise FileNotFoundError(f"no training set under {root}: materialize the training_set asset first")
    return root / pointer.read_text().strip()


def build(
    conn: psycopg2.extensions.connection,
    config: TrainingSetConfig,
    root: Path | None = None,
    write: bool = True,
    progress: Callable[[str], None] | None = None,
) -> TrainingSet:
    """Check the window, query, split, validate (pandera, lazily: every failure reported), check
    both classes per split and write the training set. ``progress`` gets each of ``BUILD_STAGES``
    as it starts (the asset logs them, the CLI advances its bar)."""
    stage = progress or (lambda _name: None)
    stage(BUILD_STAGES[0])
    check_coverage(conn, config)
    stage(BUILD_STAGES[1])
    examples = query_examples(conn, config)
    stage(BUILD_STAGES[2])
    frame = TrainingSetSchema.validate(assign_split(examples, config), lazy=True)
    check_splits(frame, config.split_ranges())
    fp = fingerprint(frame, config)
    metadata = describe(frame, config, fp)
    stage(BUILD_STAGES[3])
    path = write_parquet(frame, root or training_sets_dir(), fp, metadata) if write else None
    return TrainingSet(frame=frame, path=path, config=config, fingerprint=fp, metadata=metadata)
