"""Where the default test run's time goes (issue 27 item 6): the README's test command run
once with a pytest plugin that listens to `jax.monitoring`, then per test file and per test
the wall time, XLA's backend compile time, tracing and lowering time and the number of
compiled programs, beside the run's own wall and CPU time (all workers).

    python experiments/test_time.py --out figures/test_time        # the default run
    python experiments/test_time.py --out runs/test-time -- tests/test_loop.py -n 0

It writes OUT/test_time.json (every test) and OUT/test_time.md (the totals, the files, the
20 slowest tests) and prints the Markdown. Compile times are those of this process's own
programs: the compilations inside a test's subprocesses (the multi-process and 4-device
tests) count in its wall time only. Run it on a quiet machine: it reports the load average.

The plugin half is loaded into pytest and its workers as `-p experiments.test_time`; it
writes one JSON per worker into $MEMOA_TEST_TIME_DIR.
"""

import argparse
import collections
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

EVENTS = {
    "compile_s": "/jax/core/compile/backend_compile_duration",
    "trace_s": "/jax/core/compile/jaxpr_trace_duration",
    "lower_s": "/jax/core/compile/jaxpr_to_mlir_module_duration",
}
FIELDS = ("wall_s", *EVENTS, "programs")

# ------------------------------------------------------------------------------------------
# the pytest plugin (in each worker)
# ------------------------------------------------------------------------------------------

_current = ["(outside tests)"]
_totals: dict = collections.defaultdict(lambda: dict.fromkeys(FIELDS, 0.0))


def _on_duration(event: str, duration: float, **_) -> None:
    for field, name in EVENTS.items():
        if event == name:
            _totals[_current[0]][field] += duration
            if field == "compile_s":
                _totals[_current[0]]["programs"] += 1


def pytest_configure(config):
    import jax.monitoring

    jax.monitoring.register_event_duration_secs_listener(_on_duration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current[0] = item.nodeid
    t0 = time.perf_counter()
    yield
    _totals[item.nodeid]["wall_s"] += time.perf_counter() - t0
    _current[0] = "(outside tests)"


def pytest_sessionfinish(session):
    folder = os.environ.get("MEMOA_TEST_TIME_DIR")
    if folder:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        (Path(folder) / f"{worker}.json").write_text(json.dumps(_totals))


# ------------------------------------------------------------------------------------------
# the report (the command)
# ------------------------------------------------------------------------------------------


def _merge(folder: Path) -> dict:
    tests: dict = {}
    for path in sorted(folder.glob("*.json")):
        for test, fields in json.loads(path.read_text()).items():
            into = tests.setdefault(test, dict.fromkeys(FIELDS, 0.0))
            for field in FIELDS:
                into[field] += fields[field]
    return tests


def _sum(rows) -> dict:
    total = dict.fromkeys(FIELDS, 0.0)
    for fields in rows:
        for field in FIELDS:
            total[field] += fields[field]
    return total


def _row(name: str, f: dict) -> str:
    return (
        f"| {name} | {f['wall_s']:.1f} | {f['compile_s']:.1f} | {f['trace_s']:.1f} "
        f"| {f['lower_s']:.1f} | {f['programs']:.0f} |"
    )


def report(run: dict, tests: dict) -> str:
    files: dict = collections.defaultdict(list)
    for test, fields in tests.items():
        files[test.split("::")[0]].append(fields)
    per_file = {name: _sum(rows) for name, rows in files.items()}
    total = _sum(tests.values())
    head = "| | wall s | XLA compile s | trace s | lower s | programs |\n|---|---|---|---|---|---|"
    lines = [
        "# Where the default test run's time goes",
        "",
        f"`{run['command']}`: {run['outcome']} in **{run['wall_s']:.0f} s** of wall time, "
        f"{run['cpu_s']:.0f} s of CPU time ({run['cpu_s'] / run['wall_s']:.2f} of "
        f"{run['cores']} cores busy on average); load average {run['load_before']:.2f} "
        f"before. JAX {run['jax']}, Python {run['python']}.",
        "",
        "Summed over the tests (every worker; a test's subprocesses count in its wall time only):",
        "",
        head,
        _row("all tests", total),
        "",
        "## Per file",
        "",
        head.replace("| |", "| file |", 1),
        *(
            _row(f"`{name}`", f)
            for name, f in sorted(per_file.items(), key=lambda kv: -kv[1]["wall_s"])
        ),
        "",
        "## The 20 slowest tests",
        "",
        head.replace("| |", "| test |", 1),
        *(
            _row(f"`{name}`", f)
            for name, f in sorted(tests.items(), key=lambda kv: -kv[1]["wall_s"])[:20]
        ),
        "",
    ]
    return "\n".join(lines)


def write_json(path: Path, run: dict, tests: dict) -> None:
    """`{"run": ..., "tests": {test: fields}}`, one line per test, times to the millisecond."""
    rows = ",\n".join(
        f"  {json.dumps(name)}: {json.dumps({k: round(v, 3) for k, v in f.items()})}"
        for name, f in sorted(tests.items())
    )
    path.write_text(f'{{\n "run": {json.dumps(run)},\n "tests": {{\n{rows}\n }}\n}}\n')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/test-time"))
    parser.add_argument("pytest_args", nargs="*", help="after --: passed on to pytest")
    args = parser.parse_args(argv)
    command = [sys.executable, "-m", "pytest", "-p", "experiments.test_time", *args.pytest_args]
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "MEMOA_TEST_TIME_DIR": folder}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        tests = _merge(Path(folder))
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not tests:
        sys.exit(f"pytest exited with {done.returncode}: {summary}\n{done.stderr[-2000:]}")
    run = {
        "command": " ".join(["python -m pytest", *args.pytest_args]),
        "outcome": summary.strip("= "),
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "cores": os.cpu_count(),
        "load_before": load,
        "jax": importlib.metadata.version("jax"),
        "python": platform.python_version(),
    }
    text = report(run, tests)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "test_time.json", run, tests)
    (args.out / "test_time.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'test_time.json'} and {args.out / 'test_time.md'}")


if __name__ == "__main__":
    main()
