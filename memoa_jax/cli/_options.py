"""The options commands share, and how their values are read: the model options of
`build(args)` (`add_model_options`), `--batch-size`/`--state`, the device options, integer
counts in `1e6` notation (`count_type`, `parse_sizes`), and `HelpFormatter`.
"""

import argparse
import math
import re
from pathlib import Path

from .._methods._registry import (
    DEFAULT_METHODS,
    MEAN_FIELDS,
    METHODS,
    MOMENTS,
    REPLAY_BASES,
    REPLAY_CONTROLS,
)
from .._spec import COMPARATORS
from ._errors import UsageError, check

# the library's named methods (`memoa_jax.METHODS`; its registry imports no JAX): those of
# `default_methods` run by default, the others (the online-gradient baselines) selectable
METHOD_NAMES = DEFAULT_METHODS
OGD_NAMES = tuple(n for n in METHODS if n not in DEFAULT_METHODS)
# FedMOE's own dense N-player game (`memoa_jax.simulate_fedmoe_game`): `memoa run` only
COMPARATOR_NAMES = COMPARATORS


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


# VALUES


# No size at all is larger (verify's exact solver takes N as a float64, exact below 2**53).
MAX_SIZE = 10**15
# No population is larger: agents are indexed with 64-bit integers past 2**31 (their keys
# fold in all 64 bits), and N and every index stay exact as float64 numbers.
MAX_AGENTS = MAX_SIZE


def _integer(item: str, option: str) -> int:
    """`item` as an integer (`1e6` notation allowed); a value that is no finite integer is
    refused (exit 2)."""
    try:
        return int(item)
    except ValueError:
        try:
            f = float(item)
        except ValueError:
            raise UsageError(f"{option}: {item!r} is not a number") from None
        check(math.isfinite(f), f"{option}: {item!r} is not a finite number")
        check(f == int(f), f"{option}: need an integer, got {item!r}")
        return int(f)


def _at_most(value: int, item: str, option: str, limit: int) -> int:
    check(value <= limit, f"{option}: {item!r} is above the largest size accepted, {limit:.3g}")
    return value


def parse_count(text: str, option: str, *, limit: int = MAX_SIZE) -> int:
    """One integer (`1e6` notation allowed), finite and at most `limit`; the caller checks
    its lower bound."""
    item = text.strip()
    return _at_most(_integer(item, option), item, option, limit)


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
        why = f"{option}: population sizes must be integers >= 1, got {item!r}"
        try:
            value = _integer(item, option)
        except UsageError:  # (not finite, not an integer)
            raise UsageError(why) from None
        check(value >= 1, why)
        _at_most(value, item, option, limit)
        sizes.append(value)
    return sorted(set(sizes))


def check_finite(args, *names):
    """Refuses an infinite or NaN value of the float options `names` (those given)."""
    for name in names:
        value = getattr(args, name, None)
        check(
            value is None or math.isfinite(value),
            f"--{name.replace('_', '-')} must be a finite number, got {value}",
        )


# MODEL OPTIONS


def add_config_option(parser, *, sizes: bool = False):
    """`--config FILE` (`_config`: its values become the parser's defaults)."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help='run with what FILE describes: a results.json of memoa run (its "spec"), or a '
        ".toml/.json spec file (memoa_jax.RunSpec.to_dict's keys, e.g. n_agents = 20 and a "
        '[data] table with dataset = "periodic"; keys left out take the defaults '
        "below); options given on the command line override the file's values"
        + ("; its n_agents is not used (--sizes is)" if sizes else ""),
    )


def add_model_options(r, *, dataset: str = "ecb"):
    """Data, hyper-parameter and method options shared by `run` and the commands that
    build a `Simulation` the same way (`build(args)`). A new model option goes here, into
    `memoa_jax.RunSpec` (the field of the same name) and `memoa_jax.build`. `dataset`: this
    command's default data set."""
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
        choices=tuple(MEAN_FIELDS),
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
        choices=tuple(REPLAY_BASES),
        default="replay_end",
        help="base: the replay's end (FedMOE), the observed yₜ, or the agent's own ŷₜ",
    )
    g.add_argument(
        "--replay-control",
        choices=tuple(REPLAY_CONTROLS),
        default="replay",
        help="β: the replay's last control (FedMOE), or the window's last gains on the base",
    )
    g.add_argument(
        "--moments",
        choices=tuple(MOMENTS),
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


LEAN_CHUNK = 2**20  # --state lean runs in chunks above this many agents per device
# ... of this size on the CPU: cache-sized chunks of 2^16 ran 1.19-1.34x as fast as 2^20 at
# 10^7 agents with --carry-draws, and 1.03-1.16x plain (docs/performance.md, Lean agents);
# accelerators keep LEAN_CHUNK (wide kernels; not measured there)
LEAN_CHUNK_CPU = 2**16


def add_state_options(parser):
    """`--batch-size` and `--state` (memoa run and memoa sweep)."""
    parser.add_argument(
        "--batch-size",
        type=count_type("--batch-size"),
        help="process agents in chunks of this size, each device its own share's with "
        "--shard (default: none with --state stored; with --state lean above "
        f"{LEAN_CHUNK:,} agents per device, chunks of {LEAN_CHUNK_CPU:,} on the CPU and "
        f"{LEAN_CHUNK:,} on accelerators, so that a step's intermediates do not scale with N)",
    )
    parser.add_argument(
        "--state",
        choices=("stored", "lean"),
        default="stored",
        help="what the loop carries per agent: 'lean' recomputes the encoder parameters, "
        "noise keys and feature draws from the agent index, key and step (far less memory, "
        "more arithmetic; see docs/performance.md, Lean agents)",
    )
    parser.add_argument(
        "--carry-draws",
        action="store_true",
        help="with --state lean: carry each agent's encoder parameters and noise keys and "
        "recompute only its features (faster in chunks, 32 more bytes per agent at p = 5)",
    )


def batch_size_for(
    args, n_agents: int, n_devices: int = 1, backend: str | None = None
) -> int | None:
    """`--batch-size`, or its default for `n_agents` split over `n_devices`
    (`add_state_options`): lean chunks when a device's share, ceil(N / devices), is above
    `LEAN_CHUNK` agents, of `LEAN_CHUNK_CPU` agents on `backend` "cpu" (default: JAX's
    default backend, looked up only then) and `LEAN_CHUNK` on others."""
    if args.batch_size is not None:
        return args.batch_size
    lean = getattr(args, "state", "stored") == "lean"
    if not (lean and -(-n_agents // n_devices) > LEAN_CHUNK):
        return None
    if backend is None:
        import jax

        backend = jax.default_backend()
    return LEAN_CHUNK_CPU if backend == "cpu" else LEAN_CHUNK


def agent_devices(args) -> int:
    """The devices the agents are split over: all of them with `--shard` or
    `--distributed` (which must have started: `_distributed.start`), else 1."""
    if not (getattr(args, "shard", False) or getattr(args, "distributed", False)):
        return 1
    import jax

    return jax.device_count()


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
    """Refuses the `--distributed` options without `--distributed`."""
    for name in ("coordinator", "num_processes", "process_id"):
        check(
            getattr(args, name) is None or args.distributed,
            f"--{name.replace('_', '-')} is an option of --distributed; add --distributed "
            "or leave it out",
        )
