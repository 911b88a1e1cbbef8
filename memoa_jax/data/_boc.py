"""Bank of Canada daily exchange rates (FedMOE's "BoC" set, spec §10).

File `boc/bank_of_canada_exchange_rates.csv` in the data folder (see `_files.data_dir`):
header `date, AUD_CLOSE, DKK_CLOSE, ..., USD_CLOSE`, one row per calendar day
2007-05-01..2017-04-28 (3651 rows), closes in CAD per unit of the currency.

Construction (FedMOE `BankOfCanadaExchangeRates` with `inputs=[AUD, EUR, GBP, JPY]`,
`targets=[USD]`, `input_lags=target_lags=[0, 1]`, then `cut_first_time_steps(2001)`):
row `t` of the data set is file row `start + t`;

* `y[t] = USD_CLOSE` of file row `start + t`, not normalised;
* `x[t]` (d_x = 10), in FedMOE's column order — all inputs at lag 0, all inputs at lag 1,
  then the target at lags 0 and 1:
  `(AUD₀, EUR₀, GBP₀, JPY₀, AUD₁, EUR₁, GBP₁, JPY₁, USD₀, USD₁)`, where lag `ℓ` is file row
  `start + t − ℓ` (0 before the first row of the file, as FedMOE pads). Not normalised.

"BoC (val)" is the same recipe starting at file row 1600 (FedMOE `boc_exchange_validation`).
"""

import os

import numpy as np

from ._dataset import Dataset
from ._files import data_dir, lagged_segment

BOC_FILE = "boc/bank_of_canada_exchange_rates.csv"
BOC_CREDIT = (
    "Source: Bank of Canada daily closing exchange rates 2007-2017 (as bundled with FedMOE, "
    "github.com/fatemetkl/FedMOE); reuse with attribution, non-commercial"
)
BOC_OBTAIN = (
    "Get it from the FedMOE repository (github.com/fatemetkl/FedMOE, file "
    "fedmoe/datasets/assets/bank_of_canada_exchange_rates.csv) and put it at "
    f"<data folder>/{BOC_FILE}."
)
BOC_INPUTS = ("AUD_CLOSE", "EUR_CLOSE", "GBP_CLOSE", "JPY_CLOSE")
BOC_TARGET = "USD_CLOSE"
BOC_VAL_START = 1600


def boc(
    folder: str | os.PathLike | None = None,
    *,
    start: int = 0,
    n_rows: int = 2001,
    name: str = "boc",
) -> Dataset:
    """Predict tomorrow's USD close (CAD per USD) from today's and yesterday's closes.

    Args:
        folder: the data folder holding `boc/bank_of_canada_exchange_rates.csv` (default:
            `$MEMOA_DATA`, else `../shared/data/`).
        start: first file row (0-based data row) of the segment.
        n_rows: number of rows (`n_rows − 1` predictions).
        name: the data set's name.

    Returns:
        `Dataset` with `n_rows` rows, `d_x = 10`, `d = 1` and the Bank of Canada credit.

    Raises:
        DataFileError (a ValueError): the file is missing, truncated or malformed, a column is
            missing or a value is not finite (the message names file, line and column).
        ValueError: `start < 0` or `n_rows < 2`.
    """
    _check_segment(start, n_rows)
    path = data_dir(folder) / BOC_FILE
    cols = (*BOC_INPUTS, BOC_TARGET)
    seg, (lag0, lag1) = lagged_segment(
        path, cols, (0, 1), first=start, n_rows=n_rows, obtain=BOC_OBTAIN
    )
    k = len(BOC_INPUTS)
    x = [lag0[:, :k], lag1[:, :k], lag0[:, k:], lag1[:, k:]]
    return Dataset(name=name, x=np.concatenate(x, axis=1), y=seg[:, k:], credit=BOC_CREDIT)


def boc_val(folder: str | os.PathLike | None = None) -> Dataset:
    """The "BoC (val)" row: the `boc` recipe on file rows 1600..3600."""
    return boc(folder, start=BOC_VAL_START, name="boc-val")


def _check_segment(start, n_rows):
    for k, v, lo in (("start", start, 0), ("n_rows", n_rows, 2)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{k} must be an integer >= {lo}, got {k}={v!r}")
