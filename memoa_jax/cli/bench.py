"""`memoa bench`: throughput of the online loop and of the bare policy step, against NumPy, a
per-agent Python loop and the machine's copy-bandwidth roofline, in one run.

Problem (spec §10, FedMOE logistic defaults): the Logistic series (first `--steps` + 1 rows),
H2 random-feature agents (d = 1, p = 5, σ = .1), q = 1, λ = .5, γ = 15, α = 1e−4, T = T_c = 3,
constrained-ridge server; all five methods (MEMOA, G1–G4) in one loop.

* full loop: `simulate` compiled once per N (tracing and lowering, XLA's compilation and the
  lowered program's StableHLO size reported apart, per state), run `--repeat` times (the
  minimum is reported) vs `reference.simulate_numpy` (vectorised float64 NumPy, the same
  protocol) up to `--numpy-max` agents. agent-steps/s = N · steps / run time.
* policy step: `ŷ' = ŷ + Z(Kŷ + Lȳ + g)` with `ȳ` the population mean, the decentralized
  MEMOA step itself (the same `mean_field_update` every replay step of the loop runs), vs NumPy and,
  up to `--python-max` agents, a Python loop over agents.
* Nash: the dense centralized N-player Nash solve (O(T N⁴)) vs the mean-field solve and
  the exact reduced Nash solve at N = 10⁹, on one window of the same problem.
* roofline: the policy step must read `Z` (d·p numbers) and `ŷ` (d) and write `ŷ'` (d) per
  agent; its floor is those bytes over the copy bandwidth measured here (`a + 1` on a
  `--copy-mib` array: one read, one write; a step that mostly reads can exceed it, since a
  copy also reads each cache line it writes). For the full loop the floor is the loop carry
  (`memoa_jax.carry_bytes_per_agent`, measured from its shapes, stored or lean) read once
  per step; XLA's own estimate of bytes accessed is printed beside it.
"""

import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from ._resources import check_fits, dense_bytes, format_count

if TYPE_CHECKING:
    from .._kernels import Kernels

D, D_X, P, SIGMA = 1, 1, 5, 0.1
COST = dict(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
WINDOW = RIDGE_WINDOW = 3


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


def _best(fn, repeat):
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
    t_jax = _best(jax_copy, repeat)
    an, bn = np.ones(n), np.empty(n)
    t_np = _best(lambda: np.add(an, 1.0, out=bn), repeat)
    bytes_jax, bytes_np = 2 * box[0].nbytes, 2 * an.nbytes
    return dict(
        array_bytes=int(an.nbytes),
        jax_bytes_per_s=bytes_jax / t_jax,
        numpy_bytes_per_s=bytes_np / t_np,
        bytes_per_s=max(bytes_jax / t_jax, bytes_np / t_np),
    )


def make_simulation(n_agents, n_steps, dtype, kernels: "str | Kernels" = "tuned", state="stored"):
    """The bench's simulation; `kernels`: "tuned", "plain" or a `Kernels`; `state`: "stored"
    or "lean"."""
    import memoa_jax as mj

    cost = mj.CostParams(**COST)
    enc = mj.RFNEncoder(d=D, d_x=D_X, p=P, sigma=SIGMA)
    methods = mj.default_methods(cost, window=WINDOW, ridge_window=RIDGE_WINDOW)
    return mj.Simulation(
        n_agents,
        enc,
        methods,
        mj.RidgeMixture(),
        cost,
        "h2",
        dtype=dtype,
        kernels=kernels,
        state=state,
    )


def time_loop(n, x, y, dtype, repeat, kernels="tuned", state="stored"):
    import jax
    import jax.random as jr

    import memoa_jax as mj

    sim = make_simulation(n, x.shape[0] - 1, dtype, kernels, state)
    # one scan, no host callback: the runtime checks come back in the result's status
    fn = jax.jit(lambda x_, y_, k: mj.simulate(sim, x_, y_, key=k, throw=False))
    t0 = time.perf_counter()
    lowered = fn.lower(x, y, jr.key(0))
    trace_s = time.perf_counter() - t0  # tracing the Python loop and lowering it
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0  # XLA alone
    run_s = _best(lambda: jax.block_until_ready(compiled(x, y, jr.key(0))), repeat)
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
        carried_bytes_per_agent=mj.carry_bytes_per_agent(sim),
        memoa_worst_rmse=float(res.summary["memoa"].worst_rmse),
        carry_bytes_per_agent_step=mj.carry_bytes_per_agent(sim),  # the floor: read once
    )


