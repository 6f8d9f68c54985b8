"""Request bodies are capped before anything parses them: a declared `Content-Length` over the
cap is answered 413 before a byte is read, and a chunked body is counted as it streams in and
stopped with 413 as soon as it passes the cap (nothing is buffered beyond it).

Validation errors (422) are rendered here too: FastAPI's default echoes each rejected input,
which fails (a 500) when the input is not JSON-safe (`Infinity`, `NaN`) and sends back up to a
megabyte of the caller's own data; ours echoes only short scalar inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from `receive`: FastAPI re-raises HTTPExceptions from body reading, so this
    reaches the exception middleware and becomes a 413 with its reason."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware: `limit` bytes by default, `per_prefix` for paths starting with a key
    (the longest matching prefix wins)."""

    def __init__(self, app: ASGIApp, limit: int, per_prefix: Mapping[str, int] | None = None):
        self.app = app
        self.limit = limit
        self.per_prefix = sorted((per_prefix or {}).items(), key=lambda kv: -len(kv[0]))

    def limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.per_prefix if path.startswith(prefix)), self.limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(limit, scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse(
        {"detail": f"request body larger than {limit} bytes"},
        status_code=413,
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)


ECHO_MAX_CHARS = 200


async def validation_failed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        shown = {"loc": list(error.get("loc", ())), "msg": error.get("msg"), "type": error["type"]}
        value = error.get("input")
        if _echoable(value):
            shown["input"] = value
        errors.append(shown)
    return JSONResponse({"detail": errors}, status_code=422)


def _echoable(value: object) -> bool:
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    if isinstance(value, str):
        return len(value) <= ECHO_MAX_CHARS and value.isprintable()
    return value is None or (isinstance(value, bool | int) and abs(value) < 2**63)


def install(app: Any, limit: int, per_prefix: Mapping[str, int] | None = None) -> None:
    """Add the cap to a FastAPI/Starlette app (outside routing, inside error handling) and
    the JSON-safe rendering of validation errors."""
    app.add_middleware(BodyLimit, limit=limit, per_prefix=per_prefix)
    app.add_exception_handler(RequestValidationError, validation_failed)
