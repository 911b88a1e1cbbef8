"""`memoa_jax.simulate` against the independent float64 NumPy oracle `memoa_jax.reference`.

The reference is fed exactly the features and population moments that the JAX loop draws
(regenerated here from `init_agents` and the encoder, as `_loop.py` does at every step), so
the two runs must agree to float rounding on every statistic.
"""

import dataclasses
import os
import subprocess
import sys

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import memoa_jax as mj  # noqa: E402
from memoa_jax._kernels import STATIC_SLOTS_UP_TO  # noqa: E402
from memoa_jax.data import load_dataset  # noqa: E402
from memoa_jax.reference import (  # noqa: E402
    config_from_simulation,
    default_methods_config,
    rfn_features_numpy,
    rfn_moments_numpy,
    rfn_population_moments_numpy,
    simulate_numpy,
    solve_mean_field_numpy,
)

RTOL = 1e-9
ATOL = 1e-13  # only matters for statistics that are exactly zero in both runs
N_ROWS = 26  # 25 prediction steps
SUMMARY_KEYS = (
    "avg_rmse",
    "worst_rmse",
    "server_rmse",
    "mean_field_rmse",
    "worst_cost",
    "mean_cost",
    "p50_rmse",
    "p90_rmse",
    "p99_rmse",
    "frozen_share",
    "n_diverged",
)
STEP_KEYS = ("mse", "worst_se", "server_se", "mean_field_se")


def _logistic(n):
    ds = load_dataset("logistic", n_rows=n)
    return np.asarray(ds.x), np.asarray(ds.y)


def _smooth_2d(n):
    t = np.arange(n, dtype=np.float64)
    y = np.stack([np.sin(0.4 * t) + 0.02 * t, 0.5 * np.cos(0.3 * t) - 0.2], axis=1)
    x = np.concatenate([y, np.ones((n, 1))], axis=1)  # d_x = 3
    return x, y


def _cost(**kw):
    base = dict(q=1.0, lam=0.5, gamma=3.0, alpha=0.05)
    return mj.CostParams(**{**base, **kw})


def _extra_methods(cost, terminal, readings=True):
    return (
        mj.MeanFieldGame(terminal, window=4, name="game_w4_terminal"),
        mj.MeanFieldGame(cost, window=3, sync_every=2, mean_field="flow", name="game_flow_sync2"),
        mj.MeanFieldGame(
            _cost(lam=-0.3), window=2, sync_every=3, ridge_window=1, name="game_antiherd"
        ),
        mj.FollowTheMean(cost, increment=False, name="g4_no_increment"),
        mj.LocalRidge(cost, ridge_window=4, name="g1_ridge_w4"),
        *(_readings(cost) if readings else ()),
    )


def _readings(cost):
    """The other readings of the window (issue 13) and FedMOE's own-moments play."""
    readings = [(b, c) for b in ("replay_end", "observed", "own") for c in ("replay", "gains")][1:]
    return tuple(
        mj.MeanFieldGame(cost, window=3, replay_base=b, replay_control=c, name=f"{b}_{c}")
        for b, c in readings
    ) + (
        mj.MeanFieldGame(cost, window=3, moments="own", name="own_moments"),
        mj.MeanFieldGame(
            cost,
            window=2,
            moments="own",
            replay_base="own",
            replay_control="gains",
            name="own_moments_own_gains",
        ),
    )


