"""From the parsed options to what a command runs: the data (`load_data`: `--dataset` or
`--csv`), the hyper-parameters (the preset, the user's values, `--params FILE`) and
`build(args)`, the simulations; and the data's fingerprint that a resumed sweep compares.
"""

import json
import math
import sys
from typing import Any, NamedTuple

from ..data import Dataset
from ._errors import UsageError, check
from ._options import (
    COMPARATOR_NAMES,
    METHOD_NAMES,
    OGD_NAMES,
    agent_devices,
    batch_size_for,
    check_finite,
)
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

    n_devices = agent_devices(args)  # (lean's default chunks are of a device's share)
    try:
        cost = mj.CostParams(q=args.q, lam=args.lam, gamma=hp["gamma"], alpha=hp["alpha"])
        enc = encoder(hp["features"], hp["sigma"])
        if args.server == "ridge":
            server = mj.RidgeMixture(kappa=args.kappa, eta=args.eta)
        else:
            rate = 1.0 / (8.0 * bound**2) if args.hedge_rate is None else args.hedge_rate
            server = mj.HedgeMixture(rate=rate)
        settings = dict(
            window=hp["window"],
            ridge_window=hp["ridge_window"],
            sync_every=args.sync_every,
            mean_field=args.mean_field,
            learning_rate=args.ogd_lr,
            **reading,
        )
        # every named method (`memoa_jax.METHODS`), so that each setting is checked
        by_name = {n: mj.make_method(n, cost, **settings) for n in mj.METHODS}

        def simulation(enc, methods) -> mj.Simulation:
            return mj.Simulation(
                n_agents=args.n_agents,
                encoder=enc,
                methods=methods,
                server=server,
                cost=cost,
                homogeneity=args.homogeneity,
                batch_size=batch_size_for(args, args.n_agents, n_devices),
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
                    (mj.make_method("g1_ridge", g1_cost, ridge_window=g1.ridge_window),),
                )
            )
            hp = dict(hp, g1=dict(g1.as_dict(), source=g1.source))
    except ValueError as e:
        raise UsageError(str(e)) from None
    # (under --distributed the devices are known once it is up: `check_population_share`)
    if sims and not getattr(args, "distributed", False):
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
