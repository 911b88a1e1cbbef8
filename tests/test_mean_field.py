"""The closed-form mean-field policy against the spec's float64 references (spec §4, §6)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memoa_jax as mj

# Spec §6.11: deterministic fixture, T = 3, d = 1, p = 2.
FIX_M = np.array([[0.8, -0.3], [0.5, 0.4], [1.0, 0.2]])[:, None, :]
FIX_COV = np.array(
    [[[0.10, 0.02], [0.02, 0.20]], [[0.05, 0.0], [0.0, 0.30]], [[0.20, -0.05], [-0.05, 0.10]]]
)
FIX_Y = np.array([0.0, 1.0, 0.5, -0.2])[:, None]
FIX_COST = dict(q=1.0, lam=0.5, gamma=0.3, alpha=0.1)


def _second_moment(M, cov):
    """S[a,k,b,l] = M_ak M_bl + Cov(Z_ak, Z_bl), for d = 1 from a (p, p) covariance."""
    T, d, p = M.shape
    return np.einsum("sak,sbl->sakbl", M, M) + cov.reshape(T, d, p, d, p)


def _fixture():
    return jnp.asarray(FIX_M), jnp.asarray(_second_moment(FIX_M, FIX_COV)), jnp.asarray(FIX_Y)


def _random_instance(seed, T=4, d=2, p=3):
    """Moments of a genuine random matrix: S = M⊗M + PSD covariance of vec(Z)."""
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(T, d, p))
    B = rng.normal(size=(T, d * p, d * p)) * 0.4
    cov = np.einsum("sij,skj->sik", B, B)
    S = np.einsum("sak,sbl->sakbl", M, M) + cov.reshape(T, d, p, d, p)
    y = rng.normal(size=(T + 1, d))
    return jnp.asarray(M), jnp.asarray(S), jnp.asarray(y)


def test_fixture_spec_6_11():
    M, S, y = _fixture()
    for solve in (mj.solve_mean_field, jax.jit(mj.solve_mean_field)):
        sol = solve(M, S, y, mj.CostParams(**FIX_COST))
        np.testing.assert_allclose(
            sol.K[:, :, 0],
            [
                [-0.852931121678, 0.268321875606],
                [-0.947580485707, -0.341983750949],
                [-0.683572216097, -0.286659316428],
            ],
            atol=1e-10,
        )
        np.testing.assert_allclose(
            sol.L[:, :, 0],
            [
                [0.066350877610, -0.020873188322],
                [0.127139564627, 0.045884931001],
                [0.078398960851, 0.032876983582],
            ],
            atol=1e-10,
        )
        np.testing.assert_allclose(
            sol.g,
            [
                [0.558634846263, -0.175739805852],
                [0.252000172713, 0.090947381889],
                [-0.121034651049, -0.050756466569],
            ],
            atol=1e-10,
        )
        np.testing.assert_allclose(
            sol.P[:3, 0, 0], [0.452493270955, 0.679881845797, 0.388643880926], atol=1e-10
        )
        np.testing.assert_allclose(
            sol.Pi[:3, 0, 0], [-0.035200176049, -0.091221677922, -0.044573602742], atol=1e-10
        )
        np.testing.assert_allclose(
            sol.phi[:3, 0], [-0.296364504038, -0.180808221729, 0.068814055637], atol=1e-10
        )
        np.testing.assert_allclose(
            sol.m[:, 0], [0.0, 0.499629818766, 0.397874563626, 0.005710867426], atol=1e-10
        )


def test_scalar_one_step_closed_form():
    """Spec §6.1: d = p = 1, T = 1, ρ = 1, no terminal cost."""
    mu, v, q, lam, gamma, y1 = 0.8, 0.3, 1.0, 0.6, 0.2, 1.7
    s2 = mu**2 + v
    R = s2 * (q + lam) + gamma
    Rt = R - lam * mu**2
    K = -mu * (q + lam) / R
    L = lam * mu * (1 - mu**2 * (q + lam) / R) / Rt
    g = q * mu * y1 / Rt
    np.testing.assert_allclose(
        [K, L, g], [-0.751173708920, 0.145113102860, 1.030303030303], atol=1e-11
    )
    sol = mj.solve_mean_field(
        jnp.full((1, 1, 1), mu),
        jnp.full((1, 1, 1, 1, 1), s2),
        jnp.array([[0.0], [y1]]),
        mj.CostParams(q=q, lam=lam, gamma=gamma, alpha=0.0),
    )
    np.testing.assert_allclose([sol.K[0, 0, 0], sol.L[0, 0, 0], sol.g[0, 0]], [K, L, g], rtol=1e-13)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lambda_zero_is_the_single_agent_tracker(seed):
    """Spec §6.3: λ = 0 ⇒ L ≡ 0, Π ≡ 0 and (K, g) = the single-agent LQ tracker."""
    M, S, y = _random_instance(seed)
    cost = mj.CostParams(q=1.3, lam=0.0, gamma=0.7, alpha=0.2, q_T=0.5)
    sol = mj.solve_mean_field(M, S, y, cost)
    np.testing.assert_allclose(sol.L, 0.0, atol=1e-14)
    np.testing.assert_allclose(sol.Pi, 0.0, atol=1e-14)
    K, h, _ = mj.best_response_to_flow(M, S, y, jnp.zeros_like(y), cost)  # flow unused at λ=0
    np.testing.assert_allclose(sol.K, K, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sol.g, h, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("lam", [0.5, -0.4, 2.0])
def test_constant_target_invariance(lam):
    """Spec §6.4: if y ≡ c, agents on target do nothing: (K_s + L_s) c + g_s = 0."""
    M, S, _ = _random_instance(3)
    c = jnp.array([0.7, -1.1])
    y = jnp.broadcast_to(c, (5, 2))
    sol = mj.solve_mean_field(
        M, S, y, mj.CostParams(q=1.0, lam=lam, gamma=0.5, alpha=0.1, q_T=0.3, lam_T=0.2)
    )
    resid = jnp.einsum("spd,d->sp", sol.K + sol.L, c) + sol.g
    np.testing.assert_allclose(resid, 0.0, atol=1e-13)


def test_translation_equivariance(getkey):
    """Spec §6.5: β(ŷ + c, ȳ + c; y + c) = β(ŷ, ȳ; y)."""
    M, S, y = _random_instance(4)
    cost = mj.CostParams(q=1.0, lam=0.8, gamma=0.4, alpha=0.05, q_T=1.0, lam_T=0.5)
    c = jnp.array([2.5, -0.3])
    sol, sol_c = mj.solve_mean_field(M, S, y, cost), mj.solve_mean_field(M, S, y + c[None, :], cost)
    yhat, ybar = jax.random.normal(getkey(), (2, 2))
    for s in range(M.shape[0]):
        b = mj.mean_field_control(sol.K[s], sol.L[s], sol.g[s], yhat, ybar)
        bc = mj.mean_field_control(sol_c.K[s], sol_c.L[s], sol_c.g[s], yhat + c, ybar + c)
        np.testing.assert_allclose(bc, b, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize(
    "seed,d,p,cost",
    [
        (0, 1, 2, dict(q=1.0, lam=0.7, gamma=0.3, alpha=0.1)),
        (1, 2, 3, dict(q=1.0, lam=0.5, gamma=0.2, alpha=0.0, q_T=0.4, lam_T=0.3)),
        (2, 2, 3, dict(q=1.0, lam=-0.4, gamma=0.6, alpha=0.3)),
    ],
)
def test_nce_fixed_point_equals_closed_form(seed, d, p, cost):
    """Spec §6.6: the NCE fixed point of m ↦ E ŷ[BR(m)] is the closed-form flow, h = L m + g."""
    M, S, y = _random_instance(seed, T=5, d=d, p=p)
    c = mj.CostParams(**cost)
    sol = mj.solve_mean_field(M, S, y, c)
    m, h = mj.nce_fixed_point(M, S, y, c)
    np.testing.assert_allclose(m, sol.m, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(
        h, jnp.einsum("spd,sd->sp", sol.L, sol.m[:-1]) + sol.g, rtol=1e-11, atol=1e-12
    )


def test_singular_response_matrix_names_the_step():
    """A singular R̃ is a clear runtime error naming the window step, not a NaN (spec §4)."""
    M, S, y = _fixture()
    S = S.at[1].set(jnp.nan)  # moments at window step 1 are broken
    with pytest.raises(Exception, match=r"singular at window step s=1"):
        jax.block_until_ready(
            eqx.filter_jit(mj.solve_mean_field)(M, S, y, mj.CostParams(**FIX_COST)).K
        )


def test_singular_for_exact_cancellation():
    """d = p = 1, T = 1: R̃ = s₂(q+λ) + γ − λμ² vanishes at λ = −(s₂q + γ)/v."""
    mu, v, q, gamma = 0.8, 0.3, 1.0, 0.2
    lam = -((mu**2 + v) * q + gamma) / v
    cost = eqx.tree_at(lambda c: c.lam, mj.CostParams(q=q, gamma=gamma, alpha=0.0), lam)
    M, S = jnp.full((1, 1, 1), mu), jnp.full((1, 1, 1, 1, 1), mu**2 + v)
    with pytest.raises(Exception, match=r"singular at window step s=0"):
        jax.block_until_ready(mj.solve_mean_field(M, S, jnp.array([[0.0], [1.0]]), cost).K)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(gamma=0.0), "gamma=0.0"),
        (dict(q=-1.0), "q=-1.0"),
        (dict(q=1.0, lam=-1.5), "q \\+ lam > 0"),
        (dict(alpha=-0.1), "alpha=-0.1"),
        (dict(lam=float("nan")), "lam=nan"),
    ],
)
def test_bad_cost_weights(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mj.CostParams(**kwargs)
