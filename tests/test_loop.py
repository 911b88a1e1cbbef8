"""The online loop: transformations (jit, chunking, vmap), joint vs separate runs, bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tree_allclose

import memoa_jax as mj
from memoa_jax.data import load_dataset


def _sim(n_agents=6, homogeneity="h2", batch_size=None, **kw):
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    return mj.Simulation(
        n_agents=n_agents,
        encoder=mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.1),
        methods=mj.default_methods(cost, window=3, ridge_window=3),
        cost=cost,
        homogeneity=homogeneity,
        batch_size=batch_size,
        **kw,
    )


@pytest.fixture(scope="module")
def logistic():
    data = load_dataset("logistic", n_rows=24)
    return jnp.asarray(data.x), jnp.asarray(data.y)


@pytest.mark.parametrize("every", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_jit_equals_no_jit(logistic, getkey, every):
    """jit = eager: MEMOA by default (its warm-up steps are G1's `greedy_step`; eager runs
    op by op, slowly), every method under -m slow."""
    sim, key = _sim(n_agents=3), getkey()
    if not every:
        sim = eqx.tree_at(lambda s: s.methods, sim, sim.methods[:1])
    x, y = (a[:6] for a in logistic)  # two sync steps after the warm-up: eager is slow
    jitted = eqx.filter_jit(mj.simulate)(sim, x, y, key=key)
    with jax.disable_jit():  # scan runs as a Python loop over time, op by op
        eager = mj.simulate(sim, x, y, key=key)
    assert tree_allclose(jitted, eager, rtol=1e-10)


@pytest.mark.parametrize("homogeneity", [pytest.param("h1", marks=pytest.mark.slow), "h2"])
def test_chunked_equals_unchunked(logistic, getkey, homogeneity):
    key = getkey()
    run = eqx.filter_jit(mj.simulate)
    full = run(_sim(n_agents=10, homogeneity=homogeneity), *logistic, key=key)
    # 3 leaves a remainder chunk; 10 (one chunk, = N) under -m slow
    for bs in (3, 10) if homogeneity == "h1" else (3,):
        chunked = run(_sim(n_agents=10, homogeneity=homogeneity, batch_size=bs), *logistic, key=key)
        assert tree_allclose(full, chunked, rtol=1e-11)


@pytest.mark.parametrize("every", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_joint_run_equals_separate_runs(logistic, getkey, every):
    """All methods in one call see the same draws as each method run alone (MEMOA and G1
    alone by default, every method under -m slow). (N = 10: the joint run's program is
    test_chunked_equals_unchunked's, compiled once.)"""
    key, sim = getkey(), _sim(n_agents=10)
    run = eqx.filter_jit(mj.simulate)
    joint = run(sim, *logistic, key=key)
    for m in sim.methods if every else sim.methods[:2]:
        alone = run(eqx.tree_at(lambda s: s.methods, sim, (m,)), *logistic, key=key)
        assert tree_allclose(alone.summary[m.name], joint.summary[m.name], rtol=1e-12)


def test_agents_are_a_prefix_of_a_larger_population(logistic, getkey):
    """Agent i's draws depend only on (key, i): a population of 4 is the first 4 of 9 (h1,
    realized mean field off so agents do not interact)."""
    key = getkey()
    cost = mj.CostParams(q=1.0, lam=0.0, gamma=15.0, alpha=1e-4)
    methods = (mj.LocalRidge(cost, ridge_window=3),)
    enc = mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.1)
    run = eqx.filter_jit(mj.simulate)
    small = run(mj.Simulation(4, enc, methods, cost=cost), *logistic, key=key)
    big = run(mj.Simulation(9, enc, methods, cost=cost), *logistic, key=key)
    np.testing.assert_allclose(
        small.agent_rmse["g1_ridge"], big.agent_rmse["g1_ridge"][:4], rtol=1e-13
    )


