"""Atomic file replacement: readers see the old file or the new one, never a mix.

Every file sei-review writes that someone may read at the same time (records, checkpoints,
status, the user's label file, the decode cache) goes through :func:`atomic_write`, so a
process killed mid-write leaves the previous version intact.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Callable

try:
    import fcntl
except ImportError:  # not POSIX: no inter-process locking
    fcntl = None


def atomic_write(target: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``target``, fsync it, then rename it
    over ``target`` (keeping ``target``'s permissions) and fsync the folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        except FileNotFoundError:
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_dir(target: str | os.PathLike, fill: Callable[[Path], object]) -> bool:
    """Create the folder ``target`` whole or not at all: ``fill(tmp)`` writes the files into a
    temporary folder beside it, each file and the folder are fsynced, then the folder is
    renamed to ``target``. A reader that finds ``target`` finds every file complete.

    ``target`` is never replaced: if it appears meanwhile (another writer of the same
    content), the temporary folder is removed and False is returned; True when this call
    created it. A writer killed before the rename leaves only a ``.<name>.*.tmp`` folder
    (:func:`temp_files` finds it), never a partial ``target``.
    """
    import shutil

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        fill(tmp)
        for f in tmp.iterdir():
            if f.is_file():
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(tmp)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return False
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    return True


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Replace ``target`` with ``data`` atomically."""
    atomic_write(target, lambda fh: fh.write(data))


def atomic_write_json(target: str | os.PathLike, obj, *, indent: int | None = 1, default=None) -> None:
    """Replace ``target`` with ``obj`` as UTF-8 JSON atomically (``default`` as in :func:`json.dumps`)."""
    import json

    atomic_write_bytes(target, json.dumps(obj, indent=indent, default=default).encode("utf-8"))


def atomic_write_csv(target: str | os.PathLike, frame) -> None:
    """Replace ``target`` with the pandas ``frame`` as a UTF-8, comma-separated CSV (no index)
    atomically, as :func:`write_csv` writes it."""
    atomic_write(target, lambda fh: write_csv(frame, fh))


def write_csv(frame, fh: BinaryIO) -> None:
    """``frame`` as a UTF-8, comma-separated CSV with a header and no index into the binary
    file ``fh``: missing values empty, floats in their shortest exact form.

    When every column is numbers, booleans or text it is written by Arrow's C++ CSV writer
    (about 7× faster than pandas at a few hundred thousand rows, the flagged rows of a
    million-image run): text quoted, booleans ``true``/``false``. Anything else is written by
    pandas. Any CSV reader (pandas, the label-table reader) reads both back the same.
    """
    table = _arrow_table(frame)
    if table is None:
        fh.write(frame.to_csv(index=False).encode("utf-8"))
        return
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, fh)


def _arrow_table(frame):
    import pandas as pd
    import pyarrow as pa

    cols = []
    for name in frame.columns:
        v = frame[name]
        if not isinstance(name, str):
            return None
        if pd.api.types.is_bool_dtype(v.dtype):
            cols.append(pa.array(v.to_numpy(), type=pa.bool_()))
        elif pd.api.types.is_integer_dtype(v.dtype) or pd.api.types.is_float_dtype(v.dtype):
            cols.append(pa.array(v.to_numpy(), from_pandas=True))  # NaN → missing
        elif pd.api.types.is_string_dtype(v.dtype):
            try:
                cols.append(pa.array(v.to_numpy(dtype=object), type=pa.string(), from_pandas=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # an object column of not only text
                return None
        else:
            return None
    return pa.table(cols, names=[str(c) for c in frame.columns])


def temp_files(target: str | os.PathLike) -> list[Path]:
    """The temporary files :func:`atomic_write` makes beside ``target`` (``.<name>.*.tmp``).

    One is left behind only when a writer was killed between creating and renaming it.
    """
    target = Path(target)
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.*.tmp"))


def remove_temp_files(target: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write` of ``target`` left behind.

    Call it only while holding the lock that every writer of ``target`` takes: otherwise a
    live writer's temporary file could be removed under it. Returns the files removed.
    """
    removed = []
    for tmp in temp_files(target):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def stream_writes_to(stream, path: str | os.PathLike) -> bool:
    """True if the open ``stream`` writes to the file ``path`` (a background job's stderr
    that is its own log file, say)."""
    try:
        a, b = os.fstat(stream.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):  # no real file behind the stream (pytest capture …)
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextlib.contextmanager
def file_lock(lock_file: str | os.PathLike, timeout: float | None = None,
              on_timeout: Callable[[int], Exception] | None = None) -> Iterator[int]:
    """Hold an exclusive inter-process ``flock`` on ``lock_file`` (created if missing) while inside.

    ``timeout=None`` waits for the holder however long it takes; otherwise the lock is polled
    (1 ms doubling to 50 ms) and after ``timeout`` seconds ``on_timeout(fd)`` is raised (it can
    read the lock file through ``fd``), or ``TimeoutError``. The kernel drops the lock when its
    holder dies, so only a live process can hold it; the holder's process id is written into
    the file (fixed width) for such a message. Yields the lock file's descriptor.
    """
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is None:
            yield fd
            return
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout
            pause = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                if time.monotonic() >= deadline:
                    raise (on_timeout(fd) if on_timeout else TimeoutError(f"{lock_file} is held by another process"))
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        try:
            with contextlib.suppress(OSError):  # fixed width: no truncate needed
                os.pwrite(fd, f"{os.getpid():>12}\n".encode(), 0)
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
