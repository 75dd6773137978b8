"""Recording per-sample training dynamics: a plug-in recorder and its on-disk store.

:class:`Recorder` has the shape of AUM's recorder (``update(logits, targets, sample_ids)``
per batch, ``finalize()`` per epoch) but is vectorised: each batch's logits are copied into
a preallocated ``(N, K)`` tensor on the training device, indexed by sample id, so the
training loop never waits on it. At the end of an epoch the whole table crosses to the CPU
once and :func:`sei_core.scores.epoch_statistics` turns it into the per-sample statistics.

:class:`RecordStore` keeps them *columnar*: one preallocated epoch-major ``(T_max, N)`` ``.npy``
file per stored column, 7 bytes per sample and epoch (8 with more than 256 model outputs)
instead of the 18 of the five float32/int16 fields::

    records.json          manifest: format, N, K', capacity, column dtypes, the number of
                          complete epochs T and each epoch's scalars (loss, accuracy)
    signed_entropy.npy    float16  ±H: the entropy is its absolute value (not stored)
    prediction.npy        uint8    argmax p (uint16 when K' > 256)
    nll.npy               float16  −log max(p_y, 1e-12): p_label = exp(−nll) (not stored)
    margin.npy            float16  AUM logit margin, clipped to ±65504
    probs_XXXX.npy        float16  (N, K') probabilities of the last ``keep_probs`` epochs

Row ``t`` of every column holds epoch ``t + 1``; an epoch counts only once the manifest says
so, and the manifest is replaced atomically after the epoch's columns are fsynced, so a
process killed mid-epoch leaves the rows of that epoch behind as garbage that no reader sees
and the next writer overwrites. Rows are written by sample-id ranges (or index arrays), so
several ranks of a sharded run can fill one epoch (:meth:`RecordStore.begin_epoch`,
:meth:`~RecordStore.write_rows`, :meth:`~RecordStore.commit_epoch`). Readers memory-map
only the columns they ask for (:meth:`RecordStore.load` returns :class:`Columns`), and
:mod:`sei_core.ranking` scores them range by range of samples.

Run directories of earlier versions (one ``epoch_XXXX.npz`` per epoch) are read as they are;
the first write to such a store (a resumed run) converts it once to the columnar layout
and says so on stderr.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .files import atomic_write_json
from .scores import EPS, EpochStatistics, epoch_statistics, softmax

if TYPE_CHECKING:
    import torch


class Recorder:
    """Collects the logits of every sample during one epoch.

    (torch is imported where it is used, so that reading and scoring records — ``sei
    flags``, the app — never pays for importing it.)
    """

    def __init__(self, n_samples: int, n_outputs: int, device: torch.device | str = "cpu"):
        import torch

        self.logits = torch.zeros((n_samples, n_outputs), dtype=torch.float32, device=device)
        self.targets = torch.zeros(n_samples, dtype=torch.int64, device=device)
        self.seen = torch.zeros(n_samples, dtype=torch.bool, device=device)

    def update(self, logits: torch.Tensor, targets: torch.Tensor, sample_ids: torch.Tensor) -> None:
        """Store a batch: ``logits (B, K)``, ``targets (B,)``, ``sample_ids (B,)``.

        ``index_copy_``/``index_fill_`` queue the copies on the device without waiting for
        it; ``tensor[ids] = value`` made the host wait for the GPU on every batch (measured
        on an H100: +17 to +29 % per epoch, docs/gpu.md).
        """
        sample_ids = sample_ids.to(self.logits.device, self.targets.dtype, non_blocking=True)  # int64 indices
        self.logits.index_copy_(0, sample_ids, logits.detach().float())
        self.targets.index_copy_(0, sample_ids, targets.detach().to(self.targets.dtype))
        self.seen.index_fill_(0, sample_ids, True)

    def reduce(self, group=None) -> None:
        """Gather the shards of a multi-process epoch (``torch.distributed``, every process calls it).

        Each process recorded the samples it trained on; afterwards every process holds the
        logits and targets of all samples. Ownership is exact: the sum keeps the one value
        recorded for a sample, and a sample recorded by two processes (e.g. the padding of a
        ``DistributedSampler``) raises instead of being counted twice.
        """
        import torch
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


#: The manifest of a columnar store and the format it names.
MANIFEST = "records.json"
FORMAT = "sei-records/2"
#: Columns written per epoch (what :data:`EpochStatistics.FIELDS` is derived from).
STORED = ("signed_entropy", "prediction", "nll", "margin")
#: Every epoch-major ``(T, N)`` field a store can give: the statistics and the stored ``nll``.
EPOCH_FIELDS = EpochStatistics.FIELDS + ("nll",)
_F16_MAX = float(np.finfo(np.float16).max)
_LEGACY_EPOCH = re.compile(r"epoch_(\d{4,})\.npz$")
_PROBS_FILE = re.compile(r"probs_(\d{4,})\.npy$")


def _prediction_dtype(n_outputs: int) -> np.dtype:
    if n_outputs <= 256:
        return np.dtype(np.uint8)
    if n_outputs <= 65536:
        return np.dtype(np.uint16)
    raise ValueError(f"{n_outputs} model outputs are more than the records can hold (65536)")


def encode(stats: EpochStatistics, n_outputs: int) -> dict[str, np.ndarray]:
    """The stored columns of one epoch's statistics (see the module docstring)."""
    p = np.clip(np.asarray(stats.p_label, dtype=np.float64), EPS, 1.0)
    margin = np.clip(np.asarray(stats.margin, dtype=np.float32), -_F16_MAX, _F16_MAX)
    return {
        "signed_entropy": np.asarray(stats.signed_entropy).astype(np.float16),
        "prediction": np.asarray(stats.prediction).astype(_prediction_dtype(n_outputs)),
        "nll": (-np.log(p)).astype(np.float16),
        "margin": margin.astype(np.float16),
    }


