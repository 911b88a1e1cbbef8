"""`memoa sweep`: shared compilations, resume, padded = exact results, bad input."""

import json

import pytest

from memoa_jax.cli import main

COMMON = ["sweep", "--dataset", "logistic", "--rows", "20", "--no-progress"]


def _records(out):
    return [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]


def test_sweep_resumes_and_shares_compilations(tmp_path, capsys):
    """(That a padded point equals the exact-size run is `simulate`'s `n_active`, which
    the sweep passes: tests/test_loop.py and tests/test_sweep.py check it.)"""
    out = tmp_path / "sw"
    sizes = ["--methods", "memoa,g1_ridge", "--sizes"]
    assert main([*COMMON, *sizes, "3,7", "--out", str(out)]) == 0
    first = capsys.readouterr().out
    # both padded into 1024 slots; G1 at FedMOE's settings runs in a simulation of its own
    assert "compilations: 2 for 2 new size(s) (2 simulations per size" in first
    recs = _records(out)
    assert [(r["n_agents"], r["slots"]) for r in recs] == [(3, 1024), (7, 1024)]
    assert all(r["run_s"] > 0 and r["agent_steps_per_s"] > 0 for r in recs)
    assert {"memoa", "g1_ridge"} <= set(recs[0]["summary"])
    assert (out / "sweep_metrics.png").stat().st_size > 10_000
    assert (out / "sweep_throughput.png").stat().st_size > 10_000
    # summary.csv: tidy, one row per N x method x seed x metric, the values of sweep.jsonl
    import csv

    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["n_agents", "method", "seed", "metric", "value"]
    got = {(int(r["n_agents"]), r["method"], r["metric"]): r["value"] for r in rows}
    assert float(got[(7, "memoa", "avg_rmse")]) == recs[1]["summary"]["memoa"]["avg_rmse"]
    assert float(got[(3, "all", "agent_steps_per_s")]) == recs[0]["agent_steps_per_s"]

    # started again with one more size: only that one runs, the others are kept as they were
    assert main([*COMMON, *sizes, "3,7,5", "--out", str(out)]) == 0
    assert "0 point(s) already" not in capsys.readouterr().out
    again = _records(out)
    assert again[:2] == recs and [r["n_agents"] for r in again] == [3, 7, 5]
    assert again[2]["slots"] == 1024


def test_resume_refuses_another_configuration(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main([*COMMON, "--sizes", "2", "--methods", "memoa", "--out", str(out)]) == 0
    before = (out / "sweep.jsonl").read_text()
    capsys.readouterr()
    args = [*COMMON, "--sizes", "2", "--methods", "memoa", "--lam", "2", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differs in: lam" in err[0]
    assert (out / "sweep.jsonl").read_text() == before
    # echo-state agents are another configuration too
    esn = [*COMMON, "--sizes", "2", "--methods", "memoa", "--encoder", "esn", "--out", str(out)]
    assert main(esn) == 2
    assert "differs in: encoder, mc_samples" in capsys.readouterr().err
    assert (out / "sweep.jsonl").read_text() == before


@pytest.mark.parametrize(
    "args, match",
    [
        (["--sizes", "10,0"], "integers >= 1, got '0'"),
        (["--sizes", "10,abc"], "'abc' is not a number"),
        (["--sizes", "2.5"], "got '2.5'"),
        (
            ["--sizes", "4", "--pad-below", "-1"],
            "--pad-below must be a finite number >= 0, got -1.0",
        ),
    ],
)
def test_bad_sizes(tmp_path, capsys, args, match):
    out = tmp_path / "sw"
    assert main([*COMMON, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not (out / "sweep.jsonl").exists()
