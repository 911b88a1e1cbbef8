"""`memoa bench`: throughput of the online loop and of the bare policy step, against NumPy, a
per-agent Python loop and the machine's copy-bandwidth roofline, in one run.

What is measured, on which problem, and how the roofline is set: `memoa_jax.bench`, whose
functions this command calls; it parses the options, prints the tables and writes bench.json,
its tidy summary.csv and bench_throughput.png.
"""

import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

from ._errors import UsageError, check, out_of_memory
from ._options import MAX_AGENTS, count_type, parse_sizes
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
from ._resources import check_fits, format_count
from ._tidy import BENCH_COLUMNS, bench_rows, write_summary_csv

SUMMARY = (
    "Measure throughput of the loop and the policy step against NumPy, a\n"
    "Python loop and the memory-bandwidth roofline, in runs/bench-*."
)


def add_parser(sub, formatter):
    b = sub.add_parser(
        "bench",
        help=SUMMARY,
        formatter_class=formatter,
        description=(__doc__ or "").split("\n\n")[0],
    )
    b.add_argument("--sizes", help="population sizes (default 1e3..1e7 on CPU, ..1e9 on GPU)")
    b.add_argument(
        "--steps", type=count_type("--steps"), default=50, help="prediction steps of the full loop"
    )
    b.add_argument(
        "--repeat",
        type=count_type("--repeat"),
        default=3,
        help="timed runs per point (min reported)",
    )
    b.add_argument("--numpy-max", type=float, default=1e6, help="largest N for the NumPy loop")
    b.add_argument("--python-max", type=float, default=1e4, help="largest N for the Python loop")
    b.add_argument(
        "--loop-max", type=float, help="largest N for the full loop (default: all sizes)"
    )
    b.add_argument(
        "--copy-mib", type=count_type("--copy-mib"), default=512, help="array size of the copy test"
    )
    b.add_argument(
        "--dense-sizes",
        default="2,8,32,128",
        help="N for the dense centralized Nash solve ('none' to skip)",
    )
    b.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    b.add_argument(
        "--kernels",
        choices=("tuned", "plain", "both"),
        default="tuned",
        help="the loop's backend tricks (Simulation(kernels=...)); 'both' also times, at "
        "--kernels-n agents, the plain path and the tuned one with each trick off in turn",
    )
    b.add_argument(
        "--state",
        choices=("stored", "lean", "both"),
        default="stored",
        help="what the loop carries per agent (Simulation(state=...)); 'both' times each and "
        "prints both modes' carried bytes per agent",
    )
    b.add_argument(
        "--carry-draws",
        action="store_true",
        help="with --state lean or both: the lean loop carries each agent's encoder "
        "parameters and noise keys (Simulation(carry_draws=True); see memoa run --help)",
    )
    b.add_argument(
        "--kernels-n",
        type=count_type("--kernels-n", MAX_AGENTS),
        default=10**6,
        help="population of the --kernels both comparison (1e6 notation allowed)",
    )
    b.add_argument(
        "--tricks",
        help="the tricks that --kernels both turns off one at a time (comma-separated; "
        "default: all of Kernels' tricks)",
    )
    b.add_argument(
        "--out",
        type=Path,
        help="output folder of bench.json and bench_throughput.png "
        "(default runs/bench-<platform>-<dtype>-<time>)",
    )
    b.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    b.set_defaults(func=main)


def _sizes(args, platform_name):
    if args.sizes is None:
        top = 9 if platform_name == "gpu" else 7
        return [10**k for k in range(3, top + 1)]
    return parse_sizes(args.sizes, limit=MAX_AGENTS)


# where `--kernels both` keeps its comparison in bench.json, per state ("kernels" predates lean)
KERNELS_KEY = {"stored": "kernels", "lean": "kernels_lean"}


def _tricks(spec: str | None) -> tuple[str, ...]:
    """The `--tricks` list, each checked against `Kernels`' tricks (exit 2 otherwise)."""
    from memoa_jax._kernels import TRICKS

    if spec is None:
        return TRICKS
    names = tuple(t.strip() for t in spec.split(",") if t.strip())
    bad = [t for t in names if t not in TRICKS]
    check(
        bool(names) and not bad,
        f"--tricks: unknown {', '.join(map(repr, bad)) or 'empty list'} "
        f"(the tricks are {','.join(TRICKS)}), got {spec!r}",
    )
    return names


