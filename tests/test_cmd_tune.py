"""`memoa tune` end to end on a tiny case, `memoa run --params` loading its output, bad input."""

import json

import pytest

from memoa_jax.cli import main

TINY = ["--dataset", "logistic", "--rows", "30", "-n", "4", "--no-progress"]


@pytest.mark.slow  # the default run stays under 10 min on 2 cores; run with -m slow
def test_tune_online_gradient_round_trip(tmp_path, capsys):
    """Tune the ogd_sgd learning rate (a cheap loop); `run --params` uses the tuned value."""
    out = tmp_path / "tune_ogd"
    argv = ["tune", *TINY, "--methods", "ogd_sgd", "--objective", "avg", "--steps", "3"]
    assert main([*argv, "--eval-seeds", "1", "--out", str(out)]) == 0
    record = json.loads((out / "tune.json").read_text())
    assert (out / "tune.png").stat().st_size > 0
    assert (out / "summary.csv").read_text().startswith("method,seed,metric,value\n")
    assert list(record["params"]) == ["learning_rate"] and record["method"] == "ogd_sgd"
    assert record["default_params"] == {"learning_rate": 0.05}
    assert min(record["losses"]) == record["train"]["objective_tuned"] <= record["losses"][0]
    assert "held-out avg" in capsys.readouterr().out
    run_out = tmp_path / "run"
    argv = ["run", *TINY, "--seeds", "1", "--methods", "ogd_sgd", "--out", str(run_out)]
    assert main([*argv, "--params", str(out)]) == 0
    config = json.loads((run_out / "results.json").read_text())["config"]
    assert config["ogd_lr"] == record["params"]["learning_rate"] != 0.05


@pytest.mark.slow
def test_tune_writes_params_that_run_loads(tmp_path, capsys):
    out = tmp_path / "tune_tiny"
    assert main(["tune", *TINY, "--steps", "2", "--eval-seeds", "2", "--out", str(out)]) == 0
    record = json.loads((out / "tune.json").read_text())
    assert (out / "tune.png").stat().st_size > 0
    assert (out / "summary.csv").read_text().startswith("method,seed,metric,value\n")
    assert set(record["params"]) == {"lam", "gamma", "alpha"}
    assert len(record["losses"]) == 3 and record["train"]["rows"] == [0, 21]
    assert record["held_out"]["rows"] == [21, 30] and record["held_out"]["seeds"] == [0, 1]
    for label in ("default", "tuned"):
        held = record["held_out"][label]
        assert held["worst_rmse"] >= held["objective"] >= held["avg_rmse"] > 0
    assert record["default_params"] == {"lam": 0.5, "gamma": 15.0, "alpha": 1e-4}
    assert "held-out worst" in capsys.readouterr().out

    run_out = tmp_path / "run"
    argv = ["run", *TINY, "--seeds", "1", "--methods", "memoa,ogd_adam", "--out", str(run_out)]
    assert main([*argv, "--params", str(out)]) == 0
    config = json.loads((run_out / "results.json").read_text())["config"]
    assert {k: config[k] for k in record["params"]} == record["params"]
    assert set(json.loads((run_out / "results.json").read_text())["summary"]) == {
        "memoa",
        "ogd_adam",
    }


@pytest.mark.parametrize(
    "args,match",
    [
        (["tune", "--train-frac", "1.5"], "--train-frac must be in (0, 1), got 1.5"),
        (["tune", "--train-frac", "0.1"], "--train-frac 0.1: 3 training"),
        (["tune", "--methods", "memoa,g1_ridge"], "tune one method at a time"),
        (["tune", "--tune", "lam,bogus"], "cannot tune 'bogus' for memoa"),
        (["tune", "--methods", "g1_ridge", "--tune", "lam"], "cannot tune 'lam' for g1_ridge"),
        (["tune", "--temperature", "0"], "--temperature must be positive, got 0.0"),
        (["tune", "--lr", "inf"], "--lr must be a finite number, got inf"),
        (["tune", "--steps", "-1"], "--steps must be >= 0, got -1"),
        (["run", "--params", "missing.json"], "--params: no such file 'missing.json'"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, match):
    out = tmp_path / "out"
    assert main([*args[:1], *TINY, "--out", str(out), *args[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content,match",
    [
        ('{"params": {"lam": "big"}}', "lam must be a number, got 'big'"),
        ('{"params": {"beta": 1.0}}', "unknown hyper-parameter 'beta'"),
        ("not json", "not JSON"),
    ],
)
def test_bad_params_file(tmp_path, capsys, content, match):
    params = tmp_path / "p.json"
    params.write_text(content)
    out = tmp_path / "out"
    assert main(["run", *TINY, "--params", str(params), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not out.exists()
