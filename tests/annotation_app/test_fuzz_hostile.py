"""Hostile strings into every operation of the app's own OpenAPI document, on SQLite and PostgreSQL
(#22): NUL characters, lone UTF-16 surrogates, invalid UTF-8, ids past 2^31 and 2^63, numbers past
a double, 1,000-level nesting and oversized strings, in each path parameter, query parameter, JSON
field and form field, one at a time, and as whole bodies. No answer may be a 5xx, and after each
answer the same keep-alive connection must still answer ``/healthz``.

The schema fuzzing (``test_fuzz_schema``) draws values from the schema's types; these are the
values the schema's types let through to the parsers and the database. Each operation is called
as the role its path belongs to (a fresh bearer token, the account restored first: a call may
sign its caller out) and anonymously; over a real uvicorn server on a real socket.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from sqlalchemy.orm import Session, sessionmaker

from annotation_app.db import make_engine, make_sessionmaker
from tests.annotation_app._backends import BACKENDS, env_on
from tests.annotation_app._http import Env, caller_headers, serve_in_thread, tiny_video  # noqa: F401

# Raw (already percent-encoded) values for path and query parameters and form fields.
HOSTILE_RAW = ["a%00b", "%00", "%ED%A0%80", "x%ED%B0%80y", "%FF%FE", "2147483648", "9223372036854775808",
               "18446744073709551616", "-9223372036854775809", "1e400", "NaN", "x" * 5000]
# JSON texts for one field of a JSON body.
HOSTILE_JSON = ['"a\\u0000b"', '"\\u0000"', '"\\ud800"', '"x\\udfffy"', "2147483648", "9223372036854775808",
                "-9223372036854775809", "1e400", "-1e400", "[" * 1000 + "]" * 1000,
                '{"a":' * 1000 + "1" + "}" * 1000, '"' + "x" * 100_000 + '"', '["\\u0000", 2147483648]',
                '{"\\u0000": 1}']
# Whole JSON bodies (bytes: invalid UTF-8 among them).
HOSTILE_BODIES = [("[" * 1000 + "]" * 1000).encode(), ('{"a":' * 1000 + "1" + "}" * 1000).encode(),
                  b'{"x": "\xff\xfe"}', b'{"\\u0000": "\\ud800"}', b"9223372036854775808", b"\x00"]
ROLE_OF_PREFIX = [("/api/curator", "curator"), ("/curator", "curator"), ("/api/expert", "expert"),
                  ("/expert", "expert"), ("/api/admin", "admin"), ("/admin", "admin")]


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sqlite_url: str,
        tiny_video: Path) -> Iterator[Env]:  # noqa: F811
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
    yield from env_on(request.param, tmp_path_factory.mktemp(f"hostile-{request.param}"), sqlite_url, tiny_video)


@pytest.fixture(scope="module")
def sessions(env: Env) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(env.url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _role(path: str) -> str:
    return next((role for prefix, role in ROLE_OF_PREFIX if path.startswith(prefix)), "annotator")


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _sample(spec: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> Any:
    """A plain value of the schema's type (the fields not under attack)."""
    schema = _resolve(spec, schema)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(spec, s).get("type") != "null"] or schema[key]
            return _sample(spec, options[0], depth)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1)
    if kind == "number":
        return float(schema.get("minimum", 0.5))
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object" and depth < 4:
        return {name: _sample(spec, prop, depth + 1) for name, prop in schema.get("properties", {}).items()
                if name in schema.get("required", [])}
    return "x" * max(int(schema.get("minLength", 1)), 1)


