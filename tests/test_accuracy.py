"""float32 sums at 10⁷ agents against float64 (issue 14 item 4).

The population reductions (`Population.mean` / `sum`, which reduce with XLA's pairwise
tree, and `sum_chunks`, which adds its chunks' sums with Kahan's compensation) must keep
float32's resolution: a few ε₃₂ relative to the value, where a sequential float32 sum of
these 10⁷ terms is off by about 10² ε₃₂ (its error grows with the running total, which ends
2²⁴ times larger than a term).
The values carry an O(1/N) signal on top of an O(1) offset, the shape of the metrics' mean
over agents, and the test also checks that the signal itself survives.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memoa_jax._agents import Population, masked, sum_chunks

N = 10**7
EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def values():
    """1.5 + U(0, 1) per agent: every term is about 2²⁴ times smaller than their sum."""
    rng = np.random.default_rng(14)
    return (1.5 + rng.random(N)).astype(np.float32)


def _exact_mean(a: np.ndarray, n: int) -> float:
    return float(np.sum(a[:n].astype(np.float64)) / n)


def test_a_sequential_float32_sum_would_fail_here(values):
    """The checks below can fail: a running float32 total over these values is off by
    about 10² ε₃₂ (measured 115)."""
    running = np.cumsum(values, dtype=np.float32)[-1]
    exact = float(np.sum(values.astype(np.float64)))
    assert abs(running - exact) / exact > 16 * EPS32


@pytest.mark.parametrize("n_active", [None, N - 12345])
def test_population_mean_keeps_float32_resolution(values, n_active):
    pop = Population(N, None if n_active is None else jnp.asarray(n_active, jnp.int32))
    got = float(jax.jit(pop.mean)(jnp.asarray(values)))
    exact = _exact_mean(values, n_active or N)
    assert abs(got - exact) <= 4 * EPS32 * exact


@pytest.mark.parametrize("batch_size", [None, 2**20, 999_983])  # a shifted last chunk
def test_sum_chunks_keeps_float32_resolution(values, batch_size):
    n_active = N - 7
    pop = Population(N, jnp.asarray(n_active, jnp.int32))
    fn = lambda w, a: jnp.sum(masked(a, w), -1)
    total = jax.jit(lambda a: sum_chunks(fn, a, batch_size=batch_size, pop=pop))(
        jnp.asarray(values)
    )
    exact = _exact_mean(values, n_active) * n_active
    assert abs(float(total) - exact) <= 4 * EPS32 * exact


def test_an_order_one_over_n_shift_survives_the_mean(values):
    """Adding 1/N·k to every agent moves the float32 mean by k/N, as in float64, to within
    float32's resolution of the mean: the reduction adds no error of its own above it."""
    a = jnp.asarray(values)
    base = float(jax.jit(jnp.mean)(a))
    for k in (64.0, 256.0):
        shifted = float(jax.jit(jnp.mean)(a + np.float32(k / N)))
        assert abs((shifted - base) - k / N) <= 4 * EPS32 * base


def test_per_agent_float32_sums_over_time_average_out():
    """Each agent's accumulators (square error, cost) are float32 running sums over the
    steps, as the loop keeps them (`acc + term`; compensated sums would cost 4 more bytes
    per agent and accumulator). Over 1000 steps of positive terms each agent's sum is off by
    a few ε₃₂ (at most ~30), and the errors are unbiased, so the mean over the agents, which
    the metrics report, keeps float32's resolution."""
    n, steps = 2 * 10**5, 1000
    key = jax.random.key(14)

    def run(dtype):
        def step(acc, k):
            term = jax.random.exponential(k, (n,), jnp.float32)
            return acc + term.astype(dtype), None

        acc, _ = jax.lax.scan(step, jnp.zeros((n,), dtype), jax.random.split(key, steps))
        return acc

    sums = jax.jit(run, static_argnums=0)
    got, exact = (np.asarray(sums(dt), np.float64) for dt in (jnp.float32, jnp.float64))
    rel = np.abs(got - exact) / exact
    assert np.median(rel) < 8 * EPS32 and rel.max() < 64 * EPS32
    assert abs(got.mean() - exact.mean()) / exact.mean() < EPS32
