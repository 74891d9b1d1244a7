"""The media zoo, made once per test session, and the pipeline's verdict on each of its files."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from curation.ingest import IngestConfig, ItemResult, MediaPolicy, expand_sources, process_item
from tests.curation.ingest.zoo import CASES, make_zoo

# ultrafast keeps the suite quick on two shared cores; the format checks do not depend on it.
TEST_POLICY = MediaPolicy(preset="ultrafast")


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Case name → file (see ``zoo.CASES``)."""
    return make_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def zoo_config(tmp_path_factory: pytest.TempPathFactory) -> IngestConfig:
    return IngestConfig(media_dir=tmp_path_factory.mktemp("media"), policy=TEST_POLICY)


@pytest.fixture(scope="session")
def zoo_results(zoo: dict[str, Path], zoo_config: IngestConfig) -> dict[str, ItemResult]:
    """Every zoo file through ``process_item`` once (library only: no database)."""
    config = zoo_config
    by_path = {str(path.resolve()): name for name, path in zoo.items()}
    results = {}
    for item in expand_sources([str(p) for p in zoo.values()]):
        results[by_path[item.source]] = process_item(item, config)
    return results


@pytest.fixture(scope="session")
def http_zoo(zoo: dict[str, Path]) -> Iterator[str]:
    """Base URL of a loopback HTTP server serving the zoo folder."""
    folder = next(iter(zoo.values())).parent
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


CASE_BY_NAME = {c.name: c for c in CASES}
