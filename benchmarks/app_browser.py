"""A review session in a real browser on a large run: page loads and the time per decision.

Starts ``streamlit run app.py`` on a runs folder that ``benchmarks/app_scale.py --keep DIR``
wrote (``DIR/n<N>/runs``), opens it in headless Chromium (Debian's, at /usr/bin/chromium)
and measures, as the user sees them:

- Explore and Review: from the page link's click until the page's script has finished and
  its heading is shown (the first load in a fresh server, so nothing is cached in memory;
  the run's scored cache on disk is, as after training),
- a review session: ``--decisions`` key presses ("Y", confirm) each timed from the press
  until the next image's name is shown — only the decision panel reruns (``st.fragment``).

    python benchmarks/app_browser.py --runs APP_SCALE_DIR/n100000/runs [--decisions 25]

Prints the load average beside the figures: on a shared machine they grow with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from app_server import CHROMIUM, CHROMIUM_ARGS, app_server, loadavg  # benchmarks/


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="a runs folder written by app_scale.py --keep")
    ap.add_argument("--decisions", type=int, default=25)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"app_browser_{os.getpid()}.log"
    out = {"load": loadavg()}
    with app_server(args.runs.absolute(), log, ["--server.fileWatcherType", "none"]) as (_, url):
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
            if reviewer.input_value() != "Dr. Bench":
                reviewer.fill("Dr. Bench")
                reviewer.press("Enter")  # leaves the field: the next key is a shortcut
                settle(page)
            page.evaluate("() => document.activeElement && document.activeElement.blur()")
            times = []
            for _ in range(args.decisions):
                before = current_image(page)
                t0 = time.perf_counter()
                page.keyboard.press("Y")
                page.wait_for_function(
                    "old => { const h = document.querySelector('[data-testid=\"stHeading\"] h3');"
                    " return h && h.innerText.trim() !== old; }", arg=before, polling="raf", timeout=120_000)
                times.append(time.perf_counter() - t0)
                if page.locator('[data-testid="stException"]').count():
                    raise RuntimeError("the page showed an exception")
                settle(page)
            out["decision + next, median (ms)"] = 1000 * statistics.median(times)
            out["min (ms)"], out["max (ms)"] = 1000 * min(times), 1000 * max(times)
            out["load after"] = loadavg()
            browser.close()
    print(f"runs: {args.runs}")
    for k, v in out.items():
        print(f"{k:32s} {v:.3f}" if isinstance(v, float) else f"{k:32s} {v}")


if __name__ == "__main__":
    main()
