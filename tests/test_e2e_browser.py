"""End to end in a real browser: a real ``streamlit run`` server and headless Chromium.

Open the app, choose the data, train on it in the background, look at Explore, open Review,
relabel one image with the keyboard, and check the label file on disk.

With ``SEI_SCREENSHOTS=1`` it trains on the full bundled sample data (400 images, 30 epochs,
a couple of minutes on a laptop CPU) and saves ``docs/screenshots/explore.png`` and
``docs/screenshots/review.png`` for the README (and ``benchmark.png`` for docs/benchmarks.md).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.app_server import CHROMIUM as CHROMIUM_PATH, CHROMIUM_ARGS, app_server
from sample_data.make_sample_data import generate
from sei_core import jobs
from sei_core.review import ReviewStore
from sei_core.runs import list_runs

CHROMIUM = Path(CHROMIUM_PATH)
ROOT = Path(__file__).resolve().parent.parent
ARGS = [*CHROMIUM_ARGS, "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.environ.get("SEI_SCREENSHOTS", "").lower() in ("1", "true", "yes")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium "
                       "(apt-get install -y chromium chromium-driver); Playwright's own download does not work here"),
]


@pytest.fixture
def server(tmp_path):
    """A real ``streamlit run app.py`` on a free localhost port, with its own runs folder
    (:func:`benchmarks.app_server.app_server`, the browser benchmarks' server)."""
    data = generate(tmp_path / "data", n_per_class=100 if SCREENSHOTS else 12, image_size=64 if SCREENSHOTS else 32,
                    seed=0 if SCREENSHOTS else 1)
    try:
        with app_server(tmp_path / "runs", tmp_path / "server.log", ["--server.fileWatcherType", "none"],
                        timeout=60) as (_, url):
            yield url, data, tmp_path / "runs"
    finally:
        for run in list_runs(tmp_path / "runs"):  # a training the test left behind
            if run.is_locked():
                jobs.stop(run)


#: Counts the app's finished script runs in the page (``window.__seiRuns``): every time the
#: app's ``data-test-script-state`` becomes ``notRunning``; ``window.__seiStateAt`` is when that
#: state last changed. Installed before each document loads.
COUNT_RUNS = """
window.__seiRuns = 0;
window.__seiStateAt = performance.now();
new MutationObserver(ms => {
  for (const m of ms) {
    window.__seiStateAt = performance.now();
    if (m.target.getAttribute('data-test-script-state') === 'notRunning') window.__seiRuns++;
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-test-script-state']});
"""

#: How long the app must stay idle before a step counts as over (ms): a run that ends in
#: ``st.rerun()`` or starts a fragment is followed by another within a few frames, and an action
#: on the page between the two is lost.
QUIET_MS = 300

#: A run so short that React drew no "running" state in between is not counted: after this
#: long idle since settle was called (ms), the step counts as over all the same.
UNSEEN_RUN_MS = 3000


def new_page(browser):
    """A page of the test's size whose documents count the app's script runs (:data:`COUNT_RUNS`)."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.add_init_script(COUNT_RUNS)
    return page


def settle(page) -> None:
    """Wait until the script run triggered by the last action is over: the app has not been
    running for :data:`QUIET_MS`, and a run has finished since the previous settle on this page
    (or nothing changed for :data:`UNSEEN_RUN_MS` since this call). A page that loads a new
    document meanwhile (the app putting the remembered reviewer into the address) is waited
    for anew."""
    for _ in range(3):
        try:
            return _settle(page)
        except Exception as e:
            if "context was destroyed" not in str(e):
                raise
            page.wait_for_load_state()
    _settle(page)


def _settle(page) -> None:
    page.evaluate("() => { window.__seiCalledAt = performance.now(); }")
    try:
        page.wait_for_function(
            "() => { const now = performance.now(), at = window.__seiStateAt;"
            " return document.querySelector('[data-testid=stApp][data-test-script-state=notRunning]') !== null"
            f" && now - at > {QUIET_MS} && (window.__seiRuns > (window.__seiSettled || 0)"
            f" || now - Math.max(at, window.__seiCalledAt) > {UNSEEN_RUN_MS}); }}", polling="raf", timeout=60_000)
    except Exception as e:  # say what the page was doing
        state = page.evaluate("() => ({runs: window.__seiRuns, settled: window.__seiSettled, "
                              "state: document.querySelector('[data-testid=stApp]')?.getAttribute("
                              "'data-test-script-state'), idle_ms: performance.now() - window.__seiStateAt})")
        raise AssertionError(f"the app's script run did not settle: {state}") from e
    page.evaluate("() => { window.__seiSettled = window.__seiRuns; }")


#: True once the page's images have loaded and the sizes of its blocks, charts and images have
#: not changed for 20 animation frames (about 1/3 s): the layout after a resize has settled.
LAYOUT_STILL = """
() => {
  const els = document.querySelectorAll('[data-testid=stMain] [data-testid=stVerticalBlock], '
    + '[data-testid=stPlotlyChart], [data-testid=stImage] img, canvas');
  const now = Array.from(els, e => { const r = e.getBoundingClientRect(); return `${r.width}x${r.height}`; }).join();
  const loaded = Array.from(document.images).every(i => i.complete);
  window.__seiStill = loaded && now === window.__seiLayout ? (window.__seiStill || 0) + 1 : 0;
  window.__seiLayout = now;
  return window.__seiStill >= 20;
}
"""


def screenshot(page, path: Path) -> None:
    """A README picture: a taller window so that the page's first sections fit, then back."""
    page.set_viewport_size({"width": 1440, "height": 1500})
    page.wait_for_function(LAYOUT_STILL, polling="raf", timeout=60_000)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1440, "height": 1000})


