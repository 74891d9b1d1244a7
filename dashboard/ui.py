"""What every page shares: where to read from, the project picker, and turning errors into messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from annotation_app.errors import AppError
from curation.errors import CurationError
from dashboard import cached
from dashboard.data import DashboardConfig

__all__ = ["PageContext", "page_context", "shown_errors"]


@dataclass(frozen=True)
class PageContext:
    config: DashboardConfig
    project: str

    @property
    def url(self) -> str:
        return self.config.database_url


@contextmanager
def shown_errors() -> Iterator[None]:
    """A domain or database error becomes one message on the page, and the page stops there."""
    try:
        yield
    except (AppError, CurationError, SQLAlchemyError) as exc:
        st.error(f"{type(exc).__name__}: {exc}".splitlines()[0])
        st.stop()


def page_context() -> PageContext:
    """The configuration (from the environment) and the project chosen in the sidebar."""
    config = DashboardConfig.from_env()
    with shown_errors():
        names = cached.project_names(config.database_url)
    if not names:
        st.info("No project yet: create one with `curate project create NAME` (or `curate demo`).")
        st.stop()
    default = config.project if config.project in names else names[0]
    project = st.sidebar.selectbox("Project", names, index=names.index(default), key="project")
    st.sidebar.caption("Database: " + make_url(config.database_url).render_as_string(hide_password=True)
                       + "  \n(read-only)")
    if st.sidebar.button("Reload data", help=f"Data is cached for {cached.TTL_S} s."):
        st.cache_data.clear()
    return PageContext(config, project)
