"""`memoa verify`: the decentralized mean-field policy against the exact N-player Nash
equilibrium, as the population grows (spec §5).

For one window instance (default: H1 random-feature agents, exact moments) and every N of
the sweep: the gap between the N-player feedback Nash gains `(K^N, L^N, h^N)` and the
mean-field gains `(K, L, g)`, the ε-Nash gap of the mean-field policy (what one agent gains
by its best deviation), and the cost gap `J¹(MF) − J¹(FNE)`, all exact (no sampling) from
the O(1)-in-N reduced solver, one vmapped call for the whole sweep. The dense stacked solver
(O(N⁴)) checks it at the sweep's sizes up to `--dense-max` and is timed against the
mean-field solve. A Monte Carlo simulation of the
window with up to 10⁶ agents, both policies on the same draws, checks the exact numbers
(`ȳ` against the flow `m`, realized against exact costs) with confidence intervals from
independent replications. Log-log slopes are least-squares fits with standard errors.
"""

import math
import os
import platform
import sys
from pathlib import Path

from ._errors import UsageError, check, is_runtime_failure, runtime_failure, runtime_message
from ._options import MAX_AGENTS, MAX_SIZE, check_finite, count_type, parse_sizes
from ._outputs import (
    check_out_dir,
    default_out,
    make_out_dir,
    print_table,
    save_figure,
    stamp,
    write_json,
)
from ._resources import check_fits
from ._tidy import VERIFY_COLUMNS, verify_rows, write_summary_csv

DEFAULT_SIZES = "geom:2:1e6:25"
MAX_GEOM_COUNT = 10_000  # sizes of one geom: sweep (the reduced solver runs them vmapped)
DEFAULT_MC_SIZES = "1e2,1e3,1e4,1e5,1e6"
INSTANCE_COST = {
    "rfn": dict(q=1.0, lam=0.5, gamma=1.0, alpha=0.1),
    "fixture": dict(q=1.0, lam=0.5, gamma=0.3, alpha=0.1),  # spec §6.11
}


SUMMARY = (
    "Check the theory: the exact N-player Nash equilibrium against the\n"
    "mean-field policy as N grows (gaps, ε-Nash, slopes), in runs/verify-*."
)


def add_parser(sub, formatter):
    v = sub.add_parser(
        "verify",
        help=SUMMARY,
        formatter_class=formatter,
        description=(__doc__ or "").split("\n\n")[0],
    )
    v.add_argument(
        "--sizes",
        default=DEFAULT_SIZES,
        help="population sizes: comma-separated (1e6 notation allowed) or geom:LO:HI:COUNT "
        "(log-spaced integers)",
    )
    v.add_argument(
        "--dense-max",
        type=float,
        default=256,
        help="the dense solver (O(N⁴) time, O(N³) memory) checks the sizes of --sizes up to "
        "this N; larger ones are skipped, and the run says which",
    )
    v.add_argument(
        "--mc-sizes",
        default=DEFAULT_MC_SIZES,
        help="sizes of the Monte Carlo check ('none' to skip)",
    )
    v.add_argument(
        "--mc-reps", type=count_type("--mc-reps"), default=10, help="Monte Carlo replications per N"
    )
    v.add_argument("--fit", default="10,1e6", help="N range LO,HI of the slope fits")
    g = v.add_argument_group("instance")
    g.add_argument(
        "--instance",
        choices=("rfn", "fixture"),
        default="rfn",
        help="rfn: shared random-feature encoder with exact moments; "
        "fixture: the deterministic moments of spec §6.11 (no Monte Carlo)",
    )
    g.add_argument("--window", type=count_type("--window"), default=5, help="window length T (rfn)")
    g.add_argument("--d", type=count_type("--d"), default=1, help="target dimension d (rfn)")
    g.add_argument("--p", type=count_type("--p"), default=3, help="features p (rfn)")
    g.add_argument("--d-x", type=count_type("--d-x"), default=2, help="input dimension (rfn)")
    g.add_argument("--sigma", type=float, default=1.0, help="RFN noise scale σ > 0 (rfn)")
    g.add_argument("--seed", type=int, default=0, help="seed of the encoder, inputs, targets")
    for name, help_ in [
        ("q", "own-error weight"),
        ("lam", "mean-field coupling λ"),
        ("gamma", "ridge weight γ > 0"),
        ("alpha", "recency discount α ≥ 0"),
    ]:
        g.add_argument(f"--{name}", type=float, help=f"{help_} (default per instance)")
    g.add_argument("--q-T", type=float, default=0.0, help="terminal own-error weight")
    g.add_argument("--lam-T", type=float, default=0.0, help="terminal mean-field weight")
    g.add_argument(
        "--mean-field",
        choices=("realized", "flow"),
        default="realized",
        help="the MF policy uses the realized mean ȳ or the flow m",
    )
    v.add_argument("--out", type=Path, help="output folder (default runs/verify-<instance>-<time>)")
    v.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    v.set_defaults(func=main)


