"""Request id (kept from X-Request-ID or made), bound to every log line; request size limit."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
log = structlog.get_logger("api.access")


class RequestContext:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_ID.fullmatch(given) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _too_large(scope, send, request_id, self.max_body_bytes)
            return
        if length is None and b"transfer-encoding" in headers:
            # A streamed body announces no size: read it, up to the limit, before the app does.
            received = await _read_limited(receive, self.max_body_bytes)
            if received is None:
                await _too_large(scope, send, request_id, self.max_body_bytes)
                return
            receive = _replay(received, receive)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )


async def _read_limited(receive: Receive, limit: int) -> list[Message] | None:
    """The request's body messages, or None once they exceed `limit` bytes."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _too_large(scope: Scope, send: Send, request_id: str, limit: int) -> None:
    message = f"the request body is larger than {limit} bytes"
    headers = {"x-request-id": request_id}
    response = error_response(request_id, 413, "payload_too_large", message, headers=headers)
    await response(scope, _nothing_to_receive, send)


async def _nothing_to_receive() -> Message:
    return {"type": "http.disconnect"}
