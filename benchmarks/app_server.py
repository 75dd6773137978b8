"""What the browser benchmarks share: the app served by ``streamlit run`` in its own process
group, Chromium's path and flags, and the load average printed beside their figures."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own download is not used
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg() -> str:
    """The 1-minute load average (``?`` where /proc has none)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


@contextlib.contextmanager
def app_server(runs_dir: str | Path, log: Path, extra: list[str] = (), timeout: float = 120.0, *,
               root: Path = ROOT, address: str | None = "127.0.0.1", env: dict | None = None):
    """``(process, url)`` of ``streamlit run app.py`` on ``runs_dir``, once its health check
    answers; its whole process group is stopped on exit. Output goes to ``log``.

    ``root``: the project folder it runs in (another checkout); ``address``: ``--server.address``
    (None: none given, so the project's ``.streamlit/config.toml`` decides, as for a user);
    ``env``: more environment variables."""
    port = free_port()
    env = dict(os.environ, SEI_RUNS_DIR=str(runs_dir), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(root), **(env or {}))
    where = [] if address is None else ["--server.address", address]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), *where, "--browser.gatherUsageStats", "false", *extra],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{Path(log).read_text()}")
            time.sleep(0.3)
        yield proc, url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
