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
import time
from pathlib import Path
from typing import Any

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
from ._resources import check_fits, dense_bytes

DEFAULT_SIZES = "geom:2:1e6:25"
MAX_GEOM_COUNT = 10_000  # sizes of one geom: sweep (the reduced solver runs them vmapped)
DEFAULT_MC_SIZES = "1e2,1e3,1e4,1e5,1e6"
# Student t 97.5 % quantiles, 1..30 degrees of freedom (normal beyond)
_T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]
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
    """The window `(M, S, y)`, the cost, and (rfn) the encoder that generates the features."""
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

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
        M = np.array([[0.8, -0.3], [0.5, 0.4], [1.0, 0.2]])[:, None, :]
        cov = np.array(
            [
                [[0.10, 0.02], [0.02, 0.20]],
                [[0.05, 0.0], [0.0, 0.30]],
                [[0.20, -0.05], [-0.05, 0.10]],
            ]
        )
        S = np.einsum("sak,sbl->sakbl", M, M) + cov.reshape(3, 1, 2, 1, 2)
        y = np.array([0.0, 1.0, 0.5, -0.2])[:, None]
        return dict(
            M=jnp.asarray(M),
            S=jnp.asarray(S),
            y=jnp.asarray(y),
            cost=cost,
            encoder=None,
            params=None,
            x=None,
            weights=weights,
        )
    check_finite(args, "sigma")
    for name in ("window", "d", "p", "d_x"):
        check(
            getattr(args, name) >= 1,
            f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}",
        )
    check(args.sigma > 0, f"--sigma must be positive, got {args.sigma}")
    T, d = args.window, args.d
    k_enc, k_x, k_y = jr.split(jr.key(args.seed), 3)
    enc = mj.RFNEncoder(d=d, d_x=args.d_x, p=args.p, sigma=args.sigma)
    params = enc.init(k_enc, jnp.float64)
    x = jr.normal(k_x, (T, args.d_x), jnp.float64)
    y = jnp.cumsum(0.5 * jr.normal(k_y, (T + 1, d), jnp.float64), axis=0)
    M, S = nash.window_moments(enc, params, x)
    return dict(M=M, S=S, y=y, cost=cost, encoder=enc, params=params, x=x, weights=weights)


def mc_bytes_per_agent(T: int, d: int, p: int, d_x: int) -> int:
    """Bytes per agent of one Monte Carlo replication, a lower bound: the window's features
    (T d p), both policies' predictions and costs over the window (4 (T + 1) d) and the
    encoder parameters (d d_x + d p), float64."""
    return 8 * (T * d * p + 4 * (T + 1) * d + d * d_x + d * p)


