"""Two processes on 127.0.0.1 (`jax.distributed`, gloo CPU collectives, 2 forced CPU devices
each: a 4-device mesh over both) give the one-process results: `memoa run --distributed`,
`memoa sweep --distributed` and `simulate` with a mesh over every process's devices. And the
processes stay on one path: different options are refused by both (exit 2, one line naming
the option), a sweep resumed where the processes' output folders differ runs what process 0
decided (no deadlock), only process 0 writes.

Each pair of processes runs under a hard timeout (both killed: SIGKILL, since
`jax.distributed` catches SIGTERM), so that a deadlock fails the test instead of hanging CI.
The tested code is the checkout's (PYTHONPATH: this file's repository). Cost: a process
start is 3 s of CPU and each compilation about 9 s, so run, sweep and API share one pair of
processes (`DRIVER`, which calls `memoa_jax.cli.main` as `python -m memoa_jax` does): the
file's default tests take 86-96 s of CPU in all (pytest and its subprocesses, measured at a
load average of 9-14 on 2 cores), so about 45 s on 2 idle cores.
"""

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240  # a pair on 2 loaded cores takes < 60 s; a deadlock would take gloo's minutes
# one simulation for every comparison: the CLI's, built from these options
MODEL = ["-n", "10", "--dataset", "logistic", "--rows", "12", "--methods", "memoa"]
RTOL = 1e-12


def _reserved_port() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1, to hold until the pair is done: the
    coordinator binds it too (gRPC sets SO_REUSEPORT, as this socket does), and no other
    test's `bind(0)` is given it meanwhile. (A port merely found free and closed could go
    to a pair of another test running beside this one; two coordinators share a port under
    SO_REUSEPORT, so the two pairs would talk to each other.)"""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 0))
    return s


def _env(tmp_path) -> dict:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        MEMOA_JAX_CACHE=str(tmp_path / "cache"),
    )
    return env


def _pair(tmp_path, argv_of, *, code: str | None = None) -> list[tuple[int, str, str]]:
    """Runs 2 processes (`argv_of(process_id)` the arguments after `python -m memoa_jax`, or
    after `python -c code`) with `--distributed` on a free port; (exit status, stdout,
    stderr) of each. Kills both and fails when they do not end within `TIMEOUT_S`."""
    with _reserved_port() as reserved:
        port = reserved.getsockname()[1]
        procs = []
        for pid in (0, 1):
            argv = [*argv_of(pid), "--distributed", "--coordinator", f"127.0.0.1:{port}"]
            argv += ["--num-processes", "2", "--process-id", str(pid)]
            head = ["-c", code] if code is not None else ["-m", "memoa_jax"]
            procs.append(
                subprocess.Popen(
                    [sys.executable, *head, *argv],
                    env=_env(tmp_path),
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outs = []
        try:
            for p in procs:
                out, err = p.communicate(timeout=TIMEOUT_S)
                outs.append((p.returncode, out, err))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            said = [f"process {i}: {_errors(p.communicate()[1])[-3:]}" for i, p in enumerate(procs)]
            pytest.fail(
                f"the 2 processes did not end within {TIMEOUT_S} s (a deadlock?); "
                + "; ".join(said)
            )
    return outs


def _errors(err: str) -> list[str]:
    """memoa's own lines on stderr (gloo and XLA log lines of their own there too)."""
    return [line for line in err.splitlines() if line.startswith("memoa")]


@pytest.fixture(scope="module")
def reference():
    """The one-process, one-device results of the simulation `MODEL` builds (seeds 0 and
    1): per method, the `Summary` fields as floats."""
    import jax

    import memoa_jax as mj
    from memoa_jax.cli import _parser
    from memoa_jax.cli._build import build

    args = _parser().parse_args(["run", *MODEL])
    built = build(args, comparators=True)
    (sim,) = built.sims
    x, y = jax.numpy.asarray(built.data.x), jax.numpy.asarray(built.data.y)
    run = jax.jit(lambda key: mj.simulate(sim, x, y, key=key))
    return {
        seed: {
            m: {f: float(v) for f, v in s._asdict().items()}
            for m, s in run(jax.random.key(seed)).ordered()
        }
        for seed in (0, 1)
    }


