"""Reading and validating a labelled image set, and decoding it once into memory.

Three sources are understood:

- a **label file**: CSV with a path column and a label column (``path`` and ``label``, or any
  two the user names with ``path_column``/``label_column``; the path is relative to the
  CSV's folder or absolute); extra columns are kept untouched;
- an **image folder** with one sub-folder per class (torchvision's ImageFolder layout);
- a **MedMNIST** ``.npz`` file (``train_images``/``train_labels`` and so on).

Every problem found is collected as a :class:`Problem` (where, what, how to fix) and all of
them are reported together in one :class:`DataError`, so a user fixes a file in one pass.
Nothing here ever writes to the user's data.
"""

from __future__ import annotations

import hashlib
import contextlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

try:
    import fcntl
except ImportError:  # Windows: one decoder per cache is then up to the caller
    fcntl = None

from .files import atomic_write_json
from . import access
from .labels import LABEL_COL, PATH_COL, TableError, in_words, read_table, source_kind

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
#: Images larger than this many pixels are refused: decoding them could exhaust memory.
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_TEMPLATE = "A photo showing {}."
DEFAULT_AUX_PROMPT = "A photo showing something else."
PROMPTS_FILE = "prompts.json"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where it is, what is wrong, and how to fix it."""

    where: str
    message: str
    fix: str = ""
    severity: str = "error"  # "error" stops loading; "warning" is reported and skipped

    def __str__(self) -> str:
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{self.where}: {self.message}.{fix}"


class DataError(Exception):
    """The data cannot be used as it is; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[Problem], header: str = "The data has problems"):
        self.problems = list(problems)
        shown = self.problems[:25]
        lines = [f"{header} ({len(self.problems)}):"] + [f"  - {p}" for p in shown]
        if len(self.problems) > len(shown):
            lines.append(f"  … and {len(self.problems) - len(shown)} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Prompts:
    """Text prompts of a data set: one template (or explicit prompt) per class and the
    auxiliary prompt used for the extra, meaningless class of the threshold samples."""

    template: str = DEFAULT_TEMPLATE
    aux_prompt: str = DEFAULT_AUX_PROMPT
    per_class: dict[str, str] = field(default_factory=dict)

    def for_classes(self, classes: Sequence[str]) -> list[str]:
        """One prompt per class, in class order, followed by the auxiliary prompt."""
        if "{}" not in self.template:
            raise ValueError(f"prompt template {self.template!r} needs a '{{}}' for the class name")
        return [self.per_class.get(c, self.template.format(c)) for c in classes] + [self.aux_prompt]

    def to_dict(self) -> dict:
        return {"template": self.template, "aux_prompt": self.aux_prompt, "per_class": dict(self.per_class)}

    @classmethod
    def from_dict(cls, d: dict) -> "Prompts":
        return cls(
            template=d.get("template", DEFAULT_TEMPLATE),
            aux_prompt=d.get("aux_prompt", DEFAULT_AUX_PROMPT),
            per_class=dict(d.get("per_class", {})),
        )

    @classmethod
    def load(cls, path: str | Path) -> "Prompts":
        """Read a prompts JSON file (``template``, ``aux_prompt``, optional ``per_class``)."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, AttributeError) as e:
            raise DataError(
                [Problem(str(path), f"cannot read prompts ({e})",
                         'write JSON like {"template": "A dermoscopic image showing {}.", '
                         '"aux_prompt": "A dermoscopic image showing other lesions."}')]
            ) from e


@dataclass
class LabeledImages:
    """A validated labelled image set.

    ``ids`` identify samples as the source names them (the CSV's path cell, the path
    inside the class folder, or ``split/index`` for an ``.npz``); ``labels`` index ``classes``.
    ``path_column``/``label_column`` are the label file's columns they were read from.
    """

    kind: str  # "csv", "folder" or "npz"
    source: Path
    root: Path
    ids: list[str]
    labels: np.ndarray
    classes: list[str]
    problems: list[Problem] = field(default_factory=list)  # images left out (skip_unreadable)
    #: Findings that do not stop loading (near-duplicate rows, class names differing in case,
    #: a class of one image), for ``sei validate`` and the Data page.
    warnings: list[Problem] = field(default_factory=list)
    rows: np.ndarray | None = None  # CSV line number of each sample (header = line 1)
    array: np.ndarray | None = None  # in-memory images of an .npz, (N, H, W, C) uint8
    path_column: str = PATH_COL
    label_column: str = LABEL_COL

    def __len__(self) -> int:
        return len(self.ids)

    def file_of(self, i: int) -> Path | None:
        """The image file of sample ``i`` (None for in-memory .npz images)."""
        if self.kind == "npz":
            return None
        p = Path(self.ids[i])
        return p if p.is_absolute() else self.root / p

    def where(self, i: int) -> str:
        """Human-readable location of sample ``i`` for messages."""
        if self.kind == "csv" and self.rows is not None:
            return f"{self.source.name} line {int(self.rows[i])} ({self.ids[i]})"
        return f"{self.source.name}: {self.ids[i]}"

    def open_image(self, i: int, draft: int | None = None) -> Image.Image:
        """Sample ``i`` as an upright 8-bit RGB PIL image (:func:`to_rgb`); ``draft`` as in
        :func:`read_rgb`."""
        if self.array is not None:
            return rgb_from_array(self.array[i])
        return read_rgb(self.file_of(i), draft)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def fingerprint(self) -> str:
        """Hash of the image files (absolute path, size, mtime) in order: keys the decode cache.

        Files are hashed by absolute path rather than by label file, so two label files
        listing the same images in the same order (e.g. the noisy copies of a benchmark)
        share one cached array. Labels are not part of it: they do not change the pixels.
        """
        h = hashlib.sha256()
        if self.array is not None:
            h.update(str(self.source.resolve()).encode())
        for i, sid in enumerate(self.ids):
            f = self.file_of(i)
            h.update((sid if f is None else str(f.absolute())).encode())
            if f is not None:
                try:
                    st = f.stat()
                    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
                except OSError:
                    h.update(b"missing")
        if self.array is not None:
            h.update(hashlib.sha256(np.ascontiguousarray(self.array).tobytes()).digest())
        return h.hexdigest()[:16]

    def prompts(self) -> Prompts:
        """Prompts from a ``prompts.json`` beside the data, else the generic defaults."""
        folder = self.root if self.kind != "csv" else self.source.parent
        f = folder / PROMPTS_FILE
        return Prompts.load(access.check(f, "the prompts file")) if f.is_file() else Prompts()


def load(
    source: str | Path,
    *,
    classes: Sequence[str] | None = None,
    split: str = "train",
    skip_unreadable: bool = False,
    check_images: bool | str = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    path_column: str = PATH_COL,
    label_column: str = LABEL_COL,
) -> LabeledImages:
    """Read and validate a label file, image folder or MedMNIST ``.npz``.

    Parameters
    ----------
    source : the CSV file, the folder with one sub-folder per class, or the ``.npz`` file.
    classes : the expected class list (e.g. from an earlier run); a label outside it is an
        error and a class without images too. Default: the sorted labels found.
    split : which split of an ``.npz`` to read (``train``, ``val``, ``test``).
    skip_unreadable : drop missing/unreadable images with a warning instead of failing.
    check_images : ``True`` or ``"open"``: open each image's header to find missing, corrupt
        or huge files; ``"exists"``: only find missing files, from one directory listing per
        folder (a million files in a second or two; whether each one opens is then left to
        :class:`ImageCheck` or to decoding, which reports and leaves out what does not);
        ``False``: no check of the files.
    max_pixels : refuse images with more pixels than this.
    path_column, label_column : the label file's columns of image path and label (see
        :func:`sei_core.labels.read_table`); only for a label file.

    Raises
    ------
    DataError listing every problem, with file, row and fix.
    """
    src = Path(source).expanduser()
    roots = access.allowed_roots()
    if roots is not None:
        access.check(src, "the data", roots)  # before anything is read, not even whether it exists
    kind = source_kind(src)
    if kind == "missing":
        raise DataError([Problem(str(src), "does not exist", "check the path; it may be relative to the folder you started from")])
    if kind != "csv" and (path_column, label_column) != (PATH_COL, LABEL_COL):
        raise DataError([Problem(str(src), f"is {'an image folder' if kind == 'folder' else 'a MedMNIST .npz file'}, "
                                 f"not a label file, so it has no columns '{path_column}' and '{label_column}'",
                                 "choose columns only for a CSV label file (leave them at 'path' and 'label')")])
    if kind == "folder":
        ds, errors = _read_folder(src), []
    elif kind == "npz":
        ds, errors = _read_npz(src, split), []
    else:
        ds, errors = _read_csv(src, path_column, label_column)
    # Every problem at once: rows, then image files of the rows that could be read; the class
    # checks only when the rows are sound (a class may look empty because its rows were bad).
    mode = {True: "open", False: "none"}.get(check_images, check_images)
    if mode not in ("open", "exists", "none"):
        raise ValueError(f"check_images must be True, False, 'open' or 'exists', not {check_images!r}")
    if roots is not None and ds.kind != "npz" and len(ds):
        out = np.flatnonzero(access.outside(full_paths(ds), roots))
        if len(out):  # refused before any of the data set's files is looked at
            where = ", ".join(map(str, roots))
            raise DataError(errors + [Problem(ds.where(int(i)), f"the image lies outside the folders this app may "
                                                               f"open ({where})",
                                              "use a path inside the data's folder (no '..', no absolute path "
                                              "or link leading elsewhere), or move the image there")
                                      for i in out], f"{ds.source} names files outside the data folders")
    if mode != "none" and ds.kind != "npz":
        if mode == "open":
            found = [(i, p) for i in range(len(ds)) if (p := _image_problem(ds.file_of(i), ds.where(i), max_pixels))]
        else:
            found = [(int(i), _missing_problem(ds.file_of(i), ds.where(i))) for i in np.flatnonzero(missing_files(ds))]
        if found and (skip_unreadable and not errors):
            ds = _drop_or_fail(ds, [p for _, p in found], True, [i for i, _ in found])
        else:
            errors += [p for _, p in found]
    if errors:
        raise DataError(errors, f"{ds.source} has problems")
    return _check_classes(ds, classes)


def _read_csv(src: Path, path_column: str = PATH_COL,
              label_column: str = LABEL_COL) -> tuple[LabeledImages, list[Problem]]:
    """The rows of a label file that can be used, and a problem for each row that cannot.

    Read with :func:`sei_core.labels.read_table` (the reader review uses too). Besides empty
    and repeated cells it finds near-duplicates: two spellings of one file (``./x.jpg`` and
    ``x.jpg``) with different labels are refused, with the same label a warning; class names
    differing only in case (``nevus``/``Nevus``) are a warning (``ds.warnings``). Every check
    is a column operation (a million rows in about a second); a row gets the first problem
    that applies to it, in the order the checks are listed here.
    """
    try:
        table = read_table(src, path_column=path_column, label_column=label_column, strict=False)
    except TableError as e:
        raise DataError([Problem(*p) for p in e.problems]) from e
    problems = [Problem(*p) for p in table.problems]
    paths = table.paths().astype("string[pyarrow]").reset_index(drop=True)
    labels = table.labels().astype("string[pyarrow]").reset_index(drop=True)
    lines = np.asarray(table.lines, dtype=np.int64)
    n = len(paths)
    found: list[tuple[int, Problem]] = []  # (row position, problem), any order
    name = src.name

    def where(i: int) -> str:
        return f"{name} line {lines[i]}"

    multiline = (paths.str.contains("\n", regex=False) | labels.str.contains("\n", regex=False)).to_numpy(dtype=bool)
    no_path = (paths == "").to_numpy() & ~multiline
    no_label = (labels == "").to_numpy() & ~multiline & ~no_path
    for i in np.flatnonzero(multiline):
        found.append((i, Problem(where(i), "has a path or label that runs over several lines",
                                 "check for an unclosed quote (\") on that line")))
    for i in np.flatnonzero(no_path):
        found.append((i, Problem(where(i), "has an empty path" + _column_note(path_column, PATH_COL),
                                 "fill in the image path or delete the row")))
    for i in np.flatnonzero(no_label):
        found.append((i, Problem(where(i), f"image {paths[i]!r} has an empty label" + _column_note(label_column, LABEL_COL),
                                 "fill in its class name or delete the row")))
    ok = np.flatnonzero(~(multiline | no_path | no_label))
    repeat = _repeats(paths.iloc[ok])
    if repeat.any():
        first = pd.Series(lines[ok[~repeat]], index=paths.iloc[ok[~repeat]].to_numpy())
        for i in ok[repeat]:
            found.append((i, Problem(where(i), f"repeats path {paths[i]!r} (first on line {first[paths[i]]})",
                                     "keep one row per image")))
        ok = ok[~repeat]
    warnings: list[Problem] = []
    keys = _file_keys(src.parent, paths.iloc[ok])
    same = np.zeros(len(ok), dtype=bool) if keys is None else _repeats(keys)
    if same.any():
        firsts = ok[~same]
        at = pd.Index(keys[~same].to_numpy(dtype=object)).get_indexer(keys[same].to_numpy(dtype=object))
        refused = []
        for i, j in zip(ok[same], firsts[at]):
            if labels[i] != labels[j]:
                found.append((i, Problem(
                    where(i), f"{paths[i]!r} is the same file as {paths[j]!r} on line {lines[j]}, labelled "
                    f"{labels[j]!r} there and {labels[i]!r} here", "keep one row per image, with its correct label")))
                refused.append(i)
            else:
                warnings.append(Problem(where(i), f"{paths[i]!r} is the same file as {paths[j]!r} on line {lines[j]} "
                                        f"(both {labels[i]!r}): it would count twice", "delete one of the two rows",
                                        "warning"))
        ok = np.setdiff1d(ok, refused, assume_unique=True)
    problems += [p for _, p in sorted(found, key=lambda t: t[0])]
    codes, uniques = pd.factorize(labels.iloc[ok], sort=True)
    classes = [str(c) for c in uniques]
    counts = np.bincount(codes, minlength=len(classes))
    first_pos = np.full(len(classes), n, dtype=np.int64)
    np.minimum.at(first_pos, codes, np.arange(len(ok)))
    warnings += _case_variants(name, classes, counts, lines[ok][first_pos] if len(ok) else first_pos)
    ds = LabeledImages(
        kind="csv", source=src, root=src.parent, ids=paths.iloc[ok].tolist(),
        labels=codes.astype(np.int64), classes=classes, rows=lines[ok], warnings=warnings,
        path_column=table.path_column, label_column=table.label_column,
    )
    return ds, problems


def _column_note(column: str, default: str) -> str:
    """`` (column 'diagnosis')`` where the user chose a column of another name."""
    return "" if column == default else f" (column '{column}')"


def _repeats(values: pd.Series) -> np.ndarray:
    """``(N,)`` True where a value already occurred earlier (``Series.duplicated``, by hashing
    once: ``factorize`` numbers values in order of first appearance)."""
    codes, _ = pd.factorize(values)
    if not len(codes):
        return np.zeros(0, dtype=bool)
    seen = np.maximum.accumulate(codes)
    return codes <= np.r_[-1, seen[:-1]]


def _file_keys(folder: Path, paths: pd.Series) -> pd.Series | None:
    """One key per file a path names (relative to ``folder``): equal keys, same file spelled
    differently (``./x.jpg``, ``x.jpg``, ``a/../x.jpg``); ``os.path.normpath`` of the joined path,
    computed only for the paths that are not already in normal form. None when every path is
    in normal form (then equal keys are equal paths, already refused as repeats)."""
    base = os.path.normcase(os.path.abspath(folder))
    prefix = base.rstrip(os.sep) + os.sep
    if os.sep != "/" or os.altsep:  # e.g. Windows: case and both separators matter; path by path
        return paths.map(lambda p: os.path.normcase(os.path.normpath(os.path.join(base, p))))
    odd = paths.str.contains(r"(?:^|/)\.\.?(?:/|$)|//|/$|^/", regex=True).to_numpy(dtype=bool)
    if not odd.any():
        return None
    keys = (prefix + paths).astype(object).reset_index(drop=True)
    keys[odd] = [os.path.normpath(os.path.join(base, p)) for p in paths[odd]]
    return keys


def _case_variants(name: str, classes: Sequence[str], counts: np.ndarray, first: np.ndarray) -> list[Problem]:
    """A warning for each class name spelled in several cases (``nevus``, ``Nevus``, ``NEVUS``);
    ``counts`` and ``first`` (line) per class."""
    counts, first = [int(c) for c in counts], [int(f) for f in first]
    groups: dict[str, list[int]] = {}
    for k in np.argsort(first, kind="stable"):  # spellings in order of first appearance
        groups.setdefault(classes[k].casefold(), []).append(int(k))
    out = []
    for ks in groups.values():
        if len(ks) > 1:
            ks.sort(key=lambda k: -counts[k])
            listed = ", ".join(f"{classes[k]!r} ({counts[k]} row{'s' * (counts[k] != 1)}, first on line {first[k]})"
                               for k in ks)
            out.append(Problem(name, f"class names differ only in case: {listed}; they are "
                                     f"{len(ks)} different classes",
                               f"use one spelling, e.g. {classes[ks[0]]!r}, for all of them", "warning"))
    return out


def _read_folder(src: Path) -> LabeledImages:
    class_dirs = sorted(d for d in src.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError([Problem(str(src), "has no sub-folders",
                                 "put the images of each class in a sub-folder named after the class, "
                                 "or pass a CSV label file instead")])
    problems, ids, labels = [], [], []
    classes = [d.name for d in class_dirs]
    for k, d in enumerate(class_dirs):
        files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                       and not f.name.startswith("."))
        if not files:
            problems.append(Problem(f"{src.name}/{d.name}", "class folder has no images",
                                    "add images or remove the folder; images need one of the extensions "
                                    + in_words(sorted(IMAGE_EXTENSIONS), "or")))
        ids += [f.relative_to(src).as_posix() for f in files]
        labels += [k] * len(files)
    if problems:
        raise DataError(problems, f"{src} has problems")
    return LabeledImages(kind="folder", source=src, root=src, ids=ids,
                         labels=np.array(labels, dtype=np.int64), classes=classes)


def _read_npz(src: Path, split: str) -> LabeledImages:
    try:
        with np.load(src) as z:
            keys = set(z.files)
            ik, lk = f"{split}_images", f"{split}_labels"
            if ik not in keys or lk not in keys:
                raise DataError([Problem(src.name, f"has no arrays '{ik}' and '{lk}'; it has {in_words(sorted(keys))}",
                                         "choose a split that exists (train, val or test)")])
            images, raw_labels = z[ik], z[lk]
    except (OSError, ValueError) as e:
        raise DataError([Problem(src.name, f"cannot be read as a NumPy .npz file ({e})",
                                 "pass the MedMNIST .npz file as downloaded")]) from e
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataError([Problem(src.name, f"{split}_images has dtype {images.dtype} and shape {images.shape}",
                                 "expected uint8 images of shape (N, H, W) or (N, H, W, C)")])
    raw_labels = np.asarray(raw_labels).reshape(len(raw_labels), -1)
    if raw_labels.shape[1] != 1:
        raise DataError([Problem(src.name, f"{split}_labels has {raw_labels.shape[1]} columns (multi-label)",
                                 "only single-label classification is supported")])
    values = raw_labels[:, 0].astype(np.int64)
    found = np.unique(values)
    names = _medmnist_names(src, int(found.max()) + 1)
    classes = [names[v] for v in range(int(found.max()) + 1)]
    width = len(str(len(values)))
    return LabeledImages(kind="npz", source=src, root=src.parent,
                         ids=[f"{split}/{i:0{width}d}" for i in range(len(values))],
                         labels=values, classes=classes, array=images)


def _medmnist_names(src: Path, n: int) -> list[str]:
    """Class names of a MedMNIST file from the medmnist package's INFO, if known."""
    try:
        from medmnist import INFO  # optional
        names = INFO[src.stem.split("_")[0].lower()]["label"]
        out = [names[str(k)] for k in range(n)]
    except Exception:
        out = [str(k) for k in range(n)]
    return [f"class {x}" if x.isdigit() else x for x in out]


