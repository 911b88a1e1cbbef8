"""One path through the step: the features source (stored ring or recomputed from the
agents' keys) and a server with its own state."""

import jax
import jax.numpy as jnp
import numpy as np

import memoa_jax as mj
from memoa_jax.data import load_dataset


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


class _Smoothed(mj.AbstractServer):
    """A user's server with a state of its own: the uniform mixture of the clients, smoothed
    over time, `s_{t+1} = (1 − a) s_t + a ȳ_{t+1}` (the state `s` and a step counter)."""

    rate: jax.Array | float = 0.5  # (an array: one compilation for every rate)

    def init(self, d, dtype):
        return jnp.zeros((d,), dtype), jnp.zeros((), jnp.int32)

    def step(self, state, Y_t, y_t, Y_next, cum_loss, pop):
        del Y_t, y_t, cum_loss
        s, count = state
        mean = pop.mean(Y_next)
        s = jnp.where(count == 0, mean, (1 - self.rate) * s + self.rate * mean)
        return s, (s, count + 1)


def _server_run(server):
    ds = load_dataset("logistic", n_rows=12)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=2.0, alpha=0.01)
    enc = mj.RFNEncoder(d=1, d_x=ds.d_x, p=3, sigma=0.3)
    method = mj.LocalRidge(cost)
    sim = mj.Simulation(n_agents=8, encoder=enc, methods=(method,), cost=cost, server=server)
    run = mj.Run(sim, x, y, key=jax.random.key(0))
    carry = run.segment(run.init(), run.n_steps)
    return run, carry, run.finish(carry).steps[method.name], carry.state.server[method.name]


def test_a_server_with_its_own_state_runs():
    """The state goes through the loop's carry: rate 1 is the clients' mean ȳ_{t+1} (the
    server's error is the mean field's), rate ½ smooths it (the same at step 0 only)."""
    run, _, mean, (s, count) = _server_run(_Smoothed(rate=jnp.asarray(1.0)))
    np.testing.assert_allclose(mean.server_se, mean.mean_field_se, rtol=1e-12)
    assert int(count) == run.n_steps
    run, _, smooth, (s, count) = _server_run(_Smoothed(rate=jnp.asarray(0.5)))
    assert int(count) == run.n_steps
    pred, ybar = np.asarray(smooth.server_pred), np.asarray(mean.server_pred)
    np.testing.assert_array_equal(pred[-1], s)
    np.testing.assert_allclose(pred[0], ybar[0], rtol=1e-12)
    expected = ybar[0]
    for t in range(1, run.n_steps):
        expected = 0.5 * expected + 0.5 * ybar[t]
        np.testing.assert_allclose(pred[t], expected, rtol=1e-12)


def test_a_server_state_is_checkpointed(tmp_path):
    """The server's state is part of the saved carry: a run resumed from a checkpoint
    taken mid-run ends with the same bits as one run straight through."""
    run, _, whole, _ = _server_run(_Smoothed(rate=jnp.asarray(0.5)))
    half = run.segment(run.init(), 4)
    mj.save_checkpoint(tmp_path, run, half)
    resumed = mj.load_checkpoint(tmp_path, run)
    np.testing.assert_array_equal(
        resumed.state.server["g1_ridge"][0], half.state.server["g1_ridge"][0]
    )
    assert int(resumed.state.server["g1_ridge"][1]) == 4
    end = run.finish(run.segment(resumed, run.n_steps)).steps["g1_ridge"]
    np.testing.assert_array_equal(end.server_pred, whole.server_pred)
