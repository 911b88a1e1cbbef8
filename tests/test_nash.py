"""Nash verification (spec §5, §6): dense = reduced N-player equilibrium, exact evaluation and
best responses, O(1/N) convergence of the mean-field policy, Monte Carlo agreement."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import memoa_jax as mj
from memoa_jax import nash

# Spec §6.11: deterministic fixture, T = 3, d = 1, p = 2.
FIX_M = np.array([[0.8, -0.3], [0.5, 0.4], [1.0, 0.2]])[:, None, :]
FIX_COV = np.array(
    [[[0.10, 0.02], [0.02, 0.20]], [[0.05, 0.0], [0.0, 0.30]], [[0.20, -0.05], [-0.05, 0.10]]]
)
FIX_Y = np.array([0.0, 1.0, 0.5, -0.2])[:, None]
FIX_COST = mj.CostParams(q=1.0, lam=0.5, gamma=0.3, alpha=0.1)


def _fixture():
    S = np.einsum("sak,sbl->sakbl", FIX_M, FIX_M) + FIX_COV.reshape(3, 1, 2, 1, 2)
    return jnp.asarray(FIX_M), jnp.asarray(S), jnp.asarray(FIX_Y)


def _random_instance(seed, T=4, d=2, p=3):
    """Moments of a genuine random matrix: S = M⊗M + PSD covariance of vec(Z)."""
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(T, d, p)) * 0.7
    B = rng.normal(size=(T, d * p, d * p)) * 0.4
    cov = np.einsum("sij,skj->sik", B, B)
    S = np.einsum("sak,sbl->sakbl", M, M) + cov.reshape(T, d, p, d, p)
    y = rng.normal(size=(T + 1, d))
    return jnp.asarray(M), jnp.asarray(S), jnp.asarray(y)


INSTANCES = {
    # (seed, T, d, p, cost): d = 1 and d = 2, p = 3, with and without terminal costs, λ < 0
    "d1_plain": (1, 5, 1, 3, mj.CostParams(q=1.0, lam=0.5, gamma=0.5, alpha=0.1)),
    "d2_terminal": (
        2,
        4,
        2,
        3,
        mj.CostParams(q=1.0, lam=0.8, gamma=0.4, alpha=0.2, q_T=0.7, lam_T=0.3),
    ),
    "d2_anti_herding": (
        3,
        4,
        2,
        3,
        mj.CostParams(q=1.0, lam=-0.4, gamma=0.6, alpha=0.0, q_T=0.5, lam_T=-0.2),
    ),
}


def _instance(name):
    seed, T, d, p, cost = INSTANCES[name]
    return (*_random_instance(seed, T, d, p), cost)


# jitted once here (jit vs no jit: test_vmapped_sweep_equals_per_n_calls_and_jit)
_dense = jax.jit(nash.solve_fne_dense, static_argnums=4)
_reduced = jax.jit(nash.solve_fne_reduced)
_evaluate = jax.jit(nash.evaluate_policy)
_best_response = jax.jit(nash.best_response)
_exploitability = jax.jit(nash.exploitability)
_evaluate_dense = jax.jit(nash.evaluate_dense)
_best_response_dense = jax.jit(nash.best_response_dense)
_sweep = jax.jit(jax.vmap(nash.nash_gap, in_axes=(None, None, None, None, 0)))


def test_fixture_spec_6_11():
    M, S, y = _fixture()
    for solve in (_reduced,):
        fne = solve(M, S, y, FIX_COST, 3.0)
        np.testing.assert_allclose(fne.K[0, :, 0], [-0.844606259642, 0.269132992092], atol=1e-10)
        np.testing.assert_allclose(fne.L[0, :, 0], [0.046547641531, -0.014832362296], atol=1e-10)
        np.testing.assert_allclose(fne.h[0], [0.574534333478, -0.183074826244], atol=1e-10)
        np.testing.assert_allclose(fne.J, 0.486590339826, atol=1e-10)
        one = solve(M, S, y, FIX_COST, 1.0)
        np.testing.assert_allclose(one.K[2, :, 0], [-0.643137254902, -0.235294117647], atol=1e-10)
        assert np.all(one.L == 0)
    mf = mj.solve_mean_field(M, S, y, FIX_COST)
    K, L, h = nash.mean_field_profile(mf)
    np.testing.assert_allclose(_evaluate(M, S, y, FIX_COST, 3, K, L, h), 0.486692408539, atol=1e-10)
    np.testing.assert_allclose(
        _best_response(M, S, y, FIX_COST, 3, K, L, h).J, 0.486046548339, atol=1e-10
    )


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("name", ["d2_terminal", "d2_anti_herding"])
def test_dense_equals_reduced(name, n):
    M, S, y, cost = _instance(name)
    dense = _dense(M, S, y, cost, n)
    red = _reduced(M, S, y, cost, float(n))
    for a, b in [(dense.K, red.K), (dense.L, red.L), (dense.h, red.h)]:
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dense.J, red.J, rtol=1e-12, atol=1e-12)  # every agent alike
    # the dense equilibrium is symmetric: G_ii all equal, G_ij all equal, H_i all equal
    T, d, p = M.shape
    G = np.asarray(dense.G).reshape(T, n, p, n, d)
    H = np.asarray(dense.H).reshape(T, n, p)
    for i in range(n):
        np.testing.assert_allclose(H[:, i], H[:, 0], atol=1e-12)
        for j in range(n):
            ref = G[:, 0, :, 0] if i == j else G[:, 0, :, 1]
            np.testing.assert_allclose(G[:, i, :, j], ref, atol=1e-12)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("realized", [True, False])
def test_evaluation_and_best_response_match_dense(n, realized):
    M, S, y, cost = _instance("d2_terminal")
    mf = mj.solve_mean_field(M, S, y, cost)
    K, L, h = nash.mean_field_profile(mf, "realized" if realized else "flow")
    G, H = nash.stack_policy(K, L, h, n)
    J = _evaluate(M, S, y, cost, float(n), K, L, h)
    np.testing.assert_allclose(_evaluate_dense(M, S, y, cost, G, H), J, rtol=1e-12)
    br = _best_response(M, S, y, cost, float(n), K, L, h)
    k_dense, h_dense, J_dense = _best_response_dense(M, S, y, cost, G, H)
    np.testing.assert_allclose(br.J, J_dense, rtol=1e-12)
    T, d, p = M.shape
    np.testing.assert_allclose(k_dense[:, :, :d], br.K_own, atol=1e-12)
    if n > 1:
        np.testing.assert_allclose(k_dense[:, :, d : 2 * d], br.K_other, atol=1e-12)
    np.testing.assert_allclose(h_dense, br.h, atol=1e-12)
    # the performance-difference ε equals the plain difference of the two costs
    eps = _exploitability(M, S, y, cost, float(n), K, L, h)
    assert eps >= 0
    np.testing.assert_allclose(eps, J - br.J, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("n", [2, 7, 1000, 1e6])
def test_fne_is_its_own_best_response(n):
    M, S, y, cost = _instance("d2_anti_herding")
    n = float(n)
    fne = _reduced(M, S, y, cost, n)
    br = _best_response(M, S, y, cost, n, fne.K, fne.L, fne.h)
    assert abs(_exploitability(M, S, y, cost, n, fne.K, fne.L, fne.h, br)) < 1e-10
    assert abs(float(fne.J - br.J)) < 1e-10
    np.testing.assert_allclose(br.K_own, fne.K + fne.L / n, atol=1e-10)
    np.testing.assert_allclose(br.K_other, fne.L / n, atol=1e-10)
    np.testing.assert_allclose(br.h, fne.h, atol=1e-10)


def test_single_agent_and_uncoupled_reduce_to_the_tracker():
    M, S, y, cost = _instance("d2_terminal")
    uncoupled = eqx.tree_at(lambda c: (c.lam, c.lam_T), cost, (0.0, 0.0))
    T = M.shape[0]
    # N = 1: ȳ = ŷ, the coupling terms vanish: the λ = 0 tracker (spec §6.2)
    K0, h0, _ = mj.best_response_to_flow(M, S, y, jnp.zeros((T + 1, M.shape[1])), uncoupled)
    one = _reduced(M, S, y, cost, 1.0)
    np.testing.assert_allclose(one.K, K0, atol=1e-12)
    np.testing.assert_allclose(one.h, h0, atol=1e-12)
    assert np.all(one.L == 0)
    # λ = λ_T = 0: for every N the equilibrium is the single-agent tracker (spec §6.3)
    for n in (1.0, 3.0, 1000.0):
        fne = _reduced(M, S, y, uncoupled, n)
        np.testing.assert_allclose(fne.K, K0, atol=1e-12)
        np.testing.assert_allclose(fne.L, 0.0, atol=1e-12)
        np.testing.assert_allclose(fne.h, h0, atol=1e-12)


def _slope(n, v):
    return np.polyfit(np.log(n), np.log(v), 1)[0]


@pytest.mark.parametrize("name", list(INSTANCES))
def test_gain_gap_is_order_one_over_n(name):
    M, S, y, cost = _instance(name)
    sizes = jnp.asarray(np.geomspace(10, 1e6, 8))
    gaps = _sweep(M, S, y, cost, sizes)
    assert -1.05 <= _slope(sizes, gaps.gain_gap) <= -0.95
    assert np.all(gaps.eps >= -1e-10)
    assert -2.05 <= _slope(sizes, gaps.eps) <= -1.95  # ε-Nash gap O(1/N²)


def test_eps_nonnegative_small_n():
    M, S, y, cost = _instance("d2_anti_herding")
    sizes = jnp.asarray([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0])  # 8: one compilation
    gaps = _sweep(M, S, y, cost, sizes)
    assert np.all(gaps.eps >= -1e-10)
    np.testing.assert_allclose(gaps.eps, gaps.J_mf - gaps.J_br, rtol=1e-6, atol=1e-13)
    assert -2.1 <= _slope(sizes[3:], gaps.eps[3:]) <= -1.85  # O(1/N²) from N = 8 on


@pytest.mark.slow
def test_eps_with_deterministic_flow():
    M, S, y, cost = _instance("d2_anti_herding")
    sizes = jnp.asarray(np.geomspace(1, 1e6, 13))
    flow = lambda M, S, y, c, n: nash.nash_gap(M, S, y, c, n, mean_field="flow")
    gaps = jax.jit(jax.vmap(flow, in_axes=(None, None, None, None, 0)))(M, S, y, cost, sizes)
    assert np.all(gaps.eps >= -1e-10)
    np.testing.assert_allclose(gaps.eps[:5], (gaps.J_mf - gaps.J_br)[:5], rtol=1e-6)
    # with the deterministic flow the agents ignore the realized mean's O(1/N) deviation:
    # the gap is O(1/N), not O(1/N²) (measured slope −1.02)
    assert -1.1 <= _slope(sizes[3:], gaps.eps[3:]) <= -0.95


def test_vmapped_sweep_equals_per_n_calls_and_jit():
    M, S, y, cost = _instance("d2_terminal")
    sizes = [1.0, 2.0, 3.0, 5.0, 17.0, 1e4, 1e6, 1e9]  # 8: the compilation of the tests above
    swept = _sweep(M, S, y, cost, jnp.asarray(sizes))
    mf = mj.solve_mean_field(M, S, y, cost)
    prof = nash.mean_field_profile(mf)
    for i, n in enumerate(sizes):
        fne = _reduced(M, S, y, cost, n)
        br = _best_response(M, S, y, cost, n, *prof)
        per_n = dict(
            J_fne=fne.J,
            J_mf=_evaluate(M, S, y, cost, n, *prof),
            J_br=br.J,
            eps=_exploitability(M, S, y, cost, n, *prof, br),
            gain_gap=max(
                np.max(np.abs(fne.K - mf.K)),
                np.max(np.abs(fne.L - mf.L)),
                np.max(np.abs(fne.h - mf.g)),
            ),
        )
        for field, value in per_n.items():
            np.testing.assert_allclose(getattr(swept, field)[i], value, rtol=1e-10, atol=1e-15)
    # jit vs no jit (eager is slow: one N)
    red = nash.solve_fne_reduced(M, S, y, cost, 5.0)
    for a, b in zip(jax.tree.leaves(red), jax.tree.leaves(_reduced(M, S, y, cost, 5.0))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_bad_input():
    M, S, y = _fixture()
    for n in (0, 0.5, -3, float("nan")):
        with pytest.raises(ValueError, match="n_agents"):
            nash.solve_fne_reduced(M, S, y, FIX_COST, n)
        with pytest.raises(ValueError, match="n_agents"):
            nash.solve_fne_dense(M, S, y, FIX_COST, n)
    with pytest.raises(ValueError, match="integer"):
        nash.solve_fne_dense(M, S, y, FIX_COST, 2.5)
    with pytest.raises(ValueError, match="mean_field"):
        nash.nash_gap(M, S, y, FIX_COST, 3, mean_field="bogus")
    # traced N < 1 inside jit
    with pytest.raises(Exception, match="at least 1"):
        jax.jit(nash.solve_fne_reduced)(M, S, y, FIX_COST, 0.0).J.block_until_ready()


def test_singular_system_is_reported():
    # invalid moments (negative second moment at s = 2) make agent 1's system singular at N = 1
    M, S, y = _fixture()
    rho = 1.0  # s = T - 1
    S_bad = S.at[2].set(
        jnp.zeros_like(S[2])
        .at[0, 0, 0, 0]
        .set(-FIX_COST.gamma * rho / FIX_COST.q)
        .at[0, 1, 0, 1]
        .set(-FIX_COST.gamma * rho / FIX_COST.q)
    )
    M_bad = M.at[2].set(0.0)
    for solve in (_reduced,):
        with pytest.raises(Exception, match="singular at window step s=2"):
            solve(M_bad, S_bad, y, FIX_COST, 1.0).K.block_until_ready()
    with pytest.raises(Exception, match="singular at window step s=2"):
        _dense(M_bad, S_bad, y, FIX_COST, 1).K.block_until_ready()


def _rfn_window(T=4, d=1, p=3, seed=0):
    enc = mj.RFNEncoder(d=d, d_x=2, p=p, sigma=1.0)
    k1, k2, k3 = jr.split(jr.key(seed), 3)
    params = enc.init(k1, jnp.float64)
    x = jr.normal(k2, (T, 2), jnp.float64)
    y = jnp.cumsum(0.5 * jr.normal(k3, (T + 1, d), jnp.float64), axis=0)
    return enc, params, x, y


def _check_monte_carlo(n, reps, d):
    enc, params, x, y = _rfn_window(d=d)
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=1.0, alpha=0.1)
    res = eqx.filter_jit(nash.monte_carlo)(enc, params, x, y, cost, n, key=jr.key(7), n_reps=reps)
    M, S = nash.window_moments(enc, params, x)
    K, L, h = nash.mean_field_profile(mj.solve_mean_field(M, S, y, cost))
    J_mf = _evaluate(M, S, y, cost, float(n), K, L, h)
    J_fne = _reduced(M, S, y, cost, float(n)).J
    se = lambda a: np.std(a, ddof=1) / np.sqrt(reps)
    # realized costs estimate the exact expectations (CLT across replications)
    assert abs(np.mean(res.cost_mf) - J_mf) < 4 * se(res.cost_mf)
    assert abs(np.mean(res.cost_fne) - J_fne) < 4 * se(res.cost_fne)
    assert abs(np.mean(res.cost_diff) - (J_mf - J_fne)) < 4 * se(res.cost_diff) + 1e-15
    # under the MF policy E ȳ_s = m_s exactly: the deviation is sampling noise
    dev = np.asarray(res.ybar_mf - res.flow)[:, 1:]
    assert np.all(np.abs(dev.mean(0)) < 4.5 * dev.std(0, ddof=1) / np.sqrt(reps))
    assert np.all(np.abs(dev) < 6 * np.asarray(res.se_mf)[:, 1:])
    return res


def test_monte_carlo_matches_exact_costs():
    _check_monte_carlo(n=3000, reps=8, d=2)


@pytest.mark.slow
def test_monte_carlo_million_agents():
    res = _check_monte_carlo(n=1_000_000, reps=6, d=1)
    assert np.max(np.abs(res.ybar_mf - res.flow)) < 5e-3
