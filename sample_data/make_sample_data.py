"""Generate a small synthetic dermoscopy-like image set with known label noise.

The set is a stand-in for a real skin-lesion dataset: four classes of lesion
drawn on textured skin inside a dark dermoscope vignette, with a fraction of
"hard" images that blend towards another class and a seeded fraction of
deliberately wrong labels. It is small enough that a model trains end to end on
a 2-core CPU in a few minutes (about 2.5 CPU-minutes), and ``truth.csv`` records which labels were
flipped so the app and the benchmarks can measure how well the Signed Entropy
Integral finds them.

Output in ``out_dir``::

    images/<label-slug>_<index>.png   RGB PNGs, named after the label they were *given*
    labels.csv                        path,label,patient_id   (label is the noisy one)
    truth.csv                         path,true_label,given_label,is_noisy
    prompts.json                      zero-shot prompt template for the classes

Same arguments give byte-identical files.

Usage: python sample_data/make_sample_data.py [--out DIR] [--n-per-class N]
       [--size S] [--noise-rate R] [--seed S]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("nevus", "melanoma", "benign keratosis", "vascular lesion")
PROMPTS = {
    "template": "A dermoscopic image showing {}.",
    "aux_prompt": "A dermoscopic image showing other lesions.",
}
HARD_FRACTION = 0.2
SUPERSAMPLE = 2
N_PATIENTS = 150

_IMAGE_NAME = re.compile(
    r"^(%s)_\d+\.png$" % "|".join(re.escape(c.replace(" ", "_")) for c in CLASSES)
)


def slug(name: str) -> str:
    """File-name form of a class name: ``"benign keratosis"`` -> ``"benign_keratosis"``."""
    return name.replace(" ", "_")


# --------------------------------------------------------------------------- noise


def _value_noise(rng: np.random.Generator, size: int, cells: int, octaves: int = 1) -> np.ndarray:
    """Smooth random field in [0, 1] of shape (size, size) with about `cells` blobs per side."""
    if octaves > 1:
        out = _value_noise(rng, size, cells) + 0.5 * _value_noise(rng, size, 2 * cells, octaves - 1)
        return (out - out.min()) / (out.max() - out.min() + 1e-9)
    grid = rng.random((cells + 1, cells + 1))
    t = np.linspace(0.0, cells, size, endpoint=False)
    i = t.astype(int)
    f = t - i
    f = f * f * (3.0 - 2.0 * f)
    row0 = grid[i][:, i] * (1 - f)[None, :] + grid[i][:, i + 1] * f[None, :]
    row1 = grid[i + 1][:, i] * (1 - f)[None, :] + grid[i + 1][:, i + 1] * f[None, :]
    out = row0 * (1 - f)[:, None] + row1 * f[:, None]
    lo, hi = out.min(), out.max()
    return (out - lo) / (hi - lo + 1e-9)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _polar_radius(rng, phi, r0, amps):
    """Radius r0 * (1 + sum_k a_k cos(k*phi + p_k)) for a wobbly closed outline."""
    r = np.ones_like(phi)
    for k, a in enumerate(amps, start=1):
        r += a * rng.normal() * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    return r0 * np.clip(r, 0.45, 1.8)


def _angular_noise(rng, phi, n, amount):
    """Periodic random wobble around 1 with `n` knots over the full circle."""
    knots = rng.normal(0, amount, n)
    t = (phi + np.pi) / (2 * np.pi) * n
    i = t.astype(int) % n
    f = t - np.floor(t)
    f = f * f * (3 - 2 * f)
    return 1.0 + knots[i] * (1 - f) + knots[(i + 1) % n] * f


def _rgb(c) -> np.ndarray:
    return np.asarray(c, dtype=np.float64) / 255.0


def _jitter(rng, c, amount=0.08) -> np.ndarray:
    """Colour `c` with random brightness and a little (less) hue jitter."""
    gain = rng.uniform(1 - amount, 1 + amount) * rng.uniform(1 - amount / 3, 1 + amount / 3, 3)
    return np.clip(_rgb(c) * gain, 0, 1)


# ------------------------------------------------------------------------- lesions
# Each renderer takes lesion-frame coordinates (x, y: centred, rotated, normalised
# so the image spans about [-1, 1]) and returns (alpha, rgb) of shapes (H, W), (H, W, 3).


def _nevus(rng, x, y, px):
    r0 = rng.uniform(0.26, 0.38)
    y = y / rng.uniform(0.85, 1.0)
    d, phi = np.hypot(x, y), np.arctan2(y, x)
    rad = _polar_radius(rng, phi, r0, [0.0, 0.04, 0.03, 0.02])
    alpha = _sigmoid((rad - d) / (1.5 * px))
    base = _jitter(rng, (128, 76, 46), 0.1)
    core = 1.0 - 0.18 * np.clip(1.0 - d / r0, 0, 1)  # slightly darker centre
    mottle = 1.0 + 0.06 * (_value_noise(rng, x.shape[0], 5) - 0.5)
    return alpha, base * (core * mottle)[..., None]


def _melanoma(rng, x, y, px):
    size = x.shape[0]
    r0 = rng.uniform(0.40, 0.54)
    y = y / rng.uniform(0.7, 0.95)
    d, phi = np.hypot(x, y), np.arctan2(y, x)
    amps = [0.16, 0.12, 0.08, 0.06, 0.05, 0.04, 0.03, 0.03]
    rad = _polar_radius(rng, phi, r0, amps) * _angular_noise(rng, phi, 12, 0.12)
    # Edge sharpness varies around the outline: partly crisp, partly smudged.
    edge = px * (1.0 + 5.0 * (0.5 + 0.5 * np.cos(phi + rng.uniform(0, 2 * np.pi))))
    alpha = _sigmoid((rad - d) / edge)
    rgb = np.broadcast_to(_jitter(rng, (92, 55, 40)), x.shape + (3,)).copy()
    for colour, cells, thr, opacity in (
        ((165, 112, 78), 3, 0.6, 1.0),  # light brown
        ((70, 38, 30), 5, 0.5, 1.0),  # dark brown
        ((30, 22, 22), 4, 0.6, 1.0),  # black
        ((100, 106, 124), 3, 0.72, 0.7),  # blue-grey veil
    ):
        w = _sigmoid((_value_noise(rng, size, cells, 2) - thr) / 0.06)[..., None] * opacity
        rgb = rgb * (1 - w) + _jitter(rng, colour) * w
    # Scattered dark globules.
    dots = np.zeros(x.shape)
    for gx, gy in rng.uniform(-0.8, 0.8, (rng.integers(3, 9), 2)) * r0:
        r = rng.uniform(0.02, 0.035)
        dots = np.maximum(dots, _sigmoid((r - np.hypot(x - gx, y - gy)) / px))
    rgb = rgb * (1 - dots[..., None]) + _rgb((35, 25, 28)) * dots[..., None]
    return alpha, rgb


def _keratosis(rng, x, y, px):
    size = x.shape[0]
    r0 = rng.uniform(0.30, 0.44)
    y = y / rng.uniform(0.65, 0.9)
    d, phi = np.hypot(x, y), np.arctan2(y, x)
    rad = _polar_radius(rng, phi, r0, [0.0, 0.06, 0.05, 0.04, 0.03])
    alpha = _sigmoid((rad - d) / (1.0 * px))  # sharp, "stuck-on" edge
    rim = np.exp(-(((rad - d) / (3 * px)) ** 2))[..., None] * 0.45
    base = _jitter(rng, (196, 156, 104), 0.08)
    waxy = 1.0 + 0.12 * (_value_noise(rng, size, 4) - 0.5)
    rgb = base * waxy[..., None]
    # Cerebriform fissures along the level lines of a noise field.
    ridge = np.abs(_value_noise(rng, size, 10, 2) - 0.5)
    fissure = np.exp(-((ridge / 0.06) ** 2))[..., None] * 0.75
    rgb = rgb * (1 - fissure) + _rgb((115, 80, 55)) * fissure
    # Milia-like cysts: small pale dots.
    n = rng.integers(4, 9)
    ang, rr = rng.uniform(0, 2 * np.pi, n), r0 * np.sqrt(rng.uniform(0, 0.7, n))
    cx, cy = rr * np.cos(ang), rr * np.sin(ang)
    dots = np.zeros(x.shape)
    for i in range(n):
        r = rng.uniform(0.025, 0.04)
        dots = np.maximum(dots, _sigmoid((r - np.hypot(x - cx[i], y - cy[i])) / px))
    dots = dots[..., None] * 0.9
    rgb = rgb * (1 - dots) + _rgb((240, 228, 200)) * dots
    rgb = rgb * (1 - rim) + _rgb((110, 75, 50)) * rim
    return alpha, rgb


def _vascular(rng, x, y, px):
    n = rng.integers(4, 9)
    ang = rng.uniform(0, 2 * np.pi) + np.arange(n) * 2 * np.pi / n + rng.normal(0, 0.4, n)
    dist = rng.uniform(0.08, 0.28, n)
    dist[0] = 0.0
    cx, cy = dist * np.cos(ang), dist * np.sin(ang)
    radii = rng.uniform(0.11, 0.19, n)
    d = np.stack([np.hypot(x - cx[i], y - cy[i]) for i in range(n)])
    memb = _sigmoid((radii[:, None, None] - d) / px)
    depth = np.clip(1 - d / radii[:, None, None], 0, 1)
    owner = np.argmax(depth, axis=0)
    alpha = memb.max(axis=0)
    red, purple = _jitter(rng, (190, 35, 55)), _jitter(rng, (115, 30, 95))
    mix = rng.uniform(0, 1, n)
    colours = red * (1 - mix[:, None]) + purple * mix[:, None]
    shade = 0.7 + 0.45 * np.take_along_axis(depth, owner[None], 0)[0]
    rgb = colours[owner] * shade[..., None]
    # Pale septa where lobules meet.
    second = np.sort(depth, axis=0)[-2]
    septa = np.exp(-(((depth.max(0) - second) / 0.06) ** 2)) * (second > 0) * 0.7
    rgb = rgb * (1 - septa[..., None]) + _rgb((225, 170, 175)) * septa[..., None]
    return alpha, np.clip(rgb, 0, 1)


_RENDERERS = (_nevus, _melanoma, _keratosis, _vascular)


# --------------------------------------------------------------------------- image


def _skin(rng, size, u, v):
    tone = rng.uniform()
    base = _rgb((236, 196, 172)) * (1 - tone) + _rgb((196, 142, 110)) * tone
    base = base * rng.uniform(0.96, 1.04, 3)
    blotch = 1.0 + 0.08 * (_value_noise(rng, size, 3) - 0.5)
    # Faint skin furrows.
    k, a = rng.uniform(14, 22), rng.uniform(0, np.pi)
    warp = 3.0 * _value_noise(rng, size, 2)
    furrow = 1.0 - 0.02 * (np.sin(k * (u * np.cos(a) + v * np.sin(a)) + warp) > 0.85)
    return base * (blotch * furrow)[..., None]


def _hairs(rng, img, u, v, px):
    for _ in range(rng.choice([0, 0, 0, 0, 0, 0, 1, 1, 2])):
        a = rng.uniform(0, np.pi)
        s, t = u * np.cos(a) + v * np.sin(a), -u * np.sin(a) + v * np.cos(a)
        dist = np.abs(t - rng.uniform(-0.7, 0.7) - rng.uniform(-0.12, 0.12) * s * s)
        s0 = rng.uniform(-1.2, 0.2)
        span = _sigmoid((s - s0) / px) * _sigmoid((s0 + rng.uniform(0.8, 1.6) - s) / px)
        w = (_sigmoid((0.7 * px - dist) / (0.4 * px)) * span)[..., None] * 0.7
        img = img * (1 - w) + _rgb((55, 38, 30)) * w
    return img


def render(
    cls: int, rng: np.random.Generator, image_size: int = 64, blend_with: int | None = None
) -> Image.Image:
    """Draw one image of class index `cls`; `blend_with` makes it a faint hybrid with that class."""
    size = image_size * SUPERSAMPLE
    px = 2.0 / size
    u, v = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size))
    skin = _skin(rng, size, u, v)

    cx, cy = rng.uniform(-0.18, 0.18, 2)
    theta = rng.uniform(0, 2 * np.pi)
    x = (u - cx) * np.cos(theta) + (v - cy) * np.sin(theta)
    y = -(u - cx) * np.sin(theta) + (v - cy) * np.cos(theta)
    alpha, lesion = _RENDERERS[cls](rng, x, y, px)
    if blend_with is not None:
        alpha2, lesion2 = _RENDERERS[blend_with](rng, x, y, px)
        t = rng.uniform(0.25, 0.45)
        alpha = (1 - t) * alpha + t * alpha2
        lesion = (1 - t) * lesion + t * lesion2
        fade = rng.uniform(0.2, 0.35)  # lower contrast: pull the lesion towards skin
        lesion = (1 - fade) * lesion + fade * skin
    alpha = alpha * rng.uniform(0.88, 1.0)
    img = skin * (1 - alpha[..., None]) + lesion * alpha[..., None]
    img = _hairs(rng, img, u, v, px)

    d = np.hypot(u, v)
    ring = rng.uniform(0.98, 1.2)  # dermoscope field of view; corners fall outside it
    light = (1.0 - 0.22 * (d / ring) ** 2) * _sigmoid((ring - d) / (3 * px))
    img = img * light[..., None] * rng.uniform(0.95, 1.05)

    img = img.reshape(image_size, SUPERSAMPLE, image_size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    # 86 levels per channel instead of 256: invisible here, and keeps PNGs at ~3 KB.
    arr = (np.round(np.clip(img, 0, 1) * 85) * 3).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


# ------------------------------------------------------------------------ dataset


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _csv_bytes(header, rows) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def generate(
    out_dir: str | Path = Path(__file__).resolve().parent,
    n_per_class: int = 100,
    image_size: int = 64,
    noise_rate: float = 0.15,
    seed: int = 0,
) -> Path:
    """Write the image set to `out_dir`, replacing any previous one; return the labels.csv path."""
    if n_per_class < 1 or image_size < 8 or not 0.0 <= noise_rate <= 1.0:
        raise ValueError("need n_per_class >= 1, image_size >= 8 and 0 <= noise_rate <= 1")
    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)

    k = len(CLASSES)
    n = k * n_per_class
    plan = np.random.default_rng([seed, 1])
    true = np.repeat(np.arange(k), n_per_class)
    hard = np.zeros(n, dtype=bool)
    for c in range(k):
        idx = plan.choice(n_per_class, round(HARD_FRACTION * n_per_class), replace=False)
        hard[c * n_per_class + idx] = True
    blend = (true + plan.integers(1, k, n)) % k
    given = true.copy()
    noisy = plan.choice(n, round(noise_rate * n), replace=False)
    given[noisy] = (true[noisy] + plan.integers(1, k, len(noisy))) % k
    patients = plan.integers(0, N_PATIENTS, n)

    # Number files in shuffled order so that an index says nothing about the true class.
    counters = [0] * k
    rows = []
    for i in plan.permutation(n):
        name = f"{slug(CLASSES[given[i]])}_{counters[given[i]]:04d}.png"
        counters[given[i]] += 1
        rng = np.random.default_rng([seed, 2, int(i)])
        img = render(int(true[i]), rng, image_size, int(blend[i]) if hard[i] else None)
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=6)
        _write_atomic(img_dir / name, buf.getvalue())
        rows.append((f"images/{name}", CLASSES[true[i]], CLASSES[given[i]], f"P{patients[i]:04d}"))

    keep = {r[0].split("/", 1)[1] for r in rows}
    for f in img_dir.iterdir():
        if (_IMAGE_NAME.match(f.name) and f.name not in keep) or f.name.endswith(".png.tmp"):
            f.unlink()

    rows.sort()
    labels = out / "labels.csv"
    _write_atomic(
        labels, _csv_bytes(("path", "label", "patient_id"), [(p, g, pid) for p, t, g, pid in rows])
    )
    _write_atomic(
        out / "truth.csv",
        _csv_bytes(
            ("path", "true_label", "given_label", "is_noisy"),
            [(p, t, g, int(t != g)) for p, t, g, pid in rows],
        ),
    )
    _write_atomic(out / "prompts.json", (json.dumps(PROMPTS, indent=2) + "\n").encode("utf-8"))
    return labels


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent))
    p.add_argument("--n-per-class", type=int, default=100)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--noise-rate", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    start = time.perf_counter()
    labels = generate(a.out, a.n_per_class, a.size, a.noise_rate, a.seed)
    n = 4 * a.n_per_class
    print(f"wrote {n} images ({round(a.noise_rate * n)} mislabeled) and {labels} "
          f"in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
