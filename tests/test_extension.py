"""A new method and a new encoder written with public names only (`memoa_jax.AbstractMethod`,
`StepContext`, `MethodState`, `AbstractEncoder`, `map_agents`), run by `simulate` beside the
built-in ones, and checked against closed forms."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import memoa_jax as mj


class Persistence(mj.AbstractMethod):
    """`ŷ_{t+1} = y_t` for every agent, no control: a user-written baseline."""

    cost: mj.CostParams
    ridge_window: int = eqx.field(static=True, default=1)
    name: str = eqx.field(static=True, default="persistence")

    def step(self, ctx: mj.StepContext, state: mj.MethodState):
        y_t = ctx.y[ctx.t]
        nxt = jnp.broadcast_to(y_t[:, None], state.yhat.shape)
        return state.yhat, jnp.zeros(state.yhat.shape[1:], state.yhat.dtype), nxt


class GaussParams(eqx.Module):
    A: jax.Array
    b: jax.Array


class LinearGaussian(mj.AbstractEncoder):
    """`Z = A x 1ᵀ + b + σ wᵀ` (no activation): exact moments `E Z = A x 1ᵀ + b` and
    `E Z_ak Z_bk = E Z_ak E Z_bk + σ_a σ_b` (rows share `w_k`)."""

    d: int = eqx.field(static=True)
    d_x: int = eqx.field(static=True)
    p: int = eqx.field(static=True)
    sigma: float = 0.5

    def init(self, key, dtype=float):
        kA, kb = jr.split(key)
        return GaussParams(
            jr.normal(kA, (self.d, self.d_x), dtype), jr.normal(kb, (self.d, self.p), dtype)
        )

    def _pre(self, params, x):
        ax = sum(params.A[:, j] * x[j] for j in range(self.d_x))
        return ax[:, None] + params.b

    def features(self, params, x, w, prev=None):
        pre = self._pre(params, x)
        if pre.ndim < w.ndim + 1:  # shared parameters, many agents
            pre = pre[..., None]
        sig = jnp.full((self.d,) + (1,) * (pre.ndim - 1), self.sigma, pre.dtype)
        return pre + sig * w[None].astype(pre.dtype)

    def moment_parts(self, params, x, *, prev=None, key=None, t=None, kernels=mj.Kernels()):
        M = self._pre(params, x)
        return M, M[:, None] * M[None, :] + self.sigma**2

    def moments(self, params, x, kernels=mj.Kernels()):
        M, C = self.moment_parts(params, x)
        p = self.p
        outer = jnp.einsum("ak,bl->akbl", M, M)
        same = jnp.einsum("abk,kl->akbl", C, jnp.eye(p))
        return M, outer * (1 - jnp.eye(p))[None, :, None, :] + same


def _data(n=16):
    t = np.arange(n, dtype=np.float64)
    x = np.stack([np.sin(t / 3), np.cos(t / 5)], 1)
    y = np.stack([np.sin((t + 1) / 3), 0.3 * np.cos(t / 2)], 1)
    return jnp.asarray(x), jnp.asarray(y)


@pytest.mark.parametrize("homogeneity", ["h2", pytest.param("h1", marks=pytest.mark.slow)])
def test_a_user_method_runs_beside_memoa_on_a_user_encoder(homogeneity):
    x, y = _data()
    cost = mj.CostParams(q=1.0, lam=0.4, gamma=1.0, alpha=0.0)
    enc = LinearGaussian(d=2, d_x=2, p=3)
    methods = (mj.MeanFieldGame(cost, window=2, name="memoa"), Persistence(cost))
    sim = mj.Simulation(9, enc, methods, cost=cost, homogeneity=homogeneity)
    res = eqx.filter_jit(mj.simulate)(sim, x, y, key=jr.key(0))  # (one program)
    # the user's method is the lag-1 persistence forecast, for every agent
    np.testing.assert_allclose(res.summary["persistence"].avg_rmse, mj.persistence_rmse(y, 1))
    np.testing.assert_allclose(res.summary["persistence"].worst_rmse, mj.persistence_rmse(y, 1))
    assert np.isfinite(res.summary["memoa"].worst_rmse)
    assert res.names == ("memoa", "persistence")


def test_the_user_encoders_moments_are_those_of_its_features():
    """Its closed-form moments (which MEMOA's gains are solved from) against the empirical
    moments of 200 000 of its own feature draws (5-sigma Monte-Carlo bounds)."""
    enc = LinearGaussian(d=2, d_x=2, p=3)
    params = enc.init(jr.key(1))
    xt = jnp.array([0.3, -0.7])
    n = 200_000
    keys = jr.bits(jr.key(2), (2, n), jnp.uint32)
    z = np.asarray(enc.features(params, xt, enc.noise(keys, 4)))  # (d, p, n)
    M, S = map(np.asarray, enc.moments(params, xt))
    emp_S = np.einsum("akn,bln->akbl", z, z) / n
    np.testing.assert_allclose(z.mean(-1), M, atol=5 * 0.5 / np.sqrt(n))
    scale = np.sqrt(np.einsum("akn,bln->akbl", z**2, z**2) / n)  # bound on the sd of z_ak z_bl
    assert np.all(np.abs(emp_S - S) < 5 * scale / np.sqrt(n))
