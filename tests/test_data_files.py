"""The Bank of Canada and ETTh1 loaders (spec §10): real files, lags, normalisation, errors.

The expected values are computed here from the CSV text with the `csv` module alone.
"""

import csv
from pathlib import Path

import numpy as np
import pytest

from memoa_jax.cli import main
from memoa_jax.data import DataFileError, boc, boc_val, data_dir, ett, ett_val, load_dataset

REAL = Path(__file__).resolve().parents[2] / "shared" / "data"
BOC_CSV = REAL / "boc" / "bank_of_canada_exchange_rates.csv"
ETT_CSV = REAL / "ett" / "ETTh1.csv"
needs_boc = pytest.mark.skipif(
    not BOC_CSV.is_file(), reason=f"real Bank of Canada file absent ({BOC_CSV})"
)
needs_ett = pytest.mark.skipif(not ETT_CSV.is_file(), reason=f"real ETTh1 file absent ({ETT_CSV})")

BOC_HEADER = ["date", "AUD_CLOSE", "DKK_CLOSE", "EUR_CLOSE", "JPY_CLOSE", "GBP_CLOSE", "USD_CLOSE"]
ETT_HEADER = ["date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def _table(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {h: [float(r[j]) for r in rows[1:]] for j, h in enumerate(rows[0]) if h != "date"}


def _lag(col: list[float], row: int, lag: int) -> float:
    return col[row - lag] if row - lag >= 0 else 0.0  # FedMOE pads with zeros


def _expected_boc(tab, start, n):
    names = ["AUD_CLOSE", "EUR_CLOSE", "GBP_CLOSE", "JPY_CLOSE"]
    x = [
        [_lag(tab[c], start + t, lag) for lag in (0, 1) for c in names]
        + [_lag(tab["USD_CLOSE"], start + t, lag) for lag in (0, 1)]
        for t in range(n)
    ]
    return np.array(x), np.array(tab["USD_CLOSE"][start : start + n])[:, None]


def _expected_ett(tab, start, n):
    loads = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
    x = np.array(
        [
            [_lag(tab[c], start + t, lag) for lag in (0, 1, 2) for c in loads]
            + [_lag(tab["OT"], start + t, lag) for lag in (0, 1)]
            for t in range(n)
        ]
    )
    y = np.array(tab["OT"][start : start + n])[:, None]
    return x / x.max(), y / y.max()


# --------------------------------------------------------------------------------------------
# Real files


@needs_boc
@pytest.mark.parametrize("variant, start", [("boc", 0), ("boc-val", 1600)])
def test_boc_real_file(variant, start):
    ds = load_dataset(variant, data_dir=REAL)
    assert (ds.name, ds.n_rows, ds.d_x, ds.d) == (variant, 2001, 10, 1)
    assert "Bank of Canada" in ds.credit
    x, y = _expected_boc(_table(BOC_CSV), start, 2001)
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, y)
    np.testing.assert_array_equal(ds.x[:, 8], ds.y[:, 0])  # USD lag 0 is today's target
    np.testing.assert_array_equal(ds.x[1:, 9], ds.y[:-1, 0])  # USD lag 1 is yesterday's


@needs_ett
@pytest.mark.parametrize("variant, start", [("ett", 0), ("ett-val", 3500)])
def test_ett_real_file(variant, start):
    ds = load_dataset(variant, data_dir=REAL)
    assert (ds.name, ds.n_rows, ds.d_x, ds.d) == (variant, 2001, 20, 1)
    x, y = _expected_ett(_table(ETT_CSV), start, 2001)
    np.testing.assert_allclose(ds.x, x, rtol=1e-15, atol=0)
    np.testing.assert_allclose(ds.y, y, rtol=1e-15, atol=0)
    assert ds.x.max() == 1.0 and ds.y.max() == 1.0


