"""The dashboard's plots: Altair charts built from the frames of :mod:`dashboard.data`.

Each function takes a frame and returns a chart; none reads data or touches Streamlit.

>>> import pandas as pd
>>> frame = pd.DataFrame({"label": ["Fear"], "alpha": [0.7], "low": [0.6], "high": [0.8]})
>>> isinstance(alpha_intervals(frame, "label"), alt.LayerChart)
True
"""

from __future__ import annotations

from collections.abc import Mapping

import altair as alt
import pandas as pd

__all__ = [
    "ALPHA_THRESHOLDS",
    "count_bars",
    "progress_lines",
    "alpha_intervals",
    "quality_scatter",
    "workload_bars",
    "balance_histogram",
    "agreement_histogram",
    "split_bars",
    "metric_curves",
    "confusion_heatmap",
]

# Krippendorff's reading: tentative conclusions from 0.667, reliable from 0.800.
ALPHA_THRESHOLDS: tuple[float, float] = (0.667, 0.800)


def count_bars(counts: Mapping[str, int], what: str, *, title: str = "") -> alt.Chart:
    """Horizontal bars of ``{name: count}``."""
    frame = pd.DataFrame({what: [str(k) for k in counts], "clips": list(counts.values())})
    return (
        alt.Chart(frame, title=title)
        .mark_bar()
        .encode(y=alt.Y(f"{what}:N", sort="-x", title=None), x=alt.X("clips:Q", title="clips"),
                tooltip=[what, "clips"])
    )


def progress_lines(over_time: pd.DataFrame, group_title: str) -> alt.Chart:
    """Running total of judgements over time, one line per group (stage or label)."""
    return (
        alt.Chart(over_time)
        .mark_line(point=len(over_time) < 60, interpolate="step-after")
        .encode(
            x=alt.X("period:T", title="time (UTC)"),
            y=alt.Y("cumulative:Q", title="judgements so far"),
            color=alt.Color("group:N", title=group_title),
            tooltip=[alt.Tooltip("period:T"), alt.Tooltip("group:N", title=group_title), "judgements", "cumulative"],
        )
    )


def _threshold_rules() -> alt.Chart:
    rules = pd.DataFrame({"alpha": list(ALPHA_THRESHOLDS), "reading": ["tentative", "reliable"]})
    return alt.Chart(rules).mark_rule(strokeDash=[4, 4], color="gray").encode(
        x="alpha:Q", tooltip=["reading", "alpha"])


