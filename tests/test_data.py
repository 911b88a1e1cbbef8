"""Tests for `memoa_jax.data` against independently computed values (spec §10)."""

import ast
import csv
import importlib.resources
import io
import math
import zipfile

import numpy as np
import pytest

from memoa_jax.data import (
    DATASETS,
    ECB_CREDIT,
    Dataset,
    concept,
    concept_drift,
    ecb,
    load_dataset,
    logistic,
    periodic,
)
from memoa_jax.data._ecb import _read_table

# --------------------------------------------------------------------------------------------
# Independent reference: the ECB CSV parsed here with the csv module only.


def _csv_rows() -> tuple[list[str], dict[str, dict[str, str]]]:
    """Header currencies and `{iso_date: {currency: raw text}}` straight from the zip."""
    resource = importlib.resources.files("currency_converter") / "eurofxref-hist.zip"
    with zipfile.ZipFile(io.BytesIO(resource.read_bytes())) as archive:
        text = archive.read("eurofxref-hist.csv").decode()
    reader = csv.reader(io.StringIO(text))
    header = [h for h in next(reader) if h]
    table = {}
    for row in reader:
        if row:
            table[row[0]] = dict(zip(header[1:], row[1:]))
    return header[1:], table


_CURRENCIES, _TABLE = _csv_rows()
_DATES = sorted(_TABLE)  # ISO strings sort chronologically


def _business_days_from(start: str) -> list[str]:
    return [d for d in _DATES if d >= start]


# --------------------------------------------------------------------------------------------
# Registry and shapes


def test_registry_names_and_shapes():
    assert sorted(DATASETS) == sorted(
        ["concept", "concept-drift", "ecb", "logistic", "periodic"]
        + ["boc", "boc-val", "ett", "ett-val"]  # read from files: tests/test_data_files.py
    )
    expected = {
        "periodic": (201, 1, 1),
        "logistic": (201, 1, 1),
        "concept": (201, 3, 2),
        "concept-drift": (201, 3, 1),
        "ecb": (2001, 10, 1),
    }
    for name, (n_rows, d_x, d) in expected.items():
        ds = load_dataset(name)
        assert ds.name == name
        assert (ds.n_rows, ds.d_x, ds.d) == (n_rows, d_x, d)
        assert ds.x.shape == (n_rows, d_x) and ds.y.shape == (n_rows, d)
        assert ds.x.dtype == np.float64 and ds.y.dtype == np.float64
        assert np.isfinite(ds.x).all() and np.isfinite(ds.y).all()
        assert ds.credit == (ECB_CREDIT if name == "ecb" else "")


def test_load_dataset_head_and_unknown_name():
    short = load_dataset("periodic", n_rows=10)
    assert short.n_rows == 10
    np.testing.assert_array_equal(short.y, periodic().y[:10])
    msg = "unknown dataset 'foo'; choose one of: boc, boc-val, concept, concept-drift, ecb, ett"
    with pytest.raises(ValueError, match=msg):
        load_dataset("foo")
    with pytest.raises(ValueError, match="n_rows=500 exceeds the 201 rows of dataset 'periodic'"):
        load_dataset("periodic", n_rows=500)


