"""The counter-based step noise (`_random.py`): the hash is `jax.random`'s Threefry-2x32, the
draws are standard normal, and an agent's draws depend only on its key and the step."""

import jax
import jax.extend.random as jxr
import jax.numpy as jnp
import numpy as np
import scipy.stats

from memoa_jax._random import agent_normals, threefry2x32


def test_threefry_is_jax_threefry():
    rng = np.random.default_rng(0)
    for _ in range(5):
        key = rng.integers(0, 2**32, size=2, dtype=np.uint32)
        count = rng.integers(0, 2**32, size=16, dtype=np.uint32)
        expected = np.asarray(jxr.threefry_2x32(jnp.asarray(key), jnp.asarray(count)))
        x0, x1 = threefry2x32(
            jnp.uint32(key[0]), jnp.uint32(key[1]), jnp.asarray(count[:8]), jnp.asarray(count[8:])
        )
        np.testing.assert_array_equal(np.concatenate([x0, x1]), expected)


def test_normals_are_standard_normal(getkey):
    keys = jax.random.bits(getkey(), (2, 100_000), jnp.uint32)
    raw = agent_normals(keys, 11, 4)
    assert raw.shape == (4, 100_000) and raw.dtype == jnp.float32  # the committed stream
    w = np.asarray(raw, np.float64)
    for row in w:  # each coordinate N(0, 1): Kolmogorov-Smirnov at a fixed seed
        assert scipy.stats.kstest(row, "norm").pvalue > 1e-3
    # coordinates and steps uncorrelated (CLT-sized bound, 5 sigma)
    w2 = np.asarray(agent_normals(keys, 12, 4), np.float64)
    corr = np.corrcoef(np.concatenate([w, w2]))
    assert np.max(np.abs(corr - np.eye(8))) < 5 / np.sqrt(w.shape[1])


def test_population_draws_are_per_agent_draws(getkey):
    """Broadcast over a trailing agent axis = one agent at a time (so chunks, shards and
    padded populations see the same draws)."""
    keys = jax.random.bits(getkey(), (2, 37), jnp.uint32)
    together = agent_normals(keys, 5, 3)
    one_by_one = jnp.stack([agent_normals(keys[:, i], 5, 3) for i in range(37)], axis=-1)
    np.testing.assert_array_equal(together, one_by_one)
    assert not np.allclose(together, agent_normals(keys, 6, 3))  # a new step, new draws


def test_agent_keys_are_64_bit():
    """Agents `i` and `i + 2³²` get different keys and draws; below 2³² an agent keeps
    `jax.random.fold_in`'s key (every stored result's bits); the row form, the `jax.random`
    form and the `(hi, lo)` form (64-bit indices without x64) agree. Index slices only:
    nothing of the population's size is allocated."""
    import jax.random as jr

    import memoa_jax as mj
    from memoa_jax._random import fold_in_index, fold_in_rows

    key = jr.key(7)
    low = jnp.arange(2**32 - 6, 2**32, dtype=jnp.int64)  # the last agents of 32 bits
    high = low + 2**32
    words = jr.key_data(key)
    for a in (low, high, high + 2**40):
        hi, lo = (a >> 32).astype(jnp.uint32), a.astype(jnp.uint32)
        rows_ = fold_in_rows(words, a)
        np.testing.assert_array_equal(fold_in_rows(words, (hi, lo)), rows_)
        one = jax.vmap(lambda i: jr.key_data(fold_in_index(key, i)), out_axes=-1)(a)
        np.testing.assert_array_equal(one, rows_)
    per_agent = jax.vmap(lambda i: jr.key_data(jr.fold_in(key, i)), out_axes=-1)(low)
    np.testing.assert_array_equal(fold_in_rows(words, low), per_agent)
    np.testing.assert_array_equal(fold_in_rows(words, low.astype(jnp.uint32)), per_agent)
    assert not np.any(np.asarray(fold_in_rows(words, high) == fold_in_rows(words, low)))

    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    enc = mj.RFNEncoder(d=1, d_x=1, p=3)
    for kernels in ("tuned", "plain"):
        sim = mj.Simulation(8, enc, mj.default_methods(cost)[:1], kernels=kernels)
        q_low, k_low = mj.agent_draws(sim, key, low)
        q_high, k_high = mj.agent_draws(sim, key, high)
        assert not np.any(np.asarray(k_low == k_high))
        assert not np.any(np.asarray(q_low.A == q_high.A))
        np.testing.assert_array_equal(mj.agent_draws(sim, key, low.astype(jnp.uint32))[1], k_low)
        pair = ((high >> 32).astype(jnp.uint32), high.astype(jnp.uint32))
        np.testing.assert_array_equal(mj.agent_draws(sim, key, pair)[1], k_high)
        if kernels == "tuned":
            tuned = (q_high, k_high)
        else:  # the two forms of the `threefry` trick: the same bits past 2³² too
            for u, v in zip(jax.tree.leaves(tuned), jax.tree.leaves((q_high, k_high))):
                np.testing.assert_array_equal(u, v)
    # agents below 2³¹ are those of an int32 index, as every run so far
    small = jnp.arange(5, 12, dtype=jnp.int32)
    for u, v in zip(
        jax.tree.leaves(mj.agent_draws(sim, key, small)),
        jax.tree.leaves(mj.agent_draws(sim, key, small.astype(jnp.int64))),
    ):
        np.testing.assert_array_equal(u, v)
