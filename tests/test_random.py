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
