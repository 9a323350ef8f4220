"""Request size limits, enforced before routing: headers (431) and body (413).

uvicorn (httptools) accepts headers and bodies of any size, so without this a client can make a
worker buffer megabytes before any validation runs. A plain ASGI middleware (like the metrics
one) rather than Starlette's BaseHTTPMiddleware, which costs a task and a queue per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from fs_platform.serving.metrics import ServingMetrics

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class LimitsMiddleware:
    """431 when the request headers exceed ``max_header_bytes`` (names + values, summed); 413 when
    the body exceeds ``max_body_bytes``: at once from Content-Length, else counted while reading a
    chunked body (buffered up to the limit, then handed to the app as one message)."""

    def __init__(self, app, metrics: ServingMetrics, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = 0
        content_length: bytes | None = None
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value)
            if name == b"content-length":
                content_length = value
        if header_bytes > self.max_header_bytes:
            detail = f"request headers too large: {header_bytes} bytes, at most {self.max_header_bytes}"
            await self._refuse(send, 431, "headers_too_large", detail)
            return
        if content_length is not None:
            # the server never delivers more than Content-Length bytes (it frames the body by it)
            if content_length.isdigit() and int(content_length) > self.max_body_bytes:
                await self._refuse(send, 413, "body_too_large", self._body_detail(int(content_length)))
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._refuse(send, 413, "body_too_large", self._body_detail(size, more=True))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    def _body_detail(self, size: int, more: bool = False) -> str:
        given = f"over {size}" if more else f"{size}"
        return f"request body too large: {given} bytes, at most {self.max_body_bytes}"

    async def _refuse(self, send: Send, status: int, cause: str, detail: str) -> None:
        self.metrics.errors.labels(cause).inc()
        body = orjson.dumps({"detail": detail})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the rest of the request is not read
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive() that hands out the buffered messages first, then defers to the server's."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
