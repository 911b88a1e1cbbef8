"""ETTh1, the hourly electricity-transformer temperatures (FedMOE's "ETT" set, spec §10).

File `ett/ETTh1.csv` in the data folder (see `_files.data_dir`): header
`date, HUFL, HULL, MUFL, MULL, LUFL, LULL, OT`, one row per hour 2016-07-01 00:00 ..
2018-06-26 19:00 (17420 rows).

Construction (FedMOE `TransformerTemperature` with `inputs=[HUFL, ..., LULL]`,
`input_lags=[0, 1, 2]`, `target_lags=[0, 1]`, then `cut_first_time_steps(2001,
normalize=True)`): row `t` of the data set is file row `start + t`;

* `y[t] = OT` of file row `start + t`, divided by the maximum of `y` over the segment;
* `x[t]` (d_x = 20), in FedMOE's column order — the six loads at lag 0, at lag 1, at lag 2,
  then OT at lags 0 and 1 — where lag `ℓ` is file row `start + t − ℓ` (0 before the first
  row of the file, as FedMOE pads); the whole `x` segment is divided by ONE scalar, its
  largest entry (FedMOE: `input_matrix / torch.max(input_matrix)`), so `max x = 1`.

"ETT (val)" is the same recipe starting at file row 3500 (FedMOE `ett_data_validation`).
"""

import os

import numpy as np

from ._boc import _check_segment
from ._dataset import Dataset
from ._files import DataFileError, data_dir, lagged_segment

ETT_FILE = "ett/ETTh1.csv"
ETT_CREDIT = (
    "Source: ETTh1, Zhou et al., Informer (AAAI 2021), github.com/zhouhaoyi/ETDataset, "
    "CC BY-ND 4.0 (normalised at run time)"
)
ETT_OBTAIN = (
    "Get ETT-small/ETTh1.csv from github.com/zhouhaoyi/ETDataset (CC BY-ND 4.0) and put it at "
    f"<data folder>/{ETT_FILE}."
)
ETT_INPUTS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL")
ETT_TARGET = "OT"
ETT_VAL_START = 3500


def ett(
    folder: str | os.PathLike | None = None,
    *,
    start: int = 0,
    n_rows: int = 2001,
    name: str = "ett",
) -> Dataset:
    """Predict the next hour's oil temperature from the loads at lags 0–2 and OT at lags 0–1.

    Args:
        folder: the data folder holding `ett/ETTh1.csv` (default: `$MEMOA_DATA`, else
            `../shared/data/`).
        start: first file row (0-based data row) of the segment.
        n_rows: number of rows (`n_rows − 1` predictions).
        name: the data set's name.

    Returns:
        `Dataset` with `n_rows` rows, `d_x = 20`, `d = 1` and the ETDataset credit.

    Raises:
        DataFileError (a ValueError): the file is missing, truncated or malformed, a column is
            missing, a value is not finite (the message names file, line and column), or a
            segment maximum is not positive (it cannot normalise).
        ValueError: `start < 0` or `n_rows < 2`.
    """
    _check_segment(start, n_rows)
    path = data_dir(folder) / ETT_FILE
    cols = (*ETT_INPUTS, ETT_TARGET)
    seg, blocks = lagged_segment(
        path, cols, (0, 1, 2), first=start, n_rows=n_rows, obtain=ETT_OBTAIN
    )
    k = len(ETT_INPUTS)
    x = np.concatenate([b[:, :k] for b in blocks] + [b[:, k:] for b in blocks[:2]], axis=1)
    y = seg[:, k:]
    for label, a in (("inputs", x), ("target OT", y)):
        if not a.max() > 0:
            raise DataFileError(
                f"{path}: rows {start}..{start + n_rows - 1}: the maximum of the {label} is "
                f"{a.max()}, not positive; scalar max normalisation is impossible"
            )
    return Dataset(name=name, x=x / x.max(), y=y / y.max(), credit=ETT_CREDIT, season=24)


def ett_val(folder: str | os.PathLike | None = None) -> Dataset:
    """The "ETT (val)" row: the `ett` recipe on file rows 3500..5500."""
    return ett(folder, start=ETT_VAL_START, name="ett-val")
