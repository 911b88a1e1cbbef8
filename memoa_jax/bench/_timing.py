"""The bench's measurements: copy bandwidth (the roofline), the full loop per state and
kernel variant, the NumPy loop, the bare policy step against NumPy and a Python loop, and the
Nash solves; and `mark_overhead`, which flags times a fixed cost dominates."""

import time
from typing import Any

from ._problem import (
    COST,
    D_X,
    SIGMA,
    WINDOW,
    D,
    P,
    make_simulation,
    policy_bytes_per_agent,
    policy_inputs,
    policy_step,
)


def best_time(fn, repeat: int) -> float:
    """Minimum wall time of `repeat` calls of `fn` (each blocks until done)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def copy_bandwidth(mib: int, repeat: int = 5) -> dict:
    """Bytes per second of `a + 1` (read + write) in JAX and of `np.add(a, 1, out=b)`."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    n = mib * 2**20 // 8
    # the input buffer is donated and updated in place, as a scan carry is: a fresh output
    # each call would time the OS handing out new pages, not the memory bus
    f = jax.jit(lambda v: v + 1, donate_argnums=0)
    box = [f(jnp.ones(n, jnp.float64 if getattr(jax.config, "jax_enable_x64") else jnp.float32))]

    def jax_copy():
        box[0] = jax.block_until_ready(f(box[0]))

    jax_copy()
    t_jax = best_time(jax_copy, repeat)
    an, bn = np.ones(n), np.empty(n)
    t_np = best_time(lambda: np.add(an, 1.0, out=bn), repeat)
    bytes_jax, bytes_np = 2 * box[0].nbytes, 2 * an.nbytes
    return dict(
        array_bytes=int(an.nbytes),
        jax_bytes_per_s=bytes_jax / t_jax,
        numpy_bytes_per_s=bytes_np / t_np,
        bytes_per_s=max(bytes_jax / t_jax, bytes_np / t_np),
    )


