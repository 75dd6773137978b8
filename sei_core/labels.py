"""Label tables: the one reader and writer of label CSV files, and what kind of source a path is.

Training, review and benchmarking all read a user's label file through :func:`read_table`,
so a file that trains can be reviewed: the delimiter (``,`` ``;`` or tab) is found from the
header, header cells may carry surrounding spaces (``path, label``), a UTF-8 byte-order mark
and Windows line ends are understood. Every cell is kept as the exact text of the file;
:meth:`LabelTable.paths` and :meth:`LabelTable.labels` give the stripped values of the path
and label columns that identify a sample and its class.

Which columns those are is the user's choice: ``path`` and ``label`` by default, any other
two (``image_id`` and ``diagnosis``) with ``path_column``/``label_column``. The mapping is
part of a data set's identity (recorded in a run's config, used by review to write back);
the user's columns are never renamed. :func:`suggest_columns` guesses a mapping for a file
that has no ``path``/``label`` columns.

:func:`render_table` writes a table back *in the file's own dialect* (delimiter, quote
character, quote-all or minimal quoting, line ends, BOM, the header cells as they were
spelled), keeping every column, so a reviewed file differs from the original only in the
cells that changed and the review columns added.
"""

from __future__ import annotations

import codecs
import csv
import io
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .errors import Fix, SeiError

__all__ = [
    "PATH_COL", "LABEL_COL", "Dialect", "LabelTable", "TableError", "read_table", "render_table",
    "source_kind", "read_truth", "truth_columns", "truth_for", "TRUTHY", "suggest_columns", "column_choices", "in_words",
    "COLUMN_FIX",
]

#: The file endings of the images training reads (a path column's cells end in one).
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
#: The default names of the path and label columns.
PATH_COL = "path"
LABEL_COL = "label"
#: Where a user chooses other columns (said by every "no such column" message).
COLUMN_FIX = Fix("pick the path and label columns on the Data page, or pass --path-column and --label-column",
                 "pick the path and label columns on the Data page")
DELIMITERS = (",", ";", "\t")
#: Cell values :func:`read_truth` takes as "this label is wrong".
TRUTHY = frozenset({"1", "true", "yes", "y", "t"})


class TableError(SeiError, ValueError):
    """A label table cannot be read. ``where`` is ``"<file> line <n>"`` (or the file), ``fix``
    says what to do (a :class:`~sei_core.errors.Fix`); ``problems`` lists every ``(where,
    message, fix)`` found when there are several (rows with the wrong number of cells)."""

    def __init__(self, where: str, message: str, fix: Fix | str = "",
                 problems: list[tuple[str, str, Fix | str]] | None = None) -> None:
        self.where, self.message = where, message
        self.problems = problems or [(where, message, fix)]
        super().__init__(f"{where}: {message}", fix)

    def said(self, app: bool = False) -> str:
        fix = self.fix.said(app)
        return f"{self.reason}." + (f" Fix: {fix}" if fix else "")


@dataclass(frozen=True)
class Dialect:
    """How a label file is spelled, so it can be written back alike."""

    delimiter: str = ","
    quotechar: str = '"'
    quote_all: bool = False
    newline: str = "\n"
    bom: bool = False


@dataclass
class LabelTable:
    """A label file as read: every cell as text, columns named by their stripped header cells.

    ``header`` keeps the header cells exactly as spelled (written back unchanged); ``lines``
    is the record number of each row as the data set's messages count it (header = line 1).
    ``path_column``/``label_column`` name the columns that hold each row's image path and
    label (stripped header names).
    """

    frame: pd.DataFrame
    dialect: Dialect
    header: list[str]
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: ``(where, message, fix)`` of rows left out (wrong number of cells), with ``strict=False``.
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    path_column: str = PATH_COL
    label_column: str = LABEL_COL

    def paths(self) -> pd.Series:
        """The path cell of every row, surrounding spaces removed."""
        return self.frame[self.path_column].str.strip()

    def labels(self) -> pd.Series:
        """The label cell of every row, surrounding spaces removed."""
        return self.frame[self.label_column].str.strip()


def in_words(names, conjunction: str = "and") -> str:
    """Column names for a sentence: ``'a'``, ``'a' and 'b'``, ``'a', 'b' and 'c'``."""
    quoted = [f"'{n}'" for n in names]
    if len(quoted) <= 1:
        return "".join(quoted) or "none"
    return ", ".join(quoted[:-1]) + f" {conjunction} " + quoted[-1]


