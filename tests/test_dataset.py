"""Reading the three data sources, and reporting bad input with file, row and fix."""

import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from sei_core import dataset, decode
from sei_core.dataset import DataError


def _img(path, size=(24, 24), color=(200, 120, 90)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _csv(tmp_path, text, images=("a.png", "b.png", "c.png", "d.png"), name="labels.csv"):
    for i in images:
        _img(tmp_path / i)
    f = tmp_path / name
    f.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return f


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_csv_with_extra_columns_and_absolute_path(tmp_path):
    _img(tmp_path / "elsewhere" / "x.png")
    f = _csv(tmp_path, f"id,path,label,site\n1,a.png,nevus,arm\n2,b.png,melanoma,leg\n"
                       f"3,{tmp_path / 'elsewhere' / 'x.png'},nevus,\n")
    ds = dataset.load(f)
    assert ds.classes == ["melanoma", "nevus"]
    assert ds.labels.tolist() == [1, 0, 1]
    assert ds.rows.tolist() == [2, 3, 4]
    assert ds.file_of(2) == tmp_path / "elsewhere" / "x.png"
    assert ds.class_counts() == {"melanoma": 1, "nevus": 2}


def test_image_folder_and_decode_cache(tmp_path):
    for c in ("cat", "dog"):
        for i in range(3):
            _img(tmp_path / "data" / c / f"{i}.jpg", size=(40, 30), color=(i * 50, 10, 10))
    (tmp_path / "data" / "dog" / "notes.txt").write_text("not an image")
    ds = dataset.load(tmp_path / "data")
    assert ds.kind == "folder" and ds.classes == ["cat", "dog"] and len(ds) == 6
    arr, problems = decode.decode_images(ds, 16, cache_dir=tmp_path / "cache")
    assert arr.shape == (6, 3, 16, 16) and arr.dtype == np.uint8 and not problems
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    again, _ = decode.decode_images(ds, 16, cache_dir=tmp_path / "cache")
    assert np.array_equal(arr, again)


def test_medmnist_npz(tmp_path):
    f = tmp_path / "retinamnist.npz"
    rng = np.random.default_rng(0)
    np.savez(f, train_images=rng.integers(0, 255, (10, 28, 28, 3), dtype=np.uint8),
             train_labels=np.array([0, 1, 2, 3, 4] * 2).reshape(-1, 1))
    ds = dataset.load(f)
    assert ds.kind == "npz" and len(ds.classes) == 5 and ds.ids[3] == "train/03"
    arr, _ = decode.decode_images(ds, 32)
    assert arr.shape == (10, 3, 32, 32)
    with pytest.raises(DataError, match="val_images"):
        dataset.load(f, split="val")


@pytest.mark.parametrize("text,expect", [
    ("file,label\na.png,x\n", "no column 'path'; its columns are 'file' and 'label'"),
    ("Path,Label\na.png,x\n", "--path-column Path --label-column Label"),
    ("path,label\na.png,\nb.png,y\n", "line 2: image 'a.png' has an empty label"),
    ("path,label\na.png,x\na.png,y\nb.png,y\n", "line 3: repeats path 'a.png' \\(first on line 2\\)"),
    ("path,label\na.png,x\nb.png,x\n", "single class"),
    ("path,label\na.png,x\nmissing.png,y\n", "line 3 \\(missing.png\\): image file .* does not exist"),
    ('path,label\na.png,"x\nb.png,y\n', "line 2: has a path or label that runs over several lines"),
    ("", "is empty"),
])
def test_bad_csv_is_reported_with_row_and_fix(tmp_path, text, expect):
    f = _csv(tmp_path, text)
    with pytest.raises(DataError, match=expect) as e:
        dataset.load(f)
    assert all(p.fix for p in e.value.problems)


def test_all_problems_reported_together(tmp_path):
    f = _csv(tmp_path, "path,label\na.png,\nb.png,y\nb.png,y\n,z\nc.png,x\n")
    with pytest.raises(DataError) as e:
        dataset.load(f)
    assert len(e.value.problems) == 3
    assert "(3)" in str(e.value)


def test_bad_encoding_names_the_line(tmp_path):
    f = _csv(tmp_path, "path,label\na.png,x\n".encode() + "b.png,café\n".encode("latin-1"))
    with pytest.raises(DataError, match="line 3: is not valid UTF-8"):
        dataset.load(f)


def test_unknown_label_and_empty_class_against_a_class_list(tmp_path):
    f = _csv(tmp_path, "path,label\na.png,x\nb.png,y\nc.png,w\n")
    with pytest.raises(DataError, match="label 'w' is not one of the classes"):
        dataset.load(f, classes=["x", "y"])
    f2 = _csv(tmp_path, "path,label\na.png,x\nb.png,y\n", name="two.csv")
    with pytest.raises(DataError, match="class 'z' has no images"):
        dataset.load(f2, classes=["x", "y", "z"])
    assert dataset.load(f2, classes=["y", "x"]).labels.tolist() == [1, 0]


def test_corrupt_and_huge_images_can_be_skipped_with_a_report(tmp_path):
    f = _csv(tmp_path, "path,label\na.png,x\nb.png,y\nc.png,x\nbroken.png,y\nbig.png,y\n")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _img(tmp_path / "big.png", size=(300, 300))
    with pytest.raises(DataError) as e:
        dataset.load(f, max_pixels=50_000)
    text = str(e.value)
    assert "line 5 (broken.png): cannot be read as an image" in text
    assert "line 6 (big.png): image is 300×300" in text and "--max-pixels" in text
    ds = dataset.load(f, max_pixels=50_000, skip_unreadable=True)
    assert ds.ids == ["a.png", "b.png", "c.png"]
    assert len(ds.problems) == 2 and all(p.severity == "warning" for p in ds.problems)


def test_truncated_jpeg_is_reported_at_load_and_at_decode(tmp_path):
    _img(tmp_path / "ok.jpg")
    full = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(full[: len(full) // 2])
    f = _csv(tmp_path, "path,label\nok.jpg,x\ncut.jpg,y\na.png,y\nb.png,x\n")
    with pytest.raises(DataError, match="cut.jpg\\): cannot be read as an image"):
        dataset.load(f)
    ds = dataset.load(f, check_images=False)
    with pytest.raises(DataError, match="cut.jpg\\): cannot be decoded"):
        decode.decode_images(ds, 16)
    arr, problems = decode.decode_images(ds, 16, skip_unreadable=True)
    assert [p.where for p in problems] == ["labels.csv line 3 (cut.jpg)"]


def test_loading_and_decoding_never_modify_user_data(tiny_copy, tmp_path):
    before = _digest(tiny_copy.parent)
    ds = dataset.load(tiny_copy)
    decode.decode_images(ds, 16, cache_dir=tmp_path / "cache")
    assert _digest(tiny_copy.parent) == before


def test_prompts_file_beside_the_data_is_used(tiny_data):
    ds = dataset.load(tiny_data)
    prompts = ds.prompts().for_classes(ds.classes)
    assert prompts[0] == f"A dermoscopic image showing {ds.classes[0]}."
    assert prompts[-1] == "A dermoscopic image showing other lesions."
    assert len(prompts) == len(ds.classes) + 1


def test_missing_source(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        dataset.load(tmp_path / "nope.csv")
    shutil.rmtree(tmp_path)


def test_every_problem_of_rows_and_images_comes_in_one_report(tmp_path):
    f = _csv(tmp_path, "path,label\na.png,\nb.png,y\nmissing.png,x\nbroken.png,y\nc.png,x\n")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError) as e:
        dataset.load(f)
    wheres = [p.where for p in e.value.problems]
    assert wheres == ["labels.csv line 2", "labels.csv line 4 (missing.png)", "labels.csv line 5 (broken.png)"]
    with pytest.raises(DataError) as e:  # leaving unreadable images out does not hide a bad row
        dataset.load(f, skip_unreadable=True)
    assert len(e.value.problems) == 3


def test_two_spellings_of_one_file_with_different_labels_are_refused(tmp_path):
    _img(tmp_path / "images" / "x.png")
    f = _csv(tmp_path, "path,label\n./images/x.png,nevus\na.png,melanoma\nimages/x.png,melanoma\n")
    with pytest.raises(DataError, match=r"line 4: 'images/x.png' is the same file as './images/x.png' on line 2, "
                                        r"labelled 'nevus' there and 'melanoma' here"):
        dataset.load(f)


def test_near_duplicates_case_variants_and_lonely_classes_are_warned_about(tmp_path):
    _img(tmp_path / "images" / "x.png")
    f = _csv(tmp_path, "path,label\n./images/x.png,nevus\nimages/x.png,nevus\na.png,Nevus\nb.png,NEVUS\n"
                       "c.png,melanoma\nd.png,melanoma\n")
    ds = dataset.load(f)
    assert len(ds) == 6 and not ds.problems
    text = "\n".join(str(w) for w in ds.warnings)
    assert all(w.severity == "warning" for w in ds.warnings)
    assert "line 3: 'images/x.png' is the same file as './images/x.png' on line 2" in text
    assert ("class names differ only in case: 'nevus' (2 rows, first on line 2), 'Nevus' (1 row, first on "
            "line 4), 'NEVUS' (1 row, first on line 5)") in text
    assert "labels.csv line 4 (a.png): class of one image: 'Nevus'" in text
    assert "labels.csv line 5 (b.png): class of one image: 'NEVUS'" in text
    assert len(ds.warnings) == 4


def test_semicolon_file_with_spaces_in_header_and_cells(tmp_path):
    f = _csv(tmp_path, "path; label\n a.png ;x\nb.png; y\nc.png;x\n")
    ds = dataset.load(f)
    assert ds.ids == ["a.png", "b.png", "c.png"] and ds.classes == ["x", "y"]


def test_cli_reports_a_failed_training_once(tmp_path, capsys):
    from sei_core import cli

    f = _csv(tmp_path, "path,label\na.png,\nb.png,y\nmissing.png,x\n")
    assert cli.main(["train", str(f), "--out", str(tmp_path / "run")]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert text.count("line 2: image 'a.png' has an empty label") == 1
    assert text.count("line 4 (missing.png)") == 1


def test_cli_validate_prints_the_warnings(tmp_path, capsys):
    from sei_core import cli

    f = _csv(tmp_path, "path,label\na.png,nevus\nb.png,Nevus\nc.png,nevus\nd.png,mel\n")
    assert cli.main(["validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert "warning: labels.csv: class names differ only in case: 'nevus' (2 rows" in out
    assert out.count("class of one image") == 2  # 'Nevus' and 'mel'


def test_chosen_columns_validate_and_are_required(tmp_path):
    f = _csv(tmp_path, "image_id;diagnosis;age\na.png;nevus;30\nb.png;melanoma;41\nc.png;;52\nd.png;nevus;60\n")
    with pytest.raises(DataError) as e:  # without the mapping: the file's columns are named
        dataset.load(f)
    assert "its columns are 'image_id', 'diagnosis' and 'age'" in str(e.value)
    assert "--label-column" in e.value.problems[0].fix.cli and "--" not in e.value.problems[0].fix.app
    with pytest.raises(DataError, match=r"line 4: image 'c.png' has an empty label \(column 'diagnosis'\)"):
        dataset.load(f, path_column="image_id", label_column="diagnosis")
    f.write_text("image_id;diagnosis;age\na.png;nevus;30\nb.png;melanoma;41\nc.png;nevus;52\n")
    ds = dataset.load(f, path_column="image_id", label_column="diagnosis")
    assert ds.ids == ["a.png", "b.png", "c.png"] and ds.classes == ["melanoma", "nevus"]
    assert (ds.path_column, ds.label_column) == ("image_id", "diagnosis")
    assert (dataset.subset(ds, [0]).path_column, dataset.subset(ds, [0]).label_column) == ("image_id", "diagnosis")
    folder = tmp_path / "folder"
    for c in ("x", "y"):
        _img(folder / c / "1.png")
    with pytest.raises(DataError, match="not a label file"):
        dataset.load(folder, label_column="diagnosis")


def test_missing_files_are_found_from_directory_listings_like_a_stat_per_file(tmp_path):
    for p in ("a.png", "sub/b.png", "sub/deeper/c.png", "other/d.png"):
        _img(tmp_path / p)
    (tmp_path / "sub" / "folder.png").mkdir()  # listed like a file; the image check finds it
    outside = tmp_path.parent / f"{tmp_path.name}_abs.png"
    _img(outside)
    rows = ["a.png", "sub/b.png", "sub/deeper/c.png", "other/d.png", "sub/gone.png", "nowhere/x.png",
            str(outside), str(tmp_path / "absent.png"), "./a.png", "sub/../other/d.png", "sub/folder.png", "A.PNG"]
    f = tmp_path / "labels.csv"
    f.write_text("path,label\n" + "".join(f"{r},{'xy'[i % 2]}\n" for i, r in enumerate(rows)))
    ds = dataset.load(f, check_images=False)
    ds_rows = list(ds.ids)
    missing = dataset.missing_files(ds)
    assert missing.tolist() == [not ds.file_of(i).exists() for i in range(len(ds))]
    assert {ds_rows[i] for i in np.flatnonzero(missing)} == {"sub/gone.png", "nowhere/x.png",
                                                               str(tmp_path / "absent.png"), "A.PNG"}
    folder = ds_rows.index("sub/folder.png")
    problems = dataset.ImageCheck(dataset.subset(ds, [folder])).run().problems
    assert len(problems) == 1 and "sub/folder.png" in problems[0].where


def test_checking_existence_only_reports_missing_files_with_row_and_fix_and_opens_none(tmp_path):
    f = _csv(tmp_path, "path,label\na.png,x\nb.png,y\nmissing.png,x\nbroken.png,y\nc.png,x\n")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError) as e:
        dataset.load(f, check_images="exists")
    assert [(p.where, bool(p.fix)) for p in e.value.problems] == [("labels.csv line 4 (missing.png)", True)]
    assert "does not exist" in e.value.problems[0].message
    ds = dataset.load(f, check_images="exists", skip_unreadable=True)
    assert ds.ids == ["a.png", "b.png", "broken.png", "c.png"] and ds.rows.tolist() == [2, 3, 5, 6]
    assert [p.where for p in ds.problems] == ["labels.csv line 4 (missing.png)"]
    with pytest.raises(ValueError, match="check_images"):
        dataset.load(f, check_images="decode")


def test_the_image_check_finds_what_does_not_open_in_the_background_or_at_once(tmp_path):
    f = _csv(tmp_path, "path,label\na.png,x\nbroken.png,y\nc.png,x\nbig.png,y\nb.png,y\n")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _img(tmp_path / "big.png", size=(300, 300))
    ds = dataset.load(f, check_images="exists")
    at_once = dataset.ImageCheck(ds, max_pixels=50_000).run()
    assert at_once.finished and at_once.done == at_once.total == 5
    wheres = [p.where for p in at_once.problems]
    assert wheres == ["labels.csv line 3 (broken.png)", "labels.csv line 5 (big.png)"]
    assert all(p.fix for p in at_once.problems)
    background = dataset.ImageCheck(ds, max_pixels=50_000)
    assert not background.started
    assert background.start() is background and background.start() is background  # once
    background._thread.join(timeout=30)
    assert background.finished and [p.where for p in background.problems] == wheres
    with pytest.raises(RuntimeError):
        background.run()