def _case(name):
    """(Simulation, x, y) of each scenario; all scenarios share the series length."""
    cost = _cost()
    terminal = _cost(lam=0.8, q_T=2.0, lam_T=0.7)
    yard = mj.CostParams(q=1.0, lam=0.3, gamma=2.0)
    if name == "h2_ridge_d1_p3_n7":
        x, y = _logistic(N_ROWS)
        enc = mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.3)
        methods = mj.default_methods(cost) + _extra_methods(cost, terminal)
        sim = mj.Simulation(7, enc, methods, mj.RidgeMixture(kappa=0.7, eta=1.0), yard, "h2")
    elif name == "h1_hedge_d2_p2_n7":
        x, y = _smooth_2d(N_ROWS)
        enc = mj.RFNEncoder(d=2, d_x=3, p=2, sigma=jnp.array([0.2, 0.5]))
        methods = mj.default_methods(
            cost, window=4, ridge_window=2, sync_every=2, mean_field="flow"
        ) + _extra_methods(cost, terminal, readings=False)
        # a ring longer than STATIC_SLOTS_UP_TO: every method reads it at traced slots
        methods += (mj.LocalRidge(cost, ridge_window=9, name="g1_ridge_w9"),)
        sim = mj.Simulation(7, enc, methods, mj.HedgeMixture(rate=0.5), yard, "h1")
        assert sim.history + 1 > STATIC_SLOTS_UP_TO
    elif name == "h2_ridge_d2_p3_n1":
        x, y = _smooth_2d(N_ROWS)
        enc = mj.RFNEncoder(d=2, d_x=3, p=3, sigma=0.4)
        # MEMOA and G1, and the paths no other case runs (own moments at d = 2, a terminal
        # cost with them); G2–G4 at d = 2 run in h1_hedge_d2_p2_n7
        methods = mj.default_methods(cost)[:2] + (
            mj.MeanFieldGame(terminal, window=4, name="game_w4_terminal"),
            mj.MeanFieldGame(terminal, window=3, moments="own", name="own_moments_terminal"),
            mj.MeanFieldGame(
                cost, window=3, replay_base="own", replay_control="gains", name="own_gains_d2"
            ),
        )
        sim = mj.Simulation(1, enc, methods, mj.RidgeMixture(), yard, "h2")
    elif name == "h2_hedge_d1_p2_n7":
        x, y = _logistic(N_ROWS)
        enc = mj.RFNEncoder(d=1, d_x=1, p=2, sigma=0.2)
        methods = mj.default_methods(terminal, window=1, ridge_window=1)[:2] + (
            mj.FollowTheMean(cost, ridge_window=2),
        )
        sim = mj.Simulation(
            7, enc, methods, mj.HedgeMixture(rate=3.0), yard, "h2", batch_size=3
        )  # agents in chunks of 3 (7 is not a multiple of 3)
    else:
        raise KeyError(name)
    return sim, x, y


CASES = ("h2_ridge_d1_p3_n7", "h1_hedge_d2_p2_n7", "h2_ridge_d2_p3_n1", "h2_hedge_d1_p2_n7")


def _agent_axis(params, enc, n):
    """Where `init_agents` put the agent axis of the H2 parameters (first or last)."""
    A = params.A
    if A.shape[:-1] == (enc.d, enc.d_x) and A.shape[-1] == n:
        return -1
    if A.shape[1:] == (enc.d, enc.d_x) and A.shape[0] == n:
        return 0
    raise AssertionError(f"unexpected parameter layout {A.shape} for N={n}")


@eqx.filter_jit
def _jax_draws(sim, x, key):
    """The features and population moments the loop draws at every step `t`, one agent at a
    time: agent `i`'s `Z_t = enc.features(params_i, x_t, enc.noise(noise_key_i, t))` and the
    population moments at `x_t` (H2: mean of the agents' exact moments; H1: the shared ones).

    Returns `(Z (n_steps, N, d, p), M (n_steps, d, p), S (n_steps, d, p, d, p))` and each
    agent's own moments `(n_steps, N, d, p)`, `(n_steps, N, d, p, d, p)`."""
    params, noise_keys = mj.init_agents(sim, key=key)
    enc = sim.encoder
    ax = _agent_axis(params, enc, sim.n_agents) if sim.homogeneity == "h2" else None
    assert noise_keys.shape == (2, sim.n_agents), noise_keys.shape

    def at(t):
        x_t = x[t]
        if ax is not None:
            z = jax.vmap(
                lambda p_i, k_i: enc.features(p_i, x_t, enc.noise(k_i, t)), in_axes=(ax, -1)
            )(params, noise_keys)
            Ms, Ss = jax.vmap(lambda p_i: enc.moments(p_i, x_t), in_axes=ax)(params)
            return z, jnp.mean(Ms, 0), jnp.mean(Ss, 0), Ms, Ss
        z = jax.vmap(lambda k_i: enc.features(params, x_t, enc.noise(k_i, t)), in_axes=-1)(
            noise_keys
        )
        M, S = enc.moments(params, x_t)
        each = lambda a: jnp.broadcast_to(a, (sim.n_agents,) + a.shape)
        return z, M, S, each(M), each(S)

    return jax.vmap(at)(jnp.arange(x.shape[0] - 1))


