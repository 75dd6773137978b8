"""Training on noisy labels while recording per-sample dynamics for SEI.

One *run* trains ``runs`` complementary models (default 2, as in the paper's released
code). Each relabels its own random ``N/(K+1)`` samples to an extra, meaningless class
(the auxiliary prompt); these known-mislabeled samples give the threshold, and the
auxiliary sets are disjoint so that every sample is scored by a run in which it kept its
label.

The images are decoded once into a uint8 tensor (on the GPU when it fits), so epochs never
touch JPEG decoding; augmentation runs batched on the training device. Every epoch writes
its records, a checkpoint (model, optimiser, scheduler, RNG states) and the status, so a
killed run resumes from its last complete epoch and ends with the same scores as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import dataset as ds_mod
# the configuration moved to sei_core.config; these names stay importable from here
from .config import PAPER_EPOCHS, PAPER_MILESTONES, PRESETS, TrainConfig, pick_device  # noqa: F401
from .models import ModelError, build_model
from .files import atomic_write
from .records import Recorder
from .runs import Run, RunError, now
from .scores import choose_aux_sets


def augment_batch(x: torch.Tensor, mode: str, gen: torch.Generator) -> torch.Tensor:
    """Batched augmentation of images in [0, 1]: random resized crop (scale 0.7–1, aspect
    3/4–4/3) with horizontal and vertical flips ("paper"), flips only ("flip"), or none.

    One ``affine_grid``/``grid_sample`` call for the whole batch; randomness from ``gen``.
    """
    if mode == "none":
        return x
    b = x.shape[0]
    r = torch.rand((b, 6), generator=gen, device=gen.device).to(x.device)
    fx = torch.where(r[:, 0] < 0.5, -1.0, 1.0)
    fy = torch.where(r[:, 1] < 0.5, -1.0, 1.0)
    if mode == "flip":
        sx = sy = torch.ones(b, device=x.device)
    else:
        area = 0.7 + 0.3 * r[:, 2]
        log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * r[:, 3]
        ratio = torch.exp(log_ratio)
        sx = torch.sqrt(area * ratio).clamp(max=1.0)
        sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (1 - sx) * (2 * r[:, 4] - 1)
    ty = (1 - sy) * (2 * r[:, 5] - 1)
    theta = torch.zeros((b, 2, 3), device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = sx * fx
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = sy * fy
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class Stopped(Exception):
    """Raised inside training when the process is asked to stop (SIGTERM/SIGINT)."""


#: Signals received; checked between batches so a stop never interrupts a file write.
_STOP: list[str] = []


def _check_stop() -> None:
    if _STOP:
        raise Stopped(f"stopped by signal {_STOP[-1]}")


@dataclass
class Prepared:
    """What both complementary runs share: the validated data and its decoded images."""

    data: ds_mod.LabeledImages
    images: np.ndarray  # (N, 3, S, S) uint8
    prompts: list[str]


def prepare(config: TrainConfig, run: Run, log: Callable[[str], None] = print) -> Prepared:
    """Load and validate the data, decode it once (cached in the run), save the sample list."""
    run.update_status(phase="loading data")
    data = ds_mod.load(config.data, split=config.split, skip_unreadable=config.skip_unreadable,
                       max_pixels=config.max_pixels, classes=run.config().get("classes"))
    for p in data.problems:
        log(f"warning: {p}")
    t0 = time.time()

    def progress(done: int, total: int) -> None:
        _check_stop()
        run.update_status(phase=f"decoding images {done}/{total}")

    images, problems = ds_mod.decode_images(data, config.image_size, workers=config.workers,
                                            cache_dir=config.cache_dir or run.path / "cache",
                                            skip_unreadable=config.skip_unreadable, progress=progress)
    if problems:
        bad = {p.where for p in problems}
        keep = [i for i in range(len(data)) if data.where(i) not in bad]
        for p in problems:
            log(f"warning: {p} — skipped")
        data, images = ds_mod.subset(data, keep), images[keep]
    log(f"{len(data)} images of {len(data.classes)} classes decoded at {config.image_size}px "
        f"in {time.time() - t0:.1f}s")
    if (run.path / "samples.csv").is_file():
        ids, labels = run.samples()
        now_labels = [data.classes[k] for k in data.labels]
        if ids != data.ids or labels != now_labels:
            changed = sum(a != b for a, b in zip(labels, now_labels)) + abs(len(ids) - len(data.ids))
            raise RunError(f"the data changed since this run started ({len(ids)} samples then, {len(data.ids)} "
                           f"now, {changed} differ); a resumed run must see the same samples and labels. "
                           "Start a new run on the current data instead")
    prompts = config.resolve_prompts(data.prompts())
    cfg = run.config()
    cfg.update(classes=data.classes, prompts=prompts.for_classes(data.classes), n_samples=len(data))
    run.write_config(cfg)
    run.write_samples(data.ids, [data.classes[k] for k in data.labels], data.rows)
    return Prepared(data, images, prompts.for_classes(data.classes))


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress_bar: bool = True,
    log: Callable[[str], None] | None = None,
) -> Run:
    """Train (or resume) a run in ``out`` and write its ranked scores at the end.

    The status file always tells the outcome; errors are also raised to the caller
    (:class:`~sei_core.dataset.DataError`, :class:`~sei_core.models.ModelError`,
    :class:`RunError`, :class:`Stopped`).
    """
    if resume:
        run = Run(out)
        if not run.exists():
            raise RunError(f"there is no run to resume in {run.path}")
        config = TrainConfig.from_dict(run.config())
    else:
        run = init_run(config, out)
    lock = run.acquire()
    _STOP.clear()
    logf = open(run.log_file, "a", encoding="utf-8")

    def say(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        logf.write(line + "\n")
        logf.flush()
        (log or (lambda m: print(m, file=sys.stderr)))(msg)

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def on_signal(signum, frame):
        # only note the request: raising here could interrupt a checkpoint being written
        _STOP.append(signal.Signals(signum).name)

    for s in previous:
        try:
            signal.signal(s, on_signal)
        except ValueError:  # not the main thread: rely on the caller
            pass
    try:
        run.update_status(state="running", pid=os.getpid(), error=None, started_at=now(),
                          n_runs=config.runs, epochs=config.epochs)
        say(f"{'resuming' if resume else 'starting'} run {run.path}")
        device = pick_device(config.device)
        prepared = prepare(config, run, say)
        n, k = len(prepared.data), len(prepared.data.classes)
        aux_sets = _aux_sets(run, config, n, k)
        for index in range(1, config.runs + 1):
            if run.is_done(index):
                continue
            _train_one(run, config, prepared, aux_sets[index - 1], index, device, progress_bar, say)
        from .ranking import write_scores  # late import: ranking reads what training wrote

        write_scores(run)
        run.update_status(state="finished", phase="finished", eta_seconds=0, finished_at=now())
        say("finished; scores written to scores.csv")
        return run
    except Stopped as e:
        run.update_status(state="stopped", phase="stopped", error=None, eta_seconds=None)
        say(f"{e}; resume with `sei resume {run.path}`")
        raise
    except (ds_mod.DataError, ModelError, RunError) as e:
        run.update_status(state="failed", error=str(e), eta_seconds=None)
        say(f"failed: {e}")
        raise
    except BaseException as e:
        msg = f"{type(e).__name__}: {e}"
        if isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower():
            msg = f"out of memory ({e}); lower --batch-size or --image-size"
        run.update_status(state="failed", error=msg, eta_seconds=None)
        logf.write(traceback.format_exc())
        say(f"failed: {msg}")
        raise
    finally:
        for s, h in previous.items():
            try:
                signal.signal(s, h)
            except ValueError:
                pass
        logf.close()
        Run.release(lock)


def init_run(config: TrainConfig, out: str | Path) -> Run:
    """Create the run directory with its config (resolved milestones included)."""
    config.validate()
    run = Run(out)
    if run.exists():
        raise RunError(f"{run.path} already holds a run; choose another --out, or resume it with "
                       f"`sei resume {run.path}`")
    cfg = dataclasses.asdict(config)
    if cfg["classes"] is None:  # written by prepare() once the data is read
        del cfg["classes"]
    cfg["milestones"] = config.resolved_milestones()
    cfg["created_at"] = now()
    run.write_config(cfg)
    run.update_status(state="created", phase="waiting to start", epochs=config.epochs, n_runs=config.runs)
    return run


def _aux_sets(run: Run, config: TrainConfig, n: int, k: int) -> list[np.ndarray]:
    """The auxiliary sets, chosen once and kept in the run so a resume uses the same."""
    files = [run.sub_run(i) / "aux.npy" for i in range(1, config.runs + 1)]
    if all(f.is_file() for f in files):
        return [np.load(f) for f in files]
    sets = choose_aux_sets(n, k, config.runs, seed=config.seed)
    for f, s in zip(files, sets):
        f.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(f, lambda fh, s=s: np.save(fh, s))
    return sets


def _batches(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


def _train_one(run: Run, config: TrainConfig, prep: Prepared, aux: np.ndarray, index: int,
               device: torch.device, progress_bar: bool, say: Callable[[str], None]) -> None:
    n, k = len(prep.data), len(prep.data.classes)
    targets = prep.data.labels.copy()
    targets[aux] = k  # the auxiliary class is the extra output K
    torch.manual_seed(config.seed * 1000 + index)
    model = build_model(config.model, prep.prompts, weights=config.weights,
                        image_size=config.image_size).to(device)
    _record_weights(run, model.weights_info, say)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=config.resolved_milestones(),
                                                 gamma=config.gamma)
    order_gen = torch.Generator().manual_seed(config.seed * 1000 + index)
    aug_gen = torch.Generator(device=device).manual_seed(config.seed * 1000 + index + 1)
    images = _images_on(device, prep.images)
    y_all = torch.from_numpy(targets).to(device)
    store = run.records(index, config.keep_probs)
    recorder = Recorder(n, k + 1, device)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    start_epoch, history = 1, []
    ckpt_path = run.checkpoint(index)
    if ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        order_gen.set_state(ck["order_gen"])
        aug_gen.set_state(ck["aug_gen"])
        torch.set_rng_state(ck["torch_rng"])
        if device.type == "cuda" and ck.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ck["cuda_rng"], device)
        start_epoch, history = ck["epoch"] + 1, ck["history"]
        say(f"run {index}: resuming after epoch {ck['epoch']}")
    store.truncate(start_epoch - 1)
    for stale in list(run.sub_run(index).glob(".*.tmp")) + list(store.folder.glob(".*.tmp")):
        stale.unlink(missing_ok=True)  # half-written files of a killed process

    step = Stepper(model, opt, scaler, device, config.augment, aug_gen, use_amp, amp_dtype)
    saver = CheckpointWriter()
    n_batches = _batches(n, config.batch_size)
    bar = None
    if progress_bar:
        from tqdm import tqdm

        bar = tqdm(total=(config.epochs - start_epoch + 1) * n_batches, unit="batch", file=sys.stderr,
                   desc=f"run {index}/{config.runs}", dynamic_ncols=True)
    epoch_times = [h["seconds"] for h in history]
    # batches still to train in this whole run (this sub-run and the complementary ones after it)
    batches_left = (config.epochs - start_epoch + 1 + (config.runs - index) * config.epochs) * n_batches
    sync = torch.cuda.synchronize if device.type == "cuda" else None  # GPU work is asynchronous
    early = EarlyEstimate(batches_left, sync=sync) if not epoch_times else None
    try:
        for epoch in range(start_epoch, config.epochs + 1):
            t0 = time.time()
            run.update_status(phase=f"training run {index}/{config.runs}", run_index=index, epoch=epoch - 1)
            perm = torch.randperm(n, generator=order_gen)

            def on_batch() -> None:
                if bar is not None:
                    bar.update(1)
                if early is not None and not early.done:
                    eta = early.batch_done()
                    if eta is not None:
                        run.update_status(eta_seconds=eta, eta_from="first batches")
                        msg = (f"estimated training time: about {_fmt_duration(eta)} "
                               f"({config.runs - index + 1} × {config.epochs} epochs of {n_batches} batches, "
                               f"{early.seconds_per_batch:.2f} s per batch so far)")
                        say(msg)
                _check_stop()

            loss_v, acc_v = step.epoch(images, y_all, perm, n_batches,
                                       recorder if config.record == "train" else None, on_batch)
            sched.step()
            if config.record == "eval":
                _eval_pass(model, images, y_all, recorder, config, device, use_amp, amp_dtype)
            stats, probs = recorder.finalize()
            seconds = time.time() - t0
            history.append({"run": index, "epoch": epoch, "loss": loss_v, "accuracy": acc_v, "seconds": seconds,
                            "lr": opt.param_groups[0]["lr"]})
            store.write_epoch(epoch, stats, probs, loss=loss_v, accuracy=acc_v)
            saver.submit(ckpt_path, {
                "epoch": epoch, "history": list(history), "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                "order_gen": order_gen.get_state(), "aug_gen": aug_gen.get_state().cpu(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            })
            epoch_times.append(seconds)
            remaining = (config.epochs - epoch) + (config.runs - index) * config.epochs
            eta = float(np.mean(epoch_times[-5:])) * remaining
            all_history = [h for h in run.status().get("history", []) if h["run"] != index] + history
            run.update_status(epoch=epoch, run_index=index, loss=loss_v, accuracy=acc_v, eta_seconds=eta,
                              eta_from="epoch times", history=all_history, phase=f"training run {index}/{config.runs}")
            if bar is not None:
                bar.set_postfix(loss=f"{loss_v:.3f}", acc=f"{acc_v:.3f}")
            else:
                say(f"run {index} epoch {epoch}/{config.epochs} loss {loss_v:.4f} acc {acc_v:.3f} "
                    f"({seconds:.1f}s)")
    finally:
        saver.close()
    saver.wait()
    if bar is not None:
        bar.close()
    run.mark_done(index)


class EarlyEstimate:
    """The training time left, estimated from the first batches of a run (before any epoch
    has finished): the mean time of batches 2 … ``measure + 1`` (the first one pays for
    warm-up) times the batches left. ``sync`` waits for queued device work before a clock
    is read (``torch.cuda.synchronize``; twice per run)."""

    def __init__(self, batches_left: int, measure: int = 5, sync: Callable[[], None] | None = None):
        self.sync = sync
        self.left = batches_left
        self.measure = max(1, min(measure, batches_left - 1))
        self.count = 0
        self.t_first: float | None = None
        self.seconds_per_batch = float("nan")
        self.done = batches_left < 2

    def batch_done(self) -> float | None:
        """Call after each batch; returns the estimate (seconds) once, when it is known."""
        self.count += 1
        if self.count == 1 or self.count - 1 >= self.measure:
            if self.sync is not None:
                self.sync()
        if self.count == 1:
            self.t_first = time.perf_counter()
            return None
        if self.count - 1 < self.measure:
            return None
        self.done = True
        self.seconds_per_batch = (time.perf_counter() - self.t_first) / (self.count - 1)
        return self.seconds_per_batch * (self.left - self.count)


def _fmt_duration(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def _record_weights(run: Run, info: dict, say: Callable[[str], None]) -> None:
    """Write what the model was initialised from into the run's config and status."""
    cfg = run.config()
    if cfg.get("weights_loaded") != info:
        cfg["weights_loaded"] = info
        run.write_config(cfg)
    run.update_status(weights_loaded=info)
    if info.get("source") == "random":
        say("model initialised from random weights")
    else:
        say(f"model initialised from {info.get('tag') or 'the file'} {info['file']} (sha256 {info['sha256']}…)")


