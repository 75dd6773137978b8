"""sei_core.access: the folders the app may open (every way of naming a file outside them is
refused, by the one check the reader, the image viewer, the review store and the export share)
and who may reach the app (loopback by default; an exposed server needs a login and data roots)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sei_core import access, cli
from sei_core.dataset import DataError, load
from sei_core.gallery import ImageAccessError, ImageSource
from sei_core.review import ReviewStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def roots(tiny_copy, tmp_path, monkeypatch):
    """The tiny data under ``tmp/data`` as the only data root, a secret outside it, a runs folder."""
    secret_dir = tmp_path / "outside"
    secret_dir.mkdir()
    secret = secret_dir / "secret.png"
    shutil.copy(next((tiny_copy.parent / "images").rglob("*.png")), secret)
    monkeypatch.setenv(access.DATA_ROOTS_ENV, str(tiny_copy.parent))
    monkeypatch.setenv("SEI_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SEI_BENCH_DIR", str(tmp_path / "bench"))
    return tiny_copy, secret


def add_rows(labels: Path, *paths: str) -> None:
    """Rows naming ``paths``, with the first row's label."""
    label = labels.read_text().splitlines()[1].split(",")[1]  # path,label,patient_id
    with open(labels, "a", encoding="utf-8") as f:
        for p in paths:
            f.write(f"{p},{label},P9999\n")


# -- the check ------------------------------------------------------------------------------

def test_check_refuses_absolute_dotdot_and_links_outside_and_allows_inside(roots, tmp_path):
    labels, secret = roots
    data = labels.parent
    assert access.check(labels) == labels.resolve()
    assert access.check(data / "images" / ".." / "labels.csv") == labels.resolve()
    for outside in (secret, data / ".." / "outside" / "secret.png", "/etc/passwd"):
        with pytest.raises(access.AccessError, match="outside the folders this app may open"):
            access.check(outside)
    (data / "link.png").symlink_to(secret)  # a link inside pointing outside
    (data / "linked_dir").symlink_to(secret.parent, target_is_directory=True)
    for outside in (data / "link.png", data / "linked_dir" / "secret.png"):
        with pytest.raises(access.AccessError, match="leads to"):
            access.check(outside)
    # the app's own folders are open to it; no roots: no confinement
    assert access.check(tmp_path / "runs" / "r1" / "config.json")
    assert access.check(tmp_path / "bench" / "b")
    os.environ.pop(access.DATA_ROOTS_ENV)
    assert access.allowed_roots() is None and access.check(secret) == secret.resolve()


