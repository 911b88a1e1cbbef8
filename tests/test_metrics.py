"""The summaries' reductions over agents (`Population`): quantiles by a radix select of counts
equal the sort-based ones bit for bit, and the worst agent and counts equal NumPy's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memoa_jax._agents import Population, from_ordered_bits, ordered_bits

QS = (0.0, 0.3, 0.5, 0.9, 0.99, 0.999, 1.0)


@jax.jit
def sorted_quantiles(a: jax.Array) -> jax.Array:
    """What `Population.quantile` computed before, by one sort of the agents (NaN last):
    linear interpolation between order statistics at the position `q (n − 1)`, compiled as
    the summaries are (XLA may contract `s[lo] + frac (s[hi] − s[lo])` into an FMA)."""
    s = jnp.sort(a)
    n = a.shape[0]
    out = []
    for q in QS:
        pos = q * float(n - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, n - 1)
        frac = jnp.asarray(pos - np.floor(pos), a.dtype)
        out.append(jnp.where(frac == 0, s[lo], s[lo] + frac * (s[hi] - s[lo])))
    return jnp.stack(out)


def population(rng, n: int, dtype, kind: str) -> np.ndarray:
    if kind == "wide":  # 60 decades, both signs
        a = rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)
    elif kind == "ties":  # three values, each many times (frozen agents share one RMSE)
        a = rng.integers(0, 3, n) * 0.5
    else:  # RMSE-like, with +0, ±inf and NaN
        a = np.abs(rng.standard_normal(n))
        a[rng.random(n) < 0.1] = 0.0
        a[rng.random(n) < 0.1] = np.inf
        a[rng.random(n) < 0.05] = -np.inf
        a[rng.random(n) < 0.1] = np.nan
    return a.astype(dtype)


@pytest.mark.parametrize("partitioned", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantiles_equal_the_sorted_ones_bit_for_bit(dtype, partitioned):
    """Populations of 1 to 1001 agents (the first `n_active` of 1001 slots, whatever the
    padding holds: the sort filled it with +inf, which came before a NaN agent; and all of
    them, without padding), against the sort: bit for bit. The ranks' hits counted in one
    variadic reduce and, `partitioned` (GSPMD's form), by `jnp.sum`."""
    rng = np.random.default_rng(0)
    padded = jax.jit(lambda v, k: Population(1001, k, partitioned=partitioned).quantiles(v, QS))
    full = jax.jit(lambda v: Population(1001, partitioned=partitioned).quantiles(v, QS))
    for kind in ("wide", "ties", "special"):
        a = population(rng, 1001, dtype, kind)
        for n in (1, 2, 5, 1001):
            v = jnp.asarray(np.concatenate([a[:n], population(rng, 1001 - n, dtype, "special")]))
            got = padded(v, jnp.asarray(n, jnp.int32))
            want = np.asarray(sorted_quantiles(jnp.asarray(a[:n])))
            assert got.dtype == dtype
            np.testing.assert_array_equal(np.asarray(got).view(np.uint8), want.view(np.uint8))
            pop = Population(1001, jnp.asarray(n, jnp.int32))
            nan = np.isnan(a[:n])
            assert int(pop.argmax(v)) == (nan.argmax() if nan.any() else np.argmax(a[:n]))
            assert int(pop.n_where(v > 1)) == int(np.sum(a[:n] > 1))
        np.testing.assert_array_equal(full(jnp.asarray(a)), got)
        if kind != "special":  # NumPy's quantile: the same definition, its own rounding,
            # whose error is relative to the order statistics interpolated, not the result
            bound = 4 * np.finfo(dtype).eps * np.max(np.abs(a))
            np.testing.assert_allclose(got, np.quantile(a, QS), rtol=0, atol=bound)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_order_statistics_are_exact_ranks(dtype):
    """Every rank of a population with ties (the binary search ends on the entry itself,
    not a neighbour), and the key order is the float order."""
    a = population(np.random.default_rng(1), 257, dtype, "wide")
    a[::7] = a[3]
    got = Population(257).order_statistics(jnp.asarray(a), jnp.arange(257))
    np.testing.assert_array_equal(got, np.sort(a))
    keys = ordered_bits(jnp.asarray(np.sort(a)))
    assert bool(jnp.all(keys[1:] >= keys[:-1]))
    np.testing.assert_array_equal(from_ordered_bits(keys, dtype), np.sort(a))


def test_argmax_and_count_are_numpy_s():
    a = np.array([1.0, 3.0, -2.0, 3.0, 0.5])
    pop = Population(5)
    assert int(pop.argmax(jnp.asarray(a))) == 1  # the first of two maxima
    a[4] = np.nan
    assert int(pop.argmax(jnp.asarray(a))) == 4  # a NaN, as jnp.argmax
    assert int(pop.n_where(jnp.asarray(a) > 0.7)) == 3