@pytest.mark.parametrize(
    "homogeneity, server",
    [
        # (the default server: the exact run's program is test_chunked_equals_unchunked's)
        pytest.param("h2", mj.RidgeMixture(), id="h2-ridge"),
        pytest.param("h1", mj.HedgeMixture(rate=2.0), id="h1-hedge", marks=pytest.mark.slow),
    ],
)
def test_padded_population_equals_exact_size(logistic, getkey, homogeneity, server):
    """`n_active` agents in a larger compiled population: padding slots are invisible to every
    reduction (mean field, moments, server, metrics), and one compilation serves all sizes."""
    key = getkey()
    traces = []

    @eqx.filter_jit
    def padded(n_active):
        traces.append(n_active)
        return mj.simulate(
            _sim(16, homogeneity, server=server), *logistic, key=key, n_active=n_active
        )

    for n in (10, 16):
        got = padded(jnp.asarray(n))
        if n == 16 and homogeneity == "h2":  # no padding: the exact run under -m slow (h1)
            continue
        exact = eqx.filter_jit(mj.simulate)(_sim(n, homogeneity, server=server), *logistic, key=key)
        assert tree_allclose(got.summary, exact.summary, rtol=1e-11)
        assert tree_allclose(got.steps, exact.steps, rtol=1e-11)
        for name, rmse in got.agent_rmse.items():
            np.testing.assert_allclose(rmse[:n], exact.agent_rmse[name], rtol=1e-11)
            assert np.isnan(rmse[n:]).all()
    assert len(traces) == 1
    with pytest.raises(ValueError, match="n_active=17"):
        mj.simulate(_sim(16), *logistic, key=key, n_active=17)


@pytest.mark.parametrize("H,d,p", [(4, 2, 3), (3, 1, 5)])  # primal and dual ridge systems
def test_vmapped_policy_equals_python_loop(getkey, H, d, p):
    """The one-agent functions, vmapped, equal a Python loop over agents."""
    n = 5
    z = jax.random.uniform(getkey(), (n, H, d, p))
    yh = jax.random.normal(getkey(), (n, H, d))
    y_next = jax.random.normal(getkey(), (H, d))
    w = jnp.exp(-0.1 * jnp.arange(H, dtype=float))
    vm = jax.vmap(mj.ridge_control, in_axes=(0, 0, None, None, None))(z, yh, y_next, w, 0.7)
    loop = jnp.stack([mj.ridge_control(z[i], yh[i], y_next, w, 0.7) for i in range(n)])
    np.testing.assert_allclose(vm, loop, rtol=1e-13)
    # and against the normal equations in float64 NumPy
    for i in range(n):
        X = (np.sqrt(np.asarray(w))[:, None, None] * np.asarray(z[i])).reshape(H * d, p)
        r = (np.sqrt(np.asarray(w))[:, None] * (np.asarray(y_next) - np.asarray(yh[i]))).ravel()
        np.testing.assert_allclose(
            vm[i], np.linalg.solve(X.T @ X + 0.7 * np.eye(p), X.T @ r), rtol=1e-11
        )
    K, L, g = (jax.random.normal(getkey(), s) for s in ((p, d), (p, d), (p,)))
    ybar = jnp.mean(yh[:, 0], axis=0)
    vm = jax.vmap(mj.mean_field_control, in_axes=(None, None, None, 0, None))(
        K, L, g, yh[:, 0], ybar
    )
    loop = jnp.stack([K @ yh[i, 0] + L @ ybar + g for i in range(n)])
    np.testing.assert_allclose(vm, loop, rtol=1e-13)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_memoa_beats_local_ridge_worst_agent_on_logistic_h2(seed):
    """Spec §11.3 (plausibility): with heterogeneous encoders the local ridge worst agent
    blows up while MEMOA's stays bounded."""
    data = load_dataset("logistic")
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    sim = mj.Simulation(
        n_agents=100,
        encoder=mj.RFNEncoder(d=1, d_x=1, p=5, sigma=0.1),
        methods=mj.default_methods(cost),
        cost=cost,
        homogeneity="h2",
    )
    res = eqx.filter_jit(mj.simulate)(sim, data.x, data.y, key=jax.random.key(seed))
    s = res.summary
    assert s["memoa"].worst_rmse < s["g1_ridge"].worst_rmse
    assert s["memoa"].server_rmse < s["g1_ridge"].server_rmse
    for m in s.values():
        assert m.worst_rmse >= m.avg_rmse


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: _sim(n_agents=0), "n_agents=0"),
        (lambda: _sim(n_agents=-5), "n_agents=-5"),
        (lambda: _sim(homogeneity="h3"), "'h3'"),
        (lambda: _sim(batch_size=0), "batch_size=0"),
        (lambda: mj.MeanFieldGame(mj.CostParams(), window=0), "window=0"),
        (lambda: mj.MeanFieldGame(mj.CostParams(), mean_field="oracle"), "'oracle'"),
    ],
)
def test_bad_configuration(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_data(logistic, getkey):
    x, y = logistic
    with pytest.raises(ValueError, match="window=3 is not shorter"):
        mj.simulate(_sim(), x[:4], y[:4], key=getkey())
    with pytest.raises(ValueError, match="do not match the encoder"):
        mj.simulate(_sim(), jnp.concatenate([x, x], 1), y, key=getkey())


def test_nash_comparator_at_one_agent_is_the_independent_tracker(logistic, getkey):
    """N = 1: the λ-term vanishes (ȳ = ŷ), so the N-player Nash policy equals the λ = 0
    tracker (spec §6.2) — in the whole loop, on the same draws."""
    cost = mj.CostParams(q=1.0, lam=0.7, gamma=15.0, alpha=1e-4)
    methods = (
        mj.nash.centralized_method(cost, window=3),
        mj.MeanFieldGame(eqx.tree_at(lambda c: c.lam, cost, 0.0), window=3, name="tracker"),
        mj.MeanFieldGame(cost, window=3, name="memoa"),
    )
    sim = mj.Simulation(1, mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.1), methods, cost=cost)
    res = eqx.filter_jit(mj.simulate)(sim, *logistic, key=getkey())
    fne, tracker, memoa = (res.steps[m.name].mse for m in methods)
    np.testing.assert_allclose(fne, tracker, rtol=1e-10, atol=1e-14)
    assert not np.allclose(memoa[5:], tracker[5:])  # the mean-field policy does see λ


