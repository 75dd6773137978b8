"""A review session in a real browser on a large run: page loads and the time per keyed step.

Starts ``streamlit run app.py`` on a runs folder that ``benchmarks/app_scale.py --keep DIR``
wrote (``DIR/n<N>/runs``), opens it in headless Chromium (Debian's, at /usr/bin/chromium)
and measures, as the user sees them:

- Explore and Review: from the page link's click until the page's script has finished and
  its heading is shown (the first load in a fresh server, so nothing is cached in memory;
  the run's scored cache on disk is, as after training),
- a review session of keyed steps (``--walk``, default :data:`WALK`: confirmations, relabels
  with a number key, discards, skips, undos "U" and "Previous" "←"), each timed from the key
  press until the next image is shown, its name and the image itself loaded ("shown"; a step
  that keeps the same image, such as an undo of the image on screen, until its rerun ends),
  and until the rerun has ended ("done": the buttons, the curve, the examples and the count
  drawn too). Only the decision panel reruns (``st.fragment``). Every "←" is checked against
  the images this reviewer decided, in the order decided (``ReviewSession.back``).

    python benchmarks/app_browser.py --runs APP_SCALE_DIR/n100000/runs [--walk "Y Y 2 U ← …"]
    python benchmarks/app_browser.py --runs … --root OTHER_CHECKOUT   # the same walk on other code

The data set's label file is put back as it was before any decision first (from the backup
the review made of it) and its decision log removed, so every measurement starts unreviewed.
Prints the per-step times, their median and maximum, and the load average before and after:
on a shared machine they grow with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

from app_server import CHROMIUM, CHROMIUM_ARGS, ROOT, app_server, loadavg  # benchmarks/

#: 30 keyed decisions: Y confirm, a digit relabels (its own class confirms), D discard, S skip,
#: U undo, ← previous. Undos and "Previous" come after decisions, in runs of one and two.
WALK = "Y 2 Y U Y ← ← Y D 3 Y U U Y S Y ← Y 4 Y Y U D Y ← ← Y 5 Y Y"
KEYS = {"←": "ArrowLeft"}
NAME = "Dr. Bench"

# the name of the image on screen; the image itself, loaded; whether a rerun has ended since ``arm``
_HEADING = "document.querySelector('[data-testid=\"stHeading\"] h3')"
_IMAGE = "document.querySelector('[data-testid=\"stImage\"] img')"
_SHOWN = f"""old => {{ const h = {_HEADING}, im = {_IMAGE};
  return h && h.innerText.trim() !== old && im && im.complete && im.naturalWidth > 0; }}"""
_ARM = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (window.__seiObs) window.__seiObs.disconnect();
  window.__seiDone = false;
  window.__seiObs = new MutationObserver((records) => {
    if (records.some((r) => r.oldValue === "running")) window.__seiDone = true;
  });
  window.__seiObs.observe(app, {attributes: true, attributeOldValue: true,
                                attributeFilter: ["data-test-script-state"]});
}"""


def settle(page) -> None:
    """Until the script run triggered by the last action is over."""
    time.sleep(0.2)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=600_000)


def open_page(page, title: str) -> float:
    t0 = time.perf_counter()
    page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=600_000)
    settle(page)
    return time.perf_counter() - t0


def current_image(page) -> str:
    return page.locator('[data-testid="stHeading"] h3').first.inner_text().strip()


def unreviewed(runs: Path) -> None:
    """Put every run's label file back as it was before the first decision (the review's backup
    of it) and remove its decision log."""
    for cfg in runs.glob("*/config.json"):
        data = Path(json.loads(cfg.read_text())["data"])
        backup = data.with_name(data.name + ".sei-backup")
        if backup.is_file():
            shutil.copyfile(backup, data)
            backup.unlink()
        shutil.rmtree(data.parent / ".sei_review", ignore_errors=True)


class Expected:
    """Which image "Previous" must show: this reviewer's decisions in effect, in the order
    decided, each image once at its latest decision (what ``ReviewStore.decided_paths`` gives)."""

    def __init__(self) -> None:
        self.log: list[str] = []  # the image of each decision in effect, oldest first

    @property
    def decided(self) -> list[str]:
        return list(dict.fromkeys(reversed(self.log)))[::-1]

    def decide(self, name: str) -> None:
        self.log.append(name)

    def undo(self) -> str | None:
        """The image an undo shows (its latest decision, undone), or None with nothing to undo."""
        return self.log.pop() if self.log else None

    def back(self, name: str) -> str:
        decided = self.decided
        if name in decided:
            at = decided.index(name)
            return decided[at - 1] if at > 0 else name
        return decided[-1] if decided else name