def test_roots_are_parsed_with_the_path_separator_and_resolved(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").symlink_to(tmp_path / "a")
    got = access.parse_roots(f"{tmp_path / 'a'}{os.pathsep}{os.pathsep}{tmp_path / 'b'}{os.pathsep} ~")
    assert got == ((tmp_path / "a").resolve(), Path.home().resolve())


def test_label_file_rows_outside_are_refused_before_any_file_is_read(roots):
    labels, secret = roots
    data = labels.parent
    (data / "images" / "inside_link.png").symlink_to(secret)
    good = load(labels)  # within the roots, as before
    rel_up = os.path.relpath(secret, data)  # ../outside/secret.png
    add_rows(labels, rel_up, str(secret), "images/inside_link.png", "../../../../../../etc/passwd.png")
    with pytest.raises(DataError) as e:
        load(labels, check_images="exists", skip_unreadable=True)
    where = [p.where for p in e.value.problems]
    n = len(good) + 1  # header line 1
    assert [w.split(" (")[0] for w in where] == [f"{labels.name} line {n + k}" for k in (1, 2, 3, 4)]
    assert all("outside the folders this app may open" in p.message for p in e.value.problems)


def test_an_image_folder_with_a_link_leading_outside_is_refused(roots, tmp_path):
    labels, secret = roots
    folder = labels.parent / "folder"
    images = sorted((labels.parent / "images").glob("*.png"))
    for k, cls in enumerate(("a", "b")):
        (folder / cls).mkdir(parents=True)
        for im in images[k * 3:(k + 1) * 3]:
            shutil.copy(im, folder / cls / im.name)
    load(folder)
    (folder / "a" / "zz_link.png").symlink_to(secret)
    with pytest.raises(DataError, match="outside"):
        load(folder)


def test_data_image_viewer_review_store_and_export_refuse_outside(roots, tmp_path):
    labels, secret = roots
    with pytest.raises(access.AccessError):
        load(secret.parent)
    with pytest.raises(access.AccessError):
        ImageSource(secret)
    src = ImageSource(labels)
    (labels.parent / "link.png").symlink_to(secret)
    with pytest.raises(ImageAccessError, match="outside"):
        src.open("link.png")
    with pytest.raises(ImageAccessError, match="outside"):
        src.open(str(secret))
    outside_labels = secret.parent / "labels.csv"
    shutil.copy(labels, outside_labels)
    with pytest.raises(access.AccessError):
        ReviewStore(outside_labels)
    store = ReviewStore(labels)
    with pytest.raises(access.AccessError):
        store.export_clean(secret.parent / "clean.csv")
    assert not (secret.parent / "clean.csv").exists()
    assert store.export_clean(labels.parent / "clean.csv") > 0


def test_outside_is_one_realpath_per_folder_not_per_row(tmp_path):
    """A million-row label file: the check costs one resolution per folder plus one per link."""
    root = tmp_path / "r"
    (root / "a").mkdir(parents=True)
    (root / "a" / "ok.png").write_bytes(b"")
    (root / "a" / "bad.png").symlink_to("/etc/hostname")
    paths = [str(root / "a" / "ok.png")] * 200_000 + [str(root / "a" / "bad.png"), str(root / "a" / ".." / ".." / "x.png")]
    calls = []
    real = os.path.realpath
    try:
        access.os.path.realpath = lambda p, *a, **k: (calls.append(p), real(p, *a, **k))[1]
        got = access.outside(paths, (root.resolve(),))
    finally:
        access.os.path.realpath = real
    assert np.flatnonzero(got).tolist() == [200_000, 200_001]
    assert len(calls) <= 4


# -- who may reach the app ---------------------------------------------------------------------

@pytest.mark.parametrize("address, loopback", [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True),
                                               ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                               ("::", False), ("", False), (None, False), ("10.0.0.5", False),
                                               ("myhost", False)])
def test_loopback(address, loopback):
    assert access.is_loopback(address) is loopback


def test_an_exposed_server_needs_a_login_and_data_roots(tmp_path):
    local = access.settings("127.0.0.1", {}, env={})
    assert not local.exposed and local.login is None and local.problems() == []
    for exposed in (access.settings("0.0.0.0", {}, env={}), access.settings(None, {}, env={}),
                    access.settings("127.0.0.1", {}, env={access.NETWORK_ENV: "1"})):
        assert exposed.exposed and exposed.login is None
        assert [("no login" in p, "no data folders" in p) for p in exposed.problems()] == [(True, False), (False, True)]
    env = {access.TOKEN_ENV: "s3cret", access.DATA_ROOTS_ENV: str(tmp_path)}
    s = access.settings("0.0.0.0", {}, env=env)
    assert (s.login, s.roots, s.problems()) == ("token", (tmp_path.resolve(),), [])
    s = access.settings("0.0.0.0", {"auth": {"redirect_uri": "x"}, "sei": {"data_roots": [str(tmp_path)]}}, env={})
    assert (s.login, s.problems()) == ("oidc", [])  # OpenID Connect wins where configured
    s = access.settings("0.0.0.0", {"sei": {"token": "t", "data_roots": [str(tmp_path)]}}, env={})
    assert (s.login, s.token) == ("token", "t")


def test_token_and_identity():
    t = access.new_token()
    assert len(t) >= 40 and access.token_ok(t, t)
    assert not access.token_ok(t[:-1] + "x", t) and not access.token_ok("", t) and not access.token_ok(t, None)
    assert access.identity({"is_logged_in": True, "email": "ana@hospital.org", "name": "Ana"}) == "ana@hospital.org"
    assert access.identity({"is_logged_in": True, "name": "Ana"}) == "Ana"
    assert access.identity({"email": "test@example.com"}) is None  # not signed in
    assert access.identity({"is_logged_in": False, "email": "a@b"}) is None


