"""`memoa run`: MEMOA and the greedy baselines on one series, the same data and feature draws;
a table, `results.json` and `run.png`."""

import sys
import time
from pathlib import Path
from typing import Any

from ..data._checks import describe_stretches
from . import _distributed
from ._build import build
from ._checkpoints import RUN_RECORD, check_options, check_resume, run_in_segments, run_record
from ._errors import UsageError, is_runtime_failure, runtime_failure
from ._options import (
    add_config_option,
    add_device_options,
    add_model_options,
    add_state_options,
    count_type,
)
from ._outputs import (
    check_out_dir,
    command_line,
    default_out,
    make_out_dir,
    save_figure,
    stamp,
    strict_json,
    write_json,
    write_text,
)
from ._resources import check_population_share, peak_rss_bytes
from ._run_tables import print_frozen_warning, print_summary, print_timing
from ._tidy import tidy_rows, write_summary_csv

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
    r.add_argument(
        "-n",
        "--n-agents",
        type=count_type("--n-agents"),
        default=1000,
        help="population size N (1e6 notation allowed)",
    )
    add_config_option(r)
    add_model_options(r)
    r.add_argument(
        "--seeds",
        type=count_type("--seeds"),
        default=3,
        help="number of seeds (results: mean ± std)",
    )
    r.add_argument("--seed", type=int, default=0, help="first seed")
    r.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    add_state_options(r)
    add_device_options(r)
    r.add_argument(
        "--out", type=Path, help="output folder (default runs/run-<dataset>-N<n>-<time>)"
    )
    r.add_argument(
        "--wide",
        action="store_true",
        help="also print the per-agent RMSE quantiles (p50, p90, p99, worst mover), the "
        "lag-(T+1) persistence and the per-seed detail (worst agent, diverged agents)",
    )
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    g = r.add_argument_group("checkpoints (a long run stopped and continued)")
    g.add_argument(
        "--checkpoint-every",
        type=count_type("--checkpoint-every"),
        metavar="K",
        help="save the loop's carry every K steps (and at each run's end) in "
        "<out>/checkpoint, each process its own shards; the run then goes in segments of "
        "one compiled program, to the same results",
    )
    g.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="continue the run whose checkpoint folder is DIR (e.g. <out>/checkpoint), "
        "given the same options: finished seeds are read back, the seed in progress goes "
        "on from its last checkpoint; writes to DIR's parent unless --out is given",
    )
    r.set_defaults(func=main)


