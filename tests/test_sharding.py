"""The agent axis sharded over a 4-device mesh gives the single-device results.

Runs in a subprocess: the host platform's device count is fixed when JAX starts
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`). One subprocess serves the whole
file (`four_devices`: each case a script run in it, in a fresh namespace), so that the
file pays one start-up of Python, JAX and memoa_jax, not one per case.
"""

import json
import os
import select
import subprocess
import sys
import textwrap

import pytest

# Runs each request line (JSON: a script's code and its argv) in a fresh namespace, its
# stdout captured; answers one JSON line, the output, or the traceback of a script that
# raised
WORKER = textwrap.dedent(
    """
    import contextlib, io, json, sys, traceback
    for line in sys.stdin:
        code, argv = json.loads(line)
        sys.argv, out = ["-c", *argv], io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, "<case>", "exec"), {"__name__": "__main__"})
            reply = dict(out=out.getvalue())
        except BaseException:
            reply = dict(out=out.getvalue(), error=traceback.format_exc())
        sys.__stdout__.write(json.dumps(reply) + "\\n")
        sys.__stdout__.flush()
    """
)
TIMEOUT_S = 600  # one case on 2 loaded cores takes < 60 s


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    """`run(code, *argv)`: the last line of what `code` printed, as JSON, run with `argv`
    as its `sys.argv[1:]` in the file's one Python process with 4 host devices. A case
    that raises fails with its traceback; one that does not end within `TIMEOUT_S` fails
    (and the process is killed)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env.pop("JAX_PLATFORMS", None)
    log = tmp_path_factory.mktemp("four-devices") / "stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )

    def run(code: str, *argv: str):
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps([code, list(argv)]) + "\n")
        proc.stdin.flush()
        if not select.select([proc.stdout], [], [], TIMEOUT_S)[0]:
            proc.kill()
            pytest.fail(f"no answer within {TIMEOUT_S} s: {log.read_text()[-3000:]}")
        line = proc.stdout.readline()
        assert line, f"the process ended: {log.read_text()[-3000:]}"
        reply = json.loads(line)
        assert "error" not in reply, reply["error"][-3000:]
        return json.loads(reply["out"].strip().splitlines()[-1])

    yield run
    with proc:  # (its streams closed)
        proc.stdin.close()  # (the loop ends)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, re, sys
    from functools import partial
    import jax, jax.numpy as jnp, jax.random as jr, numpy as np
    jax.config.update("jax_enable_x64", True)
    import memoa_jax as mj
    from memoa_jax.data import load_dataset

    assert len(jax.devices()) == 4, jax.devices()
    homogeneity, n, state, n_methods, run, batch_size = sys.argv[1:]
    n, n_methods, segments, run = int(n), int(n_methods), run == "segments", run != "lower"
    batch_size = None if batch_size == "none" else int(batch_size)
    data = load_dataset("logistic", n_rows=40)
    enc = mj.RFNEncoder(d=1, d_x=1, p=4, sigma=0.1)
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    sim = mj.Simulation(n, enc, mj.default_methods(cost)[:n_methods], homogeneity=homogeneity,
                        state=state)
    # on the mesh, with chunks: each device runs its agents' chunks (`jax.shard_map`)
    chunked = mj.Simulation(n, enc, sim.methods, homogeneity=homogeneity, state=state,
                            batch_size=batch_size)
    mesh = jax.make_mesh((4,), ("agents",))
    # (throw=False: no eqx.error_if after the loop; the CLI runs the loop so, raising the
    # status itself)
    four = jax.jit(lambda x, y, k: mj.simulate(chunked, x, y, key=k, mesh=mesh, throw=False))
    # the whole compiled program (the loop, and the summaries after it): which collectives
    # other than all-reduces and sorts it holds (in the time loop or not), the shapes it
    # all-gathers, and its arrays with the population's length, or with chunks its padded
    # length (each device holds ceil(N / 4) agents); its temporary memory per device
    slots = -(-n // 4) * 4 if batch_size is not None else n
    lengths = "|".join(str(k) for k in {n, slots})
    ops, gathers, popdim, computation = [], [], [], None
    compiled = four.lower(data.x, data.y, jr.key(3)).compile()
    for line in compiled.as_text().splitlines():
        if line and not line.startswith(" "):
            computation = line.split(" ")[0]
        for op in ("all-gather(", "all-to-all(", "collective-permute(", "sort("):
            if op in line:
                ops.append((op, "entry" if computation == "ENTRY" else "loop"))
        if " all-gather(" in line:
            gathers.append(line.split("=", 1)[1].split(" all-gather(")[0].strip())
        if re.search(rf"[\\[,]({lengths})[\\],]", line):
            popdim.append(line.strip()[:120])
    temp = compiled.memory_analysis().temp_size_in_bytes
    out = dict(ops=ops, gathers=gathers, popdim=popdim, temp=temp)

    # the largest relative difference from the one-device result `a`; `b`'s padding
    # slots (with chunks on the mesh, past N) are NaN in `agent_rmse`, and left out
    def max_rel(a, b):
        pad = [np.asarray(r[n:]) for r in b.agent_rmse.values()]
        assert all(len(p) == slots - n and np.isnan(p).all() for p in pad), pad
        b = dataclasses.replace(b, agent_rmse={m: r[:n] for m, r in b.agent_rmse.items()})
        rel = jax.tree.map(
            lambda u, v: float(np.max(np.abs(np.subtract(u, v)) / (1 + np.abs(u)))), a, b)
        return max(jax.tree.leaves(rel))

    if run:
        one = jax.jit(lambda x, y, k: mj.simulate(sim, x, y, key=k, throw=False))
        a = one(data.x, data.y, jr.key(3))
        b = four(data.x, data.y, jr.key(3))
        rel = [max_rel(a, b)]
        if segments:  # and in segments (`mj.Run`, as the CLI runs it)
            c = mj.simulate(chunked, data.x, data.y, key=jr.key(3), mesh=mesh)
            rel.append(max_rel(a, c))
        # one device: the quantiles and the worst agent are the sort-based ones (bit for
        # bit) of the agents' RMSE (the formula `Population.quantile` had, NumPy's)
        @partial(jax.jit, static_argnums=1)
        def sorted_quantile(r, q):
            srt = jnp.sort(r)
            pos = q * (n - 1)
            lo = int(np.floor(pos))
            hi, frac = min(lo + 1, n - 1), jnp.asarray(pos - np.floor(pos), r.dtype)
            return jnp.where(frac == 0, srt[lo], srt[lo] + frac * (srt[hi] - srt[lo]))

        same = []
        for m, s in a.summary.items():
            r = a.agent_rmse[m]
            for q, got in ((0.5, s.p50_rmse), (0.9, s.p90_rmse), (0.99, s.p99_rmse)):
                want = sorted_quantile(r, q)
                same.append(bool(np.asarray(got).tobytes() == np.asarray(want).tobytes()))
            same.append(int(s.worst_agent) == int(jnp.argmax(r)))
        out.update(max_rel=max(rel), same=same,
                   worst=float(b.summary["memoa"].worst_rmse))
    print(json.dumps(out))
    """
)


