"""RFN closed-form moments against Monte Carlo (spec §2.1, §6.9)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memoa_jax as mj


@pytest.mark.parametrize("d,p", [(1, 4), (2, 3), (3, 2)])
def test_rfn_moments_match_monte_carlo(d, p):
    rng = np.random.default_rng(d * 10 + p)
    pre = rng.normal(size=(d, p))
    sigma = rng.uniform(0.3, 1.5, size=d)
    M, S = mj.rfn_moments(jnp.asarray(pre), jnp.asarray(sigma))
    n = 400_000
    w = rng.standard_normal((n, p))  # one w per draw, shared by the rows (spec §2.1)
    Z = np.maximum(pre[None] + sigma[None, :, None] * w[:, None, :], 0.0).reshape(n, d * p)
    mean_mc = Z.mean(0).reshape(d, p)
    second_mc = (Z.T @ Z / n).reshape(d, p, d, p)
    # CLT-sized tolerance: 5 standard errors of each Monte Carlo average
    se_mean = Z.std(0).reshape(d, p) / np.sqrt(n)
    se_second = np.sqrt(((Z[:, :, None] * Z[:, None, :]) ** 2).mean(0) / n).reshape(d, p, d, p)
    assert np.all(np.abs(mean_mc - M) <= 5 * se_mean + 1e-6)
    assert np.all(np.abs(second_mc - S) <= 5 * se_second + 1e-6)  # atol: rare-tail entries


def test_second_moment_operator_is_expected_quadratic_form():
    """𝔐(Q) = E[Zᵀ Q Z], checked on the Monte Carlo sample of an RFN."""
    rng = np.random.default_rng(7)
    d, p, n = 2, 3, 300_000
    pre, sigma = rng.normal(size=(d, p)), np.array([0.5, 0.9])
    B = rng.normal(size=(d, d))
    Q = B @ B.T
    _, S = mj.rfn_moments(jnp.asarray(pre), jnp.asarray(sigma))
    w = rng.standard_normal((n, p))
    Z = np.maximum(pre[None] + sigma[None, :, None] * w[:, None, :], 0.0)
    mc = np.einsum("nak,ab,nbl->kl", Z, Q, Z) / n
    np.testing.assert_allclose(mj.second_moment_operator(jnp.asarray(Q), S), mc, atol=0.03)


def test_diagonal_formula_is_the_same_row_case():
    """E Z² = (a² + σ²)Φ(r) + aσφ(r) is the a = b case of the shared-noise formula."""
    a, s = 0.37, 0.8
    _, S = mj.rfn_moments(jnp.array([[a]]), jnp.array([s]))
    r = a / s
    Phi = 0.5 * (1 + jax.scipy.special.erf(r / np.sqrt(2)))
    phi = np.exp(-0.5 * r * r) / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(S[0, 0, 0, 0], (a * a + s * s) * Phi + a * s * phi, rtol=1e-14)


def test_encoder_features_have_those_moments(getkey):
    enc = mj.RFNEncoder(d=2, d_x=3, p=2, sigma=0.4)
    params = enc.init(getkey())
    x = jnp.array([0.3, -1.0, 0.5])
    keys = jax.random.bits(getkey(), (2, 200_000), jnp.uint32)  # two-word noise keys
    Z = jax.vmap(lambda k: enc.features(params, x, enc.noise(k, 7)), in_axes=-1)(keys)
    M, _ = enc.moments(params, x)
    se = jnp.std(Z, axis=0) / np.sqrt(Z.shape[0])
    assert jnp.all(jnp.abs(jnp.mean(Z, axis=0) - M) <= 5 * se + 1e-12)


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(d=0, d_x=1, p=2), "d=0"), (dict(d=1, d_x=1, p=2, sigma=-0.1), "sigma=-0.1")],
)
def test_bad_encoder(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mj.RFNEncoder(**kwargs)


def test_population_second_moment_is_the_mean_of_agents():
    """H2: assembling E_i[M_i⊗M_i] and E_i[C_i] gives the mean of the agents' S_i."""
    rng = np.random.default_rng(11)
    n, d, p = 7, 2, 3
    pre, sigma = jnp.asarray(rng.normal(size=(n, d, p))), jnp.asarray([0.4, 1.1])
    Ms, Ss = jax.vmap(mj.rfn_moments, in_axes=(0, None))(pre, sigma)
    from memoa_jax._moments import assemble_second_moment, rfn_moment_parts

    Ms2, Cs = jax.vmap(rfn_moment_parts, in_axes=(0, None))(pre, sigma)
    S = assemble_second_moment(jnp.einsum("nak,nbl->akbl", Ms2, Ms2) / n, jnp.mean(Cs, 0))
    np.testing.assert_allclose(S, jnp.mean(Ss, 0), rtol=1e-13)


def test_normal_cdf_and_density_match_scipy():
    """`ndtr_and_pdf` (Cephes' branches, one shared exp) against SciPy in float64, across
    the branch boundaries |x| = √2 (erf / erfc) and 8√2 (the two erfc fits) and both tails."""
    import scipy.special

    from memoa_jax._kernels import ndtr_and_pdf

    x = np.concatenate([np.linspace(-40, 40, 40001), np.linspace(-1.6, 1.6, 20001)])
    edges = np.sqrt(2) * np.array([-8, -1, 1, 8]) + np.array([[-1e-12], [1e-12]])
    x = np.concatenate([x, edges.ravel()])
    cdf, pdf = map(np.asarray, ndtr_and_pdf(jnp.asarray(x)))
    ref = scipy.special.ndtr(x)
    np.testing.assert_allclose(cdf, ref, rtol=0, atol=2e-16)
    np.testing.assert_allclose(pdf, np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi), rtol=0, atol=2e-16)
    body = ref > 1e-20  # relative accuracy wherever the cdf is not negligible
    np.testing.assert_allclose(cdf[body], ref[body], rtol=5e-14)
