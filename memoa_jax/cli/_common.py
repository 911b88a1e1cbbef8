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

from ..data import write_atomic

METHOD_NAMES = ("memoa", "g1_ridge", "g2_myopic", "g3_independent", "g4_follow_mean")
OGD_NAMES = ("ogd_sgd", "ogd_adam")  # online-gradient baselines: selectable, not run by default
RUNS = Path("runs")  # every command's default output goes under here (git-ignored)


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2, nothing written."""


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


def make_out_dir(out: Path) -> Path:
    """Creates the output folder `out` (and its parents); one line if it cannot be made."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"--out {str(out)!r} is a file, not a folder") from None
    except OSError as e:
        raise UsageError(f"--out {str(out)!r}: cannot create the folder ({e.strerror})") from None
    return out


def write_text(path: Path, text: str) -> Path:
    """`text` (UTF-8) to `path`, atomically (`memoa_jax.data.write_atomic`)."""
    return write_atomic(path, lambda f: f.write(text.encode()))


def write_json(path: Path, record) -> Path:
    return write_text(path, json.dumps(record, indent=1))


def save_figure(path: Path, fig, dpi: int = 110) -> Path:
    """A matplotlib figure to `path` as PNG, atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    write_atomic(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
    plt.close(fig)
    return path


def print_table(cols, rows, *, left: int = 0, title: str | None = None):
    """Prints `rows` (lists of strings) under the headers `cols`, a rule between them; the
    first `left` columns are left-aligned, the others right-aligned."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    if title is not None:
        print(title)
    for r in [cols, ["-" * w for w in widths], *rows]:
        cells = (v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
        print("  ".join(cells))


# VALUES


def parse_sizes(text: str, option: str = "--sizes") -> list[int]:
    """A comma-separated list of population sizes (`1e6` notation allowed), sorted, unique."""
    sizes = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"{option}: {item!r} is not a number") from None
        if not (value >= 1 and value == int(value)):
            raise UsageError(f"{option}: population sizes must be integers >= 1, got {item!r}")
        sizes.append(int(value))
    return sorted(set(sizes))


def check_finite(args, *names):
    """Refuses an infinite or NaN value of the float options `names` (those given)."""
    for name in names:
        value = getattr(args, name, None)
        check(
            value is None or math.isfinite(value),
            f"--{name.replace('_', '-')} must be a finite number, got {value}",
        )


def runtime_message(e: Exception) -> str:
    """The one line that matters of an error raised inside a compiled loop or solver."""
    text = str(e)
    marker = "_EquinoxRuntimeError: "
    if marker in text:
        return text.split(marker, 1)[1].split("\n")[0]
    return text.strip().split("\n")[-1]


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
    r.add_argument("--csv", type=Path, help="use this CSV instead (header row; numeric columns)")
    r.add_argument("--target", help="with --csv: target column(s), comma separated (default: last)")
    r.add_argument("--rows", type=int, help="use only the first ROWS rows of the series")
    r.add_argument("--window", type=int, help="game window T (default: per data set)")
    r.add_argument(
        "--ridge-window", type=int, help="greedy ridge window T_c (default: per data set)"
    )
    r.add_argument("--sync-every", type=int, default=1, help="play the game every K steps")
    r.add_argument("--q", type=float, default=1.0, help="own-error weight q")
    r.add_argument("--lam", type=float, default=0.5, help="mean-field coupling λ")
    r.add_argument("--gamma", type=float, help="ridge weight γ > 0 (default: per data set)")
    r.add_argument("--alpha", type=float, help="recency discount α ≥ 0 (default: per data set)")
    r.add_argument("--sigma", type=float, help="RFN noise scale σ > 0 (default: per data set)")
    r.add_argument(
        "--features", type=int, help="features per agent p (d_z) (default: per data set)"
    )
    r.add_argument(
        "--encoder",
        choices=("rfn", "esn"),
        default="rfn",
        help="agents' encoder: random-feature net or echo-state net (HardSigmoid "
        "reservoir, Monte-Carlo moments)",
    )
    r.add_argument("--mc-samples", type=int, default=16, help="esn: moment draws per agent")
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
        help="comma-separated subset of " + ", ".join(METHOD_NAMES + OGD_NAMES),
    )
    r.add_argument("--ogd-lr", type=float, default=0.05, help="ogd_*: agents' learning rate")
    r.add_argument(
        "--params", type=Path, help="JSON of hyper-parameters (`memoa tune`'s output) to use"
    )


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


def agent_mesh(args):
    """The device mesh for `simulate(..., mesh=)`, or None for one device (`--shard`,
    `--distributed`). Initialises `jax.distributed` first when asked."""
    import jax

    check_device_options(args)
    if args.distributed:
        given = dict(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
        try:
            jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None})
        except (RuntimeError, ValueError) as e:
            raise UsageError(f"--distributed: {e}") from None
    if not (args.shard or args.distributed):
        return None
    return jax.make_mesh((jax.device_count(),), ("agents",))


