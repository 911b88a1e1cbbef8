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
    assert "worst agent" in text and "memoa" in text and "g1_ridge" in text
    rec = json.loads((out / "results.json").read_text())
    assert set(rec["summary"]) == {"memoa", "g1_ridge"}
    s = rec["summary"]["memoa"]
    assert len(s["worst_rmse"]["per_seed"]) == 2
    assert s["worst_rmse"]["mean"] >= s["avg_rmse"]["mean"]
    assert len(rec["steps"]["memoa"]["mse"]) == 39
    assert (out / "run.png").stat().st_size > 10_000


@pytest.mark.slow  # (--shard: 4 devices in test_sharding.py, 2 processes in test_multiprocess.py)
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
        (["--dataset", "periodic", "--window", "500"], "--window 500 needs more than 500"),
        (["--dataset", "periodic", "--rows", "5000"], "n_rows=5000"),
        (["--gamma", "-1"], "gamma=-1.0"),
        (["--sigma", "0"], "sigma=0.0"),
        (["--kappa", "-2"], "kappa=-2.0"),
        (["--alpha", "-0.5"], "alpha=-0.5"),
        (["--methods", "memoa,bogus"], "unknown method 'bogus'"),
        (["--server", "hedge", "--hedge-rate", "0"], "--hedge-rate must be a finite number > 0"),
        (["--server", "hedge", "--hedge-rate", "nan"], "got nan"),
        (["--kappa", "inf"], "--kappa must be a finite number, got inf"),
        (["--eta", "nan"], "--eta must be a finite number, got nan"),
        (["--ogd-lr", "inf"], "--ogd-lr must be a finite number, got inf"),
        (["--csv", "s.csv", "--dataset", "boc"], "--csv and --dataset boc name two data sets"),
        (["--target", "y"], "--target is an option of --csv"),
        (["--inputs", "a"], "--inputs is an option of --csv"),
        (["--scale", "max"], "--scale is an option of --csv"),
        (["--lags", "0,1"], "--lags is an option of --csv"),
        (["--csv", "s.csv", "--lags", "0,x"], "--lags '0,x': lags are integers >= 0"),
        (["--csv", "s.csv", "--target", "b"], "target 'b' is not a column"),
        (["--csv", "s.csv", "--preset", "nope"], "--preset 'nope': choose one of"),
        (["--csv", "s.csv", "--rows", "3"], "--window 2 needs more than 2 prediction steps"),
        (["--moments", "own", "--encoder", "esn"], "moments='own' needs closed-form"),
        (["--coordinator", "h:1"], "--coordinator is an option of --distributed"),
        (["--num-processes", "2"], "--num-processes is an option of --distributed"),
        (["--process-id", "0"], "--process-id is an option of --distributed"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch, args, match):
    monkeypatch.chdir(tmp_path)
    csv = tmp_path / "s.csv"
    csv.write_text("a,y\n" + "\n".join(f"{i},{i * 0.1}" for i in range(30)))
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == [csv]


