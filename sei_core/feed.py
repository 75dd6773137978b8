"""Batches of decoded images for training, from the GPU, from RAM, or through a memory map.

The decoded-image cache (:func:`sei_core.decode.decode_images`) is a ``(N, 3, S, S)`` uint8
``.npy`` file on disk. :class:`ImageFeed` decides once, from its size and a memory budget,
where training reads it from:

- ``gpu``: the whole cache copied to the GPU (CUDA, when it takes under 30 % of the free
  GPU memory); batches are gathered on the GPU;
- ``ram``: the whole cache in process memory (pinned on a CUDA machine), when it fits the
  memory budget;
- ``memmap``: read through the memory map; a background thread gathers the next batches'
  rows (in file order) into small buffers while the current batch trains, like a
  ``DataLoader`` with prefetch. Resident memory then stays at a few batches whatever N is;
  the operating system's page cache keeps what it can of the file.

Every mode yields the same pixels in the same order, so training results do not depend on
the mode.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from typing import Iterator, Sequence

import numpy as np
import torch

#: Share of the memory available when training starts that the in-RAM fast path may use.
DEFAULT_BUDGET_FRACTION = 0.5
#: Share of the free GPU memory the on-GPU fast path may use (the rest is for the model).
GPU_FRACTION = 0.3

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str | int) -> int:
    """Bytes from a size like ``512M``, ``4G``, ``1.5GiB``, ``200MB`` or ``1000000`` (binary units).

    Raises ``ValueError`` with the accepted forms for anything else.
    """
    if isinstance(text, (int, np.integer)):
        if text < 0:
            raise ValueError(f"memory size {text} is negative")
        return int(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", str(text))
    if not m:
        raise ValueError(f"cannot read {text!r} as a memory size; write e.g. 512M, 4G or 1.5G")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_size(n: int) -> str:
    """``n`` bytes as a short human-readable size (``1.5G``)."""
    for unit, f in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= f:
            return f"{n / f:.1f}{unit}"
    return f"{n}B"


def available_memory() -> int:
    """Memory the system can give a new process without swapping (``MemAvailable``), in bytes."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil  # optional: macOS, Windows

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


#: Heap blocks at least this large are mapped apart and returned to the system when freed.
MMAP_THRESHOLD = 1 << 20


