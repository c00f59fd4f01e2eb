"""One error envelope everywhere: {"error": {"code", "message", "details", "request_id"}}."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.headers import SECURITY_HEADERS
from commands.errors import (
    CommandError,
    IdempotencyKeyReused,
    SlugTaken,
    StoreUnavailable,
    VersionConflict,
)
from domain.errors import IllegalTransition, InvalidInput, NotFound

log = structlog.get_logger("api")


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []


def error_response(  # noqa: PLR0917
    request_id: str | None,
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one error envelope: {"error": {"code", "message", "details", "request_id"}}. Also an
    ASGI app, for middleware that answers before the routes."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": details or [],
            "request_id": request_id,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def envelope(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    return error_response(request_id, status, code, message, details)


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": _field_of(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
        for e in exc.errors()
    ]
    return envelope(request, 422, "invalid_input", "the request has invalid fields", details)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInput)
    details = [{"field": e.field, "message": e.message} for e in exc.errors]
    return envelope(request, 422, exc.code, exc.message, details)


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotFound)
    return envelope(request, 404, exc.code, exc.message)


async def _illegal(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IllegalTransition)
    return envelope(request, 409, exc.code, exc.message)


async def _command(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CommandError)
    status = 409
    if isinstance(exc, StoreUnavailable):
        response = envelope(request, 503, exc.code, exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    elif isinstance(exc, VersionConflict) and request.headers.get("if-match"):
        return envelope(request, 412, "precondition_failed", exc.message)
    elif isinstance(exc, SlugTaken | IdempotencyKeyReused | VersionConflict):
        status = 409
    return envelope(request, status, exc.code, exc.message)


async def _api(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return envelope(request, exc.status, exc.code, exc.message, exc.details)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    code = codes.get(exc.status_code, "http_error")
    return envelope(request, exc.status_code, code, str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", error_type=type(exc).__name__, exc_info=exc)
    message = "an unexpected error occurred; see the logs"
    response = envelope(request, 500, "internal_error", message)
    # Sent outside the middleware stack: the security headers are added here.
    response.headers.update(SECURITY_HEADERS)
    return response


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(InvalidInput, _invalid)
    app.add_exception_handler(IllegalTransition, _illegal)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(CommandError, _command)
    app.add_exception_handler(ApiError, _api)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
