"""Clips needing attention: low agreement, flagged broken, and the expert queue."""

import streamlit as st

from dashboard import cached, charts
from dashboard.data import clip_agreement, clips_needing_attention
from dashboard.ui import page_context, shown_errors

ctx = page_context()
st.title("Clips needing attention")
with shown_errors():
    clips = cached.clips(ctx.url, ctx.project)
    judgements = cached.judgements(ctx.url, ctx.project)
    flags = cached.flags(ctx.url, ctx.project)
    queue = cached.expert_queue(ctx.url, ctx.project)
    names = [lab["name"] for lab in cached.labels(ctx.url, ctx.project)]

threshold = st.slider("Low agreement below (top label's share)", 0.0, 1.0, 0.6, 0.05, key="attention_threshold")
attention = clips_needing_attention(clips, judgements, flags, max_agreement=threshold, labels=names)
counts = attention["reason"].value_counts()
cols = st.columns(3)
cols[0].metric("Low agreement (open)", int(counts.get("low agreement", 0)))
cols[1].metric("Flagged broken", int(counts.get("flagged broken", 0)))
cols[2].metric("Expert queue", len(queue))

per_clip = clip_agreement(judgements, names)
if not per_clip.empty:
    st.subheader("Agreement per clip")
    st.altair_chart(charts.agreement_histogram(per_clip, threshold), width="stretch")

st.subheader("Clips")
if attention.empty:
    st.success("Nothing needs attention.")
else:
    reasons = st.multiselect("Reasons", sorted(attention["reason"].unique()), default=sorted(attention["reason"].unique()),
                             key="attention_reasons")
    st.dataframe(attention[attention["reason"].isin(reasons)], hide_index=True, width="stretch",
                 column_config={"top_share": st.column_config.ProgressColumn("top share", min_value=0.0, max_value=1.0,
                                                                              format="%.2f")})
if not queue.empty:
    st.subheader("Expert queue")
    st.dataframe(queue, hide_index=True, width="stretch")
