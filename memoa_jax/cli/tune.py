"""`memoa tune`: gradient descent on a method's hyper-parameters through the whole loop.

The series is split in time: the first `--train-frac` of the rows is the training span, on
which every optimiser step runs the full online loop and differentiates the objective
(`memoa_jax.tune`). The held-out span is scored by RESTARTING the loop on the held-out
rows (agents start at the last training observation, as every run starts at its first row;
encoders, warm-up and server are fresh), for the spec's default values and for the tuned
ones, on the same seeds — so both figures come from the same protocol and no held-out
target is seen while tuning. Writes into the folder `<out>`: `tune.json` (the chosen values
under "params", which `memoa run --params <out>` loads), `tune.png` (loss curve and the
values' paths) and `summary.csv` (the held-out scores, tidy).
"""

import math
import sys
from pathlib import Path

from ._build import build
from ._errors import UsageError, check, is_runtime_failure, runtime_failure
from ._options import add_config_option, add_model_options, check_finite, count_type
from ._outputs import (
    check_out_dir,
    command_line,
    default_out,
    make_out_dir,
    print_table,
    save_figure,
    stamp,
    write_json,
)
from ._tidy import write_summary_csv

SUMMARY = (
    "Tune a method's hyper-parameters (λ, γ, α, ...) by gradient descent\n"
    "through the loop; the result loads with `memoa run --params`."
)


def add_parser(sub, formatter):
    s = sub.add_parser(
        "tune",
        help=SUMMARY,
        formatter_class=formatter,
        description="Differentiate the chosen objective through the whole online loop on the "
        "training span and lower it with optax; score the held-out span for the default and "
        "the tuned values; write OUT/tune.json (loadable by `memoa run --params OUT`), "
        "OUT/tune.png and OUT/summary.csv.",
    )
    s.add_argument(
        "-n",
        "--n-agents",
        type=count_type("--n-agents"),
        default=1000,
        help="population size N (1e6 notation allowed)",
    )
    add_config_option(s)
    add_model_options(s)
    s.set_defaults(methods="memoa")
    s.add_argument(
        "--objective",
        choices=("worst", "avg", "server"),
        default="worst",
        help="worst: worst-agent RMSE smoothed by log-mean-exp; avg: average RMSE; "
        "server: server-mixture RMSE",
    )
    s.add_argument(
        "--temperature",
        type=float,
        default=0.05,
        help="worst: log-mean-exp temperature, relative to the mean agent RMSE",
    )
    s.add_argument(
        "--tune",
        help="comma-separated hyper-parameters to move (default: all of the method's: "
        "lam,gamma,alpha for MEMOA; kappa too with --objective server; learning_rate for ogd_*)",
    )
    s.add_argument("--steps", type=count_type("--steps"), default=40, help="optimiser steps")
    s.add_argument(
        "--lr", type=float, default=0.05, help="Adam step size on softplus⁻¹ of the values"
    )
    s.add_argument("--train-frac", type=float, default=0.7, help="fraction of rows to tune on")
    s.add_argument("--seed", type=int, default=0, help="training seed (shared by every step)")
    s.add_argument(
        "--eval-seeds",
        type=count_type("--eval-seeds"),
        default=3,
        help="held-out: seeds SEED..SEED+K-1",
    )
    s.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    s.add_argument(
        "--batch-size",
        type=count_type("--batch-size"),
        help="process agents in chunks of this size",
    )
    s.add_argument(
        "--remat",
        action="store_true",
        help="checkpoint the loop for the backward pass (O(N sqrt T) memory, not O(N T))",
    )
    s.add_argument(
        "--memory",
        action="store_true",
        help="only report the memory of one compiled tuning step (XLA's memory analysis of "
        "value_and_grad + update; nothing runs, nothing is written) and exit",
    )
    s.add_argument(
        "--out",
        type=Path,
        help="output folder: tune.json, tune.png, summary.csv "
        "(default runs/tune-<dataset>-<method>-<time>)",
    )
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    s.set_defaults(func=main, seeds=1)


