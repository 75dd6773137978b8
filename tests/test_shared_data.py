"""Slower checks on the real data in ../shared/data (HAM10000 dermoscopy, RetinaMNIST)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sei_core import dataset, decode
from sei_core.bench import noise
from sei_core.metrics import auroc
from sei_core.ranking import score_run
from sei_core.config import TrainConfig
from sei_core.train import train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DERM = SHARED / "derm-ham10000" / "labels.csv"
RETINA = SHARED / "retinamnist" / "retinamnist.npz"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DERM.is_file() or not RETINA.is_file(), reason="../shared/data is not beside the project"),
]


def test_ham10000_label_file_validates_and_decodes():
    ds = dataset.load(DERM)
    assert len(ds) == 7496 and len(ds.classes) == 7
    assert ds.class_counts()["nevus"] == 5232
    sub = dataset.subset(ds, range(0, 7496, 50))
    arr, problems = decode.decode_images(sub, 32, workers=2)
    assert arr.shape == (150, 3, 32, 32) and not problems
    assert 40 < arr.mean() < 220  # real pictures, not blank slots


def test_retinamnist_splits_load():
    train_ds, test_ds = dataset.load(RETINA), dataset.load(RETINA, split="test")
    assert (len(train_ds), len(test_ds)) == (1080, 400)
    assert train_ds.classes == test_ds.classes and len(train_ds.classes) == 5


def test_training_on_noisy_dermoscopy_ranks_injected_errors_above_chance(tmp_path):
    """600 HAM10000 images of the two largest classes, 30 % symmetric noise, 32 px."""
    table = noise.read_label_table(DERM)
    table = table[table["label"].isin(["nevus", "benign keratosis"])]
    table = table.groupby("label").sample(300, random_state=0)
    table["path"] = [str(DERM.parent / p) for p in table["path"]]
    classes = sorted(table["label"].unique())
    y = np.array([classes.index(c) for c in table["label"]])
    noisy = noise.symmetric_noise(y, len(classes), 0.3, seed=0)
    noise.write_noisy_label_file(table.reset_index(drop=True), [classes[i] for i in noisy],
                                 tmp_path / "labels.csv", tmp_path / "truth.csv")
    run = train(TrainConfig(data=str(tmp_path / "labels.csv"), model="SEI-Tiny-RN", image_size=32, epochs=12,
                            batch_size=32, lr=0.02, workers=2), tmp_path / "run", progress_bar=False)
    s = score_run(run)
    truth = pd.read_csv(tmp_path / "truth.csv")
    is_noisy = dict(zip(truth["path"], truth["is_noisy"].astype(bool)))
    truth_arr = np.array([is_noisy[i] for i in s.ids])
    value, paper = auroc(s.score, truth_arr), auroc(s.sei, truth_arr)
    print(f"AUROC on 30 % noise: {s.method} {value:.3f}, the paper's SEI {paper:.3f}")
    assert value > 0.6 and paper > 0.6
