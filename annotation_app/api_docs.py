"""The JSON API's documentation pages, served from the package's own files, and its security scheme.

FastAPI's default ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN: on a machine without
internet (a lab's annotation server often is one) they were blank pages. The assets are vendored
under ``static/docs`` (Swagger UI from npm ``swagger-ui-dist``, Apache-2.0; ReDoc from npm
``redoc``, MIT; versions and licences in ``static/docs/VENDORED.md``), as FastAPI's "Custom Docs UI
Static Assets (Self-Hosting)" describes.

The API authenticates by a bearer token (``POST /api/auth/token``) read by ``deps.caller_id``, not by
one of FastAPI's security classes, so the OpenAPI named no security scheme and Swagger UI showed no
*Authorize* button. :func:`install` adds an HTTP bearer scheme and marks every ``/api`` operation
but the token request itself as needing it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

__all__ = ["install", "with_bearer_scheme", "BEARER_SCHEME", "DOCS_ASSETS", "PUBLIC_API_PATHS"]

BEARER_SCHEME = "bearerAuth"
# Where the pages load their assets from: the app's own /static mount.
DOCS_ASSETS = {
    "swagger_js": "/static/docs/swagger-ui/swagger-ui-bundle.js",
    "swagger_css": "/static/docs/swagger-ui/swagger-ui.css",
    "favicon": "/static/docs/swagger-ui/favicon-32x32.png",
    "redoc_js": "/static/docs/redoc/redoc.standalone.js",
}
# API operations anyone may call: the token request is how a script gets its bearer token.
PUBLIC_API_PATHS = frozenset({"/api/auth/token"})


def install(app: FastAPI) -> None:
    """Add ``/docs`` (Swagger UI) and ``/redoc`` on local assets, and the bearer scheme to the OpenAPI.

    Build the app with ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are not added too.
    """
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{title} · API", swagger_js_url=DOCS_ASSETS["swagger_js"],
            swagger_css_url=DOCS_ASSETS["swagger_css"], swagger_favicon_url=DOCS_ASSETS["favicon"],
            # The token typed into Authorize survives a reload of the page.
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{title} · API", redoc_js_url=DOCS_ASSETS["redoc_js"],
                              redoc_favicon_url=DOCS_ASSETS["favicon"], with_google_fonts=False)

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_bearer_scheme(default_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_bearer_scheme(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the bearer scheme declared and required by every non-public ``/api`` operation."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from `POST /api/auth/token` (valid 12 h). The app's own pages use the "
                       "session cookie and an `X-CSRF-Token` header instead.",
    }
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/api/") or path in PUBLIC_API_PATHS:
            continue
        for method, operation in operations.items():
            if isinstance(operation, dict) and method in {"get", "post", "put", "patch", "delete"}:
                operation.setdefault("security", [{BEARER_SCHEME: []}])
    return schema
