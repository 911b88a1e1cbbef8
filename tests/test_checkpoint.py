"""Checkpoint and resume of one long run (`memoa_jax.checkpoint`, `memoa run
--checkpoint-every K` / `--resume DIR`): a run saved at some step, stopped, loaded and
continued ends with the same bits as one uninterrupted run, in the API (one device and a
4-device mesh) and in the CLI, after a SIGKILL in the middle of a save, in one process and
in two; bad input is one line, exit 2, nothing written.

The kills are deterministic: the killed command runs in a subprocess whose checkpoint
module kills the process itself (SIGKILL, no clean-up) at a chosen save, after its shards
are in place and before the manifest, so the test never races a wall clock. Cost: the
two-process test about 60 s of CPU (two pairs of processes, one compilation each), so
about 35 s on 2 idle cores; the one-process CLI test about 35 s of CPU.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from helpers import assert_same_bits

import memoa_jax as mj
from memoa_jax.checkpoint import (
    CheckpointError,
    checkpoint_step,
    load_checkpoint,
    save_checkpoint,
)
from memoa_jax.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
# the CLI's model (as tests/test_multiprocess.py): 11 steps, K = 3: saves at 3, 6, 9, 11
MODEL = ["-n", "10", "--dataset", "logistic", "--rows", "12", "--methods", "memoa"]
BASE = ["run", *MODEL]
RUN = [*BASE, "--seeds", "2", "--no-progress"]


def _sim(state="stored", n_agents=8):
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    return mj.Simulation(
        n_agents=n_agents,
        encoder=mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.1),
        methods=mj.default_methods(cost, window=3, ridge_window=3)[:2],
        cost=cost,
        state=state,
    )


@pytest.fixture(scope="module")
def logistic():
    data = load_dataset("logistic", n_rows=14)
    return jnp.asarray(data.x), jnp.asarray(data.y)


# THE API


@pytest.mark.parametrize(
    "state", ["stored", pytest.param("lean", marks=pytest.mark.slow)]
)  # (lean: minutes of compilation here, as in test_segments)
def test_saved_loaded_and_continued_equals_one_run(tmp_path, logistic, getkey, state):
    """Saved at step 5 and 8 (5 removed then), a save killed half-way at step 10 (its
    shards there, no manifest), loaded (step 8) and continued: the bits of the run
    uninterrupted (which are `simulate`'s: tests/test_segments.py)."""
    sim, key = _sim(state), getkey()
    x, y = logistic
    run = mj.Run(sim, x, y, key=key)
    folder = tmp_path / "ckpt"
    assert checkpoint_step(folder) is None
    carry = run.segment(run.init(), 5)
    save_checkpoint(folder, run, carry)
    assert checkpoint_step(folder) == 5
    carry = run.segment(carry, 8)
    step8 = save_checkpoint(folder, run, carry)
    assert checkpoint_step(folder) == 8 and [p.name for p in folder.iterdir()] == [step8.name]
    shutil.copytree(step8 / "process-0", folder / "step-000000000010" / "process-0")

    loaded = load_checkpoint(folder, run)
    assert int(loaded.t) == 8
    assert_same_bits(loaded, carry)
    result = run.finish(run.segment(loaded, run.n_steps))
    assert_same_bits(result, run.finish(run.segment(run.init(), run.n_steps)))


def test_removing_the_older_steps_never_fails_a_save(tmp_path, logistic, getkey, monkeypatch):
    """Removing the steps before a complete save is best effort: under many processes the
    others remove the same folders at the same moment, and a folder gone in the middle of
    a scan (`Path.glob`'s FileNotFoundError, seen in a two-process run, which then stopped
    one process alone and left the other waiting) fails neither the save nor the process."""
    from memoa_jax import checkpoint

    sim, x, y = _sim(), *logistic
    run = mj.Run(sim, x, y, key=getkey())
    folder = tmp_path / "ckpt"
    carry = run.segment(run.init(), 3)
    save_checkpoint(folder, run, carry)
    remove_temporary = checkpoint._remove_temporary

    def gone(step_dir, p):
        if step_dir.name == "step-000000000003":  # removed by "another process" meanwhile
            raise FileNotFoundError(2, "No such file or directory", str(step_dir))
        remove_temporary(step_dir, p)

    monkeypatch.setattr(checkpoint, "_remove_temporary", gone)
    carry = run.segment(carry, 5)
    save_checkpoint(folder, run, carry)
    assert checkpoint_step(folder) == 5
    assert_same_bits(load_checkpoint(folder, run), carry)


def test_load_refuses_another_run_or_no_checkpoint(tmp_path, logistic, getkey):
    """A checkpoint continues only its own run: another key, another population, another
    data, no complete step: `CheckpointError` naming the folder and the difference."""
    sim, key = _sim(), getkey()
    x, y = logistic
    run = mj.Run(sim, x, y, key=key)
    folder = tmp_path / "ckpt"
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(folder, run)
    (folder / "step-000000000003").mkdir(parents=True)  # (no manifest: incomplete)
    with pytest.raises(CheckpointError, match="holds no complete checkpoint"):
        load_checkpoint(folder, run)
    save_checkpoint(folder, run, run.segment(run.init(), 3))
    for other in (
        mj.Run(sim, x, y, key=getkey()),
        mj.Run(_sim(n_agents=9), x, y, key=key),
        mj.Run(sim, x, y + 1.0, key=key),
    ):
        with pytest.raises(CheckpointError, match="is of another run"):
            load_checkpoint(folder, other)
    with pytest.raises(CheckpointError, match="of a run of 13 steps; this one has 12"):
        load_checkpoint(folder, mj.Run(sim, x[:-1], y[:-1], key=key))


def test_shards_of_a_key_leaf_round_trip(tmp_path):
    """A PRNG key leaf is saved as its key data and wrapped again (none is in today's
    carry; a method's state may hold one)."""
    from memoa_jax import checkpoint

    tree = dict(k=jax.random.split(jax.random.key(3), 4), a=jnp.arange(6.0).reshape(2, 3))
    records = checkpoint._write_shards(tmp_path, tree)
    assert [r["key"] for r in records] == [None, "threefry2x32"]
    back = checkpoint._read_shards(tmp_path, records, None)
    assert jnp.array_equal(back[0], tree["a"])
    assert jnp.array_equal(jax.random.key_data(back[1]), jax.random.key_data(tree["k"]))


MESH = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import memoa_jax as mj
    from memoa_jax.checkpoint import load_checkpoint, save_checkpoint
    from memoa_jax.data import load_dataset

    assert len(jax.devices()) == 4, jax.devices()
    data = load_dataset("logistic", n_rows=14)
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    sim = mj.Simulation(8, mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.1),
                        mj.default_methods(cost, window=3, ridge_window=3)[:2], cost=cost)
    mesh = jax.make_mesh((4,), ("agents",))
    run = mj.Run(sim, x, y, key=jax.random.key(1), mesh=mesh)
    saved = run.segment(run.init(), 5)
    save_checkpoint(sys.argv[1], run, saved)
    loaded = load_checkpoint(sys.argv[1], run)
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(loaded)):
        assert a.sharding == b.sharding, (a.sharding, b.sharding)
    got = run.finish(run.segment(loaded, run.n_steps))
    want = run.finish(run.segment(saved, run.n_steps))
    bits = [np.array_equal(u, v, equal_nan=True) for u, v in zip(jax.tree.leaves(got),
                                                                 jax.tree.leaves(want))]
    print(all(bits))
    """
)


def test_saved_and_loaded_over_a_4_device_mesh(tmp_path):
    """Over a 4-device mesh (one process): every device's block saved and put back on its
    device with the run's sharding; continued, the bits of the uninterrupted run."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    out = subprocess.run(
        [sys.executable, "-c", MESH, str(tmp_path / "ckpt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True"]
    listing = json.loads((next(tmp_path.glob("ckpt/step-*/process-0")) / "shards.json").read_text())
    agent_blocks = {tuple(s["block"][-1]) for s in listing["shards"] if len(s["block"]) > 1}
    assert {(0, 2), (2, 4), (4, 6), (6, 8)} <= agent_blocks  # each device's 2 agents


# THE CLI, ONE PROCESS AND TWO

# Runs `memoa_jax.cli.main` for each command of the JSON list argv[1] (as `python -m
# memoa_jax` would), printing their exit statuses; with argv[2] = "kill-at-N", the N-th
# save of this process kills the process (SIGKILL) after its shards, before the manifest.
DRIVER = textwrap.dedent(
    """
    import json, os, signal, sys
    from memoa_jax import checkpoint
    from memoa_jax.cli import main

    commands, kill = json.loads(sys.argv[1]), sys.argv[2]
    dist = sys.argv[sys.argv.index("--distributed"):] if "--distributed" in sys.argv else []
    if kill.startswith("kill-at-"):
        saves, barrier = [0], checkpoint._barrier

        def killing_barrier(name, problem=None):
            if name.startswith("memoa_jax checkpoint: shards"):
                saves[0] += 1
                if saves[0] == int(kill.removeprefix("kill-at-")):
                    os.kill(os.getpid(), signal.SIGKILL)
            barrier(name, problem)

        checkpoint._barrier = killing_barrier
    if kill == "disk-full-on-1":  # process 1's second save of `full` fails, as on a full disk
        write, saves = checkpoint._write_shards, [0]

        def full(tmp, carry):
            import jax

            if "full" in str(tmp) and jax.process_index() == 1:
                saves[0] += 1
                if saves[0] == 2:
                    raise OSError(28, "No space left on device")
            return write(tmp, carry)

        checkpoint._write_shards = full
    print(json.dumps([main([*cmd, *dist]) for cmd in commands]))
    """
)


def _env(tmp_path, devices: int = 1) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["MEMOA_JAX_CACHE"] = str(tmp_path / "cache")
    return env


def _numbers(out: Path) -> dict:
    """What results.json says about the runs (not their timing)."""
    record = json.loads((out / "results.json").read_text())
    return dict(summary=record["summary"], steps=record["steps"])


def _killed_state(folder: Path) -> None:
    """After the 6th save (seed 1 at step 6) was killed: seed 0 finished (step 11), seed
    1 complete at step 3, its step 6 with shards and no manifest."""
    assert checkpoint_step(folder / "seed-0" / "memoa") == 11
    assert checkpoint_step(folder / "seed-1" / "memoa") == 3
    assert (folder / "seed-1" / "memoa" / "step-000000000006" / "process-0").is_dir()
    assert not (folder / "seed-1" / "memoa" / "step-000000000006" / "manifest.json").exists()


def test_run_killed_mid_checkpoint_resumes_to_the_same_results(tmp_path):
    """`memoa run --checkpoint-every 3`, SIGKILLed while saving seed 1's second
    checkpoint; `--resume` reads seed 0's result back and goes on with seed 1 from step 3:
    results.json's numbers equal an uninterrupted run's without checkpoints, exactly."""
    first = [[*RUN, "--checkpoint-every", "3", "--out", "o"]]
    killed = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(first), "kill-at-6"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "o" / "results.json").exists()
    _killed_state(tmp_path / "o" / "checkpoint")

    # (the resumed run with its progress bar: its finer segments, on stderr)
    then = [[*RUN[:-1], "--resume", "o/checkpoint"], [*RUN, "--out", "ref"]]
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(then), "-"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1]) == [0, 0], (
        done.stdout,
        done.stderr,
    )
    assert "checkpoints: every 3 steps, resumed from o/checkpoint" in done.stdout
    assert "seed 1, memoa: resumed at step 3" in done.stdout
    assert "seed 0, memoa: resumed finished, read back" in done.stdout
    assert _numbers(tmp_path / "o") == _numbers(tmp_path / "ref")
    assert checkpoint_step(tmp_path / "o" / "checkpoint" / "seed-1" / "memoa") == 11


