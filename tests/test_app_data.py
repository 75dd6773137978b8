"""AppTest: the Data page (choose, validate, thumbnails, prompts) and the shared sidebar."""

import json
import time

import pytest
from PIL import Image

from pages._common import md
from sei_core import workspace


def _values(elements):
    return [e.value for e in elements]


def test_opens_the_recent_data_set_with_counts_thumbnails_and_report(open_app, app_env):
    at = open_app()  # the default page is Data
    assert at.title[0].value == "Data"
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "48" and metrics["Classes"] == "4" and metrics["Problems"] == "0"
    done = [s.value for s in at.success]
    assert any(v.startswith("Checked: every row has a path and a label, every image file exists") for v in done)
    assert "Every image opens (48 checked)." in done  # a small data set: every image opened at once
    assert len(at.image) >= 4  # thumbnails
    assert len(at.tabs) == 4  # one thumbnail tab per class
    assert "truth.csv" in _values(at.text)
    # the sidebar names the data set and selects the run
    assert at.sidebar.selectbox(key="run_name").value == app_env.run.name


def test_open_other_data_and_recent_list(open_app, app_env, tmp_path):
    at = open_app()
    at.text_input(key="data_path_input").input(str(tmp_path / "nowhere.csv")).run()
    at.button[0].click().run()  # Open
    assert any("Nothing found" in e.value for e in at.error)
    folder = tmp_path / "folder"
    for c in ("cat", "dog"):
        (folder / c).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (8, 8), "red").save(folder / c / f"{k}.png")
    at.text_input(key="data_path_input").input(str(folder)).run()
    at.button[0].click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Kind"] == "image folder"
    recent = json.loads((app_env.runs / "recent.json").read_text())["data"]
    assert [r["path"] for r in recent] == [str(folder), str(app_env.labels)]


def test_validation_report_lists_every_problem_with_row_and_fix(open_app, app_env):
    bad = app_env.data / "bad.csv"
    bad.write_text("path,label\nimages/a.png,\n,nevus\nimages/a.png,nevus,extra\n")
    at = open_app()
    at.text_input(key="data_path_input").input(str(bad)).run()
    at.button[0].click().run()
    assert not at.exception
    assert any("3 problem(s)" in e.value for e in at.error)
    table = at.dataframe[0].value
    assert list(table.columns[:3]) == ["where", "problem", "how to fix"]
    assert {"bad.csv line 2", "bad.csv line 3", "bad.csv line 4"} <= set(table["where"])


def add_broken_image(app_env, *rows: str) -> None:
    """An image file that is not an image (``images/broken.png``), labelled in the label file,
    then the label-file ``rows`` given."""
    (app_env.data / "images" / "broken.png").write_bytes(b"not a png")
    with open(app_env.labels, "a") as f:
        f.write("".join(f"{r}\n" for r in ("images/broken.png,nevus,P1", *rows)))


def test_unreadable_images_are_reported_and_outside_paths_not_shown(open_app, app_env):
    secret = app_env.root / "secret.png"
    Image.new("RGB", (8, 8), "blue").save(secret)
    add_broken_image(app_env, "../secret.png,nevus,P2")
    at = open_app()
    assert not at.exception
    assert any("cannot be read" in w.value for w in at.warning)
    problems = [d.value for d in at.dataframe]
    assert any("broken.png" in " ".join(map(str, t["where"])) for t in problems if "where" in t)
    # the thumbnail of the row pointing outside the data folder is refused, not shown
    assert any("outside the data folder" in w.value for w in at.warning)


def test_prompts_are_saved_beside_the_data(open_app, app_env):
    at = open_app()
    form_inputs = [t for t in at.text_input if t.label.startswith("Template")]
    form_inputs[0].input("A close-up photo of {}.")
    [t for t in at.text_input if t.label == "Auxiliary prompt"][0].input("A photo of other skin.")
    [b for b in at.button if b.label == "Save names and prompts"][0].click().run()
    assert not at.exception and not at.error
    saved = json.loads((app_env.data / "prompts.json").read_text())
    assert saved["template"] == "A close-up photo of {}." and saved["aux_prompt"] == "A photo of other skin."
    # a template without {} is refused with a message
    [t for t in at.text_input if t.label.startswith("Template")][0].input("no placeholder")
    [b for b in at.button if b.label == "Save names and prompts"][0].click().run()
    assert any("needs {}" in e.value for e in at.error)


