"""Location of the dbt project and its manifest (parsed on demand, never downloaded)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from fs_platform.infra.config import PROJECT_ROOT

DBT_PROJECT_DIR = Path(os.environ.get("FS_DBT_PROJECT_DIR", PROJECT_ROOT / "dbt_project"))


def dbt_executable() -> str:
    """The dbt next to this interpreter (the venv's), so no activated venv is needed."""
    dbt = Path(sys.executable).with_name("dbt")
    return str(dbt) if dbt.exists() else "dbt"


def _sources_newer_than(path: Path, project_dir: Path) -> bool:
    if not path.exists():
        return True
    mtime = path.stat().st_mtime
    watched = [project_dir / "dbt_project.yml"]
    for folder in ("models", "macros", "tests"):
        watched += list((project_dir / folder).rglob("*"))
    return any(p.is_file() and p.stat().st_mtime > mtime for p in watched)


def ensure_manifest(project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """Run ``dbt parse`` when the manifest is missing or older than the project files.

    Parsing needs no database connection, so definitions load on a fresh clone.
    """
    manifest = project_dir / "target" / "manifest.json"
    if _sources_newer_than(manifest, project_dir):
        subprocess.run(
            [dbt_executable(), "parse", "--profiles-dir", str(project_dir), "--quiet"],
            cwd=project_dir,
            check=True,
        )
    return manifest


dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