def time_kernels(n, x, y, dtype, repeat, progress=None, state="stored", tricks=None) -> dict:
    """The full loop at `n` agents with the tuned kernels, the plain path, and the tuned
    kernels with each trick replaced by its plain form in turn, compiled first, then timed in
    interleaved rounds (the minimum of `repeat` per variant), so that every ratio comes from
    the same minutes of the machine. A trick's gain is `run(without it) / run(tuned) − 1`.
    `state`: the loop's state, "stored" or "lean" (some tricks pay only where the draws are
    recomputed). `tricks`: those to turn off in turn (default all)."""
    import jax
    import jax.random as jr

    import memoa_jax as mj
    from memoa_jax._kernels import TRICKS, Kernels

    variants = {"tuned": Kernels(), "plain": Kernels.plain()}
    variants.update({f"without {t}": Kernels().without(t) for t in tricks or TRICKS})
    compiled, out = {}, {}
    for name, kernels in variants.items():
        sim = make_simulation(n, x.shape[0] - 1, dtype, kernels, state)
        fn = jax.jit(lambda x_, y_, k, sim=sim: mj.simulate(sim, x_, y_, key=k, throw=False))
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
    return dict(n_agents=n, state=state, variants=rows)


def time_numpy_loop(n, x, y, repeat):
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

    return dict(run_s=_best(once, repeat))


def policy_inputs(n, dtype, seed=0):
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(seed)
    yhat = rng.standard_normal((D, n)).astype(dtype)
    z = np.maximum(rng.standard_normal((D, P, n)), 0).astype(dtype)
    K, L, g = (rng.standard_normal(s).astype(dtype) * 0.1 for s in ((P, D), (P, D), (P,)))
    return dict(
        yhat=jnp.asarray(yhat),
        z=jnp.asarray(z),
        K=jnp.asarray(K),
        L=jnp.asarray(L),
        g=jnp.asarray(g),
    )


def policy_step(yhat, z, K, L, g):
    """The decentralized MEMOA step of every agent: `ŷ' = ŷ + Z(Kŷ + Lȳ + g)` (the same
    `mean_field_update` every replay step of the loop runs)."""
    import jax.numpy as jnp

    from .._kernels import mean_field_update

    return mean_field_update(K, L, g, yhat, jnp.mean(yhat, axis=-1), z)


def time_policy(n, dtype, repeat, numpy_max, python_max):
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
    run_s = _best(run, repeat)
    itemsize = np.dtype(dtype).itemsize
    out = dict(run_s=run_s, bytes_per_agent=(D * P + 2 * D) * itemsize)
    if n <= numpy_max:

        def numpy_step():
            y, z, K, L, g = npi["yhat"], npi["z"], npi["K"], npi["L"], npi["g"]
            beta = K @ y + (L @ y.mean(axis=1) + g)[:, None]
            return y + np.einsum("dpn,pn->dn", z, beta)

        np.testing.assert_allclose(numpy_step(), ref, rtol=1e-5, atol=1e-5)
        out["numpy_run_s"] = _best(numpy_step, repeat)
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
        out["python_run_s"] = _best(python_step, 1)
    return out


