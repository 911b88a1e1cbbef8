"""Benchmark of the MEMOA online loop: `memoa_jax.simulate` (JAX, float64) vs the NumPy oracle.

Problem (spec §10, FedMOE logistic defaults): the Logistic series (201 rows, 200 prediction
steps), H2 random-feature agents (d = 1, p = 5, σ = .1), cost q = 1, λ = .5, γ = 15, α = 1e−4,
game window T = 3, greedy window T_c = 3, constrained-ridge server (κ = η = 1).

For each population size N it times

* JAX: compilation (`jax.jit(...).lower(...).compile()`) separately, then the run as the
  minimum over `--repeat` calls of the compiled function (`jax.block_until_ready`);
* NumPy: `memoa_jax.reference.simulate_numpy` with its own NumPy RNG for the encoders and the
  feature noise and closed-form NumPy population moments (one run by default at N ≥ 10⁶).

Both runs include everything the protocol does: encoder initialisation, feature draws,
population moments, all methods (or MEMOA alone with `--methods memoa`: the full §7 protocol
with the greedy warm-up, the server and the metrics) and the metrics.
agent-steps/s = N · n_steps / run time.

Usage:
    python benchmarks/bench_loop.py [--sizes 1000 10000 100000 1000000] [--repeat 3]
        [--numpy-repeat K] [--methods all|memoa] [--skip-numpy] [--batch-size B]
        [--out figures/bench_loop.json]
"""

import argparse
import json
import os
import platform
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import memoa_jax as mj  # noqa: E402
from memoa_jax.data import load_dataset  # noqa: E402
from memoa_jax.reference import (  # noqa: E402
    config_from_simulation,
    rfn_features_numpy,
    rfn_population_moments_numpy,
    simulate_numpy,
)

D, D_X, P, SIGMA = 1, 1, 5, 0.1
COST = dict(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
WINDOW = RIDGE_WINDOW = 3


def logistic_series() -> tuple[np.ndarray, np.ndarray]:
    """The Logistic series of spec §10 (201 rows, x_t = y_t = s_t)."""
    ds = load_dataset("logistic")
    return np.asarray(ds.x, np.float64), np.asarray(ds.y, np.float64)


def make_simulation(
    n_agents: int, methods: str, batch_size: int | None, dtype=jnp.float64
) -> mj.Simulation:
    cost = mj.CostParams(**COST)
    if methods == "memoa":
        meths = (mj.MeanFieldGame(cost, window=WINDOW, ridge_window=RIDGE_WINDOW, name="memoa"),)
    else:
        meths = mj.default_methods(cost, window=WINDOW, ridge_window=RIDGE_WINDOW)
    enc = mj.RFNEncoder(d=D, d_x=D_X, p=P, sigma=SIGMA)
    return mj.Simulation(
        n_agents, enc, meths, mj.RidgeMixture(), cost, "h2", batch_size=batch_size, dtype=dtype
    )


def _summary(res_summary: dict) -> dict:
    return {
        name: {k: float(v) for k, v in s.items() if k != "worst_agent"}
        for name, s in res_summary.items()
    }


def time_jax(sim: mj.Simulation, x, y, repeat: int, seed: int) -> dict:
    xj, yj, key = jnp.asarray(x), jnp.asarray(y), jr.key(seed)
    fn = jax.jit(lambda x_, y_, k_: mj.simulate(sim, x_, y_, key=k_))
    t0 = time.perf_counter()
    compiled = fn.lower(xj, yj, key).compile()
    compile_s = time.perf_counter() - t0
    runs = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(xj, yj, key))
        runs.append(time.perf_counter() - t0)
    summ = {name: s._asdict() for name, s in jax.device_get(out.summary).items()}
    return dict(compile_s=compile_s, run_s=min(runs), runs_s=runs, summary=_summary(summ))