def _check_sizes_fit(sizes, loop_max, args, dtype):
    """Refuses (exit 2) a size whose arrays cannot fit, before anything runs
    (`memoa_jax.bench.bytes_per_agent`: the policy step's arrays, and up to `--loop-max`
    the loop's carry)."""
    import numpy as np

    from ..bench import bytes_per_agent

    n = max(sizes)
    itemsize = np.dtype(args.dtype).itemsize
    per_agent = bytes_per_agent(itemsize, args.steps, dtype, loop=n <= loop_max)
    check_fits(f"--sizes {format_count(n)}", per_agent, n)


def main(args) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from .. import bench
    from ..data import load_dataset
    from ..nash import dense_bytes

    check(args.steps >= 4, f"--steps must be at least 4 (game window 3), got {args.steps}")
    check(args.repeat >= 1, f"--repeat must be at least 1, got {args.repeat}")
    check(args.copy_mib >= 1, f"--copy-mib must be at least 1, got {args.copy_mib}")
    # the JAX array and NumPy's two (a and the output b)
    check_fits(f"--copy-mib {args.copy_mib}", 3 * 2**20, args.copy_mib, unit="MiB")
    if args.out is not None:
        check_out_dir(args.out)
    for name in ("numpy_max", "python_max", "loop_max"):
        value = getattr(args, name)
        check(
            value is None or (math.isfinite(value) and value >= 0),
            f"--{name.replace('_', '-')} must be a number >= 0 (0: never), got {value}",
        )
    check(
        args.tricks is None or args.kernels == "both",
        f"--tricks {args.tricks} needs --kernels both (got --kernels {args.kernels})",
    )
    tricks = _tricks(args.tricks)
    check(
        not args.carry_draws or args.state in ("lean", "both"),
        f"--carry-draws needs --state lean or both (got --state {args.state})",
    )
    check(args.kernels_n >= 1, f"--kernels-n must be an integer >= 1, got {args.kernels_n}")
    none = args.dense_sizes.strip().lower() == "none"
    dense = None if none else parse_sizes(args.dense_sizes, "--dense-sizes", limit=MAX_AGENTS)
    if dense:
        n = max(dense)
        check_fits(f"--dense-sizes {n}", dense_bytes(n, bench.D, bench.P) // n, n)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if args.dtype == "float64" else jnp.float32
    dev = jax.devices()[0]
    sizes = _sizes(args, dev.platform)
    data = load_dataset("logistic")
    check(args.steps < data.n_rows, f"--steps must be below {data.n_rows}, got {args.steps}")
    x = jnp.asarray(data.x[: args.steps + 1], dtype)
    y = jnp.asarray(data.y[: args.steps + 1], dtype)
    xn, yn = np.asarray(data.x[: args.steps + 1]), np.asarray(data.y[: args.steps + 1])
    loop_max = max(sizes) if args.loop_max is None else args.loop_max
    _check_sizes_fit(sizes, loop_max, args, dtype)
    out = default_out("bench", dev.platform, args.dtype, stamp()) if args.out is None else args.out

    print(
        f"memoa bench: {dev.platform} ({getattr(dev, 'device_kind', '')}), jax {jax.__version__},"
        f" {os.cpu_count()} CPUs, {args.dtype}, N in {sizes}, {args.steps} steps"
    )
    bw = bench.copy_bandwidth(args.copy_mib)
    roofline = bw["bytes_per_s"]
    print(
        f"copy bandwidth (a + 1 on {bw['array_bytes'] / 2**20:.0f} MiB, read + write): "
        f"JAX {bw['jax_bytes_per_s'] / 1e9:.2f} GB/s, NumPy {bw['numpy_bytes_per_s'] / 1e9:.2f}"
        f" GB/s -> roofline {bw['bytes_per_s'] / 1e9:.2f} GB/s"
    )
    rate = None
    if args.state in ("lean", "both"):  # what a loop bound by its draws can reach here
        rate = bench.draw_rate()
        print(f"draw rate (Threefry hash + erf⁻¹, chunks of 2¹⁴ agents): {rate:.3g}/s")
    record: dict[str, Any] = dict(
        command=command_line(args),
        draw_rate_hashes_per_s=rate,
        device=str(dev),
        platform=dev.platform,
        device_kind=getattr(dev, "device_kind", ""),
        cpu_count=os.cpu_count(),
        machine=platform.machine(),
        jax_version=jax.__version__,
        numpy_version=np.__version__,
        dtype=args.dtype,
        carry_draws=args.carry_draws,
        steps=args.steps,
        repeat=args.repeat,
        problem=dict(
            dataset="logistic",
            homogeneity="h2",
            d=bench.D,
            p=bench.P,
            sigma=bench.SIGMA,
            window=bench.WINDOW,
            ridge_window=bench.RIDGE_WINDOW,
            server="ridge",
            **bench.COST,
        ),
        copy=bw,
        points=[],
    )
    from tqdm.auto import tqdm

    make_out_dir(out)
    if dense is not None:
        record["nash"] = bench.time_nash_solves(x, dtype, dense, args.repeat)
        _save(out, record)
    for n in tqdm(sizes, desc="bench", file=sys.stderr, leave=False, disable=args.no_progress):
        point: dict[str, Any] = dict(n_agents=n)
        try:
            point["policy"] = bench.measure_policy(
                n, np.dtype(args.dtype), args.repeat, args.numpy_max, args.python_max, roofline
            )
            if n <= loop_max:
                bench.measure_loops(
                    point,
                    x,
                    y,
                    xn,
                    yn,
                    dtype,
                    args.repeat,
                    kernels="plain" if args.kernels == "plain" else "tuned",
                    states=("stored", "lean") if args.state == "both" else (args.state,),
                    numpy_max=args.numpy_max,
                    bandwidth=roofline,
                    rate=rate,
                    carry_draws=args.carry_draws,
                )
        except Exception as e:  # out of memory at the largest sizes: record it, go on
            if not out_of_memory(e):
                raise
            point["error"] = str(e).splitlines()[0][:200]
        record["points"].append(point)
        _save(out, record)  # after every size: partial results survive
    if args.kernels == "both":  # in each state of --state ("both": stored, then lean)
        n_k = args.kernels_n
        for state in ("stored", "lean") if args.state == "both" else (args.state,):
            with tqdm(total=len(tricks) + 2, desc=f"kernels at N={n_k:.0e}, {state}",
                      file=sys.stderr, leave=False, disable=args.no_progress) as bar:  # fmt: skip
                timed = bench.time_kernels(
                    n_k, x, y, dtype, args.repeat, bar.update, state, tricks, args.carry_draws
                )
            record[KERNELS_KEY[state]] = timed
            _save(out, record)
    if bench.mark_overhead(record["points"]):
        _save(out, record)
    _print_tables(record)
    from .._sweep_plots import plot_bench

    save_figure(out / "bench_throughput.png", plot_bench(record))
    print(f"\nwrote {out / 'bench.json'}, {out / 'summary.csv'} and {out / 'bench_throughput.png'}")
    return 0


def _save(out: Path, record: dict) -> None:
    """bench.json and its tidy summary.csv, each atomically: after every size, so that an
    interrupted bench keeps the sizes it measured, in both."""
    write_json(out / "bench.json", record)
    write_summary_csv(out / "summary.csv", bench_rows(record), BENCH_COLUMNS)


def _g(d, k, fmt="{:.3g}"):
    return fmt.format(d[k]) if k in d else "-"


OVERHEAD_NOTE = (
    "* fixed cost, not throughput: the JAX time barely grows from this N to the next "
    "(a fit t = c + a·N through both puts more than half of it in c: dispatch and per-step "
    "launches); compare at larger N"
)


def _ratio(d, k):
    """`JAX/NumPy` and the like: two significant digits, `*` where a fixed cost dominates."""
    if k not in d:
        return "-"
    v = d[k]
    return (f"{v:.0f}x" if v >= 10 else f"{v:.2g}x") + ("*" if d.get("overhead_dominated") else "")


def _print_tables(record):
    from ..bench import state_label

    pts = record["points"]
    print("\nfull online loop (5 methods), agent-steps/s:")
    rows = [
        [
            f"{p['n_agents']:.0e}",
            state_label(lp),
            _g(lp, "carried_bytes_per_agent", "{:.0f}"),
            _g(lp, "trace_s", "{:.1f}"),
            _g(lp, "compile_s", "{:.1f}"),
            _g(lp, "stablehlo_bytes", "{:.3g}"),
            _g(lp, "run_s"),
            _g(lp, "agent_steps_per_s"),
            _g(lp, "numpy_agent_steps_per_s"),
            _ratio(lp, "speedup_vs_numpy"),
            _g(lp, "roofline_fraction", "{:.1%}"),
            _g(lp, "xla_bytes_accessed_per_agent", "{:.0f}"),
        ]
        for p in pts
        for key in ("loop", "loop_lean")
        if key in p
        for lp in (p[key],)
    ]
    if rows:
        print_table(
            [
                "N",
                "state",
                "carried B/agent",
                "trace s",
                "compile s",
                "StableHLO B",
                "run s",
                "JAX",
                "NumPy",
                "JAX/NumPy",
                "of roofline",
                "XLA bytes/agent",
            ],
            rows,
        )
    lean = [(p["n_agents"], p["loop_lean"]) for p in pts if "loop_lean" in p]
    lean += [(p["n_agents"], p["loop"]) for p in pts if p.get("loop", {}).get("state") == "lean"]
    if any("hashes_per_agent_step" in lp for _, lp in lean):
        print("\nlean loop, per agent-step (one step: draws from its jaxpr, bytes from XLA):")
        print_table(
            ["N", "hashes", "normals", "XLA bytes", "XLA flops", "buffers B/agent",
             "carried B/agent", "of draw rate"],
            [
                [
                    f"{n:.0e}",
                    _g(lp, "hashes_per_agent_step", "{:.1f}"),
                    _g(lp, "normals_per_agent_step", "{:.1f}"),
                    _g(lp, "xla_bytes_accessed_per_agent_step", "{:.0f}"),
                    _g(lp, "xla_flops_per_agent_step", "{:.0f}"),
                    _g(lp, "xla_buffer_bytes_per_agent", "{:.0f}"),
                    _g(lp, "carried_bytes_per_agent", "{:.0f}"),
                    _g(lp, "draw_rate_share", "{:.0%}"),
                ]
                for n, lp in lean
            ],
        )  # fmt: skip
    print("\nbare policy step, agent-steps/s:")
    rows = [
        [
            f"{p['n_agents']:.0e}",
            _g(p["policy"], "run_s", "{:.3g}"),
            _g(p["policy"], "agent_steps_per_s"),
            _g(p["policy"], "numpy_agent_steps_per_s"),
            _g(p["policy"], "python_agent_steps_per_s"),
            _ratio(p["policy"], "speedup_vs_numpy"),
            _ratio(p["policy"], "speedup_vs_python"),
            _g(p["policy"], "roofline_fraction", "{:.1%}"),
        ]
        for p in pts
        if "policy" in p
    ]
    if rows:
        print_table(
            ["N", "run s", "JAX", "NumPy", "Python loop", "JAX/NumPy", "JAX/Python", "of roofline"],
            rows,
        )
    if any(p[k].get("overhead_dominated") for p in pts for k in ("policy", "loop") if k in p):
        print(OVERHEAD_NOTE)
    if "nash" in record:
        nsh = record["nash"]
        print(
            f"\nNash solves (one window, T = {nsh['window']}): mean-field (any N) "
            f"{nsh['mean_field_s'] * 1e3:.3g} ms, exact reduced at N = 1e9 "
            f"{nsh['reduced_1e9_s'] * 1e3:.3g} ms, dense centralized:"
        )
        print_table(
            ["N", "dense s", "dense / MF"],
            [
                [
                    str(r["n_agents"]),
                    f"{r['run_s']:.3g}",
                    f"{r['run_s'] / nsh['mean_field_s']:.3g}x",
                ]
                for r in nsh["dense"]
            ],
        )
    for kr in (record[k] for k in KERNELS_KEY.values() if k in record):
        print(
            f"\nkernels (full loop, N = {kr['n_agents']:.0e}, {state_label(kr)} "
            "state; a trick's gain: the loop's time without it over the tuned one's, same run):"
        )
        print_table(
            ["variant", "compile s", "run s", "agent-steps/s", "vs tuned"],
            [
                [
                    r["variant"],
                    f"{r['compile_s']:.1f}",
                    f"{r['run_s']:.3g}",
                    f"{r['agent_steps_per_s']:.3g}",
                    f"{r['vs_tuned']:+.1%}",
                ]
                for r in kr["variants"]
            ],
        )
    for p in pts:
        if "error" in p:
            print(f"N={p['n_agents']:.0e}: {p['error']}")
    if not pts:
        raise UsageError("no sizes to run")