@pytest.mark.slow
def test_bundled_sample_data_is_generated_when_nothing_was_chosen(open_app, app_env, monkeypatch, tmp_path):
    (app_env.runs / "recent.json").unlink()
    monkeypatch.setattr(workspace, "SAMPLE_DIR", tmp_path / "sample")
    at = open_app()
    assert not at.exception
    assert (tmp_path / "sample" / "labels.csv").is_file()
    assert {m.label: m.value for m in at.metric}["Images"] == "400"


def test_markdown_is_escaped():
    assert md("**x** <b>y</b> :red[z] $a$") == r"\*\*x\*\* \<b\>y\</b\> \:red\[z\] \$a\$"
    assert md("a\nb") == "a  \nb"


def test_a_broken_file_in_one_tab_leaves_other_tabs_and_the_recent_list_alone(open_app, app_env):
    """The data choice belongs to a browser session (carried in the page address); only data
    sets that opened are remembered."""
    bad = app_env.data / "bad.csv"
    bad.write_text("path,label\nimages/a.png,\n")
    one, other = open_app(), open_app()
    one.text_input(key="data_path_input").input(str(bad)).run()
    one.button[0].click().run()
    assert any("problem(s)" in e.value for e in one.error)
    assert one.query_params["data"] == str(bad)
    recent = json.loads((app_env.runs / "recent.json").read_text())["data"]
    assert [r["path"] for r in recent] == [str(app_env.labels)]  # the broken file is not remembered
    other.run()  # the other tab, and a new one, still show the data set that opened
    assert not other.error and other.session_state["data"]["path"] == str(app_env.labels)
    assert open_app().session_state["data"]["path"] == str(app_env.labels)


@pytest.mark.slow  # trains in another process (interpreter, torch and training each time)
def test_a_label_file_with_other_column_names_is_mapped_and_trained_with_them(open_app, app_env):
    """`image_id;diagnosis;age`: the page offers the file's columns (guesses first), and once they
    are picked the data set is valid, remembered with its columns, and trained with them."""
    from conftest import write_mapped_labels
    from sei_core import jobs
    from sei_core.runs import Run

    f = write_mapped_labels(app_env.labels, app_env.data / "derm.csv")
    at = open_app()
    at.text_input(key="data_path_input").input(str(f)).run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    said = " ".join(i.value for i in at.info).replace("\\", "")  # markdown escapes removed
    assert "no column 'path' or 'label'" in said and "'image_id', 'diagnosis' and 'age'" in said
    assert "[" not in said  # column names in words, not Python lists
    pick_path, pick_label = at.selectbox(key="pick_path_column"), at.selectbox(key="pick_label_column")
    assert pick_path.options[0] == "image_id" and pick_label.options[0] == "diagnosis"  # the guesses
    assert sorted(pick_path.options) == sorted(pick_label.options) == ["age", "diagnosis", "image_id"]
    assert not at.metric  # nothing loaded until the columns are picked
    pick_label.select("age").run()  # the user's pick survives reruns
    assert at.selectbox(key="pick_label_column").value == "age"
    at.selectbox(key="pick_label_column").select("diagnosis")
    at.button(key="use_columns").click().run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "48" and metrics["Classes"] == "4" and metrics["Problems"] == "0"
    assert any(s.value.startswith("Checked: every row has a path and a label") for s in at.success)
    assert any("Every image opens (48 checked)" in s.value for s in at.success)
    assert at.query_params["label_column"] == "diagnosis"
    recent = json.loads((app_env.runs / "recent.json").read_text())["data"]
    assert recent[0] == {"path": str(f), "split": "train", "path_column": "image_id", "label_column": "diagnosis",
                         "image_dirs": [], "image_ext": None}
    assert workspace.remembered_columns(f) == {"path_column": "image_id", "label_column": "diagnosis",
                                             "image_dirs": [], "image_ext": None}
    # the same two columns picked twice are refused in words
    at.selectbox(key="pick_path_column").select("diagnosis")
    at.button(key="use_columns").click().run()
    assert any("two different columns" in e.value for e in at.error)
    # the Train page starts a run with the columns (recorded in its config.json)
    at.switch_page("pages/train.py").run()
    assert not at.exception
    at.number_input(key="tr_epochs").set_value(1)
    at.text_input(key="tr_name").input("mapped")
    [b for b in at.button if b.label == "Start training"][0].click().run()
    run = Run(app_env.runs / "mapped")
    try:
        cfg = run.config()
        assert (cfg["data"], cfg["path_column"], cfg["label_column"]) == (str(f), "image_id", "diagnosis")
    finally:  # the background process: stopped once it holds the run (or has finished)
        deadline = time.monotonic() + 120
        while not run.is_locked() and run.status().get("state") in (None, "created") and time.monotonic() < deadline:
            time.sleep(0.1)
        jobs.stop(run)


