"""Figure builders for the app: arrays in, Plotly figures out (no I/O, no method math); the
Review page's curve also as a light SVG (:func:`signed_entropy_svg`).

Every text that comes from the user's data (class names, file names) is HTML-escaped
before it reaches Plotly, which renders a subset of HTML in titles, legends and hovers.
Colours mean one thing each across every figure and page: red = flagged (likely mislabeled),
blue = kept; the groups of :mod:`sei_core.dynamics` add green (easy for the model) and orange
(hard for the model) beside the flagged red; what a truth file says is drawn as hatching
(truly mislabeled), never as a colour; everything else (counts, training runs) is grey.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .dynamics import trajectory_picks

KEPT_COLOR = "#4C78A8"
FLAGGED_COLOR = "#E45756"
GROUP_COLORS = ("#54A24B", "#F58518", FLAGGED_COLOR)  # easy for the model, hard for the model, flagged
THRESHOLD_COLOR = "#333333"
AGREEMENT_AXIS = "agrees (+) / disagrees (−)"  # the signed entropy, in the words of the page
NEUTRAL_COLOR = "#8C8C8C"  # counts and anything without a flagged/kept meaning
RUN_COLORS = ("#444444", "#9A9A9A", "#6B6B6B", "#BDBDBD")  # training runs: greys, told apart by dash
RUN_DASHES = ("solid", "dash", "dot", "dashdot")
TRUTH_PATTERN = "/"  # hatching: truly mislabeled according to the truth file
THRESHOLD_NAME = "threshold (flagged below)"
FONT = dict(family="Inter, 'Source Sans Pro', Arial, sans-serif", size=13)


def text(s: object) -> str:
    """A user-provided string made safe for Plotly's HTML-capable text fields."""
    return html.escape(str(s), quote=True)


def _layout(fig: go.Figure, height: int = 360, top: int = 50, right: int = 20, **kw) -> go.Figure:
    """Common look; the legend sits in the top margin (``top`` pixels), above any panel titles."""
    fig.update_layout(height=height, margin=dict(l=55, r=right, t=top, b=45), font=FONT,
                      legend=dict(orientation="h", yref="container", y=0.995, yanchor="top", xanchor="left",
                                  x=0, font=dict(size=12)),
                      plot_bgcolor="white", **kw)
    fig.update_xaxes(showgrid=True, gridcolor="#eeeeee", zeroline=False, linecolor="#bbbbbb")
    fig.update_yaxes(showgrid=True, gridcolor="#eeeeee", zeroline=False, linecolor="#bbbbbb")
    return fig


_AXIS = dict(showgrid=True, gridcolor="#eeeeee", zeroline=False, linecolor="#bbbbbb")


def _look(height: int, top: int, right: int = 20) -> dict:
    """:func:`_layout`'s look as a layout dict, for figures built in one constructor call
    (Plotly's ``update_*`` calls cost tens of milliseconds each; a per-decision figure avoids them)."""
    return dict(height=height, margin=dict(l=55, r=right, t=top, b=45), font=FONT, plot_bgcolor="white",
                legend=dict(orientation="h", yref="container", y=0.995, yanchor="top", xanchor="left", x=0,
                            font=dict(size=12)))


def _epoch_axis(fig: go.Figure, n_epochs: int) -> None:
    """Whole-number epoch ticks (no 1.5 for a two-epoch run)."""
    fig.update_xaxes(title_text="epoch", tick0=1, dtick=max(1, int(np.ceil(n_epochs / 8))) if n_epochs <= 16 else None)


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _empty(message: str, height: int = 300) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=text(message), showarrow=False, font=dict(size=14, color="#777777"),
                       xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height)


#: Height in pixels of one row of per-class panels, whatever the number of classes.
PANEL_HEIGHT = 210
#: Panels per row of the per-class grid.
PANEL_COLUMNS = 3


def binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the bins ``edges`` (the server bins; the browser gets counts)."""
    return np.histogram(values, bins=edges)[0]


def _bars(counts: np.ndarray, edges: np.ndarray, name: str, color: str, x_name: str, *, pattern: str = "",
          showlegend: bool = True, opacity: float | None = None) -> go.Bar:
    """A histogram already binned on the server as a bar trace: one bar per non-empty bin."""
    keep = counts > 0
    lo, hi = edges[:-1][keep], edges[1:][keep]
    return go.Bar(x=(lo + hi) / 2, y=counts[keep], width=(hi - lo), name=name, legendgroup=name,
                  showlegend=showlegend, opacity=opacity, customdata=np.c_[lo, hi],
                  marker=dict(color=color, pattern=dict(shape=pattern, fgcolor="#1f1f1f", fillmode="overlay",
                                                        solidity=0.3), line=dict(width=0.5, color="white")),
                  hovertemplate=f"{text(name)}<br>{text(x_name)} %{{customdata[0]:.3g}} to %{{customdata[1]:.3g}}"
                                "<br>%{y} images<extra></extra>")


def _edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    ok = values[np.isfinite(values)]
    lo, hi = (float(ok.min()), float(ok.max())) if ok.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n_bins + 1)


def score_histograms(
    score: np.ndarray,
    flagged: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    threshold: np.ndarray,
    is_noisy: np.ndarray | None = None,
    show_classes: Sequence[int] | None = None,
    ids: Sequence[str] | None = None,
    score_name: str = "SEI",
    n_bins: int = 30,
) -> go.Figure:
    """Score histogram per class: kept vs flagged stacked, truly mislabeled hatched, the threshold.

    Binned here (``numpy.histogram``), so the figure holds at most ``n_bins`` bars per part
    and panel whatever the number of samples. Any number of classes fits: panels are laid out
    :data:`PANEL_COLUMNS` per row at a fixed :data:`PANEL_HEIGHT` each (the figure grows
    taller, the page scrolls). Each panel draws one line, the threshold most of its images
    are judged by (:data:`THRESHOLD_NAME` in the legend, once): with two complementary runs
    the few images that were one run's references are judged by a slightly different one.

    Parameters
    ----------
    score, flagged, labels, threshold : (N,) score, flag, given label index, per-sample threshold.
    classes : class names.
    is_noisy : (N,) ground truth if known (a truth file), else None.
    show_classes : class indices to draw (default all), one panel each.
    score_name : names the score on the axis and in hovers.
    """
    score = np.asarray(score, dtype=np.float64)
    ok = np.isfinite(score)
    show = list(range(len(classes))) if show_classes is None else list(show_classes)
    if not ok.any() or not show:
        return _empty("No scored samples yet")
    cols = min(len(show), PANEL_COLUMNS if len(show) > 4 else 2)
    rows = int(np.ceil(len(show) / cols))
    gap = 70  # pixels between rows, room for the panel titles
    height = rows * (PANEL_HEIGHT + gap) + 90
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[text(classes[c]) for c in show],
                        horizontal_spacing=0.06 if cols > 2 else 0.08,
                        vertical_spacing=gap / height if rows > 1 else 0.1)
    edges = _edges(score, n_bins)
    labels = np.asarray(labels)
    flagged = np.asarray(flagged, dtype=bool)
    threshold = np.asarray(threshold, dtype=np.float64)
    noisy = None if is_noisy is None else np.asarray(is_noisy, dtype=bool)
    parts = [("kept", KEPT_COLOR, False), ("flagged", FLAGGED_COLOR, True)]

    # every panel's counts in one pass: bin of each sample (np.histogram's bins: the last one
    # closed), then one bincount over (class, flagged, truly mislabeled, bin)
    k_all = len(classes)
    use = ok & (labels >= 0) & (labels < k_all)
    b = np.clip(np.searchsorted(edges, score[use], side="right") - 1, 0, n_bins - 1)
    key = ((labels[use] * 2 + flagged[use]) * 2 + (0 if noisy is None else noisy[use])) * n_bins + b
    counts_all = np.bincount(key, minlength=k_all * 4 * n_bins).reshape(k_all, 2, 2, n_bins)
    # the threshold most images of each shown class are judged by: the median, which is that
    # value whenever more than half share one (with two runs all but the references do)
    has_t = use & np.isfinite(threshold)
    main_t = np.full(k_all, np.nan)
    for c in show:
        t_c = threshold[has_t & (labels == c)]
        if t_c.size:
            main_t[c] = float(np.median(t_c))
    in_legend: dict[str, tuple[str, str]] = {}  # every part's name, listed once even if empty everywhere
    shapes = []
    for n, c in enumerate(show):
        r, col = n // cols + 1, n % cols + 1
        axis = "" if n == 0 else str(n + 1)  # make_subplots numbers the axes row by row
        for name, color, flag_value in parts:
            f = int(flag_value)
            subsets = [(counts_all[c, f].sum(axis=0), name, "")] if noisy is None else [
                (counts_all[c, f, 0], f"{name} · label correct", ""),
                (counts_all[c, f, 1], f"{name} · truly mislabeled", TRUTH_PATTERN)]
            for counts, label, pattern in subsets:
                first = label not in in_legend and counts.any()
                in_legend.setdefault(label, (color, pattern))
                if first:
                    in_legend[label] = ("", "")  # listed by this trace
                fig.add_trace(_bars(counts, edges, label, color, score_name, pattern=pattern, showlegend=bool(first)),
                              row=r, col=col)
        if np.isfinite(main_t[c]):
            t = float(main_t[c])
            shapes.append(dict(type="line", xref=f"x{axis}", yref=f"y{axis} domain", x0=t, x1=t,
                               y0=0, y1=1, line=dict(color=THRESHOLD_COLOR, dash="dash", width=1.5)))
    if shapes:  # all at once (one add_vline per panel costs tens of milliseconds each)
        fig.update_layout(shapes=shapes)
    for label, (color, pattern) in in_legend.items():
        if color:  # no image in any panel: a legend entry only, so every part is explained
            fig.add_trace(go.Bar(x=[None], y=[None], name=label, legendgroup=label, showlegend=True,
                                 marker=dict(color=color, pattern=dict(shape=pattern, fgcolor="#1f1f1f",
                                                                       fillmode="overlay", solidity=0.3))))
    if shapes:  # one entry for the one kind of line drawn
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=THRESHOLD_NAME,
                                 line=dict(color=THRESHOLD_COLOR, dash="dash")))
    fig.update_layout(barmode="stack", bargap=0.05)
    fig.update_xaxes(range=[edges[0], edges[-1]])
    fig.update_xaxes(title_text=f"{text(score_name)} (lower = more likely mislabeled)", row=rows)
    fig.update_yaxes(title_text="images", col=1)
    fig.update_annotations(font=dict(size=13, color="#333333"))
    return _layout(fig, height=height, top=85)


def signed_entropy_curve(
    signed_entropy: np.ndarray,
    cumulative: np.ndarray | None = None,
    title: str = "",
    group_means: Mapping[str, np.ndarray] | None = None,
) -> go.Figure:
    """One sample's signed entropy per epoch (and its running integral on a second axis).

    ``group_means`` maps a group name to its mean curve, drawn faintly for comparison.
    Built in one go (no ``make_subplots``): the Review page draws it for every decision.
    """
    se = np.asarray(signed_entropy, dtype=np.float64)
    epochs = np.arange(1, len(se) + 1)
    traces = []
    if group_means:
        for (name, curve), color in zip(group_means.items(), GROUP_COLORS):
            if curve is None or not np.isfinite(curve).any():
                continue
            traces.append(go.Scatter(x=epochs, y=curve, name=f"mean of {text(name)}", mode="lines",
                                     line=dict(color=_rgba(color, 0.55), width=1.5, dash="dot"),
                                     hovertemplate="epoch %{x}<br>group mean %{y:.3g}<extra></extra>"))
    traces.append(go.Scatter(x=epochs, y=se, name="this image", mode="lines+markers",
                             line=dict(color="#222222", width=2.5), marker=dict(size=5),
                             hovertemplate="epoch %{x}<br>signed entropy %{y:.3g}<extra></extra>"))
    layout = dict(
        _look(360 if title else 330, top=95 if title else 70, right=60 if cumulative is not None else 20),
        shapes=[dict(type="line", xref="paper", x0=0, x1=1, y0=0, y1=0, yref="y",
                     line=dict(color="#999999", width=1))],
        xaxis=dict(_AXIS, title=dict(text="epoch"), tick0=1,
                   dtick=max(1, int(np.ceil(len(se) / 8))) if len(se) <= 16 else None),
        yaxis=dict(_AXIS, title=dict(text=AGREEMENT_AXIS)),
    )
    if cumulative is not None:
        traces.append(go.Scatter(x=epochs, y=np.asarray(cumulative), name="running SEI", mode="lines", yaxis="y2",
                                 line=dict(color="#8E6BB5", width=1.5),
                                 hovertemplate="epoch %{x}<br>running SEI %{y:.3g}<extra></extra>"))
        layout["yaxis2"] = dict(title=dict(text="running SEI"), overlaying="y", side="right", showgrid=False,
                                zeroline=False, tickformat=".0f")
    if title:
        layout["title"] = dict(text=text(title), font=dict(size=13), y=0.80, yref="container")
    return go.Figure(data=traces, layout=layout)


def group_curves(mean: np.ndarray, std: np.ndarray, count: np.ndarray, names: Sequence[str],
                 y_title: str, title: str = "", zero_line: bool = True) -> go.Figure:
    """Mean curve of each group with a ±1 standard-deviation band; empty groups are skipped."""
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    if mean.size == 0 or not np.isfinite(mean).any():
        return _empty("No epochs recorded yet")
    epochs = np.arange(1, mean.shape[1] + 1)
    fig = go.Figure()
    for g, name in enumerate(names):
        if count[g] == 0:
            continue
        color = GROUP_COLORS[g % len(GROUP_COLORS)]
        label = f"{text(name)} ({int(count[g])})"
        fig.add_trace(go.Scatter(x=np.r_[epochs, epochs[::-1]], y=np.r_[mean[g] + std[g], (mean[g] - std[g])[::-1]],
                                 mode="lines", fill="toself", fillcolor=_rgba(color, 0.15), line=dict(width=0),
                                 hoverinfo="skip", showlegend=False, legendgroup=label))
        fig.add_trace(go.Scatter(x=epochs, y=mean[g], name=label, legendgroup=label, mode="lines",
                                 line=dict(color=color, width=2.5),
                                 hovertemplate=f"{label}<br>epoch %{{x}}<br>mean %{{y:.3g}}<extra></extra>"))
    if zero_line:
        fig.add_hline(y=0, line=dict(color="#999999", width=1))
    _epoch_axis(fig, mean.shape[1])
    fig.update_yaxes(title_text=y_title)
    if title:
        fig.update_layout(title=dict(text=text(title), font=dict(size=13), y=0.86, yref="container"))
    return _layout(fig, 340, top=80 if title else 50)


def entropy_trajectories(entropy: np.ndarray, flagged: np.ndarray, scored: np.ndarray | None = None,
                         max_lines: int = 25, seed: int = 0) -> go.Figure:
    """Entropy per epoch of kept vs flagged samples: a few individual trajectories and the means.

    ``entropy`` is ``(T, N)``; only ``max_lines`` samples per side and the two mean curves
    reach the figure (means via :func:`sei_core.dynamics.group_mean_curves`, no float64 copy).
    """
    from .dynamics import group_mean_curves

    h = np.asarray(entropy)
    if h.size == 0:
        return _empty("No epochs recorded yet")
    flagged = np.asarray(flagged, dtype=bool)
    scored = np.ones_like(flagged) if scored is None else np.asarray(scored, dtype=bool)
    codes = np.where(scored, flagged.astype(np.int8), -1)
    mean, std, count = group_mean_curves(h, codes, 2)
    lines = [np.asarray(h[:, idx], dtype=np.float64).T for idx in trajectory_picks(codes, max_lines, seed)]
    return entropy_summary(mean, std, count, lines)


def entropy_summary(mean: np.ndarray, std: np.ndarray, count: np.ndarray, lines: Sequence[np.ndarray]) -> go.Figure:
    """:func:`entropy_trajectories`' figure from its summary: ``(2, T)`` mean and standard
    deviation of kept (0) and flagged (1) samples, their ``(2,)`` counts, and per side the
    ``(L, T)`` entropy of the few samples drawn as lines (:func:`sei_core.dynamics.trajectory_picks`)."""
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    if mean.size == 0:
        return _empty("No epochs recorded yet")
    epochs = np.arange(1, mean.shape[1] + 1)
    fig = go.Figure()
    for g, (name, color) in enumerate((("kept", KEPT_COLOR), ("flagged", FLAGGED_COLOR))):
        if not count[g]:
            continue
        for y in np.asarray(lines[g], dtype=np.float64):
            fig.add_trace(go.Scatter(x=epochs, y=y, mode="lines",
                                     line=dict(color=_rgba(color, 0.18), width=1),
                                     hoverinfo="skip", showlegend=False, legendgroup=name))
        m, s = mean[g], std[g]
        fig.add_trace(go.Scatter(x=np.r_[epochs, epochs[::-1]], y=np.r_[m + s, (m - s)[::-1]], mode="lines",
                                 fill="toself", fillcolor=_rgba(color, 0.12), line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, legendgroup=name))
        fig.add_trace(go.Scatter(x=epochs, y=m, mode="lines", name=f"{name} ({int(count[g])}), mean ± sd",
                                 legendgroup=name, line=dict(color=color, width=3),
                                 hovertemplate=f"{name}<br>epoch %{{x}}<br>mean entropy %{{y:.3g}}<extra></extra>"))
    _epoch_axis(fig, mean.shape[1])
    fig.update_yaxes(title_text="uncertainty (entropy)", rangemode="tozero")
    return _layout(fig, 340)


def alignment_plot(align: np.ndarray, names: Sequence[str], count: np.ndarray) -> go.Figure:
    """Per epoch, the fraction of each group whose prediction equals the given label."""
    align = np.asarray(align, dtype=np.float64)
    if align.size == 0 or not np.isfinite(align).any():
        return _empty("No epochs recorded yet")
    epochs = np.arange(1, align.shape[1] + 1)
    fig = go.Figure()
    for g, name in enumerate(names):
        if count[g] == 0:
            continue
        label = f"{text(name)} ({int(count[g])})"
        fig.add_trace(go.Scatter(x=epochs, y=100 * align[g], name=label, mode="lines+markers",
                                 line=dict(color=GROUP_COLORS[g % 3], width=2.5), marker=dict(size=4),
                                 hovertemplate=f"{label}<br>epoch %{{x}}<br>%{{y:.0f}}% predicted as labelled"
                                               "<extra></extra>"))
    _epoch_axis(fig, align.shape[1])
    fig.update_yaxes(title_text="agreed with the label (%)", range=[-3, 103])
    return _layout(fig, 340)


def integral_comparison(signed: np.ndarray, unsigned: np.ndarray, flagged: np.ndarray,
                        is_noisy: np.ndarray | None = None, thresholds: Sequence[float] = (),
                        auroc: Mapping[str, float] | None = None) -> go.Figure:
    """Side-by-side histograms of the signed (SEI) and unsigned entropy integrals.

    Colour follows the ground truth when known (``is_noisy``), otherwise the flag decision,
    so the panels show which score separates the two populations.
    """
    signed, unsigned = np.asarray(signed, dtype=np.float64), np.asarray(unsigned, dtype=np.float64)
    ok = np.isfinite(signed) & np.isfinite(unsigned)
    if not ok.any():
        return _empty("No scored samples yet")
    f = np.asarray(flagged, dtype=bool)
    if is_noisy is not None:
        bad = np.asarray(is_noisy, dtype=bool)
        split = [(f"{name} · {truth}", ok & (f == flag) & (bad == noisy), color, TRUTH_PATTERN if noisy else "")
                 for name, flag, color in (("kept", False, KEPT_COLOR), ("flagged", True, FLAGGED_COLOR))
                 for truth, noisy in (("label correct", False), ("truly mislabeled", True))]
    else:
        split = [("kept", ok & ~f, KEPT_COLOR, ""), ("flagged", ok & f, FLAGGED_COLOR, "")]
    titles = ["agreeing and sure: SEI", "only sure: −Σ entropy"]
    if auroc:
        titles = [f"{titles[0]} · AUROC {auroc.get('signed', float('nan')):.2f}",
                  f"{titles[1]} · AUROC {auroc.get('unsigned', float('nan')):.2f}"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.08)
    for col, values in ((1, signed), (2, unsigned)):
        edges = _edges(values[ok], 40)
        for name, mask, color, pattern in split:
            fig.add_trace(_bars(binned(values[mask], edges), edges, name, color, "score", pattern=pattern,
                                showlegend=col == 1, opacity=0.65), row=1, col=col)
    for t in thresholds:
        fig.add_vline(x=float(t), line=dict(color=THRESHOLD_COLOR, dash="dash", width=1.5), row=1, col=1)
    if len(thresholds):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="SEI threshold",
                                 line=dict(color=THRESHOLD_COLOR, dash="dash")))
    fig.update_layout(barmode="stack")
    fig.update_annotations(font=dict(size=13, color="#333333"))
    fig.update_xaxes(title_text="score (lower = more suspicious)")
    fig.update_yaxes(title_text="images", col=1)
    return _layout(fig, 400 if is_noisy is not None else 370, top=115 if is_noisy is not None else 80)


def training_curves(history: Sequence[Mapping], epochs: int | None = None) -> go.Figure:
    """Loss and accuracy per epoch of each complementary run, from a run's status history."""
    if not history:
        return _empty("Waiting for the first epoch to finish…", 280)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["training loss", "training accuracy (%)"],
                        horizontal_spacing=0.1)
    runs = sorted({int(h["run"]) for h in history})
    for k, r in enumerate(runs):
        hs = sorted((h for h in history if int(h["run"]) == r), key=lambda h: h["epoch"])
        x = [h["epoch"] for h in hs]
        line = dict(color=RUN_COLORS[k % len(RUN_COLORS)], dash=RUN_DASHES[k % len(RUN_DASHES)])
        fig.add_trace(go.Scatter(x=x, y=[h["loss"] for h in hs], name=f"run {r}", legendgroup=f"run {r}",
                                 mode="lines+markers", line=line, marker=dict(size=4)), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[100 * h["accuracy"] for h in hs], name=f"run {r}", legendgroup=f"run {r}",
                                 showlegend=False, mode="lines+markers", line=line, marker=dict(size=4)),
                      row=1, col=2)
    if epochs:
        fig.update_xaxes(range=[0.5, epochs + 0.5])
    fig.update_annotations(font=dict(size=13, color="#333333"))
    _epoch_axis(fig, epochs or max(int(h["epoch"]) for h in history))
    return _layout(fig, 320, top=80)