def decode(name: str, stored) -> np.ndarray:
    """Field ``name`` of :data:`EPOCH_FIELDS` from ``stored(column)`` (a stored column's array):
    ``entropy = |signed_entropy|``, ``p_label = exp(−nll)``; float16 columns come back as
    float32 (exact, and several times faster for NumPy to widen to float64 than float16),
    ``prediction`` as stored (the memory map itself)."""
    if name == "entropy":
        h = np.array(stored("signed_entropy"), dtype=np.float32)
        return np.abs(h, out=h)
    if name == "p_label":
        p = np.array(stored("nll"), dtype=np.float32)
        np.negative(p, out=p)
        return np.exp(p, out=p)
    if name == "prediction":
        return stored(name)
    if name in STORED:
        return np.asarray(stored(name), dtype=np.float32)
    raise KeyError(f"unknown record field {name!r}; fields are {EPOCH_FIELDS}")


class Columns(MutableMapping):
    """The records of one run as a mapping of ``(T, N)`` arrays, read on access.

    Fields are read from the stored columns' memory maps each time they are asked for
    (``prediction`` is the memory map itself; float fields are widened to float32, and
    ``entropy``, ``p_label`` derived, see :func:`decode`), so nothing is held in memory
    between uses and a range of samples reads only that range. Other keys (``labels``, ``probs_last`` …) may be set as in a dict.
    :meth:`samples` restricts everything to a range of samples, which is how scores over a
    million samples are computed in bounded memory. Pickling keeps the folder, not the data.
    """

    def __init__(self, folder: str | Path, n_epochs: int, fields=EpochStatistics.FIELDS,
                 extra: dict | None = None, samples: tuple[int, int] | None = None):
        self.folder = Path(folder)
        self.n_epochs = int(n_epochs)
        self.fields = tuple(fields)
        for f in self.fields:
            if f not in EPOCH_FIELDS:
                raise KeyError(f"unknown record field {f!r}; fields are {EPOCH_FIELDS}")
        self._extra = dict(extra or {})
        self._range = samples
        self._maps: dict[str, np.ndarray] = {}
        #: each column file's (data offset, dtype, shape), read once and shared with the
        #: ranges of :meth:`samples`, which map the file again without parsing its header
        #: (and unmap it when they are dropped, so the pages read do not stay resident)
        self._layouts: dict[str, tuple[int, np.dtype, tuple[int, ...], bool]] = {}
        #: results computed from these records (see :func:`sei_core.ranking.method_scores`)
        self.memo: dict = {}

    def extra_key(self) -> tuple:
        """Identifies the non-record entries (labels …): a memo key changes when one is replaced."""
        return tuple(sorted((k, id(v)) for k, v in self._extra.items()))

    def _stored(self, name: str) -> np.ndarray:
        if name not in self._maps:
            path = self.folder / f"{name}.npy"
            if name not in self._layouts:
                with open(path, "rb") as fh:
                    version = np.lib.format.read_magic(fh)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = read_header(fh)
                    self._layouts[name] = (fh.tell(), dtype, shape, fortran)
            offset, dtype, shape, fortran = self._layouts[name]
            mm = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                           order="F" if fortran else "C")[: self.n_epochs]
            if self._range is not None:
                mm = mm[:, self._range[0]: self._range[1]]
            self._maps[name] = mm
        return self._maps[name]

    @property
    def n_samples(self) -> int:
        return int(self._stored("prediction").shape[1])

    def __getitem__(self, key: str):
        if key in self._extra:
            return self._extra[key]
        if key in self.fields:
            return decode(key, self._stored)
        raise KeyError(key)

    def __contains__(self, key) -> bool:  # without reading the field
        return key in self._extra or key in self.fields

    def __setitem__(self, key: str, value) -> None:
        self._extra[key] = value

    def __delitem__(self, key: str) -> None:
        if key in self._extra:
            del self._extra[key]
        elif key in self.fields:
            self.fields = tuple(f for f in self.fields if f != key)
        else:
            raise KeyError(key)

    def __iter__(self):
        return iter(self.fields + tuple(k for k in self._extra if k not in self.fields))

    def __len__(self) -> int:
        return len(set(self.fields) | set(self._extra))

    def samples(self, start: int, stop: int) -> "Columns":
        """The same records restricted to samples ``start <= i < stop``."""
        n = self.n_samples
        start, stop = max(0, start), min(stop, n)
        base = 0 if self._range is None else self._range[0]
        extra = {k: _slice_per_sample(v, start, stop, n) for k, v in self._extra.items()}
        part = Columns(self.folder, self.n_epochs, self.fields, extra, (base + start, base + stop))
        part._layouts = self._layouts
        return part

    def __reduce__(self):
        return (Columns, (self.folder, self.n_epochs, self.fields, self._extra, self._range))


