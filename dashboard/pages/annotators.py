"""Annotators: quality (gold accuracy, agreement), speed, workload, and group balance per clip."""

import streamlit as st

from dashboard import cached, charts
from dashboard.data import GROUP_ATTRIBUTES, group_balance
from dashboard.ui import page_context, shown_errors

ctx = page_context()
st.title("Annotators")
with shown_errors():
    annotators = cached.annotators(ctx.url, ctx.project)
    judgements = cached.judgements(ctx.url, ctx.project)
if annotators.empty:
    st.info("No annotators yet: add some with `curate user add NAME --role annotator`.")
    st.stop()

flagged = annotators[annotators["flags"].fillna("").astype(str) != ""]
cols = st.columns(4)
cols[0].metric("Annotators", len(annotators), help="Annotators and experts, with or without work yet.")
cols[1].metric("Flagged", len(flagged), help="Paused, below the project's quality floor (the app), or near-constant, "
                                              "near-uniform, low agreement, low gold accuracy, implausibly fast "
                                              "(curation.reliability).")
cols[2].metric("Paused", int(annotators["paused"].sum()))
median = annotators["median_time_s"].median()
cols[3].metric("Median time on task", "—" if median != median else f"{median:.1f} s")

st.subheader("Quality")
st.altair_chart(charts.quality_scatter(annotators), width="stretch")
st.caption("Each point an annotator, sized by workload; red: flagged. Annotators without gold answers or "
           "without clips shared with others are not plotted yet.")
if not flagged.empty:
    st.dataframe(flagged[["annotator", "role", "qualification", "n_judgements", "gold_accuracy", "agreement", "loo_agreement",
                          "reliability", "median_time_s", "flags"]],
                 hide_index=True, width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("Workload")
    st.altair_chart(charts.workload_bars(annotators, "n_judgements", "judgements"), width="stretch")
with right:
    st.subheader("Speed")
    st.altair_chart(charts.workload_bars(annotators, "median_time_s", "median time on task (s)"),
                    width="stretch")

st.subheader("Group balance per clip")
st.caption("For each clip, the share of its stage-1/2 annotators that come from the largest group: "
           "allocation aims at mixed groups, so most clips should sit well below 1.0.")
attributes = [a for a in GROUP_ATTRIBUTES if judgements[a].notna().any()]
if attributes:
    for tab, attribute in zip(st.tabs(attributes), attributes, strict=True):
        with tab:
            balance = group_balance(judgements, attribute)
            st.altair_chart(charts.balance_histogram(balance, attribute), width="stretch")
else:
    st.info("No annotator attributes recorded.")
