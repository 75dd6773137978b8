"""The one reader and writer of label tables (sei_core.labels), the truth reader and source kinds."""

import numpy as np
import pandas as pd
import pytest

from sei_core.labels import (TableError, column_choices, read_table, read_truth, render_table, source_kind,
                             suggest_columns, truth_columns, truth_for)


def _f(tmp_path, raw: bytes, name="labels.csv"):
    f = tmp_path / name
    f.write_bytes(raw)
    return f


@pytest.mark.parametrize("raw, delimiter, quote_all, newline, bom", [
    (b"path,label\na.png,cat\nb.png,dog\n", ",", False, "\n", False),
    (b"path;label;note\na.png;cat;\"x;y\"\nb.png;dog;z\n", ";", False, "\n", False),
    (b"path\tlabel\r\na.png\tcat\r\nb.png\tdog\r\n", "\t", False, "\r\n", False),
    (b'"path","label"\n"a.png","cat"\n"b.png","dog"\n', ",", True, "\n", False),
    (b"\xef\xbb\xbfpath, label\r\n a.png , cat\r\nb.png,dog \r\n", ",", False, "\r\n", True),
])
def test_dialects_are_read_and_written_back_byte_for_byte(tmp_path, raw, delimiter, quote_all, newline, bom):
    t = read_table(_f(tmp_path, raw))
    d = t.dialect
    assert (d.delimiter, d.quote_all, d.newline, d.bom) == (delimiter, quote_all, newline, bom)
    assert t.paths().tolist() == ["a.png", "b.png"] and t.labels().tolist() == ["cat", "dog"]
    assert t.lines.tolist() == [2, 3]
    assert render_table(t) == raw  # nothing changed: the same bytes


def test_every_row_with_the_wrong_number_of_cells_is_reported(tmp_path):
    f = _f(tmp_path, b"path,label\na.png,cat,extra\nb.png\n\nc.png,dog\n")
    with pytest.raises(TableError) as e:
        read_table(f)
    assert [p[0] for p in e.value.problems] == ["labels.csv line 2", "labels.csv line 3"]
    t = read_table(f, strict=False)  # or the good rows, with the problems listed
    assert t.paths().tolist() == ["c.png"] and t.lines.tolist() == [5] and len(t.problems) == 2


@pytest.mark.parametrize("raw, needle", [
    (b"", "is empty"),
    (b"file,label\na,b\n", "no column 'path'"),
    (b"path,label,path\na,b,c\n", "duplicate column"),
    (b"path,label\na,caf\xe9\n", "line 2: is not valid UTF-8"),
])
def test_unreadable_tables_say_where_and_how_to_fix(tmp_path, raw, needle):
    with pytest.raises(TableError, match=needle) as e:
        read_table(_f(tmp_path, raw))
    assert e.value.fix


def test_blank_lines_are_skipped_and_numbered_as_in_the_file(tmp_path):
    t = read_table(_f(tmp_path, b"path,label\n\na.png,cat\n,\nb.png,dog\n"))
    assert t.paths().tolist() == ["a.png", "b.png"] and t.lines.tolist() == [3, 5]


def test_read_truth_one_rule_for_every_spelling(tmp_path):
    f = _f(tmp_path, b"path;is_noisy;given\na;1;x\nb;True;x\nc; yes ;x\nd;0;x\ne;False;x\nf;;x\n", "truth.csv")
    assert read_truth(f) == {"a": True, "b": True, "c": True, "d": False, "e": False, "f": False}
    with pytest.raises(TableError, match="is_noisy"):
        read_truth(_f(tmp_path, b"path,label\na,b\n", "t2.csv"))


def test_truth_for_aligns_the_truth_with_the_run_s_ids(tmp_path):
    cols = truth_columns(_f(tmp_path, b"path,is_noisy\na,1\nb,0\na,0\nc,yes\n", "truth.csv"))
    assert truth_for(["c", "a", "b"], cols).tolist() == [True, False, False]  # a listed twice: its last row
    assert truth_for([], cols).tolist() == []
    with pytest.raises(TableError, match="1 sample.*'z'"):
        truth_for(["a", "z"], cols)