_simulate = eqx.filter_jit(mj.simulate)


@pytest.fixture(scope="module", params=CASES)
def pair(request):
    sim, x, y = _case(request.param)
    key = jr.key(20260505 + CASES.index(request.param))
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    res = jax.device_get(_simulate(sim, xj, yj, key=key))
    Z, M, S, Ms, Ss = (np.asarray(a) for a in _jax_draws(sim, xj, key))
    ref = simulate_numpy(
        config_from_simulation(sim),
        x,
        y,
        lambda t: Z[t],
        lambda t: (M[t], S[t]),
        lambda t: (Ms[t], Ss[t]),
    )
    return request.param, sim, res, ref


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)


def test_reference_matches_simulate(pair):
    case, sim, res, ref = pair
    assert set(ref) == {m.name for m in sim.methods}
    for m in sim.methods:
        r, st, sm = ref[m.name], res.steps[m.name], res.summary[m.name]
        for k in STEP_KEYS:
            assert np.all(np.isfinite(r[k])), (case, m.name, k)
            _close(getattr(st, k), r[k])
        for k in SUMMARY_KEYS:
            _close(getattr(sm, k), r[k])
        _close(res.agent_rmse[m.name], r["agent_rmse"])
        np.testing.assert_equal(np.isnan(sm.worst_moving_rmse), np.isnan(r["worst_moving_rmse"]))
        if not np.isnan(r["worst_moving_rmse"]):
            _close(sm.worst_moving_rmse, r["worst_moving_rmse"])
        assert int(sm.worst_agent) == r["worst_agent"], (case, m.name)


def test_scenarios_are_not_degenerate(pair):
    """The game methods really replay windows (they differ from the greedy G1 baseline)."""
    case, sim, res, ref = pair
    g1 = ref["g1_ridge"]["mse"]
    assert not np.allclose(ref["memoa"]["mse"][5:], g1[5:])
    if "g4_no_increment" in ref:  # ŷ_{t+1} = ȳ_t: all agents equal from step 1 on
        assert ref["g4_no_increment"]["worst_se"][-1] == pytest.approx(
            ref["g4_no_increment"]["mse"][-1], rel=1e-12
        )


# A float32 run against the float64 oracle. The oracle is fed the float32 run's own draws
# (features and moments computed in float32 from the float32-rounded x) and the
# float32-rounded y, so only the loop's float32 arithmetic differs: the window gains are
# solved in float64 either way (`solve_dtype`), while every step rounds the per-agent
# predictions `ŷ_{t+1} = ŷ_t + Z β`, the server's and the statistics a few times in float32
# (ε₃₂ = 2⁻²³ ≈ 1.2e-7). Over the 25 steps that is at most some 25·ε₃₂ relative to the scale
# of y if the roundings add up, √25·ε₃₂ if they do not; measured: ≤ 8 ε₃₂ on every method of
# every CASE. 64 ε₃₂ ≈ 7.6e-6 leaves 8× that, and fails as soon as a
# float32 step loses two digits (e.g. to a cancellation the float64 run does not see).
TOL32 = 64 * float(np.finfo(np.float32).eps)


