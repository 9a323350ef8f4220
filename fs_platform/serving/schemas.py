"""Request and response models: they validate input and document the API (OpenAPI examples)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from fs_platform.ingestion.vocabulary import DEVICE_TYPES

MAX_BATCH = 1000
MAX_CANDIDATES = 500
#: requests larger than these are refused before any parsing (413 / 431)
MAX_BODY_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024
#: accepted context.timestamp range: nothing before this, nothing later than now + the slack
MIN_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP_AHEAD = timedelta(days=1)
DEFAULT_DEVICE_TYPE = "other"
#: one selected feature name of the view; the store validates it against the registry (so both
#: `names` inputs, the query parameter and the batch body, fail with the same message)
FeatureName = Annotated[str, Field(description="A feature of the view (`fs-platform features list`).")]

USER_ID_EXAMPLE = "6f1c2b1e-3c3a-4d7e-9a55-0b8f7d1f2a10"
LISTING_ID_EXAMPLE = "2c3d5b09-d7ab-4307-aa92-0069819b4cf0"
SNAPSHOT_EXAMPLE = {
    "snapshot_id": "20261122T031502-9f2c41aa",
    "as_of": "2026-11-22T00:00:00+00:00",
    "written_at": "2026-11-22T03:15:02.418000+00:00",
    "age_seconds": 11702.4,
    "stale": False,
}
USER_FEATURES_EXAMPLE = {
    "category_affinity": {"cat_03": 0.71, "cat_11": 0.29},
    "city_affinity": {"warszawa": 0.84, "krakow": 0.16},
    "price_sensitivity": 0.42,
    "activity_score": 0.63,
}
LISTING_FEATURES_EXAMPLE = {
    "category_id": "cat_00",
    "city": "gdansk",
    "price": 447.94,
    "price_pct": 0.31,
    "is_premium": False,
    "image_count": 10,
}


class Snapshot(BaseModel):
    """The one snapshot a response was read from."""

    snapshot_id: str = Field(description="Id of the Redis snapshot (changes at every sync).")
    as_of: datetime = Field(description="Feature cutoff T of the snapshot (listings: when it was read).")
    written_at: datetime = Field(description="When the sync published the snapshot.")
    age_seconds: float = Field(description="Now minus as_of.")
    stale: bool = Field(
        description="True when age_seconds exceeds FS_ONLINE_MAX_AGE_HOURS: served, but flagged."
    )

    model_config = ConfigDict(json_schema_extra={"examples": [SNAPSHOT_EXAMPLE]})


#: a view's features by name, in the view's declared order (`fs-platform features list`)
Features = dict[str, Any]


class UserFeaturesResponse(BaseModel):
    user_id: UUID
    features: Features = Field(description="The user view's features (only the requested ones with `names`).")
    snapshot: Snapshot

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"user_id": USER_ID_EXAMPLE, "features": USER_FEATURES_EXAMPLE, "snapshot": SNAPSHOT_EXAMPLE}
            ]
        }
    )


class ListingFeaturesResponse(BaseModel):
    listing_id: UUID
    features: Features = Field(description="The listing view's features.")
    snapshot: Snapshot

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "listing_id": LISTING_ID_EXAMPLE,
                    "features": LISTING_FEATURES_EXAMPLE,
                    "snapshot": SNAPSHOT_EXAMPLE,
                }
            ]
        }
    )


class BatchRequest(BaseModel):
    user_ids: list[UUID] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH} user ids; duplicates are answered once.",
    )
    names: list[FeatureName] | None = Field(None, description="Only these features (default: all).")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "user_ids": [USER_ID_EXAMPLE, "00000000-0000-4000-8000-000000000000"],
                    "names": ["activity_score"],
                }
            ]
        },
    )


class BatchItem(BaseModel):
    user_id: UUID
    found: bool = Field(description="False: the snapshot has no features for this user.")
    features: Features | None


class BatchResponse(BaseModel):
    """Every result comes from the same snapshot (one as_of per response)."""

    snapshot: Snapshot
    found: int
    missing: int
    results: list[BatchItem] = Field(description="One per distinct requested id, in request order.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "snapshot": SNAPSHOT_EXAMPLE,
                    "found": 1,
                    "missing": 1,
                    "results": [
                        {"user_id": USER_ID_EXAMPLE, "found": True, "features": {"activity_score": 0.63}},
                        {"user_id": "00000000-0000-4000-8000-000000000000", "found": False, "features": None},
                    ],
                }
            ]
        }
    )


class OnlineFeaturesRequest(BaseModel):
    """Feature references and/or a feature service, for rows of entity keys."""

    features: str | list[str] = Field(
        min_length=1,
        description="A feature service name, or a list of `view:feature` references, `on_demand:name` "
        "features and service names (expanded in place).",
    )
    entities: dict[str, list[UUID]] = Field(
        description=f"Join key -> one id per row (1 to {MAX_BATCH} rows, every column the same length); "
        "each view needs its entity's key.",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "features": "contact_model",
                    "entities": {"user_id": [USER_ID_EXAMPLE], "listing_id": [LISTING_ID_EXAMPLE]},
                },
                {
                    "features": ["user_features:activity_score", "listing_features:price"],
                    "entities": {"user_id": [USER_ID_EXAMPLE], "listing_id": [LISTING_ID_EXAMPLE]},
                },
            ]
        },
    )

    @field_validator("entities")
    @classmethod
    def _rows(cls, value: dict[str, list[UUID]]) -> dict[str, list[str]]:
        if not value:
            raise PydanticCustomError("no_entities", "entities is empty: send {join_key: [ids]}")
        lengths = {key: len(ids) for key, ids in value.items()}
        if len(set(lengths.values())) > 1:
            raise PydanticCustomError(
                "ragged_entities", "entity columns differ in length: {n}", {"n": lengths}
            )
        rows = next(iter(lengths.values()))
        if not 1 <= rows <= MAX_BATCH:
            raise PydanticCustomError(
                "entity_rows",
                "{rows} entity rows: send 1 to {max} per request",
                {"rows": rows, "max": MAX_BATCH},
            )
        return {key: [str(i) for i in ids] for key, ids in value.items()}


class OnlineFeaturesResponse(BaseModel):
    """Columns of values, one entry per entity row, in request order."""

    features: list[str] = Field(description="The references answered (a service expanded).")
    rows: int
    values: dict[str, list[Any]] = Field(
        description="Reference -> one value per row (null: unknown or null)."
    )
    found: dict[str, list[bool]] = Field(description="View -> whether its snapshot knows each row's entity.")
    snapshots: dict[str, Snapshot] = Field(description="The one snapshot read per view.")


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong, for a human.")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"detail": "online store unavailable: Redis unreachable"}]}
    )


class ValidationErrorResponse(BaseModel):
    detail: str = Field(description="Every problem in the request, one per line.")
    errors: list[dict] = Field(description="The same problems, machine-readable (location, message, input).")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": "path user_id: not a valid UUID: 'not-a-uuid'",
                    "errors": [
                        {"loc": ["path", "user_id"], "msg": "not a valid UUID", "input": "not-a-uuid"}
                    ],
                }
            ]
        }
    )


class NotFoundResponse(BaseModel):
    detail: str
    snapshot: Snapshot


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    ready: bool
    redis: bool = Field(description="Redis answered PING within the timeout.")
    snapshots: dict[str, Snapshot | None] = Field(
        description="Snapshot served per entity kind (null: none yet)."
    )
    detail: str | None = None


class ScoreContext(BaseModel):
    """The request's context; every field has a default, so `{}` (or no context) is valid."""

    device_type: Literal[DEVICE_TYPES] = Field(  # type: ignore[valid-type]
        DEFAULT_DEVICE_TYPE,
        description=f"Device of the request (the model's device_type); default {DEFAULT_DEVICE_TYPE!r}.",
    )
    timestamp: AwareDatetime | None = Field(
        None,
        description="When the listings are shown, with a timezone; omitted or null: the time of the "
        f"request. From {MIN_TIMESTAMP:%Y-%m-%d} to one day after now (a Unix time in seconds is read "
        "as UTC). Day of week and hour are taken in UTC, as in training.",
        examples=["2026-11-22T18:30:00+00:00"],
    )

    model_config = ConfigDict(extra="forbid")

    @field_validator("timestamp")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        """A 0 or a typo'd year parses as a valid date but would score with a meaningless hour/day."""
        if value is None:
            return value
        latest = datetime.now(UTC) + MAX_TIMESTAMP_AHEAD
        if not MIN_TIMESTAMP <= value <= latest:
            raise PydanticCustomError(
                "timestamp_out_of_range",
                "timestamp {given} is out of range: send a time from {first} to one day after now",
                {"given": value.isoformat(), "first": MIN_TIMESTAMP.isoformat()},
            )
        return value