def main(args) -> int:
    import jax
    import numpy as np
    from tqdm.auto import tqdm

    import memoa_jax as mj

    wall0 = time.perf_counter()
    _distributed.start(args)  # --distributed: first, so that every check below is shared

    def prepare():
        check_options(args)
        return build(args, comparators=True)

    built = _distributed.agree(args, prepare, lambda b: b.data)
    data, sims, hp, names, spec = built.data, built.sims, built.hp, built.names, built.spec
    n_agents = spec.n_agents
    mesh = _distributed.agent_mesh(args)
    if args.distributed:
        check_population_share(args, sims)
    out = args.out
    if out is None:
        out = (
            args.resume.parent
            if args.resume
            else default_out("run", data.name, f"N{n_agents}", stamp())
        )
    # --resume: K as saved, unless given again; the checkpoint's configuration checked here
    every = args.checkpoint_every
    if args.resume is not None:
        every = _distributed.on_process_0(args, lambda: check_resume(args, data))
        every = args.checkpoint_every or every
    folder = args.resume if args.resume is not None else out / "checkpoint"

    def check_out():  # (--distributed: process 0's folder; it alone writes)
        check_out_dir(out)
        resuming_here = args.resume is not None and out.resolve() == args.resume.resolve().parent
        if out.exists() and any(out.iterdir()) and not resuming_here:
            raise UsageError(f"output folder {str(out)!r} exists and is not empty")
        if every is not None and args.resume is None:  # what a resumed run must match
            make_out_dir(folder)
            write_json(folder / RUN_RECORD, run_record(args, data, every))

    _distributed.on_process_0(args, check_out)
    n_steps = data.n_rows - 1
    homogeneity = spec.homogeneity
    print(
        f"memoa run: {data.name} ({data.n_rows} rows, d_x={data.d_x}, d={data.d}), "
        f"N={n_agents:,}, {homogeneity}, {spec.server} server, {spec.dtype}, "
        f"{spec.seeds} seed(s), "
        + (
            f"sharded over {mesh.size} {jax.devices()[0].platform} device(s)"
            if mesh
            else jax.devices()[0].platform
        )
    )
    for line in built.notes:
        print(f"  {line}")
    game_hp = {k: v for k, v in hp.items() if k != "g1"}
    print(
        "  hyper-parameters: "
        + ", ".join(f"{k}={v}" for k, v in game_hp.items())
        + f", q={spec.q}, lam={spec.lam}, sync_every={spec.sync_every}"
    )
    if (
        spec.replay_base != "replay_end"
        or spec.replay_control != "replay"
        or (spec.moments != "population")
    ):
        print(
            f"  reading: base {spec.replay_base}, control {spec.replay_control}, "
            f"moments {spec.moments}"
        )
    if "g1" in hp:
        g1 = hp["g1"]
        print(
            "  g1_ridge at FedMOE's settings (--g1-params fedmoe, its own simulation and "
            "encoder draw): "
            + ", ".join(f"{k}={v}" for k, v in g1.items() if k != "source")
            + f" [{g1['source']}]"
        )
    cache = getattr(args, "compile_cache_dir", None)
    print(f"  compilation cache: {cache if cache else 'off'}")
    for line in describe_stretches(data.y):
        print(f"  note: {line}")
    if every is not None:
        what = "resumed from" if args.resume is not None else "saved in"
        print(f"  checkpoints: every {every} steps, {what} {folder}")

    x, y = jax.numpy.asarray(data.x), jax.numpy.asarray(data.y)
    game = built.fedmoe_game
    total = n_steps * (len(sims) + (game is not None)) * spec.seeds
    bar = tqdm(total=total, unit="step", disable=args.no_progress, leave=False, file=sys.stderr)
    # The bar advances by whole runs: a per-step host callback inside the compiled loop
    # would keep the program out of the persistent compilation cache.

    # COMPILE: every simulation once, all its methods jointly. The program holds no host
    # callback (its runtime checks come back in the result's status, raised below), so JAX
    # keeps it in its persistent compilation cache, where a second identical run finds it
    # (after tracing and lowering the loop again: JAX keys its cache by the lowered program).
    # With checkpoints: the loop in segments (`mj.Run`), compiled on its first segment.
    runner = mj.Runner(mesh=mesh, throw=False)
    compile_s, trace_s, from_cache = [], [], []
    for sim in sims if every is None else ():
        label = "+".join(m.name for m in sim.methods)
        bar.set_description(f"compiling {label}")
        if not args.no_progress:  # the bar stands at 0 meanwhile: say why, and that it is once
            bar.write(f"compiling {label} (first run only: cached afterwards) ...", sys.stderr)
        compiled = runner.compile(sim, x, y)
        if not args.no_progress:
            bar.write(f"compiled {label} in {compiled.compile_s:.1f} s", sys.stderr)
        compile_s.append(compiled.compile_s)
        trace_s.append(compiled.trace_s)
        from_cache.append(compiled.from_cache)
    if every is not None:
        compile_s = trace_s = from_cache = [None] * len(sims)
    bar.reset(total=total)  # the rate and ETA count from here, not from the compilation
    bar.set_description("running")

    # RUN: every seed, every simulation on the same data and key; results merged
    results = {n: [] for n in names}
    run_s = [[] for _ in sims]
    steps_run = [[] for _ in sims]  # this command's steps per seed (fewer when resumed)
    game_s = []  # fedmoe_game: seconds per seed (its first includes its compilation)
    for s in range(spec.seed, spec.seed + spec.seeds):
        for i, sim in enumerate(sims):
            label = "+".join(m.name for m in sim.methods)
            bar.set_description(f"seed {s}: {label}")
            try:
                if every is None:
                    t0 = time.perf_counter()
                    res = runner.run(sim, x, y, key=jax.random.key(s))
                    run_s[i].append(time.perf_counter() - t0)
                    steps_run[i].append(n_steps)
                    bar.update(n_steps)
                else:
                    run = mj.Run(sim, x, y, key=jax.random.key(s), mesh=mesh)
                    unit = folder / f"seed-{s}" / label
                    res, seconds, ran = run_in_segments(run, unit, every, args.resume, bar)
                    if ran < n_steps:  # (resumed)
                        at = "finished, read back" if ran == 0 else f"at step {n_steps - ran}"
                        bar.write(f"seed {s}, {label}: resumed {at}")
                    run_s[i].append(seconds)
                    steps_run[i].append(ran)
                assert res.status is not None  # (run with throw=False: its checks' status)
                res.status.raise_if_failed()  # a failed runtime check: `mj.SimulationError`
            except Exception as e:  # a failed runtime check, out of memory
                bar.close()
                if not is_runtime_failure(e):
                    raise
                raise runtime_failure(e, f"{label.replace('+', ', ')}, seed {s}") from None
            for name, summary in res.ordered():
                steps = {f: np.asarray(v) for f, v in res.steps[name]._asdict().items()}
                results[name].append((summary, steps))
        if game is not None:  # FedMOE's own game: same data, key and draws
            bar.set_description(f"seed {s}: fedmoe_game")
            t0 = time.perf_counter()
            with np.errstate(all="ignore"):
                played = mj.simulate_fedmoe_game(**game, x=x, y=y, key=jax.random.key(s))
                summary, st = mj.fedmoe_game_summary(played, y)
            game_s.append(time.perf_counter() - t0)
            bar.update(n_steps)
            results["fedmoe_game"].append(
                (summary, {f: np.asarray(v) for f, v in st._asdict().items()})
            )
    bar.close()

    persistence = _persistence(mj, y, sims, hp, game is not None, data.season)
    summary, steps = {}, {}
    with np.errstate(all="ignore"):  # diverged methods: inf and NaN are reported, not warned
        for name in names:
            summary[name] = _aggregate(results[name], persistence[name])
            steps[name] = {
                f: np.mean([st[f] for _, st in results[name]], 0) for f in mj.StepStats._fields
            }
    timing: list[dict[str, Any]] = [
        dict(
            methods=[m.name for m in sim.methods],
            compile_s=c,
            trace_s=tr,
            read_from_cache=d,
            run_s_per_seed=r,
            agent_steps_per_s=n_agents * sum(k) * len(sim.methods) / sum(r) if sum(r) else None,
        )
        for sim, c, tr, d, r, k in zip(sims, compile_s, trace_s, from_cache, run_s, steps_run)
    ]
    if game is not None:
        timing.append(
            dict(
                methods=["fedmoe_game"],
                compile_s=game_s[0] - (min(game_s[1:]) if len(game_s) > 1 else 0.0),
                trace_s=None,
                read_from_cache=False,
                run_s_per_seed=game_s,
                agent_steps_per_s=n_agents * n_steps / float(np.min(game_s)),
            )
        )
    wall_s = time.perf_counter() - wall0

    def report():  # multi-host: process 0 reports and writes; a failure stops every process
        print_summary(summary, n_agents, n_steps, spec.seeds, args.wide)
        print_frozen_warning(summary, hp.get("features"))
        print_timing(timing, wall_s)
        _write_outputs(out, args, built, summary, steps, timing, wall_s, persistence)

    _distributed.on_process_0(args, report)
    return 0


