"""sei_core.workspace (recent choices, review label file, truth) and sei_core.gallery (safe images)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from sei_core import review, workspace
from sei_core.gallery import ImageAccessError, ImageSource, zoom
from sei_core.runs import Run


def test_recent_data_roundtrip(tmp_path):
    assert workspace.recent_data(tmp_path) == []
    workspace.remember_data(tmp_path / "a.csv", folder=tmp_path)
    workspace.remember_data(tmp_path / "b", folder=tmp_path)
    items = workspace.remember_data(tmp_path / "a.csv", folder=tmp_path)
    assert [it["path"] for it in items] == [str(tmp_path / "a.csv"), str(tmp_path / "b")]
    assert workspace.current_data(tmp_path)["path"] == str(tmp_path / "a.csv")
    (tmp_path / "recent.json").write_text("{not json")
    assert workspace.recent_data(tmp_path) == []


def test_runs_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SEI_RUNS_DIR", str(tmp_path))
    assert workspace.runs_dir() == tmp_path


def _fake_run(path, data, ids=("a/x.png", "b/y.png"), labels=("a", "b")):
    run = Run(path)
    run.write_config({"data": str(data), "classes": sorted(set(labels))})
    run.write_samples(list(ids), list(labels))
    return run


def test_review_label_file_for_folder_data(tmp_path):
    data = tmp_path / "folder"
    data.mkdir()
    run = _fake_run(tmp_path / "run", data)
    f = review.review_label_file(run)
    assert f == run.path / "labels.csv"
    assert f.read_text().splitlines() == ["path,label", "a/x.png,a", "b/y.png,b"]
    f.write_text("path,label\na/x.png,b\nb/y.png,b\n")  # reviewed since: must not be recreated
    assert review.review_label_file(run).read_text().startswith("path,label\na/x.png,b")


def test_review_label_file_for_csv_is_the_csv(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\nx.png,a\n")
    assert review.review_label_file(_fake_run(tmp_path / "run", csv)) == csv


def test_review_requests(tmp_path):
    run = _fake_run(tmp_path / "run", tmp_path)
    assert review.review_requests(run) == []
    review.request_review(run, "a/x.png")
    review.request_review(run, "a/x.png")
    assert review.review_requests(run) == ["a/x.png"]


def test_load_truth(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\nx.png,a\ny.png,b\n")
    assert workspace.load_truth(csv, ["x.png", "y.png"]) is None
    (tmp_path / "truth.csv").write_text("path,true_label,given_label,is_noisy\nx.png,a,a,0\ny.png,a,b,1\n")
    assert workspace.load_truth(csv, ["y.png", "x.png"]).tolist() == [True, False]
    assert workspace.load_truth(csv, ["z.png"]) is None


def test_new_run_name(tmp_path):
    name = workspace.new_run_name("/data/skin/labels.csv", "SEI-Tiny-RN", tmp_path)
    assert name == "skin-sei-tiny-rn-1"
    (tmp_path / name).mkdir()
    assert workspace.new_run_name("/data/skin/labels.csv", "SEI-Tiny-RN", tmp_path) == "skin-sei-tiny-rn-2"


def test_runs_of_two_tables_of_the_same_name_are_told_apart(tmp_path):
    """Two copies of the HAM10000 archive (``HAM10000_metadata.csv`` in two folders): the second
    one's runs carry its folder's name instead of continuing the first one's numbering."""
    from sei_core.runs import Run

    first = workspace.new_run_name("/data/ham/HAM10000_metadata.csv", "SEI-Tiny-RN", tmp_path)
    assert first == "ham10000_metadata-sei-tiny-rn-1"
    Run(tmp_path / first).write_config({"data": "/data/ham/HAM10000_metadata.csv"})
    assert workspace.new_run_name("/data/ham/HAM10000_metadata.csv", "SEI-Tiny-RN", tmp_path) == \
        "ham10000_metadata-sei-tiny-rn-2"
    assert workspace.new_run_name("/data/ham2/HAM10000_metadata.csv", "SEI-Tiny-RN", tmp_path) == \
        "ham2-ham10000_metadata-sei-tiny-rn-1"
    Run(tmp_path / "ham10000_metadata-sei-tiny-rn-2").write_config({"data": "/data/ham2/HAM10000_metadata.csv"})
    # the first one's runs keep their numbering, named as before (not after its folder "ham")
    assert workspace.new_run_name("/data/ham/HAM10000_metadata.csv", "SEI-Tiny-RN", tmp_path) == \
        "ham10000_metadata-sei-tiny-rn-3"


def test_a_run_that_failed_before_training_leaves_its_name_free(tmp_path):
    """The Train page says a new run of that name replaces such a run: the suggestion is that name."""
    from sei_core.runs import Run

    failed = Run(tmp_path / "skin-sei-tiny-rn-1")
    failed.write_config({"data": "/data/skin/labels.csv"})
    failed.update_status(state="failed", error="no image file found")
    assert workspace.new_run_name("/data/skin/labels.csv", "SEI-Tiny-RN", tmp_path) == "skin-sei-tiny-rn-1"
    # another data set's failed run is left alone (and its name says which data set it is)
    assert workspace.new_run_name("/other/skin/labels.csv", "SEI-Tiny-RN", tmp_path) == "other-skin-sei-tiny-rn-1"
    failed.update_status(state="failed", error="out of memory", history=[{"run": 1, "epoch": 1}])
    assert workspace.new_run_name("/data/skin/labels.csv", "SEI-Tiny-RN", tmp_path) == "skin-sei-tiny-rn-2"