def test_two_processes_killed_mid_checkpoint_resume_to_the_same_results(
    tmp_path, capsys, monkeypatch
):
    """Two processes (`--distributed`, 2 devices each), both SIGKILLed while saving seed
    1's second checkpoint: resumed by two processes, the numbers of an uninterrupted
    two-process run with checkpoints; resumed by one process, refused (exit 2, one line).
    A save that fails on process 1 alone (a full disk) stops both processes with the same
    line (exit 1), the previous checkpoint kept: neither waits for the other forever."""
    from test_multiprocess import _pair

    def pair(commands, kill):
        return _pair(tmp_path, lambda pid: [json.dumps(commands), kill], code=DRIVER)

    first = [[*RUN, "--checkpoint-every", "3", "--out", "o"]]
    for rc, out, err in pair(first, "kill-at-6"):
        assert rc == -signal.SIGKILL, (out, err)
    folder = tmp_path / "o" / "checkpoint"
    _killed_state(folder)
    assert (folder / "seed-1" / "memoa" / "step-000000000006" / "process-1").is_dir()

    # one process cannot continue it: one line, exit 2, nothing written (this process, as
    # `memoa` runs in it: the refusal comes before anything is built)
    before = sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts)
    monkeypatch.chdir(tmp_path)
    _refused(
        capsys, [*RUN, "--resume", "o/checkpoint"], "was written by 2 process(es); this run has 1"
    )
    assert sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts) == before

    then = [
        [*RUN, "--resume", "o/checkpoint"],
        [*RUN, "--checkpoint-every", "3", "--out", "ref"],
        [*RUN, "--checkpoint-every", "3", "--out", "full"],
    ]
    for rc, out, err in pair(then, "disk-full-on-1"):
        assert rc == 0 and json.loads(out.splitlines()[-1]) == [0, 0, 1], (out, err)
        said = "cannot write a checkpoint in full/checkpoint/seed-0/memoa: process 1: "
        assert said + "[Errno 28] No space left on device" in err, err
    assert _numbers(tmp_path / "o") == _numbers(tmp_path / "ref")
    assert checkpoint_step(tmp_path / "full" / "checkpoint" / "seed-0" / "memoa") == 3