def sizes_from(text: str) -> list[int]:
    """`geom:LO:HI:COUNT` or a comma-separated list (see `parse_sizes`)."""
    import numpy as np

    if not text.startswith("geom:"):
        return parse_sizes(text)
    parts = text.split(":")[1:]
    try:
        lo, hi, count = float(parts[0]), float(parts[1]), int(parts[2])
    except (ValueError, IndexError):
        raise UsageError(f"--sizes: expected geom:LO:HI:COUNT, got {text!r}") from None
    check(
        1 <= lo <= hi <= MAX_SIZE and 1 <= count <= MAX_GEOM_COUNT,
        f"--sizes: need 1 <= LO <= HI <= {MAX_SIZE:.0e} (finite) and 1 <= COUNT <= "
        f"{MAX_GEOM_COUNT}, got {text!r}",
    )
    return sorted({int(round(v)) for v in np.geomspace(lo, hi, count)})


def build_instance(args) -> dict:
    """The window (`memoa_jax.nash.Window`'s fields `M`, `S`, `y`, and for rfn the encoder,
    its `params` and `x` that generate the features), the cost and its weights."""
    import memoa_jax as mj
    from memoa_jax import nash

    check_finite(args, "q", "lam", "gamma", "alpha", "q_T", "lam_T")
    weights = dict(INSTANCE_COST[args.instance])
    for k in weights:
        if getattr(args, k) is not None:
            weights[k] = getattr(args, k)
    try:
        cost = mj.CostParams(**weights, q_T=args.q_T, lam_T=args.lam_T)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.instance == "fixture":
        return dict(nash.fixture_window()._asdict(), cost=cost, weights=weights)
    check_finite(args, "sigma")
    for name in ("window", "d", "p", "d_x"):
        check(
            getattr(args, name) >= 1,
            f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}",
        )
    check(args.sigma > 0, f"--sigma must be positive, got {args.sigma}")
    shape = dict(window=args.window, d=args.d, p=args.p, d_x=args.d_x, sigma=args.sigma)
    window = nash.rfn_window(args.seed, **shape)
    return dict(window._asdict(), cost=cost, weights=weights)