def test_sei_app_is_local_unless_network_and_network_needs_roots(tmp_path):
    p = cli.build_parser()
    cmd, env, links = cli.app_command(p.parse_args(["app", "--port", "8600"]), env={}, secrets_={})
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1" and links == []
    assert access.NETWORK_ENV not in env
    with pytest.raises(ValueError, match="--network"):
        cli.app_command(p.parse_args(["app", "--address", "0.0.0.0"]), env={})
    with pytest.raises(ValueError, match="data-root"):
        cli.app_command(p.parse_args(["app", "--network"]), env={})
    cmd, env, [(who, url)] = cli.app_command(p.parse_args(["app", "--network", "--data-root", str(tmp_path)]),
                                             env={}, secrets_={})
    assert who == access.ANONYMOUS and access.TOKENS_ENV not in env
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--browser.serverAddress") + 1] == url.split("//")[1].split(":")[0]  # no external-IP lookup
    assert env[access.NETWORK_ENV] == "1" and env[access.DATA_ROOTS_ENV] == str(tmp_path.resolve())
    assert url.endswith(f"/?token={env[access.TOKEN_ENV]}") and len(env[access.TOKEN_ENV]) >= 40
    assert access.settings("0.0.0.0", {}, env=env).problems() == []


def test_personal_tokens_name_who_signs_in():
    ana, ben, shared = access.new_token(), access.new_token(), access.new_token()
    pairs, problems = access.parse_tokens(access.format_tokens([("Dr. Ana Silva", ana), ("ben", ben)]))
    assert (pairs, problems) == ((("Dr. Ana Silva", ana), ("ben", ben)), [])
    assert access.parse_tokens({" ana ": f" {ana} "}) == ((("ana", ana),), [])  # a [sei.tokens] table
    assert access.token_holder(ana, shared, pairs) == "Dr. Ana Silva"
    assert access.token_holder(ben, None, pairs) == "ben"
    assert access.token_holder(shared, shared, pairs) == access.ANONYMOUS
    for wrong in (ana[:-1] + "x", "", None, ana + ben, "Dr. Ana Silva"):
        assert access.token_holder(wrong, shared, pairs) is None
    # every problem at once; a bad entry never signs anyone in
    pairs, problems = access.parse_tokens(f"ana={ana},nobody,ben={ana},=x,ana={ben}")
    assert pairs == (("ana", ana),) and len(problems) == 4
    assert ["entry 2 has no '='" in p for p in problems] == [True, False, False, False]
    env = {access.TOKENS_ENV: f"ana={ana},ben={ana}", access.TOKEN_ENV: ana, access.DATA_ROOTS_ENV: "/"}
    s = access.settings("0.0.0.0", {}, env=env)
    assert s.login == "token" and len(s.problems()) == 2  # ben's token is ana's; so is the shared one
    s = access.settings("0.0.0.0", {"sei": {"tokens": {"ana": ana}, "data_roots": ["/"]}}, env={})
    assert (s.login, s.token, s.holder(ana), s.problems()) == ("token", None, "ana", [])


def test_sei_app_user_prints_one_address_per_reviewer(tmp_path):
    p = cli.build_parser()
    args = p.parse_args(["app", "--network", "--data-root", str(tmp_path), "--user", "Dr. Ana Silva",
                         "--user", "ben", "--user", "ben"])
    cmd, env, links = cli.app_command(args, env={}, secrets_={})
    assert [who for who, _ in links] == ["Dr. Ana Silva", "ben"] and access.TOKEN_ENV not in env  # nobody anonymous
    s = access.settings("0.0.0.0", {}, env=env)
    assert s.problems() == [] and s.token is None
    for who, url in links:
        token = url.split("/?token=")[1]
        assert len(token) >= 40 and s.holder(token) == who
    with pytest.raises(ValueError, match="comma"):
        cli.app_command(p.parse_args(["app", "--network", "--data-root", str(tmp_path), "--user", "Silva, Ana"]),
                        env={}, secrets_={})
    with pytest.raises(ValueError, match="--network"):
        cli.app_command(p.parse_args(["app", "--user", "ana"]), env={}, secrets_={})
    # personal tokens in secrets.toml: no shared token is made beside them
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('[sei.tokens]\n"Dr. Ana Silva" = "abc"\n')
    secrets_ = access.read_secrets(tmp_path, home=tmp_path / "nohome")
    assert secrets_ == {"sei": {"tokens": {"Dr. Ana Silva": "abc"}}}
    cmd, env, links = cli.app_command(p.parse_args(["app", "--network", "--data-root", str(tmp_path)]),
                                      env={}, secrets_=secrets_)
    assert links == [] and access.TOKEN_ENV not in env and access.TOKENS_ENV not in env