def _sharded(
    four_devices,
    homogeneity: str,
    n: int,
    state: str,
    n_methods: int,
    mode: str,
    batch_size=None,
) -> dict:
    """SCRIPT's output for one case; `mode`: "lower" (compile only), "run" (jitted, against
    one device) or "segments" (also in segments)."""
    chunks = "none" if batch_size is None else str(batch_size)
    return four_devices(SCRIPT, homogeneity, str(n), state, str(n_methods), mode, chunks)


@pytest.mark.parametrize(
    "homogeneity, n, run",
    [
        # 2001 agents per device: the program, compiled; run under -m slow (the same GSPMD
        # program's results equal one process's in test_multiprocess.py, with two)
        pytest.param("h2", 8004, False, id="h2-compiled"),
        pytest.param("h2", 8004, True, id="h2", marks=pytest.mark.slow),
        pytest.param("h2", 1002, True, id="h2-uneven", marks=pytest.mark.slow),
        pytest.param("h1", 64, True, id="h1", marks=pytest.mark.slow),
    ],
)
def test_sharded_run_equals_single_device(four_devices, homogeneity, n, run):
    out = _sharded(four_devices, homogeneity, n, "stored", 5, "run" if run else "lower")
    if run:
        assert out["max_rel"] < 1e-9, out
        assert 0 < out["worst"] < 10, out
        assert all(out["same"]) and len(out["same"]) == 4 * 5, out
    # the whole program: no per-agent array is gathered or sorted (the summaries' quantiles,
    # worst agent and frozen share are reductions, `Population.quantiles`), and none has the
    # population's length. With N not a multiple of the devices, JAX returns the per-agent
    # outputs (`agent_rmse`) replicated (a jax.Array's shards are even): gathered, but only
    # there, after the loop.
    assert ("sort(", "entry") not in out["ops"] and ("sort(", "loop") not in out["ops"], out
    if n % 4:
        assert all(where == "entry" for _, where in out["ops"]), out
    else:
        assert out["ops"] == [] and out["popdim"] == [], out