def draw_rate(n: int = 2**22, chunk: int = 2**14, repeat: int = 3) -> float:
    """This machine's draw rate: Threefry hashes per second, each with one erf⁻¹ (one
    float32 normal), of the loop's own counter-based draw (`_random.agent_normals`, 5
    normals per agent as a step's features) over `n` agents in chunks of `chunk`, each
    chunk's draws written to memory as the loop's are (`computed_once`): the ceiling of a
    loop bound by its draws. (Reduced in the same fusion instead, XLA:CPU drew 5-8× slower:
    a float sum it may not reorder is not vectorised.)"""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from .._kernels import computed_once
    from .._random import agent_normals

    keys = jnp.stack([jnp.arange(n, dtype=jnp.uint32), jnp.full((n,), 7, jnp.uint32)])

    @jax.jit
    def kernel(keys, t):
        def body(i, out):
            k = lax.dynamic_slice_in_dim(keys, i * chunk, chunk, axis=1)
            z = computed_once(lambda k_: agent_normals(k_, t, P), k, live=i >= 0)
            return lax.dynamic_update_slice_in_dim(out, z, i * chunk, axis=1)

        return lax.fori_loop(0, n // chunk, body, jnp.zeros((P, n), jnp.float32))

    jax.block_until_ready(kernel(keys, 3))
    return P * n / best_time(lambda: jax.block_until_ready(kernel(keys, 3)), repeat)


def lean_step_figures(sim) -> dict[str, float]:
    """What one steady-state step of a lean loop costs per agent, without running it: the
    Threefry hashes and normals counted from its jaxpr (`_counts.step_draw_counts`) and
    XLA's bytes accessed, flops and temporary buffers of the step compiled alone and
    unchunked (XLA's cost analysis counts a loop body once: `_counts.step_costs`)."""
    import dataclasses

    from .._counts import step_costs, step_draw_counts

    draws = step_draw_counts(sim)
    xla = step_costs(dataclasses.replace(sim, batch_size=None))
    return dict(
        hashes_per_agent_step=draws.hashes,
        normals_per_agent_step=draws.normals,
        xla_bytes_accessed_per_agent_step=xla["bytes_accessed"],
        xla_flops_per_agent_step=xla["flops"],
        xla_buffer_bytes_per_agent=xla["buffer_bytes"],
    )


def time_loop(n, x, y, dtype, repeat, kernels="tuned", state="stored", carry_draws=False):
    """The full loop at `n` agents: tracing and lowering, XLA's compilation and the best of
    `repeat` runs timed apart, the StableHLO size, the carry's bytes per agent and XLA's
    estimate of the bytes accessed. `carry_draws`: the lean state's option."""
    import jax
    import jax.random as jr

    from .._loop import carry_bytes_per_agent, simulate

    sim = make_simulation(n, x.shape[0] - 1, dtype, kernels, state, carry_draws)
    # one scan, no host callback: the runtime checks come back in the result's status
    fn = jax.jit(lambda x_, y_, k: simulate(sim, x_, y_, key=k, throw=False))
    t0 = time.perf_counter()
    lowered = fn.lower(x, y, jr.key(0))
    trace_s = time.perf_counter() - t0  # tracing the Python loop and lowering it
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0  # XLA alone
    run_s = best_time(lambda: jax.block_until_ready(compiled(x, y, jr.key(0))), repeat)
    cost = compiled.cost_analysis() or {}
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    res = compiled(x, y, jr.key(0))
    res.status.raise_if_failed()
    return dict(
        trace_s=trace_s,
        compile_s=compile_s,
        stablehlo_bytes=len(lowered.as_text().encode()),
        run_s=run_s,
        xla_bytes_accessed_per_agent=float(cost.get("bytes accessed", float("nan"))) / n,
        carried_bytes_per_agent=carry_bytes_per_agent(sim),
        carry_draws=sim.carry_draws,
        memoa_worst_rmse=float(res.summary["memoa"].worst_rmse),
        carry_bytes_per_agent_step=carry_bytes_per_agent(sim),  # the floor: read once
        **(lean_step_figures(sim) if state == "lean" else {}),
    )


def time_kernels(
    n, x, y, dtype, repeat, progress=None, state="stored", tricks=None, carry_draws=False
) -> dict:
    """The full loop at `n` agents with the tuned kernels, the plain path, and the tuned
    kernels with each trick replaced by its plain form in turn, compiled first, then timed in
    interleaved rounds (the minimum of `repeat` per variant), so that every ratio comes from
    the same minutes of the machine. A trick's gain is `run(without it) / run(tuned) − 1`.
    `state`: the loop's state, "stored" or "lean" (some tricks pay only where the draws are
    recomputed). `tricks`: those to turn off in turn (default all). `carry_draws`: the lean
    state's option."""
    import jax
    import jax.random as jr

    from .._kernels import TRICKS, Kernels
    from .._loop import simulate

    variants = {"tuned": Kernels(), "plain": Kernels.plain()}
    variants.update({f"without {t}": Kernels().without(t) for t in tricks or TRICKS})
    compiled, out = {}, {}
    sims = {
        name: make_simulation(n, x.shape[0] - 1, dtype, kernels, state, carry_draws)
        for name, kernels in variants.items()
    }
    for name, sim in sims.items():
        fn = jax.jit(lambda x_, y_, k, sim=sim: simulate(sim, x_, y_, key=k, throw=False))
        t0 = time.perf_counter()
        compiled[name] = fn.lower(x, y, jr.key(0)).compile()
        out[name] = dict(compile_s=time.perf_counter() - t0, runs=[])
        jax.block_until_ready(compiled[name](x, y, jr.key(0)))  # warm
        if progress:
            progress()
    for _ in range(repeat):
        for name, exe in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(exe(x, y, jr.key(0)))
            out[name]["runs"].append(time.perf_counter() - t0)
    base = min(out["tuned"]["runs"])
    rows = []
    for name, v in out.items():
        run_s = min(v["runs"])
        rows.append(
            dict(
                variant=name,
                compile_s=v["compile_s"],
                run_s=run_s,
                agent_steps_per_s=n * (x.shape[0] - 1) / run_s,
                vs_tuned=run_s / base - 1.0,
            )
        )
    return dict(n_agents=n, state=state, carry_draws=sims["tuned"].carry_draws, variants=rows)


def time_numpy_loop(n, x, y, repeat):
    """`reference.simulate_numpy` (vectorised float64 NumPy, the same protocol) at `n`
    agents: the best of `repeat` runs."""
    import numpy as np

    from ..reference import (
        config_from_simulation,
        rfn_features_numpy,
        rfn_population_moments_numpy,
        simulate_numpy,
    )

    # the configuration only (the NumPy loop is float64 whatever the JAX run's dtype)
    config = config_from_simulation(make_simulation(n, x.shape[0] - 1, np.float32))

    def once():
        rng = np.random.default_rng(0)
        A, b = rng.standard_normal((n, D, D_X)), rng.standard_normal((n, D, P))
        noise_dtype = config["encoder"]["noise_dtype"]

        def features(t):
            return rfn_features_numpy(A, b, SIGMA, x[t], rng, noise_dtype=noise_dtype)

        def moments(t):
            return rfn_population_moments_numpy((A @ x[t])[..., None] + b, SIGMA)

        return simulate_numpy(config, x, y, features, moments)

    return dict(run_s=best_time(once, repeat))


def time_policy(n, dtype, repeat, numpy_max, python_max):
    """The bare policy step at `n` agents (ŷ donated, updated in place), checked against and
    timed beside NumPy (up to `numpy_max` agents) and a Python loop over agents (up to
    `python_max`)."""
    import jax
    import numpy as np

    inp = policy_inputs(n, dtype)
    npi = {k: np.asarray(v) for k, v in inp.items()}
    ref = np.asarray(jax.jit(policy_step)(**inp))
    # ŷ is donated and updated in place, as in the loop's carry
    step = jax.jit(policy_step, donate_argnames="yhat")
    box = dict(inp)

    def run():
        box["yhat"] = jax.block_until_ready(step(**box))

    run()
    run_s = best_time(run, repeat)
    itemsize = np.dtype(dtype).itemsize
    out = dict(run_s=run_s, bytes_per_agent=policy_bytes_per_agent(itemsize))
    if n <= numpy_max:

        def numpy_step():
            y, z, K, L, g = npi["yhat"], npi["z"], npi["K"], npi["L"], npi["g"]
            beta = K @ y + (L @ y.mean(axis=1) + g)[:, None]
            return y + np.einsum("dpn,pn->dn", z, beta)

        np.testing.assert_allclose(numpy_step(), ref, rtol=1e-5, atol=1e-5)
        out["numpy_run_s"] = best_time(numpy_step, repeat)
    if n <= python_max:

        def python_step():
            y, z, K, L, g = npi["yhat"], npi["z"], npi["K"], npi["L"], npi["g"]
            ybar = y.mean(axis=1)
            new = np.empty_like(y)
            for i in range(y.shape[1]):
                beta = K @ y[:, i] + L @ ybar + g
                new[:, i] = y[:, i] + z[:, :, i] @ beta
            return new

        np.testing.assert_allclose(python_step(), ref, rtol=1e-5, atol=1e-5)
        out["python_run_s"] = best_time(python_step, 1)
    return out


def time_nash_solves(x, dtype, dense_sizes, repeat) -> dict:
    """The centralized N-player Nash solve (dense stacked recursions, O(T N⁴)) against the
    mean-field solve the agents use (O(T), any N) and the exact reduced Nash solve at
    N = 10⁹, on one window of the bench's problem (shared encoder at `x_0..x_{T−1}`)."""
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    from .. import nash
    from .._encoders import RFNEncoder
    from .._mean_field import CostParams, solve_mean_field

    enc = RFNEncoder(d=D, d_x=D_X, p=P, sigma=SIGMA)  # the bench's encoder, shared
    params = enc.init(jr.key(0), dtype)
    M, S = nash.window_moments(enc, params, x[:WINDOW])
    y = x[: WINDOW + 1]  # the Logistic series: target = input
    cost = CostParams(**COST)

    def timed(fn):  # fn(M, S, y, cost), compiled once, then the best of `repeat` runs
        exe = jax.jit(fn).lower(M, S, y, cost).compile()
        return best_time(lambda: jax.block_until_ready(exe(M, S, y, cost)), repeat)

    out: dict[str, Any] = dict(
        window=WINDOW,
        mean_field_s=timed(solve_mean_field),
        reduced_1e9_s=timed(
            lambda M, S, y, c: nash.solve_fne_reduced(M, S, y, c, jnp.asarray(1e9))
        ),
        dense=[],
    )
    for n in dense_sizes:
        run_s = timed(lambda M, S, y, c, n=n: nash.solve_fne_dense(M, S, y, c, n))
        out["dense"].append(dict(n_agents=n, run_s=run_s))
    return out


def mark_overhead(points: list) -> bool:
    """Sets `overhead_dominated` in each point's `policy` and `loop` timings that a fixed
    cost dominates: with the next larger N timed, `t = c + a N` through the two points gives
    `c > a N` (the marginal time per agent is under half the average). The largest N is
    not judged. Returns whether any point was marked."""
    marked = False
    for key in ("policy", "loop"):
        timed = [(p["n_agents"], p[key]["run_s"], p[key]) for p in points if key in p]
        for (n, t, rec), (n2, t2, _) in zip(timed, timed[1:]):
            a = (t2 - t) / (n2 - n)
            rec["overhead_dominated"] = bool(t - a * n > a * n)
            marked |= rec["overhead_dominated"]
    return marked


def measure_policy(n, dtype, repeat, numpy_max, python_max, bandwidth: float) -> dict:
    """`time_policy` at `n` agents with its rates: agent-steps/s (JAX, NumPy, Python), the
    speed-ups over NumPy and the Python loop, and the fraction of the roofline (`bandwidth`
    bytes/s) reached."""
    pol: dict[str, Any] = time_policy(n, dtype, repeat, numpy_max, python_max)
    pol["agent_steps_per_s"] = n / pol["run_s"]
    pol["roofline_fraction"] = pol["bytes_per_agent"] * n / pol["run_s"] / bandwidth
    for k in ("numpy", "python"):
        if f"{k}_run_s" in pol:
            pol[f"{k}_agent_steps_per_s"] = n / pol[f"{k}_run_s"]
            pol[f"speedup_vs_{k}"] = pol[f"{k}_run_s"] / pol["run_s"]
    return pol


def state_label(timed: dict) -> str:
    """The state a bench record's loop (or kernels comparison) ran in, as its tables and
    summary.csv name it: `stored`, `lean`, or `lean+carry_draws`."""
    return timed.get("state", "stored") + ("+carry_draws" if timed.get("carry_draws") else "")


def measure_loops(
    point: dict,
    x,
    y,
    xn,
    yn,
    dtype,
    repeat,
    *,
    kernels,
    states,
    numpy_max,
    bandwidth: float,
    rate: float | None = None,
    carry_draws: bool = False,
) -> dict:
    """The full loop at `point["n_agents"]` agents in each of `states` ("stored", "lean"),
    with its rates and fraction of the roofline (the carry read once per step over
    `bandwidth` bytes/s; a lean loop's hashes per second also over the machine's draw
    `rate`, `draw_rate`), into `point` as each is done (`loop`, then `loop_lean`): a
    failure part way keeps what was measured. Up to `numpy_max` agents the first state is
    also timed against the NumPy loop on `xn`, `yn`. `carry_draws`: the lean state's option
    (`state_label` names it)."""
    n, steps = point["n_agents"], x.shape[0] - 1
    for state in states:
        loop: dict = time_loop(n, x, y, dtype, repeat, kernels, state, carry_draws)
        loop["state"] = state
        loop["agent_steps_per_s"] = n * steps / loop["run_s"]
        per_step = loop["carry_bytes_per_agent_step"] * n * steps
        loop["roofline_fraction"] = per_step / bandwidth / loop["run_s"]
        if rate and "hashes_per_agent_step" in loop:  # hashes/s against the machine's rate
            hashes_per_s = loop["agent_steps_per_s"] * loop["hashes_per_agent_step"]
            loop["draw_rate_share"] = hashes_per_s / rate
        point["loop" if state == states[0] else f"loop_{state}"] = loop
    loop = point["loop"]
    if n <= numpy_max:
        loop["numpy_run_s"] = time_numpy_loop(n, xn, yn, 1 if n >= 1e6 else repeat)["run_s"]
        loop["numpy_agent_steps_per_s"] = n * steps / loop["numpy_run_s"]
        loop["speedup_vs_numpy"] = loop["numpy_run_s"] / loop["run_s"]
    return point
