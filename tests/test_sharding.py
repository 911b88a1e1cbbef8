"""The agent axis sharded over a 4-device mesh gives the single-device results.

Runs in a subprocess: the host platform's device count is fixed when JAX starts
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, jax.random as jr
    jax.config.update("jax_enable_x64", True)
    import memoa_jax as mj
    from memoa_jax.data import load_dataset

    assert len(jax.devices()) == 4, jax.devices()
    homogeneity, n, batch_size = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    batch_size = None if batch_size == "none" else int(batch_size)
    data = load_dataset("logistic", n_rows=40)
    enc = mj.RFNEncoder(d=1, d_x=1, p=4, sigma=0.1)
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    sim = mj.Simulation(n, enc, mj.default_methods(cost), homogeneity=homogeneity,
                        batch_size=batch_size)
    mesh = jax.make_mesh((4,), ("agents",))
    # (throw=False: no eqx.error_if after the loop, whose conditional would hold the
    # summaries' gathers outside ENTRY; the CLI runs the loop so, raising the status itself)
    one = jax.jit(lambda x, y, k: mj.simulate(sim, x, y, key=k, throw=False))
    four = jax.jit(lambda x, y, k: mj.simulate(sim, x, y, key=k, mesh=mesh, throw=False))
    a = one(data.x, data.y, jr.key(3))
    b = four(data.x, data.y, jr.key(3))
    # inside the time loop, devices exchange reductions only: no per-agent array is gathered
    gathers_in_loop, computation = 0, None
    for line in four.lower(data.x, data.y, jr.key(3)).compile().as_text().splitlines():
        if line and not line.startswith(" "):
            computation = line.split(" ")[0]
        if computation != "ENTRY" and any(
            op in line for op in ("all-gather(", "all-to-all(", "collective-permute(")
        ):
            gathers_in_loop += 1
    rel = jax.tree.map(lambda u, v: float(jnp.max(jnp.abs(u - v) / (1 + jnp.abs(u)))), a, b)
    print(json.dumps(dict(max_rel=max(jax.tree.leaves(rel)),
                          worst=float(b.summary["memoa"].worst_rmse),
                          gathers_in_loop=gathers_in_loop)))
    """
)


@pytest.mark.parametrize(
    "homogeneity, n, batch_size",
    [
        pytest.param("h2", 1002, "none", id="h2-uneven"),
        pytest.param("h1", 64, "none", id="h1", marks=pytest.mark.slow),
    ],
)
def test_sharded_run_equals_single_device(homogeneity, n, batch_size):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env.pop("JAX_PLATFORMS", None)
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, homogeneity, str(n), batch_size],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["max_rel"] < 1e-9, out
    assert 0 < out["worst"] < 10, out
    assert out["gathers_in_loop"] == 0, out


def test_mesh_with_chunks_is_refused():
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    import memoa_jax as mj
    from memoa_jax.data import load_dataset

    data = load_dataset("logistic", n_rows=20)
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    sim = mj.Simulation(10, mj.RFNEncoder(d=1, d_x=1, p=3), mj.default_methods(cost), batch_size=4)
    mesh = jax.make_mesh((1,), ("agents",))
    with pytest.raises(ValueError, match="batch_size=4"):
        mj.simulate(sim, jnp.asarray(data.x), jnp.asarray(data.y), key=jr.key(0), mesh=mesh)
    sim = mj.Simulation(10, sim.encoder, sim.methods)
    with pytest.raises(ValueError, match="'agents'"):
        mj.simulate(
            sim,
            jnp.asarray(data.x),
            jnp.asarray(data.y),
            key=jr.key(0),
            mesh=jax.make_mesh((1,), ("x",)),
        )
