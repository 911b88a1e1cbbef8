"""`memoa verify`: a small sweep end to end, the spec §6.11 numbers through the CLI, bad input."""

import csv
import json

import numpy as np
import pytest

from memoa_jax.cli import main
from memoa_jax.cli import verify as cmd_verify

SMALL = ["verify", "--window", "3", "--no-progress", "--fit", "10,1e4"]


@pytest.mark.slow
def test_fixture_sweep_through_the_cli(tmp_path, capsys):
    out = tmp_path / "f"
    args = [
        "verify",
        "--instance",
        "fixture",
        "--sizes",
        "1,3,10,100,1000,1e4",
        "--dense-max",
        "3",
        "--fit",
        "10,1e4",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Monte Carlo check skipped" in text and "max gain gap" in text
    rec = json.loads((out / "nash_verify.json").read_text())
    assert [r["n_agents"] for r in rec["rows"]] == [1, 3, 10, 100, 1000, 10000]
    row = {r["n_agents"]: r for r in rec["rows"]}[3]
    np.testing.assert_allclose(row["J_fne"], 0.486590339826, atol=1e-10)  # spec §6.11
    np.testing.assert_allclose(row["J_mf"], 0.486692408539, atol=1e-10)
    np.testing.assert_allclose(row["J_br"], 0.486046548339, atol=1e-10)
    assert [r["n_agents"] for r in rec["dense"]] == [1, 3]
    assert all(r["max_diff_vs_reduced"] < 1e-12 for r in rec["dense"])
    assert -1.05 <= rec["slopes"]["gain_gap"]["slope"] <= -0.95
    assert rec["slopes"]["eps"]["slope"] <= -0.9
    assert all(r["eps"] >= -1e-10 for r in rec["rows"])
    assert rec["timing"]["dense_largest_n"] == 3 and rec["timing"]["reduced_solve_1e9_s"] > 0
    for name in ("nash_convergence.png", "nash_cost.png"):
        assert (out / name).stat().st_size > 10_000


def _check_monte_carlo_rows(rec):
    for r in rec["monte_carlo"]:  # the exact expectations inside (generous) intervals
        for key, exact in [("cost_mf", r["J_mf"]), ("cost_fne", r["J_fne"])]:
            lo, hi = r[key]["ci95"]
            assert lo - 2 * (hi - lo) <= exact <= hi + 2 * (hi - lo)


@pytest.mark.slow  # the default run stays under 10 min on 2 cores; run with -m slow
def test_monte_carlo_through_the_cli(tmp_path):
    out = tmp_path / "mc"
    args = [
        *SMALL,
        "--window",
        "2",
        "--sizes",
        "1,10,100,1000",
        "--dense-max",
        "2",
        "--fit",
        "10,1000",
        "--mc-sizes",
        "30,60",
        "--mc-reps",
        "3",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    rec = json.loads((out / "nash_verify.json").read_text())
    assert [r["n_agents"] for r in rec["rows"]] == [1, 10, 100, 1000]
    assert [r["n_agents"] for r in rec["dense"]] == [1]  # the sweep's sizes <= 2
    assert rec["dense_skipped"] == [10, 100, 1000]
    assert all(r["max_diff_vs_reduced"] < 1e-12 for r in rec["dense"])
    assert rec["timing"]["dense_largest_n"] == 1 and rec["timing"]["reduced_solve_1e9_s"] > 0
    assert -1.05 <= rec["slopes"]["gain_gap"]["slope"] <= -0.95
    assert all(r["eps"] >= -1e-10 for r in rec["rows"])
    assert [r["n_agents"] for r in rec["monte_carlo"]] == [30, 60]
    _check_monte_carlo_rows(rec)
    for name in ("nash_convergence.png", "nash_cost.png"):
        assert (out / name).stat().st_size > 10_000


@pytest.mark.slow
def test_rfn_sweep(tmp_path, capsys):
    out = tmp_path / "v"
    args = [
        *SMALL,
        "--sizes",
        "2,10,100,1000,1e4",
        "--dense-max",
        "3",
        "--mc-sizes",
        "50,200,800",
        "--mc-reps",
        "3",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    rec = json.loads((out / "nash_verify.json").read_text())
    assert [r["n_agents"] for r in rec["dense"]] == [2]  # the sweep's sizes <= 3
    assert all(r["max_diff_vs_reduced"] < 1e-12 for r in rec["dense"])
    assert -1.05 <= rec["slopes"]["gain_gap"]["slope"] <= -0.95
    assert rec["slopes"]["eps"]["slope"] <= -0.9
    assert rec["slopes"]["mc_ybar_gap_mf"] is not None
    _check_monte_carlo_rows(rec)


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--sizes", "0,10"], "integers >= 1, got '0'"),
        (["--sizes", "geom:0:10:3"], "need 1 <= LO <= HI"),
        (["--lam", "-1.5"], "need q + lam > 0"),
        (["--gamma", "0"], "gamma=0.0"),
        (["--fit", "10"], "expected LO,HI"),
        (["--mc-reps", "1"], "--mc-reps must be >= 2"),
        (["--sigma", "0"], "--sigma must be positive"),
        (["--dense-max", "inf"], "--dense-max must be a finite number >= 0, got inf"),
    ],
)
def test_bad_settings_one_line_exit_2(tmp_path, capsys, extra, match):
    out = tmp_path / "bad"
    assert main([*SMALL, "--sizes", "2,3", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not out.exists()


def test_singular_system_one_line_exit_1(tmp_path, capsys, monkeypatch):
    import jax.numpy as jnp

    real = cmd_verify.build_instance

    def singular(args):  # invalid moments: E[Z Z] = -γ/q at the last step makes R singular
        inst = real(args)
        c = inst["cost"]
        M, S = inst["M"], inst["S"]
        T, d, p = M.shape
        bad = -c.gamma / (c.q + c.lam) * jnp.eye(d * p).reshape(d, p, d, p)
        return {**inst, "M": M.at[T - 1].set(0.0), "S": S.at[T - 1].set(bad)}

    monkeypatch.setattr(cmd_verify, "build_instance", singular)
    out = tmp_path / "sing"
    args = [*SMALL, "--sizes", "2,3", "--dense-max", "0", "--mc-sizes", "none", "--out", str(out)]
    assert main(args) == 1  # a numerical failure: exit 1, as in `run` and `tune`
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "singular at window step s=2" in err[0], err
    assert not out.exists()


def _fake_record():
    ci = lambda m: dict(mean=m, ci95=[0.9 * m, 1.1 * m])  # noqa: E731
    rows = [dict(n_agents=n, gain_gap=1 / n, eps=0.5 / n, cost_gap=0.1 / n) for n in (2, 4, 8)]
    mc = [
        dict(
            n_agents=n,
            reps=4,
            ybar_gap_mf=ci(1 / n**0.5),
            ybar_gap_fne=ci(1.1 / n**0.5),
            cost_mf=ci(1.0),
            cost_fne=ci(1.0),
            J_mf=1.0,
            J_fne=1.0,
            cost_diff=ci(0.01),
        )
        for n in (10, 100)
    ]
    return dict(
        rows=rows,
        monte_carlo=mc,
        slopes={},
        cost_gap_floor=1e-15,
        cost=dict(q=1.0, lam=0.5, gamma=1.0, alpha=0.0),
        instance="test",
        window=2,
        d=1,
        p=2,
        q_T=0.0,
        lam_T=0.0,
        mean_field="realized",
    )


def test_convergence_figure_labels_every_axis_without_raw_tex():
    """Issue 16 item 6: a y label on every panel; Unicode, not raw TeX (`y_{t+1}`, `K^N`)."""
    import matplotlib.pyplot as plt

    from memoa_jax._nash_plots import plot_convergence

    fig = plot_convergence(_fake_record())
    try:
        assert len(fig.axes) == 3
        for ax in fig.axes:
            assert ax.get_ylabel(), ax.get_title()
            texts = [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
            texts += [t.get_text() for t in ax.get_legend().get_texts()]
            for t in texts:
                assert "^" not in t and "_{" not in t and "_s" not in t, t
    finally:
        plt.close(fig)


def test_dense_solver_only_at_sizes_asked_for_and_says_what_it_skips(tmp_path, capsys, monkeypatch):
    """Issue 28 item 8: `--sizes 2,10,100,1000,10000` with the default --dense-max 256 runs
    the dense solver at 2, 10 and 100 only (no N = 256 that was not asked for), and says so
    before any work."""
    import tqdm.auto

    assert cmd_verify.dense_plan([2, 10, 100, 1000, 10000], 256) == ([2, 10, 100], [1000, 10000])
    assert cmd_verify.dense_plan([2, 3], 0) == ([], [2, 3])

    class Reached(BaseException):
        pass

    def stop(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(tqdm.auto, "tqdm", stop)
    sizes = ["--sizes", "2,10,100,1000,10000", "--mc-sizes", "none"]
    with pytest.raises(Reached):
        main([*SMALL, *sizes, "--out", str(tmp_path / "v")])
    out = capsys.readouterr().out
    assert (
        "dense solver at N = 2, 10, 100; skipped N = 1,000, 10,000 (above --dense-max 256"
    ) in out, out


def _summary(path) -> dict:
    """summary.csv read back with the csv module: (n_agents, quantity) -> value (None if empty)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == ["n_agents", "quantity", "value"]
    return {
        (int(r["n_agents"]), r["quantity"]): float(r["value"]) if r["value"] else None for r in rows
    }


def test_summary_csv_matches_nash_verify_json(tmp_path, capsys):
    """Issue 28 item 6: a tidy summary.csv (N × quantity × value) beside nash_verify.json."""
    out = tmp_path / "f"
    args = ["verify", "--instance", "fixture", "--sizes", "1,3,10", "--dense-max", "3"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    assert f"{out / 'summary.csv'}" in capsys.readouterr().out
    rec = json.loads((out / "nash_verify.json").read_text())
    got = _summary(out / "summary.csv")
    want = {(r["n_agents"], k): v for r in rec["rows"] for k, v in r.items() if k != "n_agents"}
    for r in rec["dense"]:
        want.update({(r["n_agents"], f"dense_{k}"): v for k, v in r.items() if k != "n_agents"})
    assert got == want
    assert got[(3, "J_fne")] == pytest.approx(0.486590339826, abs=1e-10)  # spec §6.11
    assert got[(10, "dense_s")] is None  # above --dense-max: not run, an empty cell


def test_summary_rows_of_the_monte_carlo_check():
    from memoa_jax.cli._tidy import verify_rows

    rec = _fake_record()
    rec["dense"] = []
    for r in rec["monte_carlo"]:
        r["cost_mf"]["se"] = 0.01
        r["ybar_gap_mf"]["se"] = r["ybar_gap_fne"]["se"] = 0.02
        r["cost_fne"]["se"] = r["cost_diff"]["se"] = 0.03
    rows = {(n, q): v for n, q, v in verify_rows(rec)}
    assert rows[(10, "mc_cost_mf_mean")] == 1.0 and rows[(10, "mc_cost_mf_se")] == 0.01
    assert rows[(100, "mc_ybar_gap_mf_ci95_lo")] == pytest.approx(0.9 * 100**-0.5)
    assert rows[(100, "mc_J_fne")] == 1.0 and rows[(10, "mc_reps")] == 4
    assert rows[(2, "gain_gap")] == 0.5
