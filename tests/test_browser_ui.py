"""The Dagster UI in a real browser: `dagster dev` (webserver + daemon) on the state of a small run,
driven through Debian's Chromium by Playwright.

The state (tests/ui_support.py) is real: ingestion, two daily partitions with their dbt tests as
asset checks, the Redis sync, the training set and the model, all in a Postgres-backed instance.
The test then starts `dagster dev` on a free loopback port against that instance and checks,
through the pages a person would open:

- the asset graph lists every asset of the code location (ingestion, dbt, online, training, model);
- a materialized partition of ``user_features`` shows its metadata (row count = the table's);
- the asset-check results are visible (dbt tests on ``user_features``, the promotion check);
- every schedule and sensor is listed and switched on;
- the daemon really runs: a file dropped in the inbox is picked up by ``inbox_sensor`` and the run
  it launches ingests it.

Screenshots go to a temporary folder, so a test run never touches the tree; ``make screenshots``
(``FS_SCREENSHOT_DIR=docs/img``) regenerates the ones the README shows. Skipped only where Chromium is not installed
and never in CI (``CI`` set): there it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from fs_platform.definitions import defs
from fs_platform.defs.features.assets import feature_dbt_assets
from fs_platform.infra.runtime import pg_connect

REPO = Path(__file__).resolve().parent.parent
#: where screenshots go: docs/img only when asked for (`make screenshots`), else a temp folder
IMG = Path(os.environ.get("FS_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="fs_ui_shots_")).resolve()
CHROMIUM = Path(os.environ.get("FS_TEST_CHROMIUM", "/usr/bin/chromium"))
NEW_EVENTS = 20  # events of the file the daemon's inbox sensor picks up (plus one bad row)


def _require_browser():
    """Playwright's sync API, or a skip (outside CI) / failure (in CI) saying what is missing."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"Chromium not found at {CHROMIUM} (apt-get install chromium; .ci/run does it)"
    try:
        from playwright import sync_api
    except ImportError:
        missing = missing or "the playwright package is not installed (pip install -e '.[dev]')"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run in CI: {missing}")
        pytest.skip(f"browser test skipped: {missing}")
    return sync_api


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_webserver(proc: subprocess.Popen, url: str, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dagster dev exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"dagster dev did not answer within {timeout}s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole process group (webserver, daemon, code server, run workers), then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers that outlived the group leader
    proc.wait(timeout=10)


def _drop_inbox_file(state) -> tuple[Path, int]:
    """A partner CSV with NEW_EVENTS valid events of known users/listings and one unknown event type."""
    conn = pg_connect(state.database_url)
    with conn.cursor() as cur:
        cur.execute(
            "select user_id::text, listing_id::text, device_type from raw.user_interactions "
            "order by event_id limit %s",
            (NEW_EVENTS,),
        )
        rows = cur.fetchall()
        cur.execute("select count(*) from raw.user_interactions")
        before = cur.fetchone()[0]
    conn.close()
    frame = pd.DataFrame(rows, columns=["user_id", "listing_id", "device_type"])
    frame.insert(0, "event_id", [str(uuid.uuid4()) for _ in range(len(frame))])
    frame["event_type"] = "listing_viewed"
    frame["occurred_at"] = "2026-02-28T12:00:00Z"
    bad = frame.iloc[[0]].assign(event_id=str(uuid.uuid4()), event_type="listing_shared")
    path = state.home / "inbox" / "interactions" / "zz_partner_feed.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat([frame, bad]).to_csv(path, index=False)
    return path, before


@pytest.fixture(scope="module")
def state(request):
    """The shared state, with os.environ pointing at it while this module runs.

    Without a browser the module is skipped (outside CI) or fails (in CI) before anything is built.
    """
    _require_browser()
    with request.getfixturevalue("ui_state").activated() as active:
        yield active


@pytest.fixture(scope="module")
def dagster_dev(state, tmp_path_factory) -> Iterator[dict]:
    """`fs-platform ui` (= `make ui`: `dagster dev`) on a free loopback port, on the state's instance;
    the process group is killed after."""
    _require_browser()
    inbox_file, events_before = _drop_inbox_file(state)  # for the daemon's first inbox_sensor tick
    port = _free_port()
    log = tmp_path_factory.mktemp("dagster_dev") / "dagster_dev.log"
    env = {**state.dagster_dev_env(), "DAGSTER_TELEMETRY_DISABLED": "1"}
    # what `make ui` runs: prepare the instance, then exec `dagster dev -w workspace.yaml` on loopback
    cli = Path(sys.executable).with_name("fs-platform")
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(cli), "ui", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killed as a whole
            # as `make ui &` from a script: a background job of a non-interactive shell starts with
            # SIGINT ignored, which dagster dev used to inherit for SIGTERM too
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_webserver(proc, url, log)
        yield {
            "url": url,
            "log": log,
            "startup_seconds": time.perf_counter() - started,
            "inbox_file": inbox_file,
            "events_before": events_before,
            "proc": proc,
            "port": port,
        }
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser(dagster_dev):
    sync_api = _require_browser()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(browser, dagster_dev):
    context = browser.new_context(viewport={"width": 1600, "height": 940})
    context.set_default_timeout(60_000)
    page = context.new_page()
    # Dagster greets a new browser with a community dialog: skip it whenever it shows up
    page.add_locator_handler(
        page.get_by_text("Join the Dagster community"),
        lambda: page.get_by_role("button", name="Skip").click(),
    )
    page.base = dagster_dev["url"]
    yield page
    context.close()


def _expect():
    return _require_browser().expect


def _shot(page, name: str) -> Path:
    IMG.mkdir(parents=True, exist_ok=True)
    path = IMG / name
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def _groups() -> dict[str, list[str]]:
    """{group: [asset key]} of every asset in the code location."""
    groups: dict[str, list[str]] = {}
    for spec in defs.resolve_all_asset_specs():
        groups.setdefault(spec.group_name or "default", []).append(spec.key.to_user_string())
    return groups


# ------------------------------------------------------------------------------------------ tests


def test_asset_graph_lists_every_asset(page, dagster_dev):
    expect = _expect()
    groups = _groups()
    assert {"ingestion", "dbt_staging", "dbt_intermediate", "dbt_features", "online_store", "model"} <= set(
        groups
    )
    assert {
        "raw_user_interactions",
        "user_features",
        "online_user_features",
        "training_set",
        "ctr_model",
    } <= {key for keys in groups.values() for key in keys}
    page.goto(page.base + "/asset-groups")
    expect(page.get_by_title("dbt_features", exact=True).first).to_be_visible()
    page.get_by_text("Hide navigation").click()
    page.keyboard.press("Alt+e")  # the graph's "Expand all groups"
    for group in sorted(groups):
        # open the group in the asset tree beside the graph: its assets are listed by full name
        caret = page.get_by_title(group, exact=True).first.locator(
            "xpath=ancestor::div[button[.//*[@aria-label='arrow_drop_down']]][1]"
            "/button[.//*[@aria-label='arrow_drop_down']]"
        )
        caret.click()
        for key in groups[group]:
            expect(page.get_by_title(key, exact=True).first).to_be_visible()
    # the graph itself: one node per asset, in its group's box
    graph = page.locator("foreignObject")
    expect(graph.filter(has_text="user_features").first).to_be_visible()
    assert graph.count() >= sum(len(keys) for keys in groups.values())
    page.wait_for_timeout(500)  # let the layout settle for the picture
    _shot(page, "asset_graph.png")


def test_user_features_partition_shows_its_metadata(page, state):
    expect = _expect()
    day = state.schedule_ticks[-1].requests[0].partition_key
    conn = pg_connect(state.database_url)
    with conn.cursor() as cur:
        cur.execute("select count(*) from features.user_features")
        rows = cur.fetchone()[0]
    conn.close()
    page.goto(f"{page.base}/assets/user_features?view=partitions&partition={day}")
    expect(page.get_by_text("Materialized (2)")).to_be_visible()  # two scheduled partitions
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    expect(page.get_by_role("link", name="daily_features_job")).to_be_visible()
    row_count = page.locator("tr", has_text="dagster/row_count")
    expect(row_count).to_be_visible()
    expect(row_count).to_contain_text(str(rows))
    expect(page.locator("tr", has_text="partitions_in_run")).to_contain_text("1")
    expect(page.locator("tr", has_text="unique_id").first).to_contain_text("model.fs_platform.user_features")
    _shot(page, "user_features_partition.png")

    # the history's partition carries the summary statistics
    page.goto(f"{page.base}/assets/user_features_history?view=partitions&partition={day}")
    for label in ("users", "mean_activity_score", "share_price_sensitivity_null", "as_of"):
        expect(page.locator("tr", has=page.get_by_text(label, exact=True)).first).to_be_visible()


def test_asset_check_results_are_visible(page):
    expect = _expect()
    graph = defs.resolve_asset_graph()
    on_user_features = [
        k.name for k in graph.asset_check_keys if k.asset_key.to_user_string() == "user_features"
    ]
    dbt_tests = sorted(
        k.name for k in feature_dbt_assets.check_keys if k.asset_key.to_user_string() == "user_features"
    )
    assert len(dbt_tests) >= 10 and any(name.startswith("json_shares_sum_to_one") for name in dbt_tests)
    page.goto(page.base + "/assets/user_features?view=checks")
    expect(page.get_by_text(f"Checks ({len(on_user_features)})")).to_be_visible()
    for name in on_user_features:  # the list shows each check (name truncated, full in its title)
        expect(page.get_by_title(name, exact=True).first).to_be_visible()
    # the dbt tests of user_features ran in the scheduled partition runs and passed
    for name in dbt_tests:
        expect(page.get_by_title(name, exact=True).first.locator("xpath=..")).to_contain_text("Succeeded")
    shares = "json_shares_sum_to_one_user_features_category_affinity"
    page.get_by_title(shares, exact=True).first.click()
    expect(page.get_by_text(shares, exact=True).filter(visible=True).first).to_be_visible()  # the heading
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    expect(page.get_by_text("dagster_dbt/failed_row_count", exact=True).first).to_be_visible()
    _shot(page, "asset_checks.png")

    # the model's blocking promotion check
    page.goto(page.base + "/assets/ctr_model?view=checks")
    promotion = page.get_by_title("ctr_model_promotion", exact=True).first
    expect(promotion.locator("xpath=..")).to_contain_text("Succeeded")
    promotion.click()
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    expect(page.get_by_text("promoted").first).to_be_visible()


def test_drift_check_links_its_evidently_report(page, state):
    """The input-drift check of the latest partition: verdict, columns, and the HTML report it links."""
    expect = _expect()
    day = state.schedule_ticks[-1].requests[0].partition_key
    report = state.home / "reports" / day / "input_drift.html"
    assert report.is_file(), f"the scheduled run of {day} wrote no input drift report"
    page.goto(page.base + "/assets/user_features?view=checks")
    page.get_by_title("input_drift", exact=True).first.click()
    expect(page.get_by_text("drifted_columns", exact=True).first).to_be_visible()
    expect(page.get_by_text(str(report), exact=True).first).to_be_visible()  # the `report` path
    expect(
        page.get_by_text(f"interactions of {date.fromisoformat(day) - timedelta(days=1)}").first
    ).to_be_visible()
    for column in ("event_type", "device_type", "jensenshannon", "wasserstein"):
        expect(page.get_by_text(column, exact=True).first).to_be_attached()  # the `columns` table
    _shot(page, "drift_check.png")

    # the report itself, as an operator opens it from that path
    page.goto(report.as_uri())
    expect(page.get_by_text("device_type").first).to_be_visible(timeout=60_000)
    page.wait_for_timeout(1000)  # charts finish drawing
    _shot(page, "drift_report.png")


def test_schedules_and_sensors_are_listed_and_on(page):
    expect = _expect()
    # every schedule and sensor of the code location, switched on or off as its definition says
    names = {s.name: s.default_status == dg.DefaultScheduleStatus.RUNNING for s in defs.schedules or []}
    names.update({s.name: s.default_status == dg.DefaultSensorStatus.RUNNING for s in defs.sensors or []})
    for name in ("daily_features_job_schedule", "inbox_sensor", "online_store_sync_sensor"):
        assert names[name], f"{name} must be on by default"
    page.goto(page.base + "/automation")
    expect(page.get_by_text("Scheduled At 03:00 AM UTC")).to_be_visible()
    for name, running in names.items():
        row = page.locator("[data-index]", has=page.get_by_text(name, exact=True))
        expect(row).to_have_count(1)
        expect(row.get_by_role("link", name=name)).to_be_visible()
        toggles = row.get_by_role("checkbox")  # the row's selection box, then its on/off switch
        expect(toggles).to_have_count(2)
        expect(toggles.last).to_be_checked(checked=running)
    _shot(page, "automation.png")


def test_daemon_runs_the_inbox_sensor(page, dagster_dev, state):
    """The daemon of `dagster dev` ticks inbox_sensor; the run it launches ingests the dropped file."""
    expect = _expect()
    page.goto(page.base + "/runs")
    # the daemon's run: launched by inbox_sensor for the new events file only (the state's own
    # ingestion run, evaluated in-process, also loaded raw_listings)
    row = page.locator("[data-index]").filter(has_text="inbox_sensor").filter(has_not_text="raw_listings")
    try:
        # the runs list refreshes itself; a run worker needs ~15-60 s to start on a busy machine
        expect(row.first).to_contain_text(re.compile("Success|Failure"), timeout=240_000)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n--- dagster dev log:\n{dagster_dev['log'].read_text()[-4000:]}"
        ) from None
    if "Failure" in row.first.inner_text():
        raise AssertionError(f"the sensor's run failed:\n{dagster_dev['log'].read_text()[-4000:]}")
    expect(row.first).to_contain_text("Success")
    expect(row.first).to_contain_text("raw_user_interactions")
    _shot(page, "sensor_run.png")

    archived = state.home / "archive" / "interactions" / dagster_dev["inbox_file"].name
    assert archived.exists() and not dagster_dev["inbox_file"].exists()
    conn = pg_connect(state.database_url)
    with conn.cursor() as cur:
        cur.execute("select count(*) from raw.user_interactions")
        assert cur.fetchone()[0] == dagster_dev["events_before"] + NEW_EVENTS
        cur.execute(
            "select reason from raw.rejected_interactions where source_file like %s", (f"%{archived.name}",)
        )
        [(reason,)] = cur.fetchall()
    conn.close()
    assert "listing_shared" in reason


