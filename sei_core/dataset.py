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
import json
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from . import access
from .errors import SKIP_UNREADABLE, Fix, SeiError
from .images import read_rgb, rgb_from_array
from .labels import IMAGE_EXTENSIONS, LABEL_COL, PATH_COL, TableError, in_words, read_table, source_kind

#: Images larger than this many pixels are refused: decoding them could exhaust memory.
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_TEMPLATE = "A photo showing {}."
DEFAULT_AUX_PROMPT = "A photo showing something else."
PROMPTS_FILE = "prompts.json"
#: Display names of the diagnosis codes of the ISIC / HAM10000 archive (offered on the Data page).
ISIC_NAMES = {
    "nv": "melanocytic nevus", "mel": "melanoma", "bkl": "benign keratosis", "bcc": "basal cell carcinoma",
    "akiec": "actinic keratosis / intraepithelial carcinoma", "vasc": "vascular lesion", "df": "dermatofibroma",
}


def known_names(classes: Sequence[str]) -> dict[str, str]:
    """Display names known for these class codes (the ISIC diagnosis codes, matched without
    regard to case) when at least half of the classes are such codes; else ``{}``."""
    hits = {c: ISIC_NAMES[c.strip().lower()] for c in classes if c.strip().lower() in ISIC_NAMES}
    return hits if classes and 2 * len(hits) >= len(classes) else {}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where it is, what is wrong, and how to fix it (a
    :class:`~sei_core.errors.Fix`; a string is the same for the command line and the app)."""

    where: str
    message: str
    fix: Fix = Fix()
    severity: str = "error"  # "error" stops loading; "warning" is reported and skipped

    def __post_init__(self) -> None:
        object.__setattr__(self, "fix", Fix.of(self.fix))

    def said(self, app: bool = False) -> str:
        """The problem in one line, its fix in the command line's words or (``app``) the app's."""
        fix = self.fix.said(app)
        return f"{self.where}: {self.message}." + (f" Fix: {fix}" if fix else "")

    def __str__(self) -> str:
        return self.said()


class DataError(SeiError):
    """The data cannot be used as it is; ``problems`` lists every reason with its fix."""

    def __init__(self, problems: Sequence[Problem], header: str = "The data has problems"):
        self.problems = list(problems)
        super().__init__(header)

    def said(self, app: bool = False) -> str:
        shown = self.problems[:25]
        lines = [f"{self.reason} ({len(self.problems)}):"] + [f"  - {p.said(app)}" for p in shown]
        if len(self.problems) > len(shown):
            lines.append(f"  … and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class Prompts:
    """Text prompts of a data set: one template (or explicit prompt) per class and the
    auxiliary prompt used for the extra, meaningless class of the threshold samples; and the
    display name of each class code (``nv`` → ``melanocytic nevus``), which the prompts, the
    app and exports use while the label file keeps its codes. Kept in ``prompts.json``
    beside the data (``template``, ``aux_prompt``, ``per_class``, ``names``)."""

    template: str = DEFAULT_TEMPLATE
    aux_prompt: str = DEFAULT_AUX_PROMPT
    per_class: dict[str, str] = field(default_factory=dict)
    #: class code -> display name (a code without one is shown as it is)
    names: dict[str, str] = field(default_factory=dict)

    def name(self, c: str) -> str:
        """The display name of class ``c`` (the code itself without one)."""
        return self.names.get(c) or c

    def for_classes(self, classes: Sequence[str]) -> list[str]:
        """One prompt per class, in class order (the template filled with the class's display
        name), followed by the auxiliary prompt."""
        if "{}" not in self.template:
            raise ValueError(f"prompt template {self.template!r} needs a '{{}}' for the class name")
        return [self.per_class.get(c, self.template.format(self.name(c))) for c in classes] + [self.aux_prompt]

    def to_dict(self) -> dict:
        out = {"template": self.template, "aux_prompt": self.aux_prompt, "per_class": dict(self.per_class)}
        if self.names:
            out["names"] = dict(self.names)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Prompts":
        return cls(
            template=d.get("template", DEFAULT_TEMPLATE),
            aux_prompt=d.get("aux_prompt", DEFAULT_AUX_PROMPT),
            per_class=dict(d.get("per_class", {})),
            names={str(k): str(v) for k, v in dict(d.get("names", {})).items() if str(v).strip()},
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
    #: the folders searched for the images (absolute, in order); empty: the label file's folder
    image_dirs: list[str] = field(default_factory=list)
    #: the extension added to a path cell without one (None: the rule of :func:`extensions_tried`)
    image_ext: str | None = None
    #: the image file of each sample where not ``root / id`` (found in an image folder or with an
    #: added extension); None: every file is ``root / id`` (see :func:`find_images`)
    files: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def file_of(self, i: int) -> Path | None:
        """The image file of sample ``i`` (None for in-memory .npz images)."""
        if self.kind == "npz":
            return None
        if self.files is not None:
            return Path(self.files[i])
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


#: Extensions tried, in this order, after a path cell as given, when the cell names no image
#: file by itself (an id such as ``ISIC_0027419``): see :func:`extensions_tried`.
TRY_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif",
                  ".JPG", ".JPEG", ".PNG", ".TIF", ".TIFF")
#: Rows with a missing image listed one by one in a report; the rest are counted in one line.
MAX_LISTED = 20


def extensions_tried(image_ext: str | None = None) -> list[str]:
    """What is appended to a path cell that has no image extension, in the order tried: the
    cell as given (``""``), then ``image_ext`` if one is given (``.jpg`` or ``jpg``), else
    every one of :data:`TRY_EXTENSIONS`. A cell that ends in an image extension is tried
    only as given."""
    ext = (image_ext or "").strip()
    if ext:
        return ["", ext if ext.startswith(".") else "." + ext]
    return ["", *TRY_EXTENSIONS]


@dataclass
class Validation:
    """What :func:`check` found: the one report ``sei validate``, the Data page and ``sei train``
    give for a data set.

    ``problems`` are exactly what training refuses with these settings (every one at once);
    ``warnings`` what it reports and trains anyway (with ``skip_unreadable``, the images it
    leaves out). ``data`` is the data set of the usable rows (None when the file or folder
    cannot be read at all); its ``problems`` are the images left out of it.
    ``missing`` is the number of rows whose image file was not found.
    """

    source: Path
    data: LabeledImages | None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    missing: int = 0
    #: folders beside the label file that hold images of the missing rows (:func:`_guess_image_dirs`)
    suggested_dirs: list[str] = field(default_factory=list)
    #: the problems that remain with ``skip_unreadable`` (bad rows; classes left without images)
    unskippable: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_problems(self) -> LabeledImages:
        """The data set, or :class:`DataError` with every problem."""
        if self.problems:
            raise DataError(self.problems, f"{self.source} has problems")
        return self.data


def load(source: str | Path, **options) -> LabeledImages:
    """Read and validate a label file, image folder or MedMNIST ``.npz``: :func:`check`, then
    the data set, or :class:`DataError` listing every problem it found (with file, row and fix).
    The options are :func:`check`'s."""
    return check(source, **options).raise_problems()


