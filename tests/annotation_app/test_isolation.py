"""Each DB test rolls back: a row written by one test is gone in the next (run in file order)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from annotation_app.models import Project
from annotation_app.services.projects import create_project

PROBE = "isolation-probe"


@pytest.mark.parametrize("backend", ["sqlite_session", "pg_session"])
def test_a_writes_and_commits(backend: str, request: pytest.FixtureRequest) -> None:
    session = request.getfixturevalue(backend)
    create_project(session, PROBE)
    session.commit()  # a savepoint commit: visible inside the test, rolled back after it
    assert session.scalar(select(Project).where(Project.name == PROBE)) is not None


@pytest.mark.parametrize("backend", ["sqlite_session", "pg_session"])
def test_b_sees_nothing_of_a(backend: str, request: pytest.FixtureRequest) -> None:
    session = request.getfixturevalue(backend)
    assert session.scalar(select(Project).where(Project.name == PROBE)) is None
