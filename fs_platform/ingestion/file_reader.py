"""Reading event and listing files (Parquet, CSV, JSON lines) into one tabular shape.

A file either yields a table plus per-row problems found while reading (bytes that are not
UTF-8, CSV rows with the wrong number of fields, JSON lines that do not parse), or it is
refused as a whole with ``UnreadableFileError`` (not the format its name says, missing
columns, zero bytes) so that nothing of it is written.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_MAX_FIELD_CHARS = 10_000


class UnreadableFileError(ValueError):
    """The file cannot be read as a whole; nothing of it may be written."""


@dataclass
class ReadResult:
    """Rows as read: ``frame`` has one row per readable data row (strings stay strings)."""

    frame: pd.DataFrame
    #: row position in ``frame`` -> reason found while reading (e.g. invalid UTF-8)
    row_problems: dict[int, str] = field(default_factory=dict)
    #: rows that could not even be split into fields: (payload, reason)
    unparsed_rows: list[tuple[dict, str]] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return len(self.frame) + len(self.unparsed_rows)


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UnreadableFileError(
            f"{path.name}: unsupported file type {path.suffix!r} (expected one of {', '.join(sorted(FORMATS))})"
        )
    return fmt


def read_rows(path: Path, required: list[str], optional: tuple[str, ...] = ()) -> ReadResult:
    """Read ``path`` and check it has the ``required`` columns; refuse it whole otherwise.

    ``optional`` columns are kept when the file has them; a file without them is still read
    (senders that never had such a column keep working).
    """
    fmt = file_format(path)
    if not path.exists():
        raise UnreadableFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise UnreadableFileError(f"{path.name}: the file is empty (0 bytes), nothing to ingest")
    reader = {"parquet": _read_parquet, "csv": _read_csv, "jsonl": _read_jsonl}[fmt]
    result = reader(path)
    missing = [c for c in required if c not in result.frame.columns]
    if missing:
        found = ", ".join(map(str, result.frame.columns)) or "none"
        raise UnreadableFileError(
            f"{path.name}: missing required column(s) {', '.join(missing)} (found: {found}); file refused"
        )
    result.frame = result.frame[required + [c for c in optional if c in result.frame.columns]]
    return result


def _read_parquet(path: Path) -> ReadResult:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFileError(f"{path.name}: not a readable Parquet file ({exc}); file refused") from exc
    columns = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            series = col.to_pandas()
            if series.dt.tz is None:  # naive timestamps are taken as UTC (documented)
                series = series.dt.tz_localize("UTC")
            columns[name] = series.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            columns[name] = col.to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow"))
        else:
            columns[name] = col.to_pandas()
    return ReadResult(frame=pd.DataFrame(columns))


def _decode(raw: bytes, name: str) -> tuple[str, bool]:
    """Decode as UTF-8; on failure replace bad bytes (rows holding them are rejected later)."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), True


def _read_csv(path: Path) -> ReadResult:
    text, had_bad_bytes = _decode(path.read_bytes(), path.name)
    text = text.lstrip("\ufeff")
    header_line = text.split("\n", 1)[0]
    if "\ufffd" in header_line:
        raise UnreadableFileError(f"{path.name}: the header line is not valid UTF-8; file refused")
    try:
        header = next(csv.reader([header_line]))
    except (csv.Error, StopIteration) as exc:
        raise UnreadableFileError(f"{path.name}: no CSV header line ({exc}); file refused") from exc
    if len(header) < 2 or any(not h.strip() for h in header):
        raise UnreadableFileError(
            f"{path.name}: does not look like CSV (header {header_line[:80]!r}); file refused"
        )
    unparsed: list[tuple[dict, str]] = []

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        unparsed.append(
            (
                {"raw_line": (row.text or "")[:_MAX_FIELD_CHARS]},
                f"CSV row has {row.actual_columns} fields, expected {row.expected_columns}",
            )
        )
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=True,
            ),
            read_options=pacsv.ReadOptions(block_size=1 << 26),
        )
    except pa.ArrowException as exc:
        raise UnreadableFileError(f"{path.name}: not a readable CSV file ({exc}); file refused") from exc
    frame = table.to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow") if t == pa.string() else None)
    frame.columns = [c.strip() for c in frame.columns]
    problems: dict[int, str] = {}
    if had_bad_bytes:
        for name in frame.columns:
            bad = frame[name].str.contains("\ufffd", regex=False).fillna(False).to_numpy(dtype=bool)
            for row in bad.nonzero()[0]:
                problems.setdefault(int(row), f"{name} contains bytes that are not valid UTF-8")
    return ReadResult(frame=frame, row_problems=problems, unparsed_rows=unparsed)


def _read_jsonl(path: Path) -> ReadResult:
    text, _ = _decode(path.read_bytes(), path.name)
    records: list[dict] = []
    problems: dict[int, str] = {}
    parsed_any = False
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = len(records)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            records.append({})
            problems[row] = f"line {line_number} is not valid JSON ({exc.msg})"
            continue
        if not isinstance(obj, dict):
            records.append({})
            problems[row] = f"line {line_number} is not a JSON object"
            continue
        parsed_any = True
        record = {
            k: (None if v is None else v if isinstance(v, str) else json.dumps(v)) for k, v in obj.items()
        }
        if any("\ufffd" in v for v in record.values() if isinstance(v, str)):
            problems[row] = f"line {line_number} contains bytes that are not valid UTF-8"
        records.append(record)
    if records and not parsed_any:
        raise UnreadableFileError(
            f"{path.name}: not a JSON-lines file (no line parses as a JSON object); file refused"
        )
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    frame = frame.astype({c: pd.StringDtype("pyarrow") for c in frame.columns})
    return ReadResult(frame=frame, row_problems=problems)


def payload_of(frame: pd.DataFrame, row: int) -> dict:
    """The row as the sender sent it, JSON-safe (PostgreSQL jsonb cannot hold NUL characters)."""
    payload = {}
    for name, value in frame.iloc[row].items():
        if (
            value is None
            or value is pd.NA
            or value is pd.NaT
            or (isinstance(value, float) and value != value)
        ):
            payload[str(name)] = None
        elif isinstance(value, pd.Timestamp):
            payload[str(name)] = value.isoformat()
        else:
            text = str(value)
            payload[str(name)] = text.replace("\x00", "\ufffd")[:_MAX_FIELD_CHARS]
    return payload