def main(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from tqdm.auto import tqdm

    from memoa_jax import nash

    sizes = sizes_from(args.sizes)
    none = args.mc_sizes.strip().lower() == "none"
    mc_sizes = [] if none else parse_sizes(args.mc_sizes, "--mc-sizes", limit=MAX_AGENTS)
    if args.out is not None:
        check_out_dir(args.out)
    check(
        math.isfinite(args.dense_max) and args.dense_max >= 0,
        f"--dense-max must be a finite number >= 0, got {args.dense_max}",
    )
    check(
        args.dense_max <= MAX_AGENTS,
        f"--dense-max {args.dense_max:g}: above the largest size accepted, {MAX_AGENTS:.3g}",
    )
    check(args.mc_reps >= 2, f"--mc-reps must be >= 2, got {args.mc_reps}")
    try:
        fit_lo, fit_hi = (float(v) for v in args.fit.split(","))
    except ValueError:
        raise UsageError(f"--fit: expected LO,HI, got {args.fit!r}") from None
    check(1 <= fit_lo < fit_hi, f"--fit: need 1 <= LO < HI, got {args.fit!r}")
    # the sizes that cannot fit, before the instance is built (its shapes: rfn's options, or
    # the fixture's T = 3, d = 1, p = 2)
    T, d, p = (args.window, args.d, args.p) if args.instance == "rfn" else (3, 1, 2)
    dense_sizes, dense_skipped = dense_plan(sizes, args.dense_max)
    if dense_sizes and min(T, d, p) >= 1:  # the largest size the dense solver runs
        n = dense_sizes[-1]
        check_fits(f"--dense-max {args.dense_max:g}: N = {n}", nash.dense_bytes(n, d, p) // n, n)
    if mc_sizes and args.instance == "rfn" and min(T, d, p, args.d_x) >= 1:
        n = max(mc_sizes)
        check_fits(f"--mc-sizes {n}", nash.mc_bytes_per_agent(T, d, p, args.d_x), n)
    inst = build_instance(args)
    if inst["encoder"] is None and mc_sizes:
        print("memoa verify: the fixture has no feature generator: Monte Carlo check skipped")
        mc_sizes = []
    M, cost = inst["M"], inst["cost"]
    T, d, p = M.shape
    print(
        f"memoa verify: {args.instance} instance T={T}, d={d}, p={p}, cost {inst['weights']}, "
        f"q_T={args.q_T}, lam_T={args.lam_T}, MF uses {args.mean_field} mean; "
        f"{len(sizes)} sizes {sizes[0]}..{sizes[-1]:,}, Monte Carlo N in {mc_sizes}; "
        f"{jax.devices()[0].platform}"
    )
    print(f"  {dense_note(dense_sizes, dense_skipped, args.dense_max)}")
    bar = tqdm(
        total=3 + len(dense_sizes) + len(mc_sizes),
        disable=args.no_progress,
        file=sys.stderr,
        unit="task",
    )
    window = nash.Window(*(inst[k] for k in nash.Window._fields))
    try:
        result = nash.verify_convergence(
            window,
            cost,
            sizes,
            mean_field=args.mean_field,
            dense_sizes=dense_sizes,
            mc_sizes=mc_sizes,
            mc_reps=args.mc_reps,
            mc_seed=args.seed + 1,
            fit=(fit_lo, fit_hi),
            progress=lambda task: bar.update() if task is None else bar.set_description(task),
        )
    except Exception as e:  # runtime checks inside the compiled solvers (singular systems)
        bar.close()
        if is_runtime_failure(e):  # exit 1, as in every command
            raise runtime_failure(e, f"{args.instance} instance") from None
        if isinstance(e, ValueError):  # a value the solvers refuse before they run
            raise UsageError(runtime_message(e)) from None
        raise
    bar.close()
    rows, slopes, mc, timing = (result[k] for k in ("rows", "slopes", "monte_carlo", "timing"))
    dense = {r["n_agents"]: r for r in result["dense"]}
    largest = timing["dense_largest_n"]
    _print_table(rows, dense)
    print()
    for name, s in slopes.items():
        if s is None:
            print(f"slope {name}: fewer than three points to fit")
        else:
            print(
                f"slope {name:15s} {s['slope']:+.4f} ± {s['se']:.4f}  "
                f"(N = {s['n_min']:.0f}..{s['n_max']:.0f}, {s['n_points']} points)"
            )
    if dense:
        worst = max(v["max_diff_vs_reduced"] for v in dense.values())
        print(f"dense vs reduced gains: max |diff| {worst:.2e} over N in {sorted(dense)}")
    if largest:
        print(
            f"dense FNE at N={largest}: {dense[largest]['run_s']:.3g} s;  MF solve (any N): "
            f"{timing['mf_solve_s'] * 1e3:.3g} ms;  reduced FNE at N=1e9: "
            f"{timing['reduced_solve_1e9_s'] * 1e3:.3g} ms "
            f"(gain gap there {timing['gain_gap_1e9']:.2e})"
        )
    for r in mc:
        print(_mc_line(r))

    record = dict(
        command="memoa verify",
        instance=args.instance,
        window=T,
        d=d,
        p=p,
        cost=inst["weights"],
        q_T=args.q_T,
        lam_T=args.lam_T,
        mean_field=args.mean_field,
        seed=args.seed,
        sigma=args.sigma if args.instance == "rfn" else None,
        fit_range=[fit_lo, fit_hi],
        cost_gap_floor=result["cost_gap_floor"],
        rows=rows,
        slopes=slopes,
        dense=result["dense"],
        dense_skipped=dense_skipped,
        monte_carlo=mc,
        timing=timing,
        device=str(jax.devices()[0]),
        load_average=os.getloadavg(),  # timings on a shared machine: how shared it was
        jax_version=jax.__version__,
        python=platform.python_version(),
    )
    out = default_out("verify", args.instance, stamp()) if args.out is None else args.out
    make_out_dir(out)
    from .._nash_plots import plot_convergence, plot_cost

    figs = {"nash_convergence.png": plot_convergence(record), "nash_cost.png": plot_cost(record)}
    for name, fig in figs.items():
        save_figure(out / name, fig)
        print(f"wrote {out / name}")
    write_json(out / "nash_verify.json", record)
    write_summary_csv(out / "summary.csv", verify_rows(record), VERIFY_COLUMNS)
    print(f"wrote {out / 'nash_verify.json'} and {out / 'summary.csv'}")
    return 0


def _mc_line(r) -> str:
    c, f, dd = r["cost_mf"], r["cost_fne"], r["cost_diff"]
    return (
        f"MC N={r['n_agents']:>9,} ({r['reps']} reps, {r['seconds']:.1f} s): "
        f"max|ȳ−m| MF {r['ybar_gap_mf']['mean']:.2e} ± {r['ybar_gap_mf']['se']:.1e}; "
        f"cost MF {c['mean']:.6f} [{c['ci95'][0]:.6f}, {c['ci95'][1]:.6f}] exact {r['J_mf']:.6f}; "
        f"FNE {f['mean']:.6f} exact {r['J_fne']:.6f}; "
        f"MF−FNE {dd['mean']:+.1e} [{dd['ci95'][0]:+.1e}, {dd['ci95'][1]:+.1e}] "
        f"exact {r['J_mf'] - r['J_fne']:+.1e}"
    )


def dense_plan(sizes: list[int], dense_max: float | int) -> tuple[list[int], list[int]]:
    """The sizes of the sweep the dense solver runs (those <= `dense_max`), and those it
    skips."""
    return [n for n in sizes if n <= dense_max], [n for n in sizes if n > dense_max]


def dense_note(run: list[int], skipped: list[int], dense_max: float | int) -> str:
    """One line saying where the dense solver runs and what it skips."""

    def listed(ns):
        return ", ".join(f"{n:,}" for n in ns[:6]) + (f", ... ({len(ns)} sizes)" if ns[6:] else "")

    where = f"dense solver at N = {listed(run)}" if run else "dense solver: not run"
    if not skipped:
        return f"{where} (every size <= --dense-max {dense_max:g})"
    return (
        f"{where}; skipped N = {listed(skipped)} (above --dense-max {dense_max:g}: its time "
        "grows as N⁴, its memory as N³)"
    )


def _print_table(rows, dense):
    cols = ["N", "max gain gap", "eps_N", "cost gap", "dense s", "reduced s", "MF s"]
    fmt = lambda v: "-" if v is None else f"{v:.3g}"
    table = [
        [
            f"{r['n_agents']:,}",
            f"{r['gain_gap']:.3e}",
            f"{r['eps']:.3e}",
            f"{r['cost_gap']:+.3e}",
            fmt(r["dense_s"]),
            fmt(r["reduced_s"]),
            fmt(r["mf_s"]),
        ]
        for r in rows
    ]
    print()
    print_table(cols, table)