def time_nash_solves(x, dtype, dense_sizes, repeat) -> dict:
    """The centralized N-player Nash solve (dense stacked recursions, O(T N⁴)) against the
    mean-field solve the agents use (O(T), any N) and the exact reduced Nash solve at
    N = 10⁹, on one window of the bench's problem (shared encoder at `x_0..x_{T−1}`)."""
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    import memoa_jax as mj
    from memoa_jax import nash

    enc = mj.RFNEncoder(d=D, d_x=D_X, p=P, sigma=SIGMA)  # the bench's encoder, shared
    params = enc.init(jr.key(0), dtype)
    M, S = nash.window_moments(enc, params, x[:WINDOW])
    y = x[: WINDOW + 1]  # the Logistic series: target = input
    cost = mj.CostParams(**COST)

    def timed(fn):  # fn(M, S, y, cost), compiled once, then the best of `repeat` runs
        exe = jax.jit(fn).lower(M, S, y, cost).compile()
        return _best(lambda: jax.block_until_ready(exe(M, S, y, cost)), repeat)

    out: dict[str, Any] = dict(
        window=WINDOW,
        mean_field_s=timed(mj.solve_mean_field),
        reduced_1e9_s=timed(
            lambda M, S, y, c: nash.solve_fne_reduced(M, S, y, c, jnp.asarray(1e9))
        ),
        dense=[],
    )
    for n in dense_sizes:
        run_s = timed(lambda M, S, y, c, n=n: nash.solve_fne_dense(M, S, y, c, n))
        out["dense"].append(dict(n_agents=n, run_s=run_s))
    return out


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
    """Refuses (exit 2) a size whose arrays cannot fit, before anything runs: per agent
    the policy step's inputs and output and their NumPy copies, and up to `--loop-max`
    the loop's carry (`memoa_jax.carry_bytes_per_agent`)."""
    import numpy as np

    item = np.dtype(args.dtype).itemsize
    policy = 2 * (D * P + 2 * D) * item
    n = max(sizes)
    per_agent = policy
    if n <= loop_max:
        import memoa_jax as mj

        per_agent += mj.carry_bytes_per_agent(make_simulation(1, args.steps, dtype))
    check_fits(f"--sizes {format_count(n)}", per_agent, n)