# BAD INPUT


@pytest.fixture(scope="module")
def checkpoint_folder(tmp_path_factory):
    """A checkpoint folder of a 1-seed run (K = 5): its `run.json`, what `--resume` checks
    before anything runs (written as `memoa run` writes it, without running)."""
    from memoa_jax.cli import _parser
    from memoa_jax.cli._build import build
    from memoa_jax.cli._checkpoints import RUN_RECORD, run_record
    from memoa_jax.cli._outputs import write_json

    folder = tmp_path_factory.mktemp("ckpt") / "o" / "checkpoint"
    folder.mkdir(parents=True)
    argv = [*BASE, "--seeds", "1", "--checkpoint-every", "5", "--out", str(folder.parent)]
    args = _parser().parse_args(argv)
    args.argv = argv
    write_json(folder / RUN_RECORD, run_record(args, build(args).data, 5))
    return folder


def _refused(capsys, argv, *parts) -> None:
    from memoa_jax.cli import main

    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("memoa: error: "), err
    for part in parts:
        assert part in err, err


def test_bad_checkpoint_options_are_one_line_exit_2_nothing_written(
    tmp_path, capsys, checkpoint_folder
):
    """`--checkpoint-every 0` (or below), `--resume` of a folder that is missing, holds no
    checkpoint, or is of another configuration (another option, another seed count): one
    line naming the value, exit 2, nothing written."""
    out = tmp_path / "o"
    run = [*BASE, "--seeds", "1", "--no-progress"]
    before = sorted(checkpoint_folder.parent.rglob("*"))
    _refused(capsys, [*run, "--checkpoint-every", "0", "--out", str(out)], "--checkpoint-every 0")
    _refused(capsys, [*run, "--checkpoint-every", "-2", "--out", str(out)], "positive")
    _refused(capsys, [*run, "--resume", str(tmp_path / "none")], "no such folder")
    (tmp_path / "empty").mkdir()
    _refused(capsys, [*run, "--resume", str(tmp_path / "empty")], "is not a checkpoint folder")
    _refused(
        capsys,
        [*run, "--lam", "2", "--resume", str(checkpoint_folder)],
        "is of another configuration: --lam 0.5 there, 2.0 here",
    )
    _refused(
        capsys,
        [*BASE, "--seeds", "2", "--resume", str(checkpoint_folder), "--out", str(out)],
        "--seeds 1 there, 2 here",
    )
    assert not out.exists() and sorted(tmp_path.iterdir()) == [tmp_path / "empty"]
    assert sorted(checkpoint_folder.parent.rglob("*")) == before