def alpha_intervals(frame: pd.DataFrame, key: str, *, title: str = "") -> alt.LayerChart:
    """α per ``key`` as a point with its bootstrap interval, against Krippendorff's thresholds."""
    data = frame.dropna(subset=["alpha"]).astype({key: str})
    base = alt.Chart(data, title=title).encode(y=alt.Y(f"{key}:N", title=None, sort=None))
    # One scale for every α chart: from 0 (or the lowest bound below it) to 1, thresholds in view.
    lowest = float(pd.concat([data["low"], data["alpha"]]).min()) if len(data) else 0.0
    scale = alt.Scale(domain=[min(0.0, lowest), 1.0])
    bars = base.mark_rule(strokeWidth=3, opacity=0.6).encode(
        x=alt.X("low:Q", title="Krippendorff's α", scale=scale), x2="high:Q")
    points = base.mark_point(filled=True, size=80).encode(
        x="alpha:Q",
        color=alt.Color("reading:N", scale=alt.Scale(domain=["unreliable", "tentative", "reliable"],
                                                     range=["#d62728", "#ff7f0e", "#2ca02c"])),
        tooltip=[key, alt.Tooltip("alpha:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
                 alt.Tooltip("high:Q", format=".3f"), "n_clips", "n_judgements", "reading"],
    )
    return alt.layer(bars, points, _threshold_rules())


def quality_scatter(annotators: pd.DataFrame) -> alt.Chart:
    """Agreement with the others against gold accuracy, sized by workload, coloured by flags."""
    data = annotators.assign(flagged=annotators["flags"].fillna("").astype(str).ne(""),
                             gold_accuracy=annotators["gold_accuracy"].astype(float))
    return (
        alt.Chart(data)
        .mark_circle(opacity=0.8)
        .encode(
            x=alt.X("loo_agreement:Q", title="agreement with the others (leave-one-out)",
                    scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("gold_accuracy:Q", title="gold accuracy", scale=alt.Scale(domain=[0, 1])),
            size=alt.Size("n_judgements:Q", title="judgements"),
            color=alt.Color("flagged:N", title="flagged", scale=alt.Scale(domain=[False, True],
                                                                          range=["#1f77b4", "#d62728"])),
            tooltip=["annotator", "role", "n_judgements", alt.Tooltip("loo_agreement:Q", format=".2f"),
                     alt.Tooltip("gold_accuracy:Q", format=".2f"), alt.Tooltip("agreement:Q", format=".2f"),
                     alt.Tooltip("reliability:Q", format=".2f"), alt.Tooltip("median_time_s:Q", format=".1f"),
                     "flags"],
        )
    )


def workload_bars(annotators: pd.DataFrame, value: str, title: str) -> alt.Chart:
    """One bar per annotator (``value``: ``n_judgements``, ``median_time_s``, ``judgements_per_hour``)."""
    return (
        alt.Chart(annotators)
        .mark_bar()
        .encode(y=alt.Y("annotator:N", sort="-x", title=None), x=alt.X(f"{value}:Q", title=title),
                tooltip=["annotator", alt.Tooltip(f"{value}:Q", format=".1f")])
    )


def balance_histogram(balance: pd.DataFrame, attribute: str) -> alt.Chart:
    """How many clips have which share of annotators from their largest ``attribute`` group."""
    return (
        alt.Chart(balance, title=attribute)
        .mark_bar()
        .encode(
            x=alt.X("majority_share:Q", bin=alt.Bin(extent=[0, 1], step=0.1), title="largest group's share of a clip's annotators"),
            y=alt.Y("count():Q", title="clips"),
            tooltip=[alt.Tooltip("count():Q", title="clips")],
        )
    )


def agreement_histogram(per_clip: pd.DataFrame, threshold: float) -> alt.LayerChart:
    """Clips by the share of their top label, with the attention threshold marked."""
    bars = alt.Chart(per_clip).mark_bar().encode(
        x=alt.X("top_share:Q", bin=alt.Bin(extent=[0, 1], step=0.1), title="top label's share of a clip's judgements"),
        y=alt.Y("count():Q", title="clips"),
    )
    rule = alt.Chart(pd.DataFrame({"top_share": [threshold]})).mark_rule(color="#d62728", strokeDash=[4, 4]).encode(
        x="top_share:Q")
    return alt.layer(bars, rule)


def split_bars(builds: pd.DataFrame) -> alt.Chart:
    """Clips per split, stacked by label, one row of bars per variant."""
    return (
        alt.Chart(builds)
        .mark_bar()
        .encode(
            x=alt.X("clips:Q", title="clips", stack="zero"),
            y=alt.Y("split:N", sort=["train", "validation", "test"], title=None),
            color=alt.Color("label:N"),
            row=alt.Row("variant:N", title=None),
            tooltip=["variant", "split", "label", "clips"],
        )
    )


def metric_curves(metrics: pd.DataFrame, chosen: list[str]) -> alt.Chart:
    """Chosen metrics per epoch, a line per run, a panel per metric."""
    data = metrics[metrics["metric"].isin(chosen)]
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1, format="d")), y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
                color=alt.Color("run:N"), tooltip=["run", "epoch", "metric", alt.Tooltip("value:Q", format=".4f")])
        .properties(width=260, height=180)
        .facet(facet=alt.Facet("metric:N", title=None), columns=3)
        .resolve_scale(y="independent")
    )


def confusion_heatmap(
    confusion: pd.DataFrame, *, title: str = "", y_title: str = "true", x_title: str = "predicted"
) -> alt.LayerChart:
    """A row-normalised confusion matrix (rows × columns) as a heatmap with the values written in."""
    long = confusion.rename_axis(index="true", columns="predicted").stack().rename("share").reset_index()
    order = [str(c) for c in confusion.columns]
    base = alt.Chart(long, title=title).encode(
        x=alt.X("predicted:N", sort=order, title=x_title), y=alt.Y("true:N", sort=order, title=y_title))
    cells = base.mark_rect().encode(color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1])),
                                    tooltip=["true", "predicted", alt.Tooltip("share:Q", format=".2f")])
    text = base.mark_text(baseline="middle").encode(
        text=alt.Text("share:Q", format=".2f"),
        color=alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("black")))
    return alt.layer(cells, text)
