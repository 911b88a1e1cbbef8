"""Command line `memoa` (`python -m memoa_jax` is the same program).

`memoa run` (the main job) lives here. Other sub-commands live in their own modules
(`_cmd_<name>.py`), each exposing `add_parser(subparsers)`, which registers the command and
sets `func=<its main(args) -> int>`; they raise `UsageError` for bad input.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Per-dataset defaults: FedMOE's best RFN hyper-parameters (spec §10); MEMOA's q = 1, λ = .5.
# The ECB default uses the Bank-of-Canada settings (same kind of series: daily FX closes).
DATASET_DEFAULTS = {
    "periodic": dict(alpha=1e-3, gamma=10.0, sigma=0.1, features=3, ridge_window=3, window=3),
    "logistic": dict(alpha=1e-4, gamma=15.0, sigma=0.1, features=5, ridge_window=3, window=3),
    "concept": dict(alpha=1e-4, gamma=15.0, sigma=0.1, features=5, ridge_window=3, window=3),
    "concept-drift": dict(alpha=1e-4, gamma=15.0, sigma=0.1, features=5, ridge_window=3, window=3),
    "ecb": dict(alpha=1e-2, gamma=10.0, sigma=1.0, features=6, ridge_window=5, window=2),
    "boc": dict(alpha=1e-2, gamma=10.0, sigma=1.0, features=6, ridge_window=5, window=2),
    "boc-val": dict(alpha=1e-2, gamma=10.0, sigma=1.0, features=6, ridge_window=5, window=2),
    "ett": dict(alpha=5.0, gamma=10.0, sigma=0.1, features=1, ridge_window=2, window=3),
    "ett-val": dict(alpha=5.0, gamma=10.0, sigma=0.1, features=1, ridge_window=2, window=3),
}
METHOD_NAMES = ("memoa", "g1_ridge", "g2_myopic", "g3_independent", "g4_follow_mean")
OGD_NAMES = ("ogd_sgd", "ogd_adam")  # online-gradient baselines: selectable, not run by default


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2, nothing written."""


