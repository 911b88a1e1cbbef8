"""The public sweep: per-N summaries equal single runs, one compilation per padded bucket
(guarded by `chex.assert_max_traces` on the compiled loop), summaries in the order of the
methods, no recompilation for a Python-int `n_active`, and `jax.vmap(simulate)` over keys."""

import dataclasses

import chex
import equinox as eqx
import jax
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
    """Two buckets in one sweep: 3, 7 and 20 padded to one of 1024 slots, 700 (from
    `pad_below` on) compiled as itself, `simulate`'s run at N = 700. The same 700 in a
    second sweep, padded: the 1024-slot program again (no trace), and the exact run's
    summaries. (The exact run is the sweep's own point: one compilation less than a
    `simulate` of its own.)"""
    sim, x, y = setup
    key = getkey()
    traces = guard_loop_traces(monkeypatch, n=2)  # two buckets: 3, 7, 20 share one
    points = mj.sweep(sim, x, y, [7, 3, 20, 3, 700], key=key, pad_below=500)
    assert len(traces) == 2  # the guard saw the traces it bounds
    assert [p.n_agents for p in points] == [3, 7, 20, 700]
    assert [p.slots for p in points] == [1024, 1024, 1024, 700]
    for p in points:
        assert list(p.summary) == ["memoa", "g1_ridge"]  # as the methods were given
    (padded,) = mj.sweep(sim, x, y, [700], key=key, pad_below=2000)
    assert padded.slots == 1024 and len(traces) == 2
    assert [mj.bucket_slots(n, 2000) for n in (1, 1024, 1025, 1500)] == [1024, 1024, 2048, 2048]
    for name, s in points[3].summary.items():
        for f, v in s._asdict().items():
            np.testing.assert_allclose(
                padded.summary[name]._asdict()[f], v, rtol=1e-11, err_msg=f"{name}.{f}"
            )


def test_python_int_n_active_does_not_recompile(setup, getkey, monkeypatch):
    sim, x, y = setup
    big = eqx_replace(sim, 64)
    traces = guard_loop_traces(monkeypatch, n=1)
    key = getkey()
    seen = []
    for n in (5, 17, 64):  # and a new progress callback every time
        res = mj.simulate(big, x, y, key=key, n_active=n, progress=seen.append)
        assert np.isnan(np.asarray(res.agent_rmse["memoa"])[n:]).all()
    assert len(seen) == 3 * (x.shape[0] - 1)
    assert len(traces) == 1
    # the guard is live: another N is a retrace, stopped before its body is traced
    with pytest.raises(AssertionError, match="traced > 1 times"):
        mj.simulate(eqx_replace(sim, 65), x, y, key=key)
    assert len(traces) == 1


def test_simulate_vmaps_over_keys(setup, getkey):
    """`jax.vmap(simulate)` over seeds equals the runs one by one, on every statistic."""
    sim, x, y = setup
    # MEMOA alone (its population moments and mean field are the reductions over agents that
    # a batched program could get wrong); each method more would add a second of compilation
    sim = dataclasses.replace(sim, n_agents=9, methods=sim.methods[:1])
    keys = jr.split(getkey(), 3)
    batched = jax.vmap(lambda k: mj.simulate(sim, x, y, key=k))(keys)
    assert batched.names == ("memoa",)
    for i in range(3):
        one = mj.simulate(sim, x, y, key=keys[i])
        leaves = jax.tree_util.tree_leaves_with_path(one)
        assert len(leaves) == len(jax.tree.leaves(batched))
        for (path, a), b in zip(leaves, jax.tree.leaves(batched), strict=True):
            # the batched program may sum in another order: float64 rounding, no more
            np.testing.assert_allclose(
                b[i], a, rtol=1e-12, atol=1e-15, err_msg=jax.tree_util.keystr(path)
            )
    # and the seeds are different runs (the comparison above is not of one run with itself)
    avg = np.asarray(batched.summary["memoa"].avg_rmse)
    assert len(set(avg.tolist())) == 3


def guard_loop_traces(monkeypatch, n: int) -> list:
    """Re-compile the loop's segment program (`_loop._run_segment`, an `eqx.filter_jit`,
    what an eager `simulate` runs) with `chex.assert_max_traces(n)` inside the jit, so the
    guard counts traces of the compiled loop itself. Returns the list of traces seen (one
    entry per trace)."""
    body = loop._run_segment.__wrapped__
    traces = []

    def counted(*args):
        traces.append(len(traces))
        return body(*args)

    chex.clear_trace_counter()
    guarded = chex.assert_max_traces(counted, n=n)
    monkeypatch.setattr(loop, "_run_segment", eqx.filter_jit(guarded, donate="all-except-first"))
    return traces


def eqx_replace(sim, n):
    return dataclasses.replace(sim, n_agents=n)
