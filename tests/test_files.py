"""The project's CSV writer: any reader gets back exactly what was written."""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import pandas as pd
import pytest

from sei_core.files import atomic_write_csv, temp_files, write_csv


def _odd_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "path": ["a,b.png", 'say "hi".png', "line\nbreak.png", "ünï.png", " spaced .png", "", None],
        "score": [1.5, np.nan, 1e-5, 1e20, -0.0, 2 / 3, 3.0],
        "flagged": [True, False, True, False, True, False, True],
        "run": np.arange(7, dtype=np.int64),
        "p": np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], dtype=np.float32),
    })


def test_csv_reads_back_exactly_with_pandas_and_the_csv_module(tmp_path):
    df = _odd_frame()
    atomic_write_csv(tmp_path / "t.csv", df)
    assert not temp_files(tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv", keep_default_na=False, na_values={"score": [""]},
                       dtype={"path": str})
    assert back["path"].tolist() == ["a,b.png", 'say "hi".png', "line\nbreak.png", "ünï.png", " spaced .png", "", ""]
    np.testing.assert_array_equal(back["score"].to_numpy(), df["score"].to_numpy())  # NaN → empty → NaN
    assert back["flagged"].tolist() == df["flagged"].tolist()
    assert back["run"].tolist() == list(range(7))
    np.testing.assert_array_equal(back["p"].to_numpy(np.float32), df["p"].to_numpy())  # float32 exact
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == list(df.columns) and len(rows) == 8 and rows[3][0] == "line\nbreak.png"


def test_columns_arrow_cannot_write_go_through_pandas():
    df = pd.DataFrame({"mixed": [1, "a", 2.5], "when": pd.to_datetime(["2026-01-01"] * 3)})
    buf = io.BytesIO()
    write_csv(df, buf)
    assert buf.getvalue().decode() == df.to_csv(index=False)


def test_file_lock_excludes_another_process_and_times_out_with_the_callers_error(tmp_path):
    import subprocess
    import sys
    import time

    from sei_core.files import file_lock

    lock = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from sei_core.files import file_lock\n"
        f"with file_lock({str(lock)!r}):\n    print('held', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"

        class Busy(Exception):
            pass

        def busy(fd):
            return Busy(os.pread(fd, 13, 0).decode().strip())

        t0 = time.monotonic()
        with pytest.raises(Busy) as exc:
            with file_lock(lock, timeout=0.2, on_timeout=busy):
                pass
        assert time.monotonic() - t0 >= 0.2
        assert exc.value.args[0] == str(holder.pid)  # the holder wrote its process id
        with pytest.raises(TimeoutError):
            with file_lock(lock, timeout=0.05):
                pass
    finally:
        holder.kill()
        holder.wait()
    with file_lock(lock, timeout=1):  # the kernel dropped the dead holder's lock
        pass