def test_the_page_address_carries_the_columns(app_env, open_app):
    """A reload (or a shared link) with ``?data=…&path_column=…&label_column=…`` opens the data set
    with its columns, without asking again; so does a new session, and the recent list shows them."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from conftest import write_mapped_labels

    f = write_mapped_labels(app_env.labels, app_env.data / "derm.csv")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.query_params.update(data=str(f), path_column="image_id", label_column="diagnosis")
    at.switch_page("pages/data.py").run()  # straight to /data?data=…, as a reload of the page
    assert not at.exception and not at.error and not at.info
    assert {m.label: m.value for m in at.metric}["Images"] == "48"
    assert at.session_state["data"]["label_column"] == "diagnosis"
    fresh = open_app()  # a new session starts on the data set that opened last, with its columns
    assert not fresh.info and fresh.session_state["data"]["label_column"] == "diagnosis"
    fresh.text_input(key="data_path_input").input(str(app_env.labels)).run()
    fresh.button[0].click().run()
    assert fresh.session_state["data"]["label_column"] == "label" and not fresh.error
    menu = [b for b in fresh.selectbox if b.label == "Recently opened"][0]
    assert f"{f} (paths: image_id, labels: diagnosis)" in menu.options


def test_a_large_data_set_opens_at_once_and_every_image_is_opened_in_the_background(open_app, app_env, monkeypatch):
    import time

    import pages._common as common

    monkeypatch.setattr(common, "OPEN_AT_ONCE", 10)  # the 50 images below count as "large"
    add_broken_image(app_env, "images/gone.png,nevus,P2")
    at = open_app()
    assert not at.exception
    # what was checked at once: the rows and that each file exists (gone.png does not) ...
    assert any("1 row(s) name an image that was not found" in e.value.replace("\\", "") for e in at.error)
    assert any("gone.png" in " ".join(map(str, d.value["where"])) for d in at.dataframe if "where" in d.value)
    fixes = " ".join(" ".join(d.value["how to fix"]) for d in at.dataframe if "how to fix" in d.value)
    assert "“Image folders” on the Data page" in fixes and "--" not in fixes  # the app's words, not flags
    # ... and what was not yet: whether each image opens
    assert any("Not checked yet" in i.value for i in at.info)
    assert not any("broken.png" in " ".join(map(str, d.value["where"])) for d in at.dataframe if "where" in d.value)
    at.button(key="check_images").click().run()
    check = common.image_check({"path": str(app_env.labels)})
    deadline = time.monotonic() + 60
    while not check.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert check.finished
    at.run()
    assert any("cannot be read" in w.value for w in at.warning)
    assert any("broken.png" in " ".join(map(str, d.value["where"])) for d in at.dataframe if "where" in d.value)
    assert {m.label: m.value for m in at.metric}["Problems"] == "2"
