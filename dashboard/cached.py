"""The thin Streamlit layer over :mod:`dashboard.data`: the same functions, cached.

Database reads live ``TTL_S`` seconds (a campaign moves slowly; a curator's reload should not hit
the database on every widget change); file reads are keyed by folder and the newest modification
time so a new export or epoch shows up at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import data

__all__ = [
    "TTL_S",
    "project_names",
    "judgements",
    "flags",
    "clips",
    "labels",
    "progress",
    "expert_queue",
    "agreement",
    "alpha_by_group",
    "annotators",
    "variant_builds",
    "run_metrics",
    "run_evaluations",
]

TTL_S = 60


@st.cache_data(ttl=TTL_S, show_spinner=False)
def project_names(database_url: str) -> list[str]:
    return data.list_project_names(database_url)


@st.cache_data(ttl=TTL_S, show_spinner="Reading judgements…")
def judgements(database_url: str, project: str | None) -> pd.DataFrame:
    return data.load_judgements(database_url, project)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def flags(database_url: str, project: str | None) -> pd.DataFrame:
    return data.load_flags(database_url, project)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def clips(database_url: str, project: str | None) -> pd.DataFrame:
    return data.load_clips(database_url, project)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def labels(database_url: str, project: str | None) -> list[dict[str, Any]]:
    return data.load_labels(database_url, project)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def progress(database_url: str, project: str | None) -> dict[str, Any]:
    return data.load_progress(database_url, project)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def expert_queue(database_url: str, project: str | None) -> pd.DataFrame:
    return data.load_expert_queue(database_url, project)


@st.cache_data(ttl=5 * TTL_S, show_spinner="Computing agreement and bootstrap intervals…")
def agreement(database_url: str, project: str | None, n_boot: int) -> dict[str, Any] | None:
    return data.agreement_overview(judgements(database_url, project), labels(database_url, project), n_boot=n_boot)


@st.cache_data(ttl=5 * TTL_S, show_spinner="Computing agreement within each group…")
def alpha_by_group(database_url: str, project: str | None, attribute: str, n_boot: int) -> pd.DataFrame:
    return data.alpha_by_group(judgements(database_url, project), labels(database_url, project), attribute,
                               n_boot=n_boot)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def annotators(database_url: str, project: str | None) -> pd.DataFrame:
    quality = data.load_annotator_quality(database_url, project)
    return data.annotator_overview(quality, judgements(database_url, project))


def _stamp(folder: Path | None) -> float:
    # The newest modification time under a folder (two levels: RUN/ and RUN/test/), cheap to compute.
    if folder is None or not folder.is_dir():
        return 0.0
    times = [folder.stat().st_mtime]
    for child in folder.iterdir():
        times.append(child.stat().st_mtime)
        if child.is_dir():
            times.extend(p.stat().st_mtime for p in child.iterdir())
    return max(times)


@st.cache_data(show_spinner=False)
def _variant_builds(folder: str | None, stamp: float) -> pd.DataFrame:
    return data.variant_builds(folder)


def variant_builds(folder: Path | None) -> pd.DataFrame:
    return _variant_builds(str(folder) if folder else None, _stamp(folder))


@st.cache_data(show_spinner=False)
def _run_metrics(folder: str | None, stamp: float) -> pd.DataFrame:
    return data.run_metrics(folder)


def run_metrics(folder: Path | None) -> pd.DataFrame:
    return _run_metrics(str(folder) if folder else None, _stamp(folder))


@st.cache_data(show_spinner=False)
def _run_evaluations(folder: str | None, stamp: float) -> list[dict[str, Any]]:
    return data.run_evaluations(folder)


def run_evaluations(folder: Path | None) -> list[dict[str, Any]]:
    return _run_evaluations(str(folder) if folder else None, _stamp(folder))
