"""What every `memoa` command shares: the error type, value checks, the model options and
`build(args)` of a `Simulation`, device options, output folders and files, the table printer.

Commands import this module; it never imports a command.
"""

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from ..data import Dataset, write_atomic

METHOD_NAMES = ("memoa", "g1_ridge", "g2_myopic", "g3_independent", "g4_follow_mean")
OGD_NAMES = ("ogd_sgd", "ogd_adam")  # online-gradient baselines: selectable, not run by default
# FedMOE's own dense N-player game (`memoa_jax.simulate_fedmoe_game`): `memoa run` only
COMPARATOR_NAMES = ("fedmoe_game",)
RUNS = Path("runs")  # every command's default output goes under here (git-ignored)
# above this ridge window T_c, a note says that the compilation will take minutes
RIDGE_WINDOW_NOTE = 32


EXIT_FAILURE = 1  # a failure while running: file system, memory, a numerical failure
EXIT_USAGE = 2  # bad input, refused before anything ran
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports it


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2, nothing written."""


class Failure(Exception):
    """A failure while running that the input did not announce: the file system (a full
    disk, no permission), memory, or a numerical failure inside a compiled loop or solver
    (a singular system). Reported as one line, exit status 1 in every command."""


class Interrupted(Exception):
    """Ctrl-C, caught where the command can say what was kept and how to resume: one line,
    exit status 130."""


def check(cond, message):
    """Raises `UsageError(message)` unless `cond`."""
    if not cond:
        raise UsageError(message)


class HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default after its help, unless the default is None or False (the
    help then says what happens) or the help already shows it. A bare `%` in a help text
    ("10 %") is escaped, so that argparse's %-formatting cannot fail on it."""

    def _get_help_string(self, action):
        text = re.sub(r"(?<!%)%(?![(%])", "%%", action.help or "")
        default = action.default
        if (
            "%(default)" in text
            or not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


# OUTPUTS


def stamp() -> str:
    """The local time, for output folders that must not collide: `20261203-184016`."""
    return time.strftime("%Y%m%d-%H%M%S")


def default_out(command: str, *parts) -> Path:
    """`runs/<command>-<part>-<part>...`: where a command writes when `--out` is not given."""
    return RUNS / "-".join([command, *(str(p) for p in parts)])


def check_out_dir(out: Path, option: str = "--out") -> None:
    """Refuses (exit 2) an output folder that names a file, or lies under one; nothing is
    created. Commands call it before their work, so that a bad `--out` costs no run; a
    folder that cannot be written (permission, read-only mount) is a failure (exit 1), found
    as early."""
    import os

    for folder in (out, *out.parents):
        if folder.is_symlink() and not folder.exists():
            raise UsageError(
                f"{option} {str(out)!r}: {str(folder)!r} is a symbolic link to "
                f"{os.readlink(folder)!r}, which does not exist; nothing was run"
            )
        if folder.exists():
            check(
                folder.is_dir(),
                f"{option} {str(out)!r} is a file, not a folder"
                if folder == out
                else f"{option} {str(out)!r}: {str(folder)!r} is a file, not a folder, so "
                "nothing can be created under it",
            )
            if not os.access(folder, os.W_OK | os.X_OK):  # (read-only mount, permission)
                cause = "read-only file system" if _read_only(folder) else "permission denied"
                raise Failure(
                    f"{option} {str(out)!r}: {str(folder)!r} cannot be written ({cause}); "
                    "nothing was run"
                )
            return


def _read_only(folder: Path) -> bool:
    import os

    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


# The folders `make_out_dir` created in this command, deepest first: `remove_empty_outputs`
# takes away those a failure or an interrupt left empty.
CREATED: list[Path] = []


def make_out_dir(out: Path, option: str = "--out") -> Path:
    """Creates the output folder `out` (and its parents). A file in the way is bad input
    (exit 2); a folder that cannot be created (permission, read-only file system, full
    disk) is a failure (exit 1). Either way one line naming the path and the cause. The
    folders it creates are noted in `CREATED`."""
    check_out_dir(out, option)
    missing = [f for f in (out, *out.parents) if not f.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Failure(f"{option} {str(out)!r}: cannot create the folder ({_cause(e)})") from None
    CREATED.extend(missing)
    return out


def remove_empty_outputs() -> None:
    """After a failure or an interrupt: removes the folders `make_out_dir` created that are
    still empty (deepest first), so that a run that wrote nothing leaves nothing."""
    for folder in sorted(CREATED, key=lambda f: len(f.absolute().parts), reverse=True):
        try:
            folder.rmdir()  # only an empty folder
        except OSError:
            pass
    CREATED.clear()


def _cause(e: OSError) -> str:
    return e.strerror or type(e).__name__


def write_atomic_or_fail(path: Path, write) -> Path:
    """`memoa_jax.data.write_atomic(path, write)`, with a failure of the file system (no
    permission, read-only, full disk) as one line naming `path` (`Failure`, exit 1). The
    temporary file is gone and `path` is as it was: the previous complete file, or none."""
    try:
        return write_atomic(path, write)
    except OSError as e:
        raise Failure(
            f"cannot write {path}: {_cause(e)} (no partial file is left; a previous "
            f"{path.name}, if any, is unchanged)"
        ) from None


def write_text(path: Path, text: str) -> Path:
    """`text` (UTF-8) to `path`, atomically (`memoa_jax.data.write_atomic`)."""
    data = text.encode()
    return write_atomic_or_fail(path, lambda f: f.write(data))


def write_json(path: Path, record) -> Path:
    """`record` as strict JSON (`strict_json`: a non-finite number is `null` with a reason)."""
    return write_text(path, strict_json(record))


def save_figure(path: Path, fig, dpi: int = 110) -> Path:
    """A matplotlib figure to `path` as PNG, atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    try:
        write_atomic_or_fail(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
    return path


def _null_reason(v) -> str:
    return f"{v} is not a JSON number: the value overflowed (the method diverged)"


def strict_clean(record: Any) -> Any:
    """`record` (dicts, lists, numbers) with every non-finite float replaced by None; the
    dict that held it gains `<key>_null_reason` saying why (a diverged method's overflow)."""

    def clean(v):
        """(cleaned value, reason or None)"""
        if isinstance(v, dict):
            return walk(v), None
        if isinstance(v, (list, tuple)):
            items = [clean(e) for e in v]
            bad = [r for _, r in items if r is not None]
            why = None
            if bad:
                why = f"{len(bad)} of {len(items)} entries are not finite (null): {bad[0]}"
            return [e for e, _ in items], why
        if isinstance(v, float) and not math.isfinite(v):
            return None, _null_reason(v)
        return v, None

    def walk(d: dict) -> dict:
        out = {}
        for k, v in d.items():
            out[k], why = clean(v)
            if why is not None:
                out[f"{k}_null_reason"] = why
        return out

    return clean(record)[0]


def strict_json(record, indent: int | None = 1) -> str:
    """`record` as strict JSON (never NaN or Infinity; see `strict_clean`), one line when
    `indent` is None, else indented and ending in a newline."""
    text = json.dumps(strict_clean(record), indent=indent, allow_nan=False)
    return text if indent is None else text + "\n"


def print_table(cols, rows, *, left: int = 0, title: str | None = None):
    """Prints `rows` (lists of strings) under the headers `cols`, a rule between them; the
    first `left` columns are left-aligned, the others right-aligned."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    if title is not None:
        print(title)
    for r in [cols, ["-" * w for w in widths], *rows]:
        cells = (v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
        print("  ".join(cells))


# COMPILATION CACHE


def compile_cache_dir() -> Path:
    """Where the CLI keeps JAX's persistent compilation cache: `$MEMOA_JAX_CACHE`, else
    `$XDG_CACHE_HOME/memoa-jax/jax`, else `~/.cache/memoa-jax/jax`."""
    import os

    if os.environ.get("MEMOA_JAX_CACHE"):
        return Path(os.environ["MEMOA_JAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "memoa-jax" / "jax"


def enable_compile_cache(args) -> None:
    """Turns on JAX's persistent compilation cache (unless `--no-compile-cache`), so that a
    second identical run reads its compiled programs from disk. Sets
    `args.compile_cache_dir` (None when off)."""
    import jax

    args.compile_cache_dir = None
    if getattr(args, "no_compile_cache", False):
        return
    folder = compile_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        import tempfile

        with tempfile.TemporaryFile(dir=folder):  # JAX would warn at every entry it writes
            pass
    except OSError as e:  # an unwritable home or cache: run without the cache, and say so once
        print(
            f"memoa: compilation cache off ({folder}: {_cause(e)}; --no-compile-cache "
            "silences this)",
            file=sys.stderr,
        )
        return
    # (a flag the type stubs of jax.config do not list: read by name)
    if getattr(jax.config, "jax_compilation_cache_dir") != str(folder):
        jax.config.update("jax_compilation_cache_dir", str(folder))
        try:  # a cache already used in this process (tests) keeps its folder unless reset
            from jax._src import compilation_cache

            compilation_cache.reset_cache()
        except (ImportError, AttributeError):
            pass
    # every compilation is worth keeping: the loop's take seconds, but the threshold is 1 s
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    args.compile_cache_dir = str(folder)


# VALUES


# No size at all is larger (verify's exact solver takes N as a float64, exact below 2**53).
MAX_SIZE = 10**15
# No population is larger: agents are indexed with 64-bit integers past 2**31 (their keys
# fold in all 64 bits), and N and every index stay exact as float64 numbers.
MAX_AGENTS = MAX_SIZE


def parse_count(text: str, option: str, *, limit: int = MAX_SIZE) -> int:
    """One integer (`1e6` notation allowed), finite and at most `limit`; the caller checks
    its lower bound."""
    item = text.strip()
    try:
        value = int(item)
    except ValueError:
        try:
            f = float(item)
        except ValueError:
            raise UsageError(f"{option}: {item!r} is not a number") from None
        check(math.isfinite(f), f"{option}: {item!r} is not a finite number")
        check(f == int(f), f"{option}: need an integer, got {item!r}")
        value = int(f)
    check(value <= limit, f"{option}: {item!r} is above the largest size accepted, {limit:.3g}")
    return value


def count_type(option: str, limit: int = MAX_SIZE):
    """An argparse `type` for an integer option that also takes `1e6` notation."""

    def parse(text: str) -> int:
        try:
            return parse_count(text, option, limit=limit)
        except UsageError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{option}: ")) from None

    parse.__name__ = "integer"  # argparse names the type in its message
    return parse


def parse_sizes(text: str, option: str = "--sizes", *, limit: int = MAX_SIZE) -> list[int]:
    """A comma-separated list of population sizes (`1e6` notation allowed), sorted, unique;
    each a finite integer in [1, limit]."""
    check(text.strip() != "", f"{option} is empty")
    sizes = []
    for item in text.split(","):
        item = item.strip()
        try:
            float(item)
        except ValueError:
            raise UsageError(f"{option}: {item!r} is not a number") from None
        try:
            value = parse_count(item, option, limit=limit)
        except UsageError as e:
            raise UsageError(
                f"{option}: population sizes must be integers >= 1, got {item!r}"
                if "above the largest" not in str(e)
                else str(e)
            ) from None
        check(value >= 1, f"{option}: population sizes must be integers >= 1, got {item!r}")
        sizes.append(value)
    return sorted(set(sizes))


def format_bytes(n: int | float) -> str:
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def format_count(n: int) -> str:
    return f"{n:,}" if n < 10**12 else f"{n:.3g}"


def device_memory(n_devices: int = 1) -> tuple[int, str]:
    """The memory the computation can use, in bytes, and what it is: the accelerators'
    (`memory_stats()["bytes_limit"]`, times `n_devices`), else the machine's RAM (CPU
    devices share it)."""
    import os

    import jax

    dev = jax.local_devices()[0]  # (under --distributed: this process's)
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # a backend without memory statistics
        stats = {}
    if stats.get("bytes_limit"):
        kind = getattr(dev, "device_kind", dev.platform)
        return int(stats["bytes_limit"]) * n_devices, f"{n_devices} × {kind}"
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(ram), "this machine's RAM"


def check_fits(what: str, per_item: int, n: int, unit: str = "agent", n_devices: int = 1):
    """Refuses (exit 2) `n` items of `per_item` bytes each when they exceed the memory of
    the devices: one line with the estimate."""
    need = per_item * n
    memory, where = device_memory(n_devices)
    if need > memory:
        raise UsageError(
            f"{what} cannot fit: about {format_bytes(need)} ({per_item:,} bytes per {unit} × "
            f"{format_count(n)}), more than the {format_bytes(memory)} of {where}"
        )


def dense_bytes(n: int, d: int, p: int) -> int:
    """The dense solver's memory at N = n, a lower bound (its O(N³)): the value matrices of
    every agent before and after a step and their weights (three float64 arrays of
    N × (N d)²), and the stacked system with its right-hand sides (two of (N p)²)."""
    return 8 * (3 * n * (n * d) ** 2 + 2 * (n * p) ** 2)


def check_population_fits(sims, n_agents: int, option: str, n_devices: int = 1):
    """Refuses (exit 2), before anything is compiled, a population the loop's state
    (`memoa_jax.carry_bytes_per_agent`, the largest of the simulations run one after the
    other) cannot hold in
    the devices' memory, or one above `MAX_AGENTS`."""
    check(
        n_agents <= MAX_AGENTS,
        f"{option} {format_count(n_agents)}: at most {MAX_AGENTS:.3g} agents (N and the "
        "agents' indices exact as float64 numbers)",
    )
    import memoa_jax as mj

    per_agent = max(mj.carry_bytes_per_agent(s) for s in sims)
    check_fits(f"{option} {format_count(n_agents)}", per_agent, n_agents, n_devices=n_devices)


def check_population_share(args, sims):
    """Under `--distributed`, once `jax.distributed` is up (the devices are not known
    before): refuses (exit 2) this process's share of the population, N / process count
    rounded up, when the loop's state cannot hold it in its local devices' memory."""
    import jax

    import memoa_jax as mj

    if not sims:
        return
    n, processes = args.n_agents, jax.process_count()
    share = -(-n // processes)
    per_agent = max(mj.carry_bytes_per_agent(s) for s in sims)
    option = getattr(args, "size_option", "--n-agents")
    what = f"{option} {format_count(n)} over {processes} process(es)"
    check_fits(what, per_agent, share, n_devices=jax.local_device_count())


def check_finite(args, *names):
    """Refuses an infinite or NaN value of the float options `names` (those given)."""
    for name in names:
        value = getattr(args, name, None)
        check(
            value is None or math.isfinite(value),
            f"--{name.replace('_', '-')} must be a finite number, got {value}",
        )


def runtime_message(e: BaseException) -> str:
    """The one line that matters of an error raised by a failed runtime check: the message
    itself (`SimulationError`, `ValueError`), or, for equinox's `EquinoxRuntimeError`, whose
    text wraps the message in the stacks inside and outside of JIT, its message line."""
    import equinox as eqx

    text = str(e)
    marker = "EquinoxRuntimeError: "  # where equinox's text puts the message
    if isinstance(e, eqx.EquinoxRuntimeError) and marker in text:
        return text.split(marker, 1)[1].split("\n")[0]
    lines = [line for line in text.strip().split("\n") if line.strip()]
    return lines[0] if lines else type(e).__name__


def _out_of_memory(e: BaseException) -> bool:
    """The device ran out of memory: a `MemoryError`, or XLA's runtime error whose status
    code (the start of its message, not free text) is RESOURCE_EXHAUSTED."""
    import jax

    return isinstance(e, MemoryError) or (
        isinstance(e, jax.errors.JaxRuntimeError) and str(e).startswith("RESOURCE_EXHAUSTED")
    )


def is_runtime_failure(e: BaseException) -> bool:
    """Whether `e` is a failed runtime check, by its type: the loop's `SimulationError`
    (raised on the host after the compiled loop), equinox's `EquinoxRuntimeError` (a solver
    called on its own, under `eqx.filter_jit`), or the device running out of memory."""
    import equinox as eqx

    from .._status import SimulationError

    return isinstance(e, (SimulationError, eqx.EquinoxRuntimeError)) or _out_of_memory(e)


def runtime_failure(e: BaseException, where: str) -> Failure:
    """The `Failure` (exit 1) to raise for `e` (see `is_runtime_failure`), prefixed with
    `where` (the method and seed, ...)."""
    if _out_of_memory(e):
        first = str(e).strip().split("\n")[0][:200] or "MemoryError"
        return Failure(f"{where}: out of memory ({first})")
    return Failure(f"{where}: {runtime_message(e)}")


# MODEL OPTIONS


def add_model_options(r, *, dataset: str = "ecb"):
    """Data, hyper-parameter and method options shared by `run` and the commands that
    build a `Simulation` the same way (`build(args)`). New model options go here and into
    `build`. `dataset`: this command's default data set."""
    from ..data import DATASETS

    r.add_argument("--dataset", default=dataset, help=f"one of {', '.join(sorted(DATASETS))}")
    r.set_defaults(default_dataset=dataset)
    r.add_argument(
        "--data-dir",
        type=Path,
        help="folder of the real data files (boc, ett); default $MEMOA_DATA, else "
        "../shared/data beside the source checkout",
    )
    c = r.add_argument_group(
        "your own data (--csv)",
        "A CSV with a header line, read with Python's csv module (UTF-8, a byte-order mark "
        "and quoted names allowed, no comment character). Defaults: the target is the last "
        "numeric column, the inputs every other numeric column at lag 0, plus the target at "
        "lag 0; no scaling; the ECB hyper-parameters (--preset ecb). A non-numeric column "
        "that is not chosen is dropped (one line says so); a date column indexes the series. "
        "FedMOE's BoC recipe, e.g.: --lags 0,1 --target-lags 0,1 --scale max --preset boc.",
    )
    c.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="use this CSV file instead of --dataset (plain, or compressed: .gz, .bz2, .xz)",
    )
    c.add_argument(
        "--target",
        metavar="COL[,COL]",
        help="target column(s), comma separated (default: the last numeric column)",
    )
    c.add_argument(
        "--inputs",
        metavar="COL,COL,...",
        help="input columns, comma separated (default: every other numeric column; "
        "'none': only the target's lags)",
    )
    c.add_argument("--lags", default="0", help="lags of the inputs in x (0: the row's own value)")
    c.add_argument(
        "--target-lags",
        default="0",
        metavar="LAGS",
        help="lags of the target in x ('none': the target is not an input)",
    )
    c.add_argument(
        "--scale",
        choices=("none", "max", "standard"),
        default="none",
        help="max: x and y each divided by their largest absolute value (FedMOE); standard: "
        "each column to mean 0, std 1 (over the rows read)",
    )
    c.add_argument(
        "--preset",
        metavar="DATASET",
        help="with --csv: the hyper-parameters (and G1's FedMOE settings) of this data set "
        "(default: ecb's); a --dataset always runs with its own",
    )
    r.add_argument(
        "--rows",
        type=count_type("--rows"),
        help="use only the first ROWS rows of the series (a --csv: read only those); more "
        "rows than the series has are refused",
    )
    r.add_argument(
        "--window", type=count_type("--window"), help="game window T (default: per data set)"
    )
    r.add_argument(
        "--ridge-window",
        type=count_type("--ridge-window"),
        help="greedy ridge window T_c (default: per data set)",
    )
    r.add_argument(
        "--sync-every",
        type=count_type("--sync-every"),
        default=1,
        help="play the game every K steps",
    )
    r.add_argument("--q", type=float, default=1.0, help="own-error weight q")
    r.add_argument("--lam", type=float, default=0.5, help="mean-field coupling λ")
    r.add_argument("--gamma", type=float, help="ridge weight γ > 0 (default: per data set)")
    r.add_argument("--alpha", type=float, help="recency discount α ≥ 0 (default: per data set)")
    r.add_argument("--sigma", type=float, help="RFN noise scale σ > 0 (default: per data set)")
    r.add_argument(
        "--features",
        type=count_type("--features"),
        help="features per agent p (d_z) (default: per data set)",
    )
    r.add_argument(
        "--encoder",
        choices=("rfn", "esn"),
        default="rfn",
        help="agents' encoder: random-feature net or echo-state net (HardSigmoid "
        "reservoir, Monte-Carlo moments)",
    )
    r.add_argument(
        "--mc-samples",
        type=count_type("--mc-samples"),
        default=16,
        help="esn: moment draws per agent",
    )
    r.add_argument(
        "--homogeneity",
        choices=("h1", "h2"),
        default="h2",
        help="h1: one shared encoder; h2: one encoder per agent",
    )
    r.add_argument(
        "--mean-field",
        choices=("realized", "flow"),
        default="realized",
        help="agents use the broadcast empirical mean (realized) or the flow m",
    )
    r.add_argument("--server", choices=("ridge", "hedge"), default="ridge")
    r.add_argument("--kappa", type=float, default=1.0, help="server ridge κ > 0")
    r.add_argument("--eta", type=float, default=1.0, help="server weights' sum η")
    r.add_argument(
        "--hedge-rate", type=float, help="hedge learning rate > 0 (default: 1/(8 B²), B = max |y|)"
    )
    r.add_argument(
        "--methods",
        default=",".join(METHOD_NAMES),
        help="comma-separated subset of "
        + ", ".join(METHOD_NAMES + OGD_NAMES + COMPARATOR_NAMES)
        + " (fedmoe_game: FedMOE's own dense N-player game, N ≤ 32, memoa run only)",
    )
    r.add_argument("--ogd-lr", type=float, default=0.05, help="ogd_*: agents' learning rate")
    g = r.add_argument_group(
        "readings of the game, and G1's settings",
        "How every game method (memoa, g2_myopic, g3_independent) uses the window's solution "
        "at a sync step t: ŷₜ₊₁ = base + Zₜ β.",
    )
    g.add_argument(
        "--replay-base",
        choices=("replay_end", "observed", "own"),
        default="replay_end",
        help="base: the replay's end (FedMOE), the observed yₜ, or the agent's own ŷₜ",
    )
    g.add_argument(
        "--replay-control",
        choices=("replay", "gains"),
        default="replay",
        help="β: the replay's last control (FedMOE), or the window's last gains on the base",
    )
    g.add_argument(
        "--moments",
        choices=("population", "own"),
        default="population",
        help="gains from the population's moments, or each agent's own (FedMOE's; rfn only)",
    )
    g.add_argument(
        "--fedmoe-compat",
        action="store_true",
        help="fedmoe_game: FedMOE's recursion with its two defects (its plain reshape of the "
        "block matrices, its value update without the discount), to regenerate its numbers",
    )
    g.add_argument(
        "--g1-params",
        choices=("fedmoe", "game"),
        default="fedmoe",
        help="G1 (g1_ridge) at FedMOE's tuned settings for its greedy client (its own α, γ, "
        "σ, d_z, T_c and encoder draw, in a second simulation on the same data and key; the "
        "model options above set the other methods), or at the game's settings",
    )
    r.add_argument(
        "--params",
        type=Path,
        help="JSON of hyper-parameters to use: `memoa tune`'s output folder or its tune.json",
    )


LEAN_CHUNK = 2**20


def add_state_options(parser):
    """`--batch-size` and `--state` (memoa run and memoa sweep)."""
    parser.add_argument(
        "--batch-size",
        type=count_type("--batch-size"),
        help="process agents in chunks of this size (default: none with --state stored; "
        f"chunks of {LEAN_CHUNK:,} with --state lean above that many agents, so that a step's "
        "intermediates do not scale with N)",
    )
    parser.add_argument(
        "--state",
        choices=("stored", "lean"),
        default="stored",
        help="what the loop carries per agent: 'lean' recomputes the encoder parameters, "
        "noise keys and feature draws from the agent index, key and step (far less memory, "
        "more arithmetic; see docs/performance.md, Lean agents)",
    )


def batch_size_for(args, n_agents: int) -> int | None:
    """`--batch-size`, or its default for `n_agents` (`add_state_options`)."""
    if args.batch_size is not None:
        return args.batch_size
    lean = getattr(args, "state", "stored") == "lean"
    return LEAN_CHUNK if lean and n_agents > LEAN_CHUNK else None


def add_device_options(parser):
    g = parser.add_argument_group("devices")
    g.add_argument(
        "--shard",
        action="store_true",
        help="shard the agents over all devices (jax.sharding mesh axis 'agents')",
    )
    g.add_argument(
        "--distributed",
        action="store_true",
        help="multi-host: call jax.distributed.initialize() first (implies --shard); "
        "on clusters it finds its peers itself, else give the three options below",
    )
    g.add_argument("--coordinator", help="with --distributed: host:port of process 0")
    g.add_argument("--num-processes", type=int, help="with --distributed: number of processes")
    g.add_argument("--process-id", type=int, help="with --distributed: this process's index")


def check_device_options(args):
    """Refuses the `--distributed` options without `--distributed`, and `--batch-size` with
    `--shard`."""
    for name in ("coordinator", "num_processes", "process_id"):
        check(
            getattr(args, name) is None or args.distributed,
            f"--{name.replace('_', '-')} is an option of --distributed; add --distributed "
            "or leave it out",
        )
    check(
        args.batch_size is None or not (args.shard or args.distributed),
        f"--batch-size {args.batch_size} with --shard: each device already holds N/devices "
        "agents; use one or the other",
    )


def _names(text: str | None, option: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    names = tuple(n.strip() for n in text.split(","))
    check(all(names), f"{option} {text!r}: an empty column name")
    return names


def _lags(text: str, option: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    lags = []
    for item in text.split(","):
        item = item.strip()
        check(item.isdigit(), f"{option} {text!r}: lags are integers >= 0, comma separated")
        lags.append(int(item))
    check(len(set(lags)) == len(lags), f"{option} {text!r}: a lag is repeated")
    return tuple(lags)


CSV_ONLY = ("target", "inputs")
CSV_DEFAULTS = dict(lags="0", target_lags="0", scale="none")


def load_data(args) -> tuple[Dataset, list[str], tuple[str, ...] | None]:
    """The data set of `--dataset` or `--csv` (with its column, lag and scale options), and
    the lines to tell the user about it (a --csv's dropped columns, its date index)."""
    from ..data import DATASETS, load_dataset, read_csv

    check(
        args.csv is None or args.dataset == args.default_dataset,
        f"--csv and --dataset {args.dataset} name two data sets; give one or the other",
    )
    if args.csv is None:
        check(
            getattr(args, "preset", None) is None,
            f"--preset {args.preset} is an option of --csv; --dataset {args.dataset} runs with "
            "its own hyper-parameters (give the ones to change as options, e.g. --gamma)",
        )
        for k in CSV_ONLY:
            check(getattr(args, k, None) is None, f"--{k} is an option of --csv")
        for k, v in CSV_DEFAULTS.items():
            given = getattr(args, k, v)
            check(given == v, f"--{k.replace('_', '-')} is an option of --csv")
    check(args.target is None or args.target.strip() != "", "--target is empty")
    if args.csv is not None:
        check(args.csv.is_file(), f"--csv: no such file {str(args.csv)!r}")
        check(args.rows is None or args.rows >= 2, f"--rows must be at least 2, got {args.rows}")
        series = read_csv(
            args.csv,
            target=_names(args.target, "--target"),
            inputs=_names(args.inputs, "--inputs"),
            lags=_lags(args.lags, "--lags"),
            target_lags=_lags(args.target_lags, "--target-lags"),
            scale=args.scale,
            rows=args.rows,
        )
        targets, inputs = series.columns
        notes = [
            f"--csv {args.csv}: target {', '.join(targets)}; inputs "
            + (f"{', '.join(inputs)} at lags {args.lags}" if inputs else "none")
            + f"; target lags {args.target_lags}; scale {args.scale}; {series.dataset.n_rows} rows"
            + ("" if args.rows is None else f" (--rows {args.rows})"),
            *series.notes,
        ]
        return series.dataset, notes, series.dates
    check(
        args.dataset in DATASETS,
        f"unknown dataset {args.dataset!r}; choose one of: {', '.join(sorted(DATASETS))}",
    )
    data = load_dataset(args.dataset, data_dir=getattr(args, "data_dir", None))
    return data, [], None


def preset_name(args) -> str:
    """The data set whose presets apply: `--preset`, else `--dataset` (ecb for a --csv)."""
    from ..data import PRESETS

    name = getattr(args, "preset", None)
    if name is None:
        return args.dataset if args.csv is None else "ecb"
    check(
        name in PRESETS,
        f"--preset {name!r}: choose one of {', '.join(sorted(PRESETS))}",
    )
    return name


def hyper_parameters(args) -> dict[str, Any]:
    """The data set's preset (`memoa_jax.data.preset`, of `--preset`; ECB's for a CSV), with
    the values the user gave in its place."""
    from ..data import preset

    hp = preset(preset_name(args)).as_dict()
    for k in hp:
        if getattr(args, k, None) is not None:
            hp[k] = getattr(args, k)
    return hp


class Built(NamedTuple):
    """What `build(args)` makes.

    Attributes:
        data: the `Dataset`.
        sims: the simulations to run side by side on the same data and key (merged into one
            result): the main one, and G1 at FedMOE's settings in its own (`--g1-params
            fedmoe`) when g1_ridge is asked for; one that would run no method is left out.
        hp: the hyper-parameters of the game methods (preset and user values), and under
            "g1" G1's own when they differ.
        names: the methods in the order `--methods` gave them.
        notes: lines about the data to show the user (a --csv's columns, dropped columns).
        dates: a --csv's date column (text per row), or None.
        fedmoe_game: keyword arguments of `memoa_jax.simulate_fedmoe_game` when fedmoe_game
            was asked for (`memoa run`), else None.
    """

    data: Dataset
    sims: tuple
    hp: dict[str, Any]
    names: tuple[str, ...]
    notes: list[str]
    dates: tuple[str, ...] | None
    fedmoe_game: dict | None = None


def build(args, *, comparators: bool = False) -> Built:
    """Validate the arguments and build the data and simulations (`Built`); raises
    UsageError. `comparators`: the command can run `fedmoe_game` (`memoa run`)."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    import memoa_jax as mj

    from ..data import g1_preset

    apply_params_file(args)
    try:
        data, notes, index = load_data(args)
        if args.rows is not None and args.csv is None:
            data = data.head(args.rows)
    except ValueError as e:
        raise UsageError(str(e)) from None
    hp: dict[str, Any] = hyper_parameters(args)
    check_finite(args, "q", "lam", "gamma", "alpha", "sigma", "kappa", "eta", "ogd_lr")
    check(args.n_agents >= 1, f"--n-agents must be at least 1, got {args.n_agents}")
    check(args.seeds >= 1, f"--seeds must be at least 1, got {args.seeds}")
    for k in ("window", "ridge_window", "features"):
        check(hp[k] >= 1, f"--{k.replace('_', '-')} must be at least 1, got {hp[k]}")
    check(args.sync_every >= 1, f"--sync-every must be at least 1, got {args.sync_every}")
    n_steps = data.n_rows - 1
    for k in ("window", "ridge_window"):
        check(
            hp[k] < n_steps,
            f"--{k.replace('_', '-')} {hp[k]} needs more than {hp[k]} prediction steps; the "
            f"series has {data.n_rows} rows ({n_steps} prediction steps)",
        )
    check(
        args.sync_every <= n_steps,
        f"--sync-every {args.sync_every}: the series has only {n_steps} prediction steps",
    )
    check(
        args.batch_size is None or args.batch_size >= 1,
        f"--batch-size must be at least 1, got {args.batch_size}",
    )
    check(
        args.hedge_rate is None or (math.isfinite(args.hedge_rate) and args.hedge_rate > 0),
        f"--hedge-rate must be a finite number > 0, got {args.hedge_rate}",
    )
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    known = METHOD_NAMES + OGD_NAMES + (COMPARATOR_NAMES if comparators else ())
    for m in names:
        check(
            m in known,
            f"unknown method {m!r}; choose from {', '.join(known)}"
            + ("" if comparators or m not in COMPARATOR_NAMES else f" ({m}: memoa run only)"),
        )
    check(bool(names), "--methods is empty")
    check(len(set(names)) == len(names), f"--methods {args.methods!r}: a method is repeated")
    if args.dtype == "float64" or args.n_agents >= 2**31:  # (64-bit agent indices)
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if args.dtype == "float64" else jnp.float32
    bound = float(abs(data.y).max()) or 1.0
    g1_own = getattr(args, "g1_params", "game") == "fedmoe" and "g1_ridge" in names
    reading = dict(
        replay_base=getattr(args, "replay_base", "replay_end"),
        replay_control=getattr(args, "replay_control", "replay"),
        moments=getattr(args, "moments", "population"),
    )

    def encoder(features, sigma):
        size = dict(d=data.d, d_x=data.d_x, p=features, sigma=sigma)
        if getattr(args, "encoder", "rfn") == "esn":
            check(args.mc_samples >= 1, f"--mc-samples must be at least 1, got {args.mc_samples}")
            return mj.ESNEncoder(**size, n_mc=args.mc_samples)
        return mj.RFNEncoder(**size)

    try:
        cost = mj.CostParams(q=args.q, lam=args.lam, gamma=hp["gamma"], alpha=hp["alpha"])
        enc = encoder(hp["features"], hp["sigma"])
        if args.server == "ridge":
            server = mj.RidgeMixture(kappa=args.kappa, eta=args.eta)
        else:
            rate = 1.0 / (8.0 * bound**2) if args.hedge_rate is None else args.hedge_rate
            server = mj.HedgeMixture(rate=rate)
        methods = mj.default_methods(
            cost,
            window=hp["window"],
            ridge_window=hp["ridge_window"],
            sync_every=args.sync_every,
            mean_field=args.mean_field,
        )
        methods = tuple(
            dataclasses.replace(m, **reading) if isinstance(m, mj.MeanFieldGame) else m
            for m in methods
        )
        methods += tuple(
            mj.OnlineGradient(cost=cost, optimizer=n[4:], learning_rate=args.ogd_lr, name=n)
            for n in OGD_NAMES
        )
        by_name = {m.name: m for m in methods}

        def simulation(enc, methods) -> mj.Simulation:
            return mj.Simulation(
                n_agents=args.n_agents,
                encoder=enc,
                methods=methods,
                server=server,
                cost=cost,
                homogeneity=args.homogeneity,
                batch_size=batch_size_for(args, args.n_agents),
                dtype=dtype,
                state=getattr(args, "state", "stored"),
            )

        main_names = [
            n for n in names if not (g1_own and n == "g1_ridge") and n not in COMPARATOR_NAMES
        ]
        sims = []
        if main_names:
            sims.append(simulation(enc, tuple(by_name[n] for n in main_names)))
        if g1_own:
            g1 = g1_preset(preset_name(args))
            check(
                g1.ridge_window < n_steps,
                f"g1_ridge at FedMOE's settings (--g1-params fedmoe) has ridge window "
                f"{g1.ridge_window}; the series has only {n_steps} prediction steps (use "
                "more --rows, or --g1-params game)",
            )
            g1_cost = mj.CostParams(q=args.q, lam=args.lam, gamma=g1.gamma, alpha=g1.alpha)
            sims.append(
                simulation(
                    encoder(g1.features, g1.sigma),
                    # the realized cost is measured with the game's weights, like the others'
                    (mj.LocalRidge(cost=g1_cost, ridge_window=g1.ridge_window),),
                )
            )
            hp = dict(hp, g1=dict(g1.as_dict(), source=g1.source))
    except ValueError as e:
        raise UsageError(str(e)) from None
    # (under --distributed the devices are known once it is up: `check_population_share`)
    if sims and not getattr(args, "distributed", False):
        import jax

        n_devices = jax.device_count() if getattr(args, "shard", False) else 1
        option = getattr(args, "size_option", "--n-agents")
        check_population_fits(sims, args.n_agents, option, n_devices)
    game = None
    if "fedmoe_game" in names:
        check(
            1 <= args.n_agents <= 32,
            f"fedmoe_game is FedMOE's dense N-player game: N ≤ 32, got --n-agents {args.n_agents}",
        )
        check(
            isinstance(enc, mj.RFNEncoder),
            "fedmoe_game plays with the clients' exact RFN moments: it needs --encoder rfn",
        )
        check(args.server == "ridge", "fedmoe_game runs FedMOE's server: it needs --server ridge")
        check(
            not args.fedmoe_compat or data.d == 1,
            f"--fedmoe-compat: FedMOE's game is defined for 1-D targets, this one has d={data.d}",
        )
        game = dict(
            encoder=enc,
            n_agents=args.n_agents,
            gamma=hp["gamma"],
            alpha=hp["alpha"],
            window=hp["window"],
            ridge_window=hp["ridge_window"],
            kappa=args.kappa,
            eta=args.eta,
            fedmoe_compat=bool(args.fedmoe_compat),
            homogeneity=args.homogeneity,
        )
    elif getattr(args, "fedmoe_compat", False):
        raise UsageError("--fedmoe-compat applies to fedmoe_game: add it to --methods")
    if hp["ridge_window"] > RIDGE_WINDOW_NOTE:  # (once every check has passed)
        print(
            f"memoa: note: --ridge-window {hp['ridge_window']}: the compilation grows with "
            "the ridge window (one branch per ring phase); expect minutes",
            file=sys.stderr,
        )
    return Built(data, tuple(sims), hp, tuple(names), notes, index, game)


PARAMS_FILE_KEYS = {"lam": "lam", "gamma": "gamma", "alpha": "alpha", "kappa": "kappa"}
PARAMS_FILE_KEYS["learning_rate"] = "ogd_lr"


def apply_params_file(args):
    """`--params FILE`: its "params" object (or the file's top level) replaces the options
    it names (lam, gamma, alpha, kappa; learning_rate sets --ogd-lr)."""
    if getattr(args, "params", None) is None:
        return
    if args.params.is_dir():  # `memoa tune`'s output folder
        args.params = args.params / "tune.json"
    check(args.params.is_file(), f"--params: no such file {str(args.params)!r}")
    try:
        record = json.loads(args.params.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"--params {args.params}: not JSON ({e})") from None
    values = record.get("params", record) if isinstance(record, dict) else None
    if not isinstance(values, dict):
        raise UsageError(f"--params {args.params}: need a JSON object of values")
    for k, v in values.items():
        check(
            k in PARAMS_FILE_KEYS,
            f"--params {args.params}: unknown hyper-parameter {k!r} "
            f"(known: {', '.join(PARAMS_FILE_KEYS)})",
        )
        check(
            isinstance(v, (int, float)) and not isinstance(v, bool),
            f"--params {args.params}: {k} must be a number, got {v!r}",
        )
        setattr(args, PARAMS_FILE_KEYS[k], float(v))


def command_line(args=None) -> str:
    """The command as typed (`args.argv`, set by `main`; else `sys.argv`), for the records
    the commands write and the command that resumes an interrupted one."""
    import shlex

    argv = getattr(args, "argv", None)
    return "memoa " + shlex.join(sys.argv[1:] if argv is None else argv)


# INTERRUPTION


# Set by every SIGINT handler of the CLI (`main`'s and `InterruptGuard`'s), so that `main`
# reports an interrupt that something swallowed on its way up.
SIGINT_SEEN = [False]


class InterruptGuard:
    """Ctrl-C inside: raises KeyboardInterrupt as Python does, and remembers it, so that an
    interrupt swallowed where Python cannot raise it (a host callback called from compiled
    code: "Exception ignored in ...") is raised at the next `check()`. In the main thread
    only (elsewhere no signal handler can be installed: a no-op)."""

    def __init__(self):
        self.hit = False
        self._old = None

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():

            def handler(signum, frame):
                self.hit = True
                SIGINT_SEEN[0] = True
                raise KeyboardInterrupt

            self._old = signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        return False

    def check(self):
        if self.hit:
            raise KeyboardInterrupt


def is_interrupt(e: BaseException) -> bool:
    """Ctrl-C, also when it surfaced as an error of a host callback in compiled code."""
    return isinstance(e, KeyboardInterrupt) or "KeyboardInterrupt" in str(e)


# DATA FINGERPRINT


def data_fingerprint(data) -> dict:
    """What identifies the data a run used, for a resumed sweep to compare: the data set's
    name, shape and a SHA-256 of the values actually used (x and y as float64, after any
    `--rows`, column choice and scaling: a `--csv` whose content changed, or a built-in data
    set whose package version changed them, no longer matches)."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for a in (data.x, data.y):
        a = np.ascontiguousarray(np.asarray(a, np.float64))
        digest.update(str(a.shape).encode())
        digest.update(a.tobytes())
    return dict(name=data.name, rows=int(data.n_rows), sha256=digest.hexdigest())
