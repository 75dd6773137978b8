"""Pixels: how an image file becomes the upright 8-bit RGB the model and the pages see.

One policy for every reader (training's decode, the gallery, the checks): EXIF orientation
applied, 16-bit and float images scaled by what they declare, palette and alpha flattened,
and images whose values make no sense refused with the reason (:class:`ImageModeError`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

class ImageModeError(ValueError):
    """An image whose pixel values cannot be mapped to 8-bit RGB without guessing."""


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` as 8-bit RGB, upright: the one place every image is turned into pixels.

    - EXIF orientation is applied (a phone photo tagged "rotate 90°" is shown and trained
      on as the camera's user saw it).
    - 16-bit images (``I;16*``, and ``I`` images within 0–65535) are scaled by 255/65535,
      so a 16-bit PNG keeps its contrast instead of saturating to white.
    - 32-bit integer images with values outside 0–65535 are refused.
    - Float images (``F``, e.g. a float TIFF) with values in [0, 1] are scaled by 255,
      those within [0, 255] are kept; any other range (negative, larger, NaN) is refused:
      no fixed mapping is right for them and a silent min–max stretch would change the data.
    - Every other mode (palette, grey, alpha, CMYK …) goes through PIL's ``convert``.

    Raises :class:`ImageModeError` (a ``ValueError``) saying why an image is refused.
    """
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im)
        a = a.astype(np.int64, copy=False)
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ImageModeError(f"32-bit integer image with values {lo}…{hi} outside the 16-bit range; "
                                 "save it as 8- or 16-bit")
        if mode == "I" and hi <= 255 and not _declared_16_bit(im):
            grey = a.astype(np.uint8)
        else:
            grey = ((a * 255 + 32767) // 65535).astype(np.uint8)  # 16-bit → 8-bit, rounded
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        if not np.isfinite(a).all():
            raise ImageModeError("float image contains NaN or infinite values; save it as 8-bit")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0 or hi > 255:
            raise ImageModeError(f"float image with values {lo:g}…{hi:g}, outside [0, 1] and [0, 255]; "
                                 "rescale it to 8-bit (0–255) yourself so its contrast is what you intend")
        scale = 255.0 if hi <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8), "L").convert("RGB")
    return im.convert("RGB")


def _declared_16_bit(im: Image.Image) -> bool:
    """True for a mode-``I`` image that a 16-bit file was opened as (PNG bit depth 16, TIFF 16 bits)."""
    if im.info.get("bits") == 16:
        return True
    tags = getattr(im, "tag_v2", None)
    try:
        return tags is not None and tags.get(258) in (16, (16,))
    except Exception:
        return False


def read_rgb(path: str | Path, draft: int | None = None) -> Image.Image:
    """The image file ``path`` as upright 8-bit RGB (see :func:`to_rgb`).

    ``draft``: a JPEG may be decoded at a reduced scale that is still at least this many
    pixels on each side (much faster for thumbnails and small training sizes).
    """
    with Image.open(path) as raw:
        if draft:
            raw.draft("RGB", (draft, draft))
        return to_rgb(raw)


def rgb_from_array(a: np.ndarray) -> Image.Image:
    """One uint8 image of a MedMNIST-style array, ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``, as RGB."""
    return Image.fromarray(a if a.ndim == 3 and a.shape[-1] == 3 else np.squeeze(a)).convert("RGB")
