"""The public sweep: per-N summaries equal single runs, one compilation per padded bucket,
summaries in the order of the methods, and no recompilation for a Python-int `n_active`."""

import chex
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import memoa_jax as mj
import memoa_jax._loop as loop
from memoa_jax.data import load_dataset


@pytest.fixture(scope="module")
def setup():
    ds = load_dataset("logistic", n_rows=24)
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    methods = (mj.MeanFieldGame(cost, window=2), mj.LocalRidge(cost, ridge_window=2))
    sim = mj.Simulation(1, mj.RFNEncoder(d=1, d_x=1, p=2, sigma=0.1), methods, cost=cost)
    return sim, jnp.asarray(ds.x), jnp.asarray(ds.y)


def test_sweep_compiles_once_per_bucket_and_equals_single_runs(setup, getkey, monkeypatch):
    sim, x, y = setup
    key = getkey()
    exact = mj.simulate(eqx_replace(sim, 7), x, y, key=key)
    # the compiled body of `simulate` computes the persistence once per trace
    monkeypatch.setattr(
        loop, "persistence_rmse", chex.assert_max_traces(loop.persistence_rmse, n=2)
    )
    points = mj.sweep(sim, x, y, [7, 3, 20, 3, 1500], key=key, pad_below=2000)
    assert [p.n_agents for p in points] == [3, 7, 20, 1500]
    assert [p.slots for p in points] == [1024, 1024, 1024, 2048]
    for p in points[:3]:
        assert list(p.summary) == ["memoa", "g1_ridge"]  # as the methods were given
    for name, s in exact.ordered():
        for f, v in s._asdict().items():
            np.testing.assert_allclose(
                points[1].summary[name]._asdict()[f], v, rtol=1e-11, err_msg=f"{name}.{f}"
            )


def test_python_int_n_active_does_not_recompile(setup, getkey, monkeypatch):
    sim, x, y = setup
    big = eqx_replace(sim, 64)
    monkeypatch.setattr(
        loop, "persistence_rmse", chex.assert_max_traces(loop.persistence_rmse, n=1)
    )
    key = getkey()
    seen = []
    for n in (5, 17, 64):  # and a new progress callback every time
        res = mj.simulate(big, x, y, key=key, n_active=n, progress=seen.append)
        assert np.isnan(np.asarray(res.agent_rmse["memoa"])[n:]).all()
    assert len(seen) == 3 * (x.shape[0] - 1)


def test_simulate_vmaps_over_keys(setup, getkey):
    """`jax.vmap(simulate)` over seeds equals the runs one by one."""
    import jax

    sim, x, y = setup
    sim = eqx_replace(sim, 9)
    keys = jr.split(getkey(), 3)
    batched = jax.vmap(lambda k: mj.simulate(sim, x, y, key=k))(keys)
    for i in range(3):
        one = mj.simulate(sim, x, y, key=keys[i])
        for name, s in one.ordered():
            np.testing.assert_allclose(
                batched.summary[name].worst_rmse[i], s.worst_rmse, rtol=1e-12
            )


def eqx_replace(sim, n):
    import dataclasses

    return dataclasses.replace(sim, n_agents=n)