def test_nash_comparator_needs_realized_mean_field():
    cost = mj.CostParams()
    with pytest.raises(ValueError, match="mean_field='flow'"):
        mj.nash.centralized_method(cost, mean_field="flow")
    with pytest.raises(ValueError, match="gains_solver"):
        mj.MeanFieldGame(cost, equilibrium="nash")
    with pytest.raises(ValueError, match="equilibrium='centralized'"):
        mj.MeanFieldGame(cost, equilibrium="centralized")


def test_population_update_is_the_vmapped_one_agent_policy(getkey):
    """`mean_field_update` (row slices of the population arrays) = `vmap` of the one-agent
    `advance ∘ mean_field_control`, for d = 2, p = 3, also in chunks."""
    from memoa_jax._agents import advance, map_chunks
    from memoa_jax._kernels import mean_field_update

    n, d, p = 11, 2, 3
    ks = jax.random.split(getkey(), 5)
    K, L = (jax.random.normal(k, (p, d)) for k in ks[:2])
    g = jax.random.normal(ks[2], (p,))
    yhat = jax.random.normal(ks[3], (d, n))
    z = jax.random.uniform(ks[4], (d, p, n))
    ybar = jnp.mean(yhat, axis=-1)

    def agent(y_i, z_i):
        return advance(y_i, z_i, mj.mean_field_control(K, L, g, y_i, ybar))

    expected = mj.map_agents(agent, yhat, z)
    got = mean_field_update(K, L, g, yhat, ybar, z)
    chunked = map_chunks(
        lambda y_, z_: mean_field_update(K, L, g, y_, ybar, z_), yhat, z, batch_size=4
    )
    for out in (got, chunked):
        assert tree_allclose(out, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(
    "H,d,p",
    [(1, 1, 5), (2, 1, 5), (3, 1, 5), (4, 1, 5), (3, 2, 2), (2, 2, 3), (5, 2, 12), (10, 1, 12)],
)  # dual and primal systems of every size class: closed form ≤ 3, Cholesky, fallback > 8
def test_population_ridge_is_the_vmapped_one_agent_ridge(getkey, H, d, p):
    """`ridge_rows` (row slices) = `vmap(ridge_control)` = float64 NumPy normal equations."""
    from memoa_jax._kernels import energy_rows, ridge_rows

    n = 7
    z = jax.random.uniform(getkey(), (H, d, p, n))
    yh = jax.random.normal(getkey(), (H, d, n))
    y_next = jax.random.normal(getkey(), (H, d))
    w = jnp.exp(-0.3 * jnp.arange(H, dtype=float))
    one = lambda zi, yi: mj.ridge_control(zi, yi, y_next, w, 0.2)
    expected = jax.vmap(one, -1, -1)(z, yh)
    beta = ridge_rows(list(z), list(yh), y_next, w, 0.2)
    np.testing.assert_allclose(jnp.concatenate(beta), expected, rtol=1e-12)
    np.testing.assert_allclose(energy_rows(beta), jnp.sum(expected**2, axis=0), rtol=1e-12)
    zn, wn = np.asarray(z), np.asarray(w)
    yn = np.asarray(y_next) - np.asarray(yh).transpose(2, 0, 1)  # residuals (n, H, d)
    for i in range(n):
        X = (np.sqrt(wn)[:, None, None] * zn[..., i]).reshape(H * d, p)
        r = (np.sqrt(wn)[:, None] * yn[i]).ravel()
        np.testing.assert_allclose(
            expected[:, i], np.linalg.solve(X.T @ X + 0.2 * np.eye(p), X.T @ r), rtol=1e-10
        )
