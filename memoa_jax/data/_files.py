"""Reading the real data files (Bank of Canada, ETTh1) from a folder the user gives.

The files are not part of the package or the repository (their licences do not allow
shipping them, see `../shared/data/NOTICE.md`). They are found, in this order, in:

1. the folder passed as `data_dir` (the CLI's `--data-dir`);
2. the folder named by the environment variable `MEMOA_DATA`;
3. `../shared/data/` beside the package's source checkout (the repository root's sibling
   `shared/data/`, found from this file's path; never relative to the current directory).

Every problem — a missing file, a missing column, a truncated or malformed row, a value that
is not a finite number — raises one `DataFileError` (a `ValueError`) naming the file, the
line (1-based, the header is line 1) and the column. Pure Python + NumPy float64.
"""

import csv
import math
import os
from pathlib import Path

import numpy as np

ENV_VAR = "MEMOA_DATA"
# memoa_jax/data/_files.py -> the repository root -> ../shared/data
DEFAULT_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"


class DataFileError(ValueError):
    """A data file is missing, truncated or malformed (the message says where)."""


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder holding the real data files: `path`, else `$MEMOA_DATA`, else
    `../shared/data/` beside the package's source checkout (`DEFAULT_DIR`)."""
    if path is not None:
        return Path(path)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return DEFAULT_DIR


def read_columns(
    path: Path,
    columns: tuple[str, ...],
    *,
    first: int,
    n_rows: int,
    obtain: str,
) -> np.ndarray:
    """Data rows `first .. first + n_rows − 1` (0-based, after the header) of chosen columns.

    Only these rows are parsed, but every line before them is checked to have the header's
    number of fields, so that a damaged file fails here rather than shifting the rows.

    Args:
        path: the CSV file (header line, then one row per line, comma separated).
        columns: the names of the columns to return, in this order.
        first: index of the first data row to return.
        n_rows: number of data rows to return.
        obtain: a sentence saying where a user gets the file (appended to "not found").

    Returns:
        A float64 array of shape `(n_rows, len(columns))`.

    Raises:
        DataFileError: the file does not exist, lacks a column, has fewer than
            `first + n_rows` data rows, a row with the wrong number of fields, or a value that
            is not a finite number (naming line and column).
    """
    if not path.is_file():
        raise DataFileError(
            f"data file {str(path)!r} not found (looked in data folder "
            f"{str(path.parent)!r}; give another with --data-dir or ${ENV_VAR}). {obtain}"
        )
    out = np.empty((n_rows, len(columns)), dtype=np.float64)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not header or header == [""]:
                raise DataFileError(f"{path}: the file is empty (no header line)")
            missing = [c for c in columns if c not in header]
            if missing:
                raise DataFileError(
                    f"{path}: column {missing[0]!r} not found in the header "
                    f"(columns: {', '.join(header)})"
                )
            idx = [header.index(c) for c in columns]
            last = first + n_rows
            row = -1
            for row, fields in enumerate(reader):
                if row >= last:
                    break
                line = row + 2
                if len(fields) != len(header):
                    raise DataFileError(
                        f"{path}: line {line} has {len(fields)} fields, expected "
                        f"{len(header)} (truncated or malformed row)"
                    )
                if row < first:
                    continue
                for j, (i, name) in enumerate(zip(idx, columns)):
                    text = fields[i].strip()
                    try:
                        value = float(text)
                    except ValueError:
                        value = math.nan
                    if not math.isfinite(value):
                        raise DataFileError(
                            f"{path}: line {line}, column {name!r}: {text!r} is not a finite number"
                        )
                    out[row - first, j] = value
            n_data = row + 1
            if n_data < last:
                raise DataFileError(
                    f"{path}: only {n_data} data rows, need rows {first}..{last - 1} "
                    f"(line {last + 1}); the file is truncated or the segment too long"
                )
    except UnicodeDecodeError as err:
        raise DataFileError(f"{path}: not a UTF-8 text file ({err})") from None
    except csv.Error as err:
        raise DataFileError(f"{path}: malformed CSV ({err})") from None
    return out


def lagged_segment(
    path: Path,
    columns: tuple[str, ...],
    lags: tuple[int, ...],
    *,
    first: int,
    n_rows: int,
    obtain: str,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The segment of file rows `first .. first + n_rows − 1` and its lagged copies.

    Returns:
        `(segment, blocks)`: `segment[t]` = file row `first + t` of `columns`, and for each
        lag `ℓ` in `lags` a block whose row `t` is file row `first + t − ℓ`. Rows before the
        start of the file are zeros, as FedMOE pads them (`_get_lagged_value` + left pad).
    """
    lead = min(first, max(lags))
    raw = read_columns(path, columns, first=first - lead, n_rows=n_rows + lead, obtain=obtain)
    blocks = []
    for lag in lags:
        block = np.zeros((n_rows, len(columns)))
        start = lead - lag  # index in `raw` of the row lagged from segment row 0
        block[max(0, -start) :] = raw[max(0, start) : start + n_rows]
        blocks.append(block)
    return raw[lead:], blocks
