"""Label tables: the one reader and writer of label CSV files, and what kind of source a path is.

Training, review and benchmarking all read a user's label file through :func:`read_table`,
so a file that trains can be reviewed: the delimiter (``,`` ``;`` or tab) is found from the
header, header cells may carry surrounding spaces (``path, label``), a UTF-8 byte-order mark
and Windows line ends are understood. Every cell is kept as the exact text of the file;
:meth:`LabelTable.paths` and :meth:`LabelTable.labels` give the stripped ``path``/``label``
values that identify a sample and its class.

:func:`render_table` writes a table back *in the file's own dialect* (delimiter, quote
character, quote-all or minimal quoting, line ends, BOM, the header cells as they were
spelled), keeping every column, so a reviewed file differs from the original only in the
cells that changed and the review columns added.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "PATH_COL", "LABEL_COL", "Dialect", "LabelTable", "TableError", "read_table", "render_table",
    "source_kind", "read_truth", "truth_columns", "TRUTHY",
]

PATH_COL = "path"
LABEL_COL = "label"
DELIMITERS = (",", ";", "\t")
#: Cell values :func:`read_truth` takes as "this label is wrong".
TRUTHY = frozenset({"1", "true", "yes", "y", "t"})


class TableError(ValueError):
    """A label table cannot be read. ``where`` is ``"<file> line <n>"`` (or the file), ``fix``
    says what to do; ``problems`` lists every ``(where, message, fix)`` found when there are
    several (rows with the wrong number of cells)."""

    def __init__(self, where: str, message: str, fix: str = "",
                 problems: list[tuple[str, str, str]] | None = None) -> None:
        self.where, self.message, self.fix = where, message, fix
        self.problems = problems or [(where, message, fix)]
        super().__init__(f"{where}: {message}." + (f" Fix: {fix}" if fix else ""))


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
    """

    frame: pd.DataFrame
    dialect: Dialect
    header: list[str]
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: ``(where, message, fix)`` of rows left out (wrong number of cells), with ``strict=False``.
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    def paths(self) -> pd.Series:
        """The ``path`` cell of every row, surrounding spaces removed."""
        return self.frame[PATH_COL].str.strip()

    def labels(self) -> pd.Series:
        """The ``label`` cell of every row, surrounding spaces removed."""
        return self.frame[LABEL_COL].str.strip()


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


def _sniff(text: str, name: str) -> Dialect:
    """Pick the delimiter whose header holds ``path`` and ``label``; else the sniffed one."""
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
        if PATH_COL in cells and LABEL_COL in cells:
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


def read_table(source: str | Path, *, required: tuple[str, ...] = (PATH_COL, LABEL_COL),
               raw: bytes | None = None, strict: bool = True) -> LabelTable:
    """Read a label CSV in any dialect training accepts.

    Parameters
    ----------
    source : the CSV file (its name is used in messages).
    required : columns that must exist (matched after stripping header cells).
    raw : the file's bytes if already read (saves a second read).
    strict : raise on rows with the wrong number of cells; if False, leave them out and
        list them in ``LabelTable.problems`` (so a caller can report them with its own).

    Returns
    -------
    LabelTable with every cell as text (never NaN), rows in file order, blank lines dropped.

    Raises
    ------
    TableError naming the file and line, with a fix; for rows with the wrong number of
    cells every such row is listed in ``problems``.
    """
    src = Path(source)
    name = src.name
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
    dialect = replace(_sniff(text, name), bom=bom)
    reader = csv.reader(io.StringIO(text.split("\n", 1)[0].rstrip("\r")),
                        delimiter=dialect.delimiter, quotechar=dialect.quotechar)
    header = next(reader, [])
    names = [h.strip() for h in header]
    missing = [c for c in required if c not in names]
    if missing:
        lower = {h.lower(): h for h in names}
        hints = [f"rename column '{lower[m]}' to '{m}'" for m in missing if m in lower]
        raise TableError(
            f"{name} line 1",
            f"has no column {' or '.join(repr(m) for m in missing)}; its columns are "
            f"{', '.join(repr(n) for n in names)}",
            "; ".join(hints) if hints else "the first line must name the columns, e.g. `path,label`",
        )
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise TableError(f"{name} line 1", f"has duplicate column names {', '.join(map(repr, dupes))}",
                         "give every column a unique name")
    frame = None
    if _field_counts_ok(text, dialect, len(names)):
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
        return LabelTable(frame=frame, dialect=dialect, header=header, lines=lines, problems=problems)
    lines = np.arange(2, len(frame) + 2, dtype=np.int64)
    first_empty = (frame.iloc[:, 0].str.strip() == "").to_numpy()
    blank = first_empty.copy()
    if first_empty.any():  # a blank line: every cell empty or spaces
        blank[first_empty] = (frame[first_empty].apply(lambda c: c.str.strip()) == "").all(axis=1).to_numpy()
    if blank.any():
        frame, lines = frame[~blank].reset_index(drop=True), lines[~blank]
    return LabelTable(frame=frame, dialect=dialect, header=header, lines=lines)


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
