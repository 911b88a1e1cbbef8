"""`memoa run`: MEMOA and the greedy baselines on one series, the same data and feature draws;
a table, `results.json` and `run.png`."""

import sys
import time
from pathlib import Path

from ._common import (
    UsageError,
    add_device_options,
    add_model_options,
    agent_mesh,
    build,
    command_line,
    default_out,
    make_out_dir,
    print_table,
    runtime_message,
    save_figure,
    stamp,
    write_json,
)

SUMMARY = (
    "Compare MEMOA with the greedy baselines on one series (built-in or\n"
    "your --csv): a table, results.json and run.png in runs/run-*."
)


def add_parser(sub, formatter):
    r = sub.add_parser(
        "run",
        help=SUMMARY,
        formatter_class=formatter,
        description="Run MEMOA and the greedy baselines G1-G4 on the same data and feature "
        "draws; print a table, write results.json and run.png to an output folder.",
    )
    r.add_argument("-n", "--n-agents", type=int, default=1000, help="population size N")
    add_model_options(r)
    r.add_argument("--seeds", type=int, default=3, help="number of seeds (results: mean ± std)")
    r.add_argument("--seed", type=int, default=0, help="first seed")
    r.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    r.add_argument("--batch-size", type=int, help="process agents in chunks of this size")
    add_device_options(r)
    r.add_argument(
        "--out", type=Path, help="output folder (default runs/run-<dataset>-N<n>-<time>)"
    )
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    r.set_defaults(func=main)


def main(args) -> int:
    import equinox as eqx
    import jax
    import numpy as np
    from tqdm.auto import tqdm

    import memoa_jax as mj

    data, sim, hp = build(args)
    mesh = agent_mesh(args)
    out = args.out
    if out is None:
        out = default_out("run", data.name, f"N{sim.n_agents}", stamp())
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
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
                    f"memoa: error: {method.name}, seed {s}: {runtime_message(e)}", file=sys.stderr
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
        _print_summary(summary, sim.n_agents, n_steps, args.seeds)
        _write_outputs(out, args, data, sim, hp, summary, steps)
    return 0


def _fmt(stat):
    return f"{stat['mean']:.4g} ± {stat['std']:.2g}"


def _print_summary(summary, n_agents, n_steps, seeds):
    cols = ["method", "avg RMSE", "worst-agent RMSE", "server RMSE", "compile s", "run s/seed"]
    cols.append("agent-steps/s")
    rows = []
    for name, s in summary.items():
        t = s["time"]
        rows.append(
            [
                name,
                _fmt(s["avg_rmse"]),
                _fmt(s["worst_rmse"]),
                _fmt(s["server_rmse"]),
                f"{t['compile_s']:.1f}",
                f"{sum(t['run_s_per_seed']) / seeds:.2f}",
                f"{t['agent_steps_per_s']:.3g}",
            ]
        )
    title = f"\nN = {n_agents:,} agents, {n_steps} steps, mean ± std over {seeds} seed(s):"
    print_table(cols, rows, left=1, title=title)


def _write_outputs(out: Path, args, data, sim, hp, summary, steps):
    """results.json and run.png, each written atomically (never half-written)."""
    import jax

    from ..plots import plot_run

    record = dict(
        command=command_line(),
        dataset=dict(name=data.name, rows=data.n_rows, d_x=data.d_x, d=data.d, credit=data.credit),
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
    title = (
        f"MEMOA vs greedy baselines on {data.name}: N={sim.n_agents:,}, "
        f"{sim.homogeneity}, mean of {args.seeds} seed(s)"
    )
    fig = plot_run(steps, title=title, credit=data.credit)
    make_out_dir(out)
    save_figure(out / "run.png", fig)
    write_json(out / "results.json", record)
    print(f"\nwrote {out / 'results.json'} and {out / 'run.png'}")
    if data.credit:
        print(data.credit)
