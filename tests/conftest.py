"""Shared fixtures: offline mode and tiny generated data sets."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub download attempt must fail at once
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from sample_data.make_sample_data import generate  # noqa: E402

#: A training configuration that learns something in seconds on a 2-core CPU.
TINY_TRAIN = dict(model="SEI-Tiny-RN", image_size=32, epochs=4, batch_size=16, lr=0.02, workers=2)


@pytest.fixture(scope="session")
def tiny_train() -> dict:
    """Keyword arguments of :class:`sei_core.train.TrainConfig` for a seconds-long run."""
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