def test_lean_sharded_program_has_no_population_array(four_devices):
    """The lean loop (agents recomputed from their index, the frozen agents found after the
    loop) and its summaries, sharded: no gather, sort or population-length array anywhere
    in the compiled program (compiled, not run; one method). With chunks (2001 agents per
    device, 300 per chunk), the same, and a device's temporary memory is bounded by its
    chunk: well under the unchunked program's."""
    plain = _sharded(four_devices, "h2", 8004, "lean", 1, "lower")
    assert plain["ops"] == [] and plain["popdim"] == [], plain
    chunked = _sharded(four_devices, "h2", 8004, "lean", 1, "lower", batch_size=300)
    # (the step's status, 4 numbers per device, goes in a psum: `gather_in_sum`)
    assert chunked["ops"] == [] and chunked["popdim"] == [], chunked
    assert chunked["temp"] < plain["temp"] / 2, (chunked["temp"], plain["temp"])


@pytest.mark.parametrize(
    "state, n, n_methods, batch_size, mode",
    [
        # N not a multiple of the devices: 301 slots per device, the last one's last padding
        ("stored", 4 * 301 - 1, 5, 70, "run"),
        # 3 slots per device, the last device's all padding (chunks of 2: one shifted), under
        # -m slow (26 s of the default run; the padded last device runs in the case above)
        pytest.param("stored", 9, 1, 2, "run", marks=pytest.mark.slow),
        # even shares, no padding (the CLI test's case too)
        pytest.param("stored", 4 * 301, 5, 70, "segments", marks=pytest.mark.slow),
        # lean under -m slow (2.5 min in CI): its chunked sharded program is checked
        # compiled in the test above, lean = stored in test_lean.py, and the shards' chunk
        # loops run in the stored cases
        pytest.param("lean", 4 * 301 - 1, 1, 70, "segments", marks=pytest.mark.slow),
        pytest.param("lean", 9, 1, 2, "segments", marks=pytest.mark.slow),
    ],
)
def test_chunks_on_each_shard_equal_single_device(
    four_devices, state, n, n_methods, batch_size, mode
):
    """`batch_size` with a mesh: each device runs the chunk loops over its own ceil(N / 4)
    agent slots (the last chunk ragged), its draws from the agents' global indices, the
    population reductions all-reduced. With N not a multiple of the devices, the slots past
    N are padding (`n_active`'s): out of every reduction, and NaN in `agent_rmse`. The
    results equal the unchunked single-device run to round-off, jitted and (`mode`
    "segments", under -m slow) in segments (`Run`; by default the CLI case below runs in
    segments on the mesh). The programs hold no gather or sort, nor any array of the
    population's length (N or padded): even the step's status (a method's check of each
    agent's own, `moments="own"`, can fail on one device only), 4 numbers per device, is
    gathered in a psum."""
    out = _sharded(four_devices, "h2", n, state, n_methods, mode, batch_size=batch_size)
    assert out["max_rel"] < 1e-12, out
    assert 0 < out["worst"] < 10, out
    assert all(out["same"]) and len(out["same"]) == 4 * n_methods, out
    assert out["ops"] == [] and out["popdim"] == [], out


def test_mesh_without_agents_axis_is_refused():
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    import memoa_jax as mj
    from memoa_jax.data import load_dataset

    data = load_dataset("logistic", n_rows=20)
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    sim = mj.Simulation(10, mj.RFNEncoder(d=1, d_x=1, p=3), mj.default_methods(cost))
    with pytest.raises(ValueError, match="'agents'"):
        mj.simulate(
            sim,
            jnp.asarray(data.x),
            jnp.asarray(data.y),
            key=jr.key(0),
            mesh=jax.make_mesh((1,), ("x",)),
        )


# `memoa ARGV` (`memoa_jax.cli.main`, as `python -m memoa_jax` runs it): its exit status
CLI = textwrap.dedent(
    """
    import json, sys
    from memoa_jax.cli import main

    print(json.dumps(main(sys.argv[1:])))
    """
)


def test_cli_run_with_shard_and_batch_size(tmp_path, four_devices):
    """`memoa run --shard --batch-size 70` on 4 devices, N = 1203 not a multiple of them
    (301 agent slots each, the last one padding; refused, exit 2, before padding came in):
    the summary of the unchunked one-device run, to round-off."""
    model = ["--dataset", "logistic", "--rows", "40", "--methods", "memoa", "--seeds", "1"]
    model += ["--no-progress", "--no-compile-cache"]
    for name, args in (("one", []), ("four", ["--shard", "--batch-size", "70"])):
        argv = ["run", *model, "-n", "1203", *args, "--out", str(tmp_path / name)]
        assert four_devices(CLI, *argv) == 0
    one, four = (
        json.loads((tmp_path / name / "results.json").read_text())["summary"]
        for name in ("one", "four")
    )
    compared = 0
    for m, fields in one.items():
        for f, s in fields.items():
            if not (isinstance(s, dict) and "per_seed" in s):
                continue
            a, b = s["per_seed"][0], four[m][f]["per_seed"][0]
            assert (a is None and b is None) or abs(a - b) <= 1e-12 * (1 + abs(a)), (m, f, a, b)
            compared += 1
    assert compared >= 10, one


