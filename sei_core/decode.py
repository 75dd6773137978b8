"""The decoded-image cache: every image of a data set decoded once to ``(N, 3, S, S)`` uint8.

:func:`decode_images` decodes with a process pool in chunks, into a memory-mapped ``.npy``
under ``cache_dir`` keyed by the data set's fingerprint and the size, resumable after a kill
(a state file records the finished chunks) and shared by every run of the same images (one
decoder per cache file, :func:`sei_core.files.file_lock`). :mod:`sei_core.feed` reads it.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from .dataset import DataError, LabeledImages, Problem
from .errors import SKIP_UNREADABLE, Fix
from .files import atomic_write_json, file_lock

def _decode_one(ds: LabeledImages, i: int, size: int) -> np.ndarray:
    im = ds.open_image(i, draft=size)
    im = im.resize((size, size), Image.BILINEAR, reducing_gap=3.0 if max(im.size) > 3 * size else None)
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


#: Bytes of decoded images one decode task handles (a chunk): small enough that workers
#: hold little memory and a killed decode loses little, large enough to amortise the task.
DECODE_CHUNK_BYTES = 8 << 20


def decode_chunk_size(size: int, target_bytes: int = DECODE_CHUNK_BYTES) -> int:
    """Images per decode chunk at ``size`` px (at least 1, at most 1024)."""
    return int(max(1, min(1024, target_bytes // (3 * size * size))))


def decode_images(
    ds: LabeledImages,
    size: int,
    *,
    workers: int = 4,
    cache_dir: str | Path | None = None,
    skip_unreadable: bool = False,
    progress: Callable[[int, int], None] | None = None,
    chunk: int | None = None,
) -> tuple[np.ndarray, list[Problem]]:
    """Decode every image once, resized to ``size × size``, into a ``(N, 3, S, S)`` uint8 array.

    The array is what training reads each epoch, so image decoding happens once per data set.

    With ``cache_dir`` the array lives **on disk** (``images_<fingerprint>_<size>.npy``, keyed
    by :meth:`LabeledImages.fingerprint`) and is returned as a read-only memory map, so
    memory does not grow with N; later runs, resumes and other processes of a multi-GPU run
    open the same file. Decoding runs in ``workers`` processes, chunk by chunk
    (:func:`decode_chunk_size`), each chunk written straight into the file; a chunk-completion
    file beside it (``….progress.json``, a bitmap of finished chunks) is updated after every
    chunk, so a killed decode continues where it stopped instead of starting again. ``progress(done, total)`` is
    called after each chunk (it may raise to stop the decode; the work done is kept).

    Without ``cache_dir`` the array is decoded into memory by threads (small data, notebooks).

    Images that fail to decode raise :class:`DataError` listing all of them; with
    ``skip_unreadable`` they are returned as problems and their slots are all-zero (the
    caller drops them).
    """
    n = len(ds)
    chunk = chunk or decode_chunk_size(size)
    chunks = [(lo, min(n, lo + chunk)) for lo in range(0, n, chunk)]
    if cache_dir is None:
        out = np.zeros((n, 3, size, size), dtype=np.uint8)
        found: list[tuple[int, Problem]] = []
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            done = 0
            for lo, hi, probs in pool.map(lambda c: (*c, _decode_into(ds, c[0], c[1], size, out)), chunks):
                found += probs
                done += hi - lo
                if progress is not None:
                    progress(done, n)
        return _finish(ds, out, [p for _, p in sorted(found, key=lambda t: t[0])], skip_unreadable)

    cache = Path(cache_dir) / f"images_{ds.fingerprint()}_{size}.npy"
    hit = _cached(cache, n, size)
    if hit is None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(cache.with_name(cache.stem + ".lock")):  # one decoder per cache file
            hit = _cached(cache, n, size)  # another process may have finished it meanwhile
            if hit is None:
                _decode_to_cache(ds, size, workers, progress, chunks, chunk, cache)
                hit = _cached(cache, n, size)
    return _finish(ds, *hit, skip_unreadable)


def _cached(cache: Path, n: int, size: int) -> tuple[np.ndarray, list[Problem]] | None:
    """The finished cache file (memory map) and its decode problems, or None."""
    if not cache.is_file():
        return None
    meta = cache.with_suffix(".json")
    try:
        arr = np.load(cache, mmap_mode="r")
        problems = [_problem_of(p) for p in json.loads(meta.read_text())["problems"]] if meta.is_file() else []
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if arr.shape != (n, 3, size, size) or arr.dtype != np.uint8:
        return None
    return arr, problems


def _decode_to_cache(ds: LabeledImages, size: int, workers: int, progress, chunks: list[tuple[int, int]],
                     chunk: int, cache: Path) -> None:
    """Decode into ``….partial.npy`` (resuming a killed decode), then rename it to ``cache``."""
    n = len(ds)
    meta = cache.with_suffix(".json")
    partial = cache.with_name(cache.stem + ".partial.npy")
    state_file = cache.with_name(cache.stem + ".progress.json")
    state = _decode_state(state_file, partial, n, size, chunk)
    if state is None:  # fresh start: a sparse file of the right shape, nothing done yet
        # a sparse file of the right shape: disk is used as chunks arrive
        np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(n, 3, size, size)).flush()
        state = {"n": n, "size": size, "chunk": chunk, "done": _pack_bits(np.zeros(len(chunks), bool)),
                 "problems": []}
        atomic_write_json(state_file, state, indent=None)
    done_mask = decode_progress(state, len(chunks))
    done_set = set(np.flatnonzero(done_mask).tolist())
    todo = [c for c in range(len(chunks)) if c not in done_set]
    offset = _npy_data_offset(partial)
    done_images = sum(hi - lo for c, (lo, hi) in enumerate(chunks) if c in done_set)
    if progress is not None and done_images:
        progress(done_images, n)

    def mark(c: int, probs: list[tuple[int, Problem]]) -> None:
        nonlocal done_images
        done_mask[c] = True
        state["done"] = _pack_bits(done_mask)
        state["problems"] += [{"i": i, **_problem_dict(p)} for i, p in probs]
        atomic_write_json(state_file, state, indent=None)
        done_images += chunks[c][1] - chunks[c][0]
        if progress is not None:
            progress(done_images, n)

    if workers > 1 and len(todo) > 1 and ds.array is None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                                 initializer=_decode_worker_init, initargs=(ds, size, str(partial), offset)) as pool:
            try:
                futures = {pool.submit(_decode_worker_chunk, *chunks[c]): c for c in todo}
                for fut in as_completed(futures):
                    mark(futures[fut], fut.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # chunks in flight finish; none is marked
                raise
    else:  # one process (in-memory .npz arrays, one worker, or a single chunk): threads
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending = {pool.submit(_decode_chunk_to_file, ds, *chunks[c], size, str(partial), offset): c
                       for c in todo}
            try:
                for fut, c in pending.items():
                    mark(c, fut.result())
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
    problems = [_problem_of(p) for p in sorted(state["problems"], key=lambda p: p["i"])]
    atomic_write_json(meta, {"problems": [_problem_dict(p) for p in problems]}, indent=None)
    os.replace(partial, cache)
    state_file.unlink(missing_ok=True)


def decode_progress(state: dict, n_chunks: int) -> np.ndarray:
    """The finished-chunk mask ``(n_chunks,)`` of a decode's ``….progress.json`` contents
    (``done`` is a base64 bitmap: 1M images at 224 px are ~19k chunks, 2.4 KB)."""
    import base64

    bits = np.unpackbits(np.frombuffer(base64.b64decode(state["done"]), dtype=np.uint8))
    return bits[:n_chunks].astype(bool)


def _pack_bits(mask: np.ndarray) -> str:
    import base64

    return base64.b64encode(np.packbits(mask).tobytes()).decode("ascii")


def _problem_dict(p: Problem) -> dict:
    return {"where": p.where, "message": p.message, "fix": p.fix.cli, "fix_app": p.fix.app, "severity": p.severity}


def _problem_of(d: dict) -> Problem:
    """The :class:`Problem` of a :func:`_problem_dict` (a cache written before ``fix_app``
    has the command line's words only)."""
    return Problem(d["where"], d["message"], Fix(d["fix"], d.get("fix_app")), d["severity"])


def _finish(ds: LabeledImages, arr: np.ndarray, problems: list[Problem], skip: bool):
    if problems and not skip:
        raise DataError(problems, f"{ds.source} has images that cannot be decoded")
    return arr, problems


def _decode_state(state_file: Path, partial: Path, n: int, size: int, chunk: int) -> dict | None:
    """The progress of an interrupted decode of the same images, or None to start afresh."""
    try:
        state = json.loads(state_file.read_text())
        ok = (state["n"], state["size"], state["chunk"]) == (n, size, chunk)
        decode_progress(state, -(-n // chunk))
        arr = np.load(partial, mmap_mode="r")
        ok = ok and arr.shape == (n, 3, size, size)
        del arr
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if ok else None


def _npy_data_offset(path: Path) -> int:
    """Byte offset of the data in a ``.npy`` file (after its header)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(f)
        else:
            np.lib.format.read_array_header_2_0(f)
        return f.tell()


def _decode_into(ds: LabeledImages, lo: int, hi: int, size: int, out: np.ndarray,
                 first: int = 0) -> list[tuple[int, Problem]]:
    """Decode samples ``lo:hi`` into ``out[lo - first:hi - first]``; the problems of those
    that fail, by sample index."""
    problems = []
    for i in range(lo, hi):
        try:
            out[i - first] = _decode_one(ds, i, size)
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            out[i - first] = 0
            problems.append((i, Problem(ds.where(i), f"cannot be decoded ({type(e).__name__}: {e})",
                                        "replace the file, or " + SKIP_UNREADABLE)))
    return problems


def _decode_chunk_to_file(ds: LabeledImages, lo: int, hi: int, size: int, path: str, offset: int):
    """Decode samples ``lo:hi`` and write them, durably, at their place in the cache file."""
    buf = np.zeros((hi - lo, 3, size, size), dtype=np.uint8)
    problems = _decode_into(ds, lo, hi, size, buf, first=lo)
    fd = os.open(path, os.O_WRONLY)
    try:
        data = memoryview(buf).cast("B")
        pos, written = offset + lo * buf[0].nbytes, 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], pos + written)
        os.fdatasync(fd)  # the chunk is on disk before it is marked done
    finally:
        os.close(fd)
    return problems


_WORKER: dict = {}


def _decode_worker_init(ds: LabeledImages, size: int, path: str, offset: int) -> None:
    _WORKER.update(ds=ds, size=size, path=path, offset=offset)


def _decode_worker_chunk(lo: int, hi: int):
    w = _WORKER
    return _decode_chunk_to_file(w["ds"], lo, hi, w["size"], w["path"], w["offset"])
