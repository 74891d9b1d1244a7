"""The dashboard behind the annotation app's login: curators and admins only.

The dashboard keeps no accounts and no secret key of its own (its database role only reads). A
browser that logged in to the app sends the app's session cookie to the dashboard as well (cookies
belong to the host name, not the port, so serve both from one host: two ports, or two paths behind
one proxy). The dashboard asks the app who that cookie belongs to (``GET /api/auth/me`` on
``EMOTIONS_DASHBOARD_APP_URL``) on every run of a page, so the app's rules hold here too: an ended
session (log-out, sign out everywhere), a deactivated account or another role is refused at once,
and logins are throttled where they happen, in the app.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

__all__ = ["APP_URL_VARIABLE", "LOGIN_URL_VARIABLE", "SESSION_COOKIE", "Viewer", "DashboardLoginError",
           "app_url", "login_url", "viewer_for"]

APP_URL_VARIABLE = "EMOTIONS_DASHBOARD_APP_URL"
LOGIN_URL_VARIABLE = "EMOTIONS_DASHBOARD_LOGIN_URL"
SESSION_COOKIE = "emotions_session"  # annotation_app.security.SESSION_COOKIE (the dashboard imports no app code)
DASHBOARD_ROLES = ("curator", "admin")


@dataclass(frozen=True)
class Viewer:
    username: str
    role: str


class DashboardLoginError(Exception):
    """Why the dashboard is not shown; ``reason``: "login" (no valid app session), "role" (not a
    curator or admin) or "unreachable" (the app does not answer)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def app_url() -> str:
    """Where the dashboard reaches the app (server to server), without a trailing slash."""
    return os.environ.get(APP_URL_VARIABLE, "").strip().rstrip("/") or "http://127.0.0.1:8000"


def login_url() -> str:
    """Where a person logs in (as their browser reaches the app)."""
    return os.environ.get(LOGIN_URL_VARIABLE, "").strip() or f"{app_url()}/login"


def viewer_for(session_cookie: object, *, url: str | None = None, timeout_s: float = 5.0) -> Viewer:
    """The curator or admin the app's session cookie belongs to; else ``DashboardLoginError``."""
    if not isinstance(session_cookie, str) or not session_cookie:  # (a test harness without a browser has none)
        raise DashboardLoginError("log in to the annotation app as a curator or admin first", "login")
    base = url or app_url()
    try:
        response = httpx.get(f"{base}/api/auth/me", cookies={SESSION_COOKIE: session_cookie}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise DashboardLoginError(f"the annotation app at {base} does not answer ({type(exc).__name__}): the "
                                  "dashboard shows nothing until it can check who you are", "unreachable") from None
    if response.status_code == 401:
        raise DashboardLoginError("your session has ended: log in to the annotation app again", "login")
    if response.status_code != 200:
        raise DashboardLoginError(f"the annotation app at {base} answered {response.status_code}", "unreachable")
    me = response.json()
    viewer = Viewer(username=str(me.get("username", "")), role=str(me.get("role", "")))
    if viewer.role not in DASHBOARD_ROLES:
        raise DashboardLoginError(f"the dashboard is for curators and admins; {viewer.username} is "
                                  f"{viewer.role or 'no role'}", "role")
    return viewer
