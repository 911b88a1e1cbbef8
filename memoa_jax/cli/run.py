"""`memoa run`: MEMOA and the greedy baselines on one series, the same data and feature draws;
a table, `results.json` and `run.png`."""

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import _programs
from ._common import (
    UsageError,
    add_device_options,
    add_model_options,
    add_state_options,
    agent_mesh,
    build,
    check_out_dir,
    check_population_share,
    command_line,
    count_type,
    default_out,
    format_bytes,
    is_runtime_failure,
    make_out_dir,
    peak_rss_bytes,
    preset_name,
    print_table,
    runtime_failure,
    save_figure,
    stamp,
    strict_json,
    write_text,
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
    r.add_argument(
        "-n",
        "--n-agents",
        type=count_type("--n-agents"),
        default=1000,
        help="population size N (1e6 notation allowed)",
    )
    add_model_options(r)
    r.add_argument("--seeds", type=int, default=3, help="number of seeds (results: mean ± std)")
    r.add_argument("--seed", type=int, default=0, help="first seed")
    r.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    add_state_options(r)
    add_device_options(r)
    r.add_argument(
        "--out", type=Path, help="output folder (default runs/run-<dataset>-N<n>-<time>)"
    )
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    r.set_defaults(func=main)


def main(args) -> int:
    import jax
    import numpy as np
    from tqdm.auto import tqdm

    import memoa_jax as mj

    wall0 = time.perf_counter()
    built = build(args, comparators=True)
    data, sims, hp, names = built.data, built.sims, built.hp, built.names
    n_agents = args.n_agents
    mesh = agent_mesh(args)
    if args.distributed:
        check_population_share(args, sims)
    out = args.out
    if out is None:
        out = default_out("run", data.name, f"N{n_agents}", stamp())
    check_out_dir(out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"output folder {str(out)!r} exists and is not empty")
    n_steps = data.n_rows - 1
    homogeneity = args.homogeneity
    print(
        f"memoa run: {data.name} ({data.n_rows} rows, d_x={data.d_x}, d={data.d}), "
        f"N={n_agents:,}, {homogeneity}, {args.server} server, {args.dtype}, "
        f"{args.seeds} seed(s), "
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
        + f", q={args.q}, lam={args.lam}, sync_every={args.sync_every}"
    )
    if (
        args.replay_base != "replay_end"
        or args.replay_control != "replay"
        or (args.moments != "population")
    ):
        print(
            f"  reading: base {args.replay_base}, control {args.replay_control}, "
            f"moments {args.moments}"
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

    x, y = jax.numpy.asarray(data.x), jax.numpy.asarray(data.y)
    game = built.fedmoe_game
    total = n_steps * (len(sims) + (game is not None)) * args.seeds
    bar = tqdm(total=total, unit="step", disable=args.no_progress, leave=False, file=sys.stderr)
    # The bar advances by whole runs: a per-step host callback inside the compiled loop
    # would keep the program out of the persistent compilation cache.

    # COMPILE: every simulation once, all its methods jointly. With the persistent cache on,
    # runtime checks compile as NaN (see `_runtime_checks`) so that the program has no host
    # callback: JAX keeps it in its cache, and `_programs` keeps the executable itself, so
    # that a second identical run neither traces nor lowers the Python loop again.
    fast = cache is not None and "EQX_ON_ERROR" not in os.environ
    mode = "nan" if fast else None

    def lower_and_compile(sim, mode):
        """The compiled simulation (`_programs.Program`)."""

        def lower(fn, *args):
            with _runtime_checks(mode):
                return jax.jit(fn).lower(*args)

        folder = cache if mode == "nan" else None  # (no host callback: checks as NaN)
        return _programs.compile_simulation(
            sim, x, y, mesh=mesh, folder=folder, checks=mode, lower=lower
        )

    compiled, compile_s, trace_s, from_disk, write_s = [], [], [], [], []
    for sim in sims:
        bar.set_description(f"compiling {'+'.join(m.name for m in sim.methods)}")
        t0 = time.perf_counter()
        program = lower_and_compile(sim, mode)
        compiled.append(program.run)
        compile_s.append(time.perf_counter() - t0 - program.write_s)
        trace_s.append(program.trace_s)
        from_disk.append(program.from_disk)
        write_s.append(program.write_s)
    bar.reset(total=total)  # the rate and ETA count from here, not from the compilation
    bar.set_description("running")

    # RUN: every seed, every simulation on the same data and key; results merged
    results = {n: [] for n in names}
    run_s = [[] for _ in sims]
    game_s = []  # fedmoe_game: seconds per seed (its first includes its compilation)
    checked = [not fast] * len(sims)
    for s in range(args.seed, args.seed + args.seeds):
        for i, sim in enumerate(sims):
            label = "+".join(m.name for m in sim.methods)
            bar.set_description(f"seed {s}: {label}")
            try:
                t0 = time.perf_counter()
                with _quiet_callbacks():
                    res = jax.block_until_ready(compiled[i](sim, x, y, jax.random.key(s)))
                run_s[i].append(time.perf_counter() - t0)
                if not checked[i] and _has_checks(mj, sim) and not _finite(res):
                    # a failed runtime check, or a divergence: find out which, with checks on
                    bar.write(
                        f"{label}, seed {s}: a result is not finite; compiling again with "
                        "runtime checks on, to tell a failed check from a divergence"
                    )
                    t1 = time.perf_counter()
                    compiled[i] = lower_and_compile(sim, None).run
                    compile_s[i] += time.perf_counter() - t1
                    checked[i] = True
                    with _quiet_callbacks():
                        res = jax.block_until_ready(compiled[i](sim, x, y, jax.random.key(s)))
            except Exception as e:  # runtime checks inside the compiled loop, out of memory
                bar.close()
                if not is_runtime_failure(e):
                    raise
                raise runtime_failure(e, f"{label.replace('+', ', ')}, seed {s}") from None
            bar.update(n_steps)
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

    persistence = _persistence(mj, y, sims, hp, game is not None)
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
            read_from_disk=d,
            cache_write_s=w,
            compiled_again_with_checks=ch and fast,
            run_s_per_seed=r,
            agent_steps_per_s=n_agents * n_steps * len(sim.methods) / float(np.mean(r)),
        )
        for sim, c, tr, d, w, r, ch in zip(
            sims, compile_s, trace_s, from_disk, write_s, run_s, checked
        )
    ]
    if game is not None:
        timing.append(
            dict(
                methods=["fedmoe_game"],
                compile_s=game_s[0] - (min(game_s[1:]) if len(game_s) > 1 else 0.0),
                trace_s=None,
                read_from_disk=False,
                cache_write_s=0.0,
                compiled_again_with_checks=False,
                run_s_per_seed=game_s,
                agent_steps_per_s=n_agents * n_steps / float(np.min(game_s)),
            )
        )
    wall_s = time.perf_counter() - wall0

    if jax.process_index() == 0:  # multi-host: one process reports
        _print_summary(summary, n_agents, n_steps, args.seeds, timing, wall_s)
        _write_outputs(out, args, built, summary, steps, timing, wall_s, persistence)
    return 0