def load_data(args):
    """The data set of `--dataset` or `--csv` (with `--target`)."""
    from ..data import DATASETS, Dataset, load_dataset

    check(
        args.csv is None or args.dataset == args.default_dataset,
        f"--csv and --dataset {args.dataset} name two data sets; give one or the other",
    )
    check(args.target is None or args.csv is not None, "--target is an option of --csv")
    check(args.target is None or args.target.strip() != "", "--target is empty")
    if args.csv is not None:
        import numpy as np

        check(args.csv.is_file(), f"--csv: no such file {str(args.csv)!r}")
        with open(args.csv) as f:
            header = f.readline().strip().split(",")
        try:
            table = np.genfromtxt(args.csv, delimiter=",", skip_header=1, dtype=float)
        except ValueError as e:
            raise UsageError(f"--csv {args.csv}: {e}") from None
        table = np.atleast_2d(table)
        check(
            table.shape[1] == len(header) and len(header) >= 2,
            f"--csv {args.csv}: need a header and at least 2 numeric columns",
        )
        targets = [header[-1]] if args.target is None else args.target.split(",")
        for t in targets:
            check(t in header, f"--target {t!r} is not a column of {args.csv} ({header})")
        ti = [header.index(t) for t in targets]
        xi = [i for i in range(len(header)) if i not in ti] or ti
        return Dataset(name=args.csv.stem, x=table[:, xi], y=table[:, ti])
    check(
        args.dataset in DATASETS,
        f"unknown dataset {args.dataset!r}; choose one of: {', '.join(sorted(DATASETS))}",
    )
    return load_dataset(args.dataset, data_dir=getattr(args, "data_dir", None))


def hyper_parameters(args) -> dict:
    """The data set's preset (`memoa_jax.data.preset`; ECB's for a CSV), with the values the
    user gave in its place."""
    from ..data import preset

    hp = preset(args.dataset if args.csv is None else "ecb").as_dict()
    for k in hp:
        if getattr(args, k, None) is not None:
            hp[k] = getattr(args, k)
    return hp


def build(args):
    """Validate the arguments and build `(dataset, Simulation, hyper-parameters)`; raises
    UsageError."""
    import jax
    import jax.numpy as jnp

    import memoa_jax as mj

    apply_params_file(args)
    try:
        data = load_data(args)
        if args.rows is not None:
            data = data.head(args.rows)
    except ValueError as e:
        raise UsageError(str(e)) from None
    hp = hyper_parameters(args)
    check_finite(args, "q", "lam", "gamma", "alpha", "sigma", "kappa", "eta", "ogd_lr")
    check(args.n_agents >= 1, f"--n-agents must be at least 1, got {args.n_agents}")
    check(args.seeds >= 1, f"--seeds must be at least 1, got {args.seeds}")
    for k in ("window", "ridge_window", "features"):
        check(hp[k] >= 1, f"--{k.replace('_', '-')} must be at least 1, got {hp[k]}")
    check(args.sync_every >= 1, f"--sync-every must be at least 1, got {args.sync_every}")
    check(
        hp["window"] < data.n_rows - 1,
        f"--window {hp['window']} is longer than the series allows ({data.n_rows} rows, "
        f"{data.n_rows - 1} prediction steps)",
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
    for m in names:
        check(
            m in METHOD_NAMES + OGD_NAMES,
            f"unknown method {m!r}; choose from {', '.join(METHOD_NAMES + OGD_NAMES)}",
        )
    check(bool(names), "--methods is empty")
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if args.dtype == "float64" else jnp.float32
    bound = float(abs(data.y).max()) or 1.0
    try:
        cost = mj.CostParams(q=args.q, lam=args.lam, gamma=hp["gamma"], alpha=hp["alpha"])
        enc = mj.RFNEncoder(d=data.d, d_x=data.d_x, p=hp["features"], sigma=hp["sigma"])
        if getattr(args, "encoder", "rfn") == "esn":
            check(args.mc_samples >= 1, f"--mc-samples must be at least 1, got {args.mc_samples}")
            enc = mj.ESNEncoder(
                d=data.d, d_x=data.d_x, p=hp["features"], sigma=hp["sigma"], n_mc=args.mc_samples
            )
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
        methods += tuple(
            mj.OnlineGradient(cost, optimizer=n[4:], learning_rate=args.ogd_lr, name=n)
            for n in OGD_NAMES
        )
        methods = tuple(m for m in methods if m.name in names)
        sim = mj.Simulation(
            n_agents=args.n_agents,
            encoder=enc,
            methods=methods,
            server=server,
            cost=cost,
            homogeneity=args.homogeneity,
            batch_size=args.batch_size,
            dtype=dtype,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    return data, sim, hp


PARAMS_FILE_KEYS = {"lam": "lam", "gamma": "gamma", "alpha": "alpha", "kappa": "kappa"}
PARAMS_FILE_KEYS["learning_rate"] = "ogd_lr"


def apply_params_file(args):
    """`--params FILE`: its "params" object (or the file's top level) replaces the options
    it names (lam, gamma, alpha, kappa; learning_rate sets --ogd-lr)."""
    if getattr(args, "params", None) is None:
        return
    check(args.params.is_file(), f"--params: no such file {str(args.params)!r}")
    try:
        record = json.loads(args.params.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"--params {args.params}: not JSON ({e})") from None
    values = record.get("params", record) if isinstance(record, dict) else None
    check(isinstance(values, dict), f"--params {args.params}: need a JSON object of values")
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


def command_line() -> str:
    """The command as typed, for the records the commands write."""
    return "memoa " + " ".join(sys.argv[1:])
