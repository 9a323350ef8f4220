"""The inbox sensor picks up each new file exactly once and the run it requests ingests and archives it."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from fs_platform.definitions import defs
from fs_platform.defs.ingestion.sensors import inbox_sensor
from fs_platform.dev.synthetic import generate, write_parquet
from fs_platform.infra.config import get_settings


@pytest.fixture()
def inbox(clean_db, tmp_path, monkeypatch):
    monkeypatch.setenv("FS_INBOX_DIR", str(tmp_path / "inbox"))
    monkeypatch.setenv("FS_ARCHIVE_DIR", str(tmp_path / "archive"))
    return get_settings()


def _run(request: dg.RunRequest) -> dg.ExecuteInJobResult:
    from fs_platform.defs.ingestion.assets import raw_listings, raw_user_interactions

    wanted = set(request.asset_selection or [])
    assets = [a for a in (raw_listings, raw_user_interactions) if a.key in wanted]
    return dg.materialize(assets, resources=defs.resources, run_config=request.run_config)


def test_sensor_requests_each_file_once_and_run_archives_it(inbox, clean_db):
    data = generate("xs", days=3, seed=3, end=pd.Timestamp("2026-02-01").date())
    staging = inbox.inbox_dir.parent / "staging"
    written = write_parquet(data, staging)
    (inbox.inbox_dir / "listings").mkdir(parents=True)
    (inbox.inbox_dir / "interactions").mkdir(parents=True)
    shutil.copy(written["listings"][0], inbox.inbox_dir / "listings")
    for path in written["interactions"][:2]:
        shutil.copy(path, inbox.inbox_dir / "interactions")

    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, cursor=None) as context:
            result = inbox_sensor(context)
        [request] = result.run_requests
        assert set(request.asset_selection) == {
            dg.AssetKey("raw_listings"),
            dg.AssetKey("raw_user_interactions"),
        }
        assert len(request.run_config["ops"]["raw_user_interactions"]["config"]["files"]) == 2
        cursor = result.cursor
        # same files, next tick: nothing new
        with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
            again = inbox_sensor(context)
        assert isinstance(again, dg.SkipReason)

        run = _run(request)
        assert run.success
        meta = {
            e.asset_key.to_user_string(): e.materialization.metadata
            for e in run.get_asset_materialization_events()
        }
        events_meta = meta["raw_user_interactions"]
        assert events_meta["rows_read"].value == (
            events_meta["rows_accepted"].value
            + events_meta["rows_rejected"].value
            + events_meta["rows_duplicate"].value
        )
        assert events_meta["rows_rejected"].value == 0 and events_meta["rows_accepted"].value > 0
        assert not list((inbox.inbox_dir / "interactions").iterdir())  # archived
        assert len(list((inbox.archive_dir / "interactions").iterdir())) == 2

        # a third file arrives: only it is requested
        shutil.copy(written["interactions"][2], inbox.inbox_dir / "interactions")
        with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
            third = inbox_sensor(context)
        [request] = third.run_requests
        assert request.asset_selection == [dg.AssetKey("raw_user_interactions")]
        [path] = request.run_config["ops"]["raw_user_interactions"]["config"]["files"]
        assert Path(path).name == written["interactions"][2].name
