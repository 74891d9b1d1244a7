"""The API documentation works offline (assets from the package) and offers a bearer *Authorize*.

The pages are checked over real HTTP here; ``test_browser.py`` renders /docs in Chromium with every
request off the machine refused.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from annotation_app import api_docs
from annotation_app.main import create_app
from annotation_app.settings import Settings


class _Assets(HTMLParser):
    """Every URL a page loads: <script src>, <link href>, <img src>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    data = tmp_path_factory.mktemp("docs")
    return TestClient(create_app(Settings(data_dir=data, database_url=f"sqlite:///{Path(data) / 'x.sqlite3'}")))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_the_packages_own_files(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    parser = _Assets()
    parser.feed(response.text)
    assert parser.urls, "the page loads its UI from somewhere"
    for url in parser.urls:
        assert url.startswith("/static/docs/"), f"{page} loads {url} from outside the app"
        asset = client.get(url)
        assert asset.status_code == 200 and asset.content, url
    # Nothing else in the page's own script points off the machine either (fonts, CDNs).
    assert not re.search(r"https?://", response.text), re.findall(r"https?://\S+", response.text)


def test_vendored_assets_keep_their_licences() -> None:
    folder = Path(api_docs.__file__).parent / "static" / "docs"
    assert "Apache License" in (folder / "swagger-ui" / "LICENSE").read_text()
    assert "MIT License" in (folder / "redoc" / "LICENSE").read_text()
    assert "swagger-ui-dist" in (folder / "VENDORED.md").read_text()


def test_openapi_declares_the_bearer_scheme_for_the_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"][api_docs.BEARER_SCHEME] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"][
            api_docs.BEARER_SCHEME]["description"]}
    needs_token = {(path, method) for path, ops in schema["paths"].items() for method, op in ops.items()
                   if op.get("security") == [{api_docs.BEARER_SCHEME: []}]}
    assert ("/api/work/next", "get") in needs_token and ("/api/curator/progress", "get") in needs_token
    assert ("/api/auth/me", "get") in needs_token
    # The token request is how one gets a token: it needs none.
    assert "security" not in schema["paths"]["/api/auth/token"]["post"]
    api_operations = {(p, m) for p, ops in schema["paths"].items() if p.startswith("/api/") for m in ops}
    assert api_operations - needs_token == {("/api/auth/token", "post")}
