"""In a real browser (Chromium): the HAM10000 archive's layout from opening its folder to a review
decision written into ``HAM10000_metadata.csv`` itself.

Generated files of the archive's shape (``tests/test_archive_layout.make_archive``: ids without
extension, two image folders, short codes) and a run trained on them by ``sei train``. With
``SEI_ARCHIVE=/path/to/folder`` (a folder holding a ``HAM10000_metadata.csv`` and a finished
run of it in ``SEI_ARCHIVE_RUNS``), the same steps run on that data instead.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.app_server import CHROMIUM, CHROMIUM_ARGS, app_server
from sei_core import cli
from tests.test_archive_layout import OPTS, PARTS, make_archive
from tests.test_e2e_browser import goto, new_page, settle

pytestmark = [pytest.mark.slow, pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"needs Chromium at {CHROMIUM}")]


def pick(page, label: str, option: str) -> None:
    """Choose ``option`` in the Streamlit selectbox labelled ``label``."""
    box = page.locator('[data-testid="stMain"]').get_by_label(label, exact=True)
    if box.input_value() != option:
        box.click()
        box.fill(option)
        box.press("Enter")
        settle(page)


def archive_flow(page, url: str, folder: Path) -> dict:
    """Open ``folder`` on the Data page, take the offered image folders and names, review one
    image; returns what was seen. ``folder`` holds HAM10000_metadata.csv and its image folders."""
    table = folder / "HAM10000_metadata.csv"
    seen = {}
    page.goto(url)
    page.get_by_role("heading", name="Data", exact=True).wait_for(timeout=60_000)
    settle(page)
    box = page.get_by_role("textbox", name="Label file, image folder or MedMNIST .npz")
    box.fill(str(folder))
    box.press("Enter")
    settle(page)
    page.locator('[data-testid="stMain"]').get_by_role("button", name="Open", exact=True).click()
    settle(page)
    seen["opened as table"] = page.get_by_text("Opened the label file HAM10000_metadata.csv").count() > 0
    pick(page, "Column with the image path", "image_id")
    pick(page, "Column with the label", "dx")
    page.get_by_role("button", name="Use these columns").click()
    settle(page)
    body = page.locator('[data-testid="stMain"]').inner_text()
    seen["false no-images"] = "has no images" in body
    seen["offered folders"] = "“HAM10000_images_part_1”, “HAM10000_images_part_2”" in body
    page.get_by_role("button", name="Use these image folders").first.click()
    settle(page)
    body = page.locator('[data-testid="stMain"]').inner_text()
    seen["checked"] = "Checked: every row has a path and a label, every image file exists" in body
    seen["address"] = page.url
    if page.get_by_role("button", name="Use these names").count():
        page.get_by_role("button", name="Use these names").click()
        settle(page)
    saved = folder / "prompts.json"
    seen["names saved"] = saved.is_file() and "melanocytic nevus" in saved.read_text()
    # the form shows what was saved, so that saving it again keeps it (it showed the old template)
    seen["template shown"] = page.get_by_role("textbox", name="Template ({} is replaced by the class name)").input_value()
    page.get_by_role("button", name="Save names and prompts").click()
    settle(page)
    seen["template saved again"] = json.loads(saved.read_text())["template"]
    # Review the finished run: a relabel is written into the user's table
    goto(page, "Review")
    reviewer = page.get_by_role("textbox", name="Your name")
    reviewer.fill("Dr. Archive")
    reviewer.press("Enter")
    settle(page)
    shown = page.locator('[data-testid="stHeading"] h3').first.inner_text().strip()
    before = pd.read_csv(table, dtype=str, keep_default_na=False).set_index("image_id")
    old = before.loc[shown, "dx"]
    classes = sorted(set(before["dx"]))
    target = next(c for c in classes if c != old)
    seen["label shown with name"] = page.get_by_text("Label now:").locator("xpath=..").inner_text()
    page.keyboard.press(str(classes.index(target) + 1))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        after = pd.read_csv(table, dtype=str, keep_default_na=False).set_index("image_id")
        if "review_status" in after.columns and after.loc[shown, "review_status"] == "relabeled":
            break
        time.sleep(0.2)
    seen["decision"] = (shown, old, after.loc[shown, "dx"], after.loc[shown, "review_status"])
    seen["others unchanged"] = bool((after.drop(index=shown)["dx"] == before.drop(index=shown)["dx"]).all())
    seen["exceptions"] = page.locator('[data-testid="stException"]').count()
    return seen


def test_the_archive_layout_from_its_folder_to_a_review_written_into_the_table(tmp_path):
    from playwright.sync_api import sync_playwright

    given = os.environ.get("SEI_ARCHIVE")
    if given:
        folder, runs = Path(given), Path(os.environ["SEI_ARCHIVE_RUNS"])
    else:
        folder, runs = tmp_path / "ham", tmp_path / "runs"
        make_archive(folder)
        dirs = [x for p in PARTS for x in ("--image-dir", str(folder / p))]
        assert cli.main(["train", str(folder), *OPTS, *dirs, "--out", str(runs / "ham"), "--no-progress",
                         "--model", "SEI-Tiny-RN", "--image-size", "32", "--epochs", "2", "--batch-size", "8",
                         "--workers", "1"]) == 0
        failed = runs / "zz-failed"  # a newer run that failed: Review must not open it
        assert cli.main(["train", str(folder), *OPTS, "--out", str(failed), "--epochs", "1"]) == 1
    with app_server(runs, tmp_path / "server.log") as (_, url), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = new_page(browser)
        seen = archive_flow(page, url, folder)
        browser.close()
    print(seen)
    assert seen["opened as table"] and seen["offered folders"] and not seen["false no-images"]
    assert seen["checked"] and "image_dir=" in seen["address"] and seen["names saved"]
    assert seen["template shown"] == seen["template saved again"] == "A dermoscopic image showing {}."
    shown, old, new, status = seen["decision"]
    assert new != old and status == "relabeled" and seen["others unchanged"] and not seen["exceptions"]
    assert "(" in seen["label shown with name"]  # "melanocytic nevus (nv)"


def test_a_page_opened_first_on_a_fresh_server_keeps_what_is_typed_into_it(tmp_path):
    """A fresh server runs a page asked for by its address (a bookmark, a reload after a
    restart) without app.py, and widget ids depend on the script that ran: the first change on
    the Train page re-created every field blank — model EVA01-g-14, 1 epoch, 8 px, learning
    rate 1e-6 — and "Start training" trained that."""
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    folder = tmp_path / "ham"
    table = make_archive(folder)
    address = (f"/train?data={quote(str(table))}&path_column=image_id&label_column=dx"
               + "".join(f"&image_dir={quote(str(folder / p))}" for p in PARTS))
    with app_server(tmp_path / "runs", tmp_path / "server.log") as (_, url), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = new_page(browser)
        page.goto(url + address)
        page.get_by_role("heading", name="Train", exact=True).wait_for(timeout=60_000)
        settle(page)
        main = page.locator('[data-testid="stMain"]')
        before = main.get_by_label("Model", exact=True).input_value()
        epochs = main.get_by_label("Epochs", exact=True)
        epochs.fill("5")
        epochs.press("Tab")
        settle(page)
        after = (main.get_by_label("Model", exact=True).input_value(),
                 main.get_by_label("Epochs", exact=True).input_value(),
                 main.get_by_label("Image size (pixels)", exact=True).input_value())
        browser.close()
    assert before == "SEI-Tiny-RN"
    assert after == ("SEI-Tiny-RN", "5", "32")