def _float32_against_oracle(sim64, x, y, key):
    sim = dataclasses.replace(sim64, dtype=jnp.float32)
    x32, y32 = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    res = jax.device_get(_simulate(sim, x32, y32, key=key))
    Z, M, S, Ms, Ss = (np.asarray(a, np.float64) for a in _jax_draws(sim, x32, key))
    assert Z.shape[0] == x.shape[0] - 1
    x64, y64 = np.asarray(x32, np.float64), np.asarray(y32, np.float64)
    ref = simulate_numpy(
        config_from_simulation(sim),
        x64,
        y64,
        lambda t: Z[t],
        lambda t: (M[t], S[t]),
        lambda t: (Ms[t], Ss[t]),
    )
    scale = np.max(np.abs(y64))
    for m in sim.methods:
        r, st, sm = ref[m.name], res.steps[m.name], res.summary[m.name]
        assert st.mse.dtype == sm.avg_rmse.dtype == res.agent_rmse[m.name].dtype == np.float32
        for k in STEP_KEYS:  # |Δ√se| ≤ |Δŷ|: absolute, as a squared error may be near 0
            np.testing.assert_allclose(
                np.sqrt(np.asarray(getattr(st, k), np.float64)),
                np.sqrt(r[k]),
                rtol=0,
                atol=TOL32 * scale,
                err_msg=f"{m.name}.{k}",
            )
        for k in SUMMARY_KEYS:
            np.testing.assert_allclose(
                np.asarray(getattr(sm, k), np.float64), r[k], rtol=TOL32, err_msg=f"{m.name}.{k}"
            )
        np.testing.assert_allclose(res.agent_rmse[m.name], r["agent_rmse"], rtol=TOL32)
        # the worst agent may differ where two agents tie to float32 rounding: it is one of
        # the oracle's worst
        assert r["agent_rmse"][int(sm.worst_agent)] == pytest.approx(r["worst_rmse"], rel=TOL32)


def test_float32_run_matches_the_float64_oracle():
    """MEMOA in float32 (the default run's check; every method and case: -m slow)."""
    sim, x, y = _case("h2_ridge_d1_p3_n7")
    sim = dataclasses.replace(sim, methods=sim.methods[:1])
    _float32_against_oracle(sim, x, y, jr.key(32))


@pytest.mark.slow  # every method of every case: about 45 s on 2 cores
@pytest.mark.parametrize("case", CASES)
def test_float32_every_case_matches_the_float64_oracle(case):
    sim, x, y = _case(case)
    _float32_against_oracle(sim, x, y, jr.key(3200 + CASES.index(case)))


def test_default_methods_config_matches_default_methods():
    cost = _cost(q_T=0.5, lam_T=0.2)
    sim = mj.Simulation(
        3,
        mj.RFNEncoder(d=1, d_x=1, p=2),
        mj.default_methods(cost, window=4, ridge_window=2, sync_every=2, mean_field="flow"),
    )
    expected = config_from_simulation(sim)["methods"]
    got = default_methods_config(
        **{k: float(getattr(cost, k)) for k in ("q", "lam", "gamma", "alpha", "q_T", "lam_T")},
        window=4,
        ridge_window=2,
        sync_every=2,
        mean_field="flow",
    )
    assert got == expected