def check(
    source: str | Path,
    *,
    classes: Sequence[str] | None = None,
    split: str = "train",
    skip_unreadable: bool = False,
    check_images: bool | str = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    path_column: str = PATH_COL,
    label_column: str = LABEL_COL,
    image_dirs: Sequence[str | Path] = (),
    image_ext: str | None = None,
) -> Validation:
    """Every problem of a label file, image folder or MedMNIST ``.npz``, in one report.

    Parameters
    ----------
    source : the CSV file, the folder with one sub-folder per class, a folder holding one label
        file (and its image folders: that label file is read), or the ``.npz`` file.
    classes : the expected class list (e.g. from an earlier run); a label outside it is an
        error and a class without rows too. Default: the sorted labels found.
    split : which split of an ``.npz`` to read (``train``, ``val``, ``test``).
    skip_unreadable : leave out missing/unreadable images (reported as warnings) instead of
        refusing them; a class left without images is then a problem, saying why.
    check_images : ``True`` or ``"open"``: find missing files, then open each image's header
        to find corrupt or huge ones; ``"exists"``: only find missing files, from one directory
        listing per folder (a million files in a second or two; whether each one opens is then
        left to :class:`ImageCheck` or to decoding, which reports and leaves out what does not);
        ``False``: no check of the files.
    max_pixels : refuse images with more pixels than this.
    path_column, label_column : the label file's columns of image path and label (see
        :func:`sei_core.labels.read_table`); only for a label file.
    image_dirs : folders the images are in (searched in order) when the path cells are
        relative to them rather than to the label file's folder; only for a label file.
    image_ext : the extension of path cells that name an image without it (``ISIC_0027419``);
        None tries :func:`extensions_tried`'s list. Only for a label file.

    A row whose image is not found is reported as missing with the paths tried (the first
    :data:`MAX_LISTED` rows one by one, then their count), never as a class without images.
    """
    src = Path(source).expanduser()
    roots = access.allowed_roots()
    if roots is not None:
        access.check(src, "the data", roots)  # before anything is read, not even whether it exists
    kind = source_kind(src)
    if kind == "folder" and (table := table_in_folder(src)) is not None:
        src, kind = table, "csv"
    fail = lambda problems: Validation(src, None, list(problems))  # noqa: E731
    if kind == "missing":
        return fail([Problem(str(src), "does not exist", "check the path; it may be relative to the folder you started from")])
    if kind != "csv" and (path_column, label_column) != (PATH_COL, LABEL_COL):
        return fail([Problem(str(src), f"is {'an image folder' if kind == 'folder' else 'a MedMNIST .npz file'}, "
                                       f"not a label file, so it has no columns '{path_column}' and '{label_column}'",
                             "choose columns only for a CSV label file (leave them at 'path' and 'label')")])
    if kind != "csv" and (list(image_dirs) or image_ext):
        return fail([Problem(str(src), "image folders and an image extension apply to a label file only",
                             "leave them empty for an image folder or a .npz file")])
    mode = {True: "open", False: "none"}.get(check_images, check_images)
    if mode not in ("open", "exists", "none"):
        raise ValueError(f"check_images must be True, False, 'open' or 'exists', not {check_images!r}")
    try:
        if kind == "folder":
            ds, errors = _read_folder(src), []
        elif kind == "npz":
            ds, errors = _read_npz(src, split), []
        else:
            ds, errors = _read_csv(src, path_column, label_column)
    except DataError as e:
        return fail(e.problems)
    if kind == "csv":
        dirs, bad_dirs = _image_folders(src, image_dirs)
        if bad_dirs:
            return fail(bad_dirs)
        for d in dirs if roots is not None else ():
            access.check(d, "an image folder", roots)
        ds.image_dirs, ds.image_ext = dirs, (image_ext or None)
    if roots is not None and ds.kind != "npz" and len(ds):
        out = np.flatnonzero(access.outside(full_paths(ds), roots))
        if len(out):  # refused before any of the data set's files is looked at
            where = ", ".join(map(str, roots))
            return fail(errors + [Problem(ds.where(int(i)), f"the image lies outside the folders this app may "
                                                            f"open ({where})",
                                          "use a path inside the data's folder (no '..', no absolute path "
                                          "or link leading elsewhere), or move the image there")
                                  for i in out])
    # Every problem at once: rows, then image files of the rows that could be read; the class
    # checks only when the rows are sound (a class may look empty because its rows were bad).
    bad: list[tuple[int, Problem]] = []  # (sample, problem) of images that cannot be used
    n_missing, guess = 0, _Guess()
    if mode != "none" and ds.kind != "npz":
        missing = resolve_files(ds)
        n_missing = int(missing.sum())
        guess = _guess_image_dirs(ds, missing) if n_missing else _Guess()
        bad += _missing_problems(ds, missing, guess)
        if mode == "open":
            bad += [(i, p) for i in np.flatnonzero(~missing)
                    if (p := _image_problem(ds.file_of(int(i)), ds.where(int(i)), max_pixels))]
    leave_out = skip_unreadable and not errors
    class_problems = [] if errors else _class_problems(ds, classes)
    images = [p for _, p in sorted(bad, key=lambda t: t[0])]
    bad_rows = np.unique(np.asarray([i for i, _ in bad], dtype=np.int64))
    if n_missing > MAX_LISTED:  # the rows not listed one by one are left out too
        bad_rows = np.union1d(bad_rows, np.flatnonzero(missing))
    usable = _without(ds, bad_rows, [Problem(p.where, p.message + " — left out", p.fix, "warning")
                                    for p in images])
    emptied = _emptied_classes(ds, usable) if not errors and not class_problems and len(bad_rows) else []
    # what leaving the unreadable images out does not cure: bad rows (and then the images too,
    # as before), or the classes (a class left without images)
    unskippable = errors + images if errors else class_problems + emptied
    problems = unskippable if leave_out or errors else images + class_problems
    warnings = list(usable.warnings) + (list(usable.problems) if leave_out else [])
    return Validation(src, usable, problems, warnings, n_missing, guess.folders, unskippable)