def main(args) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ..data import load_dataset

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
    check(args.kernels_n >= 1, f"--kernels-n must be an integer >= 1, got {args.kernels_n}")
    none = args.dense_sizes.strip().lower() == "none"
    dense = None if none else parse_sizes(args.dense_sizes, "--dense-sizes", limit=MAX_AGENTS)
    if dense:
        n = max(dense)
        check_fits(f"--dense-sizes {n}", dense_bytes(n, D, P) // n, n)
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
    bw = copy_bandwidth(args.copy_mib)
    print(
        f"copy bandwidth (a + 1 on {bw['array_bytes'] / 2**20:.0f} MiB, read + write): "
        f"JAX {bw['jax_bytes_per_s'] / 1e9:.2f} GB/s, NumPy {bw['numpy_bytes_per_s'] / 1e9:.2f}"
        f" GB/s -> roofline {bw['bytes_per_s'] / 1e9:.2f} GB/s"
    )
    record: dict[str, Any] = dict(
        command=command_line(args),
        device=str(dev),
        platform=dev.platform,
        device_kind=getattr(dev, "device_kind", ""),
        cpu_count=os.cpu_count(),
        machine=platform.machine(),
        jax_version=jax.__version__,
        numpy_version=np.__version__,
        dtype=args.dtype,
        steps=args.steps,
        repeat=args.repeat,
        problem=dict(
            dataset="logistic",
            homogeneity="h2",
            d=D,
            p=P,
            sigma=SIGMA,
            window=WINDOW,
            ridge_window=RIDGE_WINDOW,
            server="ridge",
            **COST,
        ),
        copy=bw,
        points=[],
    )
    from tqdm.auto import tqdm

    make_out_dir(out)
    if dense is not None:
        record["nash"] = time_nash_solves(x, dtype, dense, args.repeat)
        write_json(out / "bench.json", record)
    for n in tqdm(sizes, desc="bench", file=sys.stderr, leave=False, disable=args.no_progress):
        point: dict[str, Any] = dict(n_agents=n)
        try:
            pol: dict[str, Any] = time_policy(
                n, np.dtype(args.dtype), args.repeat, args.numpy_max, args.python_max
            )
            pol["agent_steps_per_s"] = n / pol["run_s"]
            pol["roofline_fraction"] = pol["bytes_per_agent"] * n / pol["run_s"] / bw["bytes_per_s"]
            for k in ("numpy", "python"):
                if f"{k}_run_s" in pol:
                    pol[f"{k}_agent_steps_per_s"] = n / pol[f"{k}_run_s"]
                    pol[f"speedup_vs_{k}"] = pol[f"{k}_run_s"] / pol["run_s"]
            point["policy"] = pol
            if n <= loop_max:
                kernels = "plain" if args.kernels == "plain" else "tuned"
                states = ("stored", "lean") if args.state == "both" else (args.state,)
                for state in states:
                    loop: dict = time_loop(n, x, y, dtype, args.repeat, kernels, state)
                    loop["state"] = state
                    loop["agent_steps_per_s"] = n * args.steps / loop["run_s"]
                    per_step = loop["carry_bytes_per_agent_step"] * n * args.steps
                    loop["roofline_fraction"] = per_step / bw["bytes_per_s"] / loop["run_s"]
                    point["loop" if state == states[0] else f"loop_{state}"] = loop
                loop = point["loop"]
                if n <= args.numpy_max:
                    loop["numpy_run_s"] = time_numpy_loop(
                        n, xn, yn, 1 if n >= 1e6 else args.repeat
                    )["run_s"]
                    loop["numpy_agent_steps_per_s"] = n * args.steps / loop["numpy_run_s"]
                    loop["speedup_vs_numpy"] = loop["numpy_run_s"] / loop["run_s"]
        except Exception as e:  # out of memory at the largest sizes: record it, go on
            if not out_of_memory(e):
                raise
            point["error"] = str(e).splitlines()[0][:200]
        record["points"].append(point)
        write_json(out / "bench.json", record)  # after every size: partial results survive
    if args.kernels == "both":  # in each state of --state ("both": stored, then lean)
        n_k = args.kernels_n
        for state in ("stored", "lean") if args.state == "both" else (args.state,):
            with tqdm(total=len(tricks) + 2, desc=f"kernels at N={n_k:.0e}, {state}",
                      file=sys.stderr, leave=False, disable=args.no_progress) as bar:  # fmt: skip
                timed = time_kernels(n_k, x, y, dtype, args.repeat, bar.update, state, tricks)
            record[KERNELS_KEY[state]] = timed
            write_json(out / "bench.json", record)
    if mark_overhead(record["points"]):
        write_json(out / "bench.json", record)
    _print_tables(record)
    from .._sweep_plots import plot_bench

    save_figure(out / "bench_throughput.png", plot_bench(record))
    print(f"\nwrote {out / 'bench.json'} and {out / 'bench_throughput.png'}")
    return 0


def _g(d, k, fmt="{:.3g}"):
    return fmt.format(d[k]) if k in d else "-"


OVERHEAD_NOTE = (
    "* fixed cost, not throughput: the JAX time barely grows from this N to the next "
    "(a fit t = c + a·N through both puts more than half of it in c: dispatch and per-step "
    "launches); compare at larger N"
)


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


def _ratio(d, k):
    """`JAX/NumPy` and the like: two significant digits, `*` where a fixed cost dominates."""
    if k not in d:
        return "-"
    v = d[k]
    return (f"{v:.0f}x" if v >= 10 else f"{v:.2g}x") + ("*" if d.get("overhead_dominated") else "")


def _print_tables(record):
    pts = record["points"]
    print("\nfull online loop (5 methods), agent-steps/s:")
    rows = [
        [
            f"{p['n_agents']:.0e}",
            lp.get("state", "stored"),
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
            f"\nkernels (full loop, N = {kr['n_agents']:.0e}, {kr.get('state', 'stored')} "
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