def time_numpy(sim: mj.Simulation, x, y, repeat: int, seed: int) -> dict:
    config = config_from_simulation(sim)
    noise_dtype = config["encoder"]["noise_dtype"]
    N = sim.n_agents
    runs = []
    out = None
    for r in range(repeat):
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed + r)
        A = rng.standard_normal((N, D, D_X))  # H2: each agent its own (A, b)
        b = rng.standard_normal((N, D, P))

        def features(t):  # noise drawn in the encoder's noise_dtype, like the JAX loop
            return rfn_features_numpy(A, b, SIGMA, x[t], rng, noise_dtype=noise_dtype)

        def moments(t):
            return rfn_population_moments_numpy((A @ x[t])[..., None] + b, SIGMA)

        out = simulate_numpy(config, x, y, features, moments)
        runs.append(time.perf_counter() - t0)
    summ = {name: {k: v for k, v in res.items() if np.ndim(v) == 0} for name, res in out.items()}
    return dict(run_s=min(runs), runs_s=runs, summary=_summary(summ))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10**3, 10**4, 10**5, 10**6])
    ap.add_argument("--repeat", type=int, default=3, help="JAX runs per size (min is reported)")
    ap.add_argument(
        "--numpy-repeat",
        type=int,
        default=None,
        help="NumPy runs per size (default: --repeat below 10^6 agents, 1 above)",
    )
    ap.add_argument("--methods", choices=("all", "memoa"), default="all")
    ap.add_argument("--skip-numpy", action="store_true")
    ap.add_argument("--batch-size", type=int, default=None, help="Simulation.batch_size")
    ap.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="dtype of the JAX agents (the NumPy reference is always float64)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="figures/bench_loop.json")
    args = ap.parse_args(argv)

    x, y = logistic_series()
    n_steps = x.shape[0] - 1
    dev = jax.devices()[0]
    try:
        cpus_avail = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus_avail = os.cpu_count()
    meta = dict(
        device=f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        n_devices=jax.device_count(),
        jax_version=jax.__version__,
        numpy_version=np.__version__,
        python=platform.python_version(),
        machine=platform.machine(),
        cpu_count=os.cpu_count(),
        cpus_available=cpus_avail,
        dtype=args.dtype,
        noise_dtype=str(
            getattr(make_simulation(1, args.methods, None).encoder, "noise_dtype", "float64")
        ),
        methods=args.methods,
        batch_size=args.batch_size,
        problem=dict(
            dataset="logistic",
            rows=int(x.shape[0]),
            n_steps=n_steps,
            homogeneity="h2",
            d=D,
            p=P,
            sigma=SIGMA,
            window=WINDOW,
            ridge_window=RIDGE_WINDOW,
            server="ridge(kappa=1, eta=1)",
            **COST,
        ),
        repeat=args.repeat,
    )
    print(
        f"# {meta['device']}, jax {jax.__version__}, {cpus_avail} CPUs available, "
        f"methods={args.methods}, {n_steps} steps",
        flush=True,
    )
    header = (
        "N",
        "JAX compile s",
        "JAX run s",
        "JAX agent-steps/s",
        "NumPy run s",
        "NumPy agent-steps/s",
        "speed-up",
    )
    rows = []
    results = []
    for N in args.sizes:
        sim = make_simulation(N, args.methods, args.batch_size, jnp.dtype(args.dtype))
        load_before = os.getloadavg()
        jx = time_jax(sim, x, y, args.repeat, args.seed)
        entry = dict(n_agents=N, jax=jx, jax_agent_steps_per_s=N * n_steps / jx["run_s"])
        if not args.skip_numpy:
            nrep = args.numpy_repeat or (args.repeat if N < 10**6 else 1)
            npy = time_numpy(sim, x, y, nrep, args.seed)
            entry.update(
                numpy=npy,
                numpy_agent_steps_per_s=N * n_steps / npy["run_s"],
                speedup=npy["run_s"] / jx["run_s"],
            )
        # 1-minute load averages before and after this size (other processes skew timings)
        entry["loadavg_1min"] = [load_before[0], os.getloadavg()[0]]
        results.append(entry)
        row = (
            f"{N:.0e}",
            f"{jx['compile_s']:.2f}",
            f"{jx['run_s']:.3f}",
            f"{entry['jax_agent_steps_per_s']:.3g}",
        )
        if "numpy" in entry:
            row += (
                f"{entry['numpy']['run_s']:.3f}",
                f"{entry['numpy_agent_steps_per_s']:.3g}",
                f"{entry['speedup']:.1f}x",
            )
        else:
            row += ("-", "-", "-")
        rows.append(row)
        print(" | ".join(row), flush=True)
        meta["results"] = results
        if args.out:  # written after every size, so a long run leaves partial results
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as f:
                json.dump(meta, f, indent=2)

    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print()
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |")
    if args.out:
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