def table_in_folder(folder: Path) -> Path | None:
    """The label file a folder holds when it holds exactly one (``*.csv``, ``*.tsv``; not a
    ``truth.csv`` or a review backup), and no class sub-folders of images: a folder with a
    metadata table and its image folders (the HAM10000 archive) opens as that table."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    tables = [Path(e.path) for e in entries if e.is_file() and not e.name.startswith(".")
              and e.name.lower().endswith((".csv", ".tsv"))
              and not e.name.lower().endswith(("truth.csv", ".clean.csv")) and ".sei-backup" not in e.name]
    return tables[0] if len(tables) == 1 else None


def _image_folders(src: Path, image_dirs: Sequence[str | Path]) -> tuple[list[str], list[Problem]]:
    """The image folders as absolute paths (relative ones start at the label file's folder),
    and a problem for each that is not a folder."""
    out, problems = [], []
    for d in image_dirs:
        d = str(d).strip()
        if not d:
            continue
        p = Path(d).expanduser()
        p = p if p.is_absolute() else src.parent / p
        if not p.is_dir():
            problems.append(Problem(str(p), "is not a folder (given as an image folder)",
                                    "give a folder that holds the images, or remove it from the image folders"))
        elif str(p.absolute()) not in out:
            out.append(str(p.absolute()))
    return out, problems


def _class_problems(ds: LabeledImages, classes: Sequence[str] | None) -> list[Problem]:
    try:
        _check_classes(ds, classes)
    except DataError as e:
        return e.problems
    return []


def _without(ds: LabeledImages, drop: np.ndarray, left_out: list[Problem]) -> LabeledImages:
    """``ds`` without the samples ``drop`` (its ``problems``: ``left_out``)."""
    if not len(drop):
        ds.problems = list(ds.problems) + left_out
        return ds
    keep = np.setdiff1d(np.arange(len(ds)), drop, assume_unique=True)
    out = subset(ds, keep)
    out.problems = list(ds.problems) + left_out
    return out


def _emptied_classes(full: LabeledImages, usable: LabeledImages) -> list[Problem]:
    """Classes that have rows but no usable image, once the unusable ones are left out: said
    as what they are (never "has no images")."""
    had = np.bincount(full.labels, minlength=len(full.classes))
    has = np.bincount(usable.labels, minlength=len(full.classes))
    out = []
    for k in np.flatnonzero((had > 0) & (has == 0)).tolist():
        had_k = int(had[k])
        out.append(Problem(full.source.name, f"every image of class {full.classes[k]!r} ({had_k} row"
                                             f"{'s' * (had_k != 1)}) is missing or unreadable, so leaving "
                                             "them out leaves the class without images",
                           "fix the paths of its images (the rows left out are listed), or delete its rows"))
    if (has > 0).sum() < 2 and (had > 0).sum() >= 2:
        out.append(Problem(full.source.name, f"{'no' if not (has > 0).any() else 'only one'} class keeps images "
                                             "once the missing and unreadable ones are left out",
                           "fix the paths of the images left out (they are listed)"))
    return out


def resolve_files(ds: LabeledImages) -> np.ndarray:
    """Find the image file of every sample of a label file: the path cell relative to the label
    file's folder (or absolute) or, with ``ds.image_dirs``, to each image folder in turn, as
    given and then with each extension of :func:`extensions_tried` (``ds.image_ext``). Sets
    ``ds.files`` where a file is found elsewhere than ``root / id``; returns ``(N,)`` True
    where no file was found. One directory listing per folder (see :func:`find_images`)."""
    if ds.kind != "csv":
        return missing_files(ds)
    files, found = find_images(ds.root, ds.ids, ds.image_dirs, ds.image_ext)
    ds.files = files
    return ~found


def candidates(root: Path, image_id: str, image_dirs: Sequence[str] = (), image_ext: str | None = None) -> list[str]:
    """The paths tried for one path cell, in the order :func:`find_images` tries them."""
    bases = [str(d) for d in image_dirs] or [str(root.absolute())]
    exts = [""] if Path(image_id).suffix.lower() in IMAGE_EXTENSIONS else extensions_tried(image_ext)
    if os.path.isabs(image_id):
        return [image_id + e for e in exts]
    return [os.path.join(b, image_id) + e for e in exts for b in bases]


def find_images(root: Path, ids: Sequence[str], image_dirs: Sequence[str] = (),
                image_ext: str | None = None) -> tuple[list[str] | None, np.ndarray]:
    """The image file of every path cell, and ``(N,)`` True where one was found.

    Tried in the order of :func:`candidates`: for each extension (the cell as given first),
    each folder (``image_dirs``, else ``root``). Each folder is listed once (``os.listdir``),
    and the names are looked up in the listing column-wise, so a million rows in two image
    folders take a few listings and a few vectorised look-ups; only names not found in a
    folder that could not be listed are ``stat``'ed, and the cell as given once more (a
    case-insensitive file system). Returns the files as absolute paths where any differs
    from ``root / cell`` (else None) and the found mask.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(ids)
    found = np.zeros(n, dtype=bool)
    if n == 0:
        return None, found
    root_s = str(Path(root).absolute()).rstrip("/")
    cells = pa.array(list(ids), type=pa.string())
    absolute = pc.starts_with(cells, "/").to_numpy(zero_copy_only=False)
    lower = pc.utf8_lower(cells)
    has_ext = np.zeros(n, dtype=bool)
    for e in IMAGE_EXTENSIONS:
        has_ext |= pc.ends_with(lower, e).to_numpy(zero_copy_only=False)
    has_ext &= ~pc.match_substring_regex(cells, r"/\.[^/]*$|^\.[^/]*$").to_numpy(zero_copy_only=False)
    bases = [str(d).rstrip("/") for d in image_dirs] or [root_s]
    listings: dict[str, pa.Array | None] = {}
    unlisted = np.zeros(n, dtype=bool)
    resolved = np.full(n, None, dtype=object)
    elsewhere = False

    def listing(folder: str):
        if folder not in listings:
            try:
                listings[folder] = pa.array(os.listdir(folder or "/"), type=pa.string())
            except OSError:
                listings[folder] = None
        return listings[folder]

    for e in extensions_tried(image_ext):
        for b, base in enumerate(bases):
            todo = np.flatnonzero(~found & ~(has_ext & (e != "")) & ~(absolute & (b > 0)))
            if not len(todo):
                continue
            sub = cells.take(pa.array(todo))
            full = pc.if_else(pc.starts_with(sub, "/"), sub, pc.binary_join_element_wise(base + "/", sub, ""))
            if e:
                full = pc.binary_join_element_wise(full, e, "")
            parts = pc.split_pattern(full, "/", max_splits=1, reverse=True)
            folder, name = pc.list_element(parts, 0), pc.list_element(parts, 1)
            codes, folders = pd.factorize(pd.Series(folder, dtype="string[pyarrow]"))
            hit = np.zeros(len(todo), dtype=bool)
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(folders) + 1))
            for f, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
                rows = order[lo:hi]
                listed = listing(str(folders[f]))
                if listed is None:
                    unlisted[todo[rows]] = True
                    continue
                hit[rows] = pc.is_in(name.take(pa.array(rows)), value_set=listed).to_numpy(zero_copy_only=False)
            if hit.any():
                found[todo[hit]] = True
                resolved[todo[hit]] = full.filter(pa.array(hit)).to_numpy(zero_copy_only=False)
                elsewhere = elsewhere or bool(e) or base != root_s
    # confirm by stat: the cell as given (case-insensitive file systems), and every candidate
    # of a cell whose folder could not be listed
    for i in np.flatnonzero(~found):
        tries = candidates(Path(root_s), ids[i], bases if image_dirs else ()) if unlisted[i] else \
            [ids[i] if absolute[i] else os.path.join(bases[0], ids[i])]
        if not unlisted[i]:
            tries = tries[:1]
        for t in tries:
            if os.path.isfile(t):
                found[i], resolved[i] = True, t
                elsewhere = elsewhere or t != os.path.join(root_s, ids[i])
                break
    if not elsewhere:
        return None, found
    default = [i if absolute[k] else root_s + "/" + i for k, i in enumerate(ids)]
    return [str(r) if r is not None else default[k] for k, r in enumerate(resolved)], found


