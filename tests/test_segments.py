"""The loop in segments (`Run`, progress between segments) and its runtime checks carried as
a `Status` (no host callback): the same bits as one scan, the same messages as before."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest
from helpers import assert_same_bits

import memoa_jax as mj
from memoa_jax.data import load_dataset


def _sim(state="stored", sigma=0.1, n_methods=2):
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    methods = mj.default_methods(cost, window=3, ridge_window=3)[:n_methods]
    return mj.Simulation(
        n_agents=5,
        encoder=mj.RFNEncoder(d=1, d_x=1, p=3, sigma=sigma),
        methods=methods,
        cost=cost,
        state=state,
    )


@pytest.fixture(scope="module")
def logistic():
    data = load_dataset("logistic", n_rows=14)
    return jnp.asarray(data.x), jnp.asarray(data.y)


@pytest.mark.parametrize(
    "state", ["stored", pytest.param("lean", marks=pytest.mark.slow)]
)  # (lean: a warm-up program and a second one after it; minutes of compilation here)
def test_segments_equal_one_scan_bit_for_bit(logistic, getkey, state):
    """Eager `simulate` (the segment program, with a progress meter: many segments), a run
    chained by hand through `Run` (a no-op and a one-step segment among them), and the one
    scan of `simulate` under `jax.jit`: the same bits, every output."""
    sim, key = _sim(state), getkey()
    x, y = logistic
    n_steps = x.shape[0] - 1
    seen = []
    meter = mj.CallbackProgressMeter(callback=seen.append, segments=4)
    eager = mj.simulate(sim, x, y, key=key, progress=meter)
    assert seen == list(range(n_steps))  # every step, reported between segments
    scanned = jax.jit(lambda k: mj.simulate(sim, x, y, key=k, throw=False))(key)
    assert_same_bits(eager, scanned)

    run = mj.Run(sim, x, y, key=key)
    carry = run.init()
    for stop in (2, 2, 3, 8, n_steps):  # across the lean warm-up (3 steps)
        carry = run.segment(carry, stop)
        assert int(carry.t) == stop
    assert_same_bits(run.finish(carry), scanned)
    with pytest.raises(ValueError, match="stop=0"):
        run.segment(run.init(), 0)


def test_progress_under_a_trace_is_refused(logistic, getkey):
    sim, key = _sim(), getkey()
    with pytest.raises(ValueError, match="progress is reported between compiled segments"):
        jax.jit(lambda k: mj.simulate(sim, *logistic, key=k, progress=print))(key)


def test_failed_check_is_a_simulation_error_with_the_same_message(logistic, getkey):
    """Features of a huge scale make the mean-field system singular at the first sync: the
    loop's `Status` says so (no host callback), raised on the host as `SimulationError` with
    equinox's former message; `throw=False` returns it in the result."""
    sim, key = _sim(sigma=1e200, n_methods=1), getkey()
    x, y = logistic
    msg = r"R̃ \(mean-field response matrix\) is singular at window step s=2 \(of T=3\)"
    with pytest.raises(mj.SimulationError, match=msg) as info:
        mj.simulate(sim, x, y, key=key)
    assert info.value.status is not None and int(info.value.status.step) == 3  # the first sync
    res = mj.simulate(sim, x, y, key=key, throw=False)
    assert res.status is not None and bool(res.status.failed)
    assert res.status.code == mj.RESULTS.singular_mean_field
    assert res.status.message() == str(info.value)
    # under an outer jit: `eqx.error_if` on the outputs, outside the scan
    with pytest.raises(eqx.EquinoxRuntimeError, match=msg):
        eqx.filter_jit(lambda k: mj.simulate(sim, x, y, key=k))(key)
    # the same message as the solver's own check, called on its own
    T, d, p = 3, 1, 3
    S = jnp.full((T, d, p, d, p), jnp.nan)
    with pytest.raises(eqx.EquinoxRuntimeError, match="singular at window step s=2"):
        eqx.filter_jit(mj.solve_mean_field)(
            jnp.zeros((T, d, p)), S, jnp.zeros((T + 1, d)), sim.cost
        )