def test_source_kind(tmp_path):
    (tmp_path / "folder").mkdir()
    with open(tmp_path / "x.NPZ", "wb") as fh:
        np.savez(fh, a=np.zeros(1))
    _f(tmp_path, b"path,label\n", "l.tsv")
    assert [source_kind(tmp_path / n) for n in ("folder", "x.NPZ", "l.tsv", "nope.csv")] == \
        ["folder", "npz", "csv", "missing"]


MAPPED = b"image_id;diagnosis;age\nimg/a.jpg;nevus;30\nimg/b.jpg;melanoma;41\n img/c.jpg ; nevus ;52\n"


def test_chosen_path_and_label_columns(tmp_path):
    f = _f(tmp_path, MAPPED)
    with pytest.raises(TableError) as e:  # without the mapping: the file's columns, in words, and the fix
        read_table(f)
    assert "has no column 'path' or 'label'; its columns are 'image_id', 'diagnosis' and 'age'" in str(e.value)
    assert "--path-column" in e.value.fix.cli and "Data page" in e.value.fix.cli
    assert "--" not in e.value.fix.app and "Data page" in e.value.fix.app
    t = read_table(f, path_column="image_id", label_column="diagnosis")
    assert t.dialect.delimiter == ";"
    assert t.paths().tolist() == ["img/a.jpg", "img/b.jpg", "img/c.jpg"]
    assert t.labels().tolist() == ["nevus", "melanoma", "nevus"]
    assert list(t.frame.columns) == ["image_id", "diagnosis", "age"]  # the user's columns, never renamed
    assert render_table(t) == MAPPED
    with pytest.raises(TableError, match="no column 'dx'; its columns are"):
        read_table(f, path_column="image_id", label_column="dx")
    with pytest.raises(TableError, match="two different"):
        read_table(f, path_column="image_id", label_column="image_id")



@pytest.mark.parametrize("raw, kw, fix", [
    # the columns the Data page would pick, when they look the part (by their cells or a path name)
    (MAPPED, {}, ("--path-column image_id --label-column diagnosis", "path column “image_id”, label column "
                                                                      "“diagnosis”")),
    (b"lesion,file,species\nL1,a.png,cat\nL2,b.png,dog\nL3,c.png,cat\nL4,d.png,cat\n", {},
     ("--path-column file --label-column species", "path column “file”, label column “species”")),
    (b"photo,sp ecies\na.png,cat\nb.png,dog\nc.png,cat\n", {},
     ("--path-column photo --label-column 'sp ecies'", "path column “photo”, label column “sp ecies”")),
    # only the column the file lacks, never the one in use
    (b"path,diagnosis\na.png,nv\nb.png,mel\nc.png,nv\n", {},
     ("--label-column diagnosis", "label column “diagnosis”")),
    (MAPPED, {"path_column": "image_id", "label_column": "dx"}, ("--label-column diagnosis", "label column "
                                                                                          "“diagnosis”")),
    # one spelled in another case, the other guessed
    (b"Path,diagnosis\na.png,nv\nb.png,mel\nc.png,nv\n", {},
     ("--path-column Path --label-column diagnosis", "path column “Path”, label column “diagnosis”")),
    # not credible: no image names and no path name, labels all different, numbers
    (b"name,kind\nfoo,cat\nbar,dog\nbaz,cat\n", {}, None),
    (b"file,caption\na.png,x1\nb.png,x2\nc.png,x3\nd.png,x4\n", {}, None),
    (b"file,grade\na.png,1\nb.png,2\nc.png,1\n", {}, None),
])
def test_a_missing_column_is_offered_the_likely_one(tmp_path, raw, kw, fix):
    """A label file without the path/label columns asked for: the fix names the columns the Data
    page would guess (image_id, diagnosis) when they look the part, and only suggests them."""
    from sei_core.labels import COLUMN_FIX

    with pytest.raises(TableError) as e:
        read_table(_f(tmp_path, raw), **kw)
    got = e.value.fix
    if fix is None:
        assert got == COLUMN_FIX  # the general fix, no guess
    else:
        assert got.cli == f"{COLUMN_FIX.cli} (e.g. {fix[0]})"
        assert got.said(app=True) == f"{COLUMN_FIX.app} (e.g. {fix[1]})"
    # a truth file's path column is not a choice: no guess there
    with pytest.raises(TableError) as e:
        read_truth(_f(tmp_path, b"file,is_noisy\na.png,1\n", "truth.csv"))
    assert "e.g." not in str(e.value)


