"""The FastAPI app factory: feature routes, health, readiness, metrics, auth and error mapping.

Handlers are plain ``def`` functions: the Redis client is blocking, so FastAPI runs them in its
thread pool and a slow Redis (bounded by FS_REDIS_TIMEOUT_SECONDS) never stalls the event loop,
/healthz or /metrics. Responses are serialised with orjson straight into a ``Response``; the
pydantic models document them (OpenAPI) without re-validating every payload on the hot path.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from fs_platform.features.registry import Registry, load_registry
from fs_platform.infra.config import Settings, get_settings
from fs_platform.model.scoring import ScoringContext, input_refs, model_columns, score
from fs_platform.online.features import OnlineRequestError, get_online_features
from fs_platform.online.store import (
    OnlineStore,
    OnlineStoreError,
    OnlineStoreUnavailable,
    SnapshotInfo,
    SnapshotMissing,
)
from fs_platform.serving import schemas
from fs_platform.serving.auth import api_key_dependency
from fs_platform.serving.limits import LimitsMiddleware
from fs_platform.serving.metrics import MetricsMiddleware, ServingMetrics
from fs_platform.serving.model_provider import ModelProvider, NoModel

DESCRIPTION = f"""
Features of the marketplace recommender, read from the Redis online store: `POST /v1/features/get`
answers any online feature view or feature service (`fs-platform features list`) for any entity
keys, the per-user and per-listing routes are conveniences over the entity's main view, and
`POST /v1/score` ranks candidate listings with the promoted contact model on exactly the feature
service it was trained on. Every view in a response is read from **one** snapshot (see
`snapshot`/`snapshots` in the body); features older than
`FS_ONLINE_MAX_AGE_HOURS` are served with `snapshot.stale = true` and the header
`X-Features-Stale: true`.

Limits: batch up to {schemas.MAX_BATCH} user ids, score up to {schemas.MAX_CANDIDATES} candidates,
request body up to {schemas.MAX_BODY_BYTES} bytes (1 MiB), request headers up to
{schemas.MAX_HEADER_BYTES} bytes (16 KiB, names + values), `context.timestamp` from
{schemas.MIN_TIMESTAMP:%Y-%m-%d} to one day after now.

Errors, every one a JSON object with a one-line `detail`: `422` invalid input, including a body
that is not JSON (`detail` says what is wrong; `errors` lists each problem), `404` unknown
user/listing, `401`/`403` missing/invalid `X-API-Key` (only when `FS_API_KEYS` is set), `413`
body too large, `431` headers too large, `503` Redis unreachable, no snapshot published or no
model promoted yet (retry after `Retry-After` seconds; the API recovers by itself). A Redis that
is down or frozen gives its 503 within `2 x FS_REDIS_TIMEOUT_SECONDS + 0.5 s`, also under
concurrent load: after the first failure requests fail at once for
{{cooldown:g}} s, then one request at a time checks whether Redis is back.
"""

_JSON = "application/json"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=_JSON, headers=headers)


def _snapshot_body(info: SnapshotInfo, stale: bool) -> dict[str, Any]:
    return {
        "snapshot_id": info.snapshot_id,
        "as_of": info.as_of,
        "written_at": info.written_at,
        "age_seconds": round(info.age_seconds(datetime.now(UTC)), 3),
        "stale": stale,
    }


def _headers(info: SnapshotInfo, stale: bool) -> dict[str, str]:
    return {"X-Snapshot-Id": info.snapshot_id, "X-Features-Stale": "true" if stale else "false"}


def _names(names: list[str] | None) -> list[str] | None:
    """`?names=a&names=b` and `?names=a,b` both work."""
    if not names:
        return None
    return [n.strip() for value in names for n in value.split(",") if n.strip()]


class InvalidRequest(Exception):
    """Input that passed type validation but is still wrong (e.g. an unknown feature name)."""


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        401: (schemas.ErrorResponse, "X-API-Key missing (only when FS_API_KEYS is set)."),
        403: (schemas.ErrorResponse, "X-API-Key not one of FS_API_KEYS."),
        404: (schemas.NotFoundResponse, "The current snapshot has no features for this id."),
        413: (schemas.ErrorResponse, f"Request body over {schemas.MAX_BODY_BYTES} bytes."),
        422: (
            schemas.ValidationErrorResponse,
            "Invalid input, or a body that is not JSON; `detail` says what is wrong.",
        ),
        431: (schemas.ErrorResponse, f"Request headers over {schemas.MAX_HEADER_BYTES} bytes in total."),
        503: (
            schemas.ErrorResponse,
            "Redis unreachable or too slow (answered within 2 x FS_REDIS_TIMEOUT_SECONDS + 0.5 s), "
            "no snapshot published or (score) no model promoted yet. Retry after `Retry-After` s.",
        ),
    }
    return {code: {"model": described[code][0], "description": described[code][1]} for code in codes}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Move everything alive at startup (modules, the app, the model) out of the collector's reach:
    otherwise a full collection walks them every few thousand requests, a 10 ms pause at p99."""
    gc.collect()
    gc.freeze()
    yield


