"""AppTest: an exposed app shows every page only after a login (a token, or Streamlit's OpenID
Connect login), refuses to serve anything without one, and records the signed-in identity with
every review decision; the data roots hold in the app."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.util import patch_config_options

from pages._common import PAGES
from sei_core import access

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "correct-horse-battery-staple-0123456789abcdef"
OIDC = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 40,
                 "client_id": "sei-review", "client_secret": "s" * 20,
                 "server_metadata_url": "https://id.hospital.example/.well-known/openid-configuration"}}
ALL_PAGES = [script for script, *_ in PAGES]


def app(page: str | None, *, query: dict | None = None, user: dict | None = None,
        secrets: dict | None = None) -> AppTest:
    """An AppTest of app.py opened at ``query`` (the app's address ``/?…``), then switched to
    ``page`` (None: left where the address led)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update(query or {})
    if user is not None:
        at.user = user
    if secrets:
        at.secrets.update(secrets)
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shows_only_the_sign_in(at: AppTest) -> bool:
    """Nothing but the sign-in: its title, no sidebar, no data, no table, no image."""
    return ([t.value for t in at.title] == ["Sign in to SEI review"] and not at.sidebar.children
            and not at.dataframe and not at.get("imgs") and not at.get("plotly_chart")
            and not any("Data set" in m.value for m in at.markdown))


@pytest.fixture
def network(app_env, monkeypatch):
    monkeypatch.setenv(access.NETWORK_ENV, "1")
    monkeypatch.setenv(access.DATA_ROOTS_ENV, str(app_env.data))
    return app_env


@pytest.mark.parametrize("page", ALL_PAGES)
def test_every_page_shows_only_the_sign_in_without_the_token(network, monkeypatch, page):
    monkeypatch.setenv(access.TOKEN_ENV, TOKEN)
    at = app(page)
    assert shows_only_the_sign_in(at)
    at = app(None, query={"token": TOKEN[:-1] + "X"})
    assert shows_only_the_sign_in(at) and any("not this server's token" in e.value for e in at.error)
    at.switch_page(page).run()
    assert shows_only_the_sign_in(at)


def test_the_token_signs_the_session_in_for_every_page(network, monkeypatch):
    monkeypatch.setenv(access.TOKEN_ENV, TOKEN)
    at = app(None, query={"token": TOKEN})
    assert "token" not in at.query_params  # not left in the address
    assert [t.value for t in at.title] == ["Data"] and any("Data set" in m.value for m in at.sidebar.markdown)
    for page in ALL_PAGES[1:]:
        at.switch_page(page).run()
        assert not at.exception and "Sign in to SEI review" not in [t.value for t in at.title]
    at.button(key="sei_sign_out").click().run()
    assert shows_only_the_sign_in(at)
    # the sign-in field
    at = app("pages/data.py")
    at.text_input[0].input(TOKEN)
    at.button[0].click().run()
    assert [t.value for t in at.title] == ["Data"]


@pytest.mark.parametrize("page", ALL_PAGES)
def test_an_exposed_server_without_login_or_roots_refuses_every_page(app_env, monkeypatch, page):
    monkeypatch.delenv(access.TOKEN_ENV, raising=False)
    monkeypatch.delenv(access.DATA_ROOTS_ENV, raising=False)
    with patch_config_options({"server.address": "0.0.0.0"}):  # as `streamlit run app.py --server.address 0.0.0.0`
        at = app(page)
    assert [t.value for t in at.title] == ["SEI review"] and not at.sidebar.children and not at.dataframe
    assert [("no login" in e.value, "no data folders" in e.value) for e in at.error] == [(True, False), (False, True)]


def test_a_local_app_needs_no_login(app_env, monkeypatch):
    monkeypatch.delenv(access.NETWORK_ENV, raising=False)
    at = app("pages/data.py")
    assert [t.value for t in at.title] == ["Data"]


@pytest.mark.parametrize("page", ALL_PAGES)
def test_with_openid_connect_every_page_asks_for_the_provider_login(network, page):
    at = app(page, secrets=OIDC)  # AppTest's default user has no is_logged_in: nobody signed in
    assert shows_only_the_sign_in(at)
    assert not at.text_input  # no token field: the provider's login is the one selected
    if importlib.util.find_spec("authlib") is None:  # Streamlit's login needs it: the page says so
        assert any("Authlib" in e.value for e in at.error)
    else:
        assert at.button(key="sei_oidc_login").label == "Sign in"


def confirm_is_recorded_under(at, labels, who: str) -> None:
    """On the Review page: the name field shows ``who``, greyed out, and a confirm writes ``who``
    into the label file's ``reviewed_by`` and the decision log."""
    from sei_core.review import ReviewStore

    box = at.text_input(key="reviewer")
    assert box.value == who and box.disabled
    first = at.session_state["review_current"]
    if not first:
        pytest.skip("the tiny run flagged no image")
    at.button(key="act_confirm").click().run()
    assert not at.exception and not at.error
    row = pd.read_csv(labels, dtype=str, keep_default_na=False).set_index("path").loc[first]
    assert (row["review_status"], row["reviewed_by"]) == ("confirmed", who)
    assert [d.reviewer for d in ReviewStore(labels).decisions()] == [who]


def test_with_openid_connect_decisions_carry_the_signed_in_identity(network):
    who = "ana.silva@hospital.example"
    at = app("pages/review.py", secrets=OIDC, user={"is_logged_in": True, "email": who, "name": "Ana Silva"})
    confirm_is_recorded_under(at, network.labels, who)


def test_a_personal_token_signs_its_reviewer_in_and_decisions_carry_that_name(network, monkeypatch):
    who = "Dr. Ana Silva"
    monkeypatch.setenv(access.TOKENS_ENV, access.format_tokens([(who, TOKEN), ("ben", TOKEN[::-1])]))
    at = app(None, query={"token": TOKEN, "reviewer": "someone else"})
    assert "token" not in at.query_params and [t.value for t in at.title] == ["Data"]
    assert any("Signed in as" in c.value and "Ana Silva" in c.value for c in at.sidebar.caption)
    at.switch_page("pages/review.py").run()
    assert not at.exception
    confirm_is_recorded_under(at, network.labels, who)  # as with the OpenID Connect login


def test_a_wrong_token_signs_nobody_in_and_the_shared_one_asks_for_a_name(network, monkeypatch):
    monkeypatch.setenv(access.TOKENS_ENV, f"Dr. Ana Silva={TOKEN}")
    for wrong in (TOKEN[:-1] + "X", TOKEN + "X", "Dr. Ana Silva"):
        at = app(None, query={"token": wrong})
        assert shows_only_the_sign_in(at) and any("not this server's token" in e.value for e in at.error)
        at.text_input[0].input(wrong)
        at.button[0].click().run()
        assert shows_only_the_sign_in(at)
        at.switch_page("pages/review.py").run()
        assert shows_only_the_sign_in(at)
    # the shared token beside them: signed in, but nobody in particular; the name typed is recorded
    monkeypatch.setenv(access.TOKEN_ENV, TOKEN[::-1])
    at = app("pages/review.py", query={"token": TOKEN[::-1]})
    box = at.text_input(key="reviewer")
    assert not box.disabled and box.value == ""
    assert any("recorded under the name typed here" in c.value for c in at.caption)


def test_a_data_path_outside_the_roots_is_refused_on_the_data_page(network, monkeypatch, tmp_path):
    monkeypatch.setenv(access.TOKEN_ENV, TOKEN)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "labels.csv").write_text(network.labels.read_text())
    for target in (str(outside / "labels.csv"), str(network.data / ".." / "elsewhere" / "labels.csv")):
        at = app("pages/data.py", query={"token": TOKEN, "data": target})
        assert any("outside the folders this app may open" in e.value for e in at.error), [e.value for e in at.error]
        assert not at.get("imgs")


@pytest.mark.parametrize("page", ["pages/data.py", "pages/train.py", "pages/explore.py", "pages/review.py"])
def test_every_page_that_reads_the_data_refuses_data_outside_the_roots(app_env, monkeypatch, tmp_path, page):
    """A local app with data roots that do not hold the chosen data (and its run's data)."""
    elsewhere = tmp_path / "allowed"
    elsewhere.mkdir()
    monkeypatch.setenv(access.DATA_ROOTS_ENV, str(elsewhere))
    before = app_env.labels.read_bytes()
    at = app(page)
    assert any("outside the folders this app may open" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.get("imgs")
    assert app_env.labels.read_bytes() == before and not (app_env.data / ".sei_review").exists()


def test_a_local_app_says_how_to_reach_it_from_another_machine(app_env, monkeypatch):
    monkeypatch.delenv(access.NETWORK_ENV, raising=False)
    at = app("pages/data.py")
    assert any("ssh -L" in c.value and "this computer only" in c.value for c in at.sidebar.caption)
