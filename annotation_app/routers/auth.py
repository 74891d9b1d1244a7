"""Log in and log out (pages). API clients use ``/api/auth/token`` instead."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from annotation_app.deps import SessionDep, SettingsDep, verify_csrf
from annotation_app.errors import AuthenticationError
from annotation_app.routers.common import render, set_session_cookie
from annotation_app.security import SESSION_COOKIE, SessionData, authenticate

__all__ = ["router", "safe_next", "client_address"]

router = APIRouter(tags=["auth"], dependencies=[Depends(verify_csrf)])


def safe_next(target: str | None) -> str:
    """Only a local path may follow a login (no open redirect to another site)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    next: Annotated[str, Form(max_length=512)] = "/",
) -> Response:
    try:
        user = authenticate(session, username.strip(), password, client_address(request),
                            per_minute=settings.login_attempts_per_minute)
    except AuthenticationError as exc:
        return render(request, "login.html", {"next": safe_next(next), "error": str(exc)}, status_code=401)
    # A fresh session (and CSRF token) at login: a token planted before login is worthless after.
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(request, response, SessionData(user_id=user.id))
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