FAILING_SHARD = textwrap.dedent(
    """
    import json
    import equinox as eqx, jax, jax.numpy as jnp, jax.random as jr, numpy as np
    jax.config.update("jax_enable_x64", True)
    import memoa_jax as mj

    assert len(jax.devices()) == 4, jax.devices()

    class Params(eqx.Module):
        A: jax.Array
        b: jax.Array

    class Flagged(mj.AbstractEncoder):
        # Z = A x 1ᵀ + b + σ wᵀ (no activation), with exact moments; the agent whose b[0, 0]
        # is `bad` has NaN moments of its own (`moments`), and only those: its features and
        # the population's moments are finite
        d: int = eqx.field(static=True)
        d_x: int = eqx.field(static=True)
        p: int = eqx.field(static=True)
        bad: jax.Array
        sigma: float = 0.5

        def init(self, key, dtype=float):
            kA, kb = jr.split(key)
            return Params(jr.normal(kA, (self.d, self.d_x), dtype),
                          jr.normal(kb, (self.d, self.p), dtype))

        def _pre(self, params, x):
            return sum(params.A[:, j] * x[j] for j in range(self.d_x))[:, None] + params.b

        def features(self, params, x, w, prev=None):
            pre = self._pre(params, x)
            return pre + self.sigma * w[None].astype(pre.dtype)

        def moment_parts(self, params, x, *, prev=None, key=None, t=None,
                         kernels=mj.Kernels()):
            M = self._pre(params, x)
            return M, M[:, None] * M[None, :] + self.sigma**2

        def moments(self, params, x, kernels=mj.Kernels()):
            M, C = self.moment_parts(params, x)
            outer = jnp.einsum("ak,bl->akbl", M, M)
            same = jnp.einsum("abk,kl->akbl", C, jnp.eye(self.p))
            M = jnp.where(params.b[0, 0] == self.bad, jnp.nan, M)
            return M, outer * (1 - jnp.eye(self.p))[None, :, None, :] + same

    n, k, key = 27, 16, jr.key(3)  # 7 agent slots per device (the last one padding)
    assert k // 7 == 2  # the bad agent lives on device 2 alone
    t = np.arange(20.0)
    x, y = jnp.asarray(np.sin(t / 3)[:, None]), jnp.asarray(np.cos(t / 4)[:, None])
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    memoa = mj.make_method("memoa", cost, window=3, moments="own")

    def simulation(bad, batch_size=None):
        enc = Flagged(d=1, d_x=1, p=3, bad=jnp.asarray(bad))
        return mj.Simulation(n, enc, (memoa,), cost=cost, batch_size=batch_size)

    # (jitted: op by op, the draws took 2.6 s)
    b = jax.jit(lambda: mj.agent_draws(simulation(0.0), key, jnp.arange(n))[0].b[0, 0])()
    assert len(set(np.asarray(b).tolist())) == n
    one, four = simulation(b[k]), simulation(b[k], batch_size=3)
    mesh = jax.make_mesh((4,), ("agents",))
    a = jax.jit(lambda: mj.simulate(one, x, y, key=key, throw=False))()
    c = jax.jit(lambda: mj.simulate(four, x, y, key=key, mesh=mesh, throw=False))()
    try:  # eagerly, in segments, raising on the host after the failed segment
        mj.simulate(four, x, y, key=key, mesh=mesh)
        raised = None
    except mj.SimulationError as e:
        raised = str(e)
    status = lambda s: [int(v) for v in (s.code, s.s, s.T, s.step)]
    print(json.dumps(dict(one=status(a.status), four=status(c.status), raised=raised)))
    """
)


def test_a_check_failing_on_one_shard_is_reported(four_devices):
    """A runtime check that fails on one device only (one agent's own moments are NaN,
    `moments="own"`; it lives on device 2 of 4, chunks on each device) comes back from
    the loop as the same status as on one device, jitted, and raises on the host eagerly:
    every device's status is gathered at every step (in a psum, `gather_in_sum`), none is
    lost and nothing hangs."""
    import memoa_jax as mj

    out = four_devices(FAILING_SHARD)
    code, s, T, step = out["one"]
    assert code == int(mj.RESULTS.singular_mean_field) and T == 3 and step >= 0, out
    assert out["four"] == out["one"], out
    assert out["raised"] is not None and "is singular at window step" in out["raised"], out
