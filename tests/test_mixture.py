"""Server weighting (spec §8, §6.10)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memoa_jax as mj


def _dense_numpy(Y, y, kappa, eta):
    """FedMOE's closed form in float64 NumPy; Y = [ŷ¹ … ŷᴺ] is (d, n)."""
    n = Y.shape[1]
    A = 2 * (Y.T @ Y + kappa * np.eye(n))
    b = 2 * Y.T @ y
    Ab, A1 = np.linalg.solve(A, b), np.linalg.solve(A, np.ones(n))
    nu = (Ab.sum() - eta) / A1.sum()
    return Ab - nu * A1


@pytest.mark.parametrize("n,d", [(1, 1), (5, 1), (40, 3)])
def test_woodbury_equals_dense(n, d):
    rng = np.random.default_rng(n + d)
    Y, y = rng.normal(size=(d, n)), rng.normal(size=d)
    ref = _dense_numpy(Y, y, 0.7, 1.3)
    np.testing.assert_allclose(
        mj.ridge_weights(jnp.asarray(Y), jnp.asarray(y), 0.7, 1.3), ref, rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        mj.ridge_weights_dense(jnp.asarray(Y), jnp.asarray(y), 0.7, 1.3), ref, rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(ref.sum(), 1.3, rtol=1e-12)


def test_server_prediction_is_weights_times_next_predictions():
    rng = np.random.default_rng(0)
    Y, Yn, y = rng.normal(size=(2, 30)), rng.normal(size=(2, 30)), rng.normal(size=2)
    w = _dense_numpy(Y, y, 2.0, 1.0)
    srv = mj.RidgeMixture(kappa=2.0, eta=1.0)
    pred = srv.predict(
        jnp.asarray(Y), jnp.asarray(y), jnp.asarray(Yn), jnp.zeros(30), mj.Population(30)
    )
    np.testing.assert_allclose(pred, Yn @ w, rtol=1e-10)


def test_equal_predictions_and_large_ridge_give_uniform_weights():
    Y = jnp.full((1, 8), 0.3)
    np.testing.assert_allclose(mj.ridge_weights(Y, jnp.array([1.0]), 1.0, 1.0), 1 / 8, rtol=1e-12)
    Y = jax.random.normal(jax.random.key(0), (2, 8))
    np.testing.assert_allclose(mj.ridge_weights(Y, jnp.ones(2), 1e12, 2.0), 2 / 8, rtol=1e-9)


def test_hedge_is_a_stabilised_softmax():
    rng = np.random.default_rng(1)
    loss, Yn = rng.uniform(500, 600, size=12), rng.normal(size=(1, 12))
    w = np.exp(-0.5 * (loss - loss.min()))
    w /= w.sum()
    pred = mj.HedgeMixture(rate=0.5).predict(
        None, None, jnp.asarray(Yn), jnp.asarray(loss), mj.Population(len(loss))
    )
    np.testing.assert_allclose(pred, Yn @ w, rtol=1e-12)
    assert np.isfinite(pred).all()


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: mj.RidgeMixture(kappa=0.0), "kappa=0.0"),
        (lambda: mj.RidgeMixture(kappa=-1.0), "kappa=-1.0"),
        (lambda: mj.HedgeMixture(rate=-2.0), "rate=-2.0"),
    ],
)
def test_bad_server(make, match):
    with pytest.raises(ValueError, match=match):
        make()
