"""Tests for the synthetic demo image set generator."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from sample_data.make_sample_data import CLASSES, PROMPTS, generate, main

N_PER_CLASS = 10
SIZE = 32


def _read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    labels = generate(out, n_per_class=N_PER_CLASS, image_size=SIZE, noise_rate=0.15, seed=0)
    return out, labels


def test_returns_labels_csv_and_writes_all_files(dataset):
    out, labels = dataset
    assert labels == out / "labels.csv"
    assert (out / "truth.csv").is_file()
    assert json.loads((out / "prompts.json").read_text()) == PROMPTS
    assert len(list((out / "images").glob("*.png"))) == 4 * N_PER_CLASS


def test_csv_columns_and_images(dataset):
    out, labels = dataset
    rows = _read(labels)
    assert list(rows[0]) == ["path", "label", "patient_id"]
    assert len(rows) == 4 * N_PER_CLASS
    assert {r["label"] for r in rows} <= set(CLASSES)
    assert all(r["patient_id"].startswith("P") for r in rows)
    truth = _read(out / "truth.csv")
    assert list(truth[0]) == ["path", "true_label", "given_label", "is_noisy"]
    assert [r["path"] for r in truth] == [r["path"] for r in rows]
    assert [r["given_label"] for r in truth] == [r["label"] for r in rows]
    for r in rows:
        assert r["path"].startswith("images/")
        with Image.open(out / r["path"]) as im:
            assert im.format == "PNG"
            assert im.mode == "RGB"
            assert im.size == (SIZE, SIZE)


def test_noise_count_and_flags(dataset):
    out, _ = dataset
    truth = _read(out / "truth.csv")
    flagged = [r for r in truth if r["is_noisy"] == "1"]
    assert len(flagged) == round(0.15 * 4 * N_PER_CLASS)
    for r in truth:
        assert r["is_noisy"] in ("0", "1")
        assert (r["is_noisy"] == "1") == (r["true_label"] != r["given_label"])


def test_every_class_present_in_truth(dataset):
    out, _ = dataset
    truth = _read(out / "truth.csv")
    counts = {c: sum(r["true_label"] == c for r in truth) for c in CLASSES}
    assert counts == {c: N_PER_CLASS for c in CLASSES}


def test_same_seed_is_byte_identical_and_other_seed_differs(dataset, tmp_path):
    out, _ = dataset
    again, other = tmp_path / "again", tmp_path / "other"
    generate(again, n_per_class=N_PER_CLASS, image_size=SIZE, seed=0)
    generate(other, n_per_class=N_PER_CLASS, image_size=SIZE, seed=1)
    for name in ("labels.csv", "truth.csv", "prompts.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    images = sorted(p.name for p in (out / "images").iterdir())
    assert images == sorted(p.name for p in (again / "images").iterdir())
    for name in images[:: len(images) // 5]:
        assert (again / "images" / name).read_bytes() == (out / "images" / name).read_bytes()
    assert (other / "truth.csv").read_bytes() != (out / "truth.csv").read_bytes()
    shared = [n for n in images[:5] if (other / "images" / n).exists()]
    assert shared
    assert all(
        (other / "images" / n).read_bytes() != (out / "images" / n).read_bytes() for n in shared
    )


def test_rerun_with_smaller_n_removes_stale_images(tmp_path):
    generate(tmp_path, n_per_class=6, image_size=16, seed=3)
    (tmp_path / "images" / "notes.txt").write_text("not ours")
    generate(tmp_path, n_per_class=3, image_size=16, seed=3)
    rows = _read(tmp_path / "labels.csv")
    assert len(rows) == 12
    assert sorted(p.name for p in (tmp_path / "images").glob("*.png")) == sorted(
        r["path"].split("/", 1)[1] for r in rows
    )
    assert (tmp_path / "images" / "notes.txt").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_classes_differ_in_colour(dataset):
    out, _ = dataset
    truth = _read(out / "truth.csv")

    def lesion_colour(path):
        # The lesion: the centre pixels furthest in colour from the (skin) median.
        centre = slice(SIZE // 4, 3 * SIZE // 4)
        px = np.asarray(Image.open(out / path), dtype=float)[centre, centre].reshape(-1, 3)
        dist = np.linalg.norm(px - np.median(px, axis=0), axis=1)
        return px[dist >= np.quantile(dist, 0.8)].mean(axis=0)

    def mean_colour(label):
        return np.mean([lesion_colour(r["path"]) for r in truth if r["true_label"] == label], 0)

    nevus, vascular = mean_colour("nevus"), mean_colour("vascular lesion")
    # Naevi are brown (blue < green), vascular lesions red/purple (blue > green).
    assert (vascular[2] - vascular[1]) - (nevus[2] - nevus[1]) > 25
    assert np.abs(nevus - vascular).max() > 20


def test_cli(tmp_path, capsys):
    main(["--out", str(tmp_path), "--n-per-class", "2", "--size", "16", "--noise-rate", "0.25"])
    truth = _read(tmp_path / "truth.csv")
    assert len(truth) == 8
    assert sum(r["is_noisy"] == "1" for r in truth) == 2
    assert "8 images" in capsys.readouterr().out
