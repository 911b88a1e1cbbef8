"""Echo-state (ESN) agents (spec §1.2): reservoir, Monte-Carlo moments, the loop, the CLI."""

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy.stats import norm

import memoa_jax as mj
from memoa_jax._moments import assemble_second_moment
from memoa_jax.cli import main
from memoa_jax.data import load_dataset


def _setup(getkey, d=2, d_x=3, p=4, sigma=(1.5, 3.0), n_mc=16):
    enc = mj.ESNEncoder(d=d, d_x=d_x, p=p, sigma=jnp.asarray(sigma), n_mc=n_mc)
    params = enc.init(getkey())
    x = jr.normal(getkey(), (d_x,))
    prev = jr.uniform(getkey(), (d, p))
    return enc, params, x, prev


def _numpy_pre(params, x, prev):
    A, B, b = (np.asarray(a) for a in (params.A, params.B, params.b))
    return (A @ np.asarray(x))[:, None] + B @ np.asarray(prev) + b


def test_features_follow_the_reservoir_equation(getkey):
    enc, params, x, prev = _setup(getkey)
    pre = _numpy_pre(params, x, prev)
    np.testing.assert_allclose(enc.preactivation(params, x, prev), pre, rtol=1e-12)
    w = enc.noise(jr.bits(getkey(), (2,), jnp.uint32), 3)
    z = np.asarray(enc.features(params, x, w, prev))
    w = np.asarray(w, np.float64)
    sig = np.asarray(enc.sigma)[:, None]
    np.testing.assert_allclose(z, np.clip((pre + sig * w) / 6 + 0.5, 0, 1), rtol=1e-12, atol=0)
    assert z.min() >= 0 and z.max() <= 1
    # the state matters: another Z_{t−1}, same noise, other features
    assert not np.allclose(enc.features(params, x, w, 0 * prev), z)


@pytest.mark.slow  # the default run stays under 10 min on 2 cores; run with -m slow
def test_population_form_is_per_agent_form(getkey):
    """With a trailing agent axis (per-agent or shared parameters), agent i's features and
    moments are those of agent i alone."""
    enc = mj.ESNEncoder(d=2, d_x=3, p=4, sigma=jnp.asarray([1.5, 3.0]), n_mc=5)
    n = 6
    params = jax.vmap(enc.init, out_axes=-1)(jr.split(getkey(), n))
    x = jr.normal(getkey(), (3,))
    prev = jr.uniform(getkey(), (2, 4, n))
    keys = jr.bits(getkey(), (2, n), jnp.uint32)
    one = lambda a, i: a[..., i]
    z = enc.features(params, x, enc.noise(keys, 7), prev)
    M, C = enc.moment_parts(params, x, prev=prev, key=keys, t=7)
    shared = jax.tree.map(lambda a: a[..., 0], params)
    z_shared = enc.features(shared, x, enc.noise(keys, 7), prev)
    for i in range(n):
        p_i = jax.tree.map(lambda a: one(a, i), params)
        w_i = enc.noise(keys[:, i], 7)
        np.testing.assert_allclose(z[..., i], enc.features(p_i, x, w_i, prev[..., i]), rtol=1e-13)
        np.testing.assert_allclose(z_shared[..., i], enc.features(shared, x, w_i, prev[..., i]))
        M_i, C_i = enc.moment_parts(p_i, x, prev=prev[..., i], key=keys[:, i], t=7)
        np.testing.assert_allclose(M[..., i], M_i, rtol=1e-13)
        np.testing.assert_allclose(C[..., i], C_i, rtol=1e-13)


def test_mc_moments_against_closed_form_mean_and_independent_mc(getkey):
    enc, params, x, prev = _setup(getkey, n_mc=40_000)
    M, C = enc.moment_parts(params, x, prev=prev, key=jr.bits(getkey(), (2,), jnp.uint32), t=0)
    pre = _numpy_pre(params, x, prev)
    sig = np.asarray(enc.sigma)[:, None]
    # E clip(μ + τ w, 0, 1), μ = pre/6 + 1/2, τ = σ/6: a clipped Gaussian, closed form
    mu, tau = pre / 6 + 0.5, sig / 6
    lo, hi = -mu / tau, (1 - mu) / tau
    exact = mu * (norm.cdf(hi) - norm.cdf(lo)) + tau * (norm.pdf(lo) - norm.pdf(hi)) + norm.sf(hi)
    tol = 5 * 0.5 / math.sqrt(enc.n_mc)  # Z ∈ [0, 1]: standard deviation ≤ 1/2
    np.testing.assert_allclose(M, exact, atol=tol)
    # second moments against a NumPy Monte Carlo with its own generator (rows share w_k)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((200_000, enc.p))
    z = np.clip((pre[None] + sig[None] * w[:, None, :]) / 6 + 0.5, 0, 1)
    C_np = np.einsum("nak,nbk->abk", z, z) / len(w)
    np.testing.assert_allclose(C, C_np, atol=tol + 5 * 0.5 / math.sqrt(len(w)))
    # the assembled (d p d p) tensor: cross-column entries factorise given the state
    S = np.asarray(assemble_second_moment(jnp.einsum("ak,bl->akbl", M, M), C))
    S_np = np.einsum("nak,nbl->akbl", z, z) / len(w)
    np.testing.assert_allclose(S, S_np, atol=2 * tol)


@pytest.mark.parametrize("homogeneity", ["h2", "h1"])
def test_esn_run_is_finite_and_deterministic(homogeneity):
    data = load_dataset("logistic").head(25)
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    enc = mj.ESNEncoder(d=1, d_x=1, p=3, sigma=0.5, n_mc=8)
    methods = (mj.MeanFieldGame(cost, window=3), mj.LocalRidge(cost))
    sim = mj.Simulation(
        n_agents=6, encoder=enc, methods=methods, cost=cost, homogeneity=homogeneity
    )
    run = eqx.filter_jit(mj.simulate)
    a = run(sim, data.x, data.y, key=jr.key(1))
    b = run(sim, data.x, data.y, key=jr.key(1))
    c = run(sim, data.x, data.y, key=jr.key(2))
    for m in ("memoa", "g1_ridge"):
        for f, v in a.summary[m]._asdict().items():
            assert np.all(np.isfinite(np.asarray(v))), (m, f)
            np.testing.assert_array_equal(v, b.summary[m]._asdict()[f])
        assert float(a.summary[m].avg_rmse) != float(c.summary[m].avg_rmse)
    assert jax.tree.all(jax.tree.map(lambda u, v: bool(jnp.all(u == v)), a.steps, b.steps))


@pytest.mark.slow  # the default run stays under 10 min on 2 cores; run with -m slow
def test_cli_encoder_esn(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--encoder", "esn", "--dataset", "periodic", "--rows", "20", "-n", "4"]
    args += ["--seeds", "1", "--methods", "memoa", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    rec = json.loads((out / "results.json").read_text())
    assert math.isfinite(rec["summary"]["memoa"]["worst_rmse"]["mean"])
    assert main([*args[:-1], str(tmp_path / "x"), "--mc-samples", "0"]) == 2
    assert "--mc-samples must be at least 1, got 0" in capsys.readouterr().err