def return_large_frees() -> bool:
    """Make the C allocator (glibc) give large freed blocks back to the system at once.

    By default glibc raises its mmap threshold to the size of each large block freed (up to
    32 MB), after which batch-sized tensors come from the heap and their pages stay resident
    when freed: at 224 px on a CPU the peak anonymous memory of training then keeps growing with
    the number of batches (measured: 2.58 GB after 16 batches, 2.76 GB after 48, 3.07 GB after
    118). A fixed threshold of :data:`MMAP_THRESHOLD` kept it at 2.01 GB after 48 batches
    (docs/scale.md). Called when the images are read through a memory map, the mode for data
    larger than the memory budget; True where it took effect (Linux with glibc).
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl …): nothing to change
        return False
    m_mmap_threshold = -3  # glibc's malloc.h; setting it also turns the dynamic threshold off
    return bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD))


def memory_budget(spec: str | int | None = None, processes: int = 1) -> int:
    """The in-RAM budget for the image cache of one training process, in bytes.

    ``spec``: a size (:func:`parse_size`), or None/``"auto"`` for
    :data:`DEFAULT_BUDGET_FRACTION` of the available memory, shared by the ``processes``
    training processes of this machine (each would hold its own copy).
    """
    if spec is None or str(spec).strip().lower() in ("", "auto"):
        return int(available_memory() * DEFAULT_BUDGET_FRACTION) // max(1, processes)
    return parse_size(spec)


class ImageFeed:
    """The decoded images of a run, served as float batches in [0, 1] on the training device.

    Parameters
    ----------
    images : ``(M, 3, S, S)`` uint8, an array or a memory map of the cache file.
    device : the training device.
    budget : bytes of host memory the cache may take in RAM (see :func:`memory_budget`).
    rows : optional ``(N,)`` cache rows of the samples (a run that dropped unreadable images
        trains on a subset of the cache without copying it); default all rows.
    prefetch : batches gathered ahead in the ``memmap`` mode.
    gpu_cache : hold the cache on a CUDA device when it fits there (the fast path); False
        keeps it on the host, as for data larger than GPU memory (``benchmarks/gpu_check.py``
        measures both).
    """

    def __init__(self, images: np.ndarray, device: torch.device, budget: int,
                 rows: np.ndarray | None = None, prefetch: int = 3, gpu_cache: bool = True):
        self.device = torch.device(device)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.prefetch = max(1, prefetch)
        n = len(images) if self.rows is None else len(self.rows)
        self.nbytes = n * int(np.prod(images.shape[1:]))
        self.budget = int(budget)
        self._source = images
        self._tensor: torch.Tensor | None = None
        if (gpu_cache and self.device.type == "cuda"
                and self.nbytes < torch.cuda.mem_get_info(self.device)[0] * GPU_FRACTION):
            self.mode = "gpu"
            self._tensor = self._copy_to(torch.empty((n, *images.shape[1:]), dtype=torch.uint8, device=self.device))
        elif self.nbytes <= self.budget:
            self.mode = "ram"
            if isinstance(images, np.memmap) or self.rows is not None or not images.flags.writeable:
                host = torch.empty((n, *images.shape[1:]), dtype=torch.uint8,
                                   pin_memory=self.device.type == "cuda")
                self._tensor = self._copy_to(host)
            else:
                self._tensor = torch.from_numpy(images)
                if self.device.type == "cuda":
                    self._tensor = self._tensor.pin_memory()
            if self.device.type == "mps":
                self._tensor = self._tensor.to(self.device)
        else:
            self.mode = "memmap"
            return_large_frees()  # batches read from the map: host memory is what the budget protects

    def _copy_to(self, dst: torch.Tensor) -> torch.Tensor:
        """Fill ``dst`` from the source rows in slices (never a second full copy in RAM)."""
        step = max(1, (64 << 20) // max(1, int(np.prod(self._source.shape[1:]))))
        for lo in range(0, len(dst), step):
            hi = min(len(dst), lo + step)
            part = self._source[lo:hi] if self.rows is None else self._source[np.sort(self.rows[lo:hi])]
            if self.rows is not None:  # rows were read in file order; put them back in sample order
                part = part[np.argsort(np.argsort(self.rows[lo:hi], kind="stable"), kind="stable")]
            dst[lo:hi].copy_(torch.from_numpy(np.require(part, requirements=["C", "W"])))
        return dst

    def describe(self) -> str:
        where = {"gpu": "on the GPU", "ram": "in RAM", "memmap": "read through a memory map with prefetch"}
        return (f"image cache {format_size(self.nbytes)} {where[self.mode]} "
                f"(memory budget {format_size(self.budget)})")

    def _read(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` of the memory map, read in file order, returned in ``idx`` order."""
        src = idx if self.rows is None else self.rows[idx]
        order = np.argsort(src, kind="stable")
        out = np.empty((len(idx), *self._source.shape[1:]), dtype=np.uint8)
        out[order] = self._source[src[order]]
        return out

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(self.device, non_blocking=True).float().div_(255)

    def gather(self, idx_cpu: torch.Tensor) -> torch.Tensor:
        """Samples ``idx_cpu`` as a float batch in [0, 1] on the device."""
        if self._tensor is not None:
            t = self._tensor
            idx = idx_cpu.to(t.device, non_blocking=True)
            return self._to_device(t[idx])
        return self._to_device(torch.from_numpy(self._read(idx_cpu.numpy())))

    def batches(self, index_batches: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(idx_cpu, images)`` for each batch of sample indices, in order.

        In the ``memmap`` mode a background thread reads the next ``prefetch`` batches
        (pinned on CUDA) while the caller trains on the current one.
        """
        if self._tensor is not None:
            for idx_cpu in index_batches:
                yield idx_cpu, self.gather(idx_cpu)
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        pin = self.device.type == "cuda"

        def produce() -> None:
            try:
                for idx_cpu in index_batches:
                    t = torch.from_numpy(self._read(idx_cpu.numpy()))
                    if pin:
                        t = t.pin_memory()
                    while not stop.is_set():
                        try:
                            q.put((idx_cpu, t), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(None)
            except BaseException as e:  # handed to the consumer
                q.put(e)

        thread = threading.Thread(target=produce, name="sei-image-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                idx_cpu, t = item
                yield idx_cpu, self._to_device(t)
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    pass
                thread.join(timeout=0.05)