def _persistence(mj, y, sims, hp, fedmoe_game: bool, season: int = 0) -> dict:
    """Per method: the lag-1 persistence RMSE, the seasonal one (`season` > 1: the data
    set's seasonal lag; else None), and the lag-(T+1) one (what a frozen agent predicts after
    a hindsight replay of T steps; T = the method's window, else the game's)."""
    lag1 = float(mj.persistence_rmse(y, 1))
    seasonal = float(mj.persistence_rmse(y, season)) if 1 < season < y.shape[0] else None
    windows = {m.name: getattr(m, "window", hp["window"]) for sim in sims for m in sim.methods}
    if fedmoe_game:
        windows["fedmoe_game"] = hp["window"]
    return {
        name: dict(
            lag_1=lag1,
            lag_T1=float(mj.persistence_rmse(y, w + 1)),
            T1=w + 1,
            seasonal=seasonal,
            season=season if seasonal is not None else None,
        )
        for name, w in windows.items()
    }


def _aggregate(per_seed, persistence) -> dict:
    """One method's summaries over seeds: every `Summary` field per seed, and the mean and
    standard deviation of the RMSEs and shares (never of the worst agent's index)."""
    import numpy as np

    import memoa_jax as mj

    out = {}
    for f in mj.Summary._fields:
        values = [float(s._asdict()[f]) for s, _ in per_seed]
        if f in ("worst_agent", "n_diverged"):
            out[f] = dict(per_seed=[int(v) for v in values])
            continue
        v = np.asarray(values)
        out[f] = dict(mean=float(v.mean()), std=float(v.std()), per_seed=values)
    out["persistence"] = persistence
    return out


