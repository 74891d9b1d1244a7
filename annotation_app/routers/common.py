"""Helpers shared by the page routers: rendering with the session's CSRF token, label views."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response

from annotation_app.deps import session_data
from annotation_app.models import Label, Project, User
from annotation_app.security import SESSION_COOKIE, SESSION_MAX_AGE_S, SessionData

__all__ = [
    "render", "ensure_session", "set_session_cookie", "label_view", "label_views", "user_language", "item_view",
    "media_sources", "dashboard_link", "table_link",
]


def ensure_session(request: Request) -> SessionData:
    """The request's session, or a fresh anonymous one (with a CSRF token) to be set as a cookie."""
    data = session_data(request)
    if data is None:
        data = SessionData()
        request.state.session_data = data
        request.state.session_dirty = True
    return data


def set_session_cookie(request: Request, response: Response, data: SessionData) -> None:
    settings = request.app.state.settings
    response.set_cookie(
        SESSION_COOKIE,
        request.app.state.codec.dump_session(data),
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        path="/",
    )


def render(request: Request, template: str, context: dict[str, Any] | None = None, *, status_code: int = 200) -> Response:
    data = ensure_session(request)
    ctx = {"user": getattr(request.state, "viewer", None), "csrf_token": data.csrf}
    ctx.update(context or {})
    response = request.app.state.templates.TemplateResponse(request, template, ctx, status_code=status_code)
    if getattr(request.state, "session_dirty", False):
        set_session_cookie(request, response, data)
    return response


def user_language(user: User | None) -> str | None:
    return user.languages[0] if user is not None and user.languages else None


def label_view(label: Label, lang: str | None) -> dict[str, Any]:
    """A label as an annotator sees it: the display name and description in their language, if any."""
    shown = (label.display or {}).get(lang or "", {}) if lang else {}
    return {
        "name": label.name,
        "display_name": shown.get("name") or label.name,
        "description": shown.get("description", ""),
        "hotkey": label.hotkey,
        "polarity": label.polarity.value,
        "index": label.index,
    }


def label_views(project: Project, user: User | None) -> list[dict[str, Any]]:
    lang = user_language(user)
    return [label_view(label, lang) for label in project.labels]


def media_sources(request: Request, clip_id: int, media_path: str | None) -> list[dict[str, str]]:
    """``<source>`` entries for a clip: its own file first, then any other rendition beside it."""
    from annotation_app.media import RENDITIONS, renditions_available

    found = renditions_available(request.app.state.settings.media_dir, media_path) if media_path else []
    return [
        {"src": f"/media/clips/{clip_id}" + ("" if i == 0 else f"?rendition={ext}"),
         "type": RENDITIONS.get(ext, "video/mp4")}
        for i, ext in enumerate(found or ["mp4"])
    ]


def item_view(request: Request, item: Any) -> dict[str, Any] | None:
    """A ``work.WorkItem`` as the page and the API show it: no hint whether it is hidden gold."""
    if item is None:
        return None
    return {
        "assignment_id": item.assignment_id,
        "clip_id": item.clip_id,
        "stage": item.stage,
        "is_qualification": bool(item.is_qualification),
        "lease_expires_at": item.lease_expires_at.isoformat() if item.lease_expires_at else None,
        "sources": media_sources(request, item.clip_id, item.media_path),
    }


def dashboard_link(request: Request, page: str = "") -> str | None:
    """The matching page of the curator dashboard (Streamlit names a page's path after its file), if one is set."""
    base = request.app.state.settings.dashboard_url
    return f"{base.rstrip('/')}/{page}" if base else None


def table_link(path: str, view: dict[str, Any]) -> Callable[..., str]:
    """Links of a server-side table (sort, filters, page) that change some of ``view``'s parameters
    and keep the rest; blanks are left out of the address."""
    def link(**changes: Any) -> str:
        params = {k: v for k, v in {**view, **changes}.items() if v not in ("", None)}
        return f"{path}?{urlencode(params)}"
    return link