def test_data_modules_do_not_import_jax():
    import memoa_jax.data as package

    root = importlib.resources.files(package)
    for name in ("__init__.py", "_dataset.py", "_ecb.py", "_synthetic.py", "_files.py", "_boc.py",
                 "_ett.py"):  # fmt: skip
        tree = ast.parse(root.joinpath(name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(not a.name.startswith("jax") for a in node.names), name
            elif isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("jax"), name


# --------------------------------------------------------------------------------------------
# Synthetic recipes


def test_periodic_matches_level_list():
    # r = 1.8 (p - 5) / 15 - 0.9 for p in (5, 6, 12, 20), by hand.
    levels = [-0.9, -0.78, -0.06, 0.9]
    ds = periodic()
    expected = [levels[(n + 1) % 4] for n in range(201)]
    np.testing.assert_allclose(ds.y[:, 0], expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(ds.x, ds.y)
    assert ds.y[:4, 0].tolist() == pytest.approx([-0.78, -0.06, 0.9, -0.9], abs=1e-15)


def test_logistic_matches_pure_python_recursion():
    s = [0.6]
    for n in range(1, 202):
        tau = n / 202
        force = sum(math.sin(2 * math.pi * k * tau) for k in (5, 11, 13))
        s.append((3.6 + 0.13 * force) * s[-1] * (1 - s[-1]))
    s = s[:201]  # last point dropped
    ds = logistic()
    np.testing.assert_array_equal(ds.x, ds.y)
    got = ds.y[:, 0]
    # Exact on the first steps; the map is chaotic so last-ulp differences of `sin` grow, but
    # stay tiny over 200 steps.
    np.testing.assert_allclose(got[:40], s[:40], rtol=1e-13, atol=0)
    np.testing.assert_allclose(got, s, rtol=0, atol=1e-6)
    # The recursion holds step by step with r indexed by the new point's n.
    for n in range(1, 201):
        r_n = 3.6 + 0.13 * sum(math.sin(2 * math.pi * k * n / 202) for k in (5, 11, 13))
        assert got[n] == pytest.approx(r_n * got[n - 1] * (1 - got[n - 1]), rel=1e-12)
    assert got[0] == 0.6
    assert got[1] == pytest.approx(
        3.6 * 0.6 * 0.4 + 0.13 * 0.24 * sum(math.sin(2 * math.pi * k / 202) for k in (5, 11, 13)),
        rel=1e-14,
    )
    assert 0 < got.min() and got.max() < 1


def _concept_f(x1: float, x2: float, x3: float) -> tuple[float, float]:
    a = 7 * math.pi / 8
    b = 9 * math.pi / 8
    alpha = 1.0 if x1 <= a else (math.cos(2 * (x1 - a)) if x1 <= b else 0.0)
    y1 = alpha * (x1**2 + math.sin(x2) + x1 * x3 + 0.5 * math.cos(10 * x1)) + (1 - alpha) * (
        x1 + x2 - math.sin(x3)
    )
    y2 = alpha * (x1 * math.cos(x2) + x3 - math.exp(-x2)) + (1 - alpha) * (
        math.cos(x1) * math.sin(x2) + x3**2 + 0.25 * math.cos(10 * x1)
    )
    return y1, y2


def test_concept_alignment_and_values():
    ds = concept()
    grid = [2 * math.pi * k / 201 for k in range(202)]
    # Inputs drop their first row: x[t] is grid point t + 1.
    for t in (0, 1, 50, 87, 88, 100, 112, 113, 150, 200):
        g = grid[t + 1]
        np.testing.assert_allclose(ds.x[t], [g, g, math.sqrt(g)], rtol=1e-14, atol=1e-15)
    # Targets drop their last row: y[t] = f(grid t), so y[t + 1] = f(x[t]).
    assert ds.y[0].tolist() == pytest.approx([0.5, -1.0], abs=1e-15)
    for t in (0, 1, 50, 86, 87, 88, 100, 112, 113, 150, 199):
        np.testing.assert_allclose(ds.y[t + 1], _concept_f(*ds.x[t]), rtol=1e-12, atol=1e-12)
    for t in (0, 50, 100, 200):
        g = grid[t]
        np.testing.assert_allclose(ds.y[t], _concept_f(g, g, math.sqrt(g)), rtol=1e-12, atol=1e-12)


def test_concept_drift_is_second_target():
    full, one = concept(), concept_drift()
    np.testing.assert_array_equal(one.x, full.x)
    np.testing.assert_array_equal(one.y[:, 0], full.y[:, 1])
    # The mixing weight is continuous, so the target has no jump at the drift.
    assert np.abs(np.diff(one.y[:, 0])).max() < 0.5


# --------------------------------------------------------------------------------------------
# ECB


def test_ecb_dates_strictly_increasing():
    dates, currencies, rates = _read_table()
    assert all(a < b for a, b in zip(dates[:-1], dates[1:]))
    assert [d.isoformat() for d in dates] == _DATES
    assert list(currencies) == _CURRENCIES
    assert rates.shape == (len(dates), len(currencies))


def test_ecb_values_against_csv_text():
    ds = ecb()
    days = _business_days_from("2015-01-01")
    assert days[0] == "2015-01-02"
    usd = [float(_TABLE[d]["USD"]) for d in days[: 2001 + 1]]
    # Row t is business day t + 1 of the segment; its lag 1 is business day t.
    assert ds.x[0, -1] == usd[0]  # USD on the first business day >= 2015-01-01 (lag 1)
    assert ds.y[0, 0] == usd[1]  # ... and the target at row 0 is the next business day
    np.testing.assert_array_equal(ds.y[:, 0], usd[1:])
    np.testing.assert_array_equal(ds.x[:, 8], usd[1:])  # USD lag 0, not normalised
    np.testing.assert_array_equal(ds.x[:, 9], usd[:-1])  # USD lag 1
    # Inputs: each currency at lags 0 and 1, divided by its max over the used rows.
    for j, code in enumerate(("GBP", "JPY", "CHF", "AUD")):
        raw = np.array([float(_TABLE[d][code]) for d in days[: 2001 + 1]])
        np.testing.assert_allclose(ds.x[:, 2 * j], raw[1:] / raw.max(), rtol=1e-15)
        np.testing.assert_allclose(ds.x[:, 2 * j + 1], raw[:-1] / raw.max(), rtol=1e-15)
        assert max(ds.x[:, 2 * j].max(), ds.x[:, 2 * j + 1].max()) == 1.0
        assert ds.x[:, 2 * j : 2 * j + 2].max() <= 1.0
    np.testing.assert_array_equal(ds.x[1:, 1::2], ds.x[:-1, 0::2])  # lag-1 = previous lag-0


def test_ecb_options():
    ds = ecb(start="2020-03-01", n_rows=50, target="GBP", inputs=("USD",))
    days = _business_days_from("2020-03-01")
    assert (ds.n_rows, ds.d_x, ds.d) == (50, 4, 1)
    assert ds.y[0, 0] == float(_TABLE[days[1]]["GBP"])
    assert ds.x[-1, 2] == float(_TABLE[days[50]]["GBP"])
    last = _DATES[-1]
    tail = ecb(start=_DATES[-3], n_rows=2)
    assert tail.y[-1, 0] == float(_TABLE[last]["USD"])


def test_ecb_errors():
    with pytest.raises(ValueError, match=r"unknown currency 'XYZ'; available .*USD"):
        ecb(target="XYZ")
    with pytest.raises(ValueError, match=r"unknown currency 'EUR'"):
        ecb(inputs=("EUR",))
    with pytest.raises(ValueError, match="target 'USD' must not also be an input"):
        ecb(inputs=("USD", "GBP"))
    with pytest.raises(ValueError, match="start=2999-01-01 is after the last ECB date"):
        ecb(start="2999-01-01")
    with pytest.raises(ValueError, match="start='2015/01/01' is not an ISO date"):
        ecb(start="2015/01/01")
    available = len(_business_days_from("2015-01-01")) - 1
    with pytest.raises(ValueError, match=f"n_rows=99999 exceeds the {available} rows available"):
        ecb(n_rows=99999)
    with pytest.raises(ValueError, match="n_rows=1 must be at least 2"):
        ecb(n_rows=1)
    # ISK has no ECB rate from late 2008 on: the first N/A after 2008-01-01 is named.
    days = _business_days_from("2008-01-01")
    first_na = next(d for d in days if _TABLE[d]["ISK"] == "N/A")
    with pytest.raises(ValueError, match=f"ISK is 'N/A' on {first_na} inside the selected"):
        ecb(start="2008-01-01", n_rows=500, inputs=("GBP", "ISK"))


# --------------------------------------------------------------------------------------------
# Dataset validation


def test_dataset_converts_and_is_read_only():
    ds = Dataset("toy", x=np.arange(6).reshape(3, 2), y=np.arange(3).reshape(3, 1))
    assert ds.x.dtype == np.float64 and ds.y.dtype == np.float64
    assert (ds.n_rows, ds.d_x, ds.d) == (3, 2, 1)
    with pytest.raises(ValueError):
        ds.x[0, 0] = 7.0
    source = np.zeros((2, 1))
    Dataset("copy", x=source, y=source)
    source[0, 0] = 1.0  # the caller's array stays writable and is not aliased


def test_dataset_validation_errors():
    good = np.zeros((4, 1))
    bad = np.zeros((20, 1))
    bad[17, 0] = np.nan
    with pytest.raises(
        ValueError, match="dataset 'ecb': y has a non-finite value nan at row 17, column 0"
    ):
        Dataset("ecb", x=np.zeros((20, 2)), y=bad)
    x_inf = np.zeros((4, 3))
    x_inf[2, 1] = -np.inf
    x_inf[3, 0] = np.nan
    with pytest.raises(ValueError, match="x has a non-finite value -inf at row 2, column 1"):
        Dataset("toy", x=x_inf, y=good)
    with pytest.raises(ValueError, match=r"dataset 'toy': x must be 2-D .* got shape \(4,\)"):
        Dataset("toy", x=np.zeros(4), y=good)
    with pytest.raises(ValueError, match="same number of rows, got x with 3 and y with 4"):
        Dataset("toy", x=np.zeros((3, 1)), y=good)
    with pytest.raises(ValueError, match="needs at least 2 rows .* got 1"):
        Dataset("toy", x=np.zeros((1, 1)), y=np.zeros((1, 1)))
    with pytest.raises(ValueError, match="y has no columns"):
        Dataset("toy", x=good, y=np.zeros((4, 0)))


def test_dataset_head():
    ds = concept()
    h = ds.head(5)
    assert (h.name, h.n_rows, h.d_x, h.d, h.credit) == ("concept", 5, 3, 2, "")
    np.testing.assert_array_equal(h.x, ds.x[:5])
    np.testing.assert_array_equal(h.y, ds.y[:5])
    assert ds.head(ds.n_rows).n_rows == ds.n_rows
    with pytest.raises(ValueError, match="n_rows=1 must be at least 2"):
        ds.head(1)
    with pytest.raises(ValueError, match="n_rows=202 exceeds the 201 rows of dataset 'concept'"):
        ds.head(202)


def test_constant_stretches_and_outliers_are_found_with_their_rows():
    """A stuck sensor and a spike on a smooth series, against hand-placed positions; a
    level shift is not a spike; the built-in ETT series has its stuck stretch named."""
    from memoa_jax.data._checks import constant_stretches, describe_stretches, outlier_rows

    t = np.arange(200.0)
    y = np.sin(t / 7)[:, None]
    y[50:80] = y[50]  # stuck for 30 rows: rows 50..79
    y[120] += 5.0  # a spike
    y[150:] += 3.0  # a level shift, not a spike
    assert constant_stretches(y, min_rows=12) == [(50, 80)]
    assert constant_stretches(y, min_rows=31) == []
    assert outlier_rows(y) == [120]
    lines = describe_stretches(y)
    assert lines[0].startswith("the target is constant over rows 50-79 (30 rows)")
    assert "outlier row(s)" in lines[1] and lines[1].endswith(": 120")
    assert describe_stretches(np.sin(t / 7)[:, None]) == []


def _ett_file_present() -> bool:
    from memoa_jax.data._files import data_dir

    return (data_dir() / "ett" / "ETTh1.csv").is_file()


@pytest.mark.skipif(not _ett_file_present(), reason="real ETTh1 file absent (../shared/data)")
def test_ett_has_a_stuck_stretch_and_a_daily_season():
    from memoa_jax.data._checks import constant_stretches

    ett = load_dataset("ett")
    assert ett.season == 24
    assert any(a <= 720 < b for a, b in constant_stretches(ett.y))


def test_dataset_season():
    assert load_dataset("periodic").season == 4 and load_dataset("logistic").season == 0
    with pytest.raises(ValueError, match="season must be a non-negative integer .* got -1"):
        Dataset("s", np.zeros((3, 1)), np.zeros((3, 1)), season=-1)
