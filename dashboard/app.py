"""The curator dashboard: ``curate dashboard`` (or ``streamlit run dashboard/app.py``).

This file only wires the pages, behind the annotation app's login (:mod:`dashboard.auth`: curators
and admins, checked with the app on every run); each page reads through :mod:`dashboard.cached`.
"""

from pathlib import Path

import streamlit as st

from dashboard.auth import SESSION_COOKIE, DashboardLoginError, login_url, viewer_for

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="eMotions curator dashboard", layout="wide")
try:
    viewer = viewer_for(st.context.cookies.get(SESSION_COOKIE))
except DashboardLoginError as refused:
    st.title("eMotions curator dashboard")
    st.warning(str(refused))
    if refused.reason != "unreachable":
        st.markdown(f"[Log in to the annotation app]({login_url()}), then reload this page.")
    st.stop()
st.sidebar.caption(f"{viewer.username} · {viewer.role}")
st.navigation(
    [
        st.Page(PAGES / "progress.py", title="Progress", default=True),
        st.Page(PAGES / "agreement.py", title="Agreement"),
        st.Page(PAGES / "annotators.py", title="Annotators"),
        st.Page(PAGES / "attention.py", title="Clips needing attention"),
        st.Page(PAGES / "builds.py", title="Builds and runs"),
    ]
).run()