def _best(fn, budget=0.3, max_repeat=5):
    """Minimum wall time of calls of `fn` (blocking), repeated until `budget` seconds."""
    times, total = [], 0.0
    while len(times) < max_repeat and (not times or total < budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        total += times[-1]
    return min(times)


def fit_slope(n, v, lo, hi, floor=0.0) -> dict | None:
    """Least-squares slope of log10 v against log10 N over `lo <= N <= hi`, `v > floor`,
    with its standard error; None with fewer than three points."""
    import numpy as np

    n, v = np.asarray(n, float), np.asarray(v, float)
    keep = (n >= lo) & (n <= hi) & (v > floor) & np.isfinite(v)
    if keep.sum() < 3:
        return None
    x, y = np.log10(n[keep]), np.log10(v[keep])
    X = np.stack([x, np.ones_like(x)], 1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    dof = len(x) - 2
    sxx = np.sum((x - x.mean()) ** 2)
    se = float(np.sqrt(np.sum(resid**2) / dof / sxx)) if dof > 0 else float("nan")
    return dict(
        slope=float(coef[0]),
        se=se,
        intercept=float(coef[1]),
        n_points=int(keep.sum()),
        n_min=float(n[keep].min()),
        n_max=float(n[keep].max()),
    )


def _cost_gap_tail(n, gap, J):
    """The float64 resolution floor of `J(MF) − J(FNE)` (a difference of two costs of size
    |J|: 10³ ulps) and `|gap|` on its power-law tail: the points after its last sign change
    (where it crosses zero it is no power of N), the first of them dropped; 0 elsewhere."""
    import numpy as np

    floor = 1e3 * float(np.finfo(np.float64).eps) * float(np.max(np.abs(J)))
    above = np.abs(gap) > floor
    tail = np.zeros_like(gap)
    if not above.any():
        return floor, tail
    idx = np.flatnonzero(above)
    sign = np.sign(gap[idx])
    change = np.flatnonzero(sign[1:] != sign[:-1])
    start = idx[change[-1] + 2] if change.size and change[-1] + 2 < idx.size else idx[0]
    keep = (np.arange(gap.size) >= start) & above & (np.sign(gap) == sign[-1])
    tail[keep] = np.abs(gap[keep])
    del n
    return floor, tail


def _t975(dof: int) -> float:
    return _T975[dof - 1] if 1 <= dof <= len(_T975) else 1.96


def _mean_ci(samples):
    import numpy as np

    s = np.asarray(samples, float)
    se = float(s.std(ddof=1) / math.sqrt(len(s)))
    return float(s.mean()), se, _t975(len(s) - 1) * se


def main(args) -> int:
    import equinox as eqx
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from tqdm.auto import tqdm

    import memoa_jax as mj
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
        check_fits(f"--dense-max {args.dense_max:g}: N = {n}", dense_bytes(n, d, p) // n, n)
    if mc_sizes and args.instance == "rfn" and min(T, d, p, args.d_x) >= 1:
        n = max(mc_sizes)
        check_fits(f"--mc-sizes {n}", mc_bytes_per_agent(T, d, p, args.d_x), n)
    inst = build_instance(args)
    if inst["encoder"] is None and mc_sizes:
        print("memoa verify: the fixture has no feature generator: Monte Carlo check skipped")
        mc_sizes = []
    M, S, y, cost = inst["M"], inst["S"], inst["y"], inst["cost"]
    encoder = inst["encoder"]
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
    try:
        # MEAN FIELD (N-independent)
        bar.set_description("mean-field solve")
        # (eqx.filter_jit: a failed check is raised as equinox's EquinoxRuntimeError type)
        mf_fn = eqx.filter_jit(mj.solve_mean_field)
        mf = jax.block_until_ready(mf_fn(M, S, y, cost))
        t_mf = _best(lambda: jax.block_until_ready(mf_fn(M, S, y, cost)))
        bar.update()
        # REDUCED: the whole sweep in one vmapped call
        bar.set_description("reduced sweep (one vmapped call)")
        gap_one = lambda n: nash.nash_gap(M, S, y, cost, n, mean_field=args.mean_field)
        sweep_fn = eqx.filter_jit(jax.vmap(gap_one))
        n_arr = jnp.asarray(sizes, jnp.float64)
        t0 = time.perf_counter()
        gaps = jax.block_until_ready(sweep_fn(n_arr))
        t_sweep_compile = time.perf_counter() - t0
        t_sweep = _best(lambda: jax.block_until_ready(sweep_fn(n_arr)))
        red_fn = eqx.filter_jit(nash.solve_fne_reduced)
        red = lambda n: jax.block_until_ready(red_fn(M, S, y, cost, jnp.float64(n)))
        red(2)
        t_red = {n: _best(lambda n=n: red(n), budget=0.05) for n in sizes}
        t_red_1e9 = _best(lambda: red(1e9))
        fne_1e9 = red(1e9)
        bar.update()
        # DENSE: the O(N⁴) oracle, checked against the reduced solver
        dense = {}
        dense_fn = jax.jit(nash.solve_fne_dense, static_argnums=4)
        for n in dense_sizes:
            bar.set_description(f"dense FNE N={n}")
            t0 = time.perf_counter()
            exe = dense_fn.lower(M, S, y, cost, n).compile()
            compile_s = time.perf_counter() - t0
            sol = jax.block_until_ready(exe(M, S, y, cost))
            run_s = _best(
                lambda: jax.block_until_ready(exe(M, S, y, cost)), budget=2.0, max_repeat=10
            )
            r = red(n)
            diff = max(
                float(jnp.max(jnp.abs(a - b)))
                for a, b in [(sol.K, r.K), (sol.L, r.L), (sol.h, r.h)]
            )
            dense[n] = dict(
                compile_s=compile_s,
                run_s=run_s,
                max_diff_vs_reduced=diff,
                J_diff_vs_reduced=float(jnp.max(jnp.abs(sol.J - r.J))),
            )
            bar.update()
        # MONTE CARLO: both policies on the same draws, R replications per N
        mc = []
        mc_fn = eqx.filter_jit(nash.monte_carlo)
        for n in mc_sizes:
            assert encoder is not None  # (the fixture has none, and no Monte Carlo sizes)
            bar.set_description(f"Monte Carlo N={n:,}")
            t0 = time.perf_counter()
            res = jax.block_until_ready(
                mc_fn(
                    encoder,
                    inst["params"],
                    inst["x"],
                    y,
                    cost,
                    n,
                    key=jax.random.key(args.seed + 1),
                    n_reps=args.mc_reps,
                )
            )
            mc_s = time.perf_counter() - t0
            fne_n = red(n)
            K, L, h = nash.mean_field_profile(mf, "realized")
            J_mf = float(nash.evaluate_policy(M, S, y, cost, n, K, L, h))
            J_fne = float(fne_n.J)
            gap_mf = np.max(np.abs(np.asarray(res.ybar_mf - res.flow)), axis=(1, 2))
            gap_fne = np.max(np.abs(np.asarray(res.ybar_fne - res.flow)), axis=(1, 2))
            row: dict[str, Any] = dict(
                n_agents=n, reps=args.mc_reps, seconds=mc_s, J_mf=J_mf, J_fne=J_fne
            )
            for name, samples in [
                ("ybar_gap_mf", gap_mf),
                ("ybar_gap_fne", gap_fne),
                ("cost_mf", res.cost_mf),
                ("cost_fne", res.cost_fne),
                ("cost_diff", res.cost_diff),
            ]:
                mean, se, half = _mean_ci(samples)
                row[name] = dict(mean=mean, se=se, ci95=[mean - half, mean + half])
            mc.append(row)
            bar.update()
        bar.update()
    except UsageError:
        raise
    except Exception as e:  # runtime checks inside the compiled solvers (singular systems)
        bar.close()
        if is_runtime_failure(e):  # exit 1, as in every command
            raise runtime_failure(e, f"{args.instance} instance") from None
        if isinstance(e, ValueError):  # a value the solvers refuse before they run
            raise UsageError(runtime_message(e)) from None
        raise
    bar.close()

    # TABLE, SLOPES
    g = {
        k: np.asarray(getattr(gaps, k))
        for k in ("gain_gap", "eps", "cost_gap", "J_mf", "J_fne", "J_br")
    }
    rows = []
    for i, n in enumerate(sizes):
        rows.append(
            dict(
                n_agents=n,
                gain_gap=float(g["gain_gap"][i]),
                eps=float(g["eps"][i]),
                cost_gap=float(g["cost_gap"][i]),
                J_mf=float(g["J_mf"][i]),
                J_fne=float(g["J_fne"][i]),
                J_br=float(g["J_br"][i]),
                dense_s=dense[n]["run_s"] if n in dense else None,
                reduced_s=t_red[n],
                mf_s=t_mf,
            )
        )
    n_np = np.asarray(sizes, float)
    floor, cost_tail = _cost_gap_tail(n_np, g["cost_gap"], g["J_mf"])
    slopes = {
        "gain_gap": fit_slope(n_np, g["gain_gap"], fit_lo, fit_hi),
        "eps": fit_slope(n_np, g["eps"], fit_lo, fit_hi),
        "cost_gap": fit_slope(n_np, cost_tail, fit_lo, fit_hi, floor),
    }
    if len(mc) >= 3:
        mc_n = [r["n_agents"] for r in mc]
        slopes["mc_ybar_gap_mf"] = fit_slope(
            mc_n, [r["ybar_gap_mf"]["mean"] for r in mc], 1, math.inf
        )
    largest = max(dense) if dense else None
    timing = dict(
        mf_solve_s=t_mf,
        reduced_solve_1e9_s=t_red_1e9,
        reduced_sweep_s=t_sweep,
        reduced_sweep_compile_s=t_sweep_compile,
        dense_largest_n=largest,
        dense_largest_s=dense[largest]["run_s"] if largest else None,
        gain_gap_1e9=float(
            max(
                jnp.max(jnp.abs(fne_1e9.K - mf.K)),
                jnp.max(jnp.abs(fne_1e9.L - mf.L)),
                jnp.max(jnp.abs(fne_1e9.h - mf.g)),
            )
        ),
    )
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
            f"{t_mf * 1e3:.3g} ms;  reduced FNE at N=1e9: {t_red_1e9 * 1e3:.3g} ms "
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
        cost_gap_floor=floor,
        rows=rows,
        slopes=slopes,
        dense=[dict(n_agents=n, **v) for n, v in sorted(dense.items())],
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
    print(f"wrote {out / 'nash_verify.json'}")
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