def test_rfn_moments_numpy_matches_jax():
    rng = np.random.default_rng(0)
    pre = rng.normal(size=(4, 3, 2)) * 2.0
    sigma = np.array([0.1, 0.7, 2.0])
    M, S = rfn_moments_numpy(pre, sigma)
    for i in range(pre.shape[0]):
        Mj, Sj = mj.rfn_moments(jnp.asarray(pre[i]), jnp.asarray(sigma))
        np.testing.assert_allclose(M[i], Mj, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(S[i], Sj, rtol=1e-13, atol=1e-15)
    Mp, Sp = rfn_population_moments_numpy(pre, sigma)
    np.testing.assert_allclose(Mp, M.mean(0), rtol=1e-13)
    np.testing.assert_allclose(Sp, S.mean(0), rtol=1e-13, atol=1e-15)


def test_rfn_features_numpy_moments_monte_carlo():
    """Draws of `rfn_features_numpy` have the closed-form moments (d = 2: shared noise rows)."""
    rng = np.random.default_rng(1)
    A, b = rng.normal(size=(2, 1)), rng.normal(size=(2, 3))
    sigma = np.array([0.5, 1.0])
    x = np.array([0.3])
    Z = rfn_features_numpy(A, b, sigma, x, rng, n_agents=200_000)
    M, S = rfn_moments_numpy((A @ x)[:, None] + b, sigma)
    np.testing.assert_allclose(Z.mean(0), M, atol=0.02)
    np.testing.assert_allclose(np.einsum("nak,nbl->akbl", Z, Z) / Z.shape[0], S, atol=0.03)
    Zh2 = rfn_features_numpy(
        np.broadcast_to(A, (5, 2, 1)), np.broadcast_to(b, (5, 2, 3)), sigma, x, rng
    )
    assert Zh2.shape == (5, 2, 3) and np.all(Zh2 >= 0)


def test_numpy_pipeline_of_the_benchmark():
    """The benchmark's NumPy-only path (own RNG, population moments) runs and is sane."""
    x, y = _logistic(N_ROWS)
    N, p, sigma = 40, 5, 0.1
    rng = np.random.default_rng(3)
    A, b = rng.standard_normal((N, 1, 1)), rng.standard_normal((N, 1, p))
    cfg = dict(
        n_agents=N,
        methods=default_methods_config(gamma=15.0, alpha=1e-4),
        server=dict(kind="ridge", kappa=1.0, eta=1.0),
        cost=dict(q=1.0, lam=0.5, gamma=15.0),
    )
    out = simulate_numpy(
        cfg,
        x,
        y,
        lambda t: rfn_features_numpy(A, b, sigma, x[t], rng),
        lambda t: rfn_population_moments_numpy((A @ x[t])[..., None] + b, sigma),
    )
    for name, r in out.items():
        assert r["agent_rmse"].shape == (N,) and np.all(np.isfinite(r["mse"])), name
        assert r["worst_rmse"] >= r["avg_rmse"] > 0
    assert out["memoa"]["avg_rmse"] < 1.0  # series in (0, 1): the game keeps agents on it


def test_solve_mean_field_numpy_matches_spec_fixture():
    """Spec §6.11 deterministic fixture (12 digits)."""
    M = np.array([[[0.8, -0.3]], [[0.5, 0.4]], [[1.0, 0.2]]])
    covs = [
        np.array([[0.10, 0.02], [0.02, 0.20]]),
        np.array([[0.05, 0.0], [0.0, 0.30]]),
        np.array([[0.20, -0.05], [-0.05, 0.10]]),
    ]
    S = np.stack([(np.outer(m[0], m[0]) + c)[None, :, None, :] for m, c in zip(M, covs)])
    y = np.array([[0.0], [1.0], [0.5], [-0.2]])
    sol = solve_mean_field_numpy(M, S, y, dict(q=1.0, lam=0.5, gamma=0.3, alpha=0.1))
    np.testing.assert_allclose(sol["K"][0, :, 0], [-0.852931121678, 0.268321875606], atol=1e-11)
    np.testing.assert_allclose(sol["L"][1, :, 0], [0.127139564627, 0.045884931001], atol=1e-11)
    np.testing.assert_allclose(sol["g"][2], [-0.121034651049, -0.050756466569], atol=1e-11)
    np.testing.assert_allclose(sol["Pi"][0, 0, 0], -0.035200176049, atol=1e-11)
    np.testing.assert_allclose(sol["phi"][1, 0], -0.180808221729, atol=1e-11)
    np.testing.assert_allclose(
        sol["m"][:, 0], [0, 0.499629818766, 0.397874563626, 0.005710867426], atol=1e-11
    )


def test_reference_module_does_not_import_jax():
    """Loaded on its own (outside the package), the oracle pulls in neither JAX nor SciPy."""
    path = os.path.join(os.path.dirname(mj.__file__), "reference.py")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('memoa_reference', {path!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "assert 'jax' not in sys.modules and 'scipy' not in sys.modules, sorted(sys.modules)\n"
        "import numpy as np\n"
        "mod.rfn_moments_numpy(np.zeros((1, 2)), 1.0)\n"
        "assert 'jax' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
