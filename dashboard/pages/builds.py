"""Variant builds (clips per split and label) and training runs (metric curves, confusion matrices)."""

import streamlit as st

from dashboard import cached, charts
from dashboard.data import DashboardConfig

config = DashboardConfig.from_env()
st.title("Variant builds and training runs")

st.subheader("Variant builds")
builds = cached.variant_builds(config.exports_dir)
if builds.empty:
    st.info(f"No export under {config.exports_dir}: build one with `curate build-variants`.")
else:
    totals = builds.groupby("variant")["clips"].sum()
    cols = st.columns(max(len(totals), 1))
    for col, (variant, n) in zip(cols, totals.items(), strict=False):
        col.metric(variant, int(n), help=f"built {builds.loc[builds['variant'] == variant, 'built_at'].iloc[0]}")
    st.altair_chart(charts.split_bars(builds), width="stretch")

st.subheader("Training runs")
metrics = cached.run_metrics(config.runs_dir)
evaluations = cached.run_evaluations(config.runs_dir)
if metrics.empty and not evaluations:
    st.info(f"No training run under {config.runs_dir}: train one with `curate train-baseline`.")
    st.stop()
if not metrics.empty:
    available = sorted(metrics["metric"].unique())
    default = [m for m in ("train_loss", "val_loss", "train_top1", "val_top1", "val_uar", "val_macro_f1") if m in available] or available[:3]
    chosen = st.multiselect("Metrics", available, default=default, key="run_metrics")
    if chosen:
        st.altair_chart(charts.metric_curves(metrics, chosen))
for evaluation in evaluations:
    scores = evaluation["metrics"]
    st.markdown(f"**{evaluation['run']}** — {evaluation['split']} split")
    cols = st.columns(4)
    for col, key in zip(cols, ("top1", "uar", "macro_f1", "weighted_f1"), strict=True):
        if key in scores:
            col.metric(key, f"{scores[key]:.3f}")
    if evaluation["confusion"] is not None:
        st.altair_chart(charts.confusion_heatmap(evaluation["confusion"], title="row-normalised confusion"),
                        width="stretch")
    elif evaluation["confusion_png"]:
        st.image(evaluation["confusion_png"])