def _decode(raw: bytes, name: str) -> tuple[str, bool]:
    bom = raw.startswith(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8-sig"), bom
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise TableError(
            f"{name} line {line}",
            f"is not valid UTF-8 (byte 0x{raw[e.start]:02x} at position {e.start})",
            "save the file as UTF-8 (in Excel: 'CSV UTF-8'; or `iconv -f latin1 -t utf-8`)",
        ) from None


def _sniff(text: str, name: str, wanted: tuple[str, ...]) -> Dialect:
    """Pick the delimiter whose header holds the ``wanted`` columns; else the sniffed one."""
    first = text.split("\n", 1)[0].rstrip("\r")
    quotechar = '"'
    try:
        sniffed = csv.Sniffer().sniff(text[:4096], delimiters="".join(DELIMITERS))
        order = [sniffed.delimiter, *DELIMITERS]
        if sniffed.quotechar in ('"', "'"):
            quotechar = sniffed.quotechar
    except csv.Error:
        order = list(DELIMITERS)
    chosen = None
    for delim in dict.fromkeys(order):
        cells = [c.strip() for c in next(csv.reader([first], delimiter=delim, quotechar=quotechar), [])]
        if len(cells) > 1 and all(c in cells for c in wanted):
            chosen = delim
            break
    if chosen is None:
        chosen = order[0]
    cells = next(csv.reader([first], delimiter=chosen, quotechar=quotechar), [])
    quote_all = bool(cells) and first == chosen.join(
        quotechar + c.replace(quotechar, quotechar * 2) + quotechar for c in cells)
    nl = text.find("\n")
    newline = "\r\n" if nl > 0 and text[nl - 1] == "\r" else "\n"
    return Dialect(delimiter=chosen, quotechar=quotechar, quote_all=quote_all, newline=newline)


def read_table(source: str | Path, *, path_column: str = PATH_COL, label_column: str = LABEL_COL,
               required: tuple[str, ...] | None = None, raw: bytes | None = None,
               strict: bool = True) -> LabelTable:
    """Read a label CSV in any dialect training accepts.

    Parameters
    ----------
    source : the CSV file (its name is used in messages).
    path_column, label_column : the columns that hold each row's image path and label
        (header names without surrounding spaces); the file's own names are kept.
    required : columns that must exist; default ``(path_column, label_column)``. ``()``
        reads any table (e.g. to offer its columns to pick from).
    raw : the file's bytes if already read (saves a second read).
    strict : raise on rows with the wrong number of cells; if False, leave them out and
        list them in ``LabelTable.problems`` (so a caller can report them with its own).

    Returns
    -------
    LabelTable with every cell as text (never NaN), rows in file order, blank lines dropped.

    Raises
    ------
    TableError naming the file and line, with a fix; a missing column names the file's
    columns; for rows with the wrong number of cells every such row is listed in ``problems``.
    """
    src = Path(source)
    name = src.name
    path_column, label_column = str(path_column).strip(), str(label_column).strip()
    label_file = required is None  # read for its path and label columns (not a truth file, not any table)
    if required is None:
        required = (path_column, label_column)
        if not path_column or not label_column or path_column == label_column:
            raise TableError(name, f"the path column ('{path_column}') and the label column "
                                   f"('{label_column}') must be two different, named columns", COLUMN_FIX)
    if raw is None:
        try:
            raw = src.read_bytes()
        except FileNotFoundError:
            raise TableError(str(src), "does not exist",
                             "check the path, or create a CSV with 'path' and 'label' columns") from None
        except OSError as e:
            raise TableError(str(src), f"cannot be read ({e})", "check its permissions") from None
    text, bom = _decode(raw, name)
    if not text.strip():
        raise TableError(name, "is empty", "add a header line `path,label` and one row per image")
    dialect = replace(_sniff(text, name, tuple(required)), bom=bom)
    reader = csv.reader(io.StringIO(text.split("\n", 1)[0].rstrip("\r")),
                        delimiter=dialect.delimiter, quotechar=dialect.quotechar)
    header = next(reader, [])
    names = [h.strip() for h in header]
    missing = [c for c in required if c not in names]
    if missing:
        raise TableError(
            f"{name} line 1",
            f"has no column {in_words(missing, 'or')}; its columns are {in_words(names)}",
            _missing_fix(missing, names, path_column, label_column,
                         (lambda: _head(src, text)) if label_file else None),
        )
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise TableError(f"{name} line 1", f"has duplicate column names {', '.join(map(repr, dupes))}",
                         "give every column a unique name")
    frame = _arrow_frame(text, dialect, names)
    if frame is None and _field_counts_ok(text, dialect, len(names)):
        try:
            frame = pd.read_csv(
                io.StringIO(text), sep=dialect.delimiter, quotechar=dialect.quotechar, dtype=str,
                keep_default_na=False, skip_blank_lines=False, index_col=False,
                header=None, skiprows=1, names=names, engine="c", on_bad_lines="error",
            ).fillna("")
        except (pd.errors.ParserError, ValueError):
            frame = None
    if frame is None:
        problems, frame, lines = _slow_rows(text, dialect, names, name)
        if problems and strict:
            raise TableError(*problems[0], problems=problems)
        return LabelTable(frame=frame, dialect=dialect, header=header, lines=lines, problems=problems,
                          path_column=path_column, label_column=label_column)
    lines = np.arange(2, len(frame) + 2, dtype=np.int64)
    first_empty = (frame.iloc[:, 0].str.strip() == "").to_numpy()
    blank = first_empty.copy()
    if first_empty.any():  # a blank line: every cell empty or spaces
        blank[first_empty] = (frame[first_empty].apply(lambda c: c.str.strip()) == "").all(axis=1).to_numpy()
    if blank.any():
        frame, lines = frame[~blank].reset_index(drop=True), lines[~blank]
    return LabelTable(frame=frame, dialect=dialect, header=header, lines=lines,
                      path_column=path_column, label_column=label_column)


def _missing_fix(missing: list[str], names: list[str], path_column: str, label_column: str,
                 head: Callable[[], LabelTable | None] | None = None) -> Fix | str:
    """How to name the columns: a column spelled in another case is offered by name; so are,
    for a label file (``head``: its first rows), the columns the Data page would pick where
    they look the part (:func:`_likely_columns`). Offered, never used."""
    lower = {n.lower(): n for n in names}
    flags = {path_column: ("--path-column", "path"), label_column: ("--label-column", "label")}
    offered = {m: lower[m.lower()] for m in missing if m in flags and m.lower() in lower}
    if head is not None and any(m in flags and m not in offered for m in missing) and (table := head()) is not None:
        offered.update(_likely_columns(table, names, path_column, label_column, offered))
    offers = [(flags[m], offered[m]) for m in missing if m in offered]
    if offers:
        cli = " ".join(f"{flag} {shlex.quote(name)}" for (flag, _), name in offers)
        app = ", ".join(f"{kind} column “{name}”" for (_, kind), name in offers)
        return COLUMN_FIX + Fix(f" (e.g. {cli})", f" (e.g. {app})")
    if any(m in flags for m in missing):
        return COLUMN_FIX
    return f"add the column{'s' * (len(missing) > 1)} {in_words(missing)} to the first line"


def _head(src: Path, text: str, sample: int = 2000) -> LabelTable | None:
    """The first ``sample`` rows of a label file's ``text``, read as any table (to guess its
    columns from, as :func:`column_choices` does); None if they cannot be read."""
    lines = text.split("\n", sample + 1)[: sample + 1]
    try:
        return read_table(src, required=(), raw="\n".join(lines).encode("utf-8"), strict=False)
    except TableError:
        return None


def _likely_columns(head: LabelTable, names: list[str], path_column: str, label_column: str,
                    offered: dict[str, str]) -> dict[str, str]:
    """The file's columns :func:`suggest_columns` ranks first for the path and label columns
    the file lacks (``path_column``/``label_column`` absent from ``names`` and not in
    ``offered``), by the name asked for; ``{}`` unless every one of them looks the part: a path
    column whose cells mostly end in an image extension or whose name is a path column's
    (``image_id``), a label column of text with few distinct values."""
    chosen = {c: c for c in (path_column, label_column) if c in names} | offered
    paths, labels = suggest_columns(head)
    out = {}
    for col, order, credible in ((path_column, paths, _looks_like_paths), (label_column, labels, _looks_like_labels)):
        if col in chosen:
            continue
        pick = next((c for c in order if c not in chosen.values()), None)
        if pick is None or pick not in names or not credible(head.frame[pick], pick):
            return {}
        chosen[col] = out[col] = pick
    return out


def _cells(column: pd.Series) -> pd.Series:
    v = column.str.strip()
    return v[v != ""]


def _image_share(v: pd.Series) -> float:
    """The share of (non-empty, stripped) cells ``v`` that end in an image extension."""
    return float(v.str.lower().str.endswith(tuple(sorted(IMAGE_EXTENSIONS))).mean()) if len(v) else 0.0


def _text_classes(v: pd.Series) -> bool:
    """Whether (non-empty, stripped) cells ``v`` look like class names: text, not numbers, with
    few distinct values (at most half the rows)."""
    numeric = len(v) > 0 and bool(pd.to_numeric(v, errors="coerce").notna().all())
    return len(v) > 0 and not numeric and 1 <= v.nunique() <= max(2, len(v) // 2)


def _looks_like_paths(column: pd.Series, name: str) -> bool:
    return name.lower() in _PATH_NAMES or _image_share(_cells(column)) >= 0.5


def _looks_like_labels(column: pd.Series, name: str) -> bool:
    return _text_classes(_cells(column))


def _arrow_frame(text: str, dialect: Dialect, names: list[str]) -> pd.DataFrame | None:
    """The cells of a text without quote characters, parsed by Arrow's CSV reader (a million
    rows in about 0.15 CPU-s against 1 s for pandas' C parser and the field count), as the
    pandas path reads them: every cell text, one row per physical line (an empty line a row
    of empty cells, dropped later as blank). None where it does not apply — quotes, fewer
    than two columns, or any line without exactly one cell per column (the other paths then
    find and report the rows)."""
    if dialect.quotechar in text or len(names) < 2:
        return None
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter=dialect.delimiter, quote_char=False,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False))
    except (pa.ArrowInvalid, ValueError):
        return None
    as_str = pd.Series([""], dtype=str).dtype  # what pandas gives for dtype=str (object before pandas 3)
    return table.to_pandas(types_mapper=lambda t: as_str if t == pa.string() and as_str != object else None)


