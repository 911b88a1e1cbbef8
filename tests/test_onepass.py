"""The lean loop's one pass per step (`Kernels.onepass`): the same results as the plain
form (one pass per replay step, the replay's means as population means) to float64
round-off, every draw made once (counted from the jaxpr), and a user method that reads
the population moments gets them whatever else runs beside it."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memoa_jax as mj
from memoa_jax._counts import step_draw_counts
from memoa_jax._loop import agent_draws, index_dtype
from memoa_jax.data import load_dataset

COST = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)


def _methods():
    """MEMOA (T = 3, realized ȳ: both statistics) and a T = 2 game on the deterministic
    flow (no statistics); G2 (T = 1) runs in every lean test of test_lean.py."""
    memoa = mj.default_methods(COST, window=3, ridge_window=3)[0]
    return (memoa, mj.MeanFieldGame(cost=COST, window=2, mean_field="flow", name="flow2"))


def _simulate(n, kernels, state="lean", batch_size=None, methods=None, rows=20):
    data = load_dataset("logistic", n_rows=rows)
    sim = mj.Simulation(
        n_agents=n,
        encoder=mj.RFNEncoder(d=1, d_x=data.d_x, p=5, sigma=0.1),
        methods=methods or _methods(),
        cost=COST,
        state=state,
        kernels=kernels,
        batch_size=batch_size,
    )
    run = eqx.filter_jit(mj.simulate)
    return run(sim, jnp.asarray(data.x), jnp.asarray(data.y), key=jax.random.key(3))


def _rel(a, b) -> float:
    """The largest relative difference between two results' summaries and per-agent RMSE."""
    worst = 0.0
    for u, v in zip(
        jax.tree.leaves((a.summary, a.agent_rmse)), jax.tree.leaves((b.summary, b.agent_rmse))
    ):
        u, v = np.asarray(u, float), np.asarray(v, float)
        same = (u == v) | (np.isnan(u) & np.isnan(v))
        d = np.where(same, 0.0, np.abs(u - v) / np.maximum(np.abs(v), 1e-300))
        worst = max(worst, float(np.max(d, initial=0.0)))
    return worst


@pytest.mark.parametrize(
    "both",
    # MEMOA alone (T = 3, realized ȳ: both feature statistics) in the default run; with the
    # T = 2 game on the flow as well (each lean method is a minute of compilation here)
    [False, pytest.param(True, marks=pytest.mark.slow)],
    ids=["memoa", "memoa+flow2"],
)
def test_one_pass_equals_plain(both):
    """One pass (in chunks of 24 of 64 agents, the last one shifted; unchunked, the one
    pass is what every lean test runs) against the plain form: the replay's means from
    feature statistics instead of population means of the replayed states, the moments
    summed in the same pass. A
    T-step replay's means are sums of O(T) products of O(1) terms: float64 round-off is
    far below 1e-11 relative; the frozen counts (the `moving` flags, now carried) exact."""
    methods = _methods() if both else _methods()[:1]
    plain = _simulate(64, mj.Kernels().without("onepass"), methods=methods)
    one = _simulate(64, mj.Kernels(), batch_size=24, methods=methods)
    assert _rel(one, plain) < 1e-11
    for name in plain.names:
        assert float(one.summary[name].frozen_share) == float(plain.summary[name].frozen_share)


def _lean(n, kernels, window=3):
    memoa = mj.default_methods(COST, window=window, ridge_window=3)[0]
    enc = mj.RFNEncoder(d=1, d_x=1, p=5, sigma=0.1)
    return mj.Simulation(
        n, enc, (memoa,), mj.RidgeMixture(), COST, "h2", dtype=jnp.float32, state="lean",
        kernels=kernels,
    )  # fmt: skip


def _draws_of_one_agent(sim) -> tuple[float, float]:
    """Hashes and normals of one agent's key chain and parameters (`agent_draws`), counted
    from its jaxpr as `step_draw_counts` counts a step."""
    from memoa_jax._counts import _count

    n = sim.n_agents
    index = jnp.arange(n, dtype=index_dtype(n))
    jaxpr = jax.make_jaxpr(lambda k: agent_draws(sim, k, index))(jax.random.key(0))
    counts = {"hashes": 0, "normals": 0}
    _count(jaxpr.jaxpr, counts)
    return counts["hashes"] / n, counts["normals"] / n


@pytest.mark.parametrize("window", [1, 2, 3])
def test_every_draw_once(window):
    """Per agent-step, one derivation of the agent's key chain and parameters and one draw
    of each feature of the window and of the step, `(T + 1) p` normals (one hash each):
    the formula, checked against the count from the step's jaxpr. The plain form derives
    the key chain and parameters once per pass (T + 1 passes). At T = 3, p = 5: 33 hashes,
    from 72 (77 with the `moving` flags found after the loop)."""
    n, p = 2**14, 5
    sim = _lean(n, mj.Kernels(), window)
    h_agent, n_agent = _draws_of_one_agent(sim)
    counts = step_draw_counts(sim)
    assert counts.hashes == h_agent + (window + 1) * p
    assert counts.normals == n_agent + (window + 1) * p
    plain = step_draw_counts(dataclasses.replace(sim, kernels=mj.Kernels().without("onepass")))
    assert plain.hashes == (window + 1) * h_agent + (window + 1) * p
    if window == 3:
        assert counts.hashes <= 40 < plain.hashes


class MomentDrift(mj.AbstractMethod):
    """A user method that reads the population moments: `ŷ_{t+1} = ŷ_t + Z_t β` with
    `β = 0.1 M_t[0]`, the population mean feature at `x_t`."""

    cost: mj.CostParams
    ridge_window: int = eqx.field(static=True, default=1)
    name: str = eqx.field(static=True, default="moment_drift")

    def step(self, ctx: mj.StepContext, state: mj.MethodState):
        beta = 0.1 * ctx.mom_M[jnp.mod(ctx.t, ctx.ring_size), 0].astype(state.yhat.dtype)
        nxt = state.yhat + jnp.einsum("dpn,p->dn", ctx.z(0), beta)
        energy = jnp.broadcast_to(beta @ beta, state.yhat.shape[1:])
        return state.yhat, energy, nxt


def test_user_method_reads_moments_alone():
    """Regression: the loop computed the population moments only if a `MeanFieldGame`
    ran, so a user method reading them alone got zeros (and a different RMSE beside
    MEMOA). Its results alone and beside MEMOA are now the same."""
    memoa = mj.default_methods(COST, window=3, ridge_window=3)[0]
    alone = _simulate(32, mj.Kernels(), "stored", methods=(MomentDrift(cost=COST),))
    both = _simulate(32, mj.Kernels(), "stored", methods=(MomentDrift(cost=COST), memoa))
    a, b = alone.summary["moment_drift"], both.summary["moment_drift"]
    np.testing.assert_allclose(float(a.avg_rmse), float(b.avg_rmse), rtol=1e-13)
    np.testing.assert_allclose(
        alone.agent_rmse["moment_drift"], both.agent_rmse["moment_drift"], rtol=1e-13
    )
