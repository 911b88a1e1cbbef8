"""From the parsed options to what a command runs: the options' `RunSpec`
(`spec_from_args`: `--dataset` or `--csv`, the preset and the user's values, `--params
FILE`), `build(args)` (`memoa_jax.build` and the machine's checks), and the data's
fingerprint that a resumed sweep compares.
"""

import json
import sys
from typing import TYPE_CHECKING

from .._spec import COMPARATORS, HYPER_PARAMETERS, DataSpec, HyperSpec, RunSpec, SpecError

if TYPE_CHECKING:
    from .._build import Built
from .._methods._registry import METHODS
from ._errors import UsageError, check
from ._options import agent_devices, batch_size_for
from ._resources import check_population_fits

# above this ridge window T_c, a note says that the compilation will take minutes
RIDGE_WINDOW_NOTE = 32


def _names(text: str | None, option: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    names = tuple(n.strip() for n in text.split(","))
    check(all(names), f"{option} {text!r}: an empty column name")
    return names


def lags_text(lags: tuple[int, ...]) -> str:
    """Lags as the options write them (`_lags` reads them back): "0,1", or "none"."""
    return ",".join(map(str, lags)) if lags else "none"


def _lags(text: str, option: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    lags = []
    for item in text.split(","):
        item = item.strip()
        check(item.isdigit(), f"{option} {text!r}: lags are integers >= 0, comma separated")
        lags.append(int(item))
    return tuple(lags)


# the spec's fields whose option is not `--<field>`
OPTIONS = {"learning_rate": "--ogd-lr"}


def option(field: str) -> str:
    """The command-line option of a `RunSpec` field (`learning_rate`: `--ogd-lr`)."""
    return OPTIONS.get(field, "--" + field.replace("_", "-"))


def usage_error(e: SpecError) -> UsageError:
    """A spec's refusal as the CLI's bad input, its fields named as options."""
    return UsageError(e.render(option))


# the spec's fields that are options of the same name in every command that builds
MODEL_FIELDS = (
    "q",
    "lam",
    "sync_every",
    "encoder",
    "mc_samples",
    "homogeneity",
    "mean_field",
    "server",
    "kappa",
    "eta",
    "hedge_rate",
    "replay_base",
    "replay_control",
    "moments",
    "fedmoe_compat",
    "g1_params",
)


def spec_from_args(args, *, comparators: bool = False) -> RunSpec:
    """The `RunSpec` the parsed options describe (`--params FILE` applied first). Raises
    UsageError, naming options. `comparators`: the command can run fedmoe_game (`memoa
    run`)."""
    apply_params_file(args)
    check(
        args.csv is None or args.dataset == args.default_dataset,
        f"--csv and --dataset {args.dataset} name two data sets; give one or the other",
    )
    check(args.target is None or args.target.strip() != "", "--target is empty")
    names = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    for m in names:
        check(
            comparators or m not in COMPARATORS,
            f"unknown method {m!r}; choose from {', '.join(METHODS)} ({m}: memoa run only)",
        )
    try:
        return RunSpec(
            data=DataSpec(
                dataset=args.dataset if args.csv is None else None,
                csv=None if args.csv is None else str(args.csv),
                target=_names(args.target, "--target"),
                inputs=_names(args.inputs, "--inputs"),
                lags=_lags(args.lags, "--lags"),
                target_lags=_lags(args.target_lags, "--target-lags"),
                scale=args.scale,
                rows=args.rows,
                data_dir=None if args.data_dir is None else str(args.data_dir),
            ),
            hyper=HyperSpec(**{k: getattr(args, k, None) for k in ("preset", *HYPER_PARAMETERS)}),
            n_agents=args.n_agents,
            seeds=args.seeds,
            seed=getattr(args, "seed", 0),
            dtype=args.dtype,
            state=getattr(args, "state", "stored"),
            carry_draws=getattr(args, "carry_draws", False),
            batch_size=batch_size_for(args, args.n_agents, agent_devices(args)),
            methods=names,
            learning_rate=args.ogd_lr,
            **{k: getattr(args, k) for k in MODEL_FIELDS},
        )
    except SpecError as e:
        raise usage_error(e) from None


def build(args, *, comparators: bool = False) -> "Built":
    """Validate the arguments and build the data and simulations (`memoa_jax.Built`): the
    options' `RunSpec` (`spec_from_args`) through `memoa_jax.build`, and the checks of the
    machine (memory) the library leaves to its caller. Raises UsageError. `comparators`:
    the command can run `fedmoe_game` (`memoa run`)."""
    import jax

    import memoa_jax as mj

    spec = spec_from_args(args, comparators=comparators)
    if spec.dtype == "float64" or spec.n_agents >= 2**31:  # (64-bit agent indices)
        jax.config.update("jax_enable_x64", True)
    try:
        built = mj.build(spec)
    except SpecError as e:
        raise usage_error(e) from None
    notes = list(built.notes)
    if spec.data.csv is not None:
        notes = [_describe_csv(spec, built), *notes]
    # (under --distributed the devices are known once it is up: `check_population_share`)
    if built.sims and not getattr(args, "distributed", False):
        n_devices = agent_devices(args)
        size_option = getattr(args, "size_option", "--n-agents")
        check_population_fits(built.sims, spec.n_agents, size_option, n_devices)
    if built.hp["ridge_window"] > RIDGE_WINDOW_NOTE:  # (once every check has passed)
        print(
            f"memoa: note: --ridge-window {built.hp['ridge_window']}: the compilation grows "
            "with the ridge window (one branch per ring phase); expect minutes",
            file=sys.stderr,
        )
    return built._replace(notes=notes)


def _describe_csv(spec: RunSpec, built) -> str:
    """The line that says what a --csv run reads."""
    d = spec.data
    targets, inputs = built.columns
    return (
        f"--csv {d.csv}: target {', '.join(targets)}; inputs "
        + (f"{', '.join(inputs)} at lags {lags_text(d.lags)}" if inputs else "none")
        + f"; target lags {lags_text(d.target_lags)}; scale {d.scale}; {built.data.n_rows} rows"
        + ("" if d.rows is None else f" (--rows {d.rows})")
    )


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
