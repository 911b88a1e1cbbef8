"""`memoa sweep`: the online loop over a list of population sizes and seeds.

One JSON line per finished `(N, seed)` in `<out>/sweep.jsonl` (the file is rewritten whole
and moved into place, so it is never half-written); a sweep started again with the same
configuration skips the points already there. Sizes below `--pad-below` share compilations:
each runs in the smallest power-of-two population (at least 1024 slots) that holds it, its
extra slots being padding that no reduction sees (`simulate(..., n_active=N)`; equal to an
exact-size run, see `tests/test_loop.py`). Above it, padding would cost more run time than a
compilation, and every size gets its own.
"""

import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path

from . import _distributed
from ._build import build, data_fingerprint
from ._errors import (
    Failure,
    Interrupted,
    InterruptGuard,
    UsageError,
    check,
    is_interrupt,
    is_runtime_failure,
    runtime_failure,
)
from ._options import (
    MAX_AGENTS,
    add_config_option,
    add_device_options,
    add_model_options,
    add_state_options,
    agent_devices,
    batch_size_for,
    count_type,
    parse_sizes,
)
from ._outputs import (
    check_out_dir,
    command_line,
    default_out,
    make_out_dir,
    print_table,
    save_figure,
    strict_clean,
    strict_json,
    write_text,
)
from ._resources import check_population_share, peak_rss_bytes
from ._tidy import SWEEP_COLUMNS, sweep_rows, write_summary_csv

RESULTS = "sweep.jsonl"
DEFAULT_SIZES = "1e1,1e2,1e3,1e4,1e5,1e6,1e7"
SUMMARY = (
    "Run the online loop over many population sizes N (resumable): errors,\n"
    "compile time and agent-steps/s against N, in runs/sweep-*."
)


def add_parser(sub, formatter):
    s = sub.add_parser(
        "sweep",
        help=SUMMARY,
        formatter_class=formatter,
        description="Run MEMOA and the greedy baselines for each population size and seed; "
        "append one JSON line per finished point to OUT/sweep.jsonl (a rerun resumes), "
        "and plot metrics and agent-steps/s against N.",
    )
    s.add_argument(
        "--sizes",
        default=DEFAULT_SIZES,
        help="comma-separated population sizes, 1e6 notation allowed",
    )
    add_config_option(s, sizes=True)
    add_model_options(s, dataset="logistic")
    s.add_argument("--seeds", type=count_type("--seeds"), default=1, help="seeds per size")
    s.add_argument("--seed", type=int, default=0, help="first seed")
    s.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    add_state_options(s)
    s.add_argument(
        "--pad-below",
        type=float,
        default=1e5,
        help="sizes below this share compilations by padding to power-of-two buckets "
        "(0: never pad)",
    )
    add_device_options(s)
    s.add_argument(
        "--out",
        type=Path,
        help="output folder (default runs/sweep-<dataset>-<configuration hash>: a rerun "
        "with the same configuration resumes there)",
    )
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    s.set_defaults(func=main)


def slots_for(n: int, pad_below: float) -> int:
    """Population size actually compiled for `n` agents."""
    if n >= pad_below:
        return n
    return max(1024, 1 << (n - 1).bit_length())


def _config(args, hp, data) -> dict:
    """What defines the results (not how they are computed): a resumed sweep must match it,
    the data actually used included (`data_fingerprint`: a --csv whose content changed is
    another sweep)."""
    keys = ("dataset", "csv", "target", "rows", "sync_every", "q", "lam", "homogeneity")
    keys += ("mean_field", "server", "kappa", "eta", "hedge_rate", "methods", "dtype")
    cfg = {k: getattr(args, k) for k in keys}
    cfg["csv"] = None if cfg["csv"] is None else str(cfg["csv"])
    # recorded only where they change the results, so that older sweeps (RFN agents, no
    # online-gradient methods) still resume
    if args.encoder != "rfn":
        cfg.update(encoder=args.encoder, mc_samples=args.mc_samples)
    if "ogd_" in args.methods:
        cfg["ogd_lr"] = args.ogd_lr
    if args.csv is not None:
        cfg.update(inputs=args.inputs, lags=args.lags, target_lags=args.target_lags)
        cfg.update(scale=args.scale, preset=args.preset)
    for k, default in (
        ("replay_base", "replay_end"),
        ("replay_control", "replay"),
        ("moments", "population"),
    ):
        if getattr(args, k) != default:
            cfg[k] = getattr(args, k)
    cfg["data"] = data_fingerprint(data)
    return strict_clean({**cfg, **hp})


