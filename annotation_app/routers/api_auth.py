"""API authentication: a bearer token for API clients; who am I."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from annotation_app.deps import CurrentUser, SessionDep, SettingsDep
from annotation_app.routers.auth import client_address
from annotation_app.routers.schemas import TokenIn
from annotation_app.security import TOKEN_MAX_AGE_S, authenticate

__all__ = ["router"]

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/token")
def issue_token(body: TokenIn, request: Request, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """Exchange username + password for a bearer token (rate-limited like the login page)."""
    user = authenticate(session, body.username.strip(), body.password, client_address(request),
                        per_minute=settings.login_attempts_per_minute)
    return {"access_token": request.app.state.codec.issue_token(user.id), "token_type": "bearer",
            "expires_in": TOKEN_MAX_AGE_S}


@router.get("/me")
def me(user: CurrentUser) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "role": user.role.value, "languages": user.languages,
            "paused": user.paused}
