"""`memoa bench` end to end on tiny sizes (the figures it prints are measurements, not
asserted here), and its bad input."""

import csv
import json

import pytest

from memoa_jax.cli import main


def test_bench_writes_json_and_figure(tmp_path, capsys):
    args = ["bench", "--sizes", "100,300", "--loop-max", "100", "--steps", "6", "--repeat", "1"]
    args += ["--dense-sizes", "2,3"]
    assert main([*args, "--copy-mib", "8", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "full online loop" in text and "bare policy step" in text
    rec = json.loads((tmp_path / "bench.json").read_text())
    assert rec["copy"]["bytes_per_s"] > 0
    small, large = rec["points"]
    assert small["n_agents"] == 100 and large["n_agents"] == 300 and "loop" not in large
    loop = small["loop"]
    for k in ("trace_s", "compile_s", "stablehlo_bytes", "run_s", "numpy_run_s"):
        assert loop[k] > 0, k
    assert loop["speedup_vs_numpy"] > 0 and loop["roofline_fraction"] > 0
    assert 0 < loop["memoa_worst_rmse"] < 10
    for p in (small, large):  # the policy step is checked against NumPy and the Python loop
        assert p["policy"]["speedup_vs_numpy"] > 0 and p["policy"]["speedup_vs_python"] > 0
        assert 0 < p["policy"]["roofline_fraction"]
    assert (tmp_path / "bench_throughput.png").stat().st_size > 10_000
    nsh = rec["nash"]
    assert [r["n_agents"] for r in nsh["dense"]] == [2, 3]
    assert all(r["run_s"] > 0 for r in nsh["dense"]) and nsh["mean_field_s"] > 0
    assert "Nash solves" in text
    # summary.csv (issue 28 item 6): tidy, part x state x N x metric, bench.json's numbers
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["part", "state", "n_agents", "metric", "value"]
    got = {(r["part"], r["state"], r["n_agents"], r["metric"]): float(r["value"]) for r in rows}
    for k in ("run_s", "compile_s", "agent_steps_per_s", "speedup_vs_numpy"):
        assert got[("loop", "stored", "100", k)] == loop[k], k
    for p in (small, large):
        assert got[("policy", "", str(p["n_agents"]), "run_s")] == p["policy"]["run_s"]
    assert not [k for k in got if k[0] == "loop" and k[2] == "300"]  # above --loop-max
    for r in nsh["dense"]:
        assert got[("nash", "", str(r["n_agents"]), "dense_s")] == r["run_s"]
    assert got[("copy", "", "", "bytes_per_s")] == rec["copy"]["bytes_per_s"]


@pytest.mark.parametrize(
    "args, match",
    [
        (["--steps", "2"], "--steps must be at least 4 (game window 3), got 2"),
        (["--steps", "900"], "--steps must be below 201, got 900"),
        (["--repeat", "0"], "--repeat must be at least 1, got 0"),
        (["--sizes", "0"], "integers >= 1, got '0'"),
        (["--numpy-max", "nan"], "--numpy-max must be a number >= 0 (0: never), got nan"),
        (["--loop-max", "-1"], "--loop-max must be a number >= 0 (0: never), got -1.0"),
        (["--dense-sizes", "2,x"], "--dense-sizes: 'x' is not a number"),
        (["--tricks", "rows"], "--tricks rows needs --kernels both (got --kernels tuned)"),
        (["--kernels", "both", "--tricks", "rows,fast"], "--tricks: unknown 'fast' (the tricks"),
        (["--kernels", "both", "--tricks", ","], "--tricks: unknown empty list"),
        (["--carry-draws"], "--carry-draws needs --state lean or both (got --state stored)"),
    ],
)
def test_bench_bad_input(tmp_path, capsys, args, match):
    assert main(["bench", *args, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not (tmp_path / "b").exists()


@pytest.mark.slow  # the default run stays under 10 min on 2 cores; run with -m slow
def test_bench_float32_in_a_fresh_process(tmp_path):
    """float32 runs without `jax_enable_x64` (the test session enables it), NumPy beside it."""
    import subprocess
    import sys

    args = [
        "--sizes",
        "100",
        "--steps",
        "5",
        "--repeat",
        "1",
        "--copy-mib",
        "4",
        "--dense-sizes",
        "2",
    ]
    cmd = [sys.executable, "-m", "memoa_jax", "bench", "--dtype", "float32", *args]
    res = subprocess.run([*cmd, "--out", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    rec = json.loads((tmp_path / "bench.json").read_text())
    assert rec["dtype"] == "float32" and rec["points"][0]["loop"]["speedup_vs_numpy"] > 0


@pytest.mark.slow  # three compilations of the full loop in each state
def test_bench_kernels_in_both_states(tmp_path, capsys):
    """`--kernels both --state both --tricks apart`: the tuned loop, the plain path and the
    tuned one without `apart`, in the stored state and in the lean one, a table for each."""
    args = ["bench", "--sizes", "64", "--steps", "5", "--repeat", "1", "--copy-mib", "4"]
    args += ["--dense-sizes", "none", "--numpy-max", "0", "--python-max", "0"]
    args += ["--kernels", "both", "--kernels-n", "64", "--state", "both", "--tricks", "apart"]
    assert main([*args, "--no-progress", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "stored state; a trick's gain" in text and "lean state; a trick's gain" in text
    rec = json.loads((tmp_path / "bench.json").read_text())
    for key, state in (("kernels", "stored"), ("kernels_lean", "lean")):
        timed = rec[key]
        assert timed["state"] == state and timed["n_agents"] == 64
        assert [v["variant"] for v in timed["variants"]] == ["tuned", "plain", "without apart"]
        assert all(v["run_s"] > 0 and v["compile_s"] > 0 for v in timed["variants"])


def test_points_dominated_by_a_fixed_cost_are_marked():
    """Issue 28 item 8: t = c + a N with c = 1 ms of dispatch and a = 1 ns per agent: the
    fixed cost dominates below N = c / a = 10^6, so 10^3 and 10^5 are marked, 10^7 is not,
    and the largest N (no larger one to compare) is left unjudged."""
    from memoa_jax.bench import mark_overhead
    from memoa_jax.cli import bench as cmd_bench

    t = lambda n: 1e-3 + 1e-9 * n  # noqa: E731
    sizes = [10**3, 10**5, 10**7, 10**8]
    points = [dict(n_agents=n, policy=dict(run_s=t(n), speedup_vs_numpy=0.04)) for n in sizes]
    assert mark_overhead(points)
    assert [p["policy"].get("overhead_dominated") for p in points] == [True, True, False, None]
    assert cmd_bench._ratio(points[0]["policy"], "speedup_vs_numpy") == "0.04x*"
    flat = [dict(n_agents=n, loop=dict(run_s=0.5)) for n in (10, 100)]  # no growth at all
    assert mark_overhead(flat) and flat[0]["loop"]["overhead_dominated"]


def test_carry_draws_is_named_in_the_state_column():
    """A lean loop with `carry_draws` is `lean+carry_draws` in summary.csv's state column (its
    own rows beside plain lean's; the flag itself is no metric row), and in the kernels'."""
    from memoa_jax.cli._tidy import bench_rows

    loop = lambda state, carry: dict(state=state, carry_draws=carry, run_s=1.0)  # noqa: E731
    record = dict(
        points=[
            dict(n_agents=10, loop=loop("stored", False), loop_lean=loop("lean", True)),
            dict(n_agents=20, loop=loop("lean", False)),
        ],
        kernels_lean=dict(
            n_agents=10, state="lean", carry_draws=True, variants=[dict(variant="tuned", run_s=2.0)]
        ),
        copy=dict(bytes_per_s=3.0),
    )
    assert sorted(r for r in bench_rows(record) if r[0] != "copy") == [
        ("kernels: tuned", "lean+carry_draws", 10, "run_s", 2.0),
        ("loop", "lean", 20, "run_s", 1.0),
        ("loop", "lean+carry_draws", 10, "run_s", 1.0),
        ("loop", "stored", 10, "run_s", 1.0),
    ]


@pytest.mark.slow  # the lean loop of the five methods compiled once
def test_bench_lean_with_carry_draws(tmp_path, capsys):
    """`--state lean --carry-draws`: the loop runs with `Simulation(carry_draws=True)`, its
    carried bytes are that simulation's, and its tables name the state."""
    import jax.numpy as jnp

    from memoa_jax import carry_bytes_per_agent
    from memoa_jax.bench import make_simulation

    args = ["bench", "--sizes", "64", "--steps", "5", "--repeat", "1", "--copy-mib", "4"]
    args += ["--dense-sizes", "none", "--numpy-max", "0", "--python-max", "0"]
    assert main([*args, "--state", "lean", "--carry-draws", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    rec = json.loads((tmp_path / "bench.json").read_text())
    loop = rec["points"][0]["loop"]
    assert rec["carry_draws"] and loop["state"] == "lean" and loop["carry_draws"]
    sim = make_simulation(64, 5, jnp.float64, state="lean", carry_draws=True)
    plain = make_simulation(64, 5, jnp.float64, state="lean")
    assert loop["carried_bytes_per_agent"] == carry_bytes_per_agent(sim)
    assert carry_bytes_per_agent(sim) > carry_bytes_per_agent(plain)
    assert loop["hashes_per_agent_step"] > 0 and loop["run_s"] > 0
    assert "lean+carry_draws" in text