def class_counts(counts: Mapping[str, int]) -> go.Figure:
    """Horizontal bar chart of images per class."""
    names = list(counts)
    fig = go.Figure(go.Bar(x=[counts[c] for c in names], y=[text(c) for c in names], orientation="h",
                           marker=dict(color=NEUTRAL_COLOR), text=[counts[c] for c in names],
                           textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}: %{x} images<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    # room right of the longest bar for its count (the count was cut to "11" of 111)
    fig.update_xaxes(title_text="images", range=[0, 1.15 * max([*counts.values(), 1])])
    return _layout(fig, max(200, 40 * len(names) + 90))


def calibration_curve(points: Mapping, n: int, title: str = "Share of wrong labels by rank") -> go.Figure:
    """The share of wrong labels against rank in the review order, from the decisions
    (:func:`sei_core.review_count.calibration_points`): the binned share as a line, each
    decision as a point at 1 (wrong) or 0 (correct), audit picks marked apart."""
    if not len(points["rank"]):
        return _empty("No decisions yet.")
    fig = go.Figure()
    ok = np.isfinite(points["share"])
    fig.add_trace(go.Scatter(x=points["mid"][ok], y=points["share"][ok], mode="lines+markers", name="share wrong",
                             line=dict(color=THRESHOLD_COLOR)))
    for audit, name, sym in ((False, "decided in order", "line-ns-open"), (True, "picked at random", "diamond")):
        m = points["audit"] == audit
        if m.any():
            y = points["wrong"][m].astype(float)
            fig.add_trace(go.Scatter(x=points["rank"][m], y=y, mode="markers", name=name,
                                     marker=dict(symbol=sym, size=7, opacity=0.5,
                                                 color=np.where(y > 0, FLAGGED_COLOR, KEPT_COLOR))))
    fig.update_xaxes(title="rank in the review order (0 = most suspicious)", range=[0, max(n, 1)])
    fig.update_yaxes(title="share wrong (points: 1 wrong, 0 correct)", range=[-0.05, 1.05])
    return _layout(fig, height=300, title=dict(text=text(title), font=dict(size=14)))


# -- a light figure for the Review page (redrawn at every decision) --------------------------------

def nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """About ``n`` round tick values (1, 2 or 5 times a power of ten apart) covering ``[lo, hi]``."""
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.array([lo if np.isfinite(lo) else 0.0])
    raw = (hi - lo) / max(n - 1, 1)
    step = 10 ** np.floor(np.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    return np.arange(np.ceil(lo / step - 1e-9), np.floor(hi / step + 1e-9) + 1) * step + 0.0


def signed_entropy_svg(signed_entropy: np.ndarray, cumulative: np.ndarray | None = None,
                       group_means: Mapping[str, np.ndarray] | None = None, width: int = 640,
                       height: int = 330) -> str:
    """:func:`signed_entropy_curve` as a self-contained SVG (the same lines, colours, axes and
    legend; each epoch's value in a hover title). Drawing it costs the browser next to nothing,
    where a Plotly chart costs a script run of its own at every decision on the Review page."""
    se = np.asarray(signed_entropy, dtype=np.float64)
    n = len(se)
    left, right, top, bottom = 55, (60 if cumulative is not None else 20), 52, 45
    pw, ph = width - left - right, height - top - bottom
    curves = [(f"mean of {name}", np.asarray(c, dtype=np.float64), _rgba(color, 0.55), "2 3", 1.5)
              for (name, c), color in zip((group_means or {}).items(), GROUP_COLORS)
              if c is not None and np.isfinite(c).any()]
    finite = np.concatenate([se[np.isfinite(se)], *[c[np.isfinite(c)] for _, c, *_ in curves], [0.0]])
    lo, hi = float(finite.min()), float(finite.max())
    pad = 0.05 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad

    def x(e):
        return left + (np.asarray(e, dtype=np.float64) - 1) / max(n - 1, 1) * pw

    def y(v, a=lo, b=hi):
        return top + (b - np.asarray(v, dtype=np.float64)) / (b - a) * ph

    def path(values, a=lo, b=hi) -> str:
        ok = np.isfinite(values)
        pts = [f"{px:.1f},{py:.1f}" for px, py, good in zip(x(np.arange(1, len(values) + 1)), y(values, a, b), ok)
               if good]
        return "M" + " L".join(pts) if pts else ""

    esc = lambda s: html.escape(str(s), quote=True)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
           f'style="font-family:{esc(FONT["family"])};font-size:12px" role="img" '
           f'aria-label="signed entropy per epoch">']
    for v in nice_ticks(lo, hi, 6):  # grid and left axis
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eeeeee"/>'
                   f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#555">{v:.3g}</text>')
    epochs = range(1, n + 1, max(1, int(np.ceil(n / 8)))) if n <= 16 else \
        [int(e) for e in nice_ticks(1, n, 8) if e >= 1]
    for e in epochs:
        out.append(f'<line x1="{x(e):.1f}" x2="{x(e):.1f}" y1="{top}" y2="{top + ph}" stroke="#eeeeee"/>'
                   f'<text x="{x(e):.1f}" y="{top + ph + 16}" text-anchor="middle" fill="#555">{e}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#bbbbbb"/>'
               f'<line x1="{left}" x2="{left + pw}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#999999"/>'
               f'<text x="{left + pw / 2:.0f}" y="{height - 6}" text-anchor="middle" fill="#333">epoch</text>'
               f'<text transform="translate(14 {top + ph / 2:.0f}) rotate(-90)" text-anchor="middle" '
               f'fill="#333">signed entropy</text>')
    legend = []
    for name, c, color, dash, w in curves:
        out.append(f'<path d="{path(c)}" fill="none" stroke="{color}" stroke-width="{w}" stroke-dasharray="{dash}">'
                   f'<title>{esc(name)}</title></path>')
        legend.append((name, color, dash))
    if cumulative is not None:
        cum = np.asarray(cumulative, dtype=np.float64)
        ok = cum[np.isfinite(cum)]
        a, b = (float(ok.min()), float(ok.max())) if ok.size else (0.0, 1.0)
        a, b = (a - 0.5, b + 0.5) if b <= a else (a - 0.05 * (b - a), b + 0.05 * (b - a))
        for v in nice_ticks(a, b):
            out.append(f'<text x="{left + pw + 6}" y="{y(v, a, b) + 4:.1f}" fill="#8E6BB5">{v:.0f}</text>')
        out.append(f'<path d="{path(cum, a, b)}" fill="none" stroke="#8E6BB5" stroke-width="1.5">'
                   f'<title>running SEI</title></path>'
                   f'<text transform="translate({width - 8} {top + ph / 2:.0f}) rotate(90)" text-anchor="middle" '
                   f'fill="#333">running SEI</text>')
        legend.append(("running SEI", "#8E6BB5", ""))
    out.append(f'<path d="{path(se)}" fill="none" stroke="#222222" stroke-width="2.5"/>')
    for e, v in zip(range(1, n + 1), se):
        if np.isfinite(v):
            out.append(f'<circle cx="{x(e):.1f}" cy="{y(v):.1f}" r="2.5" fill="#222222">'
                       f'<title>epoch {e}: signed entropy {v:.3g}</title></circle>')
    legend.insert(0, ("this image", "#222222", ""))
    lx, ly = 0.0, 14
    for name, color, dash in legend:  # above the panel, as the Plotly figure's legend (wrapped)
        w = 34 + 6.5 * len(name)
        if lx and lx + w > width:
            lx, ly = 0.0, ly + 18
        out.append(f'<line x1="{lx + 2:.0f}" x2="{lx + 22:.0f}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"'
                   + (f' stroke-dasharray="{dash}"' if dash else "") + "/>"
                   f'<text x="{lx + 26:.0f}" y="{ly + 4}" fill="#333">{esc(name)}</text>')
        lx += w
    out.append("</svg>")
    return "".join(out)
