"""A user's own series from a CSV file (the CLI's `--csv`).

The file: a header line of column names, then one row per time step, comma separated. It is
read with the `csv` module: a UTF-8 byte-order mark is ignored, header names may be quoted,
spaces after a comma are skipped, and no character starts a comment (`#N/A` is a cell, not a
comment). A file compressed with gzip, bzip2 or xz (`.csv.gz`, `.csv.bz2`, `.csv.xz`; known by
its first bytes, whatever its name) is decompressed as it is read. Only the rows asked for are
read (`rows`: the file is streamed and the rest is never decompressed nor parsed), and every
one of them is accounted for: a row with the wrong number of fields,
an empty line followed by data, or a cell of a used column that is not a finite number raises
one `DataFileError` naming the file, its 1-based line (the header is line 1) and the column's
header name.

Columns: the target(s) (default: the last numeric column) and the inputs (default: every other
numeric column). A column is numeric when its first data cell is a number; a column that is
not chosen and not numeric is dropped, with one note saying so. A column of dates (ISO 8601,
e.g. ETT's `2016-07-01 00:00:00`, or `2016/07/01`) is recognised: the first one indexes the
series (`CsvSeries.dates`).

Rows follow `Dataset`'s convention: `x[t]` is public at time `t`, agents predict `y[t + 1]`.
`x[t]` holds, in this order (FedMOE's), every input at each lag of `lags`, then the target at
each lag of `target_lags`; lag `ℓ` is row `t − ℓ`, 0 before the first row (FedMOE's padding).
With the defaults `lags=(0,)`, `target_lags=(0,)`: the inputs and the target of row `t`.

Scaling (`scale`), over the rows read: "none" (default), "max" (FedMOE: `x` divided by its
largest absolute entry, one scalar; `y` by its own), "standard" (each column of `x` and `y`
minus its mean, over its standard deviation).

Pure Python + NumPy float64.
"""

import bz2
import csv
import gzip
import lzma
import math
import warnings
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._dataset import Dataset
from ._files import DataFileError

SCALES = ("none", "max", "standard")
# the first bytes of a compressed file, and how to open it (stdlib only)
_COMPRESSED = ((b"\x1f\x8b", "gzip", gzip.open), (b"BZh", "bzip2", bz2.open))
_COMPRESSED += ((b"\xfd7zXZ\x00", "xz", lzma.open),)
_SUFFIXES = (".gz", ".bz2", ".xz", ".csv", ".txt")
_DATE_FORMATS = ("%Y/%m/%d", "%Y/%m/%d %H:%M", "%Y/%m/%d %H:%M:%S", "%d.%m.%Y")


class CsvSeries(NamedTuple):
    """What `read_csv` returns.

    Attributes:
        dataset: the `Dataset` (name: the file's stem).
        dates: the date column's text of every row read, or None without a date column.
        index_column: the date column's header name, or None.
        columns: `(targets, inputs)`: the header names used for `y` and (before lags) `x`.
        notes: lines to show the user (columns dropped, the index), one per fact.
    """

    dataset: Dataset
    dates: tuple[str, ...] | None
    index_column: str | None
    columns: tuple[tuple[str, ...], tuple[str, ...]]
    notes: tuple[str, ...]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def is_date(text: str) -> bool:
    """Whether `text` reads as a date or date-time (ISO 8601, or `2016/07/01`, `01.07.2016`)."""
    text = text.strip()
    if not text or _number(text) is not None:
        return False
    try:
        datetime.fromisoformat(text)
        return True
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            datetime.strptime(text, fmt)
            return True
        except ValueError:
            pass
    return False


def _check_lags(label: str, lags) -> tuple[int, ...]:
    lags = tuple(lags)
    for lag in lags:
        if isinstance(lag, bool) or not isinstance(lag, int) or lag < 0:
            raise ValueError(f"{label}: lags must be integers >= 0, got {lag!r}")
    if len(set(lags)) != len(lags):
        raise ValueError(f"{label}: a lag is repeated in {list(lags)}")
    return lags


