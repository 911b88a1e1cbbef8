"""The numbers of `memoa verify`: the mean-field policy against the exact N-player Nash
equilibrium over a sweep of population sizes, on one window instance (spec §5).

`verify_convergence` runs the whole check and returns what `memoa verify` prints and writes
(its `nash_verify.json` less the settings): per N the gain gap, ε_N and the cost gap from the
reduced solver (one vmapped call for the sweep), the dense solver's agreement with it at the
small sizes, the Monte Carlo window simulation against the exact expectations, log-log slopes
with standard errors, and the solvers' timings. `fixture_window` and `rfn_window` build the
two instances; `fit_slope`, `cost_gap_tail` and `mean_ci` are its statistics.
"""

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .._custom_types import Array
from .._encoders import RFNEncoder, RFNParams
from .._mean_field import CostParams

# Student t 97.5 % quantiles, 1..30 degrees of freedom (normal beyond)
_T975 = (
    (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
    + (2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086)
    + (2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
)


class Window(NamedTuple):
    """One window instance: moments `M (T, d, p)`, `S (T, d, p, d, p)`, targets `y (T+1, d)`,
    and, for an instance with a feature generator (rfn), the shared encoder, its parameters
    and the inputs `x (T, d_x)` that the Monte Carlo check draws features from (else None)."""

    M: Array
    S: Array
    y: Array
    encoder: RFNEncoder | None = None
    params: RFNParams | None = None
    x: Array | None = None


def fixture_window() -> Window:
    """The deterministic moments of spec §6.11 (T = 3, d = 1, p = 2), no feature generator."""
    import jax.numpy as jnp

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
    return Window(jnp.asarray(M), jnp.asarray(S), jnp.asarray(y))


def rfn_window(seed: int, *, window: int, d: int, p: int, d_x: int, sigma: float) -> Window:
    """A shared random-feature encoder with exact moments on Gaussian inputs and a random
    walk target (float64), all drawn from `seed`."""
    import jax.numpy as jnp
    import jax.random as jr

    from ._montecarlo import window_moments

    k_enc, k_x, k_y = jr.split(jr.key(seed), 3)
    enc = RFNEncoder(d=d, d_x=d_x, p=p, sigma=sigma)
    params = enc.init(k_enc, jnp.float64)
    x = jr.normal(k_x, (window, d_x), jnp.float64)
    y = jnp.cumsum(0.5 * jr.normal(k_y, (window + 1, d), jnp.float64), axis=0)
    M, S = window_moments(enc, params, x)
    return Window(M, S, y, enc, params, x)


def best_time(fn, budget: float = 0.3, max_repeat: int = 5) -> float:
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


def cost_gap_tail(gap, J) -> tuple[float, np.ndarray]:
    """The float64 resolution floor of `J(MF) − J(FNE)` (a difference of two costs of size
    |J|: 10³ ulps) and `|gap|` on its power-law tail: the points after its last sign change
    (where it crosses zero it is no power of N), the first of them dropped; 0 elsewhere."""
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
    return floor, tail


def mean_ci(samples) -> tuple[float, float, float]:
    """Mean, standard error and the half width of the 95 % Student t interval."""
    s = np.asarray(samples, float)
    se = float(s.std(ddof=1) / math.sqrt(len(s)))
    dof = len(s) - 1
    return float(s.mean()), se, (_T975[dof - 1] if 1 <= dof <= len(_T975) else 1.96) * se


def verify_convergence(
    window: Window,
    cost: CostParams,
    sizes: Sequence[int],
    *,
    mean_field: str = "realized",
    dense_sizes: Sequence[int] = (),
    mc_sizes: Sequence[int] = (),
    mc_reps: int = 10,
    mc_seed: int = 1,
    fit: tuple[float, float] = (10, 1e6),
    progress: Callable[[str | None], object] | None = None,
) -> dict[str, Any]:
    """The mean-field policy against the exact N-player Nash equilibrium at every N of
    `sizes` (see the module's docstring), float64 (`jax_enable_x64` must be on).

    **Arguments:**

    - `window`: the instance (`fixture_window`, `rfn_window`); Monte Carlo needs its encoder.
    - `cost`: the cost weights.
    - `sizes`: the sweep's N, sorted; `dense_sizes`: those the dense O(N⁴) solver checks.
    - `mean_field`: the mean-field policy uses the realized mean ȳ or the flow m.
    - `mc_sizes`, `mc_reps`, `mc_seed`: the Monte Carlo check's N, its replications per N
      and the seed of its draws.
    - `fit`: the N range `(lo, hi)` of the slope fits.
    - `progress`: called with a task's description before it runs, with None after it.

    **Returns:** a dict of `rows` (one per N), `slopes`, `cost_gap_floor`, `dense` (one
    per dense N), `monte_carlo` (one per Monte Carlo N) and `timing`.

    **Raises:** equinox's `EquinoxRuntimeError` on a failed runtime check of a solver (a
    singular system), `ValueError` on a value the solvers refuse before they run.
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from .._mean_field import solve_mean_field
    from ._dense import solve_fne_dense
    from ._evaluate import evaluate_policy, mean_field_profile, nash_gap
    from ._montecarlo import monte_carlo
    from ._reduced import solve_fne_reduced

    tell = progress or (lambda description: None)
    M, S, y = window.M, window.S, window.y
    # MEAN FIELD (N-independent)
    tell("mean-field solve")
    # (eqx.filter_jit: a failed check is raised as equinox's EquinoxRuntimeError type)
    mf_fn = eqx.filter_jit(solve_mean_field)
    mf = jax.block_until_ready(mf_fn(M, S, y, cost))
    t_mf = best_time(lambda: jax.block_until_ready(mf_fn(M, S, y, cost)))
    tell(None)
    # REDUCED: the whole sweep in one vmapped call
    tell("reduced sweep (one vmapped call)")
    sweep_fn = eqx.filter_jit(jax.vmap(lambda n: nash_gap(M, S, y, cost, n, mean_field=mean_field)))
    n_arr = jnp.asarray(sizes, jnp.float64)
    t0 = time.perf_counter()
    gaps = jax.block_until_ready(sweep_fn(n_arr))
    t_sweep_compile = time.perf_counter() - t0
    t_sweep = best_time(lambda: jax.block_until_ready(sweep_fn(n_arr)))
    red_fn = eqx.filter_jit(solve_fne_reduced)
    red = lambda n: jax.block_until_ready(red_fn(M, S, y, cost, jnp.float64(n)))
    red(2)
    t_red = {n: best_time(lambda n=n: red(n), budget=0.05) for n in sizes}
    t_red_1e9 = best_time(lambda: red(1e9))
    fne_1e9 = red(1e9)
    tell(None)
    # DENSE: the O(N⁴) oracle, checked against the reduced solver
    dense = {}
    dense_fn = jax.jit(solve_fne_dense, static_argnums=4)
    for n in dense_sizes:
        tell(f"dense FNE N={n}")
        t0 = time.perf_counter()
        exe = dense_fn.lower(M, S, y, cost, n).compile()
        compile_s = time.perf_counter() - t0
        sol = jax.block_until_ready(exe(M, S, y, cost))
        run_s = best_time(
            lambda: jax.block_until_ready(exe(M, S, y, cost)), budget=2.0, max_repeat=10
        )
        r = red(n)
        diff = max(
            float(jnp.max(jnp.abs(a - b))) for a, b in [(sol.K, r.K), (sol.L, r.L), (sol.h, r.h)]
        )
        dense[n] = dict(
            compile_s=compile_s,
            run_s=run_s,
            max_diff_vs_reduced=diff,
            J_diff_vs_reduced=float(jnp.max(jnp.abs(sol.J - r.J))),
        )
        tell(None)
    # MONTE CARLO: both policies on the same draws, R replications per N
    mc = []
    mc_fn = eqx.filter_jit(monte_carlo)
    enc, params, x = window.encoder, window.params, window.x
    if mc_sizes and (enc is None or params is None or x is None):
        raise ValueError("the Monte Carlo check needs a window with a feature generator")
    for n in mc_sizes:
        assert enc is not None and params is not None and x is not None  # (checked above)
        tell(f"Monte Carlo N={n:,}")
        t0 = time.perf_counter()
        res = jax.block_until_ready(
            mc_fn(
                enc,
                params,
                x,
                y,
                cost,
                n,
                key=jax.random.key(mc_seed),
                n_reps=mc_reps,
            )
        )
        mc_s = time.perf_counter() - t0
        K, L, h = mean_field_profile(mf, "realized")
        J_mf = float(evaluate_policy(M, S, y, cost, n, K, L, h))
        J_fne = float(red(n).J)
        gap_mf = np.max(np.abs(np.asarray(res.ybar_mf - res.flow)), axis=(1, 2))
        gap_fne = np.max(np.abs(np.asarray(res.ybar_fne - res.flow)), axis=(1, 2))
        row: dict[str, Any] = dict(n_agents=n, reps=mc_reps, seconds=mc_s, J_mf=J_mf, J_fne=J_fne)
        for name, samples in [
            ("ybar_gap_mf", gap_mf),
            ("ybar_gap_fne", gap_fne),
            ("cost_mf", res.cost_mf),
            ("cost_fne", res.cost_fne),
            ("cost_diff", res.cost_diff),
        ]:
            mean, se, half = mean_ci(samples)
            row[name] = dict(mean=mean, se=se, ci95=[mean - half, mean + half])
        mc.append(row)
        tell(None)
    tell(None)

    # TABLE, SLOPES
    g = {
        k: np.asarray(getattr(gaps, k))
        for k in ("gain_gap", "eps", "cost_gap", "J_mf", "J_fne", "J_br")
    }
    rows = [
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
        for i, n in enumerate(sizes)
    ]
    n_np = np.asarray(sizes, float)
    fit_lo, fit_hi = fit
    floor, cost_tail = cost_gap_tail(g["cost_gap"], g["J_mf"])
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
    return dict(
        rows=rows,
        slopes=slopes,
        cost_gap_floor=floor,
        dense=[dict(n_agents=n, **v) for n, v in sorted(dense.items())],
        monte_carlo=mc,
        timing=timing,
    )
