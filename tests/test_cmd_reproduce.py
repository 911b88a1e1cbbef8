"""`memoa reproduce` on a tiny configuration: outputs, their internal consistency, resume."""

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from memoa_jax.cli import main
from memoa_jax.data import load_dataset

TINY = ["reproduce", "--quick", "--datasets", "logistic", "--rows", "30", "--no-progress"]
TINY += ["--only", "main_table,trajectories,lambda_and_n"]  # tune_val, esn_table: slow test


def _mtimes(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_reproduce_tiny_outputs_and_resume(tmp_path, capsys):
    out = tmp_path / "fig"
    assert main([*TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    files = ["main_table.md", "main_table.json", "main_table.png", "lambda_and_n.json"]
    files += ["lambda_and_n.png", "trajectories/logistic.png", "trajectories/logistic.json"]
    for rel in files:
        assert (out / rel).is_file() and str(out / rel) in printed, rel
    assert not [p for p in out.rglob(".*")], "temporary files left behind"

    table = json.loads((out / "main_table.json").read_text())
    assert table["config"]["sizes"] == [5, 100] and table["published"]["logistic"] == 0.1883
    md = (out / "main_table.md").read_text()
    assert "published (method/metric unstated)" in md and "| 0.1883 |" in md
    for cell in table["cells"]:
        assert cell["rows"] == 30
        assert math.isfinite(cell["methods"]["memoa"]["worst_rmse"]["mean"])
        # G1 at FedMOE's own settings for its greedy client, in a simulation of its own
        assert cell["hp"]["g1"]["features"] == 3 and cell["hp"]["g1"]["alpha"] == 0.01
        s = cell["methods"]["memoa"]
        assert s["p50_rmse"]["mean"] <= s["p90_rmse"]["mean"] <= s["worst_rmse"]["mean"]
        assert 0.0 <= s["frozen_share"]["mean"] <= 1.0
        assert set(cell["persistence"]) == {"lag1", f"lag{cell['window'] + 1}"}
    assert "G1 local ridge (FedMOE's settings)" in md and "worst mover" in md

    # summary.csv (issue 28 item 6): tidy, table x row x column x value, the JSON's numbers
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["table", "row", "column", "value"]
    got = {(r["table"], r["row"], r["column"]): float(r["value"]) for r in rows}
    assert {r["table"] for r in rows} == {"main_table", "lambda_and_n", "trajectories"}
    for cell in table["cells"]:
        row = f"logistic N={cell['n_agents']}"
        for m, fields in cell["methods"].items():
            mean = fields["server_rmse"]["mean"]
            assert got[("main_table", row, f"{m} server_rmse")] == mean
        assert got[("main_table", row, "persistence lag1")] == cell["persistence"]["lag1"]

    # trajectories: the recorded series reproduce the run's own metrics
    traj = json.loads((out / "trajectories" / "logistic.json").read_text())
    y = load_dataset("logistic").y[1:30, 0]
    np.testing.assert_allclose(traj["target"], y, rtol=1e-6)
    for m in ("memoa", traj["best_greedy"]):
        s = traj["summary"][m]
        worst = np.sqrt(np.mean((y - np.array(traj[m]["worst_agent_pred"])) ** 2))
        server = np.sqrt(np.mean((y - np.array(traj[m]["server_pred"])) ** 2))
        assert worst == pytest.approx(s["worst_rmse"], rel=1e-5)
        assert server == pytest.approx(s["server_rmse"], rel=1e-5)
        assert got[("trajectories", "logistic", f"{m} server_rmse")] == s["server_rmse"]

    # λ = 0 makes MEMOA the independent tracker G3 (same draws): equal to the last digit
    lam = json.loads((out / "lambda_and_n.json").read_text())
    at0 = lam["results"]["logistic"]["lam"][lam["config"]["lams"].index(0.0)]
    worst = at0["memoa"]["worst_rmse"]["mean"]
    assert got[("lambda_and_n", "logistic lam=0.0", "memoa worst_rmse")] == worst
    for f in ("worst_rmse", "server_rmse", "avg_rmse"):
        assert at0["memoa"][f]["mean"] == pytest.approx(at0["g3_independent"][f]["mean"], rel=1e-12)

    # an interrupted run (two outputs lost) resumes: the rest is kept as it was
    before = _mtimes(out)
    (out / "trajectories" / "logistic.json").unlink()
    (out / "main_table.md").unlink()
    assert main([*TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    after = _mtimes(out)
    assert (out / "trajectories" / "logistic.json").is_file() and (out / "main_table.md").is_file()
    for p in (out / "main_table_cells").iterdir():
        assert after[p] == before[p], p  # cells are not recomputed
    assert after[out / "lambda_and_n.json"] == before[out / "lambda_and_n.json"]
    assert f"{out / 'lambda_and_n.json'}  (already complete, kept)" in printed
    again = json.loads((out / "trajectories" / "logistic.json").read_text())
    assert again == traj  # fixed seed: the same numbers


@pytest.mark.parametrize(
    "args, match",
    [
        (["--only", "main_table,foo"], "unknown experiment 'foo'"),
        (["--only", ""], "--only is empty"),
        (["--datasets", ""], "--datasets is empty"),
        (["--datasets", "nope"], "unknown dataset 'nope'"),
        (["--rows", "3"], "--rows must be at least 10, got 3"),
        (
            ["--datasets", "boc", "--data-dir", "EMPTY"],
            "bank_of_canada_exchange_rates.csv' not found",
        ),
    ],
)
def test_reproduce_bad_input(tmp_path, capsys, monkeypatch, args, match):
    monkeypatch.delenv("MEMOA_DATA", raising=False)
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    out = tmp_path / "fig"
    assert main(["reproduce", "--quick", "--no-progress", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not out.exists()


@pytest.mark.slow
def test_reproduce_quick_runs_every_experiment(tmp_path):
    """Every experiment script, the readings table included, runs end to end (its speed is
    not a test's business: `memoa reproduce` prints its time)."""
    out = tmp_path / "q"
    assert main(["reproduce", "--quick", "--no-progress", "--out", str(out)]) == 0
    for name in ("main_table.md", "readings.md", "tune_val.md", "esn_table.md"):
        assert (out / name).is_file(), name


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture
def main_table(monkeypatch):
    """`experiments/main_table.py` as a module, with the `_common` beside it."""
    monkeypatch.setattr(sys, "path", [str(EXPERIMENTS), *sys.path])
    common = sys.modules.get("_common")
    if common is not None and Path(common.__file__).resolve().parent != EXPERIMENTS:
        monkeypatch.delitem(sys.modules, "_common")  # a stand-in left by another test
    spec = importlib.util.spec_from_file_location(
        "main_table_under_test", EXPERIMENTS / "main_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_main_table_median_iqr_and_headline(main_table):
    C = main_table.C
    v = np.random.default_rng(0).lognormal(-3.6, 0.2, size=11)
    q = C.median_iqr(v)
    assert [q["q25"], q["median"], q["q75"]] == list(np.percentile(v, [25, 50, 75]))
    # a diverged (NaN) seed counts as +inf: the largest, not dropped
    w = np.append(v[:10], np.nan)
    assert C.median_iqr(w)["median"] == np.median(np.append(v[:10], np.inf))
    # the ETT case: one tail draw (most agents frozen) among few seeds moves the mean
    tail = [0.027] * 9 + [0.046]
    assert C.center(C.mean_std(tail[-3:])) == pytest.approx(np.mean(tail[-3:]), rel=1e-15)
    assert C.center(C.mean_std(tail)) == 0.027  # 10 seeds: the median
    cell = dict(persistence=dict(lag1=0.0264), n_agents=5)
    assert main_table.fmt_stats(cell, C.mean_std(tail)) == "0.0270 [0.0270, 0.0270]"
    assert main_table.fmt_stats(cell, C.mean_std(tail[-3:])).startswith("0.0333 ± 0.0090")


def test_main_table_seeds_per_size_keep_the_large_cells(main_table):
    cfg = main_table.config(False)
    small, large = (main_table.cell_config(cfg, "ett", n) for n in cfg["sizes"])
    assert len(small["seeds"]) >= main_table.C.MEDIAN_MIN_SEEDS and large["seeds"] == [0, 1, 2]
    # the N = 1000 cells are kept with the configuration they were computed under
    assert set(large) == {"sizes", "seeds", "rows", "lam", "g1_params", "methods"}
    # but the listed ones (one seed's draw dominated a mean over 3) take the small N's seeds
    many = main_table.MANY_SEEDS_CELLS
    assert ("concept", 1000) in many and all(n > main_table.FEDMOE_GAME_MAX_N for _, n in many)
    for d, n in many:
        assert main_table.cell_config(cfg, d, n) == dict(large, seeds=small["seeds"])
    per_dataset = len(small["seeds"]) + 3
    extra = len(many) * (len(small["seeds"]) - 3)
    assert main_table.units(False) == len(cfg["datasets"]) * per_dataset + extra
    # --quick: one seed everywhere, no larger cell listed
    quick = main_table.config(True)
    assert quick["many_seeds_cells"] == [] and main_table.units(True) == len(quick["datasets"]) * 2
    assert main_table.many_seeds_text(cfg) == "Concept at N = 1000, Concept drift at N = 1000"
    # esn_table renders its table with `markdown` and a configuration without the list
    esn = importlib.util.spec_from_file_location("esn_under_test", EXPERIMENTS / "esn_table.py")
    assert esn is not None and esn.loader is not None
    esn_table = importlib.util.module_from_spec(esn)
    esn.loader.exec_module(esn_table)
    assert main_table.many_seeds_text(esn_table.config(False)) == ""


def test_main_table_yardstick(main_table):
    C, p1 = main_table.C, 0.02
    server = {
        "memoa": [0.03] * 9 + [0.09],
        "g1_ridge": [1e30] * 10,  # above 10⁶ × persistence: diverged
        "g2_myopic": list(np.linspace(0.01, 0.019, 10)),
    }
    cell = dict(persistence=dict(lag1=p1), n_agents=5)
    cell["methods"] = {m: dict(server_rmse=C.mean_std(v)) for m, v in server.items()}
    cell["fedmoe_game"] = dict(compat=dict(server_rmse=C.mean_std([0.025, 0.026, 0.03])))
    ys = main_table.yardstick(cell)
    assert list(ys) == ["memoa", "g1_ridge", "g2_myopic", "fedmoe_game"]
    assert ys["memoa"]["ratio"] == pytest.approx(1.5, rel=1e-14) and not ys["memoa"]["diverged"]
    assert ys["g1_ridge"]["diverged"]
    g2 = np.percentile(server["g2_myopic"], [25, 50, 75]) / p1
    assert [ys["g2_myopic"][k] for k in ("lo", "ratio", "hi")] == pytest.approx(g2, rel=1e-14)
    assert ys["fedmoe_game"]["ratio"] == pytest.approx(np.mean([0.025, 0.026, 0.03]) / p1)
