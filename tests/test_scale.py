"""Bounded memory: the on-disk decode cache (parallel, resumable) and the memory-mapped feed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from PIL import Image

from sei_core import dataset, decode, feed
from sei_core.runs import Run
from sei_core.config import TrainConfig
from sei_core.train import train


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    """300 random 64 px PNGs in two classes (label CSV)."""
    root = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(0)
    rows = ["path,label"]
    for i in range(300):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / f"im{i:03d}.png")
        rows.append(f"im{i:03d}.png,{'ab'[i % 2]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


DECODE_SCRIPT = textwrap.dedent("""
    import sys, time
    from sei_core import dataset, decode
    ds = dataset.load(sys.argv[1])
    decode.decode_images(ds, 16, workers=2, cache_dir=sys.argv[2], chunk=10,
                          progress=lambda done, total: time.sleep(0.2))
""")


@pytest.mark.slow  # a decode in another process, killed and resumed: 41 s at load 10-15
def test_killed_decode_resumes_where_it_stopped(many_images, tmp_path):
    cache = tmp_path / "cache"
    ds = dataset.load(many_images)
    proc = subprocess.Popen([sys.executable, "-c", DECODE_SCRIPT, str(many_images), str(cache)],
                            start_new_session=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.monotonic() + 120
    done = 0
    while done < 5:
        assert proc.poll() is None, "the decode ended before it could be killed"
        assert time.monotonic() < deadline, "the decode made no progress"
        for f in cache.glob("*.progress.json"):
            try:
                done = int(decode.decode_progress(json.loads(f.read_text()), 30).sum())
            except (OSError, ValueError, KeyError):
                pass
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the decoder and its worker processes
    proc.wait()
    assert list(cache.glob("*.partial.npy")) and not list(cache.glob("images_*_16.npy"))

    reports = []
    arr, problems = decode.decode_images(ds, 16, workers=2, cache_dir=cache, chunk=10,
                                          progress=lambda d, t: reports.append(d))
    assert not problems
    assert reports[0] >= 10 * done and reports[0] < 300, "the decode started again instead of resuming"
    assert reports[-1] == 300
    assert isinstance(arr, np.memmap) and arr.shape == (300, 3, 16, 16)
    fresh, _ = decode.decode_images(ds, 16, workers=1)  # uninterrupted, in memory
    assert np.array_equal(np.asarray(arr), fresh)
    assert not list(cache.glob("*.partial.npy")) and not list(cache.glob("*.progress.json"))
    again, _ = decode.decode_images(ds, 16, cache_dir=cache, progress=lambda d, t: pytest.fail("decoded again"))
    assert np.array_equal(np.asarray(again), fresh)


@pytest.mark.slow
def test_parallel_decode_reports_every_bad_image_and_caches_the_report(many_images, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    lines = many_images.read_text().splitlines()[:41]
    for line in lines[1:]:
        name = line.split(",")[0]
        (data / name).write_bytes((many_images.parent / name).read_bytes())
    bad = {5: "bad5.tif", 33: "bad33.tif"}  # readable headers, pixel values no mapping fits
    for i, name in bad.items():
        Image.fromarray(np.full((8, 8), 5000.0, dtype=np.float32)).save(data / name)
        lines[i + 1] = f"{name},{lines[i + 1].split(',')[1]}"
    (data / "labels.csv").write_text("\n".join(lines) + "\n")
    ds = dataset.load(data / "labels.csv")
    with pytest.raises(dataset.DataError) as e:
        decode.decode_images(ds, 16, workers=2, cache_dir=tmp_path / "cache", chunk=4)
    assert [p.where for p in e.value.problems] == [ds.where(i) for i in bad]  # all of them, in order
    for attempt in range(2):  # the second comes from the finished cache
        arr, problems = decode.decode_images(ds, 16, workers=2, cache_dir=tmp_path / "cache", chunk=4,
                                              skip_unreadable=True)
        assert [p.where for p in problems] == [ds.where(i) for i in bad]
        assert "outside" in problems[0].message
        assert not arr[list(bad)].any() and arr[0].any()


@pytest.mark.parametrize("rows", [None, np.array([5, 0, 3, 3, 1])])
def test_feed_modes_give_the_same_batches(tmp_path, rows):
    images = np.random.default_rng(1).integers(0, 256, (6, 3, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "c.npy", images)
    mm = np.load(tmp_path / "c.npy", mmap_mode="r")
    n = 6 if rows is None else len(rows)
    src = images if rows is None else images[rows]
    want = torch.from_numpy(src).float() / 255
    order = [torch.tensor([2, 0]), torch.tensor([1, 4, 3])] if rows is not None else [torch.tensor([5, 0, 2]),
                                                                                      torch.tensor([1, 4, 3])]
    for budget, mode in ((1 << 30, "ram"), (0, "memmap")):
        f = feed.ImageFeed(mm, torch.device("cpu"), budget, rows=rows)
        assert f.mode == mode and f.nbytes == n * 48
        got = list(f.batches(order))
        assert [i.tolist() for i, _ in got] == [o.tolist() for o in order]
        for idx, x in got:
            assert torch.equal(x, want[idx])
        assert torch.equal(f.gather(torch.tensor([1])), want[[1]])


def test_memory_sizes():
    assert feed.parse_size("512M") == 512 << 20 and feed.parse_size("4G") == 4 << 30
    assert feed.parse_size("1.5GiB") == 3 << 29 and feed.parse_size("200MB") == 200 << 20
    assert feed.parse_size("1000") == 1000 and feed.parse_size(0) == 0
    with pytest.raises(ValueError, match="e.g. 512M"):
        feed.parse_size("lots")
    assert 0 < feed.memory_budget(None, processes=2) <= feed.available_memory() // 2
    with pytest.raises(ValueError, match="memory size"):
        TrainConfig(data="x", memory_budget="much").validate()


@pytest.mark.slow
def test_memmap_path_trains_exactly_like_the_in_ram_path(tiny_data, tiny_train, tmp_path):
    cfg = dict(tiny_train, epochs=2, runs=1, seed=4)
    runs = {}
    for budget in ("0", "1G"):
        out = tmp_path / f"budget{budget}"
        train(TrainConfig(data=str(tiny_data), memory_budget=budget, **cfg), out, progress_bar=False,
              log=lambda m: None)
        runs[budget] = Run(out)
    assert runs["0"].status()["image_feed"] == "memmap" and runs["1G"].status()["image_feed"] == "ram"
    assert "read through a memory map" in runs["0"].log_file.read_text()
    a, b = runs["0"].records(1).load(), runs["1G"].records(1).load()
    for field in a:
        assert np.array_equal(a[field], b[field]), field


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator and /proc")
@pytest.mark.parametrize("fix", [False, True])
def test_large_freed_blocks_go_back_to_the_system_in_the_memmap_mode(fix):
    """glibc keeps a freed block the size of a batch resident once an earlier free raised its
    mmap threshold (so training's memory grows with the number of batches); after
    ``feed.return_large_frees`` — which the memory-map mode calls — it is given back."""
    code = textwrap.dedent(f"""
        import numpy as np, torch
        from sei_core import feed

        def anon():
            with open("/proc/self/status") as f:
                return next(int(ln.split()[1]) for ln in f if ln.startswith("RssAnon:")) >> 10

        if {fix}:
            f = feed.ImageFeed(np.zeros((40, 3, 8, 8), np.uint8), torch.device("cpu"), budget=1000)
            assert f.mode == "memmap"
        a = np.ones(16 << 20, np.uint8); del a  # raises the default threshold to 16 MB
        base = anon()
        b = np.ones(16 << 20, np.uint8); del b
        print(anon() - base)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    kept_mb = int(out.stdout.split()[-1])
    assert kept_mb <= 1 if fix else kept_mb >= 15
