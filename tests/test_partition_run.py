"""The one partition -> dbt hand-off: pure functions, checked without a database."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime

import pytest

from fs_platform.features.partition_run import (
    CUTOFF_ENV,
    RANGE_START_ENV,
    cutoff_for_partition,
    partition_environment,
    partition_run,
)


def test_partition_d_means_cutoff_d_midnight_utc():
    assert cutoff_for_partition("2026-03-05") == datetime(2026, 3, 5, tzinfo=UTC)
    assert cutoff_for_partition(date(2026, 3, 5)) == datetime(2026, 3, 5, tzinfo=UTC)


def test_build_excludes_unit_tests_and_carries_t_in_the_environment():
    run = partition_run("2026-03-05")
    assert run.args == ["build", "--exclude", "test_type:unit"]
    assert run.env == {CUTOFF_ENV: "2026-03-05T00:00:00+00:00", RANGE_START_ENV: ""}
    assert run.partition == date(2026, 3, 5)


def test_overrides_full_refresh_and_extra_args():
    run = partition_run(
        "2026-03-05", command="run", overrides={"decay_kind": "linear"}, full_refresh=True, extra_args=["-q"]
    )
    assert run.args[0] == "run" and "--exclude" not in run.args
    assert json.loads(run.args[run.args.index("--vars") + 1]) == {"decay_kind": "linear"}
    assert run.args[-2:] == ["--full-refresh", "-q"]
    assert run.subprocess_env({"PATH": "/bin"}) == {
        "PATH": "/bin",
        CUTOFF_ENV: "2026-03-05T00:00:00+00:00",
        RANGE_START_ENV: "",
    }


def test_a_range_run_carries_its_first_cutoff_and_a_single_run_clears_it():
    run = partition_run("2026-03-05", range_start="2026-03-02")
    assert run.env == {CUTOFF_ENV: "2026-03-05T00:00:00+00:00", RANGE_START_ENV: "2026-03-02T00:00:00+00:00"}
    # a one-partition run never inherits a range start left in the caller's environment
    assert partition_run("2026-03-05").subprocess_env({RANGE_START_ENV: "2026-03-02"})[RANGE_START_ENV] == ""
    with pytest.raises(ValueError, match="after the partition"):
        partition_run("2026-03-05", range_start="2026-03-06")


def test_partition_environment_is_scoped(monkeypatch):
    monkeypatch.setenv(CUTOFF_ENV, "before")
    with partition_environment(partition_run("2026-03-05")):
        assert os.environ[CUTOFF_ENV] == "2026-03-05T00:00:00+00:00"
    assert os.environ[CUTOFF_ENV] == "before"
    monkeypatch.delenv(CUTOFF_ENV)
    with partition_environment(partition_run("2026-03-06")):
        pass
    assert CUTOFF_ENV not in os.environ
