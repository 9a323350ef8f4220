"""Historical retrieval as a Dagster asset: the launchpad's config names an entity frame and the
features; the result is a file beside it (the CLI ``fs-platform retrieve`` does the same)."""

from datetime import timedelta
from pathlib import Path

import dagster as dg

from fs_platform.defs.resources import PostgresResource
from fs_platform.features.registry import RegistryError, load_registry
from fs_platform.infra.config import get_settings
from fs_platform.retrieval.historical import (
    DEFAULT_TIMESTAMP_COLUMN,
    RetrievalError,
    get_historical_features,
    read_entity_frame,
    write_features,
)


class HistoricalFeaturesConfig(dg.Config):
    """An entity frame (Parquet/CSV with the entity keys and a timestamp column) and the feature
    references (``view:feature``, ``on_demand:name``) or one feature service name."""

    entities_path: str
    features: list[str]
    out_path: str = ""  # empty: $FS_HOME/retrieval/<run id>.parquet
    timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN
    availability_lag_hours: float = 0.0
    full_feature_names: bool = False


@dg.asset(
    key="historical_features",
    deps=[dg.AssetKey(view.model) for view in load_registry().views.values()],
    group_name="retrieval",
    description="Point-in-time features for an entity frame given in the run config (docs/retrieval.md).",
    kinds={"postgres", "parquet"},
)
def historical_features_asset(
    context: dg.AssetExecutionContext, config: HistoricalFeaturesConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    out = (
        Path(config.out_path)
        if config.out_path
        else get_settings().home / "retrieval" / f"{context.run_id}.parquet"
    )
    try:
        entity_df = read_entity_frame(Path(config.entities_path))
        with postgres.connect() as conn:
            frame = get_historical_features(
                conn,
                entity_df,
                config.features,  # a service name expands in place
                timestamp_column=config.timestamp_column,
                availability_lag=timedelta(hours=config.availability_lag_hours),
                full_feature_names=config.full_feature_names,
                on_progress=lambda done: context.log.info(f"{done:,} of {len(entity_df):,} rows"),
            )
        added = list(frame.columns[len(entity_df.columns) :])
        write_features(frame, out, added)
    except (RetrievalError, RegistryError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(frame)),
            "path": dg.MetadataValue.path(str(out)),
            "features": dg.MetadataValue.json(added),
            "null_share": dg.MetadataValue.json({c: round(float(frame[c].isna().mean()), 4) for c in added}),
        }
    )
