"""The readings of the hindsight window (`replay_base`, `replay_control`), FedMOE's own-moments
play (`moments="own"`) and the metrics that frozen agents cannot set (issue 13)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import memoa_jax as mj
from memoa_jax._agents import Population
from memoa_jax._methods import StepContext
from memoa_jax.data import load_dataset

_simulate = eqx.filter_jit(mj.simulate)


@pytest.fixture(scope="module")
def logistic():
    ds = load_dataset("logistic", n_rows=40)
    return jnp.asarray(ds.x), jnp.asarray(ds.y)


def _window(getkey, T, d=1, p=3):
    M = jr.uniform(getkey(), (T, d, p), minval=0.1, maxval=1.0)
    A = jr.normal(getkey(), (T, d * p, d * p))
    S = jnp.einsum("tij,tkj->tik", A, A).reshape(T, d, p, d, p) / (d * p)
    S = S + jnp.einsum("tak,tbl->takbl", M, M)
    y = jr.normal(getkey(), (T + 1, d))
    return M, S, y


@pytest.mark.parametrize("d", [2])  # d = 1 is a special case; the loop test covers it
def test_last_step_gains_do_not_depend_on_the_window_length(getkey, d):
    """With zero terminal cost the gains are solved backward from the window's end, so the
    last step's (K, L, g)_{T−1} see only the last step's moments and target: windows of any
    length that end alike play the same last-step gains (and a nonzero terminal cost would
    change them)."""
    cost = mj.CostParams(q=1.0, lam=0.7, gamma=2.0, alpha=0.3)
    M, S, y = _window(getkey, 5, d=d)
    solve = eqx.filter_jit(mj.solve_mean_field)  # (op by op it took 12 s here)
    last = solve(M, S, y, cost)
    for T in (1, 2, 3):
        sol = solve(M[-T:], S[-T:], y[-T - 1 :], cost)
        for a, b in ((sol.K, last.K), (sol.L, last.L), (sol.g, last.g)):
            np.testing.assert_allclose(a[-1], b[-1], rtol=1e-13, atol=1e-15)
    one = solve(M[-1:], S[-1:], y[-2:], cost)
    terminal = eqx.tree_at(lambda c: (c.q_T, c.lam_T), cost, (1.0, 0.5))
    assert not np.allclose(solve(M[-1:], S[-1:], y[-2:], terminal).K, one.K)


@pytest.mark.parametrize("base", ["observed", "own"])
def test_gains_reading_makes_the_window_length_irrelevant(logistic, getkey, base):
    """Under `replay_control="gains"` MEMOA (T = 3) and G2 (T = 1) with the same base play
    the same last-step gains: with the observed base they predict identically at every sync
    step; with their own previous predictions as base they differ only through the warm-up
    (MEMOA's first sync is at t = 3, G2's at t = 1)."""
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    reading = dict(replay_base=base, replay_control="gains")
    methods = (
        mj.MeanFieldGame(cost, window=3, name="memoa", **reading),
        mj.MeanFieldGame(cost, window=1, name="g2", **reading),
        mj.MeanFieldGame(cost, window=3, name="memoa_default"),
    )
    sim = mj.Simulation(50, mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.1), methods, cost=cost)
    res = _simulate(sim, *logistic, key=getkey())
    a, b, c = (np.asarray(res.steps[m].mse) for m in ("memoa", "g2", "memoa_default"))
    if base == "observed":
        np.testing.assert_array_equal(a[3:], b[3:])
    else:
        assert not np.allclose(a[3:], b[3:])  # the warm-up's states carry over
    assert not np.allclose(a[3:], c[3:])  # and the reading matters


def test_own_moments_gains_are_each_agents_solve(logistic, getkey):
    """`moments="own"`: agent i's window gains are `solve_mean_field` on agent i's own exact
    RFN moments (and differ from the population's)."""
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=3.0, alpha=0.1)
    x, y = logistic
    enc = mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.2)
    n, T, t = 6, 3, 10
    method = mj.MeanFieldGame(cost, window=T, moments="own")
    sim = mj.Simulation(n, enc, (method,), cost=cost)
    params, _ = mj.init_agents(sim, key=getkey())
    one = lambda q, tau: enc.moments(q, x[tau])
    agent_moments = lambda tau: jax.vmap(lambda q: one(q, tau), in_axes=-1, out_axes=-1)(params)
    R = T + 1
    ctx = StepContext(
        t=jnp.asarray(t),
        y=y,
        agents=jnp.zeros((R, 1, 3, n)),
        features=lambda ring, offset, slot=None: ring[jnp.mod(t + offset, R)],
        ring_size=R,
        mom_M=jnp.zeros((R, 1, 3)),
        mom_S=jnp.zeros((R, 1, 3, 1, 3)),
        batch_size=None,
        pop=Population(n),
        agent_moments=agent_moments,
    )
    (K, L, g, _), yw, status = method.gains(ctx)
    assert not bool(status.failed)  # (every agent's solve is regular here)
    assert K.shape == (T, 3, 1, 1, n)

    @jax.jit
    def alone(i):  # agent i's own moments over the window, and its own solve
        q = jax.tree.map(lambda a: a[..., i], params)
        Ms, Ss = jax.vmap(lambda tau: one(q, tau))(jnp.arange(t - T, t))
        return mj.solve_mean_field(Ms, Ss, y[t - T : t + 1], cost)

    for i in (0, 3, n - 1):
        sol = alone(i)
        np.testing.assert_allclose(K[..., 0, i], sol.K, rtol=1e-12)
        np.testing.assert_allclose(L[..., 0, i], sol.L, rtol=1e-12)
        np.testing.assert_allclose(g[..., 0, i], sol.g, rtol=1e-12)
    assert not np.allclose(K[..., 0, 0], K[..., 0, 1])


