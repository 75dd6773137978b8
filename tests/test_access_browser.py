"""In a real Chromium, against a real network-mode server (``SEI_NETWORK=1``, a token, data
roots): every page shows only the sign-in; the address the server prints signs the tab in, a
reload and a new page keep it, signing out ends it; the browser fetches nothing from anywhere
but the server."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

from benchmarks.app_server import CHROMIUM as CHROMIUM_PATH, CHROMIUM_ARGS, app_server
from pages._common import PAGES
from sample_data.make_sample_data import generate
from sei_core import access
from tests.test_e2e_browser import new_page, settle

CHROMIUM = Path(CHROMIUM_PATH)
ARGS = [*CHROMIUM_ARGS, "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "browser-test-token-8f3a1c0d9e7b6a5f4e3d2c1b0a998877"
SIGN_IN = "Sign in to SEI review"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # about a minute: a server start and a dozen page loads
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium "
                       "(apt-get install -y chromium chromium-driver)"),
]


def main_text(page) -> str:
    return page.locator('[data-testid="stApp"]').inner_text()


def test_network_mode_in_a_real_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    data = generate(tmp_path / "data", n_per_class=6, image_size=32, seed=1)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "recent.json").write_text(json.dumps({"data": [{"path": str(data), "split": "train"}]}))
    env = {access.NETWORK_ENV: "1", access.TOKEN_ENV: TOKEN, access.DATA_ROOTS_ENV: str(data.parent)}
    with app_server(runs, tmp_path / "server.log", timeout=90, env=env) as (_, url), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = new_page(browser)
        hosts = set()
        page.on("request", lambda r: hosts.add(urlparse(r.url).hostname) if r.url.startswith("http") else None)
        for path in ["/", *(f"/{u}" for *_, u in PAGES)]:
            page.goto(url + path)
            page.get_by_role("heading", name=SIGN_IN).wait_for(timeout=60_000)
            settle(page)
            text = main_text(page)
            assert "Data set" not in text and "Choose another data set" not in text, path
            assert page.locator('[data-testid="stImage"], [data-testid="stDataFrame"]').count() == 0, path
        page.goto(url + "/?token=" + TOKEN[:-1] + "0")
        page.get_by_text("not this server's token").wait_for(timeout=60_000)

        page.goto(url + "/?token=" + TOKEN)  # the address `sei app --network` prints
        page.get_by_role("heading", name="Data", exact=True).wait_for(timeout=60_000)
        settle(page)
        assert "token" not in page.url and "Data set" in main_text(page)
        page.reload()
        page.get_by_role("heading", name="Data", exact=True).wait_for(timeout=60_000)
        page.goto(url + "/review")  # a new session in the same tab
        page.get_by_role("heading", name="Review", exact=True).wait_for(timeout=60_000)
        settle(page)
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name=SIGN_IN).wait_for(timeout=60_000)
        settle(page)
        page.reload()
        page.get_by_role("heading", name=SIGN_IN).wait_for(timeout=60_000)
        settle(page)
        assert "Data set" not in main_text(page)
        browser.close()
    assert hosts == {"127.0.0.1"}, hosts  # nothing fetched from anywhere else
