"""Hand-computed checks of sei_core.dynamics (groups, curves, alignment) and the figure builders."""

import numpy as np
import pytest

from sei_core import dynamics, plots
from sei_core.dynamics import EASY_CLEAN, FLAGGED, HARD_CLEAN, UNSCORED

# 4 epochs, 5 samples, labels [0, 1, 0, 1, 2]
PRED = np.array([
    [0, 0, 1, 0, 2],
    [0, 1, 1, 0, 2],
    [0, 1, 0, 1, 1],
    [0, 1, 0, 1, 2],
])
LABELS = np.array([0, 1, 0, 1, 2])


def test_learned_epoch():
    # sample 0 agrees from epoch 0; sample 1 from 1; sample 2 from 2; 3 from 2;
    # sample 4 disagrees at epoch 2 then agrees at 3 -> learned at 3
    assert dynamics.learned_epoch(PRED, LABELS).tolist() == [0, 1, 2, 2, 3]


def test_learned_epoch_never():
    pred = np.array([[1, 0], [1, 1]])
    assert dynamics.learned_epoch(pred, np.array([1, 0])).tolist() == [0, 2]


def test_sample_groups():
    flagged = np.array([False, False, False, True, False])
    scored = np.array([True, True, True, True, False])
    g = dynamics.sample_groups(PRED, LABELS, flagged, scored)
    # cut = ceil(0.5 * 4) = 2: learned at 0, 1 -> easy; 2 -> hard; flagged wins; unscored last
    assert g.tolist() == [EASY_CLEAN, EASY_CLEAN, HARD_CLEAN, FLAGGED, UNSCORED]
    assert dynamics.GROUP_NAMES[EASY_CLEAN] == "easy for the model"


def test_sample_groups_rejects_bad_fraction():
    with pytest.raises(ValueError):
        dynamics.sample_groups(PRED, LABELS, np.zeros(5, bool), easy_within=0)


def test_group_mean_curves():
    values = np.array([[1.0, 3.0, 5.0], [2.0, 2.0, 2.0]])
    mean, std, count = dynamics.group_mean_curves(values, np.array([0, 0, 2]), 3)
    assert count.tolist() == [2, 0, 1]
    np.testing.assert_allclose(mean[0], [2.0, 2.0])
    np.testing.assert_allclose(std[0], [1.0, 0.0])
    assert np.isnan(mean[1]).all()
    np.testing.assert_allclose(mean[2], [5.0, 2.0])


