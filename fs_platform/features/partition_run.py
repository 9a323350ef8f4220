"""The one hand-off from a daily partition to dbt: partition D -> cutoff T -> a dbt invocation.

The Dagster asset, the demo, the detection harness and the benchmarks all build their dbt calls
here, so "which T does partition D mean" and "how does T reach dbt" are answered once.

T travels to dbt as the environment variable ``FS_FEATURE_CUTOFF`` (read by the ``cutoff_ts()``
macro), not as ``--vars``: a changed ``--vars`` value invalidates dbt's partial parse (~8 s a
partition). Per-run formula overrides (decay kind, half-life, ...) still go through ``--vars``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

#: the environment variable the dbt macro ``cutoff_ts()`` reads
CUTOFF_ENV = "FS_FEATURE_CUTOFF"
#: the first cutoff S of a range run (macro ``range_start_ts()``); unset for one partition
RANGE_START_ENV = "FS_FEATURE_RANGE_START"


def cutoff_for_partition(partition: str | date) -> datetime:
    """Partition 'YYYY-MM-DD' (or a date) -> the cutoff T: that day at 00:00 UTC."""
    day = date.fromisoformat(partition) if isinstance(partition, str) else partition
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class PartitionRun:
    """One dbt invocation for one partition: its arguments and the environment it needs."""

    partition: date
    cutoff: datetime
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def subprocess_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a dbt subprocess: ``base`` (default: this process's) plus T."""
        return {**(os.environ if base is None else base), **self.env}


def partition_run(
    partition: str | date,
    *,
    command: str = "build",
    overrides: Mapping[str, Any] | None = None,
    full_refresh: bool = False,
    extra_args: Sequence[str] = (),
    range_start: str | date | None = None,
) -> PartitionRun:
    """The dbt call that computes partition ``partition``, or with ``range_start`` every partition
    from ``range_start`` to ``partition`` in one invocation (a backfill: one dbt start-up, one pass
    of the data tests, the snapshots built oldest first in the same run).

    ``build`` runs the models and their data tests; dbt unit tests check the SQL logic rather than
    the data, so they run in the test suite, not on every partition.
    """
    cutoff = cutoff_for_partition(partition)
    args = [command]
    if command == "build":
        args += ["--exclude", "test_type:unit"]
    if overrides:
        args += ["--vars", json.dumps(dict(overrides), sort_keys=True)]
    if full_refresh:
        args.append("--full-refresh")
    args += list(extra_args)
    # RANGE_START_ENV "" = one partition, whatever the caller's environment holds
    env = {CUTOFF_ENV: cutoff.isoformat(), RANGE_START_ENV: ""}
    if range_start is not None:
        start = cutoff_for_partition(range_start)
        if start > cutoff:
            raise ValueError(f"range start {start:%Y-%m-%d} is after the partition {cutoff:%Y-%m-%d}")
        env[RANGE_START_ENV] = start.isoformat()
    return PartitionRun(cutoff.date(), cutoff, args, env)


@contextmanager
def partition_environment(run: PartitionRun) -> Iterator[None]:
    """Expose T to dbt calls that read ``os.environ`` (dagster-dbt, dbtRunner), then restore it."""
    saved = {name: os.environ.get(name) for name in run.env}
    os.environ.update(run.env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
