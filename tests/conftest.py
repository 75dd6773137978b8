"""Shared fixtures: offline mode and tiny generated data sets."""

import os

import sei_core  # noqa: E402,F401 - first: its OpenMP policy (sei_core.threads) before any test imports torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub download attempt must fail at once
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# pretrained weights: an empty folder of the test session's own, never the user's cache
os.environ.setdefault("SEI_WEIGHTS_DIR", __import__("tempfile").mkdtemp(prefix="sei-weights-"))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from sample_data.make_sample_data import generate  # noqa: E402

#: A training configuration that learns something in seconds on a 2-core CPU.
TINY_TRAIN = dict(model="SEI-Tiny-RN", image_size=32, epochs=4, batch_size=16, lr=0.02, workers=2)


@pytest.fixture(scope="session")
def tiny_train() -> dict:
    """Keyword arguments of :class:`sei_core.config.TrainConfig` for a seconds-long run."""
    return dict(TINY_TRAIN)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A 48-image, 4-class generated data set (label CSV path); treat it as read-only."""
    out = tmp_path_factory.mktemp("tiny")
    return generate(out, n_per_class=12, image_size=32, noise_rate=0.15, seed=1)


@pytest.fixture
def tiny_copy(tiny_data, tmp_path) -> Path:
    """A private, writable copy of the tiny data set."""
    import shutil

    dst = tmp_path / "data"
    shutil.copytree(tiny_data.parent, dst)
    return dst / tiny_data.name


def bench_args(data, out, tiny, extra=()):
    """`sei bench` arguments for one tiny cell: 25% symmetric noise, seed 0, 2 epochs, 2 folds."""
    args = ["bench", "--data", str(data), "--rates", "0.25", "--seeds", "0", "--folds", "2", "--out", str(out),
            *extra]
    for k, v in {**tiny, "epochs": 2}.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


@pytest.fixture(scope="session")
def tiny_bench(tiny_data, tiny_train, tmp_path_factory):
    """A finished one-cell `sei bench` of ``tiny_data`` (see :func:`bench_args`); tests that
    change it must restore it."""
    from sei_core import cli

    out = tmp_path_factory.mktemp("bench") / "bench"
    assert cli.main(bench_args(tiny_data, out, tiny_train)) == 0
    return out


# -- the one trained run of the test session ---------------------------------------------------


def train_args(data, out, **over) -> list[str]:
    """`sei train` arguments for :data:`TINY_TRAIN` (``over`` replaces any of its settings)."""
    args = ["train", str(data), "--out", str(out), "--no-progress"]
    for k, v in {**TINY_TRAIN, **over}.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


@pytest.fixture(scope="session")
def trained_run(tiny_data, tmp_path_factory):
    """The finished run the CLI and app tests share: `sei train` on ``tiny_data`` with
    :data:`TINY_TRAIN` (4 epochs, two complementary runs). Treat it as read-only."""
    from sei_core import cli

    out = tmp_path_factory.mktemp("runs") / "first"
    assert cli.main(train_args(tiny_data, out)) == 0
    return out


@pytest.fixture
def app_env(tiny_data, trained_run, tmp_path, monkeypatch):
    """A private copy of the tiny data and of the trained run, a runs folder that points the app
    at them (``recent.json``), and ``SEI_RUNS_DIR`` set. Returns a namespace of paths."""
    import json
    import shutil
    from types import SimpleNamespace

    data = tmp_path / "data"
    shutil.copytree(tiny_data.parent, data)
    runs = tmp_path / "runs"
    run = runs / trained_run.name
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns(".lock", "checkpoint.pt"))
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"] = str(data / tiny_data.name)
    (run / "config.json").write_text(json.dumps(cfg))
    (runs / "recent.json").write_text(json.dumps({"data": [{"path": str(data / tiny_data.name), "split": "train"}]}))
    monkeypatch.setenv("SEI_RUNS_DIR", str(runs))
    return SimpleNamespace(data=data, labels=data / tiny_data.name, runs=runs, run=run, root=tmp_path)


@pytest.fixture
def open_app(app_env, monkeypatch):
    """``open_app(page=None)``: an AppTest of app.py, run once and switched to ``page`` (default:
    the Data page, where the app's address ``/`` forwards a browser)."""
    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parent.parent

    def _open(page: str | None = None):
        at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
        at.run()
        at.switch_page(page or "pages/data.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return _open


def write_mapped_labels(labels_csv: Path, out: Path) -> Path:
    """``labels_csv`` (``path,label,…``) rewritten as a dermatologist's file would be:
    ``image_id;diagnosis;age`` with ``;`` delimiters, image paths relative to ``out``'s folder."""
    from sei_core.labels import read_table

    t = read_table(labels_csv)
    images = [os.path.relpath(labels_csv.parent / p, out.parent) for p in t.paths()]
    rows = [f"{p};{lab};{30 + i % 50}" for i, (p, lab) in enumerate(zip(images, t.labels()))]
    out.write_text("image_id;diagnosis;age\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return out