@dataclass
class _Guess:
    """The folders beside a label file that hold images of rows not found (``folders``), and
    which of them hold which: ``held[k, f]`` is True where the image of row ``rows[k]`` (the
    first missing rows, those looked at) is in ``folders[f]``."""

    folders: list[str] = field(default_factory=list)
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    held: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))

    def of(self, i: int) -> list[str]:
        """The folders that hold the image of row ``i`` (none for a row not looked at)."""
        k = int(np.searchsorted(self.rows, i))
        if k == len(self.rows) or self.rows[k] != i:
            return []
        return [f for f, h in zip(self.folders, self.held[k]) if h]

    def count(self, ds: LabeledImages, missing: np.ndarray) -> int:
        """How many of the ``missing`` rows (all of them, not only those looked at) have their
        image in one of the folders: one listing per folder."""
        rows = np.flatnonzero(missing)
        if not self.folders:
            return 0
        if len(rows) == len(self.rows):
            return int(self.held.any(axis=1).sum())
        return int(find_images(ds.root, [ds.ids[i] for i in rows], self.folders, ds.image_ext)[1].sum())


def _guess_image_dirs(ds: LabeledImages, missing: np.ndarray, sample: int = 200) -> _Guess:
    """Folders beside a label file (its own folder and its sub-folders, one level down, other
    than the image folders already chosen) that hold the images of rows whose image was not
    found (``missing``, ``(N,)``): the image folders a user probably means, in name order, and
    which of them hold which of the rows looked at (up to ``sample``, at least the
    :data:`MAX_LISTED` rows a report lists); one listing per folder."""
    if ds.kind != "csv" or not len(ds):
        return _Guess()
    rows = np.flatnonzero(missing)[:max(sample, MAX_LISTED)]
    ids = [ds.ids[i] for i in rows]
    if not ids:
        return _Guess()
    try:
        subs = sorted(e.path for e in os.scandir(ds.root) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return _Guess()
    folders, held = [], []
    for folder in [str(ds.root.absolute()), *(str(Path(f).absolute()) for f in subs)]:
        if folder in ds.image_dirs:
            continue
        found = find_images(ds.root, ids, [folder], ds.image_ext)[1]
        if found.any():
            folders.append(folder)
            held.append(found)
    return _Guess(folders, rows, np.stack(held, axis=1) if held else np.zeros((len(rows), 0), dtype=bool))


def _missing_problems(ds: LabeledImages, missing: np.ndarray, guess: _Guess) -> list[tuple[int, Problem]]:
    """The first :data:`MAX_LISTED` rows whose image was not found, each with the paths tried
    and the folders beside the label file that hold its image (``guess``), and one line with
    the count of all of them when there are more."""
    rows = np.flatnonzero(missing)
    if not len(rows):
        return []
    out = []
    for i in rows[:MAX_LISTED]:
        i = int(i)
        tried = candidates(ds.root, ds.ids[i], ds.image_dirs, ds.image_ext) if ds.kind == "csv" \
            else [str(ds.file_of(i))]
        if len(tried) == 1:
            msg = f"image file {tried[0]!r} does not exist"
        else:
            shown = ", ".join(repr(t) for t in tried[:3])
            msg = (f"no image file found for {ds.ids[i]!r}: tried {len(tried)} paths ({shown}, … {tried[-1]!r})")
        out.append((i, Problem(ds.where(i), msg, _missing_fix(ds, guess.of(i), "this image seems"))))
    if len(rows) > MAX_LISTED:
        held = guess.count(ds, missing)
        if held == len(rows):
            fix = _missing_fix(ds, guess.folders, "the images seem")
        elif held:
            fix = _missing_fix(ds, guess.folders, f"{held:,} of them seem", others=len(rows) - held)
        else:
            fix = _missing_fix(ds, [])
        out.append((int(rows[MAX_LISTED]), Problem(
            ds.source.name, f"{len(rows):,} rows in all name an image that was not found "
                            f"({len(rows) - MAX_LISTED:,} more besides the {MAX_LISTED} listed)", fix)))
    return out


#: How to fix a missing image when no folder beside the label file is known to hold it.
_MISSING_FIX = Fix("correct the path (relative paths start at the label file's folder), or choose the folders that "
                   "hold the images (“Image folders” on the Data page, --image-dir) and their extension (--image-ext)",
                   "correct the path (relative paths start at the label file's folder), or choose the folders that "
                   "hold the images and their extension under “Image folders” on the Data page")


def _missing_fix(ds: LabeledImages, folders: list[str], which: str = "the images seem", others: int = 0) -> Fix:
    """How to fix missing images: choose the image ``folders`` beside the label file that hold
    them (``which`` of them: "this image seems", "the images seem", "25 of them seem"), and
    for the ``others`` rows not in them the general fix; with no folders, the general fix."""
    if folders:
        names = in_words([os.path.relpath(g, ds.root) for g in folders])
        many = len(folders) > 1
        chosen = f"{which} to be in {names} beside the label file: choose {'them' if many else 'it'} "
        fix = Fix(f"{chosen}as {'image folders' if many else 'the image folder'} on the Data page, or pass "
                  f"{'--image-dir for each' if many else '--image-dir'}",
                  f"{chosen}under “Image folders” on the Data page")
        if others:
            fix = fix + f"; for the other {others:,}, " + _MISSING_FIX
    else:
        fix = _MISSING_FIX
    return fix + "; or " + SKIP_UNREADABLE


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
                   "correct the path (relative paths start at the label file's folder), or " + SKIP_UNREADABLE)


