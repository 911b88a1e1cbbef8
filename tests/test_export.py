"""The loop lowers for GPUs and TPUs from this CPU-only machine (`jax.export`), with its
runtime checks on: it holds no host callback (a callback lowers only for the platform it
runs on, and would cost a device-host round trip per step)."""

import json
import os
import re
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import memoa_jax as mj
from memoa_jax.data import load_dataset

PLATFORMS = ("cuda", "tpu")


def host_callbacks(text: str) -> list[str]:
    """The host-callback custom calls of a lowered (StableHLO) program."""
    return re.findall(r"custom_call @(\w*callback\w*)", text)


def _sim(state: str, dtype, n_agents: int = 8) -> mj.Simulation:
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    return mj.Simulation(
        n_agents=n_agents,
        encoder=mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.1),
        methods=mj.default_methods(cost, window=3, ridge_window=3)[:2],  # MEMOA and G1
        cost=cost,
        dtype=dtype,
        state=state,
    )


@pytest.fixture(scope="module")
def series():
    data = load_dataset("logistic", n_rows=8)
    return jnp.asarray(data.x), jnp.asarray(data.y)


def test_the_counter_sees_a_host_callback():
    """The counter is live: equinox's runtime check, lowered here, is a host callback."""
    text = jax.jit(lambda v: eqx.error_if(v, v > 0, "positive")).lower(1.0).as_text()
    assert len(host_callbacks(text)) >= 1


@pytest.mark.parametrize(
    "state, dtype",
    [
        pytest.param("stored", jnp.float32, id="stored-f32"),
        pytest.param("stored", jnp.float64, id="stored-f64"),
        pytest.param("lean", jnp.float32, id="lean-f32"),
        pytest.param("lean", jnp.float64, id="lean-f64"),
    ],
)
def test_loop_exports_for_gpu_and_tpu(series, state, dtype):
    """`simulate` (one scan, under jit) and the segment program of `Run` (what an eager
    `simulate` runs) export for CUDA and TPU, and hold no host callback; the checks are
    on: the result's `status` is an output of the program."""
    sim, (x, y) = _sim(state, dtype), series
    whole = jax.jit(lambda k: mj.simulate(sim, x, y, key=k, throw=False))
    exported = jax.export.export(whole, platforms=PLATFORMS)(jax.random.key(0))
    assert exported.platforms == PLATFORMS
    assert host_callbacks(exported.mlir_module()) == []
    out = jax.eval_shape(whole, jax.random.key(0))
    assert out.status is not None and out.status.code.dtype == jnp.int32

    run = mj.Run(sim, x, y, key=jax.random.key(0))
    carry = jax.eval_shape(run.init)
    segment = jax.jit(lambda c: run.segment(c, run.n_steps))
    exported = jax.export.export(segment, platforms=PLATFORMS)(carry)
    assert host_callbacks(exported.mlir_module()) == []


SHARDED = textwrap.dedent(
    """
    import json, re, sys
    import jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    import memoa_jax as mj
    from memoa_jax.data import load_dataset

    assert len(jax.devices()) == 4, jax.devices()
    data = load_dataset("logistic", n_rows=8)
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    mesh = jax.make_mesh((4,), ("agents",))
    out = {}
    for state in ("stored", "lean"):
        sim = mj.Simulation(64, mj.RFNEncoder(d=1, d_x=1, p=3, sigma=0.1),
                            mj.default_methods(cost)[:2], cost=cost, state=state)
        fn = jax.jit(lambda k: mj.simulate(sim, x, y, key=k, mesh=mesh, throw=False))
        exp = jax.export.export(fn, platforms=("cuda", "tpu"))(jax.random.key(0))
        text = exp.mlir_module()
        out[state] = dict(
            callbacks=len(re.findall(r"custom_call @(\\w*callback\\w*)", text)),
            shardings=text.count("sharding"),  # (mhlo or sdy: shardy)
            devices=exp.nr_devices,
        )
    print(json.dumps(out))
    """
)


def test_sharded_loop_exports_for_gpu_and_tpu():
    """On a mesh of 4 (forced CPU) devices: exported for 4 CUDA / TPU devices, sharded,
    no host callback."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env.pop("JAX_PLATFORMS", None)
    res = subprocess.run(
        [sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for state in ("stored", "lean"):
        assert out[state]["callbacks"] == 0, out
        assert out[state]["devices"] == 4, out
        assert out[state]["shardings"] > 0, out
