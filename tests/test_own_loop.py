"""SEI in a user's own training loop: RunWriter, the example script as written, `sei flags` on
its run, and the Lightning callback (only where Lightning is installed)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sei_core import cli
from sei_core.ranking import score_run
from sei_core.run_writer import RunWriter
from sei_core.runs import Run, RunError

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "dog", "fox"]


@pytest.mark.slow  # trains in another process (interpreter, torch and training each time)
def test_example_script_runs_as_written_and_sei_flags_reads_its_run(tmp_path, capsys):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "own_training_loop.py"), "--out", "own-loop"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "own-loop" / "run"
    assert Run(run).status()["state"] == "finished"
    assert cli.main(["flags", str(run)]) == 0
    out = capsys.readouterr().out
    assert "given_label" in out and "images/" in out
    # the flags find the injected noise far better than chance (20 % of the images are noisy)
    flags = pd.read_csv(run / "scores.csv")
    truth = pd.read_csv(tmp_path / "own-loop" / "data" / "truth.csv")
    m = flags.merge(truth[["path", "is_noisy"]], on="path", validate="one_to_one")
    assert len(m) == len(truth) == 160
    precision = m.loc[m["flagged"], "is_noisy"].mean()
    assert m["flagged"].sum() >= 10 and precision > 0.4


def _loop(writer: RunWriter, logits_of, epochs: int = 3, batch: int = 4) -> None:
    y = torch.as_tensor(writer.targets)
    for _ in range(epochs):
        for idx in torch.arange(len(writer.ids)).split(batch):
            writer.update(logits_of(idx), y[idx], idx)
        writer.end_epoch(loss=1.0, accuracy=0.5)


def test_run_writer_writes_a_run_that_scores_like_any_other(tmp_path):
    n = 30
    labels = [CLASSES[i % 3] for i in range(n)]
    wrong = {4, 17}  # the "model" predicts another class for these two samples every epoch
    writer = RunWriter(tmp_path / "run", [f"img{i}.png" for i in range(n)], labels, CLASSES, seed=3, epochs=3)
    assert writer.n_outputs == 4 and len(writer.aux) == n // 4
    assert (writer.targets[writer.aux] == 3).all()
    assert Run(tmp_path / "run").status()["state"] == "running"  # held while the loop runs

    def logits_of(idx):
        t = torch.as_tensor(writer.targets)[idx].clone()
        for j, i in enumerate(idx.tolist()):
            if i in wrong:
                t[j] = (t[j] + 1) % 3
        return 6.0 * torch.nn.functional.one_hot(t, 4).float()

    _loop(writer, logits_of)
    writer.finish()
    run = Run(tmp_path / "run")
    st = run.status()
    assert st["state"] == "finished" and st["epoch"] == 3 and len(st["history"]) == 3
    s = score_run(run)
    flagged = {s.ids[i] for i in np.flatnonzero(s.flagged)}
    assert flagged == {f"img{i}.png" for i in wrong if i not in set(writer.aux.tolist())}
    assert np.isnan(s.score[writer.aux]).all()  # one run: its auxiliary samples get no score


def test_run_writer_refuses_bad_input_and_incomplete_epochs(tmp_path):
    with pytest.raises(ValueError, match="not one of the classes"):
        RunWriter(tmp_path / "a", ["x", "y", "z"], ["cat", "dog", "cow"], CLASSES)
    with pytest.raises(ValueError, match="unique"):
        RunWriter(tmp_path / "b", ["x", "x", "z"], ["cat", "dog", "fox"], CLASSES)
    w = RunWriter(tmp_path / "c", [f"i{i}" for i in range(12)], [i % 3 for i in range(12)], CLASSES)
    w.update(torch.zeros(2, 4), torch.as_tensor(w.targets[:2]), torch.arange(2))
    with pytest.raises(RuntimeError, match="not recorded"):
        w.end_epoch()
    with pytest.raises(RunError, match="no epoch"):
        w.finish()
    with pytest.raises(RunError, match="already holds a run"):
        RunWriter(tmp_path / "c", ["x", "y", "z"], ["cat", "dog", "fox"], CLASSES)


def test_lightning_callback_records_a_fit(tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    from sei_core.lightning import SEICallback

    n = 24
    torch.manual_seed(0)
    x = torch.randn(n, 5)
    writer = RunWriter(tmp_path / "run", [f"s{i}" for i in range(n)], [i % 3 for i in range(n)], CLASSES)
    targets = torch.as_tensor(writer.targets)

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(5, writer.n_outputs)

        def training_step(self, batch, batch_idx):
            xb, idx = batch
            logits = self.net(xb)
            loss = torch.nn.functional.cross_entropy(logits, targets[idx])
            return {"loss": loss, "logits": logits, "targets": targets[idx], "sample_ids": idx}

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = DataLoader(TensorDataset(x, torch.arange(n)), batch_size=8, shuffle=True)
    trainer = L.Trainer(max_epochs=3, callbacks=[SEICallback(writer)], accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(Model(), loader)
    run = Run(tmp_path / "run")
    assert run.status()["state"] == "finished" and run.records(1).epochs() == [1, 2, 3]
    assert (run.path / "scores.csv").is_file()


@pytest.mark.slow
def test_the_app_opens_a_run_written_from_an_own_loop(open_app, app_env):
    """A RunWriter run on the app's data set: Explore and Review show it like a `sei train` run."""
    import shutil

    from sei_core import dataset

    shutil.rmtree(app_env.run)  # only the own-loop run is left to select
    data = dataset.load(str(app_env.labels))
    torch.manual_seed(0)
    writer = RunWriter(app_env.runs / "own-loop", data.ids, [data.classes[k] for k in data.labels], data.classes,
                       data=app_env.labels, epochs=3)
    g = torch.Generator().manual_seed(0)
    _loop(writer, lambda idx: torch.randn(len(idx), writer.n_outputs, generator=g))
    writer.finish()
    s = score_run(Run(writer.run.path))
    for page in ("pages/explore.py", "pages/review.py"):
        at = open_app(page)
        assert not at.error, [e.value for e in at.error]
    at = open_app("pages/explore.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == str(len(s.ids)) and metrics["Flagged"] == str(int(s.flagged.sum()))
