"""One error body for every 4xx and 5xx, and the one table from error kinds to HTTP statuses.

Concrete errors map by their kind (``PveLocked`` is a conflict), so a new error class needs no change
here. Request validation failures are 400 with the offending fields in ``details.fields``.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from autovibe.errors import AutovibeError, error_kind
from autovibe.pve.breaker import PveCircuitOpen
from autovibe.pve.errors import PveError, PveTransportError
from autovibe.security.gate import ApprovalRequired
from autovibe.security.identity import AuthenticationFailed, UserDisabled

STATUS_BY_KIND: dict[str, int] = {
    "invalid": 400,
    "unauthorized": 401,
    "denied": 403,
    "approval_required": 403,
    "not_found": 404,
    "conflict": 409,
    "failed": 409,  # well-formed, but the target's state made it fail (see `hint`)
    "rate_limited": 429,
    "internal": 500,
    "upstream": 502,  # PVE answered with an error autovibe has no kind for
    "unavailable": 503,
}


class ErrorBody(BaseModel):
    """Every error answer: ``error`` is the kind (``invalid``, ``unauthorized``, ``denied``,
    ``approval_required``, ``not_found``, ``conflict``, ``failed``, ``rate_limited``, ``unavailable``,
    ``upstream``, ``internal``), ``message`` one line, ``hint`` what to do next."""

    error: str = Field(examples=["not_found"])
    message: str = Field(examples=["no machine 'web-1'"])
    hint: str | None = None
    details: dict[str, Any] | None = None


class ApiError(Exception):
    """Raised by the face itself (authentication, rate limits) with a kind and optional headers."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.body = ErrorBody(error=kind, message=message, hint=hint, details=details)
        self.headers = headers or {}


def body_for(exc: BaseException) -> tuple[int, ErrorBody, dict[str, str]]:
    """The status, body and headers an exception is answered with."""
    if isinstance(exc, ApiError):
        return STATUS_BY_KIND[exc.body.error], exc.body, exc.headers
    if isinstance(exc, AuthenticationFailed | UserDisabled):
        body = ErrorBody(error="unauthorized", message=exc.message, hint=exc.hint)
        return 401, body, {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, ApprovalRequired):
        body = ErrorBody(
            error="approval_required",
            message=exc.message,
            hint=exc.hint,
            details={"approval_id": exc.approval_id},
        )
        return 403, body, {}
    if isinstance(exc, AutovibeError):
        kind = error_kind(exc)
        if kind == "failed" and isinstance(exc, PveError) and not isinstance(exc, PveTransportError):
            kind = "upstream"
        operation_id = getattr(exc, "operation_id", None)
        details = {"operation_id": operation_id} if operation_id else None
        headers = {}
        if isinstance(exc, PveCircuitOpen):
            headers["Retry-After"] = "5"
        return (
            STATUS_BY_KIND[kind],
            ErrorBody(error=kind, message=exc.message, hint=exc.hint, details=details),
            headers,
        )
    return (
        500,
        ErrorBody(error="internal", message="internal error", hint="the hub's log has the details"),
        {},
    )


def respond(exc: BaseException) -> JSONResponse:
    status, body, headers = body_for(exc)
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


async def _autovibe(_request: Request, exc: Exception) -> JSONResponse:
    return respond(exc)


async def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = {_where(error.get("loc", ())): str(error.get("msg", "invalid")) for error in exc.errors()}
    first = next(iter(fields.items()), ("request", "invalid"))
    body = ErrorBody(
        error="invalid",
        message=f"{first[0]}: {first[1]}",
        hint="see the API schema at /openapi.json",
        details={"fields": fields},
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=400)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {
        400: "invalid", 401: "unauthorized", 403: "denied", 404: "not_found", 405: "invalid",
        409: "conflict", 429: "rate_limited", 503: "unavailable",
    }.get(exc.status_code, "invalid" if exc.status_code < 500 else "internal")  # fmt: skip
    message = str(exc.detail) if exc.detail else kind
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first matching route's methods; a path may have several routes.
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        message = f"{request.method} is not allowed here; use {', '.join(allowed)}"
    body = ErrorBody(error=kind, message=message)
    return JSONResponse(body.model_dump(mode="json"), status_code=exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods the API documents for the request's path (from the OpenAPI paths, compiled once)."""
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(request.app.state, "allowed_methods", None)
    if table is None:
        table = [
            (
                re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"),
                {m.upper() for m in ops},
            )
            for path, ops in request.app.openapi()["paths"].items()
        ]
        request.app.state.allowed_methods = table
    path = request.url.path
    return sorted({method for regex, methods in table if regex.match(path) for method in methods})


def _where(location: Any) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _autovibe)
    app.add_exception_handler(AutovibeError, _autovibe)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _autovibe)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Invalid request",
        401: "Missing or invalid token",
        403: "Denied by role, risk, or waiting for an approval",
        404: "Not found",
        409: "Conflict with the target's state",
        429: "Rate limited (see Retry-After)",
        500: "Internal error",
        502: "PVE answered with an error",
        503: "PVE or the store is unavailable (see Retry-After)",
    }.items()
}
"""Documented on every API route, so clients (and schemathesis) know the error body."""

INVALID_RESPONSE: dict[str, Any] = {
    "description": "Invalid request",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}
"""The OpenAPI response object of a 400, for operations outside ``/api/v1`` that validate input."""