def _check_classes(ds: LabeledImages, classes: Sequence[str] | None) -> LabeledImages:
    problems = []
    if classes is not None:
        classes = list(classes)
        index = {c: k for k, c in enumerate(classes)}
        remap = np.array([index.get(c, -1) for c in ds.classes] + [-1], dtype=np.int64)
        new = remap[ds.labels]
        for i in np.flatnonzero(new < 0):
            name = ds.classes[ds.labels[i]]
            problems.append(Problem(ds.where(i), f"label {name!r} is not one of the classes {classes}",
                                    "correct the label, or train a new run that includes this class"))
        if not problems:
            ds.labels = new
            ds.classes = classes
    if not problems:
        counts = np.bincount(ds.labels, minlength=len(ds.classes))
        for c, n in zip(ds.classes, counts):
            if n == 0:
                problems.append(Problem(str(ds.source.name), f"class {c!r} has no images",
                                        "add images of it, or remove it from the class list"))
        if len(ds.classes) < 2:
            problems.append(Problem(str(ds.source.name), f"has a single class {ds.classes}",
                                    "label noise can only be found between two or more classes"))
        ds.warnings = [w for w in ds.warnings if not w.message.startswith("class of one image")]
        for k in np.flatnonzero(counts == 1):
            i = int(np.flatnonzero(ds.labels == k)[0])
            ds.warnings.append(Problem(ds.where(i), f"class of one image: {ds.classes[k]!r} has no other image",
                                       "check its label (a typo?), add images of the class, or leave it out",
                                       "warning"))
    if problems:
        raise DataError(problems, f"{ds.source} has problems")
    return ds


