"""Online-gradient agents (SGD, Adam) vs a float64 NumPy reference of the same updates."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tree_allclose

import memoa_jax as mj
from memoa_jax._methods._online_gradient import EPS_ROOT
from memoa_jax.data import load_dataset


@pytest.fixture(scope="module")
def logistic():
    data = load_dataset("logistic", n_rows=15)
    return jnp.asarray(data.x), jnp.asarray(data.y)


def _features(sim, x, key):
    """Every agent's feature draws `Z[t, :, :, i]`, regenerated as the loop draws them."""
    params, noise_keys = mj.init_agents(sim, key=key)
    enc = sim.encoder

    def one(t, i):
        p_i = jax.tree.map(lambda a: a[..., i], params)
        return enc.features(p_i, x[t], enc.noise(noise_keys[:, i], t))

    every = jax.vmap(jax.vmap(one, (None, 0)), (0, None))
    return np.asarray(jax.jit(every)(jnp.arange(x.shape[0]), jnp.arange(sim.n_agents)))


def _reference(Z, y, optimizer, lr, decay, b1=0.9, b2=0.999, eps=1e-8):
    """NumPy float64: per agent, one step on ‖y_t − ŷ_{t−1} − Z_{t−1}β‖² + δ‖β‖², then predict."""
    T, N, d, p = Z.shape
    beta, m, v = np.zeros((N, p)), np.zeros((N, p)), np.zeros((N, p))
    yhat, base_prev, z_prev = np.tile(y[0], (N, 1)), np.zeros((N, d)), np.zeros((N, d, p))
    sse = np.zeros(N)
    for t in range(T - 1):
        r = y[t] - base_prev - np.einsum("nak,nk->na", z_prev, beta)
        grad = -2 * np.einsum("nak,na->nk", z_prev, r) + 2 * decay * beta
        if optimizer == "sgd":
            beta = beta - lr * grad
        else:  # Kingma & Ba 2015, Alg. 1, with optax's eps_root inside the square root
            m, v = b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * grad**2
            mh, vh = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
            beta = beta - lr * mh / (np.sqrt(vh + EPS_ROOT) + eps)
        nxt = yhat + np.einsum("nak,nk->na", Z[t], beta)
        sse += np.sum((y[t + 1] - nxt) ** 2, axis=1)
        base_prev, z_prev, yhat = yhat, Z[t], nxt
    return np.sqrt(sse / (T - 1))


@pytest.mark.parametrize("optimizer,lr,decay", [("sgd", 0.3, 0.0), ("adam", 0.05, 0.1)])
def test_matches_numpy_reference(logistic, getkey, optimizer, lr, decay):
    x, y = logistic
    method = mj.OnlineGradient(optimizer=optimizer, learning_rate=lr, weight_decay=decay)
    sim = mj.Simulation(
        n_agents=4, encoder=mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.1), methods=(method,)
    )
    key = getkey()
    res = eqx.filter_jit(mj.simulate)(sim, x, y, key=key)
    expected = _reference(_features(sim, x, key), np.asarray(y), optimizer, lr, decay)
    np.testing.assert_allclose(res.agent_rmse[method.name], expected, rtol=1e-12)
    assert not np.allclose(expected, expected[0])  # agents differ: a per-agent update


def test_beside_the_other_methods(logistic, getkey):
    """Joined to G1 in one loop, it sees the same draws as alone (its per-agent optimiser
    state rides in the carry beside G1's state-free one). That the other methods are
    unchanged by the carried state is `test_reference.py`'s bit-for-bit check."""
    cost = mj.CostParams(gamma=15.0, alpha=1e-4)
    ogd = mj.OnlineGradient(optimizer="adam", name="ogd_adam")
    base = mj.default_methods(cost)[1:2]
    sim = mj.Simulation(
        n_agents=5, encoder=mj.RFNEncoder(d=1, d_x=1, p=3), methods=(*base, ogd), cost=cost
    )
    key, run = getkey(), eqx.filter_jit(mj.simulate)
    joint = run(sim, *logistic, key=key)
    alone = run(eqx.tree_at(lambda s: s.methods, sim, (ogd,)), *logistic, key=key)
    assert tree_allclose(joint.summary["ogd_adam"], alone.summary["ogd_adam"], rtol=1e-12)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(optimizer="lbfgs"), "optimizer must be one of"),
        (dict(learning_rate=0.0), "learning_rate=0.0"),
        (dict(weight_decay=-1.0), "weight_decay=-1.0"),
    ],
)
def test_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        mj.OnlineGradient(**kw)
