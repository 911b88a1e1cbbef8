"""Compile-speed options of XLA:CPU against the default (issue 27 item 6): for each option, in a
fresh process, the compile time of the five default methods' simulation (best of two sizes,
so two compilations) and of 60 tiny programs, and whether the run's results are the default
build's bit for bit (how many result arrays differ, and by how much at most, relative).

    python experiments/compile_options.py

An option that makes compiling faster but changes the results compiles other code: the tests
would then check programs that users do not run. Run it on a quiet machine.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

OPTIONS = {
    "default": {},
    "LLVM -O0 (JAX_DISABLE_MOST_OPTIMIZATIONS=1)": {"JAX_DISABLE_MOST_OPTIMIZATIONS": "1"},
    "one codegen split": {"XLA_FLAGS": "--xla_cpu_parallel_codegen_split_count=1"},
    "no emitter verification": {"XLA_FLAGS": "--xla_cpu_emitter_verification_level=0"},
}

CHILD = r"""
import json, sys, time
import equinox as eqx, jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
import memoa_jax as mj
from memoa_jax.data import load_dataset

cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
data = load_dataset("logistic", n_rows=60)
x, y = jnp.asarray(data.x), jnp.asarray(data.y)
big, out = [], {}
for n in (33, 34):
    sim = mj.Simulation(n_agents=n, encoder=mj.RFNEncoder(d=1, d_x=data.d_x, p=5, sigma=0.1),
                        methods=mj.default_methods(cost, window=3, ridge_window=3), cost=cost)
    lowered = eqx.filter_jit(mj.simulate).lower(sim, x, y, key=jax.random.key(3))
    t0 = time.perf_counter()
    program = lowered.compile()
    big.append(time.perf_counter() - t0)
    res = program(sim, x, y, key=jax.random.key(3))
    for i, leaf in enumerate(jax.tree.leaves((res.summary, res.agent_rmse))):
        out[f"{n}/{i}"] = np.asarray(leaf)
v = jnp.ones(3)
tiny = [jax.jit(lambda v, i=i: jnp.tanh(v * (i + 1.0)) + 2).lower(v) for i in range(60)]
t0 = time.perf_counter()
for f in tiny:
    f.compile()
tiny_ms = (time.perf_counter() - t0) / len(tiny) * 1e3
np.savez(sys.argv[1], **out)
print(json.dumps({"simulation_s": min(big), "tiny_ms": tiny_ms}))
"""


def _run(name: str, env: dict, path: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, path],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best of)")
    args = parser.parse_args(argv)
    best: dict = {name: {"simulation_s": np.inf, "tiny_ms": np.inf} for name in OPTIONS}
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for i, (name, env) in enumerate(OPTIONS.items()):
                path = os.path.join(folder, f"{i}.npz")
                for k, v in _run(name, env, path).items():
                    best[name][k] = min(best[name][k], v)
                if name not in results:  # (the same bits in every round)
                    with np.load(path) as f:
                        results[name] = {k: f[k] for k in f.files}
    base = results["default"]
    print(
        f"best of {args.rounds} interleaved rounds, load average {os.getloadavg()[0]:.2f} now\n"
        "| option | simulation compile s | tiny program ms | arrays that differ "
        "| largest relative difference |\n|---|---|---|---|---|"
    )
    for name, got in results.items():
        differ = [k for k in base if not np.array_equal(base[k], got[k], equal_nan=True)]
        worst = max(
            (
                float(np.max(np.abs(got[k] - base[k]) / np.maximum(np.abs(base[k]), 1e-300)))
                for k in differ
            ),
            default=0.0,
        )
        print(
            f"| {name} | {best[name]['simulation_s']:.2f} | {best[name]['tiny_ms']:.1f} "
            f"| {len(differ)} of {len(base)} | {worst:.1e} |"
        )


if __name__ == "__main__":
    main()
