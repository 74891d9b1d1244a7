"""Agreement: Krippendorff's α overall, per label, per stage and per annotator group, with intervals."""

import pandas as pd
import streamlit as st

from curation.agreement import GROUP_COLUMNS
from dashboard import cached, charts
from dashboard.data import alpha_frame
from dashboard.ui import page_context, shown_errors

ctx = page_context()
st.title("Agreement")
with shown_errors():
    report = cached.agreement(ctx.url, ctx.project, ctx.config.n_boot)
if report is None:
    st.info("No judgements yet: agreement needs clips judged by at least two annotators.")
    st.stop()

alpha = report["alpha"]
summary = report["summary"]
cols = st.columns(4)
if alpha["alpha"] is None:
    cols[0].metric("Krippendorff's α", "—", help=alpha.get("reason") or "undefined")
else:
    interval = f"95% CI {alpha['low']:.2f}–{alpha['high']:.2f}" if alpha["low"] is not None else "no interval"
    cols[0].metric("Krippendorff's α", f"{alpha['alpha']:.3f}", interval, delta_color="off", delta_arrow="off")
cols[1].metric("Reading", alpha["reading"])
cols[2].metric("Clips compared", alpha["n_clips"])
fleiss = report["fleiss_kappa"]["value"]
cols[3].metric("Fleiss' κ", "—" if fleiss is None else f"{fleiss:.3f}")
st.caption(f"{summary['n_judgements']} judgements by {summary['n_annotators']} annotators; gold clips left out; "
           f"intervals: {summary['bootstrap']['n_boot']} bootstrap resamples of clips. "
           "Dashed lines: 0.667 (tentative) and 0.800 (reliable).")

st.subheader("Per label (one against the rest)")
st.altair_chart(charts.alpha_intervals(alpha_frame(report["alpha_by_label"], key="label"), "label"),
                width="stretch")

st.subheader("Per stage")
stages = alpha_frame({f"stage {k}": v for k, v in report["alpha_by_stage"].items()}, key="stage")
if stages["alpha"].notna().any():
    st.altair_chart(charts.alpha_intervals(stages, "stage"), width="stretch")
else:
    st.info("α is not defined in any stage yet.")

st.subheader("Per annotator group")
with shown_errors():
    judgements = cached.judgements(ctx.url, ctx.project)
attributes = [a for a in GROUP_COLUMNS if a in judgements.columns and judgements[a].notna().any()]
if attributes:
    attribute = st.selectbox("Annotator attribute", attributes, key="agreement_group",
                             help="Only judgements by annotators of the group count towards its α.")
    with shown_errors():
        frame = cached.alpha_by_group(ctx.url, ctx.project, attribute, ctx.config.n_boot)
    if frame["alpha"].notna().any():
        st.altair_chart(charts.alpha_intervals(frame, attribute), width="stretch")
    else:
        st.info(f"α is not defined within any {attribute} group yet.")
else:
    st.info("No annotator attributes recorded.")

st.subheader("Labels against the others' consensus")
confusion = report["consensus_confusion"]
matrix = pd.DataFrame(confusion["matrix"], index=confusion["labels"], columns=confusion["labels"], dtype=float)
shares = matrix.div(matrix.sum(axis=1).where(lambda s: s > 0), axis=0).fillna(0.0)
st.altair_chart(charts.confusion_heatmap(shares, y_title="others' consensus", x_title="annotator's label"),
                width="stretch")
st.caption("Rows: the consensus of the other annotators; columns: the annotator's label (row shares).")
