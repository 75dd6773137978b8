"""Recording per-sample training dynamics: a plug-in recorder and its on-disk store.

:class:`Recorder` has the shape of AUM's recorder (``update(logits, targets, sample_ids)``
per batch, ``finalize()`` per epoch) but is vectorised: each batch's logits are copied into
a preallocated ``(N, K)`` tensor on the training device, indexed by sample id, so the
training loop never waits on it. At the end of an epoch the whole table crosses to the CPU
once and :func:`sei_core.scores.epoch_statistics` turns it into the per-sample statistics.

:class:`RecordStore` keeps them as one ``.npz`` per epoch (written atomically), so storage
grows as ``N × T`` — plus the full probabilities of the last few epochs, for suggested
labels and the baselines that need them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from .files import atomic_write
from .scores import EpochStatistics, epoch_statistics, softmax


class Recorder:
    """Collects the logits of every sample during one epoch."""

    def __init__(self, n_samples: int, n_outputs: int, device: torch.device | str = "cpu"):
        self.logits = torch.zeros((n_samples, n_outputs), dtype=torch.float32, device=device)
        self.targets = torch.zeros(n_samples, dtype=torch.int64, device=device)
        self.seen = torch.zeros(n_samples, dtype=torch.bool, device=device)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor, sample_ids: torch.Tensor) -> None:
        """Store a batch: ``logits (B, K)``, ``targets (B,)``, ``sample_ids (B,)``."""
        self.logits[sample_ids] = logits.detach().float()
        self.targets[sample_ids] = targets
        self.seen[sample_ids] = True

    @torch.no_grad()
    def reduce(self, group=None) -> None:
        """Gather the shards of a multi-process epoch (``torch.distributed``, every process calls it).

        Each process recorded the samples it trained on; afterwards every process holds the
        logits and targets of all samples. Ownership is exact: the sum keeps the one value
        recorded for a sample, and a sample recorded by two processes (e.g. the padding of a
        ``DistributedSampler``) raises instead of being counted twice.
        """
        import torch.distributed as dist

        self.logits.masked_fill_(~self.seen[:, None], 0.0)  # stale rows of earlier epochs
        self.targets.masked_fill_(~self.seen, 0)
        counts = self.seen.to(torch.int32)
        for t in (self.logits, self.targets, counts):
            dist.all_reduce(t, group=group)
        if bool((counts > 1).any()):
            raise RuntimeError(f"{int((counts > 1).sum())} samples were recorded by more than one process "
                               "this epoch; each sample must belong to exactly one shard")
        self.seen = counts == 1

    def reset(self) -> None:
        """Forget which samples were seen (a new epoch) without computing statistics."""
        self.seen.zero_()

    def finalize(self) -> tuple[EpochStatistics, np.ndarray]:
        """Statistics of the epoch and its probabilities ``(N, K)``; resets the recorder.

        Raises if some sample was not seen this epoch (a sharded run must gather first).
        """
        if not bool(self.seen.all()):
            missing = int((~self.seen).sum())
            raise RuntimeError(f"{missing} samples were not recorded this epoch")
        logits = self.logits.cpu().numpy()
        targets = self.targets.cpu().numpy()
        self.seen.zero_()
        return epoch_statistics(logits, targets), softmax(logits).astype(np.float32)


_EPOCH_FILE = re.compile(r"epoch_(\d{4,})\.npz$")


class RecordStore:
    """Per-epoch records of one training run in a folder (epochs are numbered from 1)."""

    def __init__(self, folder: str | Path, keep_probs: int = 5):
        self.folder = Path(folder)
        self.keep_probs = keep_probs

    def write_epoch(self, epoch: int, stats: EpochStatistics, probs: np.ndarray, **scalars: float) -> None:
        """Write epoch ``epoch`` atomically; keep probabilities of the last ``keep_probs`` epochs."""
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = {f: getattr(stats, f) for f in EpochStatistics.FIELDS}
        arrays.update({k: np.asarray(v) for k, v in scalars.items()})
        atomic_write(self.folder / f"probs_{epoch:04d}.npy", lambda f: np.save(f, probs.astype(np.float16)))
        atomic_write(self.folder / f"epoch_{epoch:04d}.npz", lambda f: np.savez(f, **arrays))
        for old in self.folder.glob("probs_*.npy"):
            if int(old.stem.split("_")[1]) <= epoch - self.keep_probs:
                old.unlink(missing_ok=True)

    def epochs(self) -> list[int]:
        """Epochs whose record is complete, in order."""
        if not self.folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _EPOCH_FILE.match(p.name)))

    def truncate(self, last_epoch: int) -> None:
        """Delete records after ``last_epoch`` (a resumed run redoes those epochs)."""
        for pattern in ("epoch_*.npz", "probs_*.npy"):
            for p in self.folder.glob(pattern):
                if int(p.stem.split("_")[1]) > last_epoch:
                    p.unlink()

    def load(self, fields: tuple[str, ...] = EpochStatistics.FIELDS) -> dict[str, np.ndarray]:
        """Stack the records of all complete epochs: each field becomes a ``(T, N)`` array."""
        epochs = self.epochs()
        if not epochs:
            return {f: np.zeros((0, 0)) for f in fields}
        out: dict[str, list] = {f: [] for f in fields}
        for e in epochs:
            with np.load(self.folder / f"epoch_{e:04d}.npz") as z:
                for f in fields:
                    out[f].append(z[f])
        return {f: np.stack(v) for f, v in out.items()}

    def load_probs(self) -> tuple[list[int], np.ndarray]:
        """Epochs with stored probabilities and the ``(L, N, K)`` float32 array of them."""
        files = sorted(self.folder.glob("probs_*.npy"))
        complete = set(self.epochs())
        files = [f for f in files if int(f.stem.split("_")[1]) in complete]
        if not files:
            return [], np.zeros((0, 0, 0), dtype=np.float32)
        return [int(f.stem.split("_")[1]) for f in files], np.stack([np.load(f).astype(np.float32) for f in files])