def create_app(
    store: OnlineStore | None = None,
    settings: Settings | None = None,
    models: ModelProvider | None = None,
    registry: Registry | None = None,
) -> FastAPI:
    """Build the app; ``store`` and ``models`` default to the FS_* configuration (cache on),
    ``registry`` to the project's feature registry."""
    settings = settings or get_settings()
    registry = registry or load_registry()
    store = store or OnlineStore.from_settings(settings)
    models = models or ModelProvider(settings.model_registry_dir)
    metrics = ServingMetrics(store)
    app = FastAPI(
        title="fs-platform serving API",
        version="1.0.0",
        description=DESCRIPTION.format(cooldown=store.breaker.cooldown),
        lifespan=_lifespan,
        openapi_tags=[
            {"name": "features", "description": "Online features from the current snapshot."},
            {"name": "operations", "description": "Health, readiness and Prometheus metrics."},
        ],
    )
    app.state.store = store
    app.state.metrics = metrics
    # the last one added runs first: metrics also time and count the requests the limits refuse
    app.add_middleware(
        LimitsMiddleware,
        metrics=metrics,
        max_body_bytes=schemas.MAX_BODY_BYTES,
        max_header_bytes=schemas.MAX_HEADER_BYTES,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _install_error_handlers(app, metrics)

    dependencies = [Depends(api_key_dependency(settings.api_keys, metrics))] if settings.api_keys else []
    auth_codes = (401, 403) if settings.api_keys else ()
    get_codes = (*auth_codes, 404, 422, 431, 503)
    post_codes = (*auth_codes, 413, 422, 431, 503)
    v1 = APIRouter(prefix="/v1", tags=["features"], dependencies=dependencies)

    served_refs: dict[str, dict[str, str]] = {}  # model version -> model input -> reference

    def _count_stale(batches) -> None:
        for batch in batches:
            if batch.stale:
                metrics.stale.labels(batch.snapshot.kind).inc()

    def _vector_response(entity: str, kind: str, requested_id: str, vector) -> Response:
        """One entity's features (200) or a 404 naming the snapshot that lacks it."""
        snapshot = _snapshot_body(vector.snapshot, vector.stale)
        headers = _headers(vector.snapshot, vector.stale)
        if vector.stale:
            metrics.stale.labels(kind).inc()
        if vector.features is None:
            detail = f"{entity} {requested_id} has no features in snapshot {vector.snapshot.snapshot_id}"
            return _json({"detail": detail, "snapshot": snapshot}, 404, headers)
        body = {f"{entity}_id": vector.entity_id, "features": vector.features, "snapshot": snapshot}
        return _json(body, headers=headers)

    @v1.get(
        "/users/{user_id}/features",
        response_model=schemas.UserFeaturesResponse,
        responses=_error_responses(*get_codes),
        summary="Features of one user",
    )
    def user_features(
        user_id: Annotated[UUID, Path(description="The user's UUID.", examples=[schemas.USER_ID_EXAMPLE])],
        names: Annotated[
            list[schemas.FeatureName] | None,
            Query(
                description="Only these features (default: all): repeat the parameter or separate "
                "with commas.",
                examples=[["category_affinity", "activity_score"]],
            ),
        ] = None,
    ) -> Response:
        try:
            vector = store.get_user(str(user_id), _names(names))
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        return _vector_response("user", store.entity_view("user").name, str(user_id), vector)

    @v1.post(
        "/features/batch",
        response_model=schemas.BatchResponse,
        responses=_error_responses(*post_codes),
        summary=f"Features of up to {schemas.MAX_BATCH} users, from one snapshot",
    )
    def batch_features(request: schemas.BatchRequest) -> Response:
        try:
            batch = store.get_users([str(u) for u in request.user_ids], request.names)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        results = [{"user_id": uid, "found": f is not None, "features": f} for uid, f in batch.rows.items()]
        found = sum(1 for r in results if r["found"])
        _count_stale([batch])
        body = {
            "snapshot": _snapshot_body(batch.snapshot, batch.stale),
            "found": found,
            "missing": len(results) - found,
            "results": results,
        }
        return _json(body, headers=_headers(batch.snapshot, batch.stale))

    @v1.get(
        "/listings/{listing_id}/features",
        response_model=schemas.ListingFeaturesResponse,
        responses=_error_responses(*get_codes),
        summary="Features of one listing",
    )
    def listing_features(
        listing_id: Annotated[
            UUID, Path(description="The listing's UUID.", examples=[schemas.LISTING_ID_EXAMPLE])
        ],
    ) -> Response:
        vector = store.get_listing(str(listing_id))
        return _vector_response("listing", store.entity_view("listing").name, str(listing_id), vector)

    @v1.post(
        "/features/get",
        response_model=schemas.OnlineFeaturesResponse,
        responses=_error_responses(*post_codes),
        summary=f"Any online features or a feature service for up to {schemas.MAX_BATCH} entity rows",
    )
    def get_features(request: schemas.OnlineFeaturesRequest) -> Response:
        try:
            online = get_online_features(store, registry, request.features, request.entities)
        except OnlineRequestError as exc:
            raise InvalidRequest(str(exc)) from exc
        _count_stale(online.batches.values())
        body = {
            "features": online.refs,
            "rows": online.rows,
            "values": online.values,
            "found": online.found,
            "snapshots": {v: _snapshot_body(b.snapshot, b.stale) for v, b in online.batches.items()},
        }
        return _json(body)

    @v1.post(
        "/score",
        response_model=schemas.ScoreResponse,
        responses=_error_responses(*post_codes),
        summary=f"Rank up to {schemas.MAX_CANDIDATES} candidate listings for a user",
    )
    def score_listings(request: schemas.ScoreRequest) -> Response:
        model = models.current()
        refs = served_refs.get(model.version)
        if refs is None:
            refs = served_refs[model.version] = input_refs(model, registry)
        user_view, listing_view = store.entity_view("user"), store.entity_view("listing")
        user_id = str(request.user_id)
        listing_ids = list(dict.fromkeys(str(i) for i in request.listing_ids))
        entities = {user_view.id_name: [user_id] * len(listing_ids), listing_view.id_name: listing_ids}
        online = get_online_features(store, registry, list(refs.values()), entities)
        context = ScoringContext(
            device_type=request.context.device_type,
            at=request.context.timestamp or datetime.now(UTC),
        )
        listing_found = online.found.get(listing_view.name) or [True] * len(listing_ids)
        keep = [i for i, found in enumerate(listing_found) if found]
        values = {ref: [column[i] for i in keep] for ref, column in online.values.items()}
        probabilities = score(model, model_columns(model, refs, values, context))
        ranked = sorted(
            zip((listing_ids[i] for i in keep), probabilities.tolist(), strict=True), key=lambda r: -r[1]
        )
        _count_stale(online.batches.values())
        body = {
            "user_id": user_id,
            "user_found": bool(online.found.get(user_view.name, [False])[0]),
            "model_version": model.version,
            "snapshots": {v: _snapshot_body(b.snapshot, b.stale) for v, b in online.batches.items()},
            "results": [{"listing_id": i, "probability": p} for i, p in ranked],
            "unknown_listings": [listing_ids[i] for i, found in enumerate(listing_found) if not found],
        }
        return _json(body, headers={"X-Model-Version": model.version})

    app.include_router(v1)
    _add_operations_routes(app, store, metrics)
    return app


def _add_operations_routes(app: FastAPI, store: OnlineStore, metrics: ServingMetrics) -> None:
    @app.get(
        "/healthz",
        response_model=schemas.Health,
        responses=_error_responses(431),
        tags=["operations"],
        summary="The process is up",
    )
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get(
        "/readyz",
        response_model=schemas.Readiness,
        responses={
            **_error_responses(431),
            503: {"model": schemas.Readiness, "description": "Not ready (body says why)."},
        },
        tags=["operations"],
        summary="Redis reachable and a user snapshot published",
    )
    def readyz() -> Response:
        snapshots: dict[str, dict[str, Any] | None] = {}
        redis_ok = store.ping()
        detail = None if redis_ok else "Redis unreachable"
        if redis_ok:
            for kind in store.views:
                try:
                    info = store.snapshot(kind)
                except OnlineStoreError as exc:
                    redis_ok, detail, info = False, str(exc), None
                stale = info is not None and info.is_stale(store.max_age)
                snapshots[kind] = _snapshot_body(info, stale) if info else None
        main_view = store.entity_view("user").name
        ready = redis_ok and snapshots.get(main_view) is not None
        if redis_ok and not ready:
            detail = (
                f"no {main_view} snapshot published yet (materialize online_{main_view} or run "
                "`fs-platform sync`)"
            )
        body = {"ready": ready, "redis": redis_ok, "snapshots": snapshots, "detail": detail}
        return _json(body, 200 if ready else 503)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {"example": "fs_serving_cache_hit_ratio 0.42\n"}}},
            **_error_responses(431),
        },
    )
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _install_error_handlers(app: FastAPI, metrics: ServingMetrics) -> None:
    @app.exception_handler(OnlineStoreUnavailable)
    async def unavailable(request: Request, exc: OnlineStoreUnavailable) -> Response:
        metrics.errors.labels("redis_unavailable").inc()
        return _json({"detail": f"online store unavailable: {exc}"}, 503, {"Retry-After": "1"})

    @app.exception_handler(SnapshotMissing)
    async def no_snapshot(request: Request, exc: SnapshotMissing) -> Response:
        metrics.errors.labels("no_snapshot").inc()
        return _json({"detail": str(exc)}, 503, {"Retry-After": "30"})

    @app.exception_handler(OnlineStoreError)
    async def store_error(request: Request, exc: OnlineStoreError) -> Response:
        metrics.errors.labels("internal").inc()
        return _json({"detail": f"online store error: {exc}"}, 500)

    @app.exception_handler(NoModel)
    async def no_model(request: Request, exc: NoModel) -> Response:
        metrics.errors.labels("no_model").inc()
        return _json({"detail": str(exc)}, 503, {"Retry-After": "60"})

    @app.exception_handler(InvalidRequest)
    async def invalid(request: Request, exc: InvalidRequest) -> Response:
        metrics.errors.labels("invalid_request").inc()
        return _json({"detail": str(exc), "errors": [{"loc": [], "msg": str(exc)}]}, 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI's answer to a body it could not decode (e.g. not UTF-8): a validation error
            metrics.errors.labels("invalid_request").inc()
            cause = exc.__cause__
            reason = "not UTF-8 text" if isinstance(cause, UnicodeDecodeError) else _short(str(cause))
            msg = f"not valid JSON: {reason}"
            return _json({"detail": f"body: {msg}", "errors": [{"loc": ["body"], "msg": msg}]}, 422)
        return _json({"detail": exc.detail}, exc.status_code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> Response:
        metrics.errors.labels("invalid_request").inc()
        errors = [_plain_error(e) for e in exc.errors()]
        detail = "; ".join(f"{' '.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return _json({"detail": detail, "errors": errors}, 422)


def _plain_error(error: dict[str, Any]) -> dict[str, Any]:
    """A pydantic error in words a client understands, with the offending input (shortened)."""
    loc = list(error.get("loc", ()))
    msg = error.get("msg", "invalid")
    kind = error.get("type", "")
    given = error.get("input")
    if kind == "json_invalid":
        loc = loc[:1]  # FastAPI puts the character offset here; the message says where
        msg = f"not valid JSON: {_json_error(error)}"
        given = None
    elif loc == ["body"] and isinstance(given, bytes):
        msg = "not a JSON body: send a JSON object with Content-Type: application/json"
        given = None
    elif loc == ["body"] and kind == "missing":
        msg = "the request body is empty: send a JSON object"
    elif loc == ["body"] and kind in ("model_attributes_type", "dict_type", "model_type"):
        msg = f"the request body must be a JSON object, not {_json_type(given)}"
    elif kind.startswith("uuid"):
        msg = f"not a valid UUID: {given!r}"
    elif kind == "too_long" and loc[-1:] == ["user_ids"]:
        msg = f"batch too large: {len(given)} user ids, at most {schemas.MAX_BATCH} per request"
    elif kind == "too_short" and loc[-1:] == ["user_ids"]:
        msg = "user_ids is empty: send at least one user id"
    elif kind == "too_long" and loc[-1:] == ["listing_ids"]:
        msg = f"too many candidates: {len(given)} listing ids, at most {schemas.MAX_CANDIDATES} per request"
    elif kind == "too_short" and loc[-1:] == ["listing_ids"]:
        msg = "listing_ids is empty: send at least one candidate listing"
    elif kind == "timezone_aware":
        msg = f"timestamp needs a timezone (e.g. 2026-11-22T18:30:00+00:00): {given!r}"
    shown = given if isinstance(given, str | int | float | bool) or given is None else type(given).__name__
    if isinstance(shown, str):
        shown = _short(shown)
    return {"loc": loc, "msg": msg, "input": shown}


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _json_error(error: dict[str, Any]) -> str:
    """The decoder's reason with its position, e.g. 'Expecting value at line 1 column 2 (char 1)'."""
    reason = error.get("ctx", {}).get("error", "JSON decode error")
    position = error["loc"][1] if len(error.get("loc", ())) > 1 else None
    return reason if position is None else f"{reason} at character {position}"


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