def test_daemon_ticks_the_sync_automation_and_the_inbox_sensor(page, dagster_dev):
    """The sensor pages show the daemon's latest ticks: the Redis-sync automation was evaluated
    (nothing to sync: no mart changed since the last sync) and the inbox sensor requested its run."""
    expect = _expect()
    page.goto(page.base + "/locations/fs_platform/sensors/online_store_sync_sensor")
    latest = page.locator("tr", has_text="Latest tick")
    expect(latest).to_contain_text("requested", timeout=90_000)
    expect(latest).to_contain_text("0 runs requested")
    expect(page.get_by_text("Running", exact=True).first).to_be_visible()

    page.goto(page.base + "/locations/fs_platform/sensors/inbox_sensor")
    # the row whose header cell is "Cursor" (once ticks load, their table may add a Cursor column)
    cursor_row = page.get_by_role("row", name=re.compile(r"^Cursor"))
    expect(cursor_row).to_contain_text(dagster_dev["inbox_file"].name)
    ticks = page.locator("tr").filter(has_text="1 run requested")
    expect(ticks.first).to_be_visible()


def test_ui_stops_on_sigterm_when_started_in_background(dagster_dev):
    """Runs last in this module: SIGTERM to `fs-platform ui` alone (not its group) shuts down
    dagster dev, its webserver and its daemon, although it started with SIGINT ignored."""
    proc = dagster_dev["proc"]
    assert proc.poll() is None, "dagster dev is not running"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fs-platform ui ignored SIGTERM:\n{dagster_dev['log'].read_text()[-3000:]}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", dagster_dev["port"])) != 0:
                return
        time.sleep(0.5)
    pytest.fail("the webserver still answers after dagster dev exited")
