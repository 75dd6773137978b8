"""AppTest: the Review page — every action, its effect on the label file and the decision log,
conflicts between reviewers, undo, filters, export, and review of a folder data set."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from pages._common import md
from sei_core.ranking import score_run
from sei_core.review import ReviewStore
from sei_core.runs import Run

REVIEW = "pages/review.py"
ME = "Dr. Test"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """This module's data: conftest's tiny set with 30 % label noise instead of 15 %, so that the
    4-epoch run flags enough images to review (16 of 48; with 15 % the balanced threshold of a
    class slightly rarer than the auxiliary class left one)."""
    from sample_data.make_sample_data import generate

    return generate(tmp_path_factory.mktemp("tiny-review"), n_per_class=12, image_size=32, noise_rate=0.3, seed=1)


@pytest.fixture(scope="module")
def trained_run(tiny_data, tmp_path_factory):
    """conftest's trained run, on this module's data."""
    from conftest import train_args
    from sei_core import cli

    out = tmp_path_factory.mktemp("runs-review") / "first"
    assert cli.main(train_args(tiny_data, out)) == 0
    return out


def labels(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False).set_index("path")


def queue(run_path) -> list[str]:
    s = score_run(Run(run_path))
    idx = np.flatnonzero(s.flagged)
    return [s.ids[i] for i in idx[np.argsort(s.score[idx], kind="stable")]]


def open_review(open_app, name=ME, audit_share=0.0):
    """The Review page; random checks off unless ``audit_share`` (so the order is the ranking's)."""
    at = open_app(REVIEW)
    at.session_state["review_audit_share"] = audit_share
    if name:
        at.text_input(key="reviewer").input(name).run()
    else:
        at.run()
    assert not at.exception
    return at


def current(at) -> str:
    return at.session_state["review_current"]


def progress_text(at) -> str:
    return at.get("progress")[0].proto.text


@pytest.fixture
def flagged(app_env):
    q = queue(app_env.run)
    if len(q) < 3:
        pytest.skip("the tiny run flagged fewer than 3 images")
    return q


def test_queue_starts_with_the_most_suspicious_and_needs_a_name(open_app, app_env, flagged):
    at = open_review(open_app, name=None)
    assert current(at) == flagged[0]
    assert at.button(key="act_confirm").disabled
    assert any("Enter your name" in w.value for w in at.warning)
    assert progress_text(at).startswith(f"Reviewed 0 of {len(flagged)}")
    assert any(h.value == md(flagged[0].split("/")[-1]) for h in at.subheader)


def test_confirm_writes_the_label_file_and_the_log_at_once(open_app, app_env, flagged):
    before = labels(app_env.labels)
    at = open_review(open_app)
    first = current(at)
    at.button(key="act_confirm").click().run()
    assert not at.exception and not at.error
    after = labels(app_env.labels)
    row = after.loc[first]
    assert (row["label"], row["review_status"], row["reviewed_by"]) == (before.loc[first, "label"], "confirmed", ME)
    assert row["original_label"] == before.loc[first, "label"]
    log = ReviewStore(app_env.labels).decisions()
    assert [(d.reviewer, d.path, d.action) for d in log] == [(ME, first, "confirm")]
    s = score_run(Run(app_env.run))
    assert log[0].sei == pytest.approx(s.sei[s.ids.index(first)])  # the log keeps the paper's SEI
    assert current(at) == flagged[1]  # moved on to the next image
    assert progress_text(at).startswith(f"Reviewed 1 of {len(flagged)}")
    assert any("Saved" in m.value for m in at.success)


def test_the_estimate_says_what_the_decisions_so_far_say_about_it(open_app, app_env, flagged):
    at = open_review(open_app)
    at.button(key="act_confirm").click().run()
    text = " ".join(c.value for c in at.caption)
    # one decision, no random check decided yet: the model's estimate, said to be one
    assert md("0 wrong labels found in 1 decisions") in text
    assert md("Too few images picked at random are decided yet (0; 10 needed)") in text
    assert md("stop after 58 correct labels in a row") in text


def test_backup_of_the_untouched_original_is_made_once(open_app, app_env, flagged):
    original = app_env.labels.read_bytes()
    at = open_review(open_app)
    at.button(key="act_discard").click().run()
    at.button(key="act_confirm").click().run()
    backup = app_env.labels.with_name(app_env.labels.name + ".sei-backup")
    assert backup.read_bytes() == original


def test_relabel_keeps_the_original_label_and_undo_restores_it(open_app, app_env, flagged):
    at = open_review(open_app)
    first = current(at)
    s = score_run(Run(app_env.run))
    old = labels(app_env.labels).loc[first, "label"]
    k = next(j for j, c in enumerate(s.classes) if c != old)
    at.button(key=f"relabel_to_{k}").click().run()
    row = labels(app_env.labels).loc[first]
    assert (row["label"], row["original_label"], row["review_status"]) == (s.classes[k], old, "relabeled")
    at.button(key="act_undo").click().run()
    assert not at.exception and not at.error
    row = labels(app_env.labels).loc[first]
    assert (row["label"], row["review_status"], row["reviewed_by"]) == (old, "", "")
    log = ReviewStore(app_env.labels).decisions()
    assert [(d.action, d.undone) for d in log] == [("relabel", True), ("undo", False)]
    assert (log[0].old_label, log[0].new_label) == (old, s.classes[k])
    assert current(at) == first  # undo shows the image again


def test_discard_marks_the_row_skip_writes_nothing_and_export_leaves_discarded_out(open_app, app_env, flagged):
    at = open_review(open_app)
    first = current(at)
    at.button(key="act_discard").click().run()
    df = labels(app_env.labels)
    assert first in df.index and df.loc[first, "review_status"] == "discarded"
    second = current(at)
    snapshot = app_env.labels.read_bytes()
    at.button(key="act_skip").click().run()
    assert app_env.labels.read_bytes() == snapshot
    assert current(at) not in (first, second)
    at.text_input(key="export_path").input(str(app_env.root / "clean.csv")).run()
    at.button(key="export").click().run()
    assert not at.exception and not at.error
    clean = labels(app_env.root / "clean.csv")
    # image paths are rewritten for the export's folder, so they reach the same files from there
    rel = app_env.labels.parent.relative_to(app_env.root).as_posix()
    there = {sid: sid if rel == "." else f"{rel}/{sid}" for sid in (first, second)}
    assert there[first] not in clean.index and there[second] in clean.index
    assert all((app_env.root / p).is_file() for p in clean.index)
    assert len(clean) == len(df) - 1
    assert at.get("download_button")


def test_a_conflicting_decision_from_another_reviewer_is_shown_not_swallowed(open_app, app_env, flagged):
    at = open_review(open_app)
    first = current(at)
    s = score_run(Run(app_env.run))
    other = ReviewStore(app_env.labels, classes=s.classes)
    shown = labels(app_env.labels).loc[first, "label"]
    theirs = next(c for c in s.classes if c != shown)
    other.relabel(first, theirs, "Dr. Other", expected_label=shown)  # e.g. from another browser tab
    at.button(key="act_discard").click().run()
    assert not at.exception
    row = labels(app_env.labels).loc[first]
    assert (row["label"], row["review_status"], row["reviewed_by"]) == (theirs, "relabeled", "Dr. Other")
    assert any("Someone else decided" in w.value for w in at.warning)
    shown_text = [m.value.replace("\\", "") for m in at.markdown]  # Markdown-escaped on screen
    assert any("Dr. Other" in t and "relabeled" in t for t in shown_text)
    assert current(at) == first
    at.button(key="force_conflict").click().run()
    row = labels(app_env.labels).loc[first]
    assert (row["review_status"], row["reviewed_by"]) == ("discarded", ME)
    actions = [(d.reviewer, d.action) for d in ReviewStore(app_env.labels).decisions()]
    assert actions == [("Dr. Other", "relabel"), (ME, "discard")]


def test_keep_theirs_leaves_the_other_decision(open_app, app_env, flagged):
    at = open_review(open_app)
    first = current(at)
    other = ReviewStore(app_env.labels)
    other.confirm(first, "Dr. Other", expected_label=labels(app_env.labels).loc[first, "label"])
    at.button(key="act_confirm").click().run()
    assert any("Someone else decided" in w.value for w in at.warning)
    at.button(key="keep_theirs").click().run()
    assert not any("Someone else decided" in w.value for w in at.warning)
    assert labels(app_env.labels).loc[first, "reviewed_by"] == "Dr. Other"


def test_filters_by_state_and_class(open_app, app_env, flagged):
    at = open_review(open_app)
    first = current(at)
    at.button(key="act_confirm").click().run()
    at.selectbox(key="review_state").select("confirmed").run()
    assert current(at) == first
    assert at.session_state["_review_filtered"] == [first]
    at.selectbox(key="review_state").select("to review").run()
    assert first not in at.session_state["_review_filtered"]
    s = score_run(Run(app_env.run))
    k = s.classes.index(s.classes[s.labels[s.ids.index(flagged[1])]])
    at.selectbox(key="review_class").select(k).run()
    assert all(s.labels[s.ids.index(i)] == k for i in at.session_state["_review_filtered"])


def test_review_of_an_image_folder_uses_a_label_file_made_for_the_run(open_app, app_env, flagged):
    # turn the CSV data set into an image folder and point a copy of the run at it
    folder = app_env.root / "folder"
    df = labels(app_env.labels)
    run = Run(app_env.runs / "folder-run")
    shutil.copytree(app_env.run, run.path)
    ids, names = run.samples()
    new_ids = []
    for sid, lab in zip(ids, names):
        dst = folder / lab / sid.split("/")[-1]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(app_env.data / sid, dst)
        new_ids.append(f"{lab}/{dst.name}")
    run.write_samples(new_ids, names)
    cfg = json.loads((run.path / "config.json").read_text())
    cfg["data"] = str(folder)
    (run.path / "config.json").write_text(json.dumps(cfg))
    (app_env.runs / "recent.json").write_text(json.dumps({"data": [{"path": str(folder), "split": "train"}]}))
    at = open_review(open_app)
    assert at.sidebar.selectbox(key="run_name").value == "folder-run"
    first = current(at)
    at.button(key="act_confirm").click().run()
    assert not at.exception and not at.error
    made = labels(run.path / "labels.csv")
    assert made.loc[first, "review_status"] == "confirmed"
    assert (folder / first).is_file()  # the images are untouched
    assert labels(app_env.labels).equals(df)  # and so is the other data set's CSV
    assert str(run.path / "labels.csv") in [c.value for c in at.code]


def test_class_names_are_shown_as_text(open_app, app_env, flagged):
    """A label such as '**x** <b>' must appear literally, not as Markdown or HTML."""
    run = Run(app_env.run)
    cfg = run.config()
    evil = "**bold** <b>x</b>"
    old = cfg["classes"][0]
    cfg["classes"][0] = evil
    run.write_config(cfg)
    ids, names = run.samples()
    run.write_samples(ids, [evil if n == old else n for n in names])
    df = pd.read_csv(app_env.labels, dtype=str, keep_default_na=False)
    df["label"] = df["label"].replace(old, evil)
    df.to_csv(app_env.labels, index=False)
    at = open_review(open_app)
    assert not at.exception
    assert at.button(key="relabel_to_0").label.startswith(r"\*\*bold\*\* \<b\>x\</b\>")


def test_the_key_of_the_images_own_class_confirms_and_previous_goes_back(open_app, app_env, flagged):
    at = open_review(open_app)
    first = current(at)
    s = score_run(Run(app_env.run))
    own = s.classes.index(labels(app_env.labels).loc[first, "label"])
    assert "confirm" in at.button(key=f"relabel_to_{own}").label
    at.button(key=f"relabel_to_{own}").click().run()
    row = labels(app_env.labels).loc[first]
    assert (row["label"], row["review_status"]) == (s.classes[own], "confirmed")
    assert current(at) == flagged[1]
    at.button(key="act_previous").click().run()
    assert current(at) == first
    assert [(d.path, d.action) for d in ReviewStore(app_env.labels).decisions()] == [(first, "confirm")]


def test_the_undo_conflict_offers_buttons_not_code_words(open_app, app_env, flagged):
    at = open_review(open_app)
    first = current(at)
    at.button(key="act_confirm").click().run()
    other = ReviewStore(app_env.labels)
    other.discard(first, "Dr. Other", expected_label=labels(app_env.labels).loc[first, "label"],
                  expected_status="confirmed")
    at.button(key="act_undo").click().run()
    shown = " ".join([w.value for w in at.warning] + [m.value for m in at.markdown])
    assert "force" not in shown.lower()
    assert at.button(key="force_undo") and at.button(key="leave_undo")
    at.button(key="leave_undo").click().run()
    assert labels(app_env.labels).loc[first, "review_status"] == "discarded"


def test_a_run_on_chosen_columns_is_reviewed_in_its_label_column(open_app, app_env, flagged):
    """The data set's file says `image_id;diagnosis;age` and the run was trained with those columns:
    a relabel changes only the diagnosis cell (and the review columns), undo puts it back, and the
    export keeps the user's columns."""
    from conftest import write_mapped_labels

    f = write_mapped_labels(app_env.labels, app_env.labels.with_name("derm.csv"))
    cfg = json.loads((app_env.run / "config.json").read_text())
    cfg.update(data=str(f), path_column="image_id", label_column="diagnosis")
    (app_env.run / "config.json").write_text(json.dumps(cfg))
    original = f.read_text().splitlines()
    at = open_review(open_app)
    first = current(at)
    assert first == flagged[0]
    line = next(k for k, text in enumerate(original) if text.startswith(first + ";"))
    image, old, age = original[line].split(";")
    s = score_run(Run(app_env.run))
    k = next(j for j, c in enumerate(s.classes) if c != old)
    at.button(key=f"relabel_to_{k}").click().run()
    assert not at.exception and not at.error
    after = f.read_text().splitlines()
    assert after[0] == "image_id;diagnosis;age;original_label;review_status;reviewed_by"
    assert after[line] == f"{image};{s.classes[k]};{age};{old};relabeled;{ME}"
    assert all(a.startswith(b + ";") for n, (a, b) in enumerate(zip(after, original)) if n != line)
    at.button(key="act_undo").click().run()
    assert not at.exception and not at.error
    assert f.read_text().splitlines()[line] == f"{image};{old};{age};{old};;"
    at.text_input(key="export_path").input(str(app_env.root / "clean.csv")).run()
    at.button(key="export").click().run()
    assert not at.exception and not at.error
    assert (app_env.root / "clean.csv").read_text().splitlines()[0].startswith("image_id;diagnosis;age;")


def test_previous_then_undo_decodes_no_example_image_again(open_app, app_env, flagged, monkeypatch):
    """Issue 18 item 7 (← then U, then the next key): the undo rewrites the label file, which is
    the data file here; the example thumbnails of the image on screen stay cached (keyed by the
    run, not by the label file), so the undo and the key after it decode only what is new."""
    import sei_core.gallery as gallery

    made = []
    real_fit = gallery.fit
    def counted(im, side, *a, **k):  # the example thumbnails are 160 px (the image on screen: 720)
        if side == 160:
            made.append(1)
        return real_fit(im, side, *a, **k)

    monkeypatch.setattr(gallery, "fit", counted)
    at = open_review(open_app)
    first = current(at)
    at.button(key="act_confirm").click().run()
    at.button(key="act_previous").click().run()  # back to the image just decided: its thumbnails are made
    assert current(at) == first
    del made[:]
    at.button(key="act_undo").click().run()  # the label file is rewritten; the same image stays on screen
    assert not at.exception and current(at) == first
    assert labels(app_env.labels).loc[first, "review_status"] == ""
    assert made == []  # no thumbnail made again
    at.button(key="act_confirm").click().run()  # the key after the undo
    assert not at.exception and current(at) != first
    after = len(made)
    at.button(key="act_previous").click().run()
    del made[:]
    at.button(key="act_undo").click().run()
    assert made == [] and after <= 12  # at most the two strips of the next image


def test_classes_are_shown_by_name_with_their_code_and_decisions_keep_the_code(open_app, app_env, flagged):
    """Issue 18 item 3: with names in the data set's prompts.json, the relabel buttons, the class
    filter and the queue table's label columns say "name (code)"; the label file and the log
    keep the code."""
    from sei_core.dataset import PROMPTS_FILE, Prompts

    s = score_run(Run(app_env.run))
    names = {c: f"the class {c.upper()}" for c in s.classes}
    (app_env.labels.parent / PROMPTS_FILE).write_text(json.dumps(Prompts(names=names).to_dict()))
    at = open_review(open_app)
    first = current(at)
    old = labels(app_env.labels).loc[first, "label"]
    k = next(j for j, c in enumerate(s.classes) if c != old)
    assert at.button(key=f"relabel_to_{k}").label == md(f"the class {s.classes[k].upper()} ({s.classes[k]})")
    assert at.selectbox(key="review_class").options[1] == f"the class {s.classes[0].upper()} ({s.classes[0]})"
    table = at.dataframe[0].value
    assert set(table["given label"]) <= {f"{names[c]} ({c})" for c in s.classes}
    at.button(key=f"relabel_to_{k}").click().run()
    assert not at.exception and not at.error
    assert labels(app_env.labels).loc[first, "label"] == s.classes[k]  # the code, not the name
    assert ReviewStore(app_env.labels).decisions()[-1].new_label == s.classes[k]
    at.selectbox(key="review_state").select("relabeled").run()
    table = at.dataframe[0].value.set_index("image")
    assert table.loc[first.split("/")[-1], "label now"] == f"{names[s.classes[k]]} ({s.classes[k]})"