def _requests(spec: dict[str, Any]) -> Iterator[tuple[str, str, str, bytes | None, str | None]]:
    """(label, method, url, body, content type) for each hostile value in each place of each operation."""
    for path, item in sorted(spec["paths"].items()):
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            params = operation.get("parameters", [])
            path_values = {p["name"]: "1" for p in params if p["in"] == "path"}
            query = {p["name"]: str(_sample(spec, p.get("schema", {}))) for p in params
                     if p["in"] == "query" and p.get("required")}
            content = operation.get("requestBody", {}).get("content", {})
            json_schema = content.get("application/json", {}).get("schema")
            form_schema = (content.get("application/x-www-form-urlencoded")
                           or content.get("multipart/form-data") or {}).get("schema")
            base_json = _sample(spec, json_schema) if json_schema else None
            form_fields = list(_resolve(spec, form_schema).get("properties", {})) if form_schema else []

            def url(path_over: dict[str, str] | None = None, query_over: dict[str, str] | None = None) -> str:
                url_path = path
                for name, value in {**path_values, **(path_over or {})}.items():
                    url_path = url_path.replace("{" + name + "}", value)
                pairs = {**{k: quote(v) for k, v in query.items()}, **(query_over or {})}
                return url_path + ("?" + "&".join(f"{k}={v}" for k, v in pairs.items()) if pairs else "")

            def body() -> tuple[bytes | None, str | None]:
                if base_json is not None:
                    return json.dumps(base_json).encode(), "application/json"
                if form_fields:
                    return "&".join(f"{f}=x" for f in form_fields).encode(), "application/x-www-form-urlencoded"
                return None, None

            name = f"{method.upper()} {path}"
            for value in HOSTILE_RAW:
                for param in path_values:
                    yield f"{name} path {param}={value[:20]}", method, url({param: value}), *body()
                for param in [p["name"] for p in params if p["in"] == "query"]:
                    yield f"{name} query {param}={value[:20]}", method, url(query_over={param: value}), *body()
                for field_name in form_fields:
                    fields = "&".join(f"{f}={value if f == field_name else 'x'}" for f in form_fields)
                    yield (f"{name} form {field_name}={value[:20]}", method, url(), fields.encode(),
                           "application/x-www-form-urlencoded")
            if isinstance(base_json, dict):
                fields = list(_resolve(spec, _resolve(spec, json_schema)).get("properties", {})) or ["x"]
                for field_name in fields:
                    for value in HOSTILE_JSON:
                        others = {k: v for k, v in base_json.items() if k != field_name}
                        text = json.dumps(others)[:-1] + (", " if others else "") + f'"{field_name}": {value}}}'
                        yield f"{name} json {field_name}={value[:20]}", method, url(), text.encode(), "application/json"
            if method in {"post", "put", "patch"}:
                for raw in HOSTILE_BODIES:
                    yield f"{name} body {raw[:20]!r}", method, url(), raw, "application/json"


def _connect(parts: Any) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.auto_open = 0  # a connection the server closed is a failure here, not quietly opened again
    conn.connect()
    return conn


@pytest.mark.slow
def test_hostile_strings_never_answer_5xx_and_keep_the_connection(env: Env, sessions: sessionmaker[Session]) -> None:
    spec = env.app.openapi()
    failures: list[str] = []
    cases = 0
    with serve_in_thread(env.app) as base:
        parts = urlsplit(base)
        conn = _connect(parts)
        try:
            for label, method, url, body, content_type in _requests(spec):
                for role in (_role(url), "anonymous"):
                    cases += 1
                    headers = {**caller_headers(env, sessions, role), **({"Content-Type": content_type} if content_type else {})}
                    try:
                        conn.request(method.upper(), url, body=body, headers=headers)
                        response = conn.getresponse()
                        payload = response.read()
                        if response.status >= 500:
                            failures.append(f"{role} {label}: {response.status} {payload[:200]!r}")
                        conn.request("GET", "/healthz")
                        after = conn.getresponse()
                        after.read()
                        if after.status != 200:
                            failures.append(f"{role} {label}: the next request got {after.status}")
                    except (http.client.HTTPException, OSError) as exc:
                        failures.append(f"{role} {label}: the connection broke: {exc!r}")
                        conn.close()
                        conn = _connect(parts)
        finally:
            conn.close()
    print(f"{cases} hostile cases")
    assert cases > 1000, cases
    assert not failures, f"{len(failures)} of {cases} cases failed:\n" + "\n".join(failures[:40])
