"""Who may reach the app, and which files it may open: the one place for both.

Patient images stay where they belong:

- **Local by default.** The app listens on the loopback interface (``.streamlit/config.toml``:
  ``server.address = "127.0.0.1"``). It is *exposed* when it listens on any other address
  (``--server.address 0.0.0.0``; an empty address means every interface) or when
  ``SEI_NETWORK=1`` says it is reached from a network (e.g. behind a proxy on this machine).
- **A login when exposed.** An exposed app serves nothing but the sign-in until the visitor
  signs in: with Streamlit's own OpenID Connect login where ``.streamlit/secrets.toml`` has
  an ``[auth]`` section, else with a secret token: one per person (``SEI_TOKENS``, or the
  ``[sei.tokens]`` table of ``secrets.toml``, mapping a reviewer's name to their token; the
  name is then the identity every decision records) and/or one shared, anonymous token
  (``SEI_TOKEN``, or ``token`` in the ``[sei]`` section; decisions then carry the name typed
  on the Review page). ``sei app --network`` makes them and prints the addresses that carry
  them. Without any login it refuses to serve data pages.
- **Folders the app may open.** ``SEI_DATA_ROOTS`` (folders separated by ``os.pathsep``) or
  ``data_roots`` in the ``[sei]`` section of ``secrets.toml``: required when exposed,
  optional locally. When set, every file the app or the library opens by a name it was given
  (a typed path, a row of a label file, an export target, a checkpoint) must lie inside one of
  them or inside the app's own folders (the runs folder ``$SEI_RUNS_DIR`` and the benchmark
  folder ``$SEI_BENCH_DIR``), after symbolic links are resolved; anything else is refused
  with :class:`AccessError`.

Pure functions and one small settings object; no Streamlit here (``pages/_common.py`` draws
the sign-in from :class:`Settings`).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NETWORK_ENV = "SEI_NETWORK"
DATA_ROOTS_ENV = "SEI_DATA_ROOTS"
#: The app's own folders (:func:`app_folders`): the runs and the benchmark results.
RUNS_ENV = "SEI_RUNS_DIR"
BENCH_ENV = "SEI_BENCH_DIR"
TOKEN_ENV = "SEI_TOKEN"
#: Personal tokens: ``NAME=TOKEN`` entries separated by commas (a name holds no comma).
TOKENS_ENV = "SEI_TOKENS"
#: The ``secrets.toml`` section of the app's own settings (``token``, ``data_roots``).
SECRETS_SECTION = "sei"
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class AccessError(PermissionError):
    """A file lies outside the folders the app may open; the message says which and how to fix."""


# -- where the server listens ---------------------------------------------------------------

def is_loopback(address: str | None) -> bool:
    """True if a server bound to ``address`` is reachable from this machine only.

    ``None`` or ``""`` is Streamlit's default, every interface: not loopback."""
    a = (address or "").strip().strip("[]")
    if not a:
        return False
    if a.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(a).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def _flag(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


# -- the folders the app may open -------------------------------------------------------------

def parse_roots(value: str | Sequence[str] | None) -> tuple[Path, ...]:
    """Data roots from ``SEI_DATA_ROOTS`` (``os.pathsep``-separated) or a list: each expanded
    and resolved (symbolic links followed), empty entries skipped, duplicates once."""
    if value is None:
        return ()
    items = value.split(os.pathsep) if isinstance(value, str) else [str(v) for v in value]
    out: list[Path] = []
    for it in items:
        it = it.strip()
        if it:
            p = Path(os.path.realpath(Path(it).expanduser()))
            if p not in out:
                out.append(p)
    return tuple(out)


def data_roots(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The data roots this process was given (``$SEI_DATA_ROOTS``); () when none."""
    env = os.environ if env is None else env
    return parse_roots(env.get(DATA_ROOTS_ENV))


def app_folders(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The app's own folders, always open to it: the runs folder and the benchmark folder
    (``$SEI_RUNS_DIR`` / ``./runs``, ``$SEI_BENCH_DIR`` / ``./bench``), resolved."""
    env = os.environ if env is None else env
    return tuple(Path(os.path.realpath(Path(env.get(name) or default).expanduser()))
                 for name, default in ((RUNS_ENV, "runs"), (BENCH_ENV, "bench")))


def allowed_roots(env: Mapping[str, str] | None = None) -> tuple[Path, ...] | None:
    """Every folder a named file may lie in (the data roots, then :func:`app_folders`), or
    None when no data roots are set (no confinement: a local app opens what its user can)."""
    roots = data_roots(env)
    if not roots:
        return None
    return roots + tuple(f for f in app_folders(env) if f not in roots)


def resolve(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute with ``~``, ``..`` and every symbolic link resolved (the file the
    system would open); it need not exist."""
    return Path(os.path.realpath(Path(os.fspath(path)).expanduser()))


def inside(path: str | os.PathLike[str], roots: Iterable[Path]) -> bool:
    """True if ``path``, resolved (:func:`resolve`), is one of ``roots`` or lies below one."""
    p = resolve(path)
    return any(p == r or p.is_relative_to(r) for r in roots)


def refusal(path: str | os.PathLike[str], roots: Sequence[Path], what: str = "") -> str:
    """The message of a refused path: what, where it leads, the allowed folders, the fix."""
    real = resolve(path)
    shown = str(path)
    via = "" if str(real) == os.path.abspath(os.path.expanduser(shown)) else f" (it leads to {real})"
    return (f"{what + ' ' if what else ''}{shown!r}{via} lies outside the folders this app may open: "
            f"{', '.join(map(str, roots))}. Move the data into one of them, or ask whoever runs the "
            f"server to add its folder to {DATA_ROOTS_ENV}.")


def check(path: str | os.PathLike[str], what: str = "", roots: Sequence[Path] | None = None) -> Path:
    """``path`` resolved, if the app may open it; raises :class:`AccessError` otherwise.

    ``roots``: default :func:`allowed_roots` (when that is None, every path is allowed and
    returned resolved). ``what`` names the file in the message (``"the label file"``)."""
    roots = allowed_roots() if roots is None else tuple(roots)
    real = resolve(path)
    if roots is not None and not any(real == r or real.is_relative_to(r) for r in roots):
        raise AccessError(refusal(path, roots, what))
    return real


def outside(full_paths: Sequence[str], roots: Sequence[Path]) -> np.ndarray:
    """``(N,)`` True where the absolute path ``full_paths[i]`` (a label file's image, joined to
    its folder) resolves outside ``roots``.

    For a million rows: one ``realpath`` per distinct folder (``..`` and linked folders
    resolved there), one directory listing per folder that is inside, and a ``realpath`` only
    for the files that listing shows to be symbolic links. A name that is ``.`` or ``..`` is
    resolved on its own."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(full_paths)
    out = np.zeros(n, dtype=bool)
    if n == 0:
        return out
    roots = tuple(roots)

    def ok(p: str) -> bool:
        real = Path(os.path.realpath(p))
        return any(real == r or real.is_relative_to(r) for r in roots)

    arr = pa.array(list(full_paths) if not isinstance(full_paths, (pa.Array, pa.ChunkedArray)) else full_paths,
                   type=pa.string())
    parts = pc.split_pattern(arr, "/", max_splits=1, reverse=True)
    folder, name = pc.list_element(parts, 0), pc.list_element(parts, 1)
    codes, folders = pd.factorize(pd.Series(folder, dtype="string[pyarrow]"))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(folders) + 1))
    for f, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        rows = order[lo:hi]
        folder_path = folders[f] or "/"
        if not ok(folder_path):
            out[rows] = True
            continue
        try:
            with os.scandir(folder_path) as it:
                special = {e.name for e in it if e.is_symlink()}
        except OSError:
            special = set()
        special |= {".", "..", ""}
        hit = pc.is_in(name.take(pa.array(rows)), value_set=pa.array(sorted(special), type=pa.string()))
        for i in rows[hit.to_numpy(zero_copy_only=False)]:
            out[i] = not ok(arr[int(i)].as_py())
    return out


# -- who may reach the app ----------------------------------------------------------------------

def new_token() -> str:
    """A fresh shared secret for the sign-in (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_ok(given: str | None, expected: str | None) -> bool:
    """True if ``given`` is the server's token (constant-time comparison)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(str(given).encode("utf-8"), str(expected).encode("utf-8"))


#: What :func:`token_holder` returns for the shared token: signed in, but nobody in particular.
ANONYMOUS = ""


def token_holder(given: str | None, shared: str | None,
                 named: Sequence[tuple[str, str]] = ()) -> str | None:
    """Who ``given`` signs in: the name of the person whose token it is (``named``: ``(name,
    token)`` pairs), :data:`ANONYMOUS` for the ``shared`` token, None for any other string.

    Compared in constant time against every token (no early exit, so the time says nothing
    about which one, or how much of one, matched)."""
    who = None
    for name, token in named:
        if token_ok(given, token) and who is None:
            who = name
    if token_ok(given, shared) and who is None:
        who = ANONYMOUS
    return who


def parse_tokens(value: str | Mapping | None) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """Personal tokens from ``$SEI_TOKENS`` (``NAME=TOKEN,NAME=TOKEN``) or a ``[sei.tokens]``
    table (name → token): ``((name, token), …)`` with names and tokens stripped, and every
    problem found (a malformed entry, an empty name or token, a name or token given twice)."""
    if not value:
        return (), []
    problems: list[str] = []
    pairs: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    else:
        items = []
        for i, entry in enumerate(str(value).split(","), 1):
            if not entry.strip():
                continue
            name, eq, token = entry.rpartition("=")
            if not eq:
                problems.append(f"{TOKENS_ENV} entry {i} has no '=': write NAME=TOKEN, entries separated by commas.")
                continue
            items.append((name, token))
    for name, token in items:
        name = name.strip()
        token = token.strip() if isinstance(token, str) else ""
        if not name or not token:
            problems.append(f"The personal token of {name or '(no name)'!r} has an empty name or token "
                            f"(or a token that is not a string): give each reviewer a name and a token.")
            continue
        if any(n == name for n, _ in pairs):
            problems.append(f"The reviewer {name!r} has two personal tokens: keep one.")
            continue
        if any(hmac.compare_digest(t.encode("utf-8"), token.encode("utf-8")) for _, t in pairs):
            problems.append(f"The personal token of {name!r} is also another reviewer's: give each their own "
                            "(sei app --network --user NAME makes them).")
            continue
        pairs.append((name, token))
    return tuple(pairs), problems


def format_tokens(pairs: Iterable[tuple[str, str]]) -> str:
    """``$SEI_TOKENS`` for ``(name, token)`` pairs (the inverse of :func:`parse_tokens`)."""
    return ",".join(f"{n}={t}" for n, t in pairs)


@dataclass(frozen=True)
class Settings:
    """How the running app is reached and what it may open (see the module's description)."""

    address: str | None  #: the address the server listens on (``server.address``)
    network: bool  #: ``SEI_NETWORK`` is set
    roots: tuple[Path, ...]  #: the data roots
    token: str | None  #: the shared secret, if one is set
    oidc: bool  #: ``secrets.toml`` has an ``[auth]`` section (Streamlit's OpenID Connect login)
    tokens: tuple[tuple[str, str], ...] = ()  #: personal tokens, ``(reviewer name, token)``
    token_problems: tuple[str, ...] = ()  #: what is wrong with the personal tokens given

    def holder(self, given: str | None) -> str | None:
        """Who the token ``given`` signs in (:func:`token_holder`): a reviewer's name,
        :data:`ANONYMOUS` (the shared token), or None (nobody)."""
        return token_holder(given, self.token, self.tokens)

    @property
    def exposed(self) -> bool:
        """Reachable from other machines: a non-loopback address, or network mode declared."""
        return self.network or not is_loopback(self.address)

    @property
    def login(self) -> str | None:
        """The sign-in an exposed app asks for: ``"oidc"``, ``"token"``, or None (local, or
        none configured)."""
        if not self.exposed:
            return None
        return "oidc" if self.oidc else "token" if self.token or self.tokens else None

    def problems(self) -> list[str]:
        """Why the app must not serve its pages (every reason at once); [] when it may."""
        if not self.exposed:
            return []
        where = f"on {self.address}" if self.address else "on every network interface"
        out = []
        if self.login == "token":
            out += self.token_problems
            if self.token and any(token_ok(self.token, t) for _, t in self.tokens):
                out.append(f"The shared token ({TOKEN_ENV}) is also a reviewer's personal token: change one.")
        if self.login is None:
            out.append(f"This server listens {where} but no login is configured. Set {TOKENS_ENV} or {TOKEN_ENV} "
                       "(or start it with `sei app --network [--user NAME]`, which makes tokens), or configure an OpenID Connect "
                       "provider in .streamlit/secrets.toml ([auth]); or run it locally "
                       "(`streamlit run app.py` from the project folder listens on 127.0.0.1 only).")
        if not self.roots:
            out.append(f"This server listens {where} but no data folders are set. Set {DATA_ROOTS_ENV} to the "
                       "folders it may open (separated by "
                       f"'{os.pathsep}'), or data_roots in the [sei] section of .streamlit/secrets.toml.")
        return out


def settings(address: str | None, secrets_: Mapping | None = None,
             env: Mapping[str, str] | None = None) -> Settings:
    """The :class:`Settings` of a server listening on ``address`` with ``secrets_`` (the
    parsed ``secrets.toml``: its ``[auth]`` and ``[sei]`` sections, ``[sei.tokens]`` included)
    and environment ``env``. The environment wins over ``[sei]``, setting by setting."""
    env = os.environ if env is None else env
    secrets_ = secrets_ or {}
    own = secrets_.get(SECRETS_SECTION) or {}
    roots_value = env.get(DATA_ROOTS_ENV) or own.get("data_roots")
    token = env.get(TOKEN_ENV) or own.get("token") or None
    tokens, token_problems = parse_tokens(env.get(TOKENS_ENV) or own.get("tokens"))
    return Settings(address=address, network=_flag(env.get(NETWORK_ENV)) or _flag(own.get("network")),
                    roots=parse_roots(roots_value), token=str(token) if token else None,
                    oidc=bool(secrets_.get("auth")), tokens=tokens, token_problems=tuple(token_problems))


def read_secrets(project: str | os.PathLike[str], home: str | os.PathLike[str] | None = None) -> dict:
    """The ``[auth]`` and ``[sei]`` sections of the ``secrets.toml`` files Streamlit reads for an
    app in ``project``: ``~/.streamlit/secrets.toml``, then ``project/.streamlit/secrets.toml``
    (which wins, section by section). {} without them; ValueError naming a file that is not TOML."""
    import tomllib

    out: dict = {}
    home = Path.home() if home is None else Path(home)
    for f in (home / ".streamlit" / "secrets.toml", Path(project) / ".streamlit" / "secrets.toml"):
        if not f.is_file():
            continue
        try:
            parsed = tomllib.loads(f.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{f} is not a valid TOML file ({e}): fix it, or move it away") from None
        out.update({k: parsed[k] for k in ("auth", SECRETS_SECTION) if k in parsed})
    return out


def identity(user: Mapping | None) -> str | None:
    """The signed-in person's name for the decision log from Streamlit's ``st.user``: their
    e-mail address (unique per person), else their name, else the subject id; None when
    nobody is signed in."""
    if not user or user.get("is_logged_in") is not True:
        return None
    for key in ("email", "preferred_username", "name", "sub"):
        value = user.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