def _slice_per_sample(v, start: int, stop: int, n: int):
    shape = np.shape(v)
    return v[start:stop] if len(shape) >= 1 and shape[0] == n else v


def sample_range(records: Mapping, start: int, stop: int, n_samples: int) -> Mapping:
    """Records restricted to samples ``start <= i < stop``: the ``(T, N)`` fields of
    :data:`EPOCH_FIELDS` along their sample axis, any other array whose first axis has
    length ``n_samples`` along it (``labels``, ``probs_last``, ``is_aux``), the rest as is."""
    if isinstance(records, Columns):
        return records.samples(start, stop)
    out = {}
    for k, v in records.items():
        if k in EPOCH_FIELDS and np.ndim(v) == 2:
            out[k] = v[:, start:stop]
        else:
            out[k] = _slice_per_sample(v, start, stop, n_samples)
    return out


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_rows(path: Path, row: int | None, rows, values: np.ndarray) -> None:
    """Write ``values`` into ``path`` (an ``.npy`` file) at ``[row, rows]`` (or ``[rows]`` for
    ``row=None``) and fsync it. A contiguous range is one ``pwrite``; an index array goes
    through a memory map."""
    mm = np.load(path, mmap_mode="r+")
    if isinstance(rows, slice):
        start, stop, step = rows.indices(mm.shape[1] if row is not None else mm.shape[0])
        if step != 1:
            rows = np.arange(start, stop, step)
    if isinstance(rows, slice):
        inner = int(np.prod(mm.shape[2:] if row is not None else mm.shape[1:], dtype=np.int64))
        first = (row * mm.shape[1] + start) if row is not None else start
        offset = mm.offset + first * inner * mm.dtype.itemsize
        buf = memoryview(np.ascontiguousarray(values, dtype=mm.dtype)).cast("B")
        if buf.nbytes != (stop - start) * inner * mm.dtype.itemsize:
            raise ValueError(f"{path.name}: {buf.nbytes} bytes for rows {start}:{stop}")
        del mm
        fd = os.open(path, os.O_WRONLY)
        try:
            while buf:
                written = os.pwrite(fd, buf, offset)
                buf, offset = buf[written:], offset + written
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    if row is None:
        mm[rows] = values
    else:
        mm[row, rows] = values
    mm.flush()
    del mm
    _fsync(path)