def walk(page, steps: list[str]) -> list[tuple[str, str, float, float]]:
    """Each step as ``(key, image shown after it, seconds to shown, seconds to done)``."""
    out, expected = [], Expected()
    for key in steps:
        before = current_image(page)
        want = None
        if key == "←":
            want = expected.back(before)
        elif key == "U":
            want = expected.undo() or before
        elif key != "S":
            expected.decide(before)
        page.evaluate(_ARM)
        t0 = time.perf_counter()
        page.keyboard.press(KEYS.get(key, key))
        try:
            if want == before:  # the same image stays: the step is over when its rerun is
                page.wait_for_function("() => window.__seiDone", polling="raf", timeout=120_000)
            else:
                page.wait_for_function(_SHOWN, arg=before, polling="raf", timeout=120_000)
            shown = time.perf_counter() - t0
            page.wait_for_function("() => window.__seiDone", polling="raf", timeout=120_000)
            done = time.perf_counter() - t0
        except Exception as e:
            state = page.evaluate(f"() => {{ const h = {_HEADING}, im = {_IMAGE}; return [h && h.innerText, "
                                  "im && im.src, im && im.complete, im && im.naturalWidth, window.__seiDone, "
                                  "document.querySelector('[data-testid=\"stApp\"]')"
                                  ".getAttribute('data-test-script-state')]; }")
            shot = Path(os.environ.get("TMPDIR", "/tmp")) / f"app_browser_{os.getpid()}.png"
            page.screenshot(path=str(shot), full_page=True)
            raise RuntimeError(f"step {len(out) + 1} ({key!r} on {before}, expecting {want}) did not end: heading, "
                               f"image, loaded, width, rerun over, script state = {state}; screenshot {shot}") from e
        if page.locator('[data-testid="stException"]').count():
            raise RuntimeError(f"the page showed an exception after {key!r}")
        now = current_image(page)
        if want is not None and now != want:
            raise RuntimeError(f"{key!r} on {before} showed {now}, not {want} (the images decided, in order: "
                               f"{expected.decided})")
        out.append((key, now, shown, done))
        settle(page)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="a runs folder written by app_scale.py --keep")
    ap.add_argument("--walk", default=WALK, help="the keys, space-separated (Y, D, S, U, ←, 1–9)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout to serve (default: this one)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    unreviewed(args.runs)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"app_browser_{os.getpid()}.log"
    out = {"load before": loadavg()}
    with app_server(args.runs.absolute(), log, ["--server.fileWatcherType", "none"], root=args.root.absolute()) \
            as (_, url):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            t0 = time.perf_counter()
            page.goto(f"{url}/data", timeout=600_000)
            page.get_by_role("heading", name="Data", exact=True).wait_for(timeout=600_000)
            settle(page)
            out["Data first (s)"] = time.perf_counter() - t0
            out["Explore first (s)"] = open_page(page, "Explore")
            out["Review first (s)"] = open_page(page, "Review")
            reviewer = page.get_by_role("textbox", name="Your name")
            if reviewer.input_value() != NAME:
                reviewer.fill(NAME)
                reviewer.press("Enter")  # leaves the field: the next key is a shortcut
                settle(page)
            page.evaluate("() => document.activeElement && document.activeElement.blur()")
            steps = walk(page, args.walk.split())
            out["load after"] = loadavg()
            browser.close()
    shown = [s[2] for s in steps]
    done = [s[3] for s in steps]
    print(f"runs: {args.runs}  code: {args.root}")
    print("step  key  image shown after it        shown (ms)  done (ms)")
    for n, (key, image, a, b) in enumerate(steps, 1):
        print(f"{n:4d}  {key:3s}  {image:28s} {1000 * a:9.0f} {1000 * b:10.0f}")
    out["steps"] = f"{len(steps)} ({' '.join(s[0] for s in steps)})"
    out["shown: median (ms)"] = 1000 * statistics.median(shown)
    out["shown: max (ms)"] = 1000 * max(shown)
    out["done: median (ms)"] = 1000 * statistics.median(done)
    out["done: max (ms)"] = 1000 * max(done)
    for k, v in out.items():
        print(f"{k:32s} {v:.3f}" if isinstance(v, float) else f"{k:32s} {v}")


if __name__ == "__main__":
    main()