def full_paths(ds: LabeledImages):
    """The absolute path of every sample's image file as written (a relative path joined to the
    data root; ``..`` and links not resolved), as one Arrow string array (POSIX paths)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if os.sep != "/" or os.altsep:
        return pa.array([str(ds.file_of(i).absolute()) for i in range(len(ds))], type=pa.string())
    root = str(ds.root.absolute()).rstrip("/") + "/"
    ids = pa.array(ds.ids, type=pa.string())
    return pc.if_else(pc.starts_with(ids, "/"), ids, pc.binary_join_element_wise(root, ids, ""))


def missing_files(ds: LabeledImages) -> np.ndarray:
    """``(N,)`` True where sample ``i``'s image file does not exist.

    One directory listing per folder instead of a ``stat`` per file: a name found in its
    folder's listing exists; a name not found is confirmed with a ``stat`` (so a
    case-insensitive file system, or a folder that cannot be listed, gives the right answer).
    A million files in one folder take about a second. (A sub-folder that bears an image's
    name is listed too: :class:`ImageCheck` and decoding report it as unreadable.)
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(ds)
    if ds.kind == "npz" or n == 0:
        return np.zeros(n, dtype=bool)
    if os.sep != "/" or os.altsep:  # another separator convention: file by file
        return np.array([not ds.file_of(i).is_file() for i in range(n)], dtype=bool)
    full = full_paths(ds)
    parts = pc.split_pattern(full, "/", max_splits=1, reverse=True)
    folder, name = pc.list_element(parts, 0), pc.list_element(parts, 1)
    codes, folders = pd.factorize(pd.Series(folder, dtype="string[pyarrow]"))
    present = np.zeros(n, dtype=bool)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(folders) + 1))
    for f, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        rows = order[lo:hi]
        try:
            listed = pa.array(os.listdir(folders[f] or "/"), type=pa.string())
        except OSError:
            continue  # missing or unreadable folder: each of its files is stat'ed below
        present[rows] = pc.is_in(name.take(pa.array(rows)), value_set=listed).to_numpy(zero_copy_only=False)
    unsure = np.flatnonzero(~present)
    if len(unsure):
        paths = full.take(pa.array(unsure)).to_pylist()
        present[unsure] = [os.path.isfile(f) for f in paths]
    return ~present


