"""API authentication: a bearer token for API clients; who am I; log out; a new password."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from annotation_app.errors import AuthenticationError, PermissionDeniedError
from annotation_app.deps import CurrentUser, SessionDep, current_user, session_data, verify_csrf
from annotation_app.routers.auth import client_address, known_device, login_budget, remember_device, throttle
from annotation_app.routers.common import set_session_cookie
from annotation_app.routers.schemas import ERROR_RESPONSES, PasswordIn, TokenIn
from annotation_app.security import SESSION_COOKIE, TOKEN_MAX_AGE_S, authenticate
from annotation_app.services import users

__all__ = ["router"]

# No router-wide CSRF check: getting a token is a login (no session yet). The routes that change
# the account take it one by one.
router = APIRouter(prefix="/api/auth", tags=["auth"], responses=ERROR_RESPONSES)


def _token(request: Request, user: Any) -> dict[str, Any]:
    return {"access_token": request.app.state.codec.issue_token(user.id, version=user.session_version),
            "token_type": "bearer", "expires_in": TOKEN_MAX_AGE_S}


@router.post("/token")
def issue_token(body: TokenIn, request: Request, response: Response, session: SessionDep) -> dict[str, Any]:
    """Exchange username + password for a bearer token (throttled like the login page; a client
    that keeps cookies is a known device after its first success)."""
    user = authenticate(session, body.username.strip(), body.password, client_address(request),
                        throttle=throttle(request), budget=login_budget(request), device=known_device(request))
    remember_device(request, response, user.username)
    return _token(request, user)


@router.get("/me")
def me(user: CurrentUser) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "role": user.role.value, "languages": user.languages,
            "paused": user.paused}


@router.post("/logout", dependencies=[Depends(current_user), Depends(verify_csrf)])
def logout(response: Response, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """End every session cookie and token of the caller's account, this one included."""
    users.end_sessions(session, user, actor_id=user.id, reason="logged out")
    session.commit()
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"signed_out": True}


@router.post("/password", dependencies=[Depends(current_user), Depends(verify_csrf)])
def change_password(body: PasswordIn, request: Request, response: Response, session: SessionDep,
                    user: CurrentUser) -> dict[str, Any]:
    """A new password for the caller (the current one is checked, throttled like a login). Every
    other session and token of the account ends; the answer carries a fresh token, and a cookie
    session continues under a fresh cookie."""
    try:
        authenticate(session, user.username, body.current_password, client_address(request),
                     throttle=throttle(request), budget=login_budget(request), device=known_device(request))
    except AuthenticationError:
        # Not a 401: the caller is logged in, only the password they typed is wrong.
        raise PermissionDeniedError("the current password is wrong") from None
    users.set_password(session, user, body.new_password, actor_id=user.id)
    session.commit()
    data = session_data(request)
    if getattr(request.state, "auth_via", None) == "cookie" and data is not None:
        data.version = user.session_version
        set_session_cookie(request, response, data)
    return _token(request, user)
