"""`memoa run`: a small end-to-end run, and every kind of bad input (exit 2, nothing written)."""

import json
import subprocess
import sys

import pytest

from memoa_jax.cli import main


def test_run_writes_table_json_and_figure(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "--dataset",
            "periodic",
            "-n",
            "8",
            "--seeds",
            "2",
            "--rows",
            "40",
            "--methods",
            "memoa,g1_ridge",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "worst-agent RMSE" in text and "memoa" in text and "g1_ridge" in text
    rec = json.loads((out / "results.json").read_text())
    assert set(rec["summary"]) == {"memoa", "g1_ridge"}
    s = rec["summary"]["memoa"]
    assert len(s["worst_rmse"]["per_seed"]) == 2
    assert s["worst_rmse"]["mean"] >= s["avg_rmse"]["mean"]
    assert len(rec["steps"]["memoa"]["mse"]) == 39
    assert (out / "run.png").stat().st_size > 10_000


def test_sharded_run_matches_unsharded(tmp_path):
    """`--shard` on the devices at hand (one here; four in `test_sharding.py`)."""
    common = ["run", "--dataset", "logistic", "-n", "6", "--seeds", "1", "--rows", "30"]
    common += ["--methods", "memoa", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--shard", "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / f / "results.json").read_text()) for f in "ab")
    assert a["summary"]["memoa"]["worst_rmse"] == b["summary"]["memoa"]["worst_rmse"]


def test_module_entry_point_help():
    res = subprocess.run(
        [sys.executable, "-m", "memoa_jax", "run", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0 and "--n-agents" in res.stdout


@pytest.mark.parametrize(
    "args,match",
    [
        (["-n", "0"], "n-agents must be at least 1, got 0"),
        (["-n", "-3"], "got -3"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--dataset", "periodic", "--window", "500"], "--window 500 is longer"),
        (["--dataset", "periodic", "--rows", "5000"], "n_rows=5000"),
        (["--gamma", "-1"], "gamma=-1.0"),
        (["--sigma", "0"], "sigma=0.0"),
        (["--kappa", "-2"], "kappa=-2.0"),
        (["--alpha", "-0.5"], "alpha=-0.5"),
        (["--methods", "memoa,bogus"], "unknown method 'bogus'"),
        (["--shard", "--batch-size", "10"], "--batch-size 10 with --shard"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, match):
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_nan_in_csv_is_named(tmp_path, capsys):
    csv = tmp_path / "series.csv"
    csv.write_text(
        "a,b\n" + "\n".join(f"{i},{i * 0.1}" for i in range(30)).replace("7,0.7", "7,nan")
    )
    out = tmp_path / "out"
    assert main(["run", "--csv", str(csv), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "non-finite value nan at row 7, column 0" in err
    assert not out.exists()
