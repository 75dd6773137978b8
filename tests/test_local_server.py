"""The README's command on a fresh copy of the project: `streamlit run app.py` listens on the
loopback interface only (read from the system's table of listening sockets) and answers there;
the configuration it runs with sends no usage statistics."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from benchmarks.app_server import app_server

ROOT = Path(__file__).resolve().parent.parent
LISTEN = "0A"  # TCP state "listen" in /proc/net/tcp


def fresh_copy(dst: Path) -> Path:
    """The project's files as a clone has them (tracked and new files, nothing git ignores: no
    .venv, runs or generated data)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    return dst


def _address(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # IPv6: four 32-bit words, each in host (little-endian) order
    return str(ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))))


def listening(port: int) -> list[str]:
    """The local addresses of every TCP socket listening on ``port`` (from /proc/net/tcp{,6})."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == LISTEN and int(p, 16) == port:
                out.append(_address(addr))
    return out


def other_addresses() -> list[str]:
    """This machine's non-loopback addresses (the one it would send from; nothing is sent)."""
    out = []
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                a = s.getsockname()[0]
        except OSError:
            continue
        if not ipaddress.ip_address(a).is_loopback:
            out.append(a)
    return out


def test_proc_net_tcp_addresses_are_decoded():
    assert _address("0100007F") == "127.0.0.1" and _address("00000000") == "0.0.0.0"
    assert _address("00000000000000000000000001000000") == "::1"


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from Linux's /proc/net/tcp")
def test_the_readme_command_on_a_fresh_copy_listens_on_loopback_only(tmp_path):
    copy = fresh_copy(tmp_path / "sei-review")
    home = tmp_path / "home"  # a fresh user: no ~/.streamlit of their own
    home.mkdir()
    with app_server(tmp_path / "runs", tmp_path / "server.log", root=copy, address=None,
                    env={"HOME": str(home)}, timeout=90) as (_, url):
        port = int(url.rsplit(":", 1)[1])
        addresses = listening(port)
        assert addresses, f"nothing listens on port {port}"
        assert all(ipaddress.ip_address(a).is_loopback for a in addresses), addresses
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        for a in other_addresses():  # and it cannot be reached on this machine's other addresses
            with pytest.raises(OSError):
                socket.create_connection((a, port), timeout=2).close()


def test_the_config_the_app_runs_with_is_loopback_and_sends_no_usage_statistics(tmp_path):
    """Streamlit's own reading of the project's configuration, from the project folder, for a
    user without a configuration of their own."""
    copy = fresh_copy(tmp_path / "sei-review")
    home = tmp_path / "home"
    home.mkdir()
    got = subprocess.run(
        [sys.executable, "-c", "from streamlit import config; config.get_config_options(); "
                               "print(config.get_option('browser.gatherUsageStats'), config.get_option('server.address'))"],
        cwd=copy, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["False", "127.0.0.1"]
