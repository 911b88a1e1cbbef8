"""Issue 17: every failure a user can cause ends in one line on stderr, exit 2 (bad input) or
1 (a failure while running: file system, memory, numerics), 130 for Ctrl-C; nothing
half-written, nothing silently reused. Cheap: in-process `main`, commands stopped before
their compiled work where the case allows (`_stop_at_work`)."""

import errno
import json
import os
import random
import signal
from types import SimpleNamespace

import jax
import pytest

import memoa_jax
from memoa_jax.cli import _options, _outputs, _resources, main
from memoa_jax.cli import sweep as cmd_sweep
from memoa_jax.cli._cache import enable_compile_cache
from memoa_jax.cli._errors import Failure

# Each command with tiny sizes (as in test_cli.py's TINY)
TINY = {
    "run": ["--dataset", "logistic", "-n", "2", "--seeds", "1", "--rows", "20"]
    + ["--methods", "memoa"],
    "sweep": ["--rows", "20", "--sizes", "2", "--methods", "memoa", "--pad-below", "0"],
    "verify": ["--window", "2", "--sizes", "2,3,4", "--dense-max", "0", "--mc-sizes", "none"],
    "bench": ["--sizes", "10", "--loop-max", "0", "--steps", "5", "--repeat", "1"]
    + ["--copy-mib", "1", "--dense-sizes", "none", "--python-max", "10", "--numpy-max", "10"],
    "tune": ["--dataset", "logistic", "--rows", "20", "-n", "2", "--methods", "ogd_sgd"]
    + ["--objective", "avg", "--steps", "1", "--eval-seeds", "1"],
}
COMMANDS = sorted(TINY)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


class _Reached(BaseException):
    """Raised where a command starts its compiled work: every check has passed."""


@pytest.fixture
def _stop_at_work(monkeypatch):
    """Every command makes its progress bar once its input is checked: stop there."""
    import tqdm.auto

    def stop(*args, **kwargs):
        raise _Reached

    monkeypatch.setattr(tqdm.auto, "tqdm", stop)