def _parser():
    p = argparse.ArgumentParser(prog="memoa", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "run",
        help="run MEMOA and the greedy baselines on one series",
        description="Run MEMOA and the greedy baselines G1-G4 on the same data and feature "
        "draws; print a table, write results.json and run.png to an output folder.",
    )
    r.add_argument("-n", "--n-agents", type=int, default=1000, help="population size N")
    add_model_options(r)
    r.add_argument("--seeds", type=int, default=3, help="number of seeds (results: mean ± std)")
    r.add_argument("--seed", type=int, default=0, help="first seed")
    r.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    r.add_argument("--batch-size", type=int, help="process agents in chunks of this size")
    _add_device_options(r)
    r.add_argument("--out", type=Path, help="output folder (default runs/<dataset>-N<n>-<time>)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    r.set_defaults(func=run)
    for module in _command_modules():
        module.add_parser(sub)
    return p


def _command_modules():
    """The other sub-commands, in the order `memoa --help` lists them."""
    from . import _cmd_bench, _cmd_reproduce, _cmd_sweep, _cmd_tune, _cmd_verify

    return [_cmd_sweep, _cmd_bench, _cmd_verify, _cmd_reproduce, _cmd_tune]


def add_model_options(r):
    """Data, hyper-parameter and method options shared by `run` and the commands that
    build a `Simulation` the same way (`build(args)`)."""
    from .data import DATASETS

    r.add_argument("--dataset", default="ecb", help=f"one of {', '.join(sorted(DATASETS))}")
    r.add_argument(
        "--data-dir",
        type=Path,
        help="folder of the real data files (boc, ett): default $MEMOA_DATA, else ../shared/data",
    )
    r.add_argument("--csv", type=Path, help="use this CSV instead (header row; numeric columns)")
    r.add_argument("--target", help="--csv: target column(s), comma separated (default: last)")
    r.add_argument("--rows", type=int, help="use only the first ROWS rows of the series")
    r.add_argument("--window", type=int, help="game window T (default: per dataset)")
    r.add_argument("--ridge-window", type=int, help="greedy ridge window T_c")
    r.add_argument("--sync-every", type=int, default=1, help="play the game every K steps")
    r.add_argument("--q", type=float, default=1.0, help="own-error weight q")
    r.add_argument("--lam", type=float, default=0.5, help="mean-field coupling λ")
    r.add_argument("--gamma", type=float, help="ridge weight γ > 0")
    r.add_argument("--alpha", type=float, help="recency discount α ≥ 0")
    r.add_argument("--sigma", type=float, help="RFN noise scale σ > 0")
    r.add_argument("--features", type=int, help="features per agent p (d_z)")
    r.add_argument(
        "--encoder",
        choices=("rfn", "esn"),
        default="rfn",
        help="agents' encoder: random-feature net (default) or echo-state net (HardSigmoid "
        "reservoir, Monte-Carlo moments)",
    )
    r.add_argument("--mc-samples", type=int, default=16, help="esn: moment draws per agent")
    r.add_argument(
        "--homogeneity",
        choices=("h1", "h2"),
        default="h2",
        help="h1: one shared encoder; h2: one encoder per agent (default)",
    )
    r.add_argument(
        "--mean-field",
        choices=("realized", "flow"),
        default="realized",
        help="agents use the broadcast empirical mean (default) or the flow m",
    )
    r.add_argument("--server", choices=("ridge", "hedge"), default="ridge")
    r.add_argument("--kappa", type=float, default=1.0, help="server ridge κ > 0")
    r.add_argument("--eta", type=float, default=1.0, help="server weights' sum η")
    r.add_argument(
        "--hedge-rate", type=float, help="hedge learning rate (default 1/(8 B²), B = max |y|)"
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


def _add_device_options(parser):
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
    g.add_argument("--coordinator", help="--distributed: host:port of process 0")
    g.add_argument("--num-processes", type=int, help="--distributed: number of processes")
    g.add_argument("--process-id", type=int, help="--distributed: this process's index")


def agent_mesh(args):
    """The device mesh for `simulate(..., mesh=)`, or None for one device (`--shard`,
    `--distributed`). Initialises `jax.distributed` first when asked."""
    import jax

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
    _check(
        args.batch_size is None,
        f"--batch-size {args.batch_size} with --shard: each device already holds N/devices "
        "agents; use one or the other",
    )
    return jax.make_mesh((jax.device_count(),), ("agents",))


def _check(cond, message):
    if not cond:
        raise UsageError(message)


def _load_data(args):
    from .data import DATASETS, Dataset, load_dataset

    if args.csv is not None:
        import numpy as np

        _check(args.csv.is_file(), f"--csv: no such file {str(args.csv)!r}")
        with open(args.csv) as f:
            header = f.readline().strip().split(",")
        try:
            table = np.genfromtxt(args.csv, delimiter=",", skip_header=1, dtype=float)
        except ValueError as e:
            raise UsageError(f"--csv {args.csv}: {e}") from None
        table = np.atleast_2d(table)
        _check(
            table.shape[1] == len(header) and len(header) >= 2,
            f"--csv {args.csv}: need a header and at least 2 numeric columns",
        )
        targets = args.target.split(",") if args.target else [header[-1]]
        for t in targets:
            _check(t in header, f"--target {t!r} is not a column of {args.csv} ({header})")
        ti = [header.index(t) for t in targets]
        xi = [i for i in range(len(header)) if i not in ti] or ti
        return Dataset(name=args.csv.stem, x=table[:, xi], y=table[:, ti])
    _check(
        args.dataset in DATASETS,
        f"unknown dataset {args.dataset!r}; choose one of: {', '.join(sorted(DATASETS))}",
    )
    return load_dataset(args.dataset, data_dir=getattr(args, "data_dir", None))


def build(args):
    """Validate the arguments and build `(dataset, Simulation)`; raises UsageError."""
    import jax
    import jax.numpy as jnp

    import memoa_jax as mj

    apply_params_file(args)
    try:
        data = _load_data(args)
        if args.rows is not None:
            data = data.head(args.rows)
    except ValueError as e:
        raise UsageError(str(e)) from None
    hp = dict(DATASET_DEFAULTS.get(args.dataset if args.csv is None else "ecb"))
    for k in hp:
        if getattr(args, k, None) is not None:
            hp[k] = getattr(args, k)
    _check(args.n_agents >= 1, f"--n-agents must be at least 1, got {args.n_agents}")
    _check(args.seeds >= 1, f"--seeds must be at least 1, got {args.seeds}")
    for k in ("window", "ridge_window", "features"):
        _check(hp[k] >= 1, f"--{k.replace('_', '-')} must be at least 1, got {hp[k]}")
    _check(args.sync_every >= 1, f"--sync-every must be at least 1, got {args.sync_every}")
    _check(
        hp["window"] < data.n_rows - 1,
        f"--window {hp['window']} is longer than the series allows ({data.n_rows} rows, "
        f"{data.n_rows - 1} prediction steps)",
    )
    _check(
        args.batch_size is None or args.batch_size >= 1,
        f"--batch-size must be at least 1, got {args.batch_size}",
    )
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in names:
        _check(
            m in METHOD_NAMES + OGD_NAMES,
            f"unknown method {m!r}; choose from {', '.join(METHOD_NAMES + OGD_NAMES)}",
        )
    _check(bool(names), "--methods is empty")
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if args.dtype == "float64" else jnp.float32
    bound = float(abs(data.y).max()) or 1.0
    try:
        cost = mj.CostParams(q=args.q, lam=args.lam, gamma=hp["gamma"], alpha=hp["alpha"])
        enc = mj.RFNEncoder(d=data.d, d_x=data.d_x, p=hp["features"], sigma=hp["sigma"])
        if getattr(args, "encoder", "rfn") == "esn":
            _check(args.mc_samples >= 1, f"--mc-samples must be at least 1, got {args.mc_samples}")
            enc = mj.ESNEncoder(
                d=data.d, d_x=data.d_x, p=hp["features"], sigma=hp["sigma"], n_mc=args.mc_samples
            )
        if args.server == "ridge":
            server = mj.RidgeMixture(kappa=args.kappa, eta=args.eta)
        else:
            server = mj.HedgeMixture(rate=args.hedge_rate or 1.0 / (8.0 * bound**2))
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
    _check(args.params.is_file(), f"--params: no such file {str(args.params)!r}")
    try:
        record = json.loads(args.params.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"--params {args.params}: not JSON ({e})") from None
    values = record.get("params", record) if isinstance(record, dict) else None
    _check(isinstance(values, dict), f"--params {args.params}: need a JSON object of values")
    for k, v in values.items():
        _check(
            k in PARAMS_FILE_KEYS,
            f"--params {args.params}: unknown hyper-parameter {k!r} "
            f"(known: {', '.join(PARAMS_FILE_KEYS)})",
        )
        _check(
            isinstance(v, (int, float)) and not isinstance(v, bool),
            f"--params {args.params}: {k} must be a number, got {v!r}",
        )
        setattr(args, PARAMS_FILE_KEYS[k], float(v))


def _runtime_message(e: Exception) -> str:
    text = str(e)
    marker = "_EquinoxRuntimeError: "
    if marker in text:
        return text.split(marker, 1)[1].split("\n")[0]
    return text.strip().split("\n")[-1]


def run(args) -> int:
    import equinox as eqx
    import jax
    import numpy as np
    from tqdm.auto import tqdm

    import memoa_jax as mj

    data, sim, hp = build(args)
    mesh = agent_mesh(args)
    out = args.out or Path("runs") / f"{data.name}-N{sim.n_agents}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"output folder {str(out)!r} exists and is not empty")
    n_steps = data.n_rows - 1
    print(
        f"memoa run: {data.name} ({data.n_rows} rows, d_x={data.d_x}, d={data.d}), "
        f"N={sim.n_agents:,}, {sim.homogeneity}, {args.server} server, {args.dtype}, "
        f"{args.seeds} seed(s), "
        + (
            f"sharded over {mesh.size} {jax.devices()[0].platform} device(s)"
            if mesh
            else jax.devices()[0].platform
        )
    )
    print(
        "  hyper-parameters: "
        + ", ".join(f"{k}={v}" for k, v in hp.items())
        + f", q={args.q}, lam={args.lam}, sync_every={args.sync_every}"
    )
    total = n_steps * len(sim.methods) * args.seeds
    bar = tqdm(total=total, unit="step", disable=args.no_progress, leave=False, file=sys.stderr)
    progress = lambda t: bar.update(1)  # noqa: E731
    x, y = jax.numpy.asarray(data.x), jax.numpy.asarray(data.y)

    runs, timing = {}, {}
    for method in sim.methods:
        one = eqx.tree_at(lambda s: s.methods, sim, (method,))
        bar.set_description(f"{method.name}: compiling")
        t0 = time.perf_counter()
        compiled = (
            eqx.filter_jit(mj.simulate)
            .lower(one, x, y, key=jax.random.key(0), progress=progress, mesh=mesh)
            .compile()
        )
        compile_s = time.perf_counter() - t0
        bar.set_description(method.name)
        per_seed, run_s = [], []
        for s in range(args.seed, args.seed + args.seeds):
            t0 = time.perf_counter()
            try:
                res = jax.block_until_ready(
                    compiled(one, x, y, key=jax.random.key(s), progress=progress, mesh=mesh)
                )
            except Exception as e:  # runtime checks inside the compiled loop
                bar.close()
                print(
                    f"memoa: error: {method.name}, seed {s}: {_runtime_message(e)}", file=sys.stderr
                )
                return 1
            run_s.append(time.perf_counter() - t0)
            per_seed.append(res)
        runs[method.name] = per_seed
        timing[method.name] = dict(compile_s=compile_s, run_s=run_s)
    bar.close()

    summary, steps = {}, {}
    for name, per_seed in runs.items():
        fields = {
            f: np.array([float(r.summary[name]._asdict()[f]) for r in per_seed])
            for f in mj.Summary._fields
        }
        summary[name] = {
            f: dict(mean=float(v.mean()), std=float(v.std()), per_seed=v.tolist())
            for f, v in fields.items()
        }
        mean_run = float(np.mean(timing[name]["run_s"]))
        summary[name]["time"] = dict(
            compile_s=timing[name]["compile_s"],
            run_s_per_seed=timing[name]["run_s"],
            agent_steps_per_s=sim.n_agents * n_steps / mean_run,
        )
        steps[name] = {
            f: np.mean([np.asarray(r.steps[name]._asdict()[f]) for r in per_seed], 0)
            for f in mj.StepStats._fields
        }

    if jax.process_index() == 0:  # multi-host: one process reports
        _print_table(summary, sim.n_agents, n_steps, args.seeds)
        _write_outputs(out, args, data, sim, hp, summary, steps)
    return 0


def _fmt(stat):
    return f"{stat['mean']:.4g} ± {stat['std']:.2g}"


def _print_table(summary, n_agents, n_steps, seeds):
    cols = (
        "method",
        "avg RMSE",
        "worst-agent RMSE",
        "server RMSE",
        "compile s",
        "run s/seed",
        "agent-steps/s",
    )
    rows = []
    for name, s in summary.items():
        t = s["time"]
        rows.append(
            (
                name,
                _fmt(s["avg_rmse"]),
                _fmt(s["worst_rmse"]),
                _fmt(s["server_rmse"]),
                f"{t['compile_s']:.1f}",
                f"{sum(t['run_s_per_seed']) / seeds:.2f}",
                f"{t['agent_steps_per_s']:.3g}",
            )
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda r: "  ".join(
        v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))
    )
    print(f"\nN = {n_agents:,} agents, {n_steps} steps, mean ± std over {seeds} seed(s):")
    print(line(cols))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))


