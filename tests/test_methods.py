"""The method protocol and its registry (`memoa_jax._methods`): every named method builds from
its name and runs, the base holds no method's algorithm, a user method needs only `name` and
`step`, `greedy_step` is G1's step, and `MeanFieldGame`'s string options are its strategies."""

import subprocess
import sys

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import memoa_jax as mj
from memoa_jax.data import load_dataset

COST = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-3)


class MyRidge(mj.AbstractMethod):
    """G1 written by a user with the public `greedy_step`."""

    cost: mj.CostParams
    name: str = eqx.field(static=True, default="my_ridge")

    @property
    def history(self) -> int:
        return 3

    def step(self, ctx, state):
        return state.yhat, *mj.greedy_step(ctx, state, state.yhat, self.cost, 3)


class Still(mj.AbstractMethod):
    """The least a method declares: a name and a step (`ŷ_{t+1} = ŷ_t`)."""

    name: str = eqx.field(static=True, default="still")

    def step(self, ctx, state):
        return state.yhat, jnp.zeros(state.yhat.shape[1:], state.yhat.dtype), state.yhat


@pytest.mark.parametrize("name", list(mj.METHODS))
def test_every_named_method_builds_from_its_name(name):
    m = mj.make_method(name, COST, window=2, ridge_window=4, learning_rate=0.1)
    assert type(m) is mj.METHODS[name].cls and m.name == name
    assert isinstance(m, mj.AbstractMethod)
    assert m.history >= 1 and m.tunable


def test_default_methods_are_the_registrys_defaults():
    methods = mj.default_methods(COST, window=2, ridge_window=4, sync_every=2)
    assert tuple(m.name for m in methods) == mj.DEFAULT_METHODS
    assert mj.DEFAULT_METHODS == ("memoa", "g1_ridge", "g2_myopic", "g3_independent",
                                  "g4_follow_mean")  # fmt: skip
    memoa, g1, g2, g3, g4 = methods
    assert (memoa.window, memoa.ridge_window, memoa.sync_every) == (2, 4, 2)
    assert g2.window == 1 and float(g3.cost.lam) == 0.0 and float(memoa.cost.lam) == 0.5
    assert g1.ridge_window == g4.ridge_window == 4
    with pytest.raises(ValueError, match="unknown method 'g5'"):
        mj.make_method("g5", COST)
    with pytest.raises(TypeError, match="unknown settings"):
        mj.make_method("memoa", COST, windows=2)


def test_the_cli_reads_the_registry_without_jax():
    """`memoa --help` lists the registry's names without importing JAX."""
    code = (
        "import sys; from memoa_jax.cli import _options as o; "
        "assert 'jax' not in sys.modules, 'jax imported'; "
        "print(','.join(o.METHOD_NAMES + o.OGD_NAMES))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().split(",") == list(mj.METHODS)


def test_the_base_holds_no_method_algorithm():
    assert not hasattr(mj.AbstractMethod, "greedy")
    still = Still()
    assert still.history == 1 and still.needs_moments and not still.needs_agent_moments
    assert still.tunable == () and still.warm_up == 0 and still.init(3, 2, jnp.float64) is None


def test_named_and_user_methods_run_side_by_side(getkey):
    """Every named method, a user's G1 through `greedy_step` (equal to G1 to the last bit)
    and a user method with a name and a step only, in one simulation."""
    data = load_dataset("logistic", n_rows=24)
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    methods = tuple(mj.make_method(n, COST, window=2, ridge_window=3) for n in mj.METHODS)
    methods += (MyRidge(COST), Still())
    sim = mj.Simulation(6, mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.1), methods, cost=COST)
    res = eqx.filter_jit(mj.simulate)(sim, x, y, key=getkey())
    for m in methods:
        assert np.all(np.isfinite(res.agent_rmse[m.name])), m.name
    np.testing.assert_array_equal(res.agent_rmse["my_ridge"], res.agent_rmse["g1_ridge"])
    np.testing.assert_array_equal(res.steps["my_ridge"].mse, res.steps["g1_ridge"].mse)


OPTIONS = [
    ("mean_field", "realized", mj.RealizedMean),
    ("mean_field", "flow", mj.FlowMean),
    ("equilibrium", "mean_field", mj.MeanFieldEquilibrium),
    ("replay_base", "replay_end", mj.ReplayEnd),
    ("replay_base", "observed", mj.ObservedBase),
    ("replay_base", "own", mj.OwnBase),
    ("replay_control", "replay", mj.ReplayControl),
    ("replay_control", "gains", mj.GainsControl),
    ("moments", "population", mj.PopulationMoments),
    ("moments", "own", mj.OwnMoments),
]


@pytest.mark.parametrize("option,name,cls", OPTIONS)
def test_a_games_string_option_is_its_strategy(option, name, cls):
    by_name = mj.MeanFieldGame(COST, **{option: name})
    by_object = mj.MeanFieldGame(COST, **{option: cls()})
    assert isinstance(getattr(by_name, option), cls)
    assert by_name == by_object and hash(by_name) == hash(by_object)
    assert by_name.options[option] == name
    assert mj.MeanFieldGame(COST, **by_name.options) == by_name


def test_the_nash_comparator_is_a_strategy():
    fne = mj.nash.centralized_method(COST, window=2)
    assert isinstance(fne.equilibrium, mj.NashEquilibrium) and fne.options["equilibrium"] == "nash"
    assert fne.checks == ((mj.RESULTS.singular_nash, 2), (mj.RESULTS.no_agents, 0))
    with pytest.raises(ValueError, match="moments='own'"):
        mj.nash.centralized_method(COST, moments="own")
    with pytest.raises(ValueError, match="replay_control must be one of 'replay', 'gains'"):
        mj.MeanFieldGame(COST, replay_control="last")