def _split(args, data, hp):
    check(0 < args.train_frac < 1, f"--train-frac must be in (0, 1), got {args.train_frac}")
    n_train = round(args.train_frac * data.n_rows)
    held = data.n_rows - n_train + 1  # the held-out run starts at the last training row
    need = hp["window"] + 2
    check(
        n_train >= need and held >= need,
        f"--train-frac {args.train_frac}: {n_train} training and {held - 1} held-out rows of "
        f"{data.n_rows}; each span needs more than window+1={need - 1} rows",
    )
    return n_train


def main(args) -> int:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from tqdm.auto import tqdm

    import memoa_jax as mj

    built = build(args)
    data, hp = built.data, built.hp
    check(len(built.names) == 1, f"--methods: tune one method at a time, got {args.methods!r}")
    (sim,) = built.sims
    check(args.steps >= 0, f"--steps must be >= 0, got {args.steps}")
    check_finite(args, "lr", "temperature", "train_frac")
    check(args.lr > 0, f"--lr must be positive, got {args.lr}")
    check(args.temperature > 0, f"--temperature must be positive, got {args.temperature}")
    check(args.eval_seeds >= 1, f"--eval-seeds must be at least 1, got {args.eval_seeds}")
    n_train = _split(args, data, hp)
    name = sim.methods[0].name
    names = (
        mj.tunable(sim, args.objective)
        if args.tune is None
        else tuple(n.strip() for n in args.tune.split(",") if n.strip())
    )
    allowed = mj.tunable(sim, "server")
    for n in names:
        check(n in allowed, f"--tune: cannot tune {n!r} for {name}; choose from {allowed}")
    check(bool(names), "--tune is empty")
    out = args.out
    if out is None:
        out = default_out("tune", data.name, name, stamp())
    check_out_dir(out)
    check(
        not (out.exists() and any(out.iterdir())),
        f"output folder {str(out)!r} exists and is not empty; choose another --out",
    )

    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    x_tr, y_tr = x[:n_train], y[:n_train]
    x_ho, y_ho = x[n_train - 1 :], y[n_train - 1 :]
    print(
        f"memoa tune: {name} on {data.name} ({data.n_rows} rows: {n_train} training, "
        f"{data.n_rows - n_train} held-out), N={sim.n_agents:,}, objective {args.objective}"
        + (f" (temperature {args.temperature})" if args.objective == "worst" else "")
        + f", tuning {', '.join(names)} with Adam({args.lr}) for {args.steps} steps"
        + (", remat" if args.remat else "")
    )
    key = jax.random.key(args.seed)
    if args.memory:
        memory = mj.step_memory(
            sim,
            x_tr,
            y_tr,
            key=key,
            names=names,
            kind=args.objective,
            temperature=args.temperature,
            remat=args.remat,
        )
        print(
            f"compiled tuning step (value_and_grad + update), N={sim.n_agents:,}, "
            f"{n_train - 1} steps, remat={args.remat}: peak {memory['peak'] / 2**30:.3f} GiB "
            f"(temporaries {memory['temp'] / 2**30:.3f} GiB, arguments "
            f"{memory['argument'] / 2**20:.2f} MiB, outputs {memory['output'] / 2**20:.2f} MiB)"
        )
        return 0

    bar = tqdm(total=args.steps + 1, disable=args.no_progress, leave=False, file=sys.stderr)
    bar.set_description("compiling")

    def progress(i, value):
        bar.set_description("tuning")
        bar.set_postfix_str(f"{args.objective}={value:.5g}")
        bar.update(1)

    try:
        res = mj.tune(
            sim,
            x_tr,
            y_tr,
            key=key,
            names=names,
            kind=args.objective,
            temperature=args.temperature,
            steps=args.steps,
            optimizer=optax.adam(args.lr),
            remat=args.remat,
            callback=progress,
        )
        bar.close()
        run = eqx.filter_jit(mj.simulate)
        seeds = list(range(args.seed, args.seed + args.eval_seeds))
        held = {}
        for label, values in (("default", res.initial), ("tuned", res.values)):
            one = mj.with_params(sim, dict[str, jax.Array | float](values))
            per_seed = []
            for s in seeds:
                r = run(one, x_ho, y_ho, key=jax.random.key(s))
                sm = r.summary[name]
                per_seed.append(
                    dict(
                        objective=float(mj.objective(r, name, args.objective, args.temperature)),
                        worst_rmse=float(sm.worst_rmse),
                        avg_rmse=float(sm.avg_rmse),
                        server_rmse=float(sm.server_rmse),
                    )
                )
            held[label] = {k: float(np.mean([p[k] for p in per_seed])) for k in per_seed[0]}
            held[label]["per_seed"] = per_seed
    except Exception as e:  # runtime checks inside the compiled loop (singular R̃, ...)
        bar.close()
        if isinstance(e, UsageError) or not is_runtime_failure(e):
            raise
        raise runtime_failure(e, name) from None

    _print_report(args, res, held, n_train)
    record = dict(
        command=command_line(args),
        params={n: res.values[n] for n in names},
        default_params=res.initial,
        method=name,
        dataset=dict(name=data.name, rows=data.n_rows, credit=data.credit),
        objective=args.objective,
        temperature=args.temperature if args.objective == "worst" else None,
        train=dict(
            rows=[0, n_train],
            seed=args.seed,
            objective_default=res.losses[0],
            objective_tuned=res.losses[res.best_step],
            best_step=res.best_step,
        ),
        held_out=dict(
            rows=[n_train, data.n_rows],
            protocol="restart: the loop is run afresh on rows n_train-1.. (agents start at the "
            "last training observation) and scored on the held-out targets",
            seeds=seeds,
            **held,
        ),
        config=dict(
            n_agents=sim.n_agents,
            homogeneity=sim.homogeneity,
            dtype=args.dtype,
            server=args.server,
            q=args.q,
            lam=args.lam,
            kappa=args.kappa,
            optimizer=f"adam({args.lr})",
            steps=args.steps,
            remat=args.remat,
            **hp,
        ),
        device=str(jax.devices()[0]),
        jax_version=jax.__version__,
        losses=res.losses,
        history=res.history,
    )
    title = (
        f"memoa tune: {name} on {data.name}, N={sim.n_agents:,}, objective {args.objective}; "
        f"held-out {held['default']['objective']:.4g} (default) -> "
        f"{held['tuned']['objective']:.4g} (tuned)"
    )
    from ..plots import plot_tune

    fig = plot_tune(
        res.losses,
        res.history,
        title=title,
        objective=args.objective,
        held={k: held[k]["objective"] for k in ("default", "tuned")},
    )
    rows = [
        (f"{name} ({label})", seed, metric, value)
        for label in ("default", "tuned")
        for seed, per in zip(seeds, held[label]["per_seed"])
        for metric, value in per.items()
    ]
    lag1 = float(mj.persistence_rmse(y_ho, 1))  # the held-out span's yardstick
    rows += [("persistence_lag_1", seed, m, lag1) for seed in seeds for m in ("server_rmse",)]
    make_out_dir(out)
    save_figure(out / "tune.png", fig)
    write_json(out / "tune.json", record)
    write_summary_csv(out / "summary.csv", rows)
    print(f"\nwrote {out / 'tune.json'}, {out / 'tune.png'} and {out / 'summary.csv'}")
    return 0


def _print_report(args, res, held, n_train):
    def fmt(v):
        return f"{v:.5g}" if math.isfinite(v) else str(v)

    print("\n" + ", ".join(f"{n}: {res.initial[n]:.4g} -> {res.values[n]:.4g}" for n in res.values))
    print(f"(best of {len(res.losses)} iterates: step {res.best_step})")
    cols = ("", f"train {args.objective}", f"held-out {args.objective}", "worst", "avg", "server")
    rows = [
        [
            label,
            fmt(res.losses[0] if label == "default" else res.losses[res.best_step]),
            fmt(held[label]["objective"]),
            fmt(held[label]["worst_rmse"]),
            fmt(held[label]["avg_rmse"]),
            fmt(held[label]["server_rmse"]),
        ]
        for label in ("default", "tuned")
    ]
    title = f"held-out: mean over {args.eval_seeds} seed(s); worst/avg/server are plain RMSEs"
    print_table(cols, rows, title=title)