def _image_problem(f: Path, where: str, max_pixels: int) -> Problem | None:
    if not f.is_file():
        return _missing_problem(f, where)
    try:
        with Image.open(f) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        return Problem(where, f"cannot be read as an image ({type(e).__name__}: {e})",
                       "replace the file, or " + SKIP_UNREADABLE)
    if w * h > max_pixels:
        return Problem(where, f"image is {w}×{h} = {w * h / 1e6:.0f} megapixels, over the limit of {max_pixels / 1e6:.0f}",
                       Fix("downscale it, or raise --max-pixels if the machine has the memory",
                           "downscale it (the pixel limit can be raised on the command line only), or "
                           + SKIP_UNREADABLE.app))
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
        image_dirs=list(ds.image_dirs), image_ext=ds.image_ext,
        files=None if ds.files is None else [ds.files[i] for i in keep],
    )


def apply_training_table(data: LabeledImages, table_file: str | Path,
                         classes: list[str] | None = None) -> LabeledImages:
    """``data`` restricted to the rows of a training table (``path,label``, as
    :func:`sei_core.retrain.prepare_retrain` writes it), with the table's labels.

    ``classes`` is the run's class list once known (a resume); first time, the data's classes
    (those of every row, discarded ones included, so the retrained model has the parent's
    outputs). Raises :class:`~sei_core.dataset.DataError` naming every image of the table the
    data no longer has and every label outside the classes.
    """
    f = Path(table_file)
    if not f.is_file():
        raise DataError([Problem(str(f), "does not exist (the training table of a retrained run)",
                                 "start the retrain again from the reviewed run")])
    t = pd.read_csv(f, dtype=str, keep_default_na=False)
    pos = pd.Index(data.ids).get_indexer(t["path"].to_numpy(dtype=object))
    classes = list(classes) if classes else list(data.classes)
    index = {c: i for i, c in enumerate(classes)}
    codes = t["label"].map(index)
    problems = [Problem(f"{f.name} line {i + 2}", f"image {t['path'][i]!r} is no longer in {data.source}",
                        "restore the image's row, or start a new retrain from the current review")
                for i in np.flatnonzero(pos < 0)[:20]]
    problems += [Problem(f"{f.name} line {i + 2}", f"label {t['label'][i]!r} is not a class of the run "
                         f"({', '.join(classes)})", "relabel the image to one of the classes")
                 for i in np.flatnonzero(codes.isna().to_numpy())[:20]]
    if problems:
        raise DataError(problems, f"{f} does not match {data.source}")
    sub = subset(data, pos)
    return replace(sub, labels=codes.to_numpy(dtype=np.int64), classes=classes)