class RecordStore:
    """Per-epoch records of one training run in a folder (epochs are numbered from 1).

    ``capacity`` is the number of epoch rows to preallocate (the run's epochs); the columns
    grow (by copying) if a later epoch does not fit.
    """

    def __init__(self, folder: str | Path, keep_probs: int = 5, capacity: int | None = None):
        self.folder = Path(folder)
        self.keep_probs = keep_probs
        self.capacity = capacity

    # -- reading ---------------------------------------------------------------------
    def manifest(self) -> dict | None:
        """The columnar store's manifest, or None (an empty or old-format store)."""
        try:
            m = json.loads((self.folder / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        if m.get("format") != FORMAT:
            raise ValueError(f"{self.folder / MANIFEST}: unknown records format {m.get('format')!r}")
        return m

    def _legacy_epochs(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _LEGACY_EPOCH.match(p.name)))

    def is_legacy(self) -> bool:
        """True for a store of the old one-``.npz``-per-epoch format."""
        return self.manifest() is None and bool(self._legacy_epochs())

    def epochs(self) -> list[int]:
        """Epochs whose record is complete, in order."""
        m = self.manifest()
        if m is not None:
            return list(range(1, m["epochs"] + 1))
        return self._legacy_epochs()

    def scalars(self) -> list[dict]:
        """The scalars given with each complete epoch (``loss``, ``accuracy`` …), in order."""
        m = self.manifest()
        if m is not None:
            return m["scalars"][: m["epochs"]]
        out = []
        for e in self._legacy_epochs():
            with np.load(self.folder / f"epoch_{e:04d}.npz") as z:
                out.append({k: float(z[k]) for k in z.files if z[k].ndim == 0})
        return out

    def load(self, fields: tuple[str, ...] = EpochStatistics.FIELDS) -> MutableMapping:
        """The records of all complete epochs: each field a ``(T, N)`` array.

        A columnar store gives :class:`Columns` (memory maps, derived fields computed on
        access, nothing read up front); an old-format store gives a dict of stacked arrays.
        """
        m = self.manifest()
        if m is not None:
            if m["epochs"] == 0:
                return {f: np.zeros((0, 0)) for f in fields}
            return Columns(self.folder, m["epochs"], fields)
        epochs = self._legacy_epochs()
        if not epochs:
            return {f: np.zeros((0, 0)) for f in fields}
        out: dict[str, list] = {f: [] for f in fields}
        for e in epochs:
            with np.load(self.folder / f"epoch_{e:04d}.npz") as z:
                for f in fields:
                    out[f].append(z[f])
        return {f: np.stack(v) for f, v in out.items()}

    def probs(self) -> list[tuple[int, np.ndarray]]:
        """``(epoch, (N, K') float16 memory map)`` of the stored probabilities of complete
        epochs, oldest first."""
        complete = set(self.epochs())
        if not self.folder.is_dir():
            return []
        found = sorted((int(m.group(1)), p) for p in self.folder.iterdir() if (m := _PROBS_FILE.match(p.name)))
        return [(e, np.load(p, mmap_mode="r")) for e, p in found if e in complete]

    def load_probs(self) -> tuple[list[int], np.ndarray]:
        """Epochs with stored probabilities and the ``(L, N, K)`` float32 array of them."""
        found = self.probs()
        if not found:
            return [], np.zeros((0, 0, 0), dtype=np.float32)
        return [e for e, _ in found], np.stack([p.astype(np.float32) for _, p in found])

    def nbytes(self) -> dict[str, int]:
        """Bytes of each file of the store: its size, or its allocated blocks where fewer
        (preallocated rows not written yet are holes in the file)."""
        if not self.folder.is_dir():
            return {}
        return {p.name: min(st.st_size, st.st_blocks * 512)
                for p in self.folder.iterdir() if p.is_file() and (st := p.stat())}

    # -- writing ---------------------------------------------------------------------
    def _write_manifest(self, m: dict) -> None:
        atomic_write_json(self.folder / MANIFEST, m)

    def _allocate(self, n_samples: int, n_outputs: int, capacity: int) -> dict:
        dtypes = {"signed_entropy": "float16", "prediction": _prediction_dtype(n_outputs).name,
                  "nll": "float16", "margin": "float16"}
        for col, dt in dtypes.items():
            mm = np.lib.format.open_memmap(self.folder / f"{col}.npy", mode="w+", dtype=dt,
                                           shape=(capacity, n_samples))
            del mm
        m = {"format": FORMAT, "n_samples": int(n_samples), "n_outputs": int(n_outputs),
             "capacity": int(capacity), "columns": dtypes, "epochs": 0, "scalars": []}
        return m

    def _grow(self, m: dict, capacity: int) -> None:
        """Copy the columns into files of ``capacity`` rows (the complete rows are kept)."""
        t = m["epochs"]
        for col, dt in m["columns"].items():
            path = self.folder / f"{col}.npy"
            tmp = self.folder / f".{col}.npy.grow.tmp"
            new = np.lib.format.open_memmap(tmp, mode="w+", dtype=dt, shape=(capacity, m["n_samples"]))
            new[:t] = np.load(path, mmap_mode="r")[:t]
            new.flush()
            del new
            _fsync(tmp)
            os.replace(tmp, path)
        m["capacity"] = int(capacity)
        self._write_manifest(m)

    def begin_epoch(self, epoch: int, n_samples: int, n_outputs: int) -> None:
        """Make room for epoch ``epoch`` (creating the store at the first epoch).

        Rewriting an epoch that is already complete first marks it, and every later one,
        incomplete. In a sharded run one process calls this before any writes its rows.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        self.convert()
        m = self.manifest()
        if m is None:
            m = self._allocate(n_samples, n_outputs, max(self.capacity or 0, epoch))
            self._write_manifest(m)
        if (m["n_samples"], m["n_outputs"]) != (n_samples, n_outputs):
            raise ValueError(f"{self.folder} holds records of {m['n_samples']} samples × {m['n_outputs']} "
                             f"outputs, not {n_samples} × {n_outputs}")
        if epoch < 1 or epoch > m["epochs"] + 1:
            raise ValueError(f"{self.folder}: cannot write epoch {epoch} after {m['epochs']} complete epochs")
        if epoch <= m["epochs"]:
            m["epochs"], m["scalars"] = epoch - 1, m["scalars"][: epoch - 1]
            self._write_manifest(m)
        if epoch > m["capacity"]:
            self._grow(m, max(epoch, 2 * m["capacity"], self.capacity or 0))
        mm = np.lib.format.open_memmap(self.folder / f"probs_{epoch:04d}.npy", mode="w+",
                                       dtype=np.float16, shape=(n_samples, n_outputs))
        del mm

    def write_rows(self, epoch: int, rows: slice | np.ndarray, stats: EpochStatistics,
                   probs: np.ndarray) -> None:
        """Write samples ``rows`` (a range or sample ids) of epoch ``epoch``: ``stats`` and
        ``probs`` hold those samples only, in that order. Flushed to disk on return."""
        m = self.manifest()
        if m is None or epoch > m["capacity"] or epoch != m["epochs"] + 1:
            raise ValueError(f"{self.folder}: epoch {epoch} was not begun (begin_epoch)")
        if not isinstance(rows, slice):
            rows = np.asarray(rows, dtype=np.int64)
        for col, values in encode(stats, m["n_outputs"]).items():
            _write_rows(self.folder / f"{col}.npy", epoch - 1, rows, values)
        _write_rows(self.folder / f"probs_{epoch:04d}.npy", None, rows, np.asarray(probs).astype(np.float16))

    def commit_epoch(self, epoch: int, **scalars: float) -> None:
        """Mark epoch ``epoch`` complete (after every row was written) and drop probabilities
        older than the last ``keep_probs`` epochs."""
        m = self.manifest()
        if m is None or epoch != m["epochs"] + 1 or epoch > m["capacity"]:
            raise ValueError(f"{self.folder}: epoch {epoch} was not begun (begin_epoch)")
        m["epochs"] = epoch
        m["scalars"] = m["scalars"][: epoch - 1] + [{k: float(v) for k, v in scalars.items()}]
        self._write_manifest(m)
        for p in self.folder.glob("probs_*.npy"):
            e = int(p.stem.split("_")[1])
            if e <= epoch - self.keep_probs or e > epoch:
                p.unlink(missing_ok=True)

    def write_epoch(self, epoch: int, stats: EpochStatistics, probs: np.ndarray, **scalars: float) -> None:
        """Write every sample's record of epoch ``epoch`` and mark it complete; keep
        probabilities of the last ``keep_probs`` epochs."""
        n, k = np.shape(probs)
        self.begin_epoch(epoch, n, k)
        self.write_rows(epoch, slice(0, n), stats, probs)
        self.commit_epoch(epoch, **scalars)

    def truncate(self, last_epoch: int) -> None:
        """Forget records after ``last_epoch`` (a resumed run redoes those epochs)."""
        self.convert()
        m = self.manifest()
        if m is not None and m["epochs"] > last_epoch:
            m["epochs"], m["scalars"] = last_epoch, m["scalars"][:last_epoch]
            self._write_manifest(m)
        for p in self.folder.glob("probs_*.npy") if self.folder.is_dir() else []:
            if int(p.stem.split("_")[1]) > last_epoch:
                p.unlink()

    def convert(self) -> bool:
        """Convert an old-format store (one ``.npz`` per epoch) to the columnar layout once;
        True if it did. A conversion killed halfway is redone: the ``.npz`` files are
        deleted only after the manifest of the converted store is written."""
        legacy = self._legacy_epochs()
        if not legacy:
            return False
        if self.manifest() is not None:  # converted; a kill came before the old files went
            for e in legacy:
                (self.folder / f"epoch_{e:04d}.npz").unlink(missing_ok=True)
            return False
        epochs = [e for i, e in enumerate(legacy, 1) if e == i]  # the gap-free prefix
        probs = [(e, p) for e, p in ((int(p.stem.split("_")[1]), p) for p in self.folder.glob("probs_*.npy"))]
        with np.load(self.folder / f"epoch_{epochs[0]:04d}.npz") as z:
            n = int(z["prediction"].shape[0])
        if probs:
            k = int(np.load(probs[0][1], mmap_mode="r").shape[1])
        else:
            k = 1 + max(int(np.load(self.folder / f"epoch_{e:04d}.npz")["prediction"].max()) for e in epochs)
        m = self._allocate(n, k, max(self.capacity or 0, len(epochs)))
        for e in epochs:
            with np.load(self.folder / f"epoch_{e:04d}.npz") as z:
                stats = EpochStatistics(**{f: z[f] for f in EpochStatistics.FIELDS})
                m["scalars"].append({f: float(z[f]) for f in z.files if z[f].ndim == 0})
            for col, values in encode(stats, k).items():
                _write_rows(self.folder / f"{col}.npy", e - 1, slice(0, n), values)
        m["epochs"] = len(epochs)
        self._write_manifest(m)
        for e in legacy:
            (self.folder / f"epoch_{e:04d}.npz").unlink(missing_ok=True)
        print(f"{self.folder}: converted {len(epochs)} epochs of records from the old per-epoch .npz "
              f"format to the columnar layout ({FORMAT}), once", file=sys.stderr)
        return True
