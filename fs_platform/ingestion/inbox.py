"""The inbox folder: where new files land, and where ingested ones are archived."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from fs_platform.infra.config import Settings
from fs_platform.ingestion.file_reader import FORMATS

KINDS = ("listings", "interactions")


def inbox_files(settings: Settings, kind: str) -> list[Path]:
    """Files waiting in ``inbox/<kind>/``, oldest name first (daily files sort by date)."""
    folder = settings.inbox_dir / kind
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)


def archive(settings: Settings, kind: str, path: Path) -> Path:
    """Move an ingested file to ``archive/<kind>/`` (a timestamp suffix avoids clobbering)."""
    target_dir = settings.archive_dir / kind
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / path.name
    if target.exists():
        target = target_dir / f"{path.stem}.{datetime.now(UTC):%Y%m%dT%H%M%S%f}{path.suffix}"
    shutil.move(str(path), target)
    return target