def test_suggested_columns_put_image_files_and_classes_first(tmp_path):
    paths, labels = suggest_columns(read_table(_f(tmp_path, MAPPED), required=()))
    assert paths[0] == "image_id" and labels[0] == "diagnosis"
    assert sorted(paths) == sorted(labels) == ["age", "diagnosis", "image_id"]
    # a file with many columns: the image column is found by its cells, the label by few distinct texts
    raw = b"lesion_id,file,sex,dx\n" + b"".join(
        f"L{i},images/{i}.png,{'mf'[i % 2]},{('nv', 'mel', 'bkl')[i % 3]}\n".encode() for i in range(12))
    paths, labels = suggest_columns(read_table(_f(tmp_path, raw, "other.csv"), required=()))
    assert paths[0] == "file" and labels[0] == "dx"
    # columns already named path and label stay first
    paths, labels = suggest_columns(read_table(_f(tmp_path, b"label,path\nx,a.png\n", "std.csv"), required=()))
    assert (paths[0], labels[0]) == ("path", "label")


def test_column_choices_reads_only_the_start_of_the_file(tmp_path):
    rows = b"".join(f"images/{i}.png;{('nv', 'mel')[i % 2]};{i}\n".encode() for i in range(50))
    f = _f(tmp_path, b"image_id;diagnosis;age\n" + rows + b"broken;row\n" * 20)  # bad rows past the sample
    names, paths, labels = column_choices(f, sample=10)
    assert names == ["image_id", "diagnosis", "age"] and paths[0] == "image_id" and labels[0] == "diagnosis"
    whole = read_table(f, required=(), strict=False)
    assert whole.problems and (paths, labels) == suggest_columns(whole, 10)  # the same guess as a full read
    with pytest.raises(TableError, match="does not exist"):
        column_choices(tmp_path / "nowhere.csv")


@pytest.mark.parametrize("text", [
    "path,label\na.png,nevus\nb.png,melanoma\n",
    "path;label;age\r\na.png; nevus ;30\r\n\r\nb.png;melanoma;\r\n",  # CRLF, spaces kept, a blank line
    "\ufeffpath\tlabel\na.png\tnevus\n   \t  \nb.png\tmel",  # BOM, tab, a line of spaces, no final newline
    "path,label,extra\na.png,nevus,1\nb.png,mel\nc.png,bcc,3\n",  # a short row: reported, not read by Arrow
    "path,label\n\"a,1.png\",nevus\n",  # quotes: never Arrow's
])
def test_arrow_and_pandas_read_a_table_the_same(tmp_path, monkeypatch, text):
    """The fast path (Arrow's CSV reader, files without quotes) gives the same table, line
    numbers and problems as the pandas path it stands in for."""
    from sei_core import labels as labels_mod

    f = tmp_path / "t.csv"
    f.write_bytes(text.encode("utf-8"))
    fast = read_table(f, strict=False)
    monkeypatch.setattr(labels_mod, "_arrow_frame", lambda *a: None)
    slow = read_table(f, strict=False)
    pd.testing.assert_frame_equal(fast.frame, slow.frame)
    assert fast.lines.tolist() == slow.lines.tolist() and fast.problems == slow.problems
    assert fast.dialect == slow.dialect