def _detached_copy(obj):
    """A deep copy of a (nested) state dict with every tensor cloned to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _detached_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detached_copy(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes each epoch's checkpoint in a background thread while the next epoch trains.

    The state is copied to the CPU first, so training may change the live tensors at once.
    A write waits for the previous one, and a killed process still leaves the last complete
    checkpoint: the file is replaced atomically. Errors surface on the next call.
    """

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _write(self, path: Path, state: dict) -> None:
        try:
            atomic_write(path, lambda f: torch.save(state, f))
        except BaseException as e:  # re-raised in the training thread by wait()
            self._error = e

    def submit(self, path: Path, state: dict) -> None:
        snapshot = _detached_copy(state)
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(path, snapshot), daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Let a write in flight finish (a stopped run keeps its newest checkpoint)."""
        if self._thread is not None:
            self._thread.join()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


@dataclass
class Stepper:
    """One epoch of SGD over the in-memory uint8 images, optionally feeding a recorder."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    augment: str
    aug_gen: torch.Generator
    use_amp: bool = False
    amp_dtype: torch.dtype = torch.bfloat16

    def epoch(self, images: torch.Tensor, y_all: torch.Tensor, order: torch.Tensor, n_batches: int,
              recorder: Recorder | None = None, on_batch: Callable[[], None] | None = None) -> tuple[float, float]:
        """Train over ``order`` split into ``n_batches`` near-equal batches (never a batch of
        one, which BatchNorm cannot train on); returns mean loss and accuracy."""
        self.model.train()
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        for idx_cpu in torch.tensor_split(order, n_batches):
            idx = idx_cpu.to(self.device, non_blocking=True)
            x = augment_batch(_gather(images, idx_cpu, idx, self.device), self.augment, self.aug_gen)
            y = y_all[idx]
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                logits = self.model(x)
                loss = F.cross_entropy(logits.float(), y)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            if recorder is not None:
                recorder.update(logits, y, idx)
            total_loss += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y).sum()
            if on_batch is not None:
                on_batch()
        n = len(order)
        return float(total_loss) / n, float(correct) / n


def _images_on(device: torch.device, images: np.ndarray) -> torch.Tensor:
    """The uint8 image cache on the training device (GPU if it fits comfortably)."""
    t = torch.from_numpy(images)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if t.numel() < free * 0.3:
            return t.to(device)
        return t.pin_memory()
    if device.type == "mps":
        return t.to(device)
    return t


def _gather(images: torch.Tensor, idx_cpu: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of images as floats in [0, 1] on ``device``, wherever the cache lives."""
    if images.device.type == device.type:
        batch = images[idx]
    else:
        batch = images[idx_cpu].to(device, non_blocking=True)
    return batch.float().div_(255)


@torch.no_grad()
def _eval_pass(model, images, y_all, recorder, config, device, use_amp, amp_dtype) -> None:
    """Record logits without augmentation, in eval mode (the optional record source)."""
    model.eval()
    n = len(y_all)
    for idx_cpu in torch.tensor_split(torch.arange(n), _batches(n, config.batch_size)):
        idx = idx_cpu.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            logits = model(_gather(images, idx_cpu, idx, device))
        recorder.update(logits, y_all[idx], idx)
