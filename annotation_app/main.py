"""The annotation web app: ``create_app(settings)`` builds it; nothing happens at import.

Run it with ``curate serve`` or ``uvicorn annotation_app.main:create_app --factory``. Run directly,
uvicorn believes ``X-Forwarded-For`` from 127.0.0.1 unless told otherwise: pass
``--forwarded-allow-ips`` with the proxies of ``EMOTIONS_TRUSTED_PROXIES``, or ``--no-proxy-headers``,
as ``curate serve`` does, or the login throttle counts whatever address a client claims.

>>> app = create_app(Settings(data_dir="/tmp/emotions-doc"))
>>> any(getattr(r, "path", "") == "/healthz" for r in app.routes)
True
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from annotation_app import api_docs
from annotation_app.db import database_error, make_engine, make_sessionmaker
from annotation_app.deps import LoginRequiredError, session_data
from annotation_app.errors import AppError
from annotation_app.routers import (
    annotate,
    api_auth,
    api_curator,
    api_expert,
    api_work,
    auth,
    curator,
    expert,
    home,
    media,
)
from annotation_app.security import LoginBudget, SessionCodec
from annotation_app.settings import Settings, get_settings

__all__ = ["create_app", "MAX_BODY_BYTES", "MAX_JSON_DEPTH"]

PACKAGE_DIR = Path(__file__).resolve().parent
# Forms and JSON bodies here are tiny; anything larger is refused before it is parsed.
MAX_BODY_BYTES = 64 * 1024


class _BodyLimit:
    """Answer 413 to a request body over ``limit`` bytes (declared or streamed)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _too_large(scope, send, self.limit)
                return
        seen = 0
        too_large = False

        async def limited() -> Message:
            nonlocal seen, too_large
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                too_large = True
                raise _BodyTooLarge()
            return message

        replaced = False

        async def guarded_send(message: Message) -> None:
            # The app may turn the aborted read into its own error response: answer 413 instead.
            nonlocal replaced
            if too_large:
                if not replaced:
                    replaced = True
                    await _too_large(scope, send, self.limit)
                return
            await send(message)

        try:
            await self.app(scope, limited, guarded_send)
        except _BodyTooLarge:
            if not replaced:
                await _too_large(scope, send, self.limit)


# No body of ours nests past a few levels; Python's JSON parser recurses once per level and raised
# RecursionError (a 500, unauthenticated) at about a thousand.
MAX_JSON_DEPTH = 32


class _JsonBodyGuard:
    """Refuse a JSON body that is not UTF-8 or nests deeper than ``MAX_JSON_DEPTH``, with a 422, before any parser.

    Runs inside the body limit (the body is at most ``MAX_BODY_BYTES``) and outside the queue's fast
    path, so every JSON route, FastAPI's or the fast path's, sees only bodies that parse safely. The
    cost on the plain case is a UTF-8 decode and two byte counts in C; the exact depth scan runs only
    for a body with more than ``MAX_JSON_DEPTH`` brackets.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS") or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = _json_problem(body)
        if problem is not None:
            response = JSONResponse({"detail": problem, "errors": [{"loc": ["body"], "msg": problem, "type": "json_invalid"}]},
                                    status_code=422)
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return False


def _json_problem(body: bytes) -> str | None:
    """Why ``body`` may not reach a JSON parser, or None."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not valid UTF-8 (byte {exc.start})"
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _json_depth(body) > MAX_JSON_DEPTH:
        return f"the body nests deeper than {MAX_JSON_DEPTH} levels"
    return None


def _json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body``, brackets inside strings not counted."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