class ScoreRequest(BaseModel):
    user_id: UUID = Field(description="The user; one without features is scored as a cold start.")
    listing_ids: list[UUID] = Field(
        min_length=1,
        max_length=MAX_CANDIDATES,
        description=f"1 to {MAX_CANDIDATES} candidate listings; duplicates are scored once.",
    )
    context: ScoreContext = Field(
        default_factory=ScoreContext,
        description=f"Defaults: device_type {DEFAULT_DEVICE_TYPE!r}, timestamp now.",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "user_id": USER_ID_EXAMPLE,
                    "listing_ids": [LISTING_ID_EXAMPLE, "00000000-0000-4000-8000-000000000000"],
                    "context": {"device_type": "android", "timestamp": "2026-11-22T18:30:00+00:00"},
                }
            ]
        },
    )


class ScoredListing(BaseModel):
    listing_id: UUID
    probability: float = Field(description="P(contact or favourite | user, listing, context).")


class ScoreResponse(BaseModel):
    """Scores from the promoted model on features of one user and one listing snapshot."""

    user_id: UUID
    user_found: bool = Field(
        description="False: no features for this user in the snapshot; scored with unknown user features."
    )
    model_version: str = Field(description="The registry version that scored (changes at promotion).")
    snapshots: dict[str, Snapshot] = Field(description="The snapshot read per feature view.")
    results: list[ScoredListing] = Field(description="Known listings, highest probability first.")
    unknown_listings: list[UUID] = Field(description="Candidates with no features (not scored).")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": USER_ID_EXAMPLE,
                    "user_found": True,
                    "model_version": "20261122T051502Z-3f9a0c1d-7b2e",
                    "snapshots": {"user_features": SNAPSHOT_EXAMPLE, "listing_features": SNAPSHOT_EXAMPLE},
                    "results": [{"listing_id": LISTING_ID_EXAMPLE, "probability": 0.0731}],
                    "unknown_listings": ["00000000-0000-4000-8000-000000000000"],
                }
            ]
        }
    )