def _lagged(a: np.ndarray, lag: int) -> np.ndarray:
    out = np.zeros_like(a)
    out[lag:] = a[: a.shape[0] - lag] if lag else a
    return out


def read_csv(
    path,
    *,
    target: tuple[str, ...] | None = None,
    inputs: tuple[str, ...] | None = None,
    lags: tuple[int, ...] = (0,),
    target_lags: tuple[int, ...] = (0,),
    scale: str = "none",
    rows: int | None = None,
    n_rows: int | None = None,
) -> CsvSeries:
    """A `Dataset` from the CSV file `path` (see the module docstring for the format).

    Args:
        path: the CSV file, plain or compressed (gzip, bzip2, xz).
        target: the target column(s) by header name; default the last numeric column.
        inputs: the input columns; default every numeric column that is not a target. `()`:
            none (then `target_lags` must not be empty).
        lags: the lags of the inputs in `x` (`0`: row `t`'s value).
        target_lags: the lags of the target(s) in `x` (`()`: the target is not an input).
        scale: "none", "max" or "standard" (computed over the rows read).
        rows: read only the first `rows` data rows (at least 2), like the CLI's `--rows`.
        n_rows: the former name of `rows` (deprecated: a DeprecationWarning).

    Returns:
        A `CsvSeries`; its `dataset.name` is the file name without `.csv` and the
        compression suffix.

    Raises:
        DataFileError (a ValueError): the file is missing, not UTF-8, a damaged compressed
            file, empty, has duplicate or empty header names, an unknown column is asked
            for, a row has the wrong number of fields, a used cell is not a finite number
            (file, line and column named), fewer than 2 rows or than `rows`, a lag not
            below the rows read, no inputs, or a scale that divides by zero.
        ValueError: bad `lags`, `target_lags`, `scale` or `rows`.

    Examples:
        ETTm1 (15-minute electricity transformer data; `../shared/data/ett/` beside a source
        checkout), read compressed, oil temperature `OT` from the six loads at lags 0 and 1
        and its own last value, the first 3000 rows:

        >>> from memoa_jax.data import data_dir, read_csv
        >>> s = read_csv(data_dir() / "ett" / "ETTm1.csv.gz", target=("OT",), lags=(0, 1),
        ...              rows=3000)
        >>> s.dataset.name, s.dataset.x.shape, s.dataset.y.shape
        ('ETTm1', (3000, 13), (3000, 1))
        >>> s.index_column, s.dates[0]
        ('date', '2016-07-01 00:00:00')
    """
    if n_rows is not None:
        warnings.warn(
            "read_csv(n_rows=...) is deprecated; use rows=... (the CLI's --rows)",
            DeprecationWarning,
            stacklevel=2,
        )
        if rows is not None:
            raise ValueError(f"give rows={rows!r} or n_rows={n_rows!r}, not both")
        rows = n_rows
    path = Path(path)
    lags = _check_lags("lags", lags)
    target_lags = _check_lags("target lags", target_lags)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int)):
        raise ValueError(f"rows must be an integer, got {rows!r}")
    if rows is not None and rows < 2:
        raise ValueError(f"rows={rows} must be at least 2 (one prediction)")
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    header, records = _read_rows(path, rows)
    if rows is not None and len(records) < rows:
        raise DataFileError(
            f"{path}: only {len(records)} data rows, fewer than the {rows} asked for"
        )

    def unknown(names, label):
        for n in names:
            if n not in header:
                raise DataFileError(
                    f"{path}: {label} {n!r} is not a column (line 1 has: {', '.join(header)})"
                )

    if target is not None:
        target = tuple(target)
        unknown(target, "target")
        if len(set(target)) != len(target):
            raise DataFileError(f"{path}: a target column is repeated in {list(target)}")
    if inputs is not None:
        inputs = tuple(inputs)
        unknown(inputs, "input")
        if len(set(inputs)) != len(inputs):
            raise DataFileError(f"{path}: an input column is repeated in {list(inputs)}")
    if len(records) < 2:
        raise DataFileError(f"{path}: {len(records)} data row(s); need at least 2 (one prediction)")

    # what each column is, from the first data row (chosen columns must be numeric)
    first_line, first = records[0]
    chosen = set(target or ()) | set(inputs or ())
    numeric, dates, text = [], [], []
    for j, name in enumerate(header):
        cell = first[j].strip()
        if name in chosen or _number(cell) is not None:
            numeric.append(name)
        elif is_date(cell):
            dates.append(name)
        else:
            text.append(name)
    if target is None:
        if not numeric:
            raise DataFileError(f"{path}: line {first_line}: no numeric column to predict")
        target = (numeric[-1],)
    if inputs is None:
        inputs = tuple(n for n in numeric if n not in target)
    overlap = [n for n in inputs if n in target]
    if overlap:
        raise DataFileError(
            f"{path}: column {overlap[0]!r} is both a target and an input; its lags enter "
            "through the target lags"
        )
    if not (inputs and lags) and not target_lags:
        raise DataFileError(
            f"{path}: no inputs: give input columns, or target lags (the target's own past)"
        )

    for label, given in (("lags", lags if inputs else ()), ("target lags", target_lags)):
        for lag in given:
            if lag >= len(records):
                raise DataFileError(
                    f"{path}: {label}: lag {lag} is not below the {len(records)} rows read, "
                    "so that input would be all zeros"
                )

    used = (*target, *inputs)
    idx = [header.index(n) for n in used]
    values = np.empty((len(records), len(used)))
    for r, (line, fields) in enumerate(records):
        for k, (j, name) in enumerate(zip(idx, used)):
            cell = fields[j].strip()
            v = _number(cell)
            if v is None or not math.isfinite(v):
                raise DataFileError(
                    f"{path}: line {line}, column {name!r}: {cell!r} is not a finite number"
                )
            values[r, k] = v

    notes = []
    index = index_column = None
    if dates:
        index_column = dates[0]
        j = header.index(index_column)
        index = tuple(fields[j].strip() for _, fields in records)
        for line, fields in records:
            if not is_date(fields[j]):
                raise DataFileError(
                    f"{path}: line {line}, column {index_column!r}: {fields[j].strip()!r} is "
                    "not a date (the column's first row is one)"
                )
        notes.append(
            f"column {index_column!r} (dates) indexes the series: {index[0]} .. {index[-1]}"
        )
    dropped = [n for n in (*dates[1:], *text) if n not in used]
    unused = [n for n in numeric if n not in used]
    if dropped:
        notes.append(
            "dropped non-numeric column(s) "
            + ", ".join(f"{n!r} ({first[header.index(n)].strip()!r})" for n in dropped)
        )
    if unused:
        notes.append(f"not used (not in the inputs): {', '.join(map(repr, unused))}")

    y = values[:, : len(target)]
    xin = values[:, len(target) :]
    blocks = [_lagged(xin, lag) for lag in lags] if inputs else []
    blocks += [_lagged(y, lag) for lag in target_lags]
    x = np.concatenate(blocks, axis=1)
    x_names = [f"{n} (lag {lag})" for lag in (lags if inputs else ()) for n in inputs]
    x_names += [f"{n} (lag {lag})" for lag in target_lags for n in target]
    x, y = _scale(path, scale, x, y, x_names, target)
    ds = Dataset(name=series_name(path), x=x, y=y)
    return CsvSeries(ds, index, index_column, (target, inputs), tuple(notes))