@contextlib.contextmanager
def _runtime_checks(mode):
    """Compile equinox's runtime checks (`eqx.error_if`: "R̃ singular at step s", ...) as
    `mode` ("nan"; None: as configured, "raise" by default).

    In "raise" mode a check is a host callback, and JAX never writes a program with host
    callbacks to its persistent compilation cache. With the cache on, `memoa run` compiles
    the checks as "nan" (a failed check turns the result into NaN) and, only when a result
    is not finite, compiles that simulation again in "raise" mode to report the check's own
    message. equinox reads the mode when tracing, from `equinox._errors.EQX_ON_ERROR`.
    """
    import importlib

    try:  # (a private module: imported by name, its attribute read as any other)
        errors = importlib.import_module("equinox._errors")
        old = errors.EQX_ON_ERROR
    except (ImportError, AttributeError):  # another equinox: checks as configured
        yield
        return
    if mode is None:
        yield
        return
    import jax

    # JAX caches traces by shapes, not by equinox's mode: clear them on both sides, so that
    # no trace of the other mode is reused (here, or by a later `simulate` in this process)
    jax.clear_caches()
    setattr(errors, "EQX_ON_ERROR", mode)  # noqa: B010 (a module's setting, by name)
    try:
        yield
    finally:
        setattr(errors, "EQX_ON_ERROR", old)  # noqa: B010
        jax.clear_caches()