def goto(page, title: str) -> None:
    page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=60_000)
    settle(page)


def current_image(page) -> str:
    return page.locator('[data-testid="stHeading"] h3').first.inner_text().strip()


def review_steps(page, key: str, n: int) -> list[float]:
    """Seconds from each key press until another image's name is shown (``n`` decisions)."""
    times = []
    for _ in range(n):
        before = current_image(page)
        t0 = time.perf_counter()
        page.keyboard.press(key)
        page.wait_for_function(
            "old => { const h = document.querySelector('[data-testid=\"stHeading\"] h3');"
            " return h && h.innerText.trim() !== old; }", arg=before, polling="raf", timeout=60_000)
        times.append(time.perf_counter() - t0)
        assert page.locator('[data-testid="stException"]').count() == 0
        settle(page)
    return times


def test_a_fresh_server_opens_any_page_by_its_address(server):
    """Streamlit starts in its pages-directory mode because of pages/; the first request, for
    /review, must still show app.py's Review page (and its menu), and /data the Data page."""
    from playwright.sync_api import sync_playwright

    url, _, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = new_page(browser)
        try:
            for path, title in (("/review", "Review"), ("/data", "Data"), ("/explore", "Explore")):
                page.goto(url + path)
                page.get_by_role("heading", name=title, exact=True).wait_for(timeout=60_000)
                settle(page)
                assert page.get_by_text("Page not found").count() == 0
                assert page.locator('[data-testid="stSidebarNav"]').count() == 0  # no automatic page list
                links = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')
                assert [links.nth(i).inner_text().strip().split("\n")[-1] for i in range(6)] == \
                    ["Data", "Train", "Explore", "Review", "Compare", "Benchmark"]
                assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()


