"""AppTest: the Explore page — every figure, the class filter, opening an image, sending it to Review."""

import base64
import json

import numpy as np

from pages._common import md
from sei_core import plots, review
from sei_core.methods import DEFAULT_METHOD, PAPER_METHOD, display_name
from sei_core.ranking import score_run
from sei_core.runs import Run

EXPLORE = "pages/explore.py"


def charts(at):
    return at.get("plotly_chart")


def chart_json(el) -> dict:
    return json.loads(el.proto.spec)


def values(v) -> np.ndarray:
    """A Plotly array from a figure's JSON (plain list, or typed array in base64)."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v)


def test_every_figure_is_drawn_with_help_and_metrics(open_app, app_env):
    at = open_app(EXPLORE)
    assert not at.error
    # histogram, the open image's curve, group curves, alignment, entropy, signed vs unsigned
    assert len(charts(at)) == 6
    metrics = {m.label: m.value for m in at.metric}
    s = score_run(Run(app_env.run))
    assert metrics["Images"] == str(len(s.ids)) and metrics["Flagged"] == str(int(s.flagged.sum()))
    assert "Flags that are truly wrong" in metrics  # the tiny data set has a truth file
    help_text = " ".join(m.value for m in at.markdown)
    for words in ("Easy for the model", "Hard for the model", "Flagged", "dashed line", "Auxiliary images"):
        assert words in help_text
    # the clinician's page says no issue numbers and keeps the method's words in "How this is computed"
    assert "issue" not in help_text.lower()
    assert [e.label for e in at.expander][:2] == ["How to read this page", "How this is computed"]
    hist = chart_json(charts(at)[0])
    names = {t.get("name") for t in hist["data"]}
    # every part in the legend (even one with no image in the first class), and one entry for the one
    # kind of line drawn: one threshold line per class panel
    assert {"flagged · truly mislabeled", "flagged · label correct", "kept · truly mislabeled",
            "kept · label correct"} <= names
    assert [t.get("name") for t in hist["data"] if t["type"] == "scatter"] == [plots.THRESHOLD_NAME]
    assert len(hist["layout"]["shapes"]) == len(s.classes)
    # binned on the server: bars of counts, never one value per image
    bars = [t for t in hist["data"] if t["type"] == "bar"]
    assert bars and all(t["type"] != "histogram" for t in hist["data"])
    assert sum(np.nansum(values(t["y"]).astype(float)) for t in bars) == int(np.isfinite(s.score).sum())
    # one panel title per class
    assert len([a for a in hist["layout"]["annotations"]]) == len(s.classes)


def test_class_filter_shows_one_class(open_app, app_env):
    at = open_app(EXPLORE)
    s = score_run(Run(app_env.run))
    at.selectbox(key="explore_class").select(1).run()
    assert not at.exception and not at.error
    hist = chart_json(charts(at)[0])
    assert [a["text"] for a in hist["layout"]["annotations"]] == [s.classes[1]]
    assert {m.label: m.value for m in at.metric}["Images"] == str(int((s.labels == 1).sum()))
    table = at.dataframe[0].value
    assert set(table["given label"]) == {s.classes[1]}
    name = display_name(DEFAULT_METHOD)
    assert list(table[name]) == sorted(table[name])  # most suspicious first


def test_ranking_score_and_the_papers_sei_side_by_side(open_app, app_env):
    """The page shows the app's ranking by default and the paper's SEI on request."""
    at = open_app(EXPLORE)
    ours, paper = score_run(Run(app_env.run)), score_run(Run(app_env.run), PAPER_METHOD)
    assert ours.method == DEFAULT_METHOD and np.array_equal(ours.sei_flagged, paper.flagged, equal_nan=False)
    np.testing.assert_allclose(ours.sei, paper.score)
    if DEFAULT_METHOD == PAPER_METHOD:
        assert not at.radio
        return
    assert {m.label: m.value for m in at.metric}["Flagged"] == str(int(ours.flagged.sum()))
    assert display_name(DEFAULT_METHOD) in at.dataframe[0].value.columns
    at.radio(key="explore_method").set_value(PAPER_METHOD).run()
    assert not at.exception and not at.error
    assert {m.label: m.value for m in at.metric}["Flagged"] == str(int(paper.flagged.sum()))
    table = at.dataframe[0].value
    assert list(table["SEI"]) == sorted(table["SEI"])
    help_text = " ".join(m.value for m in at.markdown)
    assert display_name(DEFAULT_METHOD) in help_text


def test_the_estimated_number_of_wrong_labels_is_shown_as_an_upper_bound(open_app, app_env):
    """The error count (sei_core.count) is on the page with its interval and how to read it."""
    at = open_app(EXPLORE)
    s = score_run(Run(app_env.run))
    assert s.count is not None
    text = " ".join(c.value for c in at.caption)
    assert f"Estimated mislabeled images in the whole data set: **{s.count.describe()}**" in text
    assert "upper bound" in text


def test_open_an_image_and_send_it_to_review(open_app, app_env):
    s = score_run(Run(app_env.run))
    kept = int(np.flatnonzero(~s.flagged)[0])
    at = open_app(EXPLORE)
    at.selectbox(key="explore_sample").select(kept).run()
    assert not at.exception and not at.error
    assert md(s.ids[kept]) in [c.value for c in at.caption]
    assert len(at.image) == 1  # the chosen image itself (its name is the caption above)
    curve = chart_json(charts(at)[1])
    y = values(next(t for t in curve["data"] if t.get("name") == "this image")["y"])
    np.testing.assert_allclose(y, s.signed_entropy[:, kept], rtol=1e-6)
    at.button(key="send_to_review").click().run()
    assert not at.exception
    assert at.title[0].value == "Review"
    assert review.review_requests(Run(app_env.run)) == [s.ids[kept]]
    assert at.session_state["review_current"] == s.ids[kept]


def test_a_run_without_a_complete_epoch_gives_a_message(open_app, app_env):
    run = Run(app_env.runs / "empty")
    run.write_config({"data": str(app_env.labels), "classes": ["a", "b"], "runs": 2, "epochs": 3})
    run.update_status(state="created", phase="waiting to start")
    at = open_app()
    at.sidebar.selectbox(key="run_name").select("empty").run()
    at.switch_page(EXPLORE).run()
    assert not at.exception
    assert at.error and "has not loaded the data" in at.error[0].value  # in words, not a traceback


def test_the_class_grid_fits_forty_classes():
    """Fixed-height panels for any number of classes (Plotly refuses too large a vertical spacing)."""
    from sei_core import plots

    rng = np.random.default_rng(0)
    n, k = 4000, 40
    labels = rng.integers(0, k, n)
    score = rng.normal(size=n)
    thr = np.where(rng.random(n) < 0.5, -1.0, -1.2)
    fig = plots.score_histograms(score, score < thr, labels, [f"class {c}" for c in range(k)], thr,
                               rng.random(n) < 0.1)
    assert len(fig.layout.annotations) == k
    rows = -(-k // plots.PANEL_COLUMNS)
    assert fig.layout.height >= rows * plots.PANEL_HEIGHT
    counted = sum(int(np.nansum(np.asarray(t.y, dtype=float))) for t in fig.data if t.type == "bar")
    assert counted == n
    # one line per panel (the threshold most of its images are judged by), one legend entry for it
    assert len(fig.layout.shapes) == k and [t.name for t in fig.data if t.type == "scatter"] == [plots.THRESHOLD_NAME]
    listed = {t.name for t in fig.data if t.type == "bar" and t.showlegend}
    assert listed == {"kept · label correct", "kept · truly mislabeled", "flagged · label correct",
                      "flagged · truly mislabeled"}


def test_classes_are_called_by_the_names_saved_for_their_codes(open_app, app_env):
    """Names saved beside the data (prompts.json, the Data page's "Class names") are what Explore
    shows for each class — the class menu, the panels, the table and the open image — with the
    code beside the name, the way Review shows them."""
    from sei_core.dataset import PROMPTS_FILE, Prompts

    s = score_run(Run(app_env.run))
    names = {s.classes[0]: "first diagnosis", s.classes[1]: "second diagnosis"}
    (app_env.labels.parent / PROMPTS_FILE).write_text(json.dumps(Prompts(names=names).to_dict()))
    shown = [f"{names[c]} ({c})" if c in names else c for c in s.classes]
    at = open_app(EXPLORE)
    assert not at.exception
    box = at.selectbox(key="explore_class")
    assert box.options == ["All classes", *shown]
    hist = chart_json(charts(at)[0])
    assert [a["text"] for a in hist["layout"]["annotations"]] == shown
    table = at.dataframe[0].value
    assert set(table["given label"]) <= set(shown) and set(table["suggested"]) - {""} <= set(shown)
    assert "second diagnosis (" in table["given label"].str.cat() or "first diagnosis (" in table["given label"].str.cat()
    panel = " ".join(m.value for m in at.markdown)
    assert any(f"**Given label:** {md(x)}" in panel for x in shown)
    box.select(1).run()
    assert [a["text"] for a in chart_json(charts(at)[0])["layout"]["annotations"]] == [shown[1]]
