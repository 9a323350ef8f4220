"""A small platform run driven the way the Dagster daemon drives it, for the UI and tick tests.

Built once per test session in a *private* database, FS_HOME, DAGSTER_HOME (Postgres storage,
the project's dagster.yaml) and Redis key prefix:

1. synthetic files are dropped into the inbox and a tick of ``inbox_sensor`` is evaluated on the
   real instance; its run request is executed as a run of the asset job (ingestion);
2. ticks of ``daily_features_job_schedule`` at 03:00 UTC of two days are evaluated and the
   partition runs they request executed (dbt build, tests as asset checks);
3. the automation condition of the Redis sync assets is evaluated (the
   ``online_store_sync_sensor``'s logic) and the sync it requests executed; a further
   evaluation requests nothing;
4. the training set, the model and its promotion check are materialized.

Everything lands in the same Dagster instance that ``dagster dev`` then serves (test_browser_ui).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import dagster as dg
import psycopg2
from dagster._core.definitions.sensor_definition import SensorExecutionData

from fs_platform.online.views import online_views

END = date(2026, 3, 1)  # exclusive end of the generated events
DAYS = 9
SCHEDULED_DAYS = (date(2026, 2, 27), date(2026, 2, 28))  # partitions run by schedule ticks
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
#: one sync asset per online feature view of the registry
ONLINE_ASSETS = tuple(dg.AssetKey(f"online_{name}") for name in online_views())


@dataclass
class Tick:
    """One evaluated tick and the runs executed for its requests."""

    name: str
    requests: list[dg.RunRequest]
    run_ids: list[str] = field(default_factory=list)
    cursor: str | None = None


@dataclass
class UiState:
    env: dict[str, str]  # the environment of the run (FS_*, DAGSTER_HOME): give it to `dagster dev`
    home: Path
    database_url: str
    redis_url: str
    inbox_tick: Tick
    inbox_tick_again: SensorExecutionData
    schedule_ticks: list[Tick]
    automation_before: dg.EvaluateAutomationConditionsResult
    automation_tick: dg.EvaluateAutomationConditionsResult
    automation_after_sync: dg.EvaluateAutomationConditionsResult
    sync_run_id: str
    seconds: dict[str, float]

    @contextlib.contextmanager
    def activated(self) -> Iterator[UiState]:
        """os.environ pointing at this state (database, Redis prefix, FS_HOME, DAGSTER_HOME), restored after.

        Only inside this block: the other test modules must keep seeing the session's database.
        """
        with _environment(self.env):
            yield self

    def dagster_dev_env(self) -> dict[str, str]:
        """The environment for `dagster dev`: ours instead of any FS_*/DAGSTER_* of the test process."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("FS_", "DAGSTER_"))}
        return {**base, **self.env}


@contextlib.contextmanager
def open_instance() -> Iterator[dg.DagsterInstance]:
    """The instance of DAGSTER_HOME, disposed afterwards.

    Not ``with DagsterInstance.get()``: entering an instance publishes its state storage in a
    context variable, and when Dagster code enters the same instance again inside the block the
    outer exit no longer resets it, so later ``dg.materialize`` calls in the session find a
    disposed instance ("Attempted to resolve undefined DagsterInstance weakref").
    """
    instance = dg.DagsterInstance.get()
    try:
        yield instance
    finally:
        instance.dispose()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith(("FS_", "DAGSTER_"))]:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


_STATE: UiState | None = None


def build_ui_state(request, service_urls: dict[str, str], tmp_path_factory) -> UiState:
    """Build (once per session) and return the state; torn down at session end.

    The build runs with the state's environment and restores the test process's afterwards; use
    ``state.activated()`` around code that reads the environment (Dagster instance, settings).
    """
    global _STATE
    if _STATE is None:
        database_url = _create_database(service_urls["server_url"])
        prefix = f"fs_test_ui_{uuid.uuid4().hex[:8]}"

        def teardown() -> None:
            global _STATE
            _STATE = None
            _drop(service_urls, database_url, prefix)

        request.addfinalizer(teardown)
        home = tmp_path_factory.mktemp("ui_home")
        env = {
            **{k: v for k, v in os.environ.items() if k.startswith(("FS_TEST_", "DAGSTER_TELEMETRY"))},
            "FS_DATABASE_URL": database_url,
            "FS_REDIS_URL": service_urls["redis_url"],
            "FS_HOME": str(home),
            "FS_REDIS_PREFIX": prefix,
        }
        with _environment(env):
            _STATE = _build(database_url, service_urls["redis_url"], home)
    return _STATE


def _create_database(server_url: str) -> str:
    dbname = f"fs_test_ui_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"create database {dbname}")
    admin.close()
    return urlunparse(urlparse(server_url)._replace(path=f"/{dbname}"))