def test_train_explore_and_relabel_with_the_keyboard(server):
    from playwright.sync_api import sync_playwright

    url, labels, runs = server
    shots = ROOT / "docs" / "screenshots"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = new_page(browser)
        try:
            page.goto(url)
            page.get_by_role("heading", name="Data", exact=True).wait_for(timeout=60_000)
            settle(page)
            # Data: choose the label file
            box = page.get_by_role("textbox", name="Label file, image folder or MedMNIST .npz")
            box.fill(str(labels))
            box.press("Enter")
            settle(page)
            page.get_by_role("button", name="Open", exact=True).click()
            settle(page)
            page.get_by_text(str(labels), exact=True).first.wait_for()
            assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == str(400 if SCREENSHOTS else 48)

            # Train: a short run in the background
            goto(page, "Train")
            for label, value in (("Epochs", "30" if SCREENSHOTS else "3"), ("Batch size", "32" if SCREENSHOTS else "16")):
                field = page.get_by_role("spinbutton", name=label, exact=True)
                field.fill(value)
                field.press("Enter")
                settle(page)
            name = page.get_by_role("textbox", name="Run name")
            name.fill("e2e")
            name.press("Enter")
            settle(page)
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("Finished:", exact=False).wait_for(timeout=1_800_000 if SCREENSHOTS else 240_000)
            assert (runs / "e2e" / "scores.csv").is_file()

            # Explore
            goto(page, "Explore")
            assert page.locator('[data-testid="stException"]').count() == 0
            page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
            if SCREENSHOTS:
                shots.mkdir(parents=True, exist_ok=True)
                screenshot(page, shots / "explore.png")

            # Review: enter a name, then relabel the first image with a number key
            goto(page, "Review")
            reviewer = page.get_by_role("textbox", name="Your name")
            reviewer.fill("Dr. E2E")
            reviewer.press("Enter")  # leaves the field: the next key is a shortcut, not a letter of the name
            settle(page)
            shown = page.locator('[data-testid="stHeading"] h3').first.inner_text().strip()
            before = pd.read_csv(labels, dtype=str, keep_default_na=False).set_index("path")
            path = next(p for p in before.index if p.endswith("/" + shown))
            old = before.loc[path, "label"]
            classes = sorted(set(before["label"]))
            # the model's suggestion (starred), or any other class if it agrees with the label
            suggested = page.get_by_text("Model suggests:").locator("xpath=..").inner_text()
            target = next((c for c in classes if f"Model suggests: {c} ·" in suggested and c != old),
                          next(c for c in classes if c != old))
            page.keyboard.press(str(classes.index(target) + 1))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                after = pd.read_csv(labels, dtype=str, keep_default_na=False).set_index("path")
                if "review_status" in after.columns and after.loc[path, "review_status"] == "relabeled":
                    break
                time.sleep(0.2)
            row = after.loc[path]
            assert (row["label"], row["original_label"], row["review_status"], row["reviewed_by"]) == \
                (target, old, "relabeled", "Dr. E2E")
            others = after.drop(index=path)
            assert (others["label"] == before.drop(index=path)["label"]).all()
            log = ReviewStore(labels).decisions()
            assert [(d.reviewer, d.path, d.action, d.old_label, d.new_label) for d in log] == \
                [("Dr. E2E", path, "relabel", old, target)]
            settle(page)
            page.get_by_text("Saved:", exact=False).first.wait_for()
            assert page.locator('[data-testid="stException"]').count() == 0
            assert reviewer.input_value() == "Dr. E2E"  # the shortcut did not go into the name field
            if SCREENSHOTS:
                screenshot(page, shots / "review.png")

            # the review step: key press to the next image, over many decisions (printed, not asserted)
            page.locator('[data-testid="stSelectbox"]').filter(has_text="Show").click()
            page.get_by_role("option", name="all", exact=True).click()
            settle(page)
            page.evaluate("() => document.activeElement && document.activeElement.blur()")  # leave the picker
            times = review_steps(page, "Y", 20)
            print(f"\nreview step, key press to the next image: median {1000 * statistics.median(times):.0f} ms "
                  f"over {len(times)} decisions (min {1000 * min(times):.0f}, max {1000 * max(times):.0f})")
            assert len(ReviewStore(labels).decisions()) == 1 + len(times)
            assert page.locator('[data-testid="stException"]').count() == 0

            # a new visit remembers the reviewer (localStorage, brought back as ?reviewer=)
            page.goto(url + "/review")
            page.get_by_role("heading", name="Review", exact=True).wait_for(timeout=60_000)
            # (the page loads again with the name in its address; this wait outlives that load)
            page.wait_for_function("() => document.querySelector('input[aria-label=\"Your name\"]')?.value"
                                   " === 'Dr. E2E'", timeout=30_000)
            settle(page)

            # Benchmark: the run's flags scored against the sample data's truth file, every method
            goto(page, "Benchmark")
            page.get_by_text("F1 of the", exact=False).first.wait_for(timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0
            if SCREENSHOTS:
                screenshot(page, shots / "benchmark.png")
        finally:
            browser.close()