def _read_done(path: Path, config: dict) -> list[dict]:
    """The points already in `path`. A damaged file (a byte that is not UTF-8, a line that
    is not a whole record: a truncated last line) is refused with its line number and left
    as it is; so is a sweep of another configuration."""
    if not path.exists():
        return []
    clean = f"to start clean, move it away (mv {path} {path}.damaged) or give another --out"
    records = []
    for i, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(
                f"{path} line {i}, byte {e.start + 1}: not UTF-8 (the file is damaged and "
                f"was left as it is; {clean})"
            ) from None
        try:
            record = json.loads(line)
            if not (isinstance(record, dict) and isinstance(record.get("config"), dict)):
                raise ValueError("not a sweep record")
            missing = [k for k in ("n_agents", "seed", "summary") if k not in record]
            if missing:
                raise KeyError(missing[0])
        except (ValueError, KeyError) as e:
            raise UsageError(
                f"{path} line {i}: not a complete sweep record ({str(e).split(':')[0]}; a "
                f"truncated line?); the file was left as it is; {clean}"
            ) from None
        records.append(record)
    for r in records:
        if r["config"] != config:
            diff = sorted(
                k for k in {**config, **r["config"]} if r["config"].get(k) != config.get(k)
            )
            raise UsageError(
                f"{path} holds a sweep with another configuration (differs in: "
                f"{', '.join(diff)}); use another --out"
            )
    return records


def _diverged(record) -> list[str]:
    """The methods of a point whose RMSEs are not finite (null in the file)."""
    return [
        m
        for m, s in record["summary"].items()
        if any(v is None or not math.isfinite(v) for k, v in s.items() if k.endswith("rmse"))
    ]


def main(args) -> int:
    import jax
    from tqdm.auto import tqdm

    _distributed.start(args)  # --distributed: first, so that every check below is shared

    def prepare():
        sizes = parse_sizes(args.sizes, limit=MAX_AGENTS)
        check(
            math.isfinite(args.pad_below) and args.pad_below >= 0,
            f"--pad-below must be a finite number >= 0, got {args.pad_below}",
        )
        args.n_agents = max(sizes)
        args.size_option = "--sizes"  # the population check names this option
        if args.out is not None and jax.process_index() == 0:  # (it alone writes)
            check_out_dir(args.out)
        return sizes, build(args)

    sizes, built = _distributed.agree(args, prepare, lambda p: p[1].data)
    data, sims, hp = built.data, built.sims, built.hp
    mesh = _distributed.agent_mesh(args)
    if args.distributed:
        check_population_share(args, sims)
    config = args.sweep_config = _config(args, hp, data)
    if args.out is None:
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
        args.out = default_out("sweep", data.name, digest)
    path = args.out / RESULTS
    seeds = range(args.seed, args.seed + args.seeds)
    records = []  # (--distributed: process 0's; the others keep only the points they ran)

    def decide():  # process 0 reads what is done and decides what to run, for all
        records.extend(_read_done(path, config))
        make_out_dir(args.out)
        done = {(r["n_agents"], r["seed"]) for r in records}
        return len(done), [(n, s) for n in sizes for s in seeds if (n, s) not in done], str(path)

    n_done, todo, where = _distributed.on_process_0(args, decide)  # (where: process 0's file)
    todo = [(int(n), int(s)) for n, s in todo]  # (JSON: lists)
    n_steps = data.n_rows - 1
    print(
        f"memoa sweep: {data.name}, N in {sizes}, {args.seeds} seed(s), "
        f"{len(built.names)} methods, {args.dtype}, {jax.devices()[0].platform}"
        + (f" x{mesh.size}" if mesh else "")
        + f"; {n_done} point(s) already in {where}, {len(todo)} to run"
    )
    work = sum(slots_for(n, args.pad_below) for n, _ in todo) * n_steps * len(sims)
    bar = tqdm(
        total=work,
        unit="agent-step",
        unit_scale=True,
        disable=args.no_progress,
        file=sys.stderr,
        smoothing=0.0,
    )
    compiled, compiles = {}, 0
    kept = len(records)
    try:
        with InterruptGuard() as guard:
            compiles = _run_points(args, built, todo, records, path, bar, compiled, mesh, guard)
    except Failure:  # (already one line: a write of process 0)
        bar.close()
        raise
    except Exception as e:
        bar.close()
        if is_interrupt(e):
            raise _interrupted(args, path, records, kept) from None
        if is_runtime_failure(e):
            raise runtime_failure(e, f"sweep at N={records_n(records, todo)}") from None
        raise
    except KeyboardInterrupt:
        bar.close()
        raise _interrupted(args, path, records, kept) from None
    bar.close()
    if jax.process_index() != 0:
        return 0
    _print_table(records, sizes, seeds)
    print(
        f"\ncompilations: {compiles} for {len({n for n, _ in todo})} new size(s)"
        + (
            f" ({len(sims)} simulations per size: G1 runs in its own, --g1-params fedmoe)"
            if len(sims) > 1
            else ""
        )
    )
    diverged = [(r["n_agents"], r["seed"], m) for r in records for m in _diverged(r)]
    if diverged:
        n, seed, m = diverged[0]
        print(
            f"diverged: {len(diverged)} method-point(s), first {m} at N={n:,}, seed {seed} "
            "(RMSE not finite: null in sweep.jsonl, left out of the figures)"
        )
    if records:
        from .._sweep_plots import plot_sweep

        for name, fig in plot_sweep(records, title=f"{data.name}, {args.dtype}").items():
            save_figure(args.out / f"sweep_{name}.png", fig)
            print(f"wrote {args.out / f'sweep_{name}.png'}")
    if records:
        table = write_summary_csv(args.out / "summary.csv", sweep_rows(records), SWEEP_COLUMNS)
        print(f"wrote {table}")
    print(f"wrote {path}")
    return 0


