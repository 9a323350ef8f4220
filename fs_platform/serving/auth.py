"""Optional API-key auth: with FS_API_KEYS set, every /v1 route needs a valid X-API-Key."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import HTTPException, Security
from fastapi.security import APIKeyHeader

from fs_platform.serving.metrics import ServingMetrics

HEADER = "X-API-Key"
_scheme = APIKeyHeader(name=HEADER, auto_error=False, description="One of the keys in FS_API_KEYS.")


def api_key_dependency(keys: tuple[str, ...], metrics: ServingMetrics) -> Callable[[str | None], None]:
    """401 without a key, 403 with a wrong one; compared in constant time."""
    encoded = [k.encode() for k in keys]

    def check(api_key: str | None = Security(_scheme)) -> None:
        if not api_key:
            metrics.errors.labels("unauthorized").inc()
            raise HTTPException(401, f"missing {HEADER} header", headers={"WWW-Authenticate": HEADER})
        given = api_key.encode()
        if not any(hmac.compare_digest(given, k) for k in encoded):
            metrics.errors.labels("unauthorized").inc()
            raise HTTPException(403, f"invalid {HEADER}")

    return check
