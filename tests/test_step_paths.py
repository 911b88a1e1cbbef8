"""One path through the step: the features source (stored ring or recomputed from the
agents' keys)."""

import jax
import jax.numpy as jnp
import numpy as np

import memoa_jax as mj


def _setup(n=5, d=2, d_x=2, p=3, steps=7):
    enc = mj.RFNEncoder(d=d, d_x=d_x, p=p, sigma=0.5)
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=2.0, alpha=0.01)
    sim = mj.Simulation(n_agents=n, encoder=enc, methods=(mj.LocalRidge(cost),), cost=cost)
    x = jax.random.normal(jax.random.key(1), (steps, d_x))
    key = jax.random.key(2)
    params, noise_keys = mj.init_agents(sim, key=key)
    agents = mj.AgentDraws((params, noise_keys), lambda a: a)
    return sim, x, agents


def test_stored_and_recomputed_features_agree():
    """For every step t and lag 0..H (H = 3 here), the ring's Z_{t−lag} equals the one
    recomputed from the agent's keys, bit for bit, and both are zero before step 0."""
    sim, x, agents = _setup()
    R, n = 4, sim.n_agents
    stored = mj.StoredFeatures(sim.encoder, sim.kernels, x, R, None, sim.dtype)
    recomputed = mj.RecomputedFeatures(sim.encoder, sim.kernels, x)

    @jax.jit
    def run(ring):
        def step(ring, t):
            a, ring = stored.at(ring, agents, t)
            b, _ = recomputed.at(mj.FeatureRing(None, None), agents, t)
            lags = tuple(-lag for lag in range(R))
            return ring, (jnp.stack(a.read(a.src, lags)), jnp.stack(b.read(b.src, lags)))

        return jax.lax.scan(step, ring, jnp.arange(x.shape[0] - 1))[1]

    zs, zr = run(stored.init(agents, n))
    assert zs.shape == (x.shape[0] - 1, R, 2, 3, n)
    np.testing.assert_array_equal(zs, zr)
    assert not np.any(np.asarray(zs[0, 1:]))  # Z_{−1}, Z_{−2}, … are zeros
    assert np.any(np.asarray(zs[:, 0]))