# OUTPUT FOLDERS AND THE FILE SYSTEM


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("under", [False, True])
def test_out_is_a_file_or_under_one(command, under, tmp_path, capsys):
    if command == "tune" and not under:
        pytest.skip("tune's --out is a prefix: OUT.json and OUT.png beside a file OUT are fine")
    afile = tmp_path / "afile"
    afile.write_text("keep")
    out = afile / "sub" if under else afile
    assert main([command, *TINY[command], "--no-progress", "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert "afile' is a file, not a folder" in line, line
    assert afile.read_text() == "keep" and sorted(tmp_path.iterdir()) == [afile]


@pytest.mark.parametrize("command", COMMANDS)
def test_unwritable_out_is_refused_before_the_run(command, tmp_path, capsys, monkeypatch):
    """No permission, or a read-only mount (as root in a container, chmod cannot take
    the permission away: `os.access` stands in for the kernel)."""
    (tmp_path / "ro").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: "ro" not in str(p) and real(p, mode))
    out = tmp_path / "ro" / "x"
    assert main([command, *TINY[command], "--no-progress", "--out", str(out)]) == 1
    line = _one_line(capsys)
    assert "cannot be written (permission denied); nothing was run" in line, line
    assert list((tmp_path / "ro").iterdir()) == []


def test_folder_that_cannot_be_made_is_a_failure(tmp_path, monkeypatch):
    from pathlib import Path

    def refuse(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(Failure, match="cannot create the folder .Read-only file system"):
        _outputs.make_out_dir(tmp_path / "new")


def _disk_full(monkeypatch):
    """Every write fails as on a full disk, after part of the file is written."""

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def test_full_disk_leaves_previous_outputs_and_reports_no_success(tmp_path, capsys, monkeypatch):
    """`bench` writes bench.json after every size and its figure last: on a full disk the
    first write fails, the previous complete files stay as they were, no temporary file is
    left, and nothing says "wrote"."""
    out = tmp_path / "b"
    out.mkdir()
    (out / "bench.json").write_text("old json")
    (out / "bench_throughput.png").write_bytes(b"old png")
    _disk_full(monkeypatch)
    args = ["bench", *TINY["bench"], "--no-progress", "--no-compile-cache", "--out", str(out)]
    assert main(args) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert str(out / "bench.json") in err[0] and "wrote" not in captured.out
    assert (out / "bench.json").read_text() == "old json"
    assert (out / "bench_throughput.png").read_bytes() == b"old png"
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench_throughput.png"]


def test_save_figure_on_a_full_disk_closes_the_figure(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    fig = plt.figure()
    _disk_full(monkeypatch)
    with pytest.raises(Failure, match=r"cannot write .*f\.png: No space left"):
        _outputs.save_figure(tmp_path / "f.png", fig)
    assert not plt.fignum_exists(fig.number) and list(tmp_path.iterdir()) == []


# SIZES


@pytest.fixture
def _small_memory(monkeypatch):
    """A device of 1 GiB, so that the estimate refuses modest sizes."""
    monkeypatch.setattr(_resources, "device_memory", lambda n_devices=1: (2**30, "a test device"))


@pytest.mark.parametrize(
    "args, match",
    [
        (["run", "-n", "1000000000000000000000000000000"], "above the largest size accepted"),
        (["run", "-n", "inf"], "'inf' is not a finite number"),
        (["run", "-n", "2.5"], "need an integer, got '2.5'"),
        (["run", "-n", "1e8"], "bytes per agent × 100,000,000), more than the 1 GiB"),
        # past 2**32 agents (64-bit indices): the memory check refuses it, not the indices
        (["run", "-n", "1e10"], "agent × 10,000,000,000), more than the 1 GiB"),
        (["run", "-n", "1e10", "--dtype", "float32"], "agent × 10,000,000,000), more than"),
        (["run", "-n", "2e15"], "above the largest size accepted, 1e+15"),
        (["sweep", "--sizes", "inf"], "population sizes must be integers >= 1, got 'inf'"),
        (["sweep", "--sizes", "1e30"], "'1e30' is above the largest size accepted"),
        (["sweep", "--sizes", "2,1e8"], "--sizes 100,000,000 cannot fit"),
        (["verify", "--sizes", "geom:2:inf:3"], "need 1 <= LO <= HI <= 1e+15 (finite)"),
        (["verify", "--sizes", "1e30"], "above the largest size accepted"),
        (["verify", "--dense-max", "inf"], "--dense-max must be a finite number >= 0"),
        (["verify", "--dense-max", "1e30"], "--dense-max 1e+30: above the largest size"),
        (["verify", "--sizes", "2,500", "--dense-max", "500"], "--dense-max 500: N = 500 cannot"),
        (["verify", "--window", "2", "--mc-sizes", "1e8"], "--mc-sizes 100000000 cannot fit"),
        (["bench", "--sizes", "1e30"], "above the largest size accepted"),
        (["bench", "--sizes", "1e8"], "--sizes 100,000,000 cannot fit"),
        (["bench", "--copy-mib", "1000000000000000"], "bytes per MiB × 1e+15), more than"),
        (["bench", "--dense-sizes", "2,1000"], "--dense-sizes 1000 cannot fit"),
    ],
)
def test_huge_sizes_refused_up_front(args, match, tmp_path, capsys, _small_memory):
    command, extra = args[0], args[1:]
    out = tmp_path / "out"
    assert main([command, *TINY[command], *extra, "--no-progress", "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert match in line, line
    assert not out.exists()


def test_carry_estimate_grows_with_the_methods():
    import memoa_jax as mj

    enc = mj.RFNEncoder(d=1, d_x=1, p=5, sigma=0.1)
    cost = mj.CostParams()
    methods = mj.default_methods(cost, window=3, ridge_window=3)
    one = mj.Simulation(4, enc, methods[:1], cost=cost)
    five = mj.Simulation(4, enc, methods, cost=cost)
    per_one = mj.carry_bytes_per_agent(one)
    assert 8 * 5 * 5 < per_one < mj.carry_bytes_per_agent(five) < 10_000


# VALUES AND NUMERICAL FAILURES


@pytest.mark.parametrize(
    "command, extra, match",
    [
        ("run", ["--ridge-window", "500"], "--ridge-window 500 needs more than 500 prediction"),
        ("run", ["--sync-every", "50"], "--sync-every 50: the series has only 19"),
        ("sweep", ["--ridge-window", "19"], "--ridge-window 19 needs more than 19"),
        ("tune", ["--ridge-window", "30"], "--ridge-window 30 needs more than 30"),
        ("run", ["--kappa", "inf"], "--kappa must be a finite number, got inf"),
        ("run", ["--eta", "inf"], "--eta must be a finite number, got inf"),
        ("run", ["--server", "hedge", "--hedge-rate", "0"], "--hedge-rate must be a finite"),
        ("tune", ["--lr", "inf"], "--lr must be a finite number, got inf"),
        ("verify", ["--sigma", "inf"], "--sigma must be a finite number, got inf"),
        ("verify", ["--q-T", "nan"], "--q-T must be a finite number, got nan"),
        ("run", ["--window", "1e3"], "--window 1000 needs more than 1000 prediction"),
        ("run", ["--window", "2.5"], "need an integer, got '2.5'"),
    ],
)
def test_out_of_range_values_one_line(command, extra, match, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([command, *TINY[command], *extra, "--no-progress", "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert match in line, line
    assert list(tmp_path.iterdir()) == []


def test_g1_ridge_window_of_its_preset_checked(tmp_path, capsys):
    """G1 at FedMOE's settings has its own ridge window (boc's: 5), checked as well."""
    csv = tmp_path / "s.csv"
    csv.write_text("a,y\n" + "\n".join(f"{i},{i % 3}" for i in range(6)))
    cmd = ["run", "--csv", str(csv), "--preset", "boc", "--window", "1", "--ridge-window", "1"]
    assert main([*cmd, "--methods", "g1_ridge", "--out", str(tmp_path / "o")]) == 2
    assert "g1_ridge at FedMOE's settings (--g1-params fedmoe) has ridge window 5" in _one_line(
        capsys
    )


def test_numerical_failure_is_exit_1_in_tune(tmp_path, capsys, monkeypatch):
    """The same exit status as `run` (test_cmd_run) and `verify` (test_cmd_verify)."""

    def singular(*args, **kwargs):
        raise memoa_jax.SimulationError("R̃ is singular at window step s=2 (of T=3)")

    monkeypatch.setattr(memoa_jax, "tune", singular)
    out = tmp_path / "t"
    assert main(["tune", *TINY["tune"], "--no-progress", "--out", str(out)]) == 1
    line = _one_line(capsys)
    assert line == "memoa: error: ogd_sgd: R̃ is singular at window step s=2 (of T=3)", line
    assert list(tmp_path.iterdir()) == []


def test_unexpected_error_one_line_and_debug_shows_it(monkeypatch, capsys):
    from memoa_jax.cli import run as cmd_run

    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cmd_run, "main", broken)
    assert main(["run", "--no-progress"]) == 1
    assert "unexpected RuntimeError: boom (a bug" in _one_line(capsys)
    with pytest.raises(RuntimeError, match="boom"):
        main(["run", "--no-progress", "--debug"])


# NON-FINITE RESULTS


def test_strict_json_lines_and_sweep_figures_with_a_diverged_method():
    from memoa_jax._sweep_plots import plot_sweep

    nan, inf = float("nan"), float("inf")
    records = [
        dict(
            n_agents=n,
            device="cpu",
            agent_steps_per_s=1e3 * n,
            summary=dict(
                memoa=dict(worst_rmse=0.3, avg_rmse=0.2, server_rmse=0.1),
                g1_ridge=dict(worst_rmse=inf if n > 3 else 0.5, avg_rmse=nan, server_rmse=nan),
            ),
        )
        for n in (3, 5)
    ]
    lines = [_outputs.strict_json(r, indent=None) for r in records]
    assert all("NaN" not in t and "Infinity" not in t and "\n" not in t for t in lines)
    back = [json.loads(t) for t in lines]
    assert back[1]["summary"]["g1_ridge"]["worst_rmse"] is None
    assert "diverged" in back[1]["summary"]["g1_ridge"]["worst_rmse_null_reason"]
    assert cmd_sweep._diverged(back[1]) == ["g1_ridge"] and cmd_sweep._diverged(back[0]) == [
        "g1_ridge"
    ]
    figs = plot_sweep(back, title="t")  # nulls (and NaN) left out of the log axes
    labels = [t.get_text() for t in figs["metrics"].axes[0].get_legend().get_texts()]
    assert "g1_ridge (diverged at N=5)" in labels
    import matplotlib.pyplot as plt

    for fig in figs.values():
        fig.canvas.draw()
        plt.close(fig)


# RESUME INTEGRITY


def _fake_points(monkeypatch):
    """`sweep` without its compiled work: each point is a fixed record."""

    def run_points(args, built, todo, records, path, bar, compiled, mesh, guard):
        for n, seed in todo:
            summary = {m: dict(worst_rmse=0.5, avg_rmse=0.4, server_rmse=0.3) for m in built.names}
            record = dict(n_agents=n, seed=seed, slots=n, steps=1, compile_s=0.0, run_s=1.0)
            record.update(agent_steps_per_s=1.0, peak_rss_bytes=0, xla_bytes=None)
            record.update(device="cpu", n_devices=1, summary=summary, config=args.sweep_config)
            text = "".join(_outputs.strict_json(r, indent=None) + "\n" for r in [*records, record])
            _outputs.write_text(path, text)
            records.append(record)
        return 0

    monkeypatch.setattr(cmd_sweep, "_run_points", run_points)
    monkeypatch.setattr("memoa_jax._sweep_plots.plot_sweep", lambda records, title: {})


def test_sweep_resume_compares_the_csv_content(tmp_path, capsys, monkeypatch):
    _fake_points(monkeypatch)
    csv = tmp_path / "s.csv"
    csv.write_text("a,y\n" + "\n".join(f"{i},{i % 7}" for i in range(30)))
    out = tmp_path / "sw"
    args = ["sweep", "--csv", str(csv), "--sizes", "2", "--methods", "memoa", "--no-progress"]
    args += ["--out", str(out)]
    assert main(args) == 0
    assert main(args) == 0 and "1 point(s) already" in capsys.readouterr().out
    before = (out / "sweep.jsonl").read_bytes()
    csv.write_text(csv.read_text().replace("\n5,5\n", "\n5,6\n"))  # one value changed
    assert main(args) == 2
    assert "another configuration (differs in: data)" in _one_line(capsys)
    assert (out / "sweep.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda good: good[:-30], "line 2: not a complete sweep record"),
        (lambda good: good.replace(b'"seed"', b'"s\xffed"', 1), "line 1, byte 19: not UTF-8"),
    ],
)
def test_damaged_sweep_file_named_and_left_as_it_is(damage, match, tmp_path, capsys, monkeypatch):
    _fake_points(monkeypatch)
    out = tmp_path / "sw"
    args = ["sweep", *TINY["sweep"], "--sizes", "2,3", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    path = out / "sweep.jsonl"
    damaged = damage(path.read_bytes())
    path.write_bytes(damaged)
    capsys.readouterr()
    assert main(args) == 2
    line = _one_line(capsys)
    assert match in line and f"mv {path} {path}.damaged" in line, line
    assert path.read_bytes() == damaged


# INTERRUPTION


def test_ctrl_c_in_sweep_says_what_was_kept_and_how_to_resume(tmp_path, capsys, monkeypatch):
    def interrupted(args, built, todo, records, path, *rest):
        records.append(dict(n_agents=2, seed=0))  # one point written, then Ctrl-C
        try:  # in a host callback: JAX reports it as its own error, unchained to its cause
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        raise RuntimeError("INTERNAL: CpuCallback error")

    monkeypatch.setattr(cmd_sweep, "_run_points", interrupted)
    out = tmp_path / "sw"
    args = ["sweep", *TINY["sweep"], "--sizes", "2,3", "--no-progress", "--out", str(out)]
    assert main(args) == 130
    line = _one_line(capsys)
    assert line.startswith("memoa: interrupted (Ctrl-C): 1 point(s) kept in"), line
    assert line.endswith("the same command resumes: memoa " + " ".join(args)), line


def _stand_in_experiments(tmp_path, body):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "_common.py").write_text("def dataset_names(only):\n    return ['logistic']\n")
    (exp / "main_table.py").write_text(
        "import os, signal\nimport _common\n"
        "def units(**kw):\n    return 2\n"
        "def outputs(out, datasets):\n    return [out / 'main_table.md']\n"
        "def run(out, *, progress, quick, datasets, rows):\n" + body
    )
    return exp


@pytest.fixture
def _fresh_common(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = sys.modules.pop("_common", None)
    yield
    sys.modules.pop("_common", None)
    if saved is not None:
        sys.modules["_common"] = saved


def test_swallowed_ctrl_c_in_reproduce_still_stops_it(tmp_path, capsys, _fresh_common):
    """A Ctrl-C that a host callback swallowed ("Exception ignored ...") is raised at the
    next progress update: one line, what was kept, the command that resumes."""
    body = (
        "    (out / 'main_table_cells').mkdir()\n"
        "    (out / 'main_table_cells' / 'a.json').write_text('{}')\n"
        "    try:\n        os.kill(os.getpid(), signal.SIGINT)\n"
        "    except KeyboardInterrupt:\n        pass  # swallowed, as in a callback\n"
        "    progress.update(1)\n"
        "    raise AssertionError('not stopped')\n"
    )
    exp = _stand_in_experiments(tmp_path, body)
    handler = signal.getsignal(signal.SIGINT)
    out = tmp_path / "r"
    args = ["reproduce", "--only", "main_table", "--experiments-dir", str(exp), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 130
    line = _one_line(capsys)
    assert "0 complete output(s) and 1 table cell(s) kept in" in line, line
    assert "the same command resumes: memoa reproduce" in line
    assert signal.getsignal(signal.SIGINT) is handler  # restored


def test_reproduce_experiments_dir_without_common_module(tmp_path, capsys, _fresh_common):
    exp = _stand_in_experiments(tmp_path, "    return []\n")
    (exp / "_common.py").unlink()
    (exp / "main_table.py").write_text(
        (exp / "main_table.py").read_text().replace("import _common\n", "")
    )
    out = tmp_path / "r"
    args = ["reproduce", "--only", "main_table", "--experiments-dir", str(exp), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 2
    assert "no _common.py with dataset_names() there" in _one_line(capsys)
    assert not out.exists()


# FUZZ: the numeric options of every command, with a seeded table of bad values


BAD = ["nan", "inf", "-inf", "0", "-1", "-0.0", "1e30", "1e309", "2.5", "1e-400", "", "abc"]
NUMERIC = {
    "run": ["-n", "--seeds", "--rows", "--window", "--ridge-window", "--sync-every", "--q"]
    + ["--lam", "--gamma", "--alpha", "--sigma", "--features", "--kappa", "--eta"]
    + ["--hedge-rate", "--ogd-lr", "--batch-size", "--mc-samples", "--seed"],
    "sweep": ["--sizes", "--seeds", "--pad-below", "--rows", "--lam", "--sigma", "--kappa"],
    "tune": ["-n", "--steps", "--lr", "--train-frac", "--temperature", "--eval-seeds", "--gamma"],
    "verify": ["--sizes", "--dense-max", "--mc-sizes", "--mc-reps", "--window", "--d", "--p"]
    + ["--d-x", "--sigma", "--q", "--lam", "--gamma", "--alpha", "--q-T", "--lam-T"],
    "bench": ["--sizes", "--steps", "--repeat", "--numpy-max", "--python-max", "--loop-max"]
    + ["--copy-mib", "--dense-sizes"],
}
CASES = sorted((c, o, v) for c, opts in NUMERIC.items() for o in opts for v in BAD)
FUZZ = random.Random(17).sample(CASES, 80)


@pytest.mark.parametrize("command, option, value", FUZZ)
def test_fuzz_numeric_options(command, option, value, tmp_path, capsys, _stop_at_work):
    """Exit 0 (here: the command got to its work), 1 or 2; no traceback; a refusal is one
    line; a refused value leaves nothing behind."""
    extra = ["--server", "hedge"] if option == "--hedge-rate" else []
    extra += ["--encoder", "esn"] if option == "--mc-samples" else []
    out = tmp_path / "out"
    option = "--n-agents" if option == "-n" else option  # (`-n=x` would give "=x")
    argv = [command, *TINY[command], *extra, f"{option}={value}", "--no-progress"]
    try:
        code = main([*argv, "--out", str(out)])
    except _Reached:
        code = 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert code in (0, 1, 2)
    if code:
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and "error:" in err[0], err
        assert not out.exists()


@pytest.mark.parametrize(
    "backend, chunk", [("cpu", _options.LEAN_CHUNK_CPU), ("gpu", _options.LEAN_CHUNK)]
)
def test_lean_runs_chunk_large_populations_by_default(backend, chunk):
    """--state lean chunks above LEAN_CHUNK agents per device unless --batch-size says
    otherwise (over 4 devices, a share of ceil(N / 4)), in cache-sized chunks on the CPU;
    --state stored never chunks by default. Without `backend`, JAX's default backend's."""
    above = _options.LEAN_CHUNK
    big = above + 1
    lean, stored = SimpleNamespace(batch_size=None, state="lean"), SimpleNamespace(batch_size=None)
    assert _options.batch_size_for(lean, big, backend=backend) == chunk
    assert _options.batch_size_for(lean, above, backend=backend) is None
    assert _options.batch_size_for(lean, 4 * above, 4, backend) is None
    assert _options.batch_size_for(lean, 4 * above + 1, 4, backend) == chunk
    assert _options.batch_size_for(stored, big, backend=backend) is None
    assert _options.batch_size_for(SimpleNamespace(batch_size=7, state="lean"), big) == 7
    here = "cpu" if jax.default_backend() == "cpu" else "gpu"
    assert _options.batch_size_for(lean, big) == _options.batch_size_for(lean, big, 1, here)


# ISSUE 28: THE REMAINING FAILURE CASES


def _csv40(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("a,y\n" + "\n".join(f"{i},{i % 5}" for i in range(40)) + "\n")
    return csv


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--lags", "1000000"], "lags: lag 1000000 is not below the 40 rows read"),
        (["--target-lags", "0,40"], "target lags: lag 40 is not below the 40 rows read"),
        (["--rows", "100"], "only 40 data rows, fewer than the 100 asked for"),
    ],
)
def test_lags_and_rows_against_the_series(extra, match, tmp_path, capsys):
    out = tmp_path / "out"
    cmd = ["run", "--csv", str(_csv40(tmp_path)), "-n", "2", "--methods", "memoa", *extra]
    assert main([*cmd, "--no-progress", "--out", str(out)]) == 2
    assert match in _one_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "inf", "-3", "1e30", "2.5"])
def test_kernels_n_is_validated_like_sizes(value, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["bench", *TINY["bench"], "--kernels", "both", f"--kernels-n={value}"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 2
    assert "--kernels-n" in _one_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "command, option, value",
    [
        ("run", "--batch-size", "1e6"),
        ("run", "--seeds", "1e0"),
        ("run", "--rows", "2e1"),
        ("sweep", "--seeds", "1e0"),
        ("tune", "--eval-seeds", "1e0"),
        ("verify", "--mc-reps", "2e1"),
        ("bench", "--repeat", "1e0"),
    ],
)
def test_1e6_notation_for_every_count(command, option, value, tmp_path, _stop_at_work):
    """Counts take `1e6` notation like `-n` (the command gets to its work)."""
    with pytest.raises(_Reached):
        main(
            [
                command,
                *TINY[command],
                f"{option}={value}",
                "--no-progress",
                "--out",
                str(tmp_path / "o"),
            ]
        )


def test_preset_only_with_csv(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", *TINY["run"], "--preset", "ett", "--no-progress", "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert "--preset ett is an option of --csv; --dataset logistic runs with its own" in line
    assert not out.exists()


def test_outputs_follow_the_umask(tmp_path):
    from memoa_jax.data import write_atomic

    old = os.umask(0o077)
    try:
        private = write_atomic(tmp_path / "private.txt", lambda f: f.write(b"x"))
        os.umask(0o022)
        shared = write_atomic(tmp_path / "shared.txt", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert private.stat().st_mode & 0o777 == 0o600
    assert shared.stat().st_mode & 0o777 == 0o644


def test_read_only_cache_is_said_once_and_turned_off(tmp_path, capsys, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setenv("MEMOA_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    args = SimpleNamespace(no_compile_cache=False)
    enable_compile_cache(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert args.compile_cache_dir is None
    assert len(err) == 1 and "compilation cache off" in err[0] and "Read-only" in err[0], err


@pytest.mark.parametrize("command", COMMANDS)
def test_dangling_out_symlink_refused_before_any_work(command, tmp_path, capsys):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    assert main([command, *TINY[command], "--no-progress", "--out", str(link)]) == 2
    line = _one_line(capsys)
    assert "is a symbolic link to" in line and "which does not exist" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and link.is_symlink()


def test_empty_out_folder_removed_on_failure(tmp_path, capsys, monkeypatch):
    """A full disk at the first write: the folder the run made is taken away again; a
    folder that was there before stays."""
    _disk_full(monkeypatch)
    out = tmp_path / "new" / "b"
    args = ["bench", *TINY["bench"], "--no-progress", "--no-compile-cache"]
    assert main([*args, "--out", str(out)]) == 1
    assert "No space left on device" in _one_line(capsys)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    assert main([*args, "--out", str(tmp_path / "kept")]) == 1
    assert (tmp_path / "kept").is_dir()


def test_reproduce_full_disk_names_where(tmp_path, capsys, _fresh_common):
    body = "    raise OSError(28, 'No space left on device')\n"
    exp = _stand_in_experiments(tmp_path, body)
    out = tmp_path / "r"
    args = ["reproduce", "--only", "main_table", "--experiments-dir", str(exp), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 1
    line = _one_line(capsys)
    assert f"cannot write an output of main_table in {out}/: No space left on device" in line
    assert not out.exists()


def test_help_does_not_import_jax():
    """Issue 28 item 4: `memoa --help` and `memoa COMMAND --help` parse without JAX (in a
    fresh process: this one has imported it)."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "from memoa_jax.cli import _parser\n"
        "for argv in [['--help'], *[[c, '--help'] for c in "
        "('run', 'sweep', 'tune', 'verify', 'bench', 'reproduce')]]:\n"
        "    try:\n"
        "        _parser().parse_args(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('JAX IMPORTED' if 'jax' in sys.modules else 'NO JAX', file=sys.stderr)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "NO JAX", done.stderr
    assert "memoa tune" in done.stdout or "usage: memoa tune" in done.stdout


# CTRL-C AT ANY MOMENT (issue 28 item 11)


def _interrupt(command: str, delay: float, tmp_path, *extra: str):
    """`python -m memoa_jax COMMAND` (tiny sizes) sent SIGINT after `delay` seconds: its exit
    status, its stderr lines and what is left in `tmp_path`."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "o"
    root = Path(__file__).resolve().parents[1]
    argv = [sys.executable, "-m", "memoa_jax", command, *TINY[command], "--no-progress", *extra]
    proc = subprocess.Popen(
        [*argv, "--out", str(out)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    return proc.returncode, err.decode().strip().splitlines(), sorted(tmp_path.iterdir())


def _check_interrupted(code, err, left):
    """Exit 130 with one line (the folder it made removed if empty), or done (exit 0)
    before the signal came; never a traceback, a crash (a negative status) or exit 1."""
    if code == 0:
        assert err == [] and left
        return
    whole = "\n".join(err)  # (all of it: a crash's traceback says where the signal landed)
    assert code == 130 and len(err) == 1 and "interrupted (Ctrl-C)" in err[0], f"{code}:\n{whole}"


def test_ctrl_c_during_the_work_of_a_program(tmp_path):
    """One quick instance: 2 s in, while JAX is imported or the loop compiled (without the
    cache, so that it cannot be done by then)."""
    code, err, left = _interrupt("sweep", 2.0, tmp_path, "--no-compile-cache")
    assert code == 130, (code, err)
    _check_interrupted(code, err, left)
    assert left == [], left  # the empty output folder is gone


@pytest.mark.slow
def test_ctrl_c_at_random_moments_of_every_command(tmp_path):
    """Seeded random moments from 0.5 s (before that Python itself is starting, and
    prints its own traceback) to 8 s, over every command; bounded: 12 runs."""
    rng = random.Random(28)
    for i in range(12):
        command, delay = rng.choice(COMMANDS), rng.uniform(0.5, 8.0)
        (tmp_path / str(i)).mkdir()
        code, err, left = _interrupt(command, delay, tmp_path / str(i))
        _check_interrupted(code, err, left)


def test_ctrl_c_raised_where_python_ignores_it_still_stops(tmp_path, capsys, monkeypatch):
    """A KeyboardInterrupt in a garbage-collector callback ("Exception ignored in ...", as
    in JAX's `_xla_gc_callback`) is raised again in the main thread: exit 130, one line,
    nothing about the ignored exception."""
    import time

    from memoa_jax.cli import run as cmd_run

    class Collected:
        def __del__(self):
            raise KeyboardInterrupt

    def work(args):
        Collected()  # deleted at once: the interrupt is "ignored"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.01)
        return 0

    monkeypatch.setattr(cmd_run, "main", work)
    start = time.monotonic()
    assert main(["run", "--no-progress"]) == 130
    assert time.monotonic() - start < 5
    assert _one_line(capsys) == "memoa: interrupted (Ctrl-C); run stopped"


def test_swallowed_ctrl_c_is_not_exit_0(capsys, monkeypatch):
    from memoa_jax.cli import run as cmd_run

    def work(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass  # swallowed: the command runs on to its end
        return 0

    monkeypatch.setattr(cmd_run, "main", work)
    assert main(["run", "--no-progress"]) == 130
    assert _one_line(capsys) == "memoa: interrupted (Ctrl-C); run stopped"


def test_distributed_population_checked_per_process(tmp_path):
    """`--distributed`: once it is up (one process here), the process's share of N is
    checked against its own devices: 10¹⁰ agents are refused, one line, exit 2, nothing
    written. (A subprocess: `jax.distributed` starts once per process.)"""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "memoa_jax", "run", *TINY["run"], "-n", "1e10", "--distributed"]
    cmd += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "1", "--process-id", "0"]
    res = subprocess.run(
        [*cmd, "--no-progress", "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "over 1 process(es) cannot fit" in lines[0], lines
    assert "10,000,000,000), more than" in lines[0], lines
    assert not out.exists()
