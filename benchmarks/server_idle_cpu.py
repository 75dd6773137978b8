"""CPU the Streamlit server burns while a browser tab sits idle on the app.

Starts ``streamlit run app.py`` from the project folder (so ``.streamlit/config.toml`` applies),
opens the Data page in headless Chromium, waits until the page is drawn, then reads the server
process's CPU time (``/proc/<pid>/stat``) over an idle window. Prints one row per setting,
side by side: the project's config as it is, and with ``--server.fileWatcherType`` forced
to ``auto`` (Streamlit's default, which watches the whole project folder, a ``.venv`` in it
included).

    python benchmarks/server_idle_cpu.py [--seconds 20]

Needs Chromium at /usr/bin/chromium and Playwright's Python package.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from app_server import CHROMIUM, CHROMIUM_ARGS, ROOT, app_server  # benchmarks/


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its waited-for children, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(extra: list[str], seconds: float, runs_dir: str) -> float:
    with tempfile.NamedTemporaryFile(suffix=".log") as log, \
            app_server(runs_dir, Path(log.name), extra, timeout=90) as (proc, url):
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url + "/data")
            page.get_by_role("heading", name="Data", exact=True).wait_for(timeout=90_000)
            page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=90_000)
            time.sleep(3)  # let the first run's work settle
            t0, c0 = time.monotonic(), cpu_seconds(proc.pid)
            time.sleep(seconds)
            t1, c1 = time.monotonic(), cpu_seconds(proc.pid)
            browser.close()
        return 100 * (c1 - c0) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the idle window")
    args = ap.parse_args()
    venv = ROOT / ".venv"
    n_dirs = sum(1 for _ in os.walk(venv)) if venv.is_dir() else 0
    print(f"project folder {ROOT}; .venv in it: {n_dirs:,} folders")
    with tempfile.TemporaryDirectory() as runs:
        rows = [("project config (.streamlit/config.toml)", []),
                ("fileWatcherType=auto (Streamlit's default)", ["--server.fileWatcherType", "auto"])]
        print(f"{'setting':<46} {'server CPU while idle':>22}")
        for name, extra in rows:
            print(f"{name:<46} {measure(extra, args.seconds, runs):>20.1f} %", flush=True)


if __name__ == "__main__":
    main()
