"""API authentication: a bearer token for API clients; who am I."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from annotation_app.deps import CurrentUser, SessionDep
from annotation_app.routers.auth import client_address, known_device, remember_device, throttle
from annotation_app.routers.schemas import TokenIn
from annotation_app.security import TOKEN_MAX_AGE_S, authenticate

__all__ = ["router"]

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/token")
def issue_token(body: TokenIn, request: Request, response: Response, session: SessionDep) -> dict[str, Any]:
    """Exchange username + password for a bearer token (throttled like the login page; a client
    that keeps cookies is a known device after its first success)."""
    user = authenticate(session, body.username.strip(), body.password, client_address(request),
                        throttle=throttle(request), device=known_device(request))
    remember_device(request, response, user.username)
    return {"access_token": request.app.state.codec.issue_token(user.id), "token_type": "bearer",
            "expires_in": TOKEN_MAX_AGE_S}


@router.get("/me")
def me(user: CurrentUser) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "role": user.role.value, "languages": user.languages,
            "paused": user.paused}