def test_nan_in_csv_is_named(tmp_path, capsys):
    """A bad cell: the file, its 1-based line (the header is line 1) and the column's name."""
    csv = tmp_path / "series.csv"
    rows = [f"{i},{i * 0.5}" for i in range(30)]
    rows[7] = "7,nan"
    csv.write_text("a,b\n" + "\n".join(rows))
    out = tmp_path / "out"
    assert main(["run", "--csv", str(csv), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "series.csv: line 9, column 'b': 'nan' is not a finite number" in err
    assert not out.exists()


def test_empty_target_is_refused(tmp_path, capsys):
    csv = tmp_path / "s.csv"
    csv.write_text("a,y\n" + "\n".join(f"{i},{i * 0.1}" for i in range(30)))
    args = ["run", "--csv", str(csv), "--target", "", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "--target is empty" in capsys.readouterr().err


def test_version(capsys):
    import memoa_jax

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"memoa {memoa_jax.__version__}"


COMMANDS = ("run", "sweep", "tune", "verify", "bench", "reproduce")


def test_top_level_help_says_what_each_command_is_for(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert f"\n    {name}" in text, name
    assert "runs/" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_defaults(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default:" in text
    assert "--out OUT" in text and "runs/" + command in text


@pytest.mark.parametrize(
    "option, default",
    [
        ("run", "population size N (1e6 notation allowed) (default: 1000)"),
        ("run", "own-error weight q (default: 1.0)"),
        ("sweep", "(default: logistic)"),
        ("verify", "larger ones are skipped, and the run says which (default: 256)"),
        ("tune", "optimiser steps (default: 40)"),
    ],
)
def test_help_shows_the_value(option, default, capsys):
    with pytest.raises(SystemExit):
        main([option, "--help"])
    assert default in " ".join(capsys.readouterr().out.split())


# Each command with tiny sizes and no --out, in an empty folder: everything lands in
# runs/<command>-..., nothing elsewhere.
TINY = {
    "run": [
        "--dataset",
        "logistic",
        "-n",
        "2",
        "--seeds",
        "1",
        "--rows",
        "20",
        "--methods",
        "memoa",
    ],
    "sweep": ["--rows", "20", "--sizes", "2", "--methods", "memoa", "--pad-below", "0"],
    "verify": ["--window", "2", "--sizes", "2,3,4", "--dense-max", "0", "--mc-sizes", "none"],
    "bench": ["--sizes", "10", "--loop-max", "0", "--steps", "5", "--repeat", "1"]
    + ["--copy-mib", "1", "--dense-sizes", "none", "--python-max", "10"],
    "tune": ["--dataset", "logistic", "--rows", "20", "-n", "2", "--methods", "ogd_sgd"]
    + ["--objective", "avg", "--steps", "1", "--eval-seeds", "1"],
}


@pytest.mark.parametrize(
    "command",
    # `memoa run` in the default run; the others (half a minute each here) share its
    # `default_out` and `make_out_dir`, and their own tests give `--out`
    [c if c == "run" else pytest.param(c, marks=pytest.mark.slow) for c in sorted(TINY)],
)
def test_default_output_is_under_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([command, *TINY[command], "--no-progress"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]
    made = [p.name for p in (tmp_path / "runs").iterdir()]  # tune: OUT.json and OUT.png
    assert made and all(name.startswith(f"{command}-") for name in made), made
    files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert files and not [p for p in files if p.name.startswith(".")]


def test_reproduce_default_output_is_under_runs(tmp_path, monkeypatch):
    """With a stand-in experiment (the real ones are tested in test_cmd_reproduce.py)."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "_common.py").write_text("def dataset_names(only):\n    return ['logistic']\n")
    (exp / "main_table.py").write_text(
        "import _common\n"
        "def units(**kw):\n    return 1\n"
        "def outputs(out, datasets):\n    return [out / 'main_table.md']\n"
        "def run(out, *, progress, quick, datasets, rows):\n"
        "    (out / 'main_table.md').write_text(str(quick))\n"
        "    progress.update(1)\n"
        "    return [out / 'main_table.md']\n"
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    base = ["reproduce", "--only", "main_table", "--experiments-dir", str(exp), "--no-progress"]
    monkeypatch.setattr(sys, "path", list(sys.path))  # reproduce puts the folder first
    saved = sys.modules.pop("_common", None)  # the real experiments' one, if loaded
    try:
        assert main(base) == 0
        assert main([*base, "--quick"]) == 0
    finally:
        sys.modules.pop("_common", None)
        if saved is not None:
            sys.modules["_common"] = saved
    assert (cwd / "runs" / "reproduce-full" / "main_table.md").read_text() == "False"
    assert (cwd / "runs" / "reproduce-quick" / "main_table.md").read_text() == "True"
    assert [p.name for p in cwd.iterdir()] == ["runs"]


def test_help_escapes_a_bare_percent(capsys):
    import argparse

    from memoa_jax.cli._options import HelpFormatter

    p = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
    p.add_argument("--share", type=float, default=0.1, help="share of rows, 10 % by default")
    p.add_argument("--pct", default="5", help="%(default)s%% kept")
    text = " ".join(p.format_help().split())
    assert "share of rows, 10 % by default (default: 0.1)" in text and "5% kept" in text
