"""Sensors: pick up each new inbox file exactly once."""

import json

import dagster as dg

from fs_platform.infra.config import get_settings
from fs_platform.ingestion.inbox import KINDS, inbox_files

_ASSET_FOR_KIND = {"listings": "raw_listings", "interactions": "raw_user_interactions"}


@dg.sensor(
    name="inbox_sensor",
    minimum_interval_seconds=30,
    asset_selection=[dg.AssetKey(k) for k in _ASSET_FOR_KIND.values()],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests one ingestion run per tick for the files that appeared in the inbox since the last tick.",
)
def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """New files of both kinds go into one run, so listings load before the events that use them."""
    settings = get_settings()
    seen: set[str] = set(json.loads(context.cursor)) if context.cursor else set()
    new = {kind: [str(p) for p in inbox_files(settings, kind) if str(p) not in seen] for kind in KINDS}
    if not any(new.values()):
        return dg.SkipReason(f"no new files in {settings.inbox_dir}")
    ops = {_ASSET_FOR_KIND[kind]: {"config": {"files": files}} for kind, files in new.items() if files}
    all_new = sorted(f for files in new.values() for f in files)
    seen.update(all_new)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key="|".join(all_new),
                asset_selection=[dg.AssetKey(k) for k in ops],
                run_config={"ops": ops},
            )
        ],
        cursor=json.dumps(sorted(seen)),
    )