def test_own_moments_needs_closed_form_moments():
    cost = mj.CostParams()
    with pytest.raises(ValueError, match="stateful"):
        mj.Simulation(3, mj.ESNEncoder(d=1, d_x=1, p=3), (mj.MeanFieldGame(cost, moments="own"),))
    with pytest.raises(ValueError, match="replay_base must be one of"):
        mj.MeanFieldGame(cost, replay_base="end")
    with pytest.raises(ValueError, match="realized"):
        mj.MeanFieldGame(cost, moments="own", mean_field="flow")


def test_frozen_agents_predict_a_stale_observation(logistic, getkey):
    """An agent whose features are zero at every step never moves: under MEMOA (T = 3) its
    RMSE is exactly the lag-(T+1) persistence forecast's, under G1 that of `ŷ = y_0`. The
    summary's frozen share, quantiles and worst mover agree with NumPy on the agents' RMSE."""
    x, y = logistic
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    methods = (mj.MeanFieldGame(cost, window=3), mj.LocalRidge(cost))
    sim = mj.Simulation(64, mj.RFNEncoder(d=1, d_x=1, p=1, sigma=1e-3), methods, cost=cost)
    key = getkey()
    res = _simulate(sim, x, y, key=key)
    params, noise_keys = mj.init_agents(sim, key=key)
    enc = sim.encoder
    draw = lambda q, k, t: enc.features(q, x[t], enc.noise(k, t))
    Z = jax.vmap(lambda t: jax.vmap(draw, in_axes=(-1, -1, None))(params, noise_keys, t))(
        jnp.arange(x.shape[0] - 1)
    )  # (time, N, d, p): the loop's draws
    frozen = np.asarray(jnp.all(Z == 0, axis=(0, 2, 3)))
    assert 0 < frozen.sum() < sim.n_agents
    yn = np.asarray(y)
    for m, lag in (("memoa", 4), ("g1_ridge", len(yn))):
        s, rmse = res.summary[m], np.asarray(res.agent_rmse[m])
        stale = float(mj.persistence_rmse(y, lag))
        np.testing.assert_allclose(rmse[frozen], stale, rtol=1e-12)
        assert float(s.frozen_share) == frozen.mean()
        assert float(s.worst_moving_rmse) == pytest.approx(rmse[~frozen].max(), rel=1e-12)
        assert float(s.worst_rmse) >= float(s.worst_moving_rmse)
        for q in (50, 90, 99):
            got = float(getattr(s, f"p{q}_rmse"))
            assert got == pytest.approx(np.quantile(rmse, q / 100), rel=1e-12)
    # the lag-(T+1) persistence of the series, by hand
    want = np.sqrt(np.mean((yn[1:, 0] - yn[np.maximum(np.arange(1, len(yn)) - 4, 0), 0]) ** 2))
    assert float(mj.persistence_rmse(y, 4)) == pytest.approx(want, rel=1e-13)


def test_diverged_agents_are_counted(getkey):
    """An agent whose RMSE is not finite, or beyond DIVERGED_FACTOR × persistence, counts."""
    pop = Population(5)
    rmse = jnp.array([0.1, jnp.inf, jnp.nan, 2e6, 0.3])
    steps = mj.StepStats(*(jnp.ones(3) for _ in range(6)))
    summarize = eqx.filter_jit(mj._metrics.summarize)  # as the loop calls it (op by op: 5 s)
    s = summarize(rmse, rmse, jnp.ones(5, bool), steps, pop, jnp.asarray(1.0))
    assert int(s.n_diverged) == 3
    padded = Population(7, jnp.asarray(5))
    rmse7 = jnp.concatenate([rmse, jnp.array([jnp.inf, jnp.inf])])
    s7 = summarize(rmse7, rmse7, jnp.ones(7, bool), steps, padded, jnp.asarray(1.0))
    assert int(s7.n_diverged) == 3  # padding slots are not agents


def test_diverged_label():
    assert mj.format_rmse(0.01234, 0.01) == "0.0123"
    assert mj.format_rmse(1e77, 0.01, 3, 5) == "diverged (3 of 5 agents)"
    assert mj.format_rmse(float("nan"), 0.01, 5, 5) == "diverged (5 of 5 agents)"
    assert mj.format_rmse(float("inf"), 0.01) == "diverged"
    assert mj.format_rmse(0.99e4, 0.01) == "9900.0000"  # large, yet below 10⁶ × persistence
    assert mj.is_diverged(1.01e4, 0.01) and not mj.is_diverged(0.99e4, 0.01)
