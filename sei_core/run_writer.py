"""SEI in your own training loop: write a run directory that `sei flags` and the app open.

The recorder, :class:`sei_core.records.Recorder`, has AUM's shape — ``update(logits,
targets, sample_ids)`` for each batch, ``finalize()`` at the end of an epoch. :class:`RunWriter`
wraps it with what a run directory needs: the samples and their given labels, the
auxiliary (known-mislabeled) samples that set the threshold, one record per epoch, the
status, and the ranked ``scores.csv`` at the end::

    writer = RunWriter("runs/mine", ids, labels, classes, data="labels.csv")
    targets = torch.as_tensor(writer.targets)       # the labels, auxiliary samples → class K
    model = make_model(n_outputs=writer.n_outputs)  # K + 1 outputs
    for epoch in range(epochs):
        for x, idx in loader:                       # idx: the samples' positions in ids
            logits = model(x)
            loss = F.cross_entropy(logits, targets[idx])
            ...
            writer.update(logits, targets[idx], idx)
        writer.end_epoch(loss=..., accuracy=...)
    writer.finish()                                 # scores.csv; `sei flags runs/mine`

Train with the auxiliary targets: the auxiliary samples are relabeled to the extra class
``K``, so that the threshold is the mean score of samples known to be mislabeled (the
paper's section 2.5). One ``RunWriter`` is one run, and its auxiliary samples get no score;
the ``sei train`` command trains two complementary runs so that every sample gets one.
A complete example: ``examples/own_training_loop.py``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .records import Recorder
from .runs import Run, RunError, now
from .scores import choose_aux_sets


class RunWriter:
    """A run directory filled from a training loop you wrote yourself.

    Parameters
    ----------
    out : the run directory to create (it must not hold a run yet).
    ids : (N,) sample ids, e.g. the image paths as written in the label file; position ``i``
        is sample index ``i`` in :meth:`update`.
    labels : (N,) the given labels, as class names or indices into ``classes``.
    classes : the K class names, in output order.
    aux : indices of the auxiliary samples; None chooses ``N/(K+1)`` at random (``seed``).
    data : the label file (or image folder) the ids come from, so that the app can show
        the images and review them; None if there is none.
    config : anything else worth keeping in ``config.json`` (model, learning rate …); with
        ``path_column``/``label_column`` when ``data`` names its columns otherwise than
        ``path``/``label``, so the run's review writes back to the right column.
    epochs : the number of epochs planned, for the progress shown (optional).
    keep_probs : keep the full probabilities of this many last epochs.
    device : where the recorder keeps its per-epoch table (the training device is fastest).
    """

    def __init__(self, out: str | Path, ids: Sequence[str], labels: Sequence, classes: Sequence[str], *,
                 aux: Sequence[int] | None = None, seed: int = 0, data: str | Path | None = None,
                 config: dict | None = None, epochs: int | None = None, keep_probs: int = 5,
                 device: torch.device | str = "cpu"):
        self.run = Run(out)
        if self.run.exists():
            raise RunError(f"{self.run.path} already holds a run; choose another directory")
        self.classes = [str(c) for c in classes]
        k = len(self.classes)
        index = {c: i for i, c in enumerate(self.classes)}
        try:
            self.labels = np.array([index[str(v)] if not isinstance(v, (int, np.integer)) else int(v)
                                    for v in labels], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"label {e} is not one of the classes {self.classes}") from None
        self.ids = [str(i) for i in ids]
        n = len(self.ids)
        if len(self.labels) != n:
            raise ValueError(f"{n} ids but {len(self.labels)} labels")
        if len(set(self.ids)) != n:
            raise ValueError("sample ids must be unique")
        if k < 2 or self.labels.min(initial=0) < 0 or self.labels.max(initial=0) >= k:
            raise ValueError(f"labels must be indices into the {k} classes (at least 2)")
        self.aux = np.sort(np.asarray(aux if aux is not None else choose_aux_sets(n, k, 1, seed=seed)[0],
                                      dtype=np.int64))
        #: the training targets: the given labels, with the auxiliary samples moved to class K
        self.targets = self.labels.copy()
        self.targets[self.aux] = k
        #: outputs the model needs: K classes and the auxiliary one
        self.n_outputs = k + 1
        self.epoch = 0
        self.epochs = epochs
        self.recorder = Recorder(n, k + 1, device)
        self._store = self.run.records(1, keep_probs)
        self._history: list[dict] = []
        self._t0 = time.monotonic()
        cfg = {"data": str(Path(data).resolve()) if data is not None else "", "split": "train",
               "source": "own training loop", **(config or {}), "classes": self.classes, "runs": 1,
               "keep_probs": keep_probs, "n_samples": n, "created_at": now()}
        self.run.write_config(cfg)
        self.run.write_samples(self.ids, [self.classes[i] for i in self.labels])
        self.run.write_aux(1, self.aux)
        self._lock = self.run.acquire()  # held while the loop runs: the run reads as "running"
        self.run.mark_running(phase="training run 1/1", n_runs=1, run_index=1, epoch=0, epochs=epochs)

    def update(self, logits: torch.Tensor, targets: torch.Tensor, sample_ids: torch.Tensor) -> None:
        """Record a batch: ``logits (B, K+1)``, the ``targets (B,)`` trained on, ``sample_ids (B,)``
        (positions in ``ids``)."""
        self.recorder.update(logits, torch.as_tensor(targets, device=self.recorder.targets.device),
                             torch.as_tensor(sample_ids, device=self.recorder.targets.device))

    def end_epoch(self, loss: float | None = None, accuracy: float | None = None) -> None:
        """Write the epoch's records (every sample must have been recorded) and the status."""
        stats, probs = self.recorder.finalize()
        self.epoch += 1
        scalars = {k: float(v) for k, v in (("loss", loss), ("accuracy", accuracy)) if v is not None}
        self._store.write_epoch(self.epoch, stats, probs, **scalars)
        seconds, self._t0 = time.monotonic() - self._t0, time.monotonic()
        self._history.append({"run": 1, "epoch": self.epoch, "seconds": seconds, **scalars})
        self.run.update_status(epoch=self.epoch, epochs=max(self.epoch, self.epochs or 0), history=self._history,
                               loss=scalars.get("loss"), accuracy=scalars.get("accuracy"))

    def finish(self) -> Path:
        """Score the run, write ``scores.csv`` and mark it finished; returns the run directory."""
        from .score_cache import write_finished  # late import: scoring reads what was written

        if self.epoch == 0:
            raise RunError("no epoch was recorded: call end_epoch() after each epoch")
        self.run.mark_done(1)
        write_finished(self.run)
        self.run.mark_finished(epochs=self.epoch)
        self._release()
        return self.run.path

    def _release(self) -> None:
        if self._lock is not None:
            Run.release(self._lock)
            self._lock = None

    def fail(self, error: str) -> None:
        """Mark the run failed (the records written so far stay readable)."""
        self.run.mark_failed(error)
        self._release()

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self.fail(f"{exc_type.__name__}: {exc}")