def _drop(service_urls: dict[str, str], database_url: str, prefix: str) -> None:
    from online_support import delete_prefix

    from fs_platform.online.store import connect

    admin = psycopg2.connect(service_urls["server_url"])
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {urlparse(database_url).path.lstrip('/')} with (force)")
    admin.close()
    client = connect(service_urls["redis_url"], 5)
    delete_prefix(client, prefix)
    client.close()


def _build(database_url: str, redis_url: str, home: Path) -> UiState:
    from fs_platform.definitions import defs
    from fs_platform.dev.synthetic import generate, write_parquet
    from fs_platform.dev.training_demo import demo_window, train_demo_model
    from fs_platform.infra.instance import prepare_environment

    prepare_environment()  # FS_PG_*, DAGSTER_HOME=$FS_HOME/dagster_home with the project's dagster.yaml
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    data = generate("xs", days=DAYS, seed=11, end=END)
    inbox = home / "inbox"
    written = write_parquet(data, inbox)
    truth_dir = home / "ground_truth"
    truth_dir.mkdir()
    for path in written.get("ground_truth", []):
        shutil.move(str(path), truth_dir / path.name)
    seconds["generate"] = time.perf_counter() - started

    asset_job = defs.resolve_implicit_global_asset_job_def()
    with open_instance() as instance:
        # 1. a tick of the inbox sensor, and the ingestion run it requests
        t = time.perf_counter()
        sensor = defs.resolve_sensor_def("inbox_sensor")
        with dg.build_sensor_context(instance=instance, cursor=None, definitions=defs) as context:
            result = sensor.evaluate_tick(context)
        inbox_tick = Tick("inbox_sensor", list(result.run_requests or []), cursor=result.cursor)
        for req in inbox_tick.requests:
            run = asset_job.execute_in_process(
                run_config={**req.run_config, **QUIET},
                instance=instance,
                asset_selection=list(req.asset_selection),
                tags={**req.tags, "dagster/sensor_name": "inbox_sensor"},
            )
            inbox_tick.run_ids.append(run.run_id)
        with dg.build_sensor_context(
            instance=instance, cursor=inbox_tick.cursor, definitions=defs
        ) as context:
            again = sensor.evaluate_tick(context)
        seconds["inbox_tick_and_ingestion"] = time.perf_counter() - t

        # the automation of the Redis sync before any mart exists: nothing to do
        online = dg.AssetSelection.assets(*ONLINE_ASSETS)
        before = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=online)

        # 2. ticks of the daily schedule at 03:00 UTC, and the partition runs they request
        t = time.perf_counter()
        schedule = defs.resolve_schedule_def("daily_features_job_schedule")
        job = defs.resolve_job_def(schedule.job_name)
        schedule_ticks = []
        for day in SCHEDULED_DAYS:
            at = datetime(day.year, day.month, day.day, 3, 0, tzinfo=UTC)
            with dg.build_schedule_context(instance=instance, scheduled_execution_time=at) as context:
                evaluated = schedule.evaluate_tick(context)
            tick = Tick(f"{schedule.name}@{at:%Y-%m-%dT%H:%M}Z", list(evaluated.run_requests or []))
            for req in tick.requests:
                run = job.execute_in_process(
                    instance=instance,
                    partition_key=req.partition_key,
                    run_config={**(req.run_config or {}), **QUIET},
                    tags={**req.tags, "dagster/schedule_name": schedule.name},
                )
                tick.run_ids.append(run.run_id)
            schedule_ticks.append(tick)
        seconds["schedule_ticks_and_dbt"] = time.perf_counter() - t

        # 3. the sync automation now requests both Redis syncs; run them; then nothing is due
        t = time.perf_counter()
        tick = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=online, cursor=before.cursor
        )
        requested = [key for key in ONLINE_ASSETS if tick.get_num_requested(key)]
        sync = asset_job.execute_in_process(
            instance=instance,
            asset_selection=requested or list(ONLINE_ASSETS),
            run_config=QUIET,
            tags={"dagster/sensor_name": "online_store_sync_sensor"},
        )
        after = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=online, cursor=tick.cursor
        )
        seconds["automation_and_sync"] = time.perf_counter() - t

        # 4. training set, model, promotion check
        t = time.perf_counter()
        train_demo_model(instance, defs.resources, *demo_window(END, DAYS), truth_dir)
        seconds["training"] = time.perf_counter() - t

    seconds["total"] = time.perf_counter() - started
    env = {k: v for k, v in os.environ.items() if k.startswith(("FS_", "DAGSTER_"))}
    return UiState(
        env=env,
        home=home,
        database_url=database_url,
        redis_url=redis_url,
        inbox_tick=inbox_tick,
        inbox_tick_again=again,
        schedule_ticks=schedule_ticks,
        automation_before=before,
        automation_tick=tick,
        automation_after_sync=after,
        sync_run_id=sync.run_id,
        seconds=seconds,
    )
