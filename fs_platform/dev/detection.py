"""Detection quality of the drift checks, measured on synthetic data with known drift.

A *scenario* is one generated dataset (drift-free, or with one drift kind from an onset day) loaded
through the real ingestion into its own database, real dbt partitions, then the real checks:

- input drift on partition D judges the events of day D - 1 (so onset day O is judged at O + 1);
  detected when it fires for event day O or O + 1;
- feature drift on partition D compares it with D - 7; detected when it fires for a partition in
  O + 1 .. O + 7 (the first snapshot that contains drifted events is O + 1);
- prediction drift on partition D scores the examples of day D - 1 with a model trained just before
  the evaluated days; detected like feature drift (within 7 days).

False alarms are firings on the drift-free scenario's days. ``tests/test_monitoring_detection.py``
runs a small version, ``bench/bench_drift.py`` the full one.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from fs_platform.dev.synthetic import SyntheticData, generate, write_parquet
from fs_platform.features.partition_run import partition_environment, partition_run
from fs_platform.infra.dbt import DBT_PROJECT_DIR, dbt_executable
from fs_platform.infra.runtime import pg_connect, pg_env
from fs_platform.ingestion.load import ingest_interactions_file, ingest_listings_file, ingest_many
from fs_platform.model import registry as model_registry
from fs_platform.model.training import train
from fs_platform.monitoring import drift_reports
from fs_platform.retrieval import training_set

CHECKS = ("input_drift", "feature_drift", "prediction_drift")
#: days after onset within which a check must fire: input within 1 day, the others within 7
DETECTION_WINDOW = {"input_drift": 1, "feature_drift": 7, "prediction_drift": 7}


@dataclass
class Scenario:
    """One dataset: ``drift`` (None = drift-free) from event day ``onset``; checks on ``partitions``."""

    name: str
    drift: str | None
    onset: date | None
    partitions: list[date]  # evaluated partitions (cutoff dates)
    firings: dict[str, dict[str, bool]] = field(default_factory=dict)  # check -> partition -> fired
    values: dict[str, dict[str, dict]] = field(default_factory=dict)  # check -> partition -> columns

    def detected(self, check: str) -> bool | None:
        """Did ``check`` fire inside its detection window (None for a drift-free scenario)?"""
        if self.onset is None:
            return None
        return any(
            fired for day, fired in self.firings.get(check, {}).items() if _in_window(check, day, self)
        )

    def false_alarms(self, check: str) -> tuple[int, int]:
        """(firings, evaluated days) on drift-free days."""
        days = [
            fired
            for day, fired in self.firings.get(check, {}).items()
            if self.onset is None or date.fromisoformat(day) <= self.onset
        ]
        return sum(days), len(days)


def _in_window(check: str, day: str, scenario: Scenario) -> bool:
    """Partition ``day`` is inside the check's window after onset (input: event day O or O+1)."""
    assert scenario.onset is not None
    offset = (date.fromisoformat(day) - scenario.onset).days
    return 1 <= offset <= DETECTION_WINDOW[check] + (1 if check == "input_drift" else 0)


def load(database_url: str, data: SyntheticData, folder: Path) -> None:
    """Fresh raw/staging/features schemas, then the real ingestion of the generated files."""
    conn = pg_connect(database_url)
    with conn.cursor() as cur:
        cur.execute("drop schema if exists raw, staging, features, monitoring cascade")
    conn.commit()
    paths = write_parquet(data, folder, clean=True)
    report = ingest_listings_file(conn, paths["listings"][0])
    conn.close()
    if report.rejected:
        raise RuntimeError(f"synthetic listings rejected: {report.reject_reasons}")
    reports = ingest_many(database_url, paths["interactions"], ingest_interactions_file, workers=2)
    rejected = sum(r.rejected for r in reports)
    if rejected:
        raise RuntimeError(f"{rejected} synthetic events rejected")