@contextlib.contextmanager
def _quiet_callbacks():
    """JAX logs a failed runtime check's whole traceback ("jax.pure_callback failed") before
    raising it; the CLI reports the check's message in one line instead."""
    import logging

    log = logging.getLogger("jax._src.callback")
    old = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = old


def _has_checks(mj, sim) -> bool:
    """Whether the simulation's program holds runtime checks (the game methods' solves)."""
    return any(isinstance(m, mj.MeanFieldGame) for m in sim.methods)


def _finite(res) -> bool:
    import numpy as np

    return all(
        np.isfinite(np.asarray(v)).all() or f == "worst_moving_rmse"
        for _, s in res.ordered()
        for f, v in s._asdict().items()
    )


def _persistence(mj, y, sims, hp, fedmoe_game: bool) -> dict:
    """Per method: the lag-1 persistence RMSE, and the lag-(T+1) one (what a frozen agent
    predicts after a hindsight replay of T steps; T = the method's window, else the game's)."""
    lag1 = float(mj.persistence_rmse(y, 1))
    windows = {m.name: getattr(m, "window", hp["window"]) for sim in sims for m in sim.methods}
    if fedmoe_game:
        windows["fedmoe_game"] = hp["window"]
    return {
        name: dict(lag_1=lag1, lag_T1=float(mj.persistence_rmse(y, w + 1)), T1=w + 1)
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


def _cell(stat, summary, n_agents, seeds, *, agents=True) -> str:
    """An RMSE over seeds for the table: `0.01234 ± 0.0012` (no `± 0` for one seed), or
    `diverged (k of N agents)` (`memoa_jax.format_rmse`) when a seed diverged."""
    import memoa_jax as mj

    lag1 = summary["persistence"]["lag_1"]
    values = stat["per_seed"]
    bad = [i for i, v in enumerate(values) if mj.is_diverged(v, lag1)]
    if bad:
        k = max(summary["n_diverged"]["per_seed"][i] for i in bad)
        text = mj.format_rmse(values[bad[0]], lag1, k if agents else 0, n_agents if agents else 0)
        return text if seeds == 1 else f"{text} in {len(bad)} of {seeds} seeds"
    if seeds == 1:
        return f"{stat['mean']:.4g}"
    return f"{stat['mean']:.4g} ± {stat['std']:.2g}"


def _print_summary(summary, n_agents, n_steps, seeds, timing, wall_s):
    across = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"
    cols = ["method", "avg RMSE", "p50", "p90", "p99", "worst agent", "worst mover"]
    cols += ["server RMSE", "persist. lag 1", "persist. lag T+1"]
    rows = []
    for name, s in summary.items():
        cells = [_cell(s[f], s, n_agents, seeds) for f in ("avg_rmse", "p50_rmse", "p90_rmse")]
        cells.append(_cell(s["p99_rmse"], s, n_agents, seeds))
        cells.append(_cell(s["worst_rmse"], s, n_agents, seeds))
        moving = s["worst_moving_rmse"]
        if all(f == 1.0 for f in s["frozen_share"]["per_seed"]):
            cells.append("none moved")
        else:
            cells.append(_cell(moving, s, n_agents, seeds))
        cells.append(_cell(s["server_rmse"], s, n_agents, seeds, agents=False))
        p = s["persistence"]
        cells += [f"{p['lag_1']:.4g}", f"{p['lag_T1']:.4g} (lag {p['T1']})"]
        rows.append([name, *cells])
    title = f"\nN = {n_agents:,} agents, {n_steps} steps, {across}; per-agent RMSE quantiles:"
    print_table(cols, rows, left=1, title=title)

    cols = ["method", "worst agent (per seed)", "frozen agents", "diverged agents (per seed)"]
    rows = []
    for name, s in summary.items():
        frozen = s["frozen_share"]
        rows.append(
            [
                name,
                ", ".join(str(i) for i in s["worst_agent"]["per_seed"]),
                f"{100 * frozen['mean']:.1f} %",
                ", ".join(f"{k} of {n_agents:,}" for k in s["n_diverged"]["per_seed"]),
            ]
        )
    print()
    print_table(cols, rows, left=1)
    print(
        "\n(frozen: features zero at every step, the agent never moves; worst mover: the worst "
        "agent among those that move; diverged: RMSE not finite or > 10⁶ × lag-1 persistence)"
    )
    print()
    for t in timing:
        runs = ", ".join(f"{r:.2f}" for r in t["run_s_per_seed"])
        print(
            f"{' + '.join(t['methods'])}: compiled "
            + ("twice (again with checks on)" if t["compiled_again_with_checks"] else "once")
            + f" in {t['compile_s']:.1f} s"
            + (
                " (estimated)"
                if t["trace_s"] is None
                else " (read from the cache, not traced)"
                if t["read_from_disk"]
                else f" (tracing {t['trace_s']:.1f} s)"
            )
            + f"; run {runs} s per seed ({t['agent_steps_per_s']:.3g} agent-steps/s)"
        )
    compile_total = sum(t["compile_s"] for t in timing)
    print(
        f"wall time {wall_s:.1f} s, of which compilation {compile_total:.1f} s; "
        f"peak memory (RSS) {format_bytes(peak_rss_bytes())}"
    )


def _write_outputs(out: Path, args, built, summary, steps, timing, wall_s, persistence):
    """results.json (strict JSON) and run.png, each written atomically (never half-written)."""
    import jax

    import memoa_jax as mj

    from ..plots import plot_run

    data, sim, hp = built.data, built.sims[0], built.hp
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
            n_agents=sim.n_agents,
            methods=list(built.names),
            homogeneity=sim.homogeneity,
            server=args.server,
            kappa=args.kappa,
            eta=args.eta,
            mean_field=args.mean_field,
            replay_base=args.replay_base,
            replay_control=args.replay_control,
            moments=args.moments,
            g1_params=args.g1_params,
            dtype=args.dtype,
            q=args.q,
            lam=args.lam,
            sync_every=args.sync_every,
            ogd_lr=args.ogd_lr,
            seeds=list(range(args.seed, args.seed + args.seeds)),
            preset=preset_name(args),
            **hp,
        ),
        device=str(jax.devices()[0]),
        n_devices=jax.device_count() if (args.shard or args.distributed) else 1,
        jax_version=jax.__version__,
        compilation_cache=getattr(args, "compile_cache_dir", None),
        timing=dict(simulations=timing, wall_s=wall_s, peak_rss_bytes=peak_rss_bytes()),
        summary=summary,
        steps={m: {k: v.tolist() for k, v in s.items()} for m, s in steps.items()},
    )
    title = (
        f"MEMOA vs greedy baselines on {data.name}: N={sim.n_agents:,}, "
        f"{sim.homogeneity}, mean of {args.seeds} seed(s)"
    )
    lag1 = next(iter(persistence.values()))["lag_1"]
    fig = plot_run(steps, title=title, credit=data.credit, limit=mj.DIVERGED_FACTOR * lag1)
    text = strict_json(record)
    make_out_dir(out)
    save_figure(out / "run.png", fig)
    write_text(out / "results.json", text)
    print(f"\nwrote {out / 'results.json'} and {out / 'run.png'}")
    if data.credit:
        print(data.credit)
