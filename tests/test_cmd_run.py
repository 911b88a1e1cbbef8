"""`memoa run`: one compilation per simulation, the methods' order, G1 at FedMOE's settings,
strict results.json with a diverged method, the new summary columns, a CSV of one's own."""

import json
import math

import chex
import numpy as np
import pytest

import memoa_jax._loop as loop
from memoa_jax.cli import main
from memoa_jax.cli._outputs import strict_json

TINY = ["run", "--dataset", "periodic", "-n", "4", "--rows", "30", "--no-progress"]


def _run(tmp_path, *args, name="out"):
    out = tmp_path / name
    assert main([*TINY, *args, "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text()), out


def test_compiles_each_simulation_once_in_the_methods_order(tmp_path, capsys, monkeypatch):
    """Five methods, two seeds: two traces (the game's simulation and G1's own), and the
    table and results.json list the methods as --methods gave them."""
    # the compiled body of `simulate` computes the persistence once per trace
    monkeypatch.setattr(
        loop, "persistence_rmse", chex.assert_max_traces(loop.persistence_rmse, n=2)
    )
    order = "g4_follow_mean,memoa,g1_ridge,g3_independent,g2_myopic"
    rec, out = _run(tmp_path, "--seeds", "2", "--methods", order)
    assert list(rec["summary"]) == order.split(",")
    assert rec["config"]["methods"] == order.split(",")
    text = capsys.readouterr().out
    table = text.split("N = 4 agents")[1].splitlines()
    rows = [line.split()[0] for line in table if line.split()[:1]]
    assert [r for r in rows if r in order.split(",")][:5] == order.split(",")
    sims = rec["timing"]["simulations"]
    assert [s["methods"] for s in sims] == [
        ["g4_follow_mean", "memoa", "g3_independent", "g2_myopic"],
        ["g1_ridge"],
    ]
    assert "compiled once in" in text and "of which compilation" in text
    # the worst agent's index per seed, never averaged
    assert len(rec["summary"]["memoa"]["worst_agent"]["per_seed"]) == 2
    assert "mean" not in rec["summary"]["memoa"]["worst_agent"]
    # G1 at FedMOE's settings (periodic: alpha .1, sigma 1), with their source
    assert rec["config"]["g1"]["alpha"] == 0.1 and "FedMOE" in rec["config"]["g1"]["source"]


def test_g1_params_game_and_readings_run_in_one_simulation(tmp_path, monkeypatch):
    monkeypatch.setattr(
        loop, "persistence_rmse", chex.assert_max_traces(loop.persistence_rmse, n=1)
    )
    args = ["--seeds", "1", "--methods", "memoa,g1_ridge", "--g1-params", "game"]
    args += ["--replay-base", "observed", "--replay-control", "gains", "--moments", "own"]
    rec, _ = _run(tmp_path, *args)
    assert [s["methods"] for s in rec["timing"]["simulations"]] == [["memoa", "g1_ridge"]]
    cfg = rec["config"]
    assert (cfg["replay_base"], cfg["replay_control"], cfg["moments"]) == (
        "observed",
        "gains",
        "own",
    )
    assert "g1" not in cfg


def test_summary_columns_and_one_seed_without_plus_minus(tmp_path, capsys):
    rec, out = _run(tmp_path, "--seeds", "1", "--methods", "memoa", "--wide")
    text = capsys.readouterr().out
    for col in ("p50", "p90", "p99", "worst mover", "frozen agents", "persist. lag T+1"):
        assert col in text, col
    assert "±" not in text
    # the first table fits 100 columns; persistence is a row of it, with the verdict below
    first = text.split("RMSE:\n")[1].split("verdict:")[0]
    assert max(len(line) for line in first.splitlines()) <= 100
    assert "persistence (lag 1)" in first and "persistence (lag 4)" in first  # periodic
    assert "verdict: best server memoa" in text
    # summary.csv: tidy, one row per method x seed x metric, persistence as methods
    import csv

    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"method", "seed", "metric", "value"}
    by = {(r["method"], r["metric"]): float(r["value"]) for r in rows if r["value"]}
    assert by[("memoa", "avg_rmse")] == rec["summary"]["memoa"]["avg_rmse"]["per_seed"][0]
    lag1 = rec["summary"]["memoa"]["persistence"]["lag_1"]
    assert by[("persistence_lag_1", "server_rmse")] == lag1
    s = rec["summary"]["memoa"]
    for f in ("p50_rmse", "p90_rmse", "p99_rmse", "frozen_share", "worst_moving_rmse"):
        assert len(s[f]["per_seed"]) == 1
    p = s["persistence"]
    assert p["T1"] == rec["config"]["window"] + 1 and p["lag_1"] > 0 and p["lag_T1"] > 0


def test_diverged_method_strict_json_and_label(tmp_path, capsys):
    """An online-gradient method with an absurd learning rate overflows float32: the table
    says "diverged (k of N agents)", results.json is strict JSON with null and a reason."""
    args = ["--seeds", "1", "--methods", "memoa,ogd_sgd", "--ogd-lr", "1e20"]
    rec, out = _run(tmp_path, *args, "--dtype", "float32")
    text = capsys.readouterr().out
    assert "diverged (4 of 4 agents)" in text
    tables = text.split("N = 4 agents")[1].split("verdict:")[0]
    assert "e+" not in tables  # no raw 1e77
    # (a divergence is told from a failed check by the result's status: no second compile)
    assert "ogd_sgd: compiled once" in text
    raw = (out / "results.json").read_text()
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    worst = rec["summary"]["ogd_sgd"]["worst_rmse"]
    assert worst["per_seed"] == [None] and "diverged" in worst["per_seed_null_reason"]
    assert rec["summary"]["ogd_sgd"]["n_diverged"]["per_seed"] == [4]
    assert rec["summary"]["memoa"]["worst_rmse"]["per_seed"][0] > 0  # the others intact
    assert (out / "run.png").stat().st_size > 10_000


def test_strict_json():
    text = strict_json(dict(a=1.5, b=math.inf, c=[1.0, math.nan], d=dict(e=-math.inf)))
    rec = json.loads(text)
    assert rec["a"] == 1.5 and rec["b"] is None and "inf" in rec["b_null_reason"]
    assert rec["c"] == [1.0, None] and rec["c_null_reason"].startswith("1 of 2 entries")
    assert rec["d"]["e"] is None and "d_null_reason" not in rec


def test_plot_run_clips_a_diverged_method():
    from memoa_jax.plots import plot_run

    n = 60
    good = dict(mse=np.full(n, 1e-4), worst_se=np.full(n, 4e-4), server_se=np.full(n, 1e-4))
    bad = {k: v.copy() for k, v in good.items()}
    for v in bad.values():
        v[20:] = np.inf
        v[15:20] = 1e160
    fig = plot_run(dict(memoa=good, g1_ridge=bad), title="t", limit=1e6 * 0.01)
    ax = fig.axes[0]
    assert ax.get_ylim()[1] < 1e-1  # set by memoa, not by the overflow
    labels = [line.get_label() for line in ax.get_lines()]
    assert "g1_ridge: diverged at step 15 (clipped)" in labels
    assert any("g1_ridge diverged at step 15" in t.get_text() for t in ax.texts)
    assert "yₜ₊₁" in ax.get_xlabel()


def test_plot_run_draws_persistence_and_clips_a_stuck_stretch():
    """A stuck stretch (errors ~1e-17) does not stretch the log axis over 16 decades: the
    axis stops a few decades under the median, the clipped values are counted on the panel,
    and the lag-1 persistence is a grey line in both panels."""
    from memoa_jax.plots import plot_run

    n = 80
    se = np.full(n, 1e-4)
    se[30:50] = 1e-34  # RMSE 1e-17
    good = dict(mse=se.copy(), worst_se=4 * se, server_se=se.copy())
    fig = plot_run(dict(memoa=good), title="t", persistence=2 * se, decades=3.0)
    for ax in fig.axes[:2]:
        lo = ax.get_ylim()[0]
        assert 1e-6 < lo < 1e-4  # median 1e-2 (RMSE), three decades under it, not 1e-17
        assert "persistence (lag 1)" in [line.get_label() for line in ax.get_lines()]
        assert any("drawn at the bottom edge" in t.get_text() for t in ax.texts)


def test_spread_digits_follow_the_spread():
    from memoa_jax.cli._run_tables import spread

    assert spread(0.008092, 9.4e-05) == "0.008092 ±1.2%"
    assert spread(0.02561, 3.5e-18) == "0.02561"  # round-off between seeds: no "± 1e-18"
    assert spread(0.0493, 0.009) == "0.0493 ±18%"  # last digit: the spread's second
    assert spread(0.5, 0.0) == "0.5"


def test_verdict_names_what_beats_persistence():
    from memoa_jax.cli._run_tables import verdict

    def s(server, lag1=0.02):
        p = dict(lag_1=lag1, seasonal=None, season=None, lag_T1=lag1, T1=3)
        return dict(server_rmse=dict(mean=server, std=0.0, per_seed=[server]), persistence=p)

    line = verdict(dict(memoa=s(0.03), g2_myopic=s(0.025)))
    assert line == (
        "verdict: best server g2_myopic 0.025 = 1.25 × persistence (lag 1) (0.02); "
        "no method beats persistence on this series"
    )
    assert verdict(dict(memoa=s(0.01), g2_myopic=s(0.025))).endswith("; memoa beats it")
    assert "every method diverged" in verdict(dict(g1_ridge=s(math.inf)))


def test_frozen_warning_names_the_cause_and_the_option(capsys):
    from memoa_jax.cli._run_tables import print_frozen_warning

    share = lambda v: dict(frozen_share=dict(mean=v, per_seed=[v]))
    print_frozen_warning(dict(memoa=share(0.05)), 1)
    assert capsys.readouterr().err == ""
    print_frozen_warning(dict(memoa=share(0.05), g2_myopic=share(0.306)), 1)
    err = capsys.readouterr().err
    assert err.startswith("warning: 30.6 % of g2_myopic's agents never moved")
    assert "--features, now 1" in err and err.count("\n") == 1


def _ett_like(path, n=40):
    lines = ['\ufeff"date","HUFL", "LUFL","OT"']
    for t in range(n):
        v = 30 + 3 * math.sin(t / 3)
        lines.append(f"2016-07-{1 + t // 24:02d} {t % 24:02d}:00:00, {5 + t % 7}, 2.5,{v:.3f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_own_csv_with_bom_quotes_and_a_date_column(tmp_path, capsys):
    csv = _ett_like(tmp_path / "ett_like.csv")
    args = ["run", "--csv", str(csv), "--target", "OT", "--inputs", "HUFL"]
    args += ["--lags", "0,1,2", "--target-lags", "0,1", "--scale", "max", "--preset", "ett"]
    args += ["--rows", "30", "-n", "3", "--seeds", "1", "--methods", "memoa,g1_ridge"]
    out = tmp_path / "out"
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "column 'date' (dates) indexes the series" in text
    assert "not used (not in the inputs): 'LUFL'" in text
    rec = json.loads((out / "results.json").read_text())
    ds = rec["dataset"]
    assert (ds["rows"], ds["d_x"], ds["first"]) == (30, 5, "2016-07-01 00:00:00")
    assert rec["config"]["preset"] == "ett" and rec["config"]["window"] == 3  # ETT's T
    assert rec["config"]["g1"]["features"] == 2  # FedMOE's ETT greedy client: d_z 2


def test_no_compile_cache(tmp_path):
    rec, _ = _run(tmp_path, "--seeds", "1", "--methods", "g1_ridge", "--no-compile-cache")
    assert rec["compilation_cache"] is None


@pytest.mark.slow
def test_second_run_reads_the_compilation_cache(tmp_path):
    """Two identical processes: the second reads the compiled simulations from JAX's
    persistent cache (it still traces and lowers the loop), spends a share of the first's
    compile time, and gets the same numbers."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, MEMOA_JAX_CACHE=str(tmp_path / "cache"))
    times, recs = [], []
    for i in range(2):
        out = tmp_path / f"o{i}"
        cmd = [sys.executable, "-m", "memoa_jax", *TINY, "--seeds", "1", "--out", str(out)]
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        rec = json.loads((out / "results.json").read_text())
        times.append(sum(s["compile_s"] for s in rec["timing"]["simulations"]))
        recs.append(rec)
    assert [s["read_from_cache"] for s in recs[1]["timing"]["simulations"]] == [True, True]
    assert times[1] < 0.6 * times[0], times
    assert (recs[0]["summary"], recs[0]["steps"]) == (recs[1]["summary"], recs[1]["steps"])


def test_compiled_simulation_is_read_from_jax_cache(tmp_path, monkeypatch):
    """The compiled simulation has no host callback, so JAX's persistent cache keeps it: a
    second compilation of the same simulation reads XLA's part from it and computes the same
    bits; another static field (N) is another program."""
    import argparse

    import jax
    from jax._src import compilation_cache

    from memoa_jax import Runner
    from memoa_jax.cli import _parser
    from memoa_jax.cli._build import build
    from memoa_jax.cli._cache import enable_compile_cache

    def program(*extra):
        args = _parser().parse_args([*TINY, "--methods", "g1_ridge", *extra])
        built = build(args)
        x, y = jax.numpy.asarray(built.data.x), jax.numpy.asarray(built.data.y)
        compiled, seconds, tracing, hit = Runner(throw=False).compile(built.sims[0], x, y)
        assert 0 < tracing <= seconds
        return hit, compiled(built.sims[0], x, y, key=jax.random.key(3))

    old = jax.config.jax_compilation_cache_dir  # pyright: ignore[reportAttributeAccessIssue]
    monkeypatch.setenv("MEMOA_JAX_CACHE", str(tmp_path / "cache"))
    enable_compile_cache(argparse.Namespace())  # a JAX cache of this test's own
    try:
        (first, res), (second, again) = program(), program()
        assert (first, second) == (False, True)
        chex.assert_trees_all_equal(res, again)
        assert not program("-n", "5")[0]
        assert not list((tmp_path / "cache").glob("memoa-programs*"))  # no pickles kept
    finally:
        jax.config.update("jax_compilation_cache_dir", old)
        compilation_cache.reset_cache()


def test_failed_runtime_check_is_reported_in_one_line(tmp_path, capsys):
    """The compiled loop carries its checks' status (no host callback, so the program is
    cached): a singular solve is still named, in one line, exit 1."""
    out = tmp_path / "out"
    args = [*TINY, "--methods", "memoa", "--sigma", "1e200", "--seeds", "1", "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is singular at window step" in err[0], err
    assert not out.exists()


def test_fedmoe_game_runs_beside_the_others(tmp_path, capsys):
    """`--methods ...,fedmoe_game`: FedMOE's own game on the same data and key, its numbers
    those of `simulate_fedmoe_game` itself; refused where it cannot run."""
    import jax
    import jax.numpy as jnp

    import memoa_jax as mj
    from memoa_jax.data import load_dataset, preset

    rec, _ = _run(tmp_path, "--seeds", "1", "--methods", "memoa,fedmoe_game", "--fedmoe-compat")
    assert list(rec["summary"]) == ["memoa", "fedmoe_game"]
    hp = preset("periodic")
    data = load_dataset("periodic").head(30)
    direct = mj.simulate_fedmoe_game(
        mj.RFNEncoder(d=data.d, d_x=data.d_x, p=hp.features, sigma=hp.sigma),
        jnp.asarray(data.x),
        jnp.asarray(data.y),
        key=jax.random.key(0),
        n_agents=4,
        gamma=hp.gamma,
        alpha=hp.alpha,
        window=hp.window,
        ridge_window=hp.ridge_window,
        fedmoe_compat=True,
    )
    got = rec["summary"]["fedmoe_game"]
    assert got["server_rmse"]["mean"] == pytest.approx(float(direct.server_rmse), rel=1e-12)
    assert got["worst_rmse"]["mean"] == pytest.approx(float(direct.worst_rmse), rel=1e-12)
    assert got["worst_cost"]["per_seed"] == [None]  # not the simulator's cost: null + reason
    for bad, match in (
        (["-n", "40"], "N ≤ 32"),
        (["--fedmoe-compat"], "add it to --methods"),
    ):
        methods = "memoa,fedmoe_game" if "-n" in bad else "memoa"
        capsys.readouterr()
        assert main([*TINY, "--methods", methods, *bad, "--out", str(tmp_path / "x")]) == 2
        assert match in capsys.readouterr().err
        assert not (tmp_path / "x").exists()