@needs_boc
def test_default_folder_and_env_var(monkeypatch, tmp_path):
    monkeypatch.delenv("MEMOA_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # the default folder does not depend on the current directory
    assert data_dir() == REAL  # ../shared/data beside the source checkout
    np.testing.assert_array_equal(boc().y, boc(REAL).y)
    monkeypatch.setenv("MEMOA_DATA", str(REAL))
    np.testing.assert_array_equal(boc_val().y, boc(REAL, start=1600).y)
    monkeypatch.setenv("MEMOA_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    with pytest.raises(DataFileError, match="not found"):
        boc()  # $MEMOA_DATA wins over the default
    assert data_dir(REAL) == REAL  # an explicit folder wins


# --------------------------------------------------------------------------------------------
# Small files written here: lag construction and errors


def _write(folder: Path, name: str, header, rows) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _small_boc(folder, n=8):
    rows = [[f"2007-05-{i + 1:02d}"] + [10 * i + j + 1 for j in range(6)] for i in range(n)]
    return _write(folder, "boc/bank_of_canada_exchange_rates.csv", BOC_HEADER, rows)


def _small_ett(folder, n=8):
    rows = [[f"h{i}"] + [(-1) ** j * (10 * i + j + 1) for j in range(7)] for i in range(n)]
    return _write(folder, "ett/ETTh1.csv", ETT_HEADER, rows)


@pytest.mark.parametrize("start", [0, 1, 3])
def test_boc_lags_on_small_file(tmp_path, start):
    path = _small_boc(tmp_path)
    ds = boc(tmp_path, start=start, n_rows=5)
    x, y = _expected_boc(_table(path), start, 5)
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, y)
    # by hand: file row r has AUD = 10 r + 1, EUR = 10 r + 3, USD = 10 r + 6
    r = start + 2
    assert ds.x[2, [0, 1, 4, 5, 8, 9]].tolist() == [10 * r + 1, 10 * r + 3, 10 * r - 9, 10 * r - 7,
                                                   10 * r + 6, 10 * r - 4]  # fmt: skip
    if start == 0:
        assert ds.x[0, 4:8].tolist() == [0, 0, 0, 0] and ds.x[0, 9] == 0  # padded


@pytest.mark.parametrize("start", [0, 1, 2, 4])
def test_ett_lags_and_scalar_max_normalisation(tmp_path, start):
    path = _small_ett(tmp_path)
    ds = ett(tmp_path, start=start, n_rows=4)
    x, y = _expected_ett(_table(path), start, 4)
    np.testing.assert_allclose(ds.x, x, rtol=1e-15)
    np.testing.assert_allclose(ds.y, y, rtol=1e-15)
    # one scalar for all inputs: column ratios are those of the raw values
    r = start + 3
    raw_hufl, raw_ot_lag1 = 10 * r + 1, 10 * (r - 1) + 7
    assert ds.x[3, 0] / ds.x[3, 19] == pytest.approx(raw_hufl / raw_ot_lag1, rel=1e-14)
    assert ds.x[3, 12] / ds.x[3, 0] == pytest.approx((10 * (r - 2) + 1) / raw_hufl, rel=1e-14)


def test_missing_file_names_it_and_says_where_to_get_it(tmp_path):
    with pytest.raises(DataFileError) as err:
        boc(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "boc" / "bank_of_canada_exchange_rates.csv") in msg
    assert "github.com/fatemetkl/FedMOE" in msg and "--data-dir" in msg
    with pytest.raises(DataFileError, match="zhouhaoyi/ETDataset"):
        ett_val(tmp_path)


def test_malformed_files(tmp_path):
    f = "bank_of_canada_exchange_rates.csv"
    good = [[f"d{i}"] + [1.0 + i] * 6 for i in range(6)]

    _write(
        tmp_path, f"boc/{f}", [h for h in BOC_HEADER if h != "GBP_CLOSE"], [r[:-1] for r in good]
    )
    with pytest.raises(DataFileError, match=f"{f}: column 'GBP_CLOSE' not found in the header"):
        boc(tmp_path, n_rows=3)

    _write(tmp_path, f"boc/{f}", BOC_HEADER, good[:4])
    with pytest.raises(DataFileError, match=f"{f}: only 4 data rows, need rows 0..4 .*truncated"):
        boc(tmp_path, n_rows=5)

    short = [row[:] for row in good]
    short[2] = short[2][:4]
    _write(tmp_path, f"boc/{f}", BOC_HEADER, short)
    with pytest.raises(DataFileError, match=f"{f}: line 4 has 4 fields, expected 7"):
        boc(tmp_path, start=3, n_rows=2)  # also rows before the segment are checked

    for bad in ("nan", "inf", "", "1,2e", "abc"):
        rows = [row[:] for row in good]
        rows[3][6] = bad
        _write(tmp_path, f"boc/{f}", BOC_HEADER, rows)
        with pytest.raises(
            DataFileError, match=f"{f}: line 5, column 'USD_CLOSE': .* not a finite"
        ):
            boc(tmp_path, n_rows=5)

    (tmp_path / "boc" / f).write_text("")
    with pytest.raises(DataFileError, match="empty"):
        boc(tmp_path, n_rows=3)

    _small_ett(tmp_path, n=4)
    rows = [[f"h{i}"] + [-1.0] * 7 for i in range(5)]
    _write(tmp_path, "ett/ETTh1.csv", ETT_HEADER, rows)
    with pytest.raises(DataFileError, match="maximum of the inputs is -1.0, not positive"):
        ett(tmp_path, start=2, n_rows=3)  # no zero padding: all entries are -1


def test_bad_segment_arguments(tmp_path):
    with pytest.raises(ValueError, match="start must be an integer >= 0, got start=-1"):
        boc(tmp_path, start=-1)
    with pytest.raises(ValueError, match="n_rows must be an integer >= 2, got n_rows=1"):
        ett(tmp_path, n_rows=1)


def test_cli_data_dir_error_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", "--dataset", "ett", "--data-dir", str(tmp_path), "-n", "2", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ETTh1.csv" in err[0] and "not found" in err[0]
    assert not out.exists()
