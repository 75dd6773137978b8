"""The HAM10000 archive's layout: a metadata table whose ``image_id`` cells name images without
an extension in two image folders beside it, with short diagnosis codes — read, validated
(one report for ``sei validate``, the Data page and ``sei train``), trained on and reviewed in
place; class names; failed runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sei_core import cli, dataset, workspace
from sei_core.dataset import Prompts, check, find_images, known_names
from sei_core.review import ReviewStore, review_columns, review_label_file
from sei_core.runs import Run

CODES = ["nv", "mel", "bkl", "bcc", "akiec", "vasc", "df"]
HEADER = "lesion_id,image_id,dx,dx_type,age,sex,localization"
PARTS = ("HAM10000_images_part_1", "HAM10000_images_part_2")
OPTS = ["--path-column", "image_id", "--label-column", "dx"]


def make_archive(root: Path, n: int = 28, crlf: bool = False) -> Path:
    """A generated archive of ``n`` images: ``HAM10000_metadata.csv`` (ids without extension,
    codes of 7 classes, extra columns) and the images alternately in the two part folders."""
    rng = np.random.default_rng(0)
    for p in PARTS:
        (root / p).mkdir(parents=True, exist_ok=True)
    rows = [HEADER]
    for i in range(n):
        iid = f"ISIC_{27419 + i:07d}"
        k = i % len(CODES)
        a = np.full((16, 16, 3), 40 + 30 * k, dtype=np.uint8) + rng.integers(0, 20, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(a).save(root / PARTS[i % 2] / f"{iid}.jpg")
        rows.append(f"HAM_{i:07d},{iid},{CODES[k]},histo,{40 + i}.0,{'male' if i % 3 else 'female'},back")
    f = root / "HAM10000_metadata.csv"
    f.write_bytes(("\r\n" if crlf else "\n").join(rows).encode() + (b"\r\n" if crlf else b"\n"))
    return f


@pytest.fixture
def archive(tmp_path) -> Path:
    return make_archive(tmp_path / "ham")


def _run_cli(args, capsys) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _listed(err: str) -> list[str]:
    """The problems a `sei validate` / `sei train` error lists (lines ``  - …``)."""
    return [line[4:] for line in err.splitlines() if line.startswith("  - ")]


def _without_fix(problems: list[str]) -> list[str]:
    """Where and what of each problem, without its ``Fix: …`` (worded per front end)."""
    return [p.split(" Fix: ")[0] for p in problems]


# -- reading the layout --------------------------------------------------------------------------

def test_ids_without_extension_are_found_in_two_folders(archive):
    dirs = [str(archive.parent / p) for p in PARTS]
    v = check(archive, path_column="image_id", label_column="dx", image_dirs=dirs)
    assert v.ok and v.missing == 0 and len(v.data) == 28
    assert v.data.class_counts() == {c: 4 for c in sorted(CODES)}
    assert v.data.ids[0] == "ISIC_0027419"  # the cell, as review keys it
    assert v.data.file_of(0) == archive.parent / PARTS[0] / "ISIC_0027419.jpg"
    assert v.data.file_of(1) == archive.parent / PARTS[1] / "ISIC_0027420.jpg"
    # the folders may be given relative to the label file's folder, and by `--image-ext`
    same = check(archive, path_column="image_id", label_column="dx", image_dirs=list(PARTS), image_ext="jpg")
    assert same.ok and [str(same.data.file_of(i)) for i in range(28)] == [str(v.data.file_of(i)) for i in range(28)]
    wrong = check(archive, path_column="image_id", label_column="dx", image_dirs=list(PARTS), image_ext=".png")
    assert wrong.missing == 28


def test_the_extension_rule_tries_the_cell_as_given_first_then_jpg_before_png(tmp_path):
    for name in ("a", "a.jpg", "a.png", "b.png", "c.jpeg.jpg"):
        (tmp_path / name).write_bytes(b"x")
    files, found = find_images(tmp_path, ["a", "b", "c.jpeg", "d"])
    assert found.tolist() == [True, True, False, False]  # c.jpeg ends in an image extension: only as given
    assert files[:2] == [str(tmp_path / "a"), str(tmp_path / "b.png")]
    files, found = find_images(tmp_path, ["a.jpg", "a.png"])
    assert found.all() and files is None  # every file is where the cell says: no list kept


def test_missing_images_are_reported_as_missing_never_as_an_empty_class(archive, capsys):
    rc, out, err = _run_cli(["validate", archive, *OPTS], capsys)
    assert rc == 1
    listed = _listed(err)
    assert "has no images" not in err and "single class" not in err
    assert len(listed) == dataset.MAX_LISTED + 1  # bounded: the first rows, then the count
    assert listed[0].startswith("HAM10000_metadata.csv line 2 (ISIC_0027419): no image file found for "
                                "'ISIC_0027419': tried 14 paths")
    assert f"'{archive.parent / 'ISIC_0027419.jpg'}'" in listed[0]
    assert "28 rows in all name an image that was not found (8 more besides the 20 listed)" in listed[-1]
    # the fix names the two folders beside the table
    assert "'HAM10000_images_part_1' and 'HAM10000_images_part_2' beside the label file" in listed[-1]
    # leaving them out: every class is said to have lost its images, not to have none
    rc, out, err = _run_cli(["validate", archive, *OPTS, "--skip-unreadable"], capsys)
    assert rc == 1 and "has no images" not in err
    assert "every image of class 'akiec' (4 rows) is missing or unreadable" in err
    assert out.count("left out") == dataset.MAX_LISTED + 1



def make_scattered(root: Path, where: list[str | None]) -> Path:
    """An archive table whose row ``i`` names ``ISIC_{i:07d}`` (no extension), its image in the
    sub-folder ``where[i]`` beside the table (``None``: in no folder at all)."""
    root.mkdir(parents=True)
    rows = [HEADER]
    for i, w in enumerate(where):
        iid = f"ISIC_{i:07d}"
        if w is not None:
            (root / w).mkdir(exist_ok=True)
            Image.new("RGB", (8, 8), "red").save(root / w / f"{iid}.jpg")
        rows.append(f"HAM_{i:07d},{iid},{CODES[i % 2]},histo,40.0,male,back")
    f = root / "HAM10000_metadata.csv"
    f.write_text("\n".join(rows) + "\n")
    return f


def _fix_of(problems: list[str], image_id: str) -> str:
    (line,) = [p for p in problems if f"({image_id}):" in p]
    return line.split(" Fix: ")[1]


def test_each_missing_rows_fix_names_only_the_folders_that_hold_its_image(tmp_path, capsys):
    """A row's fix names the folder its image is in, not every folder some missing image is in,
    and a row whose image is in no folder gets the general fix (it was told "the images seem
    to be in 'HAM10000_images_part_1' and 'other'", a false reason)."""
    part = PARTS[0]
    f = make_scattered(tmp_path / "ham", [part, part, part, "other", None])
    rc, out, err = _run_cli(["validate", f, *OPTS], capsys)
    listed = _listed(err)
    assert rc == 1 and len(listed) == 5
    for iid in ("ISIC_0000000", "ISIC_0000002"):
        fix = _fix_of(listed, iid)
        assert fix.startswith(f"this image seems to be in '{part}' beside the label file: choose it as the image "
                              "folder on the Data page, or pass --image-dir;"), fix
        assert "'other'" not in fix
    fix = _fix_of(listed, "ISIC_0000003")
    assert fix.startswith("this image seems to be in 'other' beside the label file: choose it as the image folder"), fix
    assert part not in fix
    fix = _fix_of(listed, "ISIC_0000004")
    assert "seem" not in fix and part not in fix and "'other'" not in fix
    assert fix.startswith("correct the path") and "--image-dir" in fix and "--image-ext" in fix
    # the page says the same per row, in its words; the offer of folders names both
    v = check(f, path_column="image_id", label_column="dx")
    app = {p.where: p.fix.said(app=True) for p in v.problems}
    assert app["HAM10000_metadata.csv line 5 (ISIC_0000003)"].startswith(
        "this image seems to be in 'other' beside the label file: choose it under “Image folders” on the Data page")
    assert app["HAM10000_metadata.csv line 6 (ISIC_0000004)"].startswith("correct the path")
    assert not any("--" in a for a in app.values())
    assert v.suggested_dirs == [str(f.parent / part), str(f.parent / "other")]


def test_the_count_of_missing_rows_says_how_many_the_folders_beside_hold(tmp_path, capsys):
    """Past the rows listed one by one, the count's fix says how many of all the missing rows
    the folders beside the table hold (counted over every row, not a sample of them)."""
    part = PARTS[0]
    where = [part] * 24 + ["other", None, None]
    f = make_scattered(tmp_path / "ham", where)
    rc, out, err = _run_cli(["validate", f, *OPTS], capsys)
    count = _listed(err)[-1]
    assert count.startswith("HAM10000_metadata.csv: 27 rows in all name an image that was not found "
                            "(7 more besides the 20 listed)")
    fix = count.split(" Fix: ")[1]
    assert fix.startswith(f"25 of them seem to be in '{part}' and 'other' beside the label file: choose them as "
                          "image folders on the Data page, or pass --image-dir for each; for the other 2, correct "
                          "the path"), fix
    # beyond the rows looked at to guess the folders: still every row counted
    many = make_scattered(tmp_path / "many", [part] * 205 + [None] * 9 + ["other"] + [None] * 5)
    v = check(many, path_column="image_id", label_column="dx", check_images="exists")
    assert v.suggested_dirs == [str(many.parent / part)]  # 'other' holds none of the first 200
    fix = str(v.problems[-1].fix)
    assert v.problems[-1].message.startswith("220 rows in all")
    assert fix.startswith(f"205 of them seem to be in '{part}' beside the label file: choose it as the image "
                          "folder on the Data page, or pass --image-dir; for the other 15, correct the path"), fix


def test_the_archive_without_column_options_is_offered_its_likely_columns(tmp_path, capsys):
    """`sei validate HAM10000_metadata.csv` without --path-column/--label-column names the
    columns the Data page would guess (image_id, dx) in the fix, and uses neither."""
    f = make_scattered(tmp_path / "ham", [PARTS[0]] * 3)
    rc, out, err = _run_cli(["validate", f], capsys)
    (problem,) = _listed(err)
    assert rc == 1 and "has no column 'path' or 'label'; its columns are 'lesion_id', 'image_id'" in problem
    assert problem.endswith("Fix: pick the path and label columns on the Data page, or pass --path-column and "
                            "--label-column (e.g. --path-column image_id --label-column dx)"), problem
    v = check(f)
    (p,) = v.problems
    assert p.fix.said(app=True) == ("pick the path and label columns on the Data page "
                                    "(e.g. path column “image_id”, label column “dx”)")
    assert v.data is None  # suggested, not used


@pytest.mark.slow
def test_validate_and_train_accept_the_archive_with_its_folders(archive, tmp_path, capsys, tiny_train):
    dirs = ["--image-dir", archive.parent / PARTS[0], "--image-dir", archive.parent / PARTS[1]]
    rc, out, err = _run_cli(["validate", archive.parent, *OPTS, *dirs], capsys)  # the folder opens as its table
    assert rc == 0 and "(HAM10000_metadata.csv in that folder): 28 images, 7 classes" in out
    assert "no problems" in out
    run = tmp_path / "runs" / "ham"
    tiny = {**tiny_train, "epochs": 1, "batch_size": 8, "image_size": 32}
    train = ["train", archive.parent, *OPTS, *dirs, "--out", run, "--no-progress"] + \
        [x for k, v in tiny.items() for x in (f"--{k.replace('_', '-')}", v)]
    rc, out, err = _run_cli(train, capsys)
    assert rc == 0, err
    cfg = Run(run).config()
    assert cfg["data"] == str(archive) and cfg["image_dirs"] == [str(archive.parent / p) for p in PARTS]
    assert cfg["path_column"] == "image_id" and cfg["label_column"] == "dx"
    # the review writes into HAM10000_metadata.csv itself: its dx cell of that row and the review columns
    assert review_label_file(Run(run)) == archive
    before = archive.read_bytes()
    with ReviewStore(archive, classes=cfg["classes"], **review_columns(Run(run))) as store:
        store.relabel("ISIC_0027421", "mel", "dr-a", expected_label="bkl")
        store.confirm("ISIC_0027419", "dr-a", expected_label="nv")
    after = archive.read_bytes().decode().splitlines()
    old = before.decode().splitlines()
    assert after[0].startswith(HEADER + ",")  # the review columns come after the user's
    assert after[3].startswith(old[3].replace(",bkl,", ",mel,") + ",")
    assert after[1].startswith(old[1] + ",") and after[5].startswith(old[5])
    assert [line.split(",")[:7] for line in after[6:]] == [line.split(",") for line in old[6:]]


def test_a_table_in_a_crlf_file_keeps_its_bytes_where_nothing_changed(tmp_path):
    archive = make_archive(tmp_path / "ham", n=14, crlf=True)
    v = check(archive, path_column="image_id", label_column="dx", image_dirs=list(PARTS))
    assert v.ok
    raw = archive.read_bytes()
    with ReviewStore(archive, classes=v.data.classes, path_column="image_id", label_column="dx") as store:
        store.relabel("ISIC_0027420", "nv", "dr-b", expected_label="mel")
    new = archive.read_bytes()
    assert new.count(b"\r\n") == raw.count(b"\r\n") and b"\n" not in new.replace(b"\r\n", b"")
    assert new.split(b"\r\n")[2].startswith(raw.split(b"\r\n")[2].replace(b",mel,", b",nv,"))


def test_folder_with_one_table_opens_as_that_table_and_an_image_folder_says_what_to_do(archive):
    v = check(archive.parent, path_column="image_id", label_column="dx", image_dirs=list(PARTS))
    assert v.ok and v.source == archive and v.data.kind == "csv"
    flat = check(archive.parent / PARTS[0])
    assert not flat.ok and "no sub-folders" in str(flat.problems[0])
    assert dataset.table_in_folder(archive.parent / PARTS[0]) is None


def test_the_data_page_points_at_the_image_folders_it_offers(open_app, archive):
    """Without its image folders the archive's table cannot be used: the page offers the folders
    beside it in plain words and says that choosing them is the fix (not "fix the file")."""
    at = open_app()
    at.text_input(key="data_path_input").input(str(archive.parent)).run()
    at.button[0].click().run()
    at.selectbox(key="pick_path_column").select("image_id").run()
    at.selectbox(key="pick_label_column").select("dx").run()
    at.button(key="use_columns").click().run()
    assert not at.exception
    offer = " ".join(i.value for i in at.info).replace("\\", "")
    assert "28 rows name an image that was not found where the label file says, and the folders " \
           "“HAM10000_images_part_1”, “HAM10000_images_part_2” beside it hold such images" in offer
    assert "(s)" not in offer
    said = " ".join(e.value for e in at.error)
    assert "Choose the image folders above" in said and "Fix the file" not in said
    at.button(key="use_guess").click().run()
    assert not at.error and not at.exception


def test_a_folder_in_the_address_opens_as_the_table_it_holds(open_app, archive):
    """``?data=FOLDER`` (a bookmark, a link) opens the archive's table as typing the folder does,
    instead of reading the folder as a label file (it said "has no column 'path' or 'label'"
    and offered no column menus)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.query_params["data"] = str(archive.parent)
    at.switch_page("pages/data.py").run()
    assert not at.exception
    assert at.session_state["data"]["path"] == str(archive)
    assert at.selectbox(key="pick_path_column").value == "image_id"
    assert workspace.data_choice(archive.parent / PARTS[0])["path"] == str(archive.parent / PARTS[0])  # no table


# -- one report from sei validate, the Data page and sei train ---------------------------------------

def _fixtures(root: Path) -> dict[str, tuple[Path, list[str]]]:
    """Bad data sets of several kinds: (label file, the column options) by name."""
    out = {}
    ham = make_archive(root / "ham")
    out["archive without its folders"] = (ham, OPTS)
    few = root / "few"
    few.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (8, 8), "red").save(few / name)
    (few / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (few / "labels.csv").write_text("path,label\na.png,x\nb.png,y\nc.png,y\ngone.png,x\nbroken.png,y\n")
    out["one missing, one corrupt"] = (few / "labels.csv", [])
    (few / "rows.csv").write_text("path,label\na.png,\nb.png,y\nmissing.png,x\nc.png,x\n")
    out["a bad row and a missing image"] = (few / "rows.csv", [])
    (few / "only.csv").write_text("path,label\na.png,x\nmissing.png,y\n")
    out["a class whose only image is missing"] = (few / "only.csv", [])
    return out


def _page_problems(open_app, f: Path, opts: list[str]) -> list[str]:
    at = open_app()
    at.text_input(key="data_path_input").input(str(f)).run()
    at.button[0].click().run()
    if opts:
        at.selectbox(key="pick_path_column").select(opts[1]).run()
        at.selectbox(key="pick_label_column").select(opts[3]).run()
        at.button(key="use_columns").click().run()
    assert not at.exception
    found = []
    for d in at.dataframe:
        t = d.value
        if "where" in t and "how to fix" in t:
            found += [f"{w}: {p}." + (f" Fix: {x}" if x else "") for w, p, x, s in
                      zip(t["where"], t["problem"], t["how to fix"], t["severity"]) if s == "error"]
    return found


@pytest.mark.slow
def test_every_fixture_gets_the_same_problems_from_validate_the_data_page_and_train(
        tmp_path, capsys, open_app, tiny_train):
    for name, (f, opts) in _fixtures(tmp_path / "fixtures").items():
        rc, _, err = _run_cli(["validate", f, *opts], capsys)
        said = _listed(err)
        assert rc == 1 and said, name
        assert not any(re.search(r"has no images|single class", s) for s in said), (name, said)
        rc, _, err = _run_cli(["train", f, *opts, "--out", tmp_path / "runs" / re.sub(r"\W", "-", name),
                               "--no-progress", "--epochs", "1", "--model", tiny_train["model"],
                               "--image-size", "32"], capsys)
        assert rc == 1
        assert _listed(err) == said, name
        # the same problems, each with its fix in the words of its front end (a flag on the
        # command line, a control on the page)
        shown = _page_problems(open_app, f, opts)
        assert sorted(_without_fix(shown)) == sorted(_without_fix(said)), name
        assert not any("--" in p for p in shown), (name, shown)


# -- class names ----------------------------------------------------------------------------------

def test_class_names_are_used_in_prompts_and_kept_in_prompts_json(archive):
    v = check(archive, path_column="image_id", label_column="dx", image_dirs=list(PARTS))
    names = known_names(v.data.classes)
    assert names["nv"] == "melanocytic nevus" and names["akiec"] == "actinic keratosis / intraepithelial carcinoma"
    assert known_names(["cat", "dog", "nv"]) == {}  # not ISIC codes
    saved = workspace.save_prompts(v.data, Prompts(template="A dermoscopic image showing {}.", names=names))
    assert json.loads(saved.read_text())["names"]["df"] == "dermatofibroma"
    p = v.data.prompts()
    prompts = p.for_classes(v.data.classes)
    assert prompts[v.data.classes.index("nv")] == "A dermoscopic image showing melanocytic nevus."
    assert p.name("vasc") == "vascular lesion" and p.name("other") == "other"
    assert "nv" in archive.read_text()  # the label file keeps its codes


def test_an_export_of_decisions_names_each_code(archive, tmp_path):
    names = {"nv": "melanocytic nevus", "mel": "melanoma"}
    v = check(archive, path_column="image_id", label_column="dx", image_dirs=list(PARTS))
    with ReviewStore(archive, classes=v.data.classes, path_column="image_id", label_column="dx") as store:
        store.relabel("ISIC_0027419", "mel", "dr-a", expected_label="nv")
        store.export_clean(tmp_path / "clean.csv", class_names=names)
    lines = (tmp_path / "clean.csv").read_text().splitlines()
    assert lines[0].endswith(",dx_name")
    assert lines[1].split(",")[2] == "mel" and lines[1].endswith(",melanoma")
    assert lines[3].split(",")[2] == "bkl" and lines[3].endswith(",bkl")  # no name: the code


# -- failed runs ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_failed_run_that_trained_nothing_does_not_block_its_folder(archive, tmp_path, capsys, tiny_train):
    out = tmp_path / "runs" / "again"
    base = ["train", archive, *OPTS, "--out", out, "--no-progress", "--epochs", "1", "--batch-size", "8",
            "--model", tiny_train["model"], "--image-size", "32"]
    rc, _, err = _run_cli(base, capsys)
    assert rc == 1 and "no image file found" in err
    assert Run(out).status()["state"] == "failed" and Run(out).trained_nothing()
    rc, _, err = _run_cli(base + ["--image-dir", archive.parent / PARTS[0], "--image-dir", archive.parent / PARTS[1]],
                          capsys)
    assert rc == 0, err
    assert Run(out).status()["state"] == "finished" and not Run(out).trained_nothing()
    rc, _, err = _run_cli(base, capsys)  # a finished run is kept
    assert rc == 1 and "already holds a run (finished)" in err


def test_a_failed_run_with_epochs_says_how_to_continue(tmp_path, capsys, tiny_data):
    run = Run(tmp_path / "r")
    run.write_config({"data": str(tiny_data), "epochs": 2})
    run.update_status(state="failed", error="out of memory", history=[{"run": 1, "epoch": 1}])
    rc, _, err = _run_cli(["train", tiny_data, "--out", run.path, "--epochs", "1"], capsys)
    assert rc == 1 and "failed after training 1 epoch(s) (out of memory)" in err
    assert f"`sei resume {run.path}`" in err and run.config()["epochs"] == 2


def test_the_newest_finished_run_is_chosen(tmp_path, tiny_data):
    runs = []
    for name, state in (("new-failed", "failed"), ("older-finished", "finished"), ("oldest", "finished")):
        r = Run(tmp_path / name)
        r.write_config({"data": str(tiny_data)})
        r.update_status(state=state)
        runs.append(r)
    assert workspace.newest_finished(runs, tiny_data).name == "older-finished"
    assert workspace.newest_finished(runs[:1], tiny_data) is None
    assert workspace.newest_finished(runs, tmp_path / "other.csv") is None


def test_explore_opens_the_newest_finished_run_and_the_address_keeps_the_choice(open_app, app_env):
    from streamlit.testing.v1 import AppTest

    failed = app_env.runs / "zz-failed"
    failed.mkdir()
    (failed / "config.json").write_text((app_env.run / "config.json").read_text())  # the newest run
    Run(failed).update_status(state="failed", error="weights missing")
    at = open_app("pages/explore.py")
    assert at.sidebar.selectbox(key="run_name").value == app_env.run.name  # not the newer failed one
    assert at.query_params["run"] == app_env.run.name
    root = Path(__file__).resolve().parent.parent
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    at.query_params["run"] = "zz-failed"  # straight to /train?run=…, as a reload of the page
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert at.sidebar.selectbox(key="run_name").value == "zz-failed"
    said = " ".join(e.value for e in at.error) + " ".join(i.value for i in at.info)
    assert "Training failed: weights missing" in said and "Nothing was trained yet" in said


def test_data_without_runs_of_its_own_opens_a_finished_run_not_a_newer_failed_one(open_app, app_env, archive):
    """A data set that has no runs yet: the sidebar falls back to the newest *finished* run
    (of another data set, said so), not to the newest run of all, which had failed."""
    from streamlit.testing.v1 import AppTest

    failed = Run(app_env.runs / "zz-failed")
    failed.write_config({"data": str(app_env.labels)})
    failed.update_status(state="failed", error="weights missing")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.query_params["data"] = str(archive)
    at.switch_page("pages/explore.py").run()
    assert not at.exception
    assert at.sidebar.selectbox(key="run_name").value == app_env.run.name
    assert at.query_params["run"] == app_env.run.name


def test_the_train_page_offers_the_failed_runs_name_it_says_a_new_run_replaces(open_app, app_env):
    """A run that failed before training anything: "a new run named X replaces this one", and
    the new-run form suggests X for the same data (not X's successor, beside the failed run)."""
    from streamlit.testing.v1 import AppTest

    failed = Run(app_env.runs / "my-first-try")
    failed.write_config({**json.loads((app_env.run / "config.json").read_text())})
    failed.update_status(state="failed", error="no image file found for 'ISIC_0027419'")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.query_params["run"] = "my-first-try"
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert "a new run named my\\-first\\-try replaces this one" in " ".join(i.value for i in at.info)
    assert at.text_input(key="tr_name").placeholder == "my-first-try"
    at.sidebar.selectbox(key="run_name").select(app_env.run.name).run()  # a finished run selected: a fresh name
    assert not at.exception
    assert at.text_input(key="tr_name").placeholder not in ("my-first-try", app_env.run.name)


def test_a_training_error_is_said_in_the_pages_words(open_app, app_env):
    from streamlit.testing.v1 import AppTest

    from sei_core.models import ModelError, build_model

    with pytest.raises(ModelError) as e:  # offline: the weights cannot be downloaded
        build_model("RN50", ["a", "b", "c"], weights="openai", image_size=64)
    assert "--weights none" in str(e.value) and "--weights /path/to/file" in str(e.value)
    failed = app_env.runs / "zz-failed"
    failed.mkdir()
    (failed / "config.json").write_text((app_env.run / "config.json").read_text())
    Run(failed).mark_failed(e.value)
    root = Path(__file__).resolve().parent.parent
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    at.query_params["run"] = "zz-failed"
    at.switch_page("pages/train.py").run()
    assert not at.exception
    said = " ".join(x.value.replace("\\", "") for x in at.error)
    assert "Training failed: could not download the 'openai' weights of RN50" in said
    assert "Weights “none”" in said and "“local checkpoint”" in said and "--" not in said
