"""`fs-platform`: services, data generation, ingestion, the demo, the feature registry."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from pathlib import Path

import click

from fs_platform.infra.config import PROJECT_ROOT, config_rows, get_settings, pin_home


@click.group()
def main() -> None:
    """Feature store for the marketplace recommender."""
    pin_home()  # FS_HOME absolute for child processes; owner-only files for what we write


# ---------------------------------------------------------------- services


@main.group()
def services() -> None:
    """Embedded PostgreSQL and Redis (used when FS_DATABASE_URL / FS_REDIS_URL are unset)."""


@services.command("start")
def services_start() -> None:
    from fs_platform.infra.runtime import ensure_services, redact

    urls = ensure_services()
    click.echo(f"postgres: {redact(urls.database_url)}\nredis:    {redact(urls.redis_url)}")


@services.command("stop")
def services_stop() -> None:
    from fs_platform.infra.runtime import stop_services

    for name, stopped in stop_services().items():
        click.echo(f"{name}: {'stopped' if stopped else 'not running (or external)'}")


@services.command("status")
def services_status_cmd() -> None:
    from fs_platform.infra.runtime import services_status

    for name, status in services_status().items():
        click.echo(f"{name}: {status}")


@services.command("env")
def services_env() -> None:
    """Print `export` lines for dbt/psql/dagster: eval "$(fs-platform services env)"."""
    from fs_platform.infra.instance import prepare_environment

    prepare_environment()
    names = [
        "FS_HOME",  # absolute: `services stop` from any folder finds these servers
        "FS_DATABASE_URL",
        "FS_REDIS_URL",
        "FS_PG_HOST",
        "FS_PG_PORT",
        "FS_PG_USER",
        "FS_PG_PASSWORD",
        "FS_PG_DBNAME",
        "DAGSTER_HOME",
    ]
    for name in names:
        click.echo(f"export {name}={shlex.quote(os.environ[name])}")


@main.command("config")
def config_cmd() -> None:
    """Show every environment variable the platform reads (secrets redacted)."""
    for name, value, description in config_rows():
        click.echo(f"{name:28} {value:30} {description}")


# ---------------------------------------------------------------- data


@main.command()
@click.option("--scale", type=click.Choice(["xs", "s", "m"]), default="xs", show_default=True)
@click.option("--days", type=int, default=None, help="Days of events (default: per scale).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--end",
    "end",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Exclusive last day (UTC); default today.",
)
@click.option("--drift-from", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option(
    "--drift", type=click.Choice(["category_shift", "price_inflation", "device_shift"]), default=None
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Output folder (default: the inbox)."
)
def generate(
    scale: str, days: int | None, seed: int, end, drift_from, drift: str | None, out: Path | None
) -> None:
    """Generate a synthetic marketplace (listings, events, ground truth) as Parquet."""
    from fs_platform.dev.synthetic import generate as run_generate
    from fs_platform.dev.synthetic import write_parquet

    settings = get_settings()
    out = out or settings.inbox_dir
    data = run_generate(
        scale,
        days=days,
        seed=seed,
        end=end.date() if end else None,
        drift_from=drift_from.date() if drift_from else None,
        drift=drift,
        progress=True,
    )
    written = write_parquet(data, out)
    click.echo(
        json.dumps(
            {"out": str(out), "files": {k: len(v) for k, v in written.items()}, "summary": data.summary()},
            indent=2,
            default=str,
        )
    )


@main.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--kind", type=click.Choice(["listings", "interactions"]), required=True)
@click.option(
    "--allow-all-rejected",
    is_flag=True,
    help="Exit 0 even when every row of a file was rejected (by default such a file is an error: "
    "usually a wrong export, e.g. events of the wrong years).",
)
def ingest(files: tuple[Path, ...], kind: str, allow_all_rejected: bool) -> None:
    """Ingest files outside Dagster (same code as the ingestion assets).

    One JSON report per loaded file on stdout; refused files, warnings and the summary on stderr.
    A refused file does not stop the others. Exit 1 if a file was refused or (unless
    --allow-all-rejected) had all its rows rejected.
    """
    from tqdm import tqdm

    from fs_platform.infra.runtime import ensure_services, pg_connect
    from fs_platform.ingestion.data_span import record_first_event_day
    from fs_platform.ingestion.file_reader import UnreadableFileError
    from fs_platform.ingestion.load import (
        IngestReport,
        KnownListingIds,
        ingest_interactions_file,
        ingest_listings_file,
    )

    def say(line: str) -> None:  # a line on stderr that does not tear the progress bar
        tqdm.write(line, file=sys.stderr)

    conn = pg_connect(ensure_services().database_url)
    known = KnownListingIds()
    reports: list[IngestReport] = []
    refused: list[str] = []
    all_rejected: list[str] = []
    try:
        for path in tqdm(files, desc="ingest", unit="file", disable=None, file=sys.stderr):
            try:
                if kind == "listings":
                    report = ingest_listings_file(conn, path)
                else:
                    report = ingest_interactions_file(conn, path, known_listings=known)
            except UnreadableFileError as exc:
                conn.rollback()
                reason = str(exc)
                refused.append(path.name)
                say(f"refused {reason if reason.startswith(path.name) else f'{path.name}: {reason}'}")
                continue
            reports.append(report)
            click.echo(json.dumps(report.as_dict()))
            if report.rows_read and report.rejected == report.rows_read:
                all_rejected.append(path.name)
                top, _ = report.reject_reasons.most_common(1)[0]
                say(
                    f"warning {path.name}: all {report.rows_read:,} rows rejected (most often: {top}); "
                    f"see raw.rejected_{'listings' if kind == 'listings' else 'interactions'}"
                )
        if kind == "interactions" and reports:
            record_first_event_day(conn, get_settings().home)  # where the feature partitions start
    finally:
        conn.close()
    say(
        f"{len(files)} file(s): {len(reports)} loaded, {len(refused)} refused, "
        f"{len(all_rejected)} with every row rejected; rows accepted {sum(r.accepted for r in reports):,}, "
        f"rejected {sum(r.rejected for r in reports):,}, duplicates {sum(r.duplicates for r in reports):,}"
    )
    if refused or (all_rejected and not allow_all_rejected):
        sys.exit(1)


# ---------------------------------------------------------------- training set and model


class _StageBar:
    """A progress bar over named stages (tqdm on stderr): each call starts the next stage."""

    def __init__(self, total: int, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            desc=desc,
            file=sys.stderr,
            disable=None,  # no bar when stderr is not a terminal
            bar_format="{desc}: {n_fmt}/{total_fmt} stages [{elapsed}] {postfix}",
        )
        self.started = False

    def __call__(self, stage: str) -> None:
        if self.started:
            self.bar.update(1)
        self.started = True
        self.bar.set_postfix_str(stage)

    def close(self) -> None:
        if self.started:
            self.bar.update(1)
        self.bar.close()


def _window_options(fn):
    """The run config of the ``training_set`` asset as options; unset ones take its defaults
    (``DEFAULT_DAYS`` etc. in fs_platform.retrieval.training_set)."""
    options = [
        click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First example day."),
        click.option(
            "--end",
            type=click.DateTime(["%Y-%m-%d"]),
            default=None,
            help="Last example day (inclusive); default yesterday (UTC).",
        ),
        click.option(
            "--days",
            type=int,
            default=None,
            help="Days ending at --end when --start is unset (default: training_set.DEFAULT_DAYS).",
        ),
        click.option(
            "--validation-days",
            type=int,
            default=None,
            help="Days before the test days (default: training_set.DEFAULT_VALIDATION_DAYS).",
        ),
        click.option(
            "--test-days",
            type=int,
            default=None,
            help="Last days of the window (default: training_set.DEFAULT_TEST_DAYS).",
        ),
        click.option(
            "--max-staleness-hours",
            type=float,
            default=None,
            help="Oldest usable user snapshot (default: training_set.DEFAULT_MAX_STALENESS_HOURS).",
        ),
        click.option(
            "--availability-lag-hours",
            type=float,
            default=None,
            help="Hours after its cutoff a snapshot becomes usable (default 0).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _build_training_set(window: dict):
    """Build and write the training set as the ``training_set`` asset does, with a stage bar."""
    from fs_platform.infra.runtime import ensure_services, pg_connect
    from fs_platform.retrieval import training_set

    given = {k: v for k, v in window.items() if v is not None}
    for key in ("start", "end"):
        if key in given:
            given[key] = given[key].date()
    try:
        config = training_set.window_config(**given)
        conn = pg_connect(ensure_services().database_url)
        bar = _StageBar(len(training_set.BUILD_STAGES), "training set")
        try:
            return training_set.build(conn, config, progress=bar)
        finally:
            bar.close()
            conn.close()
    except training_set.TrainingSetWindowError as exc:
        raise click.ClickException(str(exc)) from exc


def _describe_training_set(path: Path, meta: dict) -> None:
    splits = meta["splits"]
    click.echo(
        f"training set {meta['fingerprint']}: {meta['rows']:,} examples {meta['start']}..{meta['end']}, "
        f"positive rate {meta['positive_rate']:.4f} at {path}"
    )
    for name, s in splits.items():
        click.echo(
            f"  {name:10} {s['first_day']}..{s['last_day']}  {s['rows']:>10,} examples, "
            f"positive rate {s['positive_rate']:.4f}"
        )


@main.command("training-set")
@_window_options
def training_set_cmd(**window) -> None:
    """Build the point-in-time training set (what the `training_set` asset does) and print its splits."""
    built = _build_training_set(window)
    _describe_training_set(built.path, built.metadata)


@main.command()
@_window_options
@click.option(
    "--training-set",
    "training_set_path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Train on this written training set instead of building one (the window options are then unused).",
)
@click.option("--feature", "features", multiple=True, help="Train on these features only (repeatable).")
@click.option("--learning-rate", type=float, default=None)
@click.option("--num-leaves", type=int, default=None)
@click.option("--min-data-in-leaf", type=int, default=None)
@click.option("--max-rounds", type=int, default=None)
def train(
    training_set_path: Path | None,
    features: tuple[str, ...],
    learning_rate: float | None,
    num_leaves: int | None,
    min_data_in_leaf: int | None,
    max_rounds: int | None,
    **window,
) -> None:
    """Build the training set (unless --training-set), train, register, decide promotion.

    The same steps as the `training_set` and `ctr_model` assets and the `ctr_model_promotion`
    check; prints the test metrics beside both baselines and the decision. Exit 0 when the model
    was trained and registered, promoted or not.
    """
    import json as json_module

    from fs_platform.model import workflow
    from fs_platform.model.registry import current_version
    from fs_platform.model.training import MAX_ROUNDS
    from fs_platform.retrieval import training_set

    if training_set_path is None:
        built = _build_training_set(window)
        training_set_path, meta = built.path, built.metadata
    else:
        meta = json_module.loads((training_set_path / "_metadata.json").read_text())
    _describe_training_set(training_set_path, meta)
    params = {
        k: v
        for k, v in {
            "learning_rate": learning_rate,
            "num_leaves": num_leaves,
            "min_data_in_leaf": min_data_in_leaf,
        }.items()
        if v is not None
    }
    bar = _StageBar(len(workflow.TRAIN_STAGES) + 1, "model")
    try:
        run = workflow.train_and_register(
            training_set_path,
            features=list(features) or None,
            params=params,
            max_rounds=max_rounds or MAX_ROUNDS,
            progress=bar,
        )
        bar("promotion decision")
        decision = workflow.promote_if_better(run.version)
    except training_set.TrainingSetWindowError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        bar.close()
    click.echo(f"ctr_model {run.version} (registry {run.folder}):")
    for line in workflow.metrics_lines(run.trained.metrics):
        click.echo(f"  {line}")
    click.echo(f"promotion ({decision.rule} rule): {decision.reason}")
    click.echo(f"current model: {current_version() or '(none)'}")


# ---------------------------------------------------------------- pipeline


@main.command()
@click.option("--days", type=int, default=None, help="Days of synthetic data (default: per scale).")
@click.option("--seed", type=int, default=42, show_default=True)
def demo(days: int | None, seed: int) -> None:
    """Generate xs data, ingest it, backfill the feature partitions, and show what came out."""
    from fs_platform.dev.demo import run_demo

    sys.exit(run_demo(days=days, seed=seed))


@main.command()
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), required=True)
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Inclusive last partition.")
@click.option("--full-refresh", is_flag=True, help="Rebuild the rollups from raw events.")
def backfill(start, end, full_refresh: bool) -> None:
    """Materialize the feature partitions start..end one after the other (in this process)."""
    from fs_platform.dev.demo import backfill_features

    backfill_features(start.date(), end.date(), full_refresh=full_refresh)


@main.command()
@click.option("--port", type=int, default=3000, show_default=True)
def ui(port: int) -> None:
    """Start `dagster dev` (webserver + daemon) on the platform's instance and data."""
    from fs_platform.infra.instance import prepare_environment

    prepare_environment()
    # dagster dev maps SIGTERM to whatever SIGINT does; a background job of a non-interactive shell
    # (`make ui &`) starts with SIGINT ignored, and then SIGTERM would be ignored too
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    dagster = Path(sys.executable).with_name("dagster")
    os.execv(
        str(dagster),
        [str(dagster), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
    )


# ---------------------------------------------------------------- online store and serving


@main.command()
@click.option(
    "--view", "view_names", multiple=True, help="Only this online feature view (repeatable; default: all)."
)
@click.option("--allow-empty", is_flag=True, help="Publish even when the source table is empty.")
def sync(view_names: tuple[str, ...], allow_empty: bool) -> None:
    """Publish every online feature view to Redis as an atomic snapshot (what the sync assets do)."""
    from fs_platform.infra.runtime import ensure_services, pg_connect
    from fs_platform.online.store import connect
    from fs_platform.online.sync import sync_snapshot
    from fs_platform.online.views import online_views

    views = online_views()
    unknown = sorted(set(view_names) - set(views))
    if unknown:
        raise click.UsageError(f"no online feature view {unknown} (online: {sorted(views)})")

    settings = get_settings()
    urls = ensure_services(settings)
    client = connect(urls.redis_url, timeout_seconds=30)
    conn = pg_connect(urls.database_url)
    try:
        for name in view_names or views:
            result = sync_snapshot(
                views[name],
                conn,
                client,
                prefix=settings.redis_prefix,
                build_ttl=settings.online_build_ttl_seconds,
                grace_seconds=settings.online_grace_seconds,
                allow_empty=allow_empty,
            )
            click.echo(
                f"{name}: {result.rows:,} rows, {result.bytes:,} bytes in {result.seconds:.2f}s "
                f"-> snapshot {result.snapshot_id} (as_of {result.as_of:%Y-%m-%d %H:%M} UTC)"
            )
    finally:
        conn.close()
        client.close()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--access-log/--no-access-log", default=False, show_default=True)
def serve(host: str, port: int, workers: int, access_log: bool) -> None:
    """Start the serving API (uvicorn) on the online store."""
    import uvicorn

    from fs_platform.infra.runtime import EmbeddedRedis

    settings = get_settings()
    if settings.redis_url is None:  # start the embedded Redis once, here, for every worker
        os.environ["FS_REDIS_URL"] = EmbeddedRedis(settings.home).start()
    uvicorn.run(
        "fs_platform.serving:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level="info",
    )


# ---------------------------------------------------------------- monitoring


@main.group()
def drift() -> None:
    """Evidently drift reports (the same ones the Dagster monitoring checks write)."""


@drift.command("report")
@click.option(
    "--date",
    "day",
    type=click.DateTime(["%Y-%m-%d"]),
    required=True,
    help="Partition D: input drift judges the events of D - 1, feature drift the snapshot as of D.",
)
@click.option(
    "--check",
    "checks",
    type=click.Choice(["input", "features", "predictions"]),
    multiple=True,
    help="Which reports (repeatable; default: all).",
)
@click.option(
    "--reference-date", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Feature reference partition."
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Reports root (default $FS_HOME/reports)."
)
def drift_report(day, checks: tuple[str, ...], reference_date, out: Path | None) -> None:
    """Write the drift reports of partition D (HTML + JSON) and print where they are."""
    from fs_platform.monitoring.cli_report import write_reports

    results, failures = write_reports(
        day.date(),
        list(checks) or ["input", "features", "predictions"],
        reference=reference_date.date() if reference_date else None,
        root=out,
    )
    for result in results:
        verdict = f"DRIFT in {', '.join(result.drifted_columns)}" if result.drift_detected else "no drift"
        click.echo(f"{result.check:17} {verdict:40} {result.html_path}")
    for check, reason in failures.items():
        click.echo(f"{check:17} not written: {reason}", err=True)
    if not results:
        sys.exit(1)


@main.command()
@click.option(
    "--entities",
    "entities_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Entity frame: Parquet or CSV with the entity keys, the timestamp column and any other columns.",
)
@click.option(
    "--features",
    "feature_refs",
    required=True,
    help="Comma-separated references (view:feature, on_demand:name) or a feature service name.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file (.parquet or .csv): the entity frame plus one column per feature.",
)
@click.option("--timestamp-column", default="event_timestamp", show_default=True)
@click.option(
    "--availability-lag-hours",
    type=float,
    default=0.0,
    show_default=True,
    help="Only rows with as_of + lag <= the row's timestamp (what serving had then).",
)
@click.option("--full-feature-names", is_flag=True, help="Name the columns view__feature.")
def retrieve(
    entities_path: Path,
    feature_refs: str,
    out_path: Path,
    timestamp_column: str,
    availability_lag_hours: float,
    full_feature_names: bool,
) -> None:
    """Historical retrieval: every requested feature as of each row's timestamp (point in time)."""
    from datetime import timedelta

    from tqdm import tqdm

    from fs_platform.features.registry import RegistryError
    from fs_platform.infra.runtime import ensure_services, pg_connect
    from fs_platform.retrieval.historical import (
        RetrievalError,
        get_historical_features,
        read_entity_frame,
        write_features,
    )

    refs = [r.strip() for r in feature_refs.split(",") if r.strip()]  # a service name expands in place
    try:
        if out_path.suffix not in (".parquet", ".csv"):
            raise RetrievalError(f"output {out_path} must end in .parquet or .csv")
        entity_df = read_entity_frame(entities_path)
        conn = pg_connect(ensure_services().database_url)
        try:
            with tqdm(
                total=len(entity_df), desc="retrieve", unit="row", disable=None, file=sys.stderr
            ) as bar:
                frame = get_historical_features(
                    conn,
                    entity_df,
                    refs,
                    timestamp_column=timestamp_column,
                    availability_lag=timedelta(hours=availability_lag_hours),
                    full_feature_names=full_feature_names,
                    on_progress=lambda done: bar.update(done - bar.n),
                )
        finally:
            conn.close()
        added = list(frame.columns[len(entity_df.columns) :])
        write_features(frame, out_path, added)
    except (RetrievalError, RegistryError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{len(frame):,} rows, {len(added)} feature columns -> {out_path}")


@main.group()
def features() -> None:
    """The feature registry: feature views, features, on-demand features and feature services,
    declared in the dbt yml files (docs/feature_views.md)."""


@features.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per feature.")
def features_list(as_json: bool) -> None:
    from fs_platform.features.registry import RegistryError, feature_registry, format_registry, load_registry

    try:
        registry = load_registry()
    except RegistryError as exc:
        raise click.ClickException(f"invalid feature declaration: {exc}") from exc
    click.echo(
        json.dumps(feature_registry(registry), indent=2) if as_json else format_registry(registry), nl=False
    )


if __name__ == "__main__":
    main()