def series_name(path) -> str:
    """The name of the series in the file `path`: its name without the `.csv` and
    compression suffixes (`ETTm1.csv.gz` -> `ETTm1`)."""
    name = Path(path).name
    while True:
        stem, dot, suffix = name.rpartition(".")
        if not (dot and stem and f".{suffix.lower()}" in _SUFFIXES):
            return name or "csv"
        name = stem


def _open(path: Path):
    """`path` opened for reading bytes, decompressed if its first bytes say it is gzip,
    bzip2 or xz; and the compression's name (None: plain)."""
    with open(path, "rb") as f:
        head = f.read(6)
    for magic, kind, opener in _COMPRESSED:
        if head.startswith(magic):
            return opener(path, "rb"), kind
    return open(path, "rb"), None


def _read_rows(path: Path, n_rows: int | None):
    """The header names and the first `n_rows` data rows as `(line, fields)`, streamed."""
    rows = []
    reader = None
    kind = None
    try:
        f, kind = _open(path)
        with f:
            reader = csv.reader(_decoded_lines(f, path), skipinitialspace=True)
            raw = next(reader, None)
            header = [h.strip() for h in raw or []]
            if not header or all(not h for h in header):
                raise DataFileError(f"{path}: the file is empty (no header line)")
            for j, h in enumerate(header):
                if not h:
                    raise DataFileError(f"{path}: line 1: column {j + 1} has no name")
            dup = next((h for h in header if header.count(h) > 1), None)
            if dup is not None:
                raise DataFileError(
                    f"{path}: line 1: the column name {dup!r} appears {header.count(dup)} "
                    "times; rename the columns so that each name is unique"
                )
            blank = None
            for fields in reader:
                line = reader.line_num
                if not any(c.strip() for c in fields):
                    blank = blank or line
                    continue
                if blank is not None:
                    raise DataFileError(
                        f"{path}: line {blank} is empty but data follows (line {line}); "
                        "remove the empty line"
                    )
                if len(fields) != len(header):
                    raise DataFileError(
                        f"{path}: line {line} has {len(fields)} fields, the header (line 1) "
                        f"has {len(header)}"
                    )
                rows.append((line, fields))
                if n_rows is not None and len(rows) >= n_rows:
                    break
    except csv.Error as e:
        where = f"line {reader.line_num}: " if reader is not None else ""
        raise DataFileError(f"{path}: {where}malformed CSV ({e})") from None
    except (OSError, EOFError, lzma.LZMAError) as e:
        if kind is None:  # reading a plain file: the file system's error, with its name
            raise DataFileError(
                f"{path}: cannot read ({getattr(e, 'strerror', None) or e})"
            ) from None
        where = f" after line {reader.line_num}" if reader is not None else ""
        raise DataFileError(
            f"{path}: a damaged {kind} file{where} ({e}); decompress it, or fetch it again"
        ) from None
    return header, rows


def _decoded_lines(f, path):
    """The binary file `f`'s lines as text, decoded one by one (a UTF-8 byte-order mark on
    the first is dropped), so that a byte that is not UTF-8 is reported with its line."""
    for number, raw in enumerate(f, 1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise DataFileError(
                f"{path}: line {number}: not UTF-8 text (byte {raw[e.start : e.start + 1]!r} "
                f"at position {e.start + 1} of the line); save the file as UTF-8"
            ) from None


def _scale(path, scale, x, y, x_names, target):
    if scale == "max":
        for label, a in (("inputs", x), (f"target {', '.join(target)}", y)):
            if not np.abs(a).max() > 0:
                raise DataFileError(f"{path}: scale max: the {label} are all zero")
        return x / np.abs(x).max(), y / np.abs(y).max()
    if scale == "standard":
        sx, sy = x.std(0), y.std(0)
        for names, s in ((x_names, sx), (target, sy)):
            if not (s > 0).all():
                raise DataFileError(
                    f"{path}: scale standard: column {names[int(np.argmin(s > 0))]!r} is "
                    "constant over the rows read (its standard deviation is 0)"
                )
        return (x - x.mean(0)) / sx, (y - y.mean(0)) / sy
    return x, y
