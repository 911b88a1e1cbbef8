"""`memoa_jax.data.read_csv`: a user's own CSV, on small files the tests write."""

import numpy as np
import pytest

import memoa_jax.data._csv as csv_module
from memoa_jax.data import DataFileError, read_csv


def write(tmp_path, text, name="series.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def ett_like(n=12, bom=True, quoted=True):
    q = '"' if quoted else ""
    head = ",".join(f"{q}{c}{q}" for c in ("date", "HUFL", "LUFL", "OT"))
    lines = [("\ufeff" if bom else "") + head]
    for t in range(n):
        lines.append(f"2016-07-01 {t:02d}:00:00, {5 + t * 0.5}, {2 - t * 0.1:.2f}, {30 + t}")
    return "\n".join(lines) + "\n"


def test_bom_quoted_header_spaces_and_a_date_column(tmp_path):
    path = write(tmp_path, ett_like())
    s = read_csv(path, target=("OT",))
    ds = s.dataset
    assert ds.name == "series" and ds.n_rows == 12 and ds.d == 1
    # inputs HUFL, LUFL at lag 0, then the target at lag 0
    assert ds.d_x == 3
    np.testing.assert_allclose(ds.x[3], [6.5, 1.7, 33.0])
    np.testing.assert_allclose(ds.y[:, 0], 30 + np.arange(12))
    assert s.index_column == "date" and s.dates[0] == "2016-07-01 00:00:00"
    assert s.columns == (("OT",), ("HUFL", "LUFL"))
    assert any("'date' (dates) indexes the series" in n for n in s.notes)


def test_defaults_target_is_the_last_numeric_column(tmp_path):
    s = read_csv(write(tmp_path, ett_like(bom=False, quoted=False)))
    assert s.columns == (("OT",), ("HUFL", "LUFL"))


def test_lags_target_lags_and_inputs(tmp_path):
    path = write(tmp_path, ett_like())
    s = read_csv(path, target=("OT",), inputs=("HUFL",), lags=(0, 1, 2), target_lags=(0, 1))
    x = s.dataset.x
    assert x.shape == (12, 5)
    hufl, ot = 5 + 0.5 * np.arange(12), 30.0 + np.arange(12)
    np.testing.assert_allclose(x[:, 0], hufl)
    np.testing.assert_allclose(x[:, 1], np.r_[0, hufl[:-1]])  # zero before the first row
    np.testing.assert_allclose(x[:, 2], np.r_[0, 0, hufl[:-2]])
    np.testing.assert_allclose(x[:, 3], ot)
    np.testing.assert_allclose(x[:, 4], np.r_[0, ot[:-1]])
    assert any("not used" in n and "'LUFL'" in n for n in s.notes)


@pytest.mark.parametrize("scale", ["max", "standard"])
def test_scale(tmp_path, scale):
    s = read_csv(write(tmp_path, ett_like()), scale=scale)
    x, y = s.dataset.x, s.dataset.y
    if scale == "max":
        assert np.abs(x).max() == 1.0 and np.abs(y).max() == 1.0
    else:
        np.testing.assert_allclose(x.mean(0), 0, atol=1e-12)
        np.testing.assert_allclose(y.std(0), 1)


def test_non_numeric_column_is_dropped_with_one_note(tmp_path):
    text = "site,a,y\n" + "".join(f"north,{i},{i * 0.1}\n" for i in range(5))
    s = read_csv(write(tmp_path, text))
    assert s.columns == (("y",), ("a",))
    assert [n for n in s.notes if "dropped" in n] == [
        "dropped non-numeric column(s) 'site' ('north')"
    ]


def test_bad_cell_names_file_line_and_column(tmp_path):
    text = "a,b,y\n" + "".join(f"{i},{i},{i * 0.1}\n" for i in range(10))
    text = text.replace("7,7,0.7", "7,#N/A,0.7")  # '#' is no comment: every row counts
    path = write(tmp_path, text)
    with pytest.raises(DataFileError, match=r"series.csv: line 9, column 'b': '#N/A' is not a"):
        read_csv(path)


def test_nan_cell_is_refused(tmp_path):
    text = "a,y\n" + "".join(f"{i},{i * 0.1}\n" for i in range(10))
    path = write(tmp_path, text.replace("3,0.30000000000000004", "3,nan"))
    with pytest.raises(DataFileError, match=r"line 5, column 'y': 'nan' is not a finite number"):
        read_csv(path)


@pytest.mark.parametrize(
    "text, match",
    [
        ("a,y,y\n1,2,3\n4,5,6\n", "the column name 'y' appears 2 times"),
        ("a,b,y\n1,2\n3,4\n", "line 2 has 2 fields, the header \\(line 1\\) has 3"),
        ("a,y\n1,2\n\n3,4\n", "line 3 is empty but data follows \\(line 4\\)"),
        ("", "the file is empty"),
        ("a,y\n1,2\n", "1 data row\\(s\\); need at least 2"),
        ("a,,y\n1,2,3\n4,5,6\n", "line 1: column 2 has no name"),
    ],
)
def test_malformed_files(tmp_path, text, match):
    with pytest.raises(DataFileError, match=match):
        read_csv(write(tmp_path, text))


def test_unknown_or_repeated_columns(tmp_path):
    path = write(tmp_path, ett_like())
    with pytest.raises(DataFileError, match="target 'y' is not a column \\(line 1 has: date, HUFL"):
        read_csv(path, target=("y",))
    with pytest.raises(DataFileError, match="a target column is repeated"):
        read_csv(path, target=("OT", "OT"))
    with pytest.raises(DataFileError, match="'OT' is both a target and an input"):
        read_csv(path, target=("OT",), inputs=("OT",))
    with pytest.raises(DataFileError, match="no inputs"):
        read_csv(path, target=("OT",), inputs=(), target_lags=())


def test_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("a,y\n1,2\n3,\xe9\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="latin.csv: line 3: not UTF-8"):
        read_csv(path)


def test_rows_reads_only_those_lines(tmp_path, monkeypatch):
    """A large file with `rows=5`: the lines after them are never read (a damaged line
    further down does not matter), and the reader pulls only about that many rows."""
    lines = ["a,y"] + [f"{i},{i * 0.5}" for i in range(20_000)] + ["broken"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    pulled = []
    monkeypatch.setattr(csv_module.csv, "reader", _Counting(csv_module.csv.reader, pulled))
    s = read_csv(path, rows=5)
    assert s.dataset.n_rows == 5
    assert len(pulled) == 6  # the header and five rows
    with pytest.raises(DataFileError, match="line 20002 has 1 fields"):
        read_csv(path)


class _Counting:
    """`csv.reader` that records every row it hands out (and keeps `line_num`)."""

    def __init__(self, real, pulled):
        self.real, self.pulled = real, pulled

    def __call__(self, f, **kw):
        outer = self

        class R:
            def __init__(self):
                self.inner = outer.real(f, **kw)

            @property
            def line_num(self):
                return self.inner.line_num

            def __iter__(self):
                return self

            def __next__(self):
                row = next(self.inner)
                outer.pulled.append(row)
                return row

        return R()


@pytest.mark.parametrize("kind", ["gzip", "bz2", "lzma"])
def test_compressed_file_reads_like_the_plain_one(tmp_path, kind):
    """gzip, bzip2 and xz, known by their first bytes: the same series as the plain file,
    named without the suffixes; `rows` reads only the beginning."""
    import importlib

    text = ett_like(n=20)
    plain = read_csv(write(tmp_path, text), target=("OT",), lags=(0, 1))
    module = importlib.import_module(kind)
    suffix = {"gzip": ".gz", "bz2": ".bz2", "lzma": ".xz"}[kind]
    path = tmp_path / f"series.csv{suffix}"
    path.write_bytes(module.compress(text.encode()))
    packed = read_csv(path, target=("OT",), lags=(0, 1))
    assert packed.dataset.name == "series"
    np.testing.assert_array_equal(packed.dataset.x, plain.dataset.x)
    np.testing.assert_array_equal(packed.dataset.y, plain.dataset.y)
    assert packed.dates == plain.dates
    assert read_csv(path, rows=4).dataset.n_rows == 4


def test_damaged_compressed_file_names_the_file(tmp_path):
    import gzip

    data = gzip.compress(("a,y\n" + "".join(f"{i},{i % 7}\n" for i in range(5000))).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])  # truncated: the stream ends early
    with pytest.raises(DataFileError, match=r"cut.csv.gz: a damaged gzip file after line \d+"):
        read_csv(path)


def test_rows_beyond_the_file_and_lags_beyond_the_rows_are_refused(tmp_path):
    path = write(tmp_path, ett_like(n=12))
    with pytest.raises(DataFileError, match="only 12 data rows, fewer than the 100 asked for"):
        read_csv(path, rows=100)
    with pytest.raises(DataFileError, match="lags: lag 12 is not below the 12 rows read"):
        read_csv(path, lags=(0, 12))
    with pytest.raises(DataFileError, match="target lags: lag 30 is not below the 5 rows"):
        read_csv(path, target_lags=(30,), rows=5)
    assert read_csv(path, lags=(11,)).dataset.n_rows == 12  # one row of real values


def test_n_rows_still_works_with_a_deprecation_warning(tmp_path):
    path = write(tmp_path, ett_like(n=12))
    with pytest.warns(DeprecationWarning, match="use rows="):
        assert read_csv(path, n_rows=5).dataset.n_rows == 5
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="not both"):
        read_csv(path, rows=5, n_rows=5)


def test_read_csv_docstring_example_runs():
    """The API reference's example, on ETTm1.csv.gz of the data folder (skipped without it)."""
    import doctest

    from memoa_jax.data import data_dir

    if not (data_dir() / "ett" / "ETTm1.csv.gz").is_file():
        pytest.skip("no ETTm1.csv.gz in the data folder")
    result = doctest.testmod(csv_module, verbose=False)
    assert result.attempted >= 3 and result.failed == 0
