"""Log in and log out (pages). API clients use ``/api/auth/token`` instead."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from annotation_app.deps import OptionalUser, SessionDep, verify_csrf
from annotation_app.errors import AuthenticationError, RateLimitedError
from annotation_app.routers.common import render, set_session_cookie
from annotation_app.routers.schemas import PAGE_RESPONSES, PlainText
from annotation_app.services import users
from annotation_app.security import (
    DEVICE_COOKIE,
    DEVICE_MAX_AGE_S,
    SESSION_COOKIE,
    KnownDevice,
    LoginBudget,
    LoginThrottle,
    SessionData,
    authenticate,
)

__all__ = ["router", "safe_next", "client_address", "known_device", "remember_device", "throttle", "login_budget"]

router = APIRouter(tags=["auth"], dependencies=[Depends(verify_csrf)], default_response_class=HTMLResponse,
                   responses=PAGE_RESPONSES)


def safe_next(target: str | None) -> str:
    """Only a local path may follow a login (no open redirect to another site)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def client_address(request: Request) -> str:
    """The client's address as the server saw it: uvicorn puts a trusted proxy's X-Forwarded-For
    here only for the proxies ``EMOTIONS_TRUSTED_PROXIES`` names (``curate serve``)."""
    return request.client.host if request.client else "unknown"


def known_device(request: Request) -> KnownDevice | None:
    return request.app.state.codec.load_device(request.cookies.get(DEVICE_COOKIE))


def remember_device(request: Request, response: Response, username: str) -> None:
    """Mark this browser as one that logged in as ``username`` (see ``security``); kept through log-out."""
    response.set_cookie(
        DEVICE_COOKIE, request.app.state.codec.dump_device(username), max_age=DEVICE_MAX_AGE_S,
        httponly=True, samesite="lax", secure=request.app.state.settings.cookie_secure, path="/",
    )


def throttle(request: Request) -> LoginThrottle:
    return LoginThrottle.from_settings(request.app.state.settings)


def login_budget(request: Request) -> LoginBudget:
    return request.app.state.login_budget


@router.get("/login")
def login_page(request: Request, next: Annotated[PlainText | None, Query(max_length=512)] = None) -> Response:
    return render(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    username: Annotated[PlainText, Form(max_length=64)],
    password: Annotated[PlainText, Form(max_length=256)],
    next: Annotated[PlainText, Form(max_length=512)] = "/",
) -> Response:
    try:
        user = authenticate(session, username.strip(), password, client_address(request),
                            throttle=throttle(request), budget=login_budget(request),
                            device=known_device(request))
    except (AuthenticationError, RateLimitedError) as exc:
        page = render(request, "login.html", {"next": safe_next(next), "error": str(exc)},
                      status_code=exc.http_status)
        if isinstance(exc, RateLimitedError) and exc.retry_after_s:
            page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    # A fresh session (and CSRF token) at login: a token planted before login is worthless after.
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(request, response, SessionData(user_id=user.id, version=user.session_version))
    remember_device(request, response, user.username)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, user: OptionalUser) -> Response:
    """Log out: every session and token of the account ends, here and on every other device
    (a cookie copied before stops working too). A cookie that no longer logs in changes nothing."""
    if user is not None:
        users.end_sessions(session, user, actor_id=user.id, reason="logged out")
        session.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
