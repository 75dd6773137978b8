"""Showing a data set's images safely: only files inside the data set's folder are read.

A label file can name any path (``../../home/user/secret.png``, an absolute path, a
symbolic link pointing elsewhere). For display the app resolves every path and refuses
anything that does not lie inside the data root (the CSV's folder, the image folder, or the
``.npz``'s in-memory array) or one of the image folders the user chose for a label file, so
a crafted label file cannot make the app serve other files; where data roots are set
(:mod:`sei_core.access`) the data and each image must lie inside them too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import access
from .dataset import candidates
from .errors import SeiError
from .images import read_rgb, rgb_from_array
from .labels import IMAGE_EXTENSIONS, source_kind


class ImageAccessError(SeiError):
    """An image cannot be shown; the message says why and what to do."""


class ImageSource:
    """The images of one data set (label CSV, image folder or MedMNIST ``.npz``) for display."""

    def __init__(self, data_path: str | Path, split: str = "train", image_dirs=(), image_ext: str | None = None):
        p = Path(data_path).expanduser()
        access.check(p, "the data")
        self.path = p
        self.split = split
        kind = source_kind(p)
        self.kind = "csv" if kind == "missing" else kind
        self.root = p.resolve() if kind == "folder" else p.parent.resolve()
        #: a label file's image folders and extension (see sei_core.dataset.find_images)
        self.image_dirs = [str(Path(d).expanduser().resolve()) for d in image_dirs or ()]
        self.image_ext = image_ext or None
        self._array: np.ndarray | None = None

    def file_of(self, sample_id: str) -> Path:
        """The image file of ``sample_id``, resolved (in the image folders, with the extension
        rule, as training finds it); raises if it lies outside the data root and image folders."""
        if self.kind == "npz":
            raise ImageAccessError("images of a .npz file are in memory, not files")
        rel = Path(sample_id)
        candidate = (rel if rel.is_absolute() else self.root / rel).resolve()
        if self.kind == "csv" and (self.image_dirs or candidate.suffix.lower() not in IMAGE_EXTENSIONS):
            for c in candidates(self.root, str(sample_id), self.image_dirs, self.image_ext):
                if Path(c).is_file():
                    candidate = Path(c).resolve()
                    break
        roots = [self.root, *(Path(d) for d in self.image_dirs)]
        if not any(candidate.is_relative_to(r) for r in roots):
            raise ImageAccessError(
                f"'{sample_id}' lies outside the data folder {self.root}; for safety only images inside "
                "that folder (or the image folders chosen for it) are shown. Move the image into the folder "
                "and use a relative path.")
        try:
            access.check(candidate)
        except access.AccessError as e:
            raise ImageAccessError(str(e)) from e
        if candidate.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ImageAccessError(f"'{sample_id}' is not an image file (allowed: {', '.join(sorted(IMAGE_EXTENSIONS))})")
        if not candidate.is_file():
            raise ImageAccessError(f"image '{sample_id}' does not exist in {self.root}; check the path in the label file")
        return candidate

    def _npz(self) -> np.ndarray:
        if self._array is None:
            try:
                with np.load(self.path) as z:
                    self._array = z[f"{self.split}_images"]
            except (OSError, KeyError, ValueError) as e:
                raise ImageAccessError(f"cannot read images from {self.path.name}: {e}") from e
        return self._array

    def open(self, sample_id: str, max_side: int | None = None) -> Image.Image:
        """The image of ``sample_id`` as upright 8-bit RGB, decoded exactly as training decodes
        it (:func:`sei_core.images.to_rgb`), downscaled to ``max_side`` if given."""
        if self.kind == "npz":
            try:
                i = int(str(sample_id).rsplit("/", 1)[-1])
                a = self._npz()[i]
            except (ValueError, IndexError) as e:
                raise ImageAccessError(f"no image '{sample_id}' in {self.path.name}") from e
            im = rgb_from_array(a)
        else:
            f = self.file_of(sample_id)
            try:
                im = read_rgb(f, max_side)  # the decoder training uses: same pixels, same orientation
            except ValueError as e:  # a pixel format that cannot be shown faithfully
                raise ImageAccessError(f"'{sample_id}' cannot be shown: {e}") from e
            except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
                raise ImageAccessError(f"'{sample_id}' cannot be read as an image ({type(e).__name__}); "
                                       "replace the file") from e
        if max_side and max(im.size) > max_side:
            im.thumbnail((max_side, max_side), Image.LANCZOS)
        return im


def fit(im: Image.Image, side: int) -> Image.Image:
    """``im`` scaled (up or down) so that its longer side is ``side`` pixels."""
    w, h = im.size
    s = side / max(w, h)
    return im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)


def zoom(im: Image.Image, factor: float = 1.0, cx: float = 0.5, cy: float = 0.5, side: int = 512) -> Image.Image:
    """A magnified view: the ``1/factor`` part of the image centred near ``(cx, cy)`` (fractions
    of width and height, clamped to stay inside), scaled to ``side`` pixels."""
    factor = max(1.0, float(factor))
    w, h = im.size
    cw, ch = w / factor, h / factor
    x0 = min(max(cx * w - cw / 2, 0), w - cw)
    y0 = min(max(cy * h - ch / 2, 0), h - ch)
    return fit(im.crop((round(x0), round(y0), round(x0 + cw), round(y0 + ch))), side)
