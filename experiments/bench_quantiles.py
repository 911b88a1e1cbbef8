"""The agents' quantiles (p50, p90, p99 of the RMSE in every run's summary) in their two forms,
timed in the same run: `Population.quantiles` counting the 3 ranks' hits in one variadic
reduce (one device, or one shard under `jax.shard_map`) against `jnp.sum` over the (3, N)
hits (`Population(partitioned=True)`, the form GSPMD turns into all-reduces). float32, so a
radix select of 32 passes; the results are checked equal to `np.quantile`'s.

    python experiments/bench_quantiles.py --sizes 1e6,1e7 --repeat 5
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from memoa_jax._agents import Population


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    qs = (0.5, 0.9, 0.99)
    for n in (int(float(s)) for s in args.sizes.split(",")):
        a = jax.random.uniform(jax.random.key(0), (n,), jnp.float32)
        ref = np.quantile(np.asarray(a, np.float64), qs)
        times = {}
        for name, partitioned in (("one pass", False), ("jnp.sum", True)):
            pop = Population(n, partitioned=partitioned)
            f = jax.jit(lambda x, pop=pop: pop.quantiles(x, qs)).lower(a).compile()
            out = jax.block_until_ready(f(a))
            assert np.allclose(np.asarray(out), ref, rtol=1e-6), (name, out, ref)
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                jax.block_until_ready(f(a))
                best = min(best, time.perf_counter() - t0)
            times[name] = best
        print(
            f"N = {n:.0e}: one pass {times['one pass'] * 1e3:.1f} ms, jnp.sum "
            f"{times['jnp.sum'] * 1e3:.1f} ms ({times['jnp.sum'] / times['one pass']:.1f}x)"
        )


if __name__ == "__main__":
    main()
