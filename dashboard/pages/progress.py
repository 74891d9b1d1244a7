"""Progress: clips per status, stage and final label, and judgements over time."""

import streamlit as st

from dashboard import cached, charts
from dashboard.data import progress_over_time, progress_summary
from dashboard.ui import page_context, shown_errors

ctx = page_context()
st.title("Progress")
with shown_errors():
    progress = cached.progress(ctx.url, ctx.project)
    judgements = cached.judgements(ctx.url, ctx.project)
summary = progress_summary(progress)

cols = st.columns(4)
st.subheader("Judgements over time")
by = st.radio("Lines by", ["stage", "label"], horizontal=True, key="progress_by",
              help="Stage 0 is the qualification round.")
over_time = progress_over_time(judgements, by=by)
cols[0].metric("Clips", summary["n_clips"], help="Dataset clips (gold clips not counted).")
cols[1].metric("Resolved", summary["n_resolved"], f"{summary['share_resolved']:.0%} of the clips", delta_color="off",
               delta_arrow="off")
cols[2].metric("Open", summary["n_open"], help="Pending, in stage 1–2, or waiting for an expert.")
per_period = over_time.groupby("period")["judgements"].sum().tolist() if not over_time.empty else None
cols[3].metric("Judgements", summary["n_judgements"], chart_data=per_period, chart_type="bar",
               help="Live judgements, flags included; the bars: judgements per period.")
if over_time.empty:
    st.info("No judgements yet.")
else:
    st.altair_chart(charts.progress_lines(over_time, by), width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("Clips by status")
    st.altair_chart(charts.count_bars(summary["by_status"], "status"), width="stretch")
with right:
    st.subheader("Open clips by stage")
    if progress["open_by_stage"]:
        stages = {f"stage {k}": v for k, v in sorted(progress["open_by_stage"].items())}
        st.altair_chart(charts.count_bars(stages, "stage"), width="stretch")
    else:
        st.info("No clip open in stage 1 or 2.")

left, right = st.columns(2)
with left:
    st.subheader("Resolved clips by final label")
    if summary["n_resolved"]:
        st.altair_chart(charts.count_bars(progress["final_labels"], "label"), width="stretch")
    else:
        st.info("No clip resolved yet.")
with right:
    st.subheader("Resolved clips by deciding stage")
    if progress["resolved_by_stage"]:
        stages = {f"stage {k}": v for k, v in sorted(progress["resolved_by_stage"].items())}
        st.altair_chart(charts.count_bars(stages, "stage"), width="stretch")
    else:
        st.info("No clip resolved yet.")