def _field_counts_ok(text: str, dialect: Dialect, n: int) -> bool:
    """True if every non-blank line has ``n`` cells. Exact and fast for files without quotes
    (counted per line); a file with quotes is checked with the csv module."""
    if dialect.quotechar not in text:
        fast = _delimiter_counts_ok(text, dialect.delimiter, n)
        if fast is not None:
            return fast
        counts = np.fromiter((ln.count(dialect.delimiter) for ln in text.splitlines()[1:] if ln.strip()),
                             dtype=np.int64)
        return bool((counts == n - 1).all())
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=dialect.delimiter,
                        quotechar=dialect.quotechar)
    try:
        next(reader, None)
        return all(len(row) == n for row in reader if row and any(c.strip() for c in row))
    except csv.Error:
        return False


#: Characters ``str.splitlines`` also breaks at; a text with any of them takes the exact path.
_OTHER_BREAKS = ("\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _delimiter_counts_ok(text: str, delimiter: str, n: int) -> bool | None:
    """:func:`_field_counts_ok` for a text without quotes, counted with NumPy over its bytes
    (a million rows in a few milliseconds). A line counts as blank only if it holds nothing
    but ASCII spaces and tabs, so this is never more lenient than the line-by-line count.
    None where it does not apply (a non-ASCII delimiter, a lone ``\\r`` or another line break)."""
    if len(delimiter) != 1 or ord(delimiter) > 127 or any(c in text for c in _OTHER_BREAKS):
        return None
    b = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    cr = np.flatnonzero(b == 13)
    if len(cr) and not ((cr + 1 < len(b)).all() and (b[cr + 1] == 10).all()):
        return None  # a \r that does not end a line
    ends = np.flatnonzero(b == 10)  # each line's newline; the text after the last one is a line too
    lines = len(ends) + 1
    length = np.diff(np.r_[-1, ends, len(b)]) - 1  # bytes of each line without its newline
    d = np.flatnonzero(b == ord(delimiter))
    delims = np.bincount(np.searchsorted(ends, d), minlength=lines)
    blank = np.flatnonzero((b == 32) | (b == 9) | (b == 13))  # few: one pass, positions only
    spaces = np.bincount(np.searchsorted(ends, blank), minlength=lines)
    content = length > spaces + delims
    # header (line 0) excluded; a line of delimiters only still has cells, so it is checked
    checked = (content | (delims > 0))[1:]
    return bool((delims[1:][checked] == n - 1).all())


def _slow_rows(text: str, dialect: Dialect, names: list[str], name: str):
    """Row by row with the csv module: every row with the wrong number of cells, or an
    unbalanced quote, is reported (the fast reader stops at the first)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=dialect.delimiter,
                        quotechar=dialect.quotechar)
    problems, rows, lines = [], [], []
    try:
        next(reader, None)
        for n, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(names):
                problems.append((f"{name} line {n}", f"has {len(row)} fields but the header has {len(names)}",
                                 "quote cells that contain the delimiter, or fix the row"))
                continue
            rows.append(row)
            lines.append(n)
    except csv.Error as e:
        problems.append((f"{name} line {reader.line_num}", f"is not valid CSV ({e})",
                         "check for an unclosed quote on that line"))
    frame = pd.DataFrame(rows, columns=names, dtype=object) if rows else pd.DataFrame(
        {c: pd.Series(dtype=object) for c in names})
    return problems, frame, np.array(lines, dtype=np.int64)


def render_table(table: LabelTable, frame: pd.DataFrame | None = None) -> bytes:
    """``frame`` (default: the table's own) as bytes in the table's dialect.

    Columns the table was read with keep their header cell as spelled; new columns are
    written under their name.
    """
    frame = table.frame if frame is None else frame
    d = table.dialect
    spelled = dict(zip((h.strip() for h in table.header), table.header))
    buf = io.StringIO()
    frame.to_csv(buf, index=False, sep=d.delimiter, quotechar=d.quotechar, lineterminator=d.newline,
                 quoting=csv.QUOTE_ALL if d.quote_all else csv.QUOTE_MINIMAL,
                 header=[spelled.get(c, c) for c in frame.columns])
    data = buf.getvalue().encode("utf-8")
    return codecs.BOM_UTF8 + data if d.bom else data


def render_rows(table: LabelTable, frame: pd.DataFrame) -> list[bytes]:
    """Each row of ``frame`` as one line of bytes in the table's dialect (line end included),
    for splicing into the file. The cells must not contain line breaks."""
    d = table.dialect
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False, sep=d.delimiter, quotechar=d.quotechar,
                 lineterminator=d.newline, quoting=csv.QUOTE_ALL if d.quote_all else csv.QUOTE_MINIMAL)
    text = buf.getvalue()
    return [line.encode("utf-8") + d.newline.encode() for line in text.split(d.newline)[:-1]]


def line_starts(raw: bytes) -> np.ndarray:
    """Byte offset where each physical line of ``raw`` starts, then ``len(raw)``: line ``k``
    (1-based) is ``raw[starts[k - 1]:starts[k]]``, its line end included."""
    ends = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 10) + 1
    if len(raw) and (not len(ends) or ends[-1] != len(raw)):
        ends = np.append(ends, len(raw))
    return np.concatenate([[0], ends]).astype(np.int64)


#: Header names that suggest a label column (in this order), after the default ``label``.
_LABEL_NAMES = ("label", "class", "diagnosis", "dx", "category", "target", "y")
#: Header names that suggest a path column.
_PATH_NAMES = ("path", "file", "filename", "file_name", "image", "image_path", "img", "image_id")


def suggest_columns(table: LabelTable, sample: int = 2000) -> tuple[list[str], list[str]]:
    """Every column of ``table`` ordered twice, most likely first: as the path column and
    as the label column (for a user to pick from when the file has no ``path``/``label``).

    Judged on the first ``sample`` rows. A path column's cells look like image files (an
    image extension, then a folder separator); a label column holds text (not numbers) with
    few distinct values (at most half the rows), a name like ``diagnosis`` first. Columns
    already named ``path``/``label`` come first. Costs O(columns × sample), whatever N.
    """
    head = table.frame.head(sample)
    names = list(head.columns)

    def path_score(c: str) -> tuple:
        v = _cells(head[c])
        image = _image_share(v)
        folder = float(v.str.contains("/", regex=False).mean()) if len(v) else 0.0
        hint = c.lower() in _PATH_NAMES
        return (c != PATH_COL, -round(image, 1), not hint, -round(folder, 1))

    paths = sorted(names, key=lambda c: (path_score(c), names.index(c)))

    def label_score(c: str) -> tuple:
        text_classes = _text_classes(_cells(head[c]))
        hint = _LABEL_NAMES.index(c.lower()) if c.lower() in _LABEL_NAMES else len(_LABEL_NAMES)
        return (c != LABEL_COL, c == paths[0], not text_classes, hint)

    labels = sorted(names, key=lambda c: (label_score(c), names.index(c)))
    return paths, labels


def column_choices(source: str | Path, sample: int = 2000) -> tuple[list[str], list[str], list[str]]:
    """A label file's columns, then the same ordered as likely path and likely label column
    (:func:`suggest_columns`), judged on its first ``sample`` rows.

    Reads only the start of the file (a megabyte at a time until ``sample`` rows are in), so
    offering the columns of a million-row file costs milliseconds, not a full read.

    Raises
    ------
    TableError if the file cannot be read (missing, not UTF-8, empty).
    """
    src = Path(source)
    try:
        with open(src, "rb") as fh:
            raw = b""
            while raw.count(b"\n") <= sample:
                more = fh.read(1 << 20)
                if not more:
                    break
                raw += more
            else:  # more rows follow: keep whole lines only
                raw = raw[: raw.rindex(b"\n") + 1]
    except FileNotFoundError:
        raise TableError(str(src), "does not exist", "check the path") from None
    except OSError as e:
        raise TableError(str(src), f"cannot be read ({e})", "check its permissions") from None
    table = read_table(src, required=(), raw=raw, strict=False)
    paths, labels = suggest_columns(table, sample)
    return list(table.frame.columns), paths, labels


# --------------------------------------------------------------------------- sources


def source_kind(source: str | Path) -> str:
    """What kind of data source a path is: ``"folder"`` (one sub-folder per class),
    ``"npz"`` (a MedMNIST file) or ``"csv"`` (any other file: a label table).
    ``"missing"`` if nothing is there."""
    p = Path(source)
    if p.is_dir():
        return "folder"
    if not p.exists():
        return "missing"
    return "npz" if p.suffix.lower() == ".npz" else "csv"


# --------------------------------------------------------------------------- truth


def read_truth(truth_file: str | Path) -> dict[str, bool]:
    """``path -> is_noisy`` from a truth file (columns ``path`` and ``is_noisy``).

    ``is_noisy`` cells ``1``/``true``/``yes``/``y``/``t`` (any case) mean the given label is
    wrong; anything else means it is right. Read with :func:`read_table`, so any dialect works.

    Raises
    ------
    TableError if the file cannot be read or lacks a column.
    """
    paths, flags = truth_columns(truth_file)
    return dict(zip(paths, flags))


def truth_columns(truth_file: str | Path) -> tuple[pd.Series, np.ndarray]:
    """A truth file's rows as columns: the paths (stripped) and ``is_noisy`` as booleans (as
    :func:`read_truth` reads them; a path listed twice keeps both rows)."""
    t = read_table(truth_file, required=(PATH_COL, "is_noisy"))
    flags = t.frame["is_noisy"].str.strip().str.lower().isin(list(TRUTHY))
    return t.paths(), flags.to_numpy(dtype=bool)


def truth_for(ids, columns: tuple[pd.Series, np.ndarray], where: str | Path = "the truth file") -> np.ndarray:
    """``is_noisy`` of each of ``ids``, in their order, from a truth file's
    :func:`truth_columns` (a path listed twice: its last row, as in :func:`read_truth`).
    O(N) through Arrow, for a million ids.

    Raises
    ------
    TableError if the truth file (``where``, for the message) has no row for one of ``ids``
    (the message says how many and names the first).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    paths, flags = columns
    ids = list(ids)
    if not ids:
        return np.zeros(0, dtype=bool)
    listed = pa.array(paths.to_numpy(dtype=object)[::-1], type=pa.string())
    at = pc.index_in(pa.array(ids, type=pa.string()), value_set=listed).to_numpy(zero_copy_only=False)
    missing = np.isnan(at.astype(np.float64))
    if missing.any():
        raise TableError(str(where), f"no row for {int(missing.sum())} sample(s) of the run "
                         f"(e.g. {ids[int(np.argmax(missing))]!r})", "use the truth file of this run's data")
    return flags[::-1][np.asarray(at, dtype=np.int64)]