def _write_outputs(out: Path, args, data, sim, hp, summary, steps):
    """Write everything to a staging folder first, then move it in: never half-written."""
    import jax

    from .plots import plot_run

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        record = dict(
            command="memoa " + " ".join(sys.argv[1:]),
            dataset=dict(
                name=data.name, rows=data.n_rows, d_x=data.d_x, d=data.d, credit=data.credit
            ),
            config=dict(
                n_agents=sim.n_agents,
                homogeneity=sim.homogeneity,
                server=args.server,
                kappa=args.kappa,
                eta=args.eta,
                mean_field=args.mean_field,
                dtype=args.dtype,
                q=args.q,
                lam=args.lam,
                sync_every=args.sync_every,
                ogd_lr=args.ogd_lr,
                seeds=list(range(args.seed, args.seed + args.seeds)),
                **hp,
            ),
            device=str(jax.devices()[0]),
            n_devices=jax.device_count() if (args.shard or args.distributed) else 1,
            jax_version=jax.__version__,
            summary=summary,
            steps={m: {k: v.tolist() for k, v in s.items()} for m, s in steps.items()},
        )
        (stage / "results.json").write_text(json.dumps(record, indent=1))
        title = (
            f"MEMOA vs greedy baselines on {data.name}: N={sim.n_agents:,}, "
            f"{sim.homogeneity}, mean of {args.seeds} seed(s)"
        )
        fig = plot_run(steps, title=title, credit=data.credit)
        fig.savefig(stage / "run.png", dpi=110)
        out.mkdir(parents=True, exist_ok=True)
        for f in stage.iterdir():
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(f"\nwrote {out / 'results.json'} and {out / 'run.png'}")
    if data.credit:
        print(data.credit)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"memoa: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