def test_alignment_timeline():
    groups = np.array([0, 0, 1, 1, 2])
    a = dynamics.alignment_timeline(PRED, LABELS, groups)
    np.testing.assert_allclose(a[0], [0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(a[1], [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(a[2], [1.0, 1.0, 0.0, 1.0])


def test_cumulative_and_integrals():
    se = np.array([[1.0, -1.0], [0.5, -2.0]])
    h = np.abs(se)
    np.testing.assert_allclose(dynamics.cumulative_sei(se), [[1.0, -1.0], [1.5, -3.0]])
    ints = dynamics.integral_scores(se, h)
    np.testing.assert_allclose(ints["signed"], [1.5, -3.0])
    np.testing.assert_allclose(ints["unsigned"], [-1.5, -3.0])


def test_clean_examples():
    labels = np.array([0, 0, 0, 1, 0])
    flagged = np.array([False, True, False, False, False])
    suggested = np.array([0, 0, 0, 1, 1])
    prob = np.array([0.7, 0.99, 0.9, 0.8, 0.95])
    assert dynamics.clean_examples(labels, flagged, suggested, prob, 0).tolist() == [2, 0]
    assert dynamics.clean_examples(labels, flagged, suggested, prob, 0, exclude=[2]).tolist() == [0]
    assert dynamics.clean_examples(labels, flagged, suggested, prob, 0, n=1).tolist() == [2]


def test_figures_build_and_escape_labels():
    rng = np.random.default_rng(0)
    n, t = 40, 5
    score = rng.normal(size=n)
    flagged = score < -0.5
    labels = np.arange(n) % 2
    classes = ["<b>nevus</b>", "melanoma"]
    fig = plots.score_histograms(score, flagged, labels, classes, np.full(n, -0.5), rng.random(n) < 0.2)
    titles = [a.text for a in fig.layout.annotations]
    assert "&lt;b&gt;nevus&lt;/b&gt;" in titles and "<b>nevus</b>" not in titles
    se = rng.normal(size=(t, n))
    g = dynamics.sample_groups(rng.integers(0, 2, (t, n)), labels, flagged)
    mean, std, count = dynamics.group_mean_curves(se, g)
    for f in (plots.signed_entropy_curve(se[:, 0], dynamics.cumulative_sei(se[:, 0]), "x",
                                         dict(zip(dynamics.GROUP_NAMES, mean))),
              plots.group_curves(mean, std, count, dynamics.GROUP_NAMES, "SE"),
              plots.entropy_trajectories(np.abs(se), flagged),
              plots.alignment_plot(dynamics.alignment_timeline(rng.integers(0, 2, (t, n)), labels, g),
                                   dynamics.GROUP_NAMES, count),
              plots.integral_comparison(score, -np.abs(score), flagged, None, [-0.5], {"signed": 0.9, "unsigned": 0.6}),
              plots.training_curves([{"run": 1, "epoch": 1, "loss": 1.0, "accuracy": 0.5}], 3),
              plots.class_counts({"a": 3, "b": 4})):
        assert f.data or f.layout.annotations
    assert plots.score_histograms(np.full(3, np.nan), np.zeros(3, bool), np.zeros(3, int), ["a"],
                                np.zeros(3)).layout.annotations[0].text == "No scored samples yet"


def test_the_curves_draw_nothing_their_legend_does_not_explain():
    """With few epochs Plotly's default mode draws markers, in its own colour cycle, on every
    scatter trace without a mode: the bands around the group means then showed blue, teal and
    green dots that no legend entry named (and blue means "kept" on this page)."""
    rng = np.random.default_rng(1)
    n, t = 30, 4  # 2·t < 20 points per band: where Plotly's default turns markers on
    se = rng.normal(size=(t, n))
    labels, flagged = np.arange(n) % 3, rng.random(n) < 0.3
    g = dynamics.sample_groups(rng.integers(0, 2, (t, n)), labels, flagged)
    mean, std, count = dynamics.group_mean_curves(se, g)
    for fig in (plots.group_curves(mean, std, count, dynamics.GROUP_NAMES, "agreement"),
                plots.entropy_trajectories(np.abs(se), flagged),
                plots.signed_entropy_curve(se[:, 0], dynamics.cumulative_sei(se[:, 0]),
                                           group_means=dict(zip(dynamics.GROUP_NAMES, mean)))):
        for tr in fig.data:
            assert tr.mode is not None, tr.name
            if tr.showlegend is False:
                assert "markers" not in tr.mode, tr


def test_class_counts_leave_room_for_the_longest_bars_count():
    fig = plots.class_counts({"melanoma": 111, "nevus": 88})
    assert fig.data[0].cliponaxis is False and fig.layout.xaxis.range[1] >= 1.1 * 111


def test_the_review_pages_curve_is_a_light_svg_of_the_same_lines():
    """plots.signed_entropy_svg: one marker per recorded epoch (with its value), the running SEI
    and each group's mean, names escaped; an epoch not recorded (NaN) is left out."""
    import xml.etree.ElementTree as ET

    se = np.array([0.5, -0.2, np.nan, -0.8, -0.9])
    svg = plots.signed_entropy_svg(se, dynamics.cumulative_sei(np.nan_to_num(se)),
                                   {"<b>easy</b>": se / 2, "flagged": None})
    root = ET.fromstring(svg)  # well-formed
    ns = "{http://www.w3.org/2000/svg}"
    titles = [c.find(ns + "title").text for c in root.iter(ns + "circle")]
    assert titles == ["epoch 1: signed entropy 0.5", "epoch 2: signed entropy -0.2", "epoch 4: signed entropy -0.8",
                      "epoch 5: signed entropy -0.9"]
    text = " ".join(t.text or "" for t in root.iter(ns + "text"))
    assert "mean of <b>easy</b>" in text and "running SEI" in text and "flagged" not in text
    assert "&lt;b&gt;" in svg and "<b>" not in svg
    assert np.allclose(plots.nice_ticks(-0.93, 0.55), [-0.5, 0.0, 0.5])  # round steps, inside the range