class _AnsweredErrorsStayHere:
    """Log an exception raised after its 500 answer was sent instead of handing it to the server.

    Starlette's outermost layer answers an unhandled exception with a 500 and raises it again; uvicorn
    then drops the connection, so the client's next request on that keep-alive connection was reset.
    Wrapped around that layer (``create_app``), the answered error is logged and the connection lives.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answered = False

        async def watched(message: Message) -> None:
            nonlocal answered
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if not answered:
                raise
            logging.getLogger("annotation_app").exception("error after the answer to %s %s",
                                                         scope.get("method"), scope.get("path"))


class _SecurityHeaders:
    """Headers every response carries: no MIME sniffing, no framing (clickjacking), no referrer leaks."""

    HEADERS = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


class _BodyTooLarge(Exception):
    pass


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    response = JSONResponse({"detail": f"request body over {limit // 1024} KiB"}, status_code=413)
    await response(scope, lambda: _empty(), send)  # type: ignore[arg-type]


async def _empty() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error_page(request: Request, status: int, message: str) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    user = getattr(request.state, "viewer", None)
    data = session_data(request)  # the header's log-out form needs the session's token
    return templates.TemplateResponse(
        request, "error.html",
        {"status": status, "message": message, "user": user, "csrf_token": data.csrf if data else ""},
        status_code=status,
    )


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    message = str(exc) or exc.__class__.__name__
    headers = {"Retry-After": str(exc.retry_after_s)} if getattr(exc, "retry_after_s", None) else {}
    if _is_api(request):
        if exc.http_status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        body: dict[str, Any] = {"detail": message}
        if isinstance(getattr(exc, "errors", None), list):  # each refused field, as a validation 422 has
            body["errors"] = exc.errors  # type: ignore[attr-defined]
        if getattr(exc, "see", None):  # the page that lifts the refusal (the guidelines gate)
            body["see"] = exc.see  # type: ignore[attr-defined]
        return JSONResponse(body, status_code=exc.http_status, headers=headers or None)
    if isinstance(exc, LoginRequiredError) and request.method == "GET":
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    return _error_page(request, exc.http_status, message)


async def _database_error(request: Request, exc: Exception) -> Response:
    """A write the database refused: the same 409 / 422 with a message on SQLite and PostgreSQL."""
    assert isinstance(exc, IntegrityError | DataError)
    return await _app_error(request, database_error(exc))


# Seconds a client waits before trying again while the database is unreachable (a restart takes a few).
DATABASE_RETRY_AFTER_S = 2


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    """The database cannot be reached (restarting, down, the network): a 503 with Retry-After, not a 500."""
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER_S)}
    message = "the database is unavailable for a moment; try again shortly"
    if _is_api(request) or request.url.path == "/healthz":
        return JSONResponse({"detail": message}, status_code=503, headers=headers)
    response = _error_page(request, 503, message)
    response.headers.update(headers)
    return response


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    message = _validation_message(exc)
    if _is_api(request):
        errors: list[dict[str, Any]] = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return JSONResponse({"detail": message, "errors": errors}, status_code=422)
    return _error_page(request, 422, message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if _is_api(request) or exc.status_code < 400:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    return _error_page(request, exc.status_code, str(exc.detail))


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: ``get_settings()``); the engine is made at startup."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms,
                             pool_pre_ping=settings.db_pool_pre_ping)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.codec = SessionCodec(settings.session_secret())
        # Handlers are sync (SQLAlchemy) and run in a thread pool of ``settings.app_threads``. Few
        # threads: a request holds the GIL for much of its time, so many threads only hand it
        # around (16 threads once gave 81 submissions/s against 141 with 2). Too few, and requests
        # queue for a thread while the ones holding them wait on PostgreSQL: a queue unit takes
        # ~5 ms of wall time for ~1.5 ms of CPU, so at 150 units/s a worker's two threads were ~75 %
        # occupied. Measured with bench/bench_annotation_http.py (2 workers, 200 clients,
        # PostgreSQL, 2 cores, paced at 300 submissions/s, back to back): next-clip p99 36-103 ms
        # with 2 threads, 17-23 ms with 3 and 15-22 ms with 4; saturation 365 / 391 / 392
        # submissions/s (SQLite, one writer at a time, does better with 2: see Settings). Fewer
        # threads than the engine's connection pool (10 + 20 overflow) means no request ever waits
        # for a connection while holding a thread.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.app_threads
        # The queue's units of work (``deps.in_unit_of_work``) run on a plain executor: anyio's
        # thread hand-off (a Condition per call) cost about 5 % of a worker's time under load.
        app.state.queue_threads = ThreadPoolExecutor(settings.app_threads, thread_name_prefix="queue")
        # Everything built so far lives as long as the process (modules, the app, pandas and SQLAlchemy
        # internals: ~170k objects). Frozen, the collector's full passes skip it: they had taken
        # 70-100 ms each, a stall every few seconds under load that set the queue's p99 latency
        # (bench/bench_annotation_http.py, paced 300/s: next-clip p99 136 ms before, 40 ms after).
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # an app that stops inside a longer-lived process (tests) leaves nothing pinned
            app.state.queue_threads.shutdown(wait=True)
            engine.dispose()

    app = FastAPI(
        title="eMotions annotation app",
        summary="Blind, multi-stage labelling of short videos; expert adjudication; curation.",
        description=(
            "JSON API under `/api`. Authenticate with `POST /api/auth/token` and send "
            "`Authorization: Bearer <token>`; or, from the app's own pages, with the session cookie "
            "plus the `X-CSRF-Token` header on every POST/PATCH."
        ),
        version="0.1.0",
        lifespan=lifespan,
        # Served from the package's own files instead (api_docs): FastAPI's pages load from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    api_docs.install(app)
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: _AnsweredErrorsStayHere(build_stack())  # type: ignore[method-assign]
    app.state.settings = settings
    # Password checks of this process (the login's CPU budget: security.LoginBudget), shared by its threads.
    app.state.login_budget = LoginBudget.from_settings(settings)
    app.state.templates = Jinja2Templates(directory=str(PACKAGE_DIR / "templates"))
    app.add_middleware(api_work.QueueFastPath)  # innermost of ours: inside the body limit and headers
    app.add_middleware(_JsonBodyGuard)  # before any JSON parser, after the size limit
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(_SecurityHeaders)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _database_error)
    app.add_exception_handler(DataError, _database_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.mount("/static", StaticFiles(directory=str(PACKAGE_DIR / "static")), name="static")

    for router in (
        home.router, auth.router, annotate.router, expert.router, curator.router, media.router,
        api_auth.router, api_work.queue_router, api_work.router, api_expert.router, api_curator.router,
    ):
        app.include_router(router)

    @app.get("/healthz", tags=["health"])
    def healthz(request: Request) -> dict[str, str]:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    return app