def _write_outputs(out: Path, args, built, summary, steps, timing, wall_s, persistence):
    """results.json (strict JSON), summary.csv (tidy) and run.png, each written atomically
    (never half-written)."""
    import jax
    import numpy as np

    import memoa_jax as mj

    from ..plots import plot_run

    data, hp, spec = built.data, built.hp, built.spec
    dataset = dict(name=data.name, rows=data.n_rows, d_x=data.d_x, d=data.d, credit=data.credit)
    if args.csv is not None:
        dataset.update(
            csv=str(args.csv),
            target=args.target,
            inputs=args.inputs,
            lags=args.lags,
            target_lags=args.target_lags,
            scale=args.scale,
            notes=built.notes,
        )
    if built.dates is not None:
        dataset.update(first=built.dates[0], last=built.dates[-1])
    record = dict(
        command=command_line(args),
        dataset=dataset,
        config=dict(
            n_agents=spec.n_agents,
            methods=list(spec.methods),
            homogeneity=spec.homogeneity,
            server=spec.server,
            kappa=spec.kappa,
            eta=spec.eta,
            mean_field=spec.mean_field,
            replay_base=spec.replay_base,
            replay_control=spec.replay_control,
            moments=spec.moments,
            g1_params=spec.g1_params,
            dtype=spec.dtype,
            q=spec.q,
            lam=spec.lam,
            sync_every=spec.sync_every,
            ogd_lr=spec.learning_rate,
            seeds=list(range(spec.seed, spec.seed + spec.seeds)),
            preset=spec.preset_name,
            **hp,
        ),
        device=str(jax.devices()[0]),
        n_devices=jax.device_count() if (args.shard or args.distributed) else 1,
        jax_version=jax.__version__,
        compilation_cache=getattr(args, "compile_cache_dir", None),
        timing=dict(simulations=timing, wall_s=wall_s, peak_rss_bytes=peak_rss_bytes()),
        summary=summary,
        spec=spec.to_dict(),
        steps={m: {k: v.tolist() for k, v in s.items()} for m, s in steps.items()},
    )
    title = (
        f"MEMOA vs greedy baselines on {data.name}: N={spec.n_agents:,}, "
        f"{spec.homogeneity}, mean of {spec.seeds} seed(s)"
    )
    lag1 = next(iter(persistence.values()))["lag_1"]
    y = np.asarray(data.y)
    fig = plot_run(
        steps,
        title=title,
        credit=data.credit,
        limit=mj.DIVERGED_FACTOR * lag1,
        persistence=np.sum((y[1:] - y[:-1]) ** 2, axis=-1),
    )
    text = strict_json(record)
    rows = tidy_rows(summary, list(range(spec.seed, spec.seed + spec.seeds)))
    make_out_dir(out)
    save_figure(out / "run.png", fig)
    write_text(out / "results.json", text)
    write_summary_csv(out / "summary.csv", rows)
    print(f"\nwrote {out / 'results.json'}, {out / 'summary.csv'} and {out / 'run.png'}")
    if data.credit:
        print(data.credit)