def records_n(records, todo) -> str:
    """The size being run when a failure stopped the sweep (the first one not recorded)."""
    done = {(r["n_agents"], r["seed"]) for r in records}
    left = [n for n, s in todo if (n, s) not in done]
    return f"{left[0]:,}" if left else "?"


def _interrupted(args, path: Path, records, kept: int) -> Interrupted:
    new = len(records) - kept
    return Interrupted(
        f"interrupted (Ctrl-C): {len(records)} point(s) kept in {path} ({new} from this run); "
        f"the same command resumes: {command_line(args)}"
    )


def _run_points(args, built, todo, records, path, bar, compiled, mesh, guard) -> int:
    """Runs the points `todo`, appending each finished one to `records` and rewriting
    `path` after each; returns the number of compilations."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import memoa_jax as mj

    data, sims = built.data, built.sims
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    n_steps = data.n_rows - 1
    compiles, n_devices = 0, agent_devices(args)
    for n, seed in todo:
        guard.check()
        slots = slots_for(n, args.pad_below)
        padded = slots != n
        n_active = jnp.asarray(n, jnp.int32) if padded else None
        # one compiled scan per population (no host callback: its runtime checks come back
        # in the result's status, raised here); the bar advances by whole runs
        call = dict(mesh=mesh, n_active=n_active, throw=False)
        bar.set_description(f"N={n:,} seed {seed}")
        compile_s, run_s, xla_bytes, summary = 0.0, 0.0, 0, {}
        for i, sim in enumerate(sims):  # the main simulation, and G1's own (--g1-params)
            one = dataclasses.replace(
                sim, n_agents=slots, batch_size=batch_size_for(args, slots, n_devices)
            )
            if (i, slots) not in compiled:
                bar.set_description(f"N={n:,}: compiling")
                t0 = time.perf_counter()
                # (equinox's filter_jit is typed as the plain function; it has .lower)
                jitted = eqx.filter_jit(mj.simulate)
                exe = jitted.lower(  # pyright: ignore[reportFunctionMemberAccess]
                    one, x, y, key=jax.random.key(0), **call
                )
                compiled[i, slots] = exe.compile()
                compile_s += time.perf_counter() - t0
                compiles += 1
                bar.set_description(f"N={n:,} seed {seed}")
            t0 = time.perf_counter()
            res = jax.block_until_ready(
                compiled[i, slots](one, x, y, key=jax.random.key(seed), **call)
            )
            run_s += time.perf_counter() - t0
            res.status.raise_if_failed()
            bar.update(slots * n_steps)
            mem = compiled[i, slots].compiled.memory_analysis()
            if mem is None:
                xla_bytes = None
            elif xla_bytes is not None:
                xla_bytes = max(
                    xla_bytes,
                    int(
                        mem.argument_size_in_bytes
                        + mem.output_size_in_bytes
                        + mem.temp_size_in_bytes
                    ),
                )
            for m, s in res.ordered():
                summary[m] = {f: float(v) for f, v in s._asdict().items()}
        summary = {m: summary[m] for m in built.names}
        record = dict(
            n_agents=n,
            seed=seed,
            slots=slots,
            steps=n_steps,
            compile_s=compile_s,
            run_s=run_s,
            agent_steps_per_s=n * n_steps / run_s,
            peak_rss_bytes=peak_rss_bytes(),
            xla_bytes=xla_bytes,
            device=str(jax.devices()[0]),
            n_devices=mesh.size if mesh else 1,
            summary=summary,
            config=args.sweep_config,
        )
        record = strict_clean(record)  # a diverged method's RMSE: null, with the reason

        def write():  # process 0 alone; a failure to write stops every process
            text = "".join(strict_json(r, indent=None) + "\n" for r in [*records, record])
            write_text(path, text)

        _distributed.on_process_0(args, write)
        records.append(record)  # kept once written: what an interruption reports as kept
    return compiles


def _rmse(v) -> str:
    return "diverged" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _print_table(records, sizes, seeds):
    rows = [r for r in records if r["n_agents"] in sizes and r["seed"] in seeds]
    rows.sort(key=lambda r: (r["n_agents"], r["seed"]))
    if not rows:
        return
    methods = sorted(rows[0]["summary"], key=lambda m: (m != "memoa", m))
    cols = ["N", "seed", "slots", "compile s", "run s", "agent-steps/s", "peak RSS GB"]
    cols += [f"{m} worst" for m in methods]
    table = [
        [
            f"{r['n_agents']:,}",
            str(r["seed"]),
            f"{r['slots']:,}",
            f"{r['compile_s']:.1f}",
            f"{r['run_s']:.2f}",
            f"{r['agent_steps_per_s']:.3g}",
            f"{r['peak_rss_bytes'] / 2**30:.2f}",
            *(_rmse(r["summary"][m].get("worst_rmse")) for m in methods),
        ]
        for r in rows
    ]
    print()
    print_table(cols, table)
