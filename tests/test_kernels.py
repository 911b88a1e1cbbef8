"""The tuned kernels (`_kernels.py`) against the plain path (`vmap` of the one-agent
functions, `jax.random`, `jax.scipy`): the same run, every method, to float rounding."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import assert_same_result

import memoa_jax as mj
from memoa_jax._kernels import TRICKS, Kernels, counter_bits, ndtr_and_pdf
from memoa_jax._random import bits_rows, fold_in_rows, normal_rows, split_rows
from memoa_jax.data import load_dataset

RTOL, ATOL = 1e-10, 1e-13


def _every_method(cost, every=True):
    """The five default methods and every other path of the methods' step: the readings of
    the window, own moments, G4 without increment, the deterministic flow."""
    game = lambda name, **kw: mj.MeanFieldGame(cost, window=3, name=name, **kw)
    if not every:  # the replay, the greedy ridge on the ring, G4's mean, own moments
        return (
            *mj.default_methods(cost)[:2],
            mj.FollowTheMean(cost),
            game("own_moments", moments="own", replay_base="observed"),
        )
    return (
        *mj.default_methods(cost),
        game("observed_gains", replay_base="observed", replay_control="gains"),
        game("own_replay", replay_base="own", replay_control="replay"),
        game("end_gains", replay_control="gains"),
        game("own_moments", moments="own", replay_base="observed"),
        game("flow", mean_field="flow", sync_every=2),
        mj.FollowTheMean(cost, increment=False, name="g4_mean_only"),
    )


def _assert_same(a: mj.SimResult, b: mj.SimResult, rtol=RTOL, atol=ATOL):
    assert_same_result(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    "homogeneity,every",
    [
        ("h2", False),
        pytest.param("h2", True, marks=pytest.mark.slow),
        pytest.param("h1", True, marks=pytest.mark.slow),
    ],
)
def test_plain_path_equals_tuned(homogeneity, every):
    """Four method paths in the default run, every one of them under -m slow."""
    ds = load_dataset("logistic", n_rows=14)
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=2.0, alpha=0.01)
    enc = mj.RFNEncoder(d=1, d_x=1, p=4, sigma=0.3)
    runs = {}
    run = eqx.filter_jit(mj.simulate)  # one program each (in segments, test_segments.py)
    for kernels in ("tuned", "plain"):
        sim = mj.Simulation(
            13, enc, _every_method(cost, every), cost=cost, homogeneity=homogeneity, kernels=kernels
        )
        runs[kernels] = run(sim, jnp.asarray(ds.x), jnp.asarray(ds.y), key=jr.key(3))
    _assert_same(runs["tuned"], runs["plain"])


@pytest.mark.slow
def test_plain_path_equals_tuned_with_an_esn_in_chunks():
    """The stateful encoder (Monte-Carlo moments use the counter-based draws too), d = 2,
    a dual ridge system of 2 × 3 rows, chunks that do not divide N."""
    t = np.arange(12.0)
    x = np.stack([np.sin(t / 3), np.cos(t / 4)], 1)
    y = np.stack([np.sin((t + 1) / 3), 0.5 * np.cos(t / 2)], 1)
    cost = mj.CostParams(q=1.0, lam=0.3, gamma=1.0, alpha=0.0)
    enc = mj.ESNEncoder(d=2, d_x=2, p=3, sigma=0.4, n_mc=4)
    runs = {}
    for kernels in ("tuned", "plain"):
        methods = mj.default_methods(cost, window=2, ridge_window=3)
        sim = mj.Simulation(9, enc, methods, cost=cost, batch_size=4, kernels=kernels)
        runs[kernels] = mj.simulate(sim, jnp.asarray(x), jnp.asarray(y), key=jr.key(1))
    _assert_same(runs["tuned"], runs["plain"])


def test_each_trick_has_a_plain_form():
    assert set(TRICKS) == {f for f in Kernels.__dataclass_fields__}
    plain = Kernels.plain()
    assert not any(getattr(plain, f) for f in TRICKS)
    for trick in TRICKS:
        k = Kernels().without(trick)
        assert not getattr(k, trick) and all(getattr(k, f) for f in TRICKS if f != trick)
    with pytest.raises(ValueError, match="unknown trick 'fast'"):
        Kernels().without("fast")
    with pytest.raises(ValueError, match="kernels='fast'"):
        mj.Simulation(
            2, mj.RFNEncoder(1, 1, 2), mj.default_methods(mj.CostParams()), kernels="fast"
        )


def test_threefry_forms_give_the_same_bits():
    keys = jr.bits(jr.key(0), (2, 3, 5), jnp.uint32)  # two agent axes
    j = jnp.arange(4, 10, dtype=jnp.uint32)
    np.testing.assert_array_equal(
        counter_bits(keys, 17, j, threefry=True), counter_bits(keys, 17, j, threefry=False)
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_row_forms_of_jax_random_give_its_bits(dtype):
    """`fold_in`, `split`, `bits` and `normal` on agent-last rows against `jax.random` per
    key, and the encoders' `init_rows` against `vmap(init)` (the AbstractEncoder default)."""
    key = jr.key(3)
    index = jnp.arange(5, 45, dtype=jnp.int32)
    per_agent = jax.vmap(lambda i: jr.fold_in(key, i))(index)
    rows_ = fold_in_rows(jr.key_data(key), index)
    np.testing.assert_array_equal(rows_, jr.key_data(per_agent).T)
    for j, k in enumerate(split_rows(rows_, 3)):
        np.testing.assert_array_equal(
            k, jr.key_data(jax.vmap(lambda a: jr.split(a, 3)[j])(per_agent)).T
        )
    np.testing.assert_array_equal(
        bits_rows(rows_, 7),
        jax.vmap(lambda a: jr.bits(a, (7,), jnp.uint32), out_axes=-1)(per_agent),
    )
    np.testing.assert_array_equal(
        normal_rows(rows_, (2, 3), dtype),
        jax.vmap(lambda a: jr.normal(a, (2, 3), dtype), out_axes=-1)(per_agent),
    )
    for enc in (mj.RFNEncoder(d=2, d_x=3, p=4), mj.ESNEncoder(d=2, d_x=3, p=4)):
        via_vmap = mj.AbstractEncoder.init_rows(enc, rows_, dtype)
        assert_trees_equal(enc.init_rows(rows_, dtype), via_vmap)
        one = enc.init(per_agent[4], dtype)
        assert_trees_equal(jax.tree.map(lambda a: a[..., 4], via_vmap), one)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert u.dtype == v.dtype
        np.testing.assert_array_equal(u, v)


def test_normal_cdf_forms_agree():
    x = jnp.linspace(-9.0, 9.0, 2001)
    for a, b in zip(ndtr_and_pdf(x, cephes=True), ndtr_and_pdf(x, cephes=False)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-300)
