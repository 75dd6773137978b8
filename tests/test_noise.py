import math

import numpy as np
import pandas as pd
import pytest

from sei_core.bench.noise import (
    confusion_calibrated_noise,
    confusion_matrix,
    n_corrupted,
    read_label_table,
    symmetric_noise,
    write_noisy_label_file,
)


def _labels(n, k, seed=0):
    return np.random.default_rng(seed).integers(0, k, size=n)


# --- symmetric noise ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, rate, expected", [(1000, 0.2, 200), (10, 0.25, 3), (7, 0.0, 0), (7, 1.0, 7)]
)
def test_symmetric_exact_flip_count(n, rate, expected):
    labels = _labels(n, 5)
    noisy = symmetric_noise(labels, 5, rate, seed=1)
    assert n_corrupted(n, rate) == expected
    # every corrupted label changed class, so the count of changes is the exact count
    assert (noisy != labels).sum() == expected
    assert noisy.dtype == np.int64 and noisy.min() >= 0 and noisy.max() < 5


def test_symmetric_seeded():
    labels = _labels(500, 10)
    a = symmetric_noise(labels, 10, 0.3, seed=7)
    np.testing.assert_array_equal(a, symmetric_noise(labels, 10, 0.3, seed=7))
    assert not np.array_equal(a, symmetric_noise(labels, 10, 0.3, seed=8))
    np.testing.assert_array_equal(labels, _labels(500, 10))  # input untouched


def test_symmetric_targets_uniform_over_other_classes():
    k = 4
    labels = np.repeat(np.arange(k), 15000)
    noisy = symmetric_noise(labels, k, 1.0, seed=0)
    assert (noisy != labels).all()
    freq = confusion_matrix(labels, noisy, k)
    off = ~np.eye(k, dtype=bool)
    np.testing.assert_allclose(freq[off], 1 / 3, atol=0.02)


def test_symmetric_validation():
    with pytest.raises(ValueError, match="rate"):
        symmetric_noise([0, 1], 2, 1.5, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        symmetric_noise([0, 3], 3, 0.5, seed=0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        symmetric_noise([0, 0], 1, 0.5, seed=0)


# --- confusion-calibrated noise ----------------------------------------------------------


def test_confusion_calibrated_follows_eq5():
    # class 0 is mostly confused with class 1, never with 2
    t = np.array([[0.1, 0.9, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    labels = np.zeros(20000, dtype=int)
    noisy = confusion_calibrated_noise(labels, t, 0.5, seed=0)
    flipped = noisy[noisy != labels]
    assert len(flipped) == 10000
    p_01 = math.exp(0.9) / (math.exp(0.9) + math.exp(0.0))  # ≈ 0.711
    assert (flipped == 1).mean() == pytest.approx(p_01, abs=0.015)
    assert (flipped == 1).mean() > 0.6  # most flips go 0 → 1


def test_confusion_calibrated_temperature_sharpens():
    t = np.array([[0.1, 0.9, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    labels = np.zeros(2000, dtype=int)
    noisy = confusion_calibrated_noise(labels, t, 1.0, seed=0, temperature=0.05)
    assert (noisy == 1).mean() > 0.99


def test_confusion_calibrated_exact_count_seeded_and_zero_row():
    t = np.array([[0.8, 0.2, 0.0], [0.3, 0.7, 0.0], [0.0, 0.0, 0.0]])  # class 2 unseen
    labels = _labels(1001, 3)
    noisy = confusion_calibrated_noise(labels, t, 0.1, seed=3)
    assert (noisy != labels).sum() == 100
    np.testing.assert_array_equal(noisy, confusion_calibrated_noise(labels, t, 0.1, seed=3))


@pytest.mark.parametrize(
    "confusion, match",
    [
        (np.ones((2, 3)) / 3, "square"),
        (np.array([[5, 1], [2, 8]]), "rates in"),
        (np.array([[0.5, 0.2], [0.0, 1.0]]), "sum to 1"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN"),
    ],
)
def test_confusion_calibrated_validation(confusion, match):
    with pytest.raises(ValueError, match=match):
        confusion_calibrated_noise([0, 1], confusion, 0.5, seed=0)


def test_confusion_calibrated_label_range():
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_calibrated_noise([0, 2], np.eye(2), 0.5, seed=0)


def test_confusion_matrix_hand_case():
    true = [0, 0, 0, 1, 1, 2]
    pred = [0, 1, 1, 1, 1, 0]
    counts = confusion_matrix(true, pred, 4, normalize=False)
    np.testing.assert_array_equal(
        counts, [[1, 2, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    )
    rates = confusion_matrix(true, pred, 4)
    np.testing.assert_allclose(rates[0], [1 / 3, 2 / 3, 0, 0])
    np.testing.assert_allclose(rates[3], 0)  # absent class: zero row, no NaN
    with pytest.raises(ValueError):
        confusion_matrix([0, 5], [0, 1], 4)


# --- label files -------------------------------------------------------------------------


def test_write_noisy_label_file(tmp_path):
    src = tmp_path / "labels.csv"
    src.write_text("path,label,note\na.png,cat,NA\nb.png,dog,\nc.png,cat,x\n")
    table = read_label_table(src)
    assert table["note"].tolist() == ["NA", "", "x"]  # no NA conversion

    out, truth_out = tmp_path / "out" / "noisy.csv", tmp_path / "out" / "truth.csv"
    truth = write_noisy_label_file(table, ["cat", "cat", "dog"], out, truth_out)

    noisy = read_label_table(out)
    assert noisy.columns.tolist() == ["path", "label", "note"]
    assert noisy["label"].tolist() == ["cat", "cat", "dog"]
    assert noisy["note"].tolist() == ["NA", "", "x"]
    written = pd.read_csv(truth_out)
    assert written.columns.tolist() == ["path", "true_label", "given_label", "is_noisy"]
    assert written["is_noisy"].tolist() == [False, True, True]
    assert written["true_label"].tolist() == ["cat", "dog", "cat"]
    assert truth["is_noisy"].tolist() == [False, True, True]
    assert sorted(p.name for p in out.parent.iterdir()) == ["noisy.csv", "truth.csv"]


def test_write_noisy_label_file_validation(tmp_path):
    table = pd.DataFrame({"path": ["a", "b"], "label": ["x", "y"]})
    with pytest.raises(ValueError, match="rows"):
        write_noisy_label_file(table, ["x"], tmp_path / "n.csv", tmp_path / "t.csv")
    with pytest.raises(ValueError, match="names"):
        write_noisy_label_file(table, [0, 1], tmp_path / "n.csv", tmp_path / "t.csv")
    with pytest.raises(ValueError, match="same file"):
        write_noisy_label_file(table, ["x", "y"], tmp_path / "n.csv", tmp_path / "n.csv")
    with pytest.raises(ValueError, match="label"):
        write_noisy_label_file(table[["path"]], ["x", "y"], tmp_path / "n.csv", tmp_path / "t.csv")
    assert list(tmp_path.iterdir()) == []
