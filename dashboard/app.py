"""The curator dashboard: ``curate dashboard`` (or ``streamlit run dashboard/app.py``).

This file only wires the pages; each page reads through :mod:`dashboard.cached`.
"""

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="eMotions curator dashboard", layout="wide")
st.navigation(
    [
        st.Page(PAGES / "progress.py", title="Progress", default=True),
        st.Page(PAGES / "agreement.py", title="Agreement"),
        st.Page(PAGES / "annotators.py", title="Annotators"),
        st.Page(PAGES / "attention.py", title="Clips needing attention"),
        st.Page(PAGES / "builds.py", title="Builds and runs"),
    ]
).run()