def test_gallery_refuses_paths_outside_the_data_root(tmp_path):
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    Image.new("RGB", (8, 6), "red").save(root / "img" / "ok.png")
    Image.new("RGB", (8, 6), "blue").save(tmp_path / "secret.png")
    (root / "labels.csv").write_text("path,label\n")
    os.symlink(tmp_path / "secret.png", root / "img" / "link.png")
    src = ImageSource(root / "labels.csv")
    assert src.open("img/ok.png").size == (8, 6)
    for bad in ("../secret.png", str(tmp_path / "secret.png"), "img/link.png", "img/../../secret.png"):
        with pytest.raises(ImageAccessError, match="outside the data folder"):
            src.open(bad)
    (root / "notes.txt").write_text("hi")
    with pytest.raises(ImageAccessError, match="not an image"):
        src.open("notes.txt")
    with pytest.raises(ImageAccessError, match="does not exist"):
        src.open("img/missing.png")


def test_gallery_npz(tmp_path):
    f = tmp_path / "blood.npz"
    np.savez(f, train_images=np.zeros((3, 5, 5), np.uint8), train_labels=np.zeros((3, 1)))
    src = ImageSource(f)
    assert src.open("train/2").size == (5, 5)
    with pytest.raises(ImageAccessError):
        src.open("train/9")


def test_zoom():
    im = Image.new("RGB", (100, 50))
    assert zoom(im, 1, side=200).size == (200, 100)
    w, h = zoom(im, 4, 1.0, 1.0, side=100).size
    assert w == 100 and abs(h - 50) <= 2


def test_save_prompts(tmp_path):
    from sei_core.dataset import Prompts, load

    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "y.png")
    (tmp_path / "labels.csv").write_text("path,label\nx.png,a\ny.png,b\n")
    ds = load(tmp_path / "labels.csv")
    with pytest.raises(ValueError):
        workspace.save_prompts(ds, Prompts(template="no placeholder"))
    target = workspace.save_prompts(ds, Prompts(template="A scan of {}.", aux_prompt="Other.", per_class={"a": "A!"}))
    assert json.loads(target.read_text())["per_class"] == {"a": "A!"}
    assert ds.prompts().for_classes(ds.classes) == ["A!", "A scan of b.", "Other."]


def test_read_only_label_file_is_reviewed_through_a_working_copy(tmp_path):
    import os
    import stat

    from sei_core.review import LabelFileError, ReviewStore

    data = tmp_path / "shared"
    data.mkdir()
    csv = data / "labels.csv"
    csv.write_text("path,label,site\nimgs/a.png,x,arm\nimgs/b.png,y,leg\n")
    original = csv.read_bytes()
    csv.chmod(0o444)
    data.chmod(0o555)
    try:
        with pytest.raises(LabelFileError, match="read-only"):
            ReviewStore(csv)
        run = _fake_run(tmp_path / "run", csv)
        target = review.review_label_file(run)
        assert target == run.path / "labels.csv" and target.read_bytes() == original
        store = ReviewStore(target, classes=["x", "y"])
        store.relabel("imgs/a.png", "y", "dr", expected_label="x")
        assert "imgs/a.png,y,arm,x,relabeled,dr" in target.read_text()
        assert review.review_label_file(run) == target  # made once, then reused
        assert csv.read_bytes() == original and sorted(p.name for p in data.iterdir()) == ["labels.csv"]
    finally:
        data.chmod(stat.S_IRWXU)
        os.chmod(csv, 0o644)


def test_a_data_set_is_remembered_with_its_columns(tmp_path):
    f = tmp_path / "derm.csv"
    workspace.remember_data(f, folder=tmp_path)
    assert workspace.remembered_columns(f, folder=tmp_path) == {"path_column": "path", "label_column": "label",
                                                                "image_dirs": [], "image_ext": None}
    items = workspace.remember_data(f, folder=tmp_path, path_column="image_id", label_column="diagnosis")
    assert items == [{"path": str(f), "split": "train", "path_column": "image_id", "label_column": "diagnosis",
                      "image_dirs": [], "image_ext": None}]
    assert workspace.remembered_columns(f, folder=tmp_path) == {"path_column": "image_id", "label_column": "diagnosis",
                                                                "image_dirs": [], "image_ext": None}
    assert workspace.current_data(tmp_path)["label_column"] == "diagnosis"
    assert workspace.remembered_columns(tmp_path / "other.csv", folder=tmp_path)["label_column"] == "label"
    assert workspace.forget_data(f, folder=tmp_path) == []
    # a recent list written before columns were remembered reads as the default columns
    (tmp_path / "recent.json").write_text(json.dumps({"data": [{"path": str(f), "split": "train"}]}))
    assert workspace.recent_data(tmp_path)[0]["path_column"] == "path"


def test_run_names_tell_data_sets_apart(tmp_path):
    assert workspace.data_name("/data/skin/labels.csv") == "skin"
    assert workspace.data_name("/data/derm/train.csv") == "derm-train"
    assert workspace.data_name("/data/eyes/train.csv") == "eyes-train"
    assert workspace.data_name("/archive/HAM10000_metadata.csv") == "HAM10000_metadata"
    assert workspace.data_name("/m/retinamnist.npz") == "retinamnist"
    assert workspace.data_name("/data/folders/") == "folders"
    assert workspace.new_run_name("/data/eyes/train.csv", "RN50", tmp_path) == "eyes-train-rn50-1"