def _assert_close(got: dict, want: dict):
    """Every method's summary to `RTOL` relative. The 4-device run sums its agents in
    another order: each sum of N = 10 terms of one sign is exact to a few ulps (1e-15), and
    the ridge and game solves of 5 features amplify that by their condition (< 1e3 here)."""
    assert set(got) == set(want)
    for m, fields in want.items():
        for f, v in fields.items():
            g = got[m][f]
            assert g == v or math.isclose(g, v, rel_tol=RTOL, abs_tol=0.0), (m, f, g, v)


DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, sys
    import jax
    from memoa_jax.cli import _parser, main

    argv = sys.argv[1:]  # MODEL, then the --distributed options
    pid = int(argv[argv.index("--process-id") + 1])
    model, dist = argv[: argv.index("--distributed")], argv[argv.index("--distributed") :]
    report = {}

    def memoa(name, args):  # `memoa ARGS --distributed ...`, as `python -m memoa_jax` runs it
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main([*args, *dist])
        report[name] = dict(rc=rc, out=out.getvalue())

    # memoa run; memoa sweep (2 seeds); the same sweep again: each process gives its own
    # --out, so process 0's folder holds both points and process 1's none (it deadlocked)
    memoa("run", ["run", *model, "--seeds", "1", "--no-progress", "--out", f"o{pid}"])
    sweep = ["sweep", *model[2:], "--sizes", model[1], "--pad-below", "0", "--seeds", "2"]
    memoa("sweep", [*sweep, "--no-progress", "--out", f"s{pid}"])
    memoa("resume", [*sweep, "--no-progress", "--out", f"s{pid}"])

    # the Python API: simulate with a mesh over every process's devices (jax.distributed
    # initialised above by the CLI)
    import memoa_jax as mj
    from memoa_jax.cli._build import build

    assert jax.process_count() == 2 and len(jax.devices()) == 4, jax.devices()
    built = build(_parser().parse_args(["run", *model]), comparators=True)
    (sim,), data = built.sims, built.data
    mesh = jax.make_mesh((4,), ("agents",))
    run = jax.jit(lambda x, y, k: mj.simulate(sim, x, y, key=k, mesh=mesh))
    res = run(jax.numpy.asarray(data.x), jax.numpy.asarray(data.y), jax.random.key(1))
    report["api"] = {m: {f: float(v) for f, v in s._asdict().items()} for m, s in res.ordered()}
    print(json.dumps(report))
    """
)


def test_run_sweep_and_api_over_two_processes_equal_one(tmp_path, reference):
    """In each of 2 processes (one pair, to spare CI's cores 3 start-ups): `memoa run`,
    `memoa sweep` (2 seeds, one compilation) and the same sweep again, then `simulate` with
    a mesh over both processes' 4 devices. Each equals the one-process simulation; only
    process 0 writes (process 1's --out is another folder, never created). The sweep
    started again, where process 0's folder holds both points and process 1's none: process
    0 decides that nothing is left, and both end at once (each process read its own folder
    and process 1 ran points alone: a deadlock)."""
    outs = _pair(tmp_path, lambda pid: MODEL, code=DRIVER)
    reports = []
    for rc, out, err in outs:
        assert rc == 0, (out, err)
        reports.append(json.loads(out.strip().splitlines()[-1]))
    for r in reports:
        assert r["run"]["rc"] == r["sweep"]["rc"] == r["resume"]["rc"] == 0, r
        _assert_close(r["api"], reference[1])

    summary = json.loads((tmp_path / "o0" / "results.json").read_text())["summary"]
    got = {m: {f: s[f]["per_seed"][0] for f in reference[0][m]} for m, s in summary.items()}
    _assert_close(got, reference[0])
    assert "wrote" in reports[0]["run"]["out"] and "wrote" not in reports[1]["run"]["out"]

    path = tmp_path / "s0" / "sweep.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["n_agents"], r["seed"], r["n_devices"]) for r in records] == [
        (10, 0, 4),
        (10, 1, 4),
    ]
    for rec in records:
        _assert_close(rec["summary"], reference[rec["seed"]])
    for r in reports:
        assert "0 point(s) already in s0/sweep.jsonl, 2 to run" in r["sweep"]["out"]
        assert "2 point(s) already in s0/sweep.jsonl, 0 to run" in r["resume"]["out"]
    assert not any((tmp_path / f).exists() for f in ("o1", "s1"))


TWO = textwrap.dedent(
    """
    import json, sys
    from memoa_jax.cli import main

    i = sys.argv.index("--distributed")
    dist = sys.argv[i:]
    print(json.dumps([main([*cmd, *dist]) for cmd in json.loads(sys.argv[1])]))
    """
)


def test_different_options_or_bad_input_on_one_process_refused_by_every_process(tmp_path):
    """Process 1 with another --lam, then with a bad input of its own (too few rows): both
    processes say so in the same line (the first naming the option and both values), exit
    2, before anything ran or was written."""

    def commands(pid):
        run = ["run", *MODEL, "--out", f"o{pid}"]
        other = [[*run, "--lam", "2"], [*run, "--rows", "3"]] if pid else [run, run]
        return [json.dumps(other)]

    outs = _pair(tmp_path, commands, code=TWO)
    lines = []
    for rc, out, err in outs:
        assert rc == 0 and json.loads(out.strip().splitlines()[-1]) == [2, 2], (out, err)
        first, second = _errors(err)
        assert "the processes differ in --lam: 2.0 on process 1, 0.5 on process 0" in first
        lines.append(second)
    assert lines[0] == lines[1]
    assert "--distributed: process 1: --window 3 needs more than 3 prediction steps" in lines[0]
    assert not (tmp_path / "o0").exists() and not (tmp_path / "o1").exists()


@pytest.mark.slow
def test_failed_runtime_check_reported_by_every_process(tmp_path):
    """A singular solve (σ = 1e200) under --distributed: every process reports it in one
    line, exit 1 (a check that raised on one process, inside the program, left both waiting
    until killed; the loop now returns its checks' status, the same on every process)."""
    outs = _pair(
        tmp_path,
        lambda pid: (
            ["run", *MODEL[:-1], "memoa", "--sigma", "1e200", "--seeds", "1"]
            + ["--no-progress", "--out", f"o{pid}"]
        ),
    )
    lines = []
    for rc, out, err in outs:
        assert rc == 1, (out, err)
        (line,) = _errors(err)
        lines.append(line.replace("this is process 1", "this is process 0"))
        assert "memoa, seed 0" in line and "is singular at window step" in line, line
    assert lines[0] == lines[1]
    assert not (tmp_path / "o0").exists()


def test_digest_leaves_out_per_process_options_and_names_the_first_difference():
    """What the processes compare (in one process, no subprocess): the per-process options
    (--out, --process-id, ...) are left out, another value of an option or other data is
    the first difference, named with both values."""
    from memoa_jax.cli import _parser
    from memoa_jax.cli._distributed import _hashed, digest_items, first_difference
    from memoa_jax.data import load_dataset

    data = load_dataset("logistic", n_rows=12)

    def items(*extra, rows=12):
        args = _parser().parse_args(["run", *MODEL, *extra])
        return _hashed(digest_items(args, data.head(rows)))

    base = items("--out", "a", "--process-id", "0", "--coordinator", "h:1")
    local = items("--out", "b", "--process-id", "1", "--coordinator", "h:2", "--no-progress")
    assert first_difference(base, local, 1) is None
    assert (
        first_difference(base, items("--lam", "2"), 1)
        == "--lam: 2.0 on process 1, 0.5 on process 0"
    )
    diff = first_difference(base, items(rows=11), 1)
    assert diff is not None and diff.startswith("the data (SHA-256 of x and y): ")
