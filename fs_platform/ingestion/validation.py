"""Pandera schemas for incoming rows, and the translation of their failures into reasons people read.

Rows arrive as text (or typed Parquet) and are first *parsed* column by column (unparseable
values become nulls); the pandera models then check the parsed frame lazily so every failing
row of a chunk is reported at once. Strings are Arrow-backed, so the regex and ``isin`` checks
run vectorised in C++ rather than row by row in Python.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from fs_platform.ingestion.vocabulary import DEVICE_TYPES, EVENT_TYPES

UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
SLUG_RE = r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$"
#: strings are Arrow-backed so regex/isin checks run in C++ (and the dtype check is a no-op)
_ARROW = {"storage": "pyarrow"}


class InteractionRow(pa.DataFrameModel):
    """One parsed row of an interactions file (semantics §3)."""

    event_id: Series[pd.StringDtype] = pa.Field(nullable=False, str_matches=UUID_RE, dtype_kwargs=_ARROW)
    user_id: Series[pd.StringDtype] = pa.Field(nullable=False, str_matches=UUID_RE, dtype_kwargs=_ARROW)
    listing_id: Series[pd.StringDtype] = pa.Field(nullable=False, str_matches=UUID_RE, dtype_kwargs=_ARROW)
    event_type: Series[pd.StringDtype] = pa.Field(nullable=False, isin=list(EVENT_TYPES), dtype_kwargs=_ARROW)
    device_type: Series[pd.StringDtype] = pa.Field(
        nullable=False, isin=list(DEVICE_TYPES), dtype_kwargs=_ARROW
    )
    occurred_at: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=False, dtype_kwargs={"unit": "us", "tz": "UTC"}
    )

    class Config:
        strict = False
        coerce = False


class ListingRow(pa.DataFrameModel):
    """One parsed row of a listings file (semantics §3)."""

    listing_id: Series[pd.StringDtype] = pa.Field(nullable=False, str_matches=UUID_RE, dtype_kwargs=_ARROW)
    category_id: Series[pd.StringDtype] = pa.Field(
        nullable=False, str_length={"min_value": 1, "max_value": 100}
    )
    city: Series[pd.StringDtype] = pa.Field(nullable=False, str_matches=SLUG_RE, dtype_kwargs=_ARROW)
    price: Series[float] = pa.Field(nullable=True, ge=0, lt=1e10)
    is_premium: Series[pd.BooleanDtype] = pa.Field(nullable=False)
    image_count: Series[pd.Int64Dtype] = pa.Field(nullable=False, ge=0, le=10_000)
    #: optional in files; always present after parsing (null when the file has no such column)
    updated_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=True, dtype_kwargs={"unit": "us", "tz": "UTC"})

    class Config:
        strict = False
        coerce = False


def failure_reasons(schema: type[pa.DataFrameModel], frame: pd.DataFrame, raw: pd.DataFrame) -> pd.Series:
    """Validate ``frame`` lazily and return a reason per failing row (index = row position).

    ``raw`` holds the values as they were read, so reasons quote what the sender sent rather
    than what the parser made of it.
    """
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return pd.Series(dtype=object)
    cases = cases[cases["index"].notna()]
    reasons: dict[int, str] = {}
    for column, check, index in zip(cases["column"], cases["check"], cases["index"], strict=True):
        row = int(index)
        if row in reasons:
            continue
        reasons[row] = _reason(column, str(check), raw.at[row, column] if column in raw.columns else None)
    return pd.Series(reasons, dtype=object)


def _quote(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
        return "missing"
    text = str(value)
    return repr(text[:60] + ("…" if len(text) > 60 else ""))


def _reason(column: str, check: str, raw_value: object) -> str:
    shown = _quote(raw_value)
    if shown == "missing":
        return f"{column} is missing"
    if check.startswith("str_matches") and column.endswith("_id"):
        return f"{column} is not a UUID: {shown}"
    if check.startswith("str_matches") and column == "city":
        return f"city is not a lower-case slug: {shown}"
    if check.startswith("isin"):
        allowed = EVENT_TYPES if column == "event_type" else DEVICE_TYPES
        return f"unknown {column} {shown} (expected one of {', '.join(allowed)})"
    if check == "not_nullable":
        return f"{column} is not a valid value: {shown}"
    return f"{column} fails {check}: {shown}"


def time_window_reasons(occurred_at: pd.Series, earliest: datetime, latest: datetime) -> pd.Series:
    """Reasons for timestamps outside [earliest, latest] (the configured plausibility window)."""
    reasons = pd.Series(pd.NA, index=occurred_at.index, dtype=object)
    future = occurred_at > latest
    past = occurred_at < earliest
    reasons[future] = "occurred_at " + occurred_at[future].astype(str) + " is in the future"
    reasons[past] = (
        "occurred_at "
        + occurred_at[past].astype(str)
        + f" is before the earliest accepted date {earliest.date()}"
    )
    return reasons.dropna()


def updated_at_reasons(updated_at: pd.Series, created_at: pd.Series, latest: datetime) -> pd.Series:
    """Reasons for listing ``updated_at`` values that cannot date a version (semantics §3).

    A change dated beyond ``latest`` (now plus the tolerance) or before the listing's own creation
    would place a version where no state of the listing can have been.
    """
    reasons = pd.Series(pd.NA, index=updated_at.index, dtype=object)
    future = (updated_at > latest).fillna(False).to_numpy(dtype=bool)
    early = (updated_at < created_at).fillna(False).to_numpy(dtype=bool) & ~future
    reasons[future] = "updated_at " + updated_at[future].astype(str) + " is in the future"
    reasons[early] = (
        "updated_at "
        + updated_at[early].astype(str)
        + " is before created_at "
        + created_at[early].astype(str)
    )
    return reasons.dropna()