def build_partitions(
    database_url: str, partitions: list[date], target_path: str = "target/drift", *, in_process: bool = True
) -> None:
    """``dbt run`` of every model per partition, in date order (the first one rebuilds the rollups).

    In-process (``dbtRunner``) a partition costs ~1 s instead of ~4.5 s for a new dbt process; tests use
    ``in_process=False`` so dbt's global state never leaks into the other tests of the session.
    """
    env = pg_env(database_url)
    cwd = os.getcwd()
    runner = None
    if in_process:
        from dbt.cli.main import dbtRunner

        os.environ.update(env)
        runner = dbtRunner()
        os.chdir(DBT_PROJECT_DIR)
    try:
        for i, day in enumerate(sorted(partitions)):
            run = partition_run(
                day,
                command="run",
                full_refresh=i == 0,
                extra_args=["--profiles-dir", ".", "--target-path", target_path, "--quiet"],
            )
            if runner is not None:
                with partition_environment(run):
                    result = runner.invoke(run.args)
                if not result.success:
                    raise RuntimeError(f"dbt run for partition {day} failed: {result.exception}")
            else:
                subprocess.run(
                    [dbt_executable(), *run.args],
                    cwd=DBT_PROJECT_DIR,
                    env=run.subprocess_env({**os.environ, **env}),
                    check=True,
                )
    finally:
        os.chdir(cwd)


def train_model(database_url: str, first: date, last: date, root: Path) -> model_registry.RegisteredModel:
    """A ctr model on the examples of ``first..last`` (last two days = its test days), in ``root``."""
    config = training_set.TrainingSetConfig(start=first, end=last, validation_days=1, test_days=2)
    conn = pg_connect(database_url)
    built = training_set.build(conn, config, root=root / "training_sets")
    conn.close()
    trained = train(built.frame, params={"min_data_in_leaf": 20})
    folder = model_registry.save(
        trained,
        {
            "data_fingerprint": built.fingerprint,
            "training_set_path": str(built.path),
            "training_window": built.metadata["splits"],
        },
        root=root / "models",
    )
    return model_registry.load(folder.name, root=root / "models")


def evaluate(
    database_url: str,
    scenario: Scenario,
    model: model_registry.RegisteredModel | None,
    reports_root: Path,
) -> Scenario:
    """Run the checks on every evaluated partition and record which fired."""
    conn = pg_connect(database_url)
    try:
        for partition in scenario.partitions:
            key = partition.isoformat()
            results = {
                "input_drift": drift_reports.input_drift(conn, partition, root=reports_root),
                "feature_drift": drift_reports.feature_drift(conn, partition, root=reports_root),
            }
            if model is not None:
                results["prediction_drift"] = drift_reports.prediction_drift(
                    conn, partition, model=model, root=reports_root
                )
            for check, result in results.items():
                scenario.firings.setdefault(check, {})[key] = result.drift_detected
                scenario.values.setdefault(check, {})[key] = {
                    c: r["value"] for c, r in result.columns.items()
                }
    finally:
        conn.close()
    return scenario


def run_scenario(
    database_url: str,
    *,
    name: str,
    drift: str | None,
    scale: str,
    seed: int,
    end: date,
    days: int,
    onset: date | None,
    partitions: list[date],
    workdir: Path,
    with_predictions: bool = True,
) -> Scenario:
    """Generate, ingest, build the partitions the checks need, train a model, evaluate."""
    data = generate(scale, days=days, seed=seed, end=end, drift=drift, drift_from=onset)
    folder = workdir / name
    load(database_url, data, folder / "data")
    first = min(partitions)
    build_partitions(database_url, [first - timedelta(days=7 - i) for i in range(7)] + partitions)
    model = None
    if with_predictions:
        # examples of the 6 days before the first evaluated partition's judged day; snapshots exist for them
        model = train_model(database_url, first - timedelta(days=7), first - timedelta(days=2), folder)
    scenario = Scenario(name=name, drift=drift, onset=onset, partitions=sorted(partitions))
    return evaluate(database_url, scenario, model, folder / "reports")
