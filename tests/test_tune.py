"""Differentiating the whole online loop: gradients vs central finite differences (float64),
checkpointed (remat) vs plain scan, and gradient-descent tuning."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tree_allclose

import memoa_jax as mj
from memoa_jax._tune import constrained, make_loss, to_unconstrained
from memoa_jax.data import load_dataset


@pytest.fixture(scope="module")
def logistic():
    data = load_dataset("logistic", n_rows=18)
    return jnp.asarray(data.x), jnp.asarray(data.y)


def _sim(method=None, n_agents=5):
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=0.1)
    method = mj.MeanFieldGame(cost, window=3) if method is None else method
    return mj.Simulation(
        n_agents=n_agents,
        encoder=mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.1),
        methods=(method,),
        server=mj.RidgeMixture(kappa=2.0),
        cost=cost,
    )


def _central_differences(loss, u, args, eps=1e-6):
    return {
        n: (loss({**u, n: u[n] + eps}, *args) - loss({**u, n: u[n] - eps}, *args)) / (2 * eps)
        for n in u
    }


@pytest.mark.parametrize(
    "method,kind,remat",
    [
        # λ, γ, α through windows, Riccati recursions and warm-up, the server ridge κ, and
        # the checkpointed (remat) backward pass
        ("memoa", "server", True),
        ("ogd_adam", "worst", False),  # the learning rate through Adam; smoothed worst agent
        pytest.param("memoa", "worst", False, marks=pytest.mark.slow),
    ],
)
def test_gradient_matches_central_differences(logistic, getkey, method, kind, remat):
    m = mj.OnlineGradient(optimizer="adam", learning_rate=0.05) if method == "ogd_adam" else None
    sim, key = _sim(m), getkey()
    names = mj.tunable(sim, kind)
    assert ("kappa" in names) == (kind == "server")
    u = to_unconstrained(sim, names)
    loss = make_loss(names, kind, temperature=0.05, remat=remat)
    value_and_grad = eqx.filter_jit(jax.value_and_grad(loss))
    value, grad = value_and_grad(u, sim, *logistic, key)
    # the differences of the loss's values, as the same program computes them (its primal
    # output: the loss's own operations, which the derivative does not enter), so that the
    # check costs one compilation, not a second one of the loss alone
    fd = _central_differences(lambda *a: value_and_grad(*a)[0], u, (sim, *logistic, key))
    for n in names:  # every gradient is non-trivial and agrees to ~1e-6 relative
        assert abs(float(grad[n])) > 1e-5, (n, grad)
        np.testing.assert_allclose(float(grad[n]), float(fd[n]), rtol=2e-5, atol=1e-10)
    assert np.isfinite(value)


def test_remat_scan_equals_plain_scan(logistic, getkey):
    """Checkpointing in √T segments (with a remainder) changes no value."""
    sim, key = _sim(), getkey()
    x, y = logistic
    assert (x.shape[0] - 1) % int(np.sqrt(x.shape[0] - 1)) != 0  # the remainder path runs
    run = eqx.filter_jit(mj.simulate)
    plain = run(sim, x, y, key=key)
    remat = run(sim, x, y, key=key, remat=True)
    assert tree_allclose(plain, remat, rtol=1e-13, atol=0)


def test_parameterisation_keeps_ranges():
    """The start maps back to the start values; λ = (q + λ₀) softplus(u) − q stays above −q."""
    sim = _sim(mj.MeanFieldGame(mj.CostParams(q=2.0, lam=-1.5, gamma=3.0, alpha=1e-4)))
    u = to_unconstrained(sim, ("lam", "gamma", "alpha"))
    back = constrained(sim, u)
    np.testing.assert_allclose([back["lam"], back["gamma"], back["alpha"]], [-1.5, 3.0, 1e-4])
    far = constrained(sim, {"lam": jnp.asarray(-20.0), "gamma": jnp.asarray(-20.0)})
    assert float(far["lam"]) > -2.0 and float(far["gamma"]) > 0


def test_smoothed_worst_lies_between_mean_and_max(logistic, getkey):
    res = eqx.filter_jit(mj.simulate)(_sim(n_agents=8), *logistic, key=getkey())
    r = np.asarray(res.agent_rmse["memoa"])
    for temp in (0.3, 0.01):
        v = float(mj.objective(res, "memoa", "worst", temp))
        assert r.mean() <= v <= r.max() and v >= r.max() - temp * r.mean() * np.log(r.size)


@pytest.mark.parametrize("method", ["ogd_sgd", pytest.param("memoa", marks=pytest.mark.slow)])
def test_tune_lowers_training_objective(logistic, getkey, method):
    m = mj.OnlineGradient(learning_rate=0.05) if method == "ogd_sgd" else None
    sim, key = _sim(m), getkey()
    calls = []
    out = mj.tune(
        sim, *logistic, key=key, kind="avg", steps=4, callback=lambda i, v: calls.append(i)
    )
    assert calls == list(range(5)) and len(out.losses) == 5 and len(out.history) == 5
    start = {"learning_rate": 0.05} if m else {"lam": 0.5, "gamma": 15.0, "alpha": 0.1}
    assert out.initial == pytest.approx(start)
    assert out.losses[out.best_step] == min(out.losses) < out.losses[0]
    # the chosen values reproduce their loss through `with_params`
    again = eqx.filter_jit(mj.simulate)(mj.with_params(sim, out.values), *logistic, key=key)
    np.testing.assert_allclose(
        float(again.summary[method].avg_rmse), out.losses[out.best_step], rtol=1e-12
    )


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(names=("kappa",), kind="avg"), None),
        (dict(names=("learning_rate",)), "cannot tune 'learning_rate'"),
        (dict(kind="median"), "objective must be one of"),
        (dict(temperature=0.0), "temperature must be positive, got temperature=0.0"),
        (dict(steps=-1), "steps=-1"),
    ],
)
def test_bad_tune_input(logistic, getkey, kw, match):
    if match is None:  # κ is tunable only for the server objective, but never an error to ask
        assert "kappa" not in mj.tunable(_sim(), kw["kind"])
        return
    with pytest.raises(ValueError, match=match):
        mj.tune(_sim(), *logistic, key=getkey(), **kw)