def _missing_problem(f: Path, where: str) -> Problem:
    return Problem(where, f"image file {str(f)!r} does not exist",
                   "correct the path (relative paths start at the label file's folder) or use --skip-unreadable")


def _image_problem(f: Path, where: str, max_pixels: int) -> Problem | None:
    if not f.is_file():
        return _missing_problem(f, where)
    try:
        with Image.open(f) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        return Problem(where, f"cannot be read as an image ({type(e).__name__}: {e})",
                       "replace the file, or use --skip-unreadable to leave it out")
    if w * h > max_pixels:
        return Problem(where, f"image is {w}×{h} = {w * h / 1e6:.0f} megapixels, over the limit of {max_pixels / 1e6:.0f}",
                       "downscale it, or raise --max-pixels if the machine has the memory")
    return None


class ImageCheck:
    """Whether every image of a data set opens and is not too large: each file's header read
    (:func:`load` with ``check_images="open"`` does the same inline), here in a background
    thread, because a million files take a minute or more, too long to wait for when a data
    set is opened.

    :meth:`start` runs it in the background (:meth:`run` in the calling thread); ``done`` of
    ``total`` files were looked at so far; :attr:`problems` lists what was found, in row
    order, each with file, row and fix; ``finished`` once every file was looked at. Nothing
    is written anywhere.
    """

    def __init__(self, ds: LabeledImages, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.ds, self.max_pixels = ds, max_pixels
        self.total = 0 if ds.kind == "npz" else len(ds)
        self.done = 0
        self.started = self.finished = False
        self.seconds = 0.0
        self._found: list[tuple[int, Problem]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def problems(self) -> list[Problem]:
        with self._lock:
            return [p for _, p in sorted(self._found, key=lambda t: t[0])]

    def run(self) -> "ImageCheck":
        """Look at every file now (in this thread); returns self."""
        with self._lock:
            if self.started:
                raise RuntimeError("this image check was already started")
            self.started = True
        self._work()
        return self

    def start(self) -> "ImageCheck":
        """Look at every file in a background thread (once; later calls do nothing); returns self."""
        with self._lock:
            if self.started:
                return self
            self.started = True
        self._thread = threading.Thread(target=self._work, name="sei-image-check", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop a background check early (it stays unfinished)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _work(self) -> None:
        t0 = time.perf_counter()
        for i in range(self.total):
            if self._stop.is_set():
                return
            p = _image_problem(self.ds.file_of(i), self.ds.where(i), self.max_pixels)
            with self._lock:
                if p is not None:
                    self._found.append((i, p))
                self.done = i + 1
                self.seconds = time.perf_counter() - t0
        self.finished = True


def _drop_or_fail(ds: LabeledImages, problems: list[Problem], skip: bool,
                  index: Sequence[int] | None = None) -> LabeledImages:
    """Either fail with the image problems, or drop those samples (``index``: their
    positions, else found by each problem's ``where``) and keep warnings."""
    if not problems:
        return ds
    if not skip:
        raise DataError(problems, f"{ds.source} has unreadable images")
    if index is None:
        bad = {p.where for p in problems}
        index = [i for i in range(len(ds)) if ds.where(i) in bad]
    drop = np.zeros(len(ds), dtype=bool)
    drop[np.asarray(index, dtype=np.int64)] = True
    keep = np.flatnonzero(~drop)
    ds.ids = [ds.ids[i] for i in keep]
    ds.labels = ds.labels[keep]
    if ds.rows is not None:
        ds.rows = ds.rows[keep]
    ds.problems += [Problem(p.where, p.message + " — skipped", p.fix, "warning") for p in problems]
    return _check_classes(ds, ds.classes)


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
        with _exclusive(cache.with_name(cache.stem + ".lock")):  # one decoder per cache file
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
        problems = [Problem(**p) for p in json.loads(meta.read_text())["problems"]] if meta.is_file() else []
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if arr.shape != (n, 3, size, size) or arr.dtype != np.uint8:
        return None
    return arr, problems


@contextlib.contextmanager
def _exclusive(lock_file: Path):
    """Hold an exclusive ``flock`` on ``lock_file`` (waiting for another holder) while inside."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
    problems = [Problem(p["where"], p["message"], p["fix"], p["severity"])
                for p in sorted(state["problems"], key=lambda p: p["i"])]
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
    return {"where": p.where, "message": p.message, "fix": p.fix, "severity": p.severity}


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
                                        "replace the file, or use --skip-unreadable to leave it out")))
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


def drop_undecodable(ds: LabeledImages, problems: Sequence[Problem]) -> tuple[LabeledImages, np.ndarray | None]:
    """The samples of ``ds`` that decoded, and their rows in the decoded-image cache.

    ``problems`` are what :func:`decode_images` returned with ``skip_unreadable``; with none,
    ``ds`` comes back unchanged and the rows are None (every cache row, in order).
    """
    if not problems:
        return ds, None
    bad = {p.where for p in problems}
    keep = [i for i in range(len(ds)) if ds.where(i) not in bad]
    return subset(ds, keep), np.asarray(keep, dtype=np.int64)


def subset(ds: LabeledImages, keep: Iterable[int]) -> LabeledImages:
    """A copy of ``ds`` restricted to the samples ``keep`` (class list unchanged)."""
    keep = list(keep)
    return LabeledImages(
        kind=ds.kind, source=ds.source, root=ds.root, ids=[ds.ids[i] for i in keep],
        labels=ds.labels[keep], classes=list(ds.classes), problems=list(ds.problems),
        warnings=list(ds.warnings),
        rows=None if ds.rows is None else ds.rows[keep],
        array=None if ds.array is None else ds.array[keep],
        path_column=ds.path_column, label_column=ds.label_column,
    )
