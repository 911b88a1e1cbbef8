"""The MEMOA online protocol: one `step` scanned over time, agents vmapped (spec §7.1, §9).

Per step `t = 0..n−2` (the target of step `t` is `y_{t+1}`):

1. the run's features source (`_features`: the stored ring or recomputed from the agents'
   keys, chosen once) gives every agent's `Zⁱ_t = enc_i(x_t)` (shared by all methods);
2. every method computes its controls and next predictions `Ŷ_{t+1}` (see `_methods/`);
3. the server (`AbstractServer.step`, its own state carried) fits weights on `(Ŷ_t, y_t)`
   and predicts `ŷ^srv_{t+1} = w_tᵀ Ŷ_{t+1}`;
4. per-step statistics are emitted and per-agent accumulators updated — never an N × T array.

State holds only per-agent arrays (predictions, a ring of the last `H` feature draws, square
error and cost accumulators) plus N-independent ring buffers of the population moments and
each method's server state.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
import jax.random as jr
from jax import lax
from jax.sharding import PartitionSpec as P

from ._agents import (
    Population,
    map_agents,
    map_chunks,
    map_sum_chunks,
    masked,
    stage_cost,
    sum_chunks,
)
from ._custom_types import Array, Bool, Float, PRNGKeyArray, UInt32
from ._encoders import AbstractEncoder
from ._features import (
    AbstractFeatures,
    AgentDraws,
    FeatureRing,
    RecomputedFeatures,
    StoredFeatures,
    ring_set,
)
from ._kernels import Kernels, computed_once, stage_cost_rows
from ._methods import MethodState, StepContext
from ._metrics import SimResult, StepStats, persistence_rmse, summarize
from ._moments import assemble_second_moment
from ._progress import AbstractProgressMeter, CallbackProgressMeter, NoProgressMeter
from ._random import bits_rows, fold_in_index, fold_in_rows, is_threefry, split_rows
from ._scan import scan, scan_remat
from ._sharding import AXIS, agent_sharding, gather_in_sum, on_shards, shard_state, state_specs
from ._simulation import Simulation, solve_dtype, validate_data
from ._status import Status


class _Acc(NamedTuple):
    sse: Float[Array, " n"]
    cost: Float[Array, " n"]


class _State(NamedTuple):
    """The loop's carry. `state="lean"` leaves out what the agent index, the key and the
    step counter define (None): the parameters and noise keys (unless `carry_draws`), and
    for a stateless encoder the features source's ring and drawn-ahead features
    (`RecomputedFeatures`)."""

    noise_keys: UInt32[Array, "2 n"] | None
    params: Any  # the encoder's parameters (per agent, agent axis last, or shared), or None
    features: FeatureRing  # what the features source carries (`_features`)
    mom_M: Float[Array, "R d p"]
    mom_S: Float[Array, "R d p d p"]
    # the feature statistics (`StepContext.zbar`, `zz`) of a one-pass loop (`_one_pass`)
    zbar: Float[Array, "R d p"] | None
    zz: Float[Array, "R d p d p"] | None
    methods: dict[str, MethodState]
    acc: dict[str, _Acc]
    server: dict[str, Any]  # each method's server state (`AbstractServer.init`; replicated)
    # the agent's features were nonzero at some step so far (lean, stateless encoder, one
    # pass off: None, found after the loop by `_moving`)
    moving: Bool[Array, " n"] | None
    status: Status  # the runtime checks so far (`_status`): raised on the host after the loop


def init_agents(sim: Simulation, *, key: PRNGKeyArray) -> tuple[Any, UInt32[Array, "2 n"]]:
    """Per-agent encoder parameters and two-word noise keys (agent axis last, as everything
    per agent); agent `i` owns `fold_in(agents_key, i)`, so agent `i` is the same in any
    population (`agent_draws`)."""
    return agent_draws(sim, key, jnp.arange(sim.n_agents, dtype=index_dtype(sim.n_agents)))


def index_dtype(n_agents: int):
    """The integer type of the indices of `n_agents` agents: int32 below 2³¹ (every run's
    bits and program as before), int64 above (`jax_enable_x64` needed)."""
    return jnp.int32 if n_agents < 2**31 else jnp.int64


def agent_draws(sim: Simulation, key: PRNGKeyArray, index) -> tuple[Any, Array]:
    """The encoder parameters and two-word noise keys of the agents `index` (an integer
    array, int64 past 2³¹ agents, or without `jax_enable_x64` a pair `(hi, lo)` of uint32
    arrays, the index's high and low words; agent axis last), a pure function of the run's
    key and the agent's index: what `state="lean"` recomputes where it needs them. Agent
    `i` owns `fold_in(agents_key, i)` with all 64 bits of `i` folded in (`_random.
    fold_in_rows`; `jax.random.fold_in`'s key below 2³²). Under H1 the parameters are the
    shared ones (no agent axis)."""
    agents_key, shared_key = jr.split(key)
    h2 = sim.homogeneity == "h2"
    ndim = jnp.ndim(index[1] if isinstance(index, tuple) else index)
    if sim.kernels.threefry and ndim == 1 and is_threefry(key):
        # the same bits by `jax.random`'s derivations written on agent-last rows (`_random`),
        # each stage computed once (`computed_once`): a key feeds many draws, and fused into
        # each of them XLA:CPU would repeat its 20 Threefry rounds per draw
        words = jr.key_data(agents_key)
        live = (words[0] | 1) != 0  # (true, from a traced value of the run's key)
        keys = lambda i: split_rows(fold_in_rows(words, i), 2)
        apart = sim.kernels.apart
        param_key, noise_key = computed_once(keys, index, live=live, apart=apart)
        params = sim.encoder.init_rows(param_key, sim.dtype) if h2 else None
        params, words = computed_once(
            lambda q, k: (q, bits_rows(k, 2)), params, noise_key, live=live, apart=apart
        )
    else:

        def one(i):
            param_key, noise_key = jr.split(fold_in_index(agents_key, i))
            words = jax.random.bits(noise_key, (2,), jnp.uint32)
            return (sim.encoder.init(param_key, sim.dtype) if h2 else None), words

        if ndim == 0:
            params, words = one(index)
        else:
            params, words = jax.vmap(one, out_axes=-1)(index)
    if sim.homogeneity == "h1":  # one encoder for everyone, drawn from its own key
        params = sim.encoder.init(shared_key, sim.dtype)
    return params, words


def _moment_sums(enc: AbstractEncoder, q, k, z, w, x_t, t, dtype, kernels: Kernels):
    """The sums over the agents of a chunk (where `w` holds) of each agent's moment parts
    `M`, `C` at `x_t` and of `M ⊗ M` (a GEMM over the agents; no per-agent `(d p)²`
    tensor), given the chunk's parameters `q`, noise keys `k` and `Z_{t−1}` = `z`."""

    def parts(q, k, z):
        M, C = enc.moment_parts(q, x_t, prev=z, key=k, t=t, kernels=kernels)
        return M.astype(dtype), C.astype(dtype)

    # into memory before the three sums read them: inside a chunk loop XLA:CPU fused the
    # moment parts (exp, Cephes' rational functions) into each sum, computing them 7×
    M, C = computed_once(parts, q, k, z, live=t >= 0, apart=kernels.apart)
    Mw = masked(M, w)
    return jnp.sum(Mw, -1), jnp.sum(masked(C, w), -1), jnp.einsum("akn,bln->akbl", Mw, M)


def _moments_of_sums(sums, n):
    """The population moments `(M, S)` from `_moment_sums` over `n` agents."""
    sum_M, sum_C, sum_MM = sums
    n = jnp.asarray(n, sum_M.dtype)
    return sum_M / n, assemble_second_moment(sum_MM / n, sum_C / n)


def _population_moments(
    enc: AbstractEncoder, draws, src, x_t, t, prev, pop: Population, bs, dtype, kernels: Kernels
):
    """Population moments at `x_t` (spec §2.2): the means over agents of each agent's `M` and
    `C` (exact for the RFN, Monte Carlo for the ESN, given each agent's `Z_{t−1}` = `prev`),
    and of `M ⊗ M`. `draws(src)`: the parameters and noise keys of the agents of `src`
    (`AgentDraws`). Summed chunk by chunk: whole-population M and C would cost (d p + d² p)
    numbers per agent.
    """

    def sums(w, a, z):
        q, k = draws(a)
        return _moment_sums(enc, q, k, z, w, x_t, t, dtype, kernels)

    return _moments_of_sums(sum_chunks(sums, src, prev, batch_size=bs, pop=pop), pop.n)


def _one_pass(sim: Simulation) -> bool:
    """Whether the loop visits its agents once per step (`Kernels.onepass`): a lean loop
    with a stateless encoder and a method with a one-pass form (`AbstractMethod.fuses`).
    Every step then runs one pass over the agents (`_make_step`'s `visit`) that draws
    their keys, parameters and features once and computes the population moments at
    `x_t`, the feature statistics, the `moving` flags and the one-pass methods' steps."""
    return _lean_features(sim) and any(m.fuses(sim.kernels) for m in sim.methods)


def _vmapped_stage_cost(cost, y_next, ybar_next, yhat_next, energy):
    """`stage_cost` of every agent (the plain path)."""
    one = lambda yh, e: stage_cost(cost, y_next, ybar_next, yh, e)
    return map_agents(one, yhat_next, energy)


def simulate(
    sim: Simulation,
    x: Float[Array, "time d_x"],
    y: Float[Array, "time d"],
    *,
    key: PRNGKeyArray,
    progress: "AbstractProgressMeter | Callable[[int], Any] | None" = None,
    mesh: jax.sharding.Mesh | None = None,
    n_active: int | Array | None = None,
    remat: bool = False,
    track_agent: int | Array = 0,
    throw: bool = True,
) -> SimResult:
    """Run the online protocol over the whole series (spec §7.1), compiled.

    Called eagerly, the loop runs as `Run`'s segments, each one call of the same compiled
    program (the segment's bounds are run-time values), with `progress` reported on the
    host between them; called under an outer `jax.jit`, `jax.vmap` (e.g. over keys) or
    `jax.grad`, it is one `lax.scan` (no progress). The compiled loop holds no host
    callback either way: its runtime checks are carried as a `Status`. Both give the same
    bits. One compilation per `sim` structure (its static fields, e.g. N and the methods),
    data shape, `mesh` and `remat`: the key, the data's values, the cost weights,
    `n_active` and `track_agent` are run-time values (a Python int is converted inside),
    so a sweep over seeds or population sizes up to `sim.n_agents` compiles once.

    Args:
        sim: the population, methods and server.
        x: public inputs `x_0..x_{n−1}`.
        y: targets `y_0..y_{n−1}`; all agents start at `ŷ_0 = y_0` and predict `y_1..y_{n−1}`.
        key: the run's PRNG key (encoders and all feature noise).
        progress: an `AbstractProgressMeter` (e.g. `CallbackProgressMeter`), or a callable
            called on the host with every finished step `t` (at the end of each segment).
        mesh: shard the agent axis over this device mesh's axis named "agents" (`jax.sharding`):
            every per-agent array is split across devices, and the population reductions
            (mean field, population moments, server statistics, metrics) are the only
            cross-device communication. None: one device. Results equal single-device ones up
            to the order of floating-point sums. With `sim.batch_size`, each device runs the
            chunks of its own share (`jax.shard_map`), so that its memory is bounded by its
            chunk; without, one program over the global arrays (GSPMD). With chunks and N
            not a multiple of the devices, each device holds ceil(N / devices) agent slots,
            those past N padding (as `n_active`'s: `agent_rmse` then has the padded length,
            NaN past N).
        n_active: run only the first `n_active ≤ N` agents; the other slots are padding that
            no reduction sees, so one compilation serves every population size up to
            `sim.n_agents`. Agent `i` is the same in any population, so this equals a run
            with `n_agents=n_active`, whose agents are the first slots here. None: all N.
            Padding slots of `agent_rmse` are NaN.
        remat: for reverse-mode differentiation (`jax.grad` through the loop): checkpoint the
            scanned step in segments of about √T steps (`jax.checkpoint`), so the backward pass
            keeps O(√T) copies of the per-agent state instead of every step's activations
            (O(N √T) memory, not O(N T)), for about one extra forward pass. Same values.
        track_agent: the agent whose predictions `StepStats.agent_pred` records (one agent,
            never N × T; e.g. a previous run's `worst_agent`).
        throw: raise a failed runtime check (eagerly: `SimulationError` on the host, after
            the segment where it failed; under a trace: `eqx.error_if` on the outputs,
            outside the scan, a host callback). False: never raise; the result's `status`
            says what failed (what a program exported for another platform needs).

    Returns:
        A `SimResult` (its `names` give the methods in the order of `sim.methods`; its
        `status` the outcome of the runtime checks).

    Raises:
        ValueError: data shapes that do not match the encoder, a window not shorter than the
            series, `n_active` outside `[1, N]`, `progress` under a trace.
        SimulationError: a failed runtime check (a singular system), with `throw=True`.

    Examples:
        100 agents play MEMOA's game on the first 60 rows of the synthetic logistic series,
        and the server's mixture is compared with "tomorrow = today" (lag-1 persistence):

        >>> import jax
        >>> jax.config.update("jax_enable_x64", True)
        >>> import jax.numpy as jnp
        >>> import memoa_jax as mj
        >>> from memoa_jax.data import load_dataset
        >>> data = load_dataset("logistic", n_rows=60)
        >>> x, y = jnp.asarray(data.x), jnp.asarray(data.y)
        >>> cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
        >>> sim = mj.Simulation(
        ...     n_agents=100,
        ...     encoder=mj.RFNEncoder(d=1, d_x=data.d_x, p=5, sigma=0.1),
        ...     methods=mj.default_methods(cost, window=3, ridge_window=3)[:1],  # memoa
        ...     cost=cost,
        ... )
        >>> import equinox as eqx
        >>> res = eqx.filter_jit(mj.simulate)(sim, x, y, key=jax.random.key(0))
        >>> s = res.summary["memoa"]
        >>> print(f"server {s.server_rmse:.3f}; agents {s.avg_rmse:.3f} on average")
        server 0.209; agents 0.231 on average
        >>> print(f"persistence {mj.persistence_rmse(y, 1):.3f}")
        persistence 0.431
    """
    run = Run(sim, x, y, key=key, mesh=mesh, n_active=n_active, track_agent=track_agent)
    if _traced(run):
        if progress is not None:
            raise ValueError(
                "progress is reported between compiled segments of the loop: call simulate "
                "outside jit/vmap/grad for progress, or give progress=None"
            )
        res = _simulate(sim, run.x, run.y, run.key, mesh, run.n_active, remat, run.track_agent)
        if throw:
            assert res.status is not None
            res = res.status.error_if(res, _checks(sim))
        return res
    meter = _meter(progress)
    state = meter.init(run.n_steps)
    try:
        carry = run.init()
        for stop in _segment_ends(run.n_steps, meter.segments):
            carry = run.segment(carry, stop)
            if throw:  # (a failed check stops the run at the end of its segment)
                carry.status.raise_if_failed()
            state = meter.step(state, stop)
        return run.finish(carry, throw=throw)
    finally:
        meter.close(state)


def _meter(progress) -> AbstractProgressMeter:
    if progress is None:
        return NoProgressMeter()
    if isinstance(progress, AbstractProgressMeter):
        return progress
    return CallbackProgressMeter(callback=progress)


def _segment_ends(n_steps: int, segments: int) -> list[int]:
    """The last step (exclusive) of each of at most `segments` segments of equal length."""
    k = max(1, -(-n_steps // max(1, segments)))
    return list(range(k, n_steps, k)) + [n_steps]


def _traced(tree) -> bool:
    """Whether `simulate` runs under an outer transformation (an argument is traced, or
    constants are: under `jax.jit`, every new array is a tracer)."""
    leaves = jax.tree.leaves(tree) + [jnp.zeros(())]
    return any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def _checks(sim: Simulation):
    """Every `(code, window)` pair the loop's `Status` can hold (`Status.error_if`)."""
    return tuple(c for m in sim.methods for c in m.checks)


class SimCarry(eqx.Module):
    """The loop's state between segments (`Run`): the per-agent state, the per-step
    statistics so far (`(n_steps, ...)` buffers, filled up to step `t`; never N × T), and
    the next step to run, `t`. Its `status` is the outcome of the runtime checks so far."""

    state: _State
    steps: dict[str, StepStats]
    t: Array

    @property
    def status(self) -> Status:
        return self.state.status


class Run(eqx.Module):
    """One run of the loop in segments, with the carry in and out (for progress between
    segments, or to save a long run's carry and continue it later):

        run = mj.Run(sim, x, y, key=key)
        carry = run.init()
        for stop in (100, 200, run.n_steps):
            carry = run.segment(carry, stop)  # steps carry.t .. stop − 1
        result = run.finish(carry)

    Every segment is a call of one compiled program (two for a lean loop with a warm-up:
    before and after the methods drop their rings), whatever its bounds, and a run in
    segments gives the same bits as `simulate`. `segment` consumes (donates) the carry it
    is given: keep the one it returns. The arguments are `simulate`'s.

    Raises:
        ValueError: as `simulate`; a `stop` outside `[1, n_steps]` (`segment`).
        SimulationError: a failed runtime check (`finish`, with `throw=True`).
    """

    sim: Simulation
    x: Array
    y: Array
    key: PRNGKeyArray
    n_active: Array | None
    track_agent: Array
    mesh: jax.sharding.Mesh | None = eqx.field(static=True)

    def __init__(
        self,
        sim: Simulation,
        x,
        y,
        *,
        key: PRNGKeyArray,
        mesh: jax.sharding.Mesh | None = None,
        n_active: int | Array | None = None,
        track_agent: int | Array = 0,
    ):
        validate_data(sim, x, y)
        if n_active is not None and not isinstance(n_active, jax.core.Tracer):
            if not 1 <= int(n_active) <= sim.n_agents:
                raise ValueError(
                    f"n_active must be in [1, n_agents={sim.n_agents}], got n_active={n_active}"
                )
        self.sim, self.x, self.y, self.key, self.mesh = sim, x, y, key, mesh
        if sim.n_agents >= 2**31 and not jax.config.read("jax_enable_x64"):
            raise ValueError(
                f"n_agents={sim.n_agents}: 2**31 agents or more are indexed with 64-bit "
                "integers; call `jax.config.update('jax_enable_x64', True)` first (any dtype)"
            )
        dtype = index_dtype(sim.n_agents)
        self.n_active = None if n_active is None else jnp.asarray(n_active, dtype)
        self.track_agent = jnp.asarray(track_agent, dtype)

    @property
    def n_steps(self) -> int:
        return self.x.shape[0] - 1

    def init(self) -> SimCarry:
        """The carry before step 0."""
        return _init_carry(self.sim, self.x, self.y, self.key, self.mesh, self.track_agent)

    def segment(self, carry: SimCarry, stop: int) -> SimCarry:
        """Runs steps `carry.t .. stop − 1` (none if `stop ≤ carry.t`); returns the carry."""
        if not 1 <= int(stop) <= self.n_steps:
            raise ValueError(f"stop must be in [1, n_steps={self.n_steps}], got stop={stop}")
        warm_up = _warm_up_steps(self.sim)
        rings = any(m.yhat_ring is not None for m in carry.state.methods.values())
        if warm_up and rings:  # lean: the methods that read their ring only while warming up
            carry = self._segment(carry, min(int(stop), warm_up))
            if int(stop) < warm_up:
                return carry
            methods = _drop_rings(self.sim, carry.state.methods)
            carry = eqx.tree_at(lambda c: c.state, carry, carry.state._replace(methods=methods))
        return self._segment(carry, int(stop))

    def _segment(self, carry: SimCarry, stop: int) -> SimCarry:
        fixed = (self.sim, self.x, self.y, self.key, self.mesh, self.n_active, self.track_agent)
        return _run_segment(fixed, carry, jnp.asarray(stop, carry.t.dtype))

    def finish(self, carry: SimCarry, *, throw: bool = True) -> SimResult:
        """The `SimResult` of a carry that has run every step (`carry.t = n_steps`)."""
        res = _finish(self.sim, self.x, self.y, self.key, self.mesh, self.n_active, carry)
        assert res.status is not None
        if throw:
            res.status.raise_if_failed()
        return res


def _step_index(t: int):
    """A step index as the loop's scan gives it (`jnp.arange`'s integer type)."""
    return jnp.asarray(t, jnp.arange(1).dtype)


@eqx.filter_jit
def _init_carry(sim, x, y, key, mesh, track_agent) -> SimCarry:
    x, y = jnp.asarray(x, sim.dtype), jnp.asarray(y, sim.dtype)
    init = _initial_state_on(sim, x, y, key, mesh)
    step = _step_on(sim, x, y, key, mesh, None, track_agent)
    stats = jax.eval_shape(step, init, _step_index(0))[1]
    n_steps = x.shape[0] - 1
    steps = jax.tree.map(lambda a: jnp.zeros((n_steps, *a.shape), a.dtype), stats)
    return SimCarry(init, steps, _step_index(0))


@eqx.filter_jit(donate="all-except-first")
def _run_segment(fixed, carry: SimCarry, stop) -> SimCarry:
    """Steps `carry.t .. stop − 1`: one compiled program for every segment (its bounds are
    run-time values; a `fori_loop` over them is a while loop)."""
    sim, x, y, key, mesh, n_active, track_agent = fixed
    x, y = jnp.asarray(x, sim.dtype), jnp.asarray(y, sim.dtype)
    step = _step_on(sim, x, y, key, mesh, n_active, track_agent)

    def body(t, state_steps):
        t = jnp.asarray(t, carry.t.dtype)  # (a Python int under `jax.disable_jit`)
        state, steps = step(state_steps[0], t)
        put = lambda buf, v: lax.dynamic_update_index_in_dim(buf, v, t, 0)
        return state, jax.tree.map(put, state_steps[1], steps)

    state, steps = lax.fori_loop(carry.t, stop, body, (carry.state, carry.steps))
    return SimCarry(state, steps, jnp.maximum(carry.t, stop))


@eqx.filter_jit
def _finish(sim, x, y, key, mesh, n_active, carry: SimCarry) -> SimResult:
    x, y = jnp.asarray(x, sim.dtype), jnp.asarray(y, sim.dtype)
    final = carry.state
    if final.moving is None:
        final = final._replace(moving=_moving_on(sim, x, key, mesh, x.shape[0] - 1))
    return _results(sim, final, carry.steps, y, _slots(sim, mesh, n_active))


@eqx.filter_jit
def _simulate(sim, x, y, key, mesh, n_active, remat, track_agent):
    """The body of `simulate` under a trace, one scan (see there): the initial state, one
    step scanned over the series, the summaries."""
    x, y = jnp.asarray(x, sim.dtype), jnp.asarray(y, sim.dtype)
    init = _initial_state_on(sim, x, y, key, mesh)
    step = _step_on(sim, x, y, key, mesh, n_active, track_agent)
    drive, n_steps = (scan_remat if remat else scan), x.shape[0] - 1
    warm_up = _warm_up_steps(sim)
    if not warm_up:
        final, steps = drive(step, init, n_steps)
    else:  # lean: the methods that read their ring only while warming up drop it after
        state, first = drive(step, init, warm_up)
        state = state._replace(methods=_drop_rings(sim, state.methods))
        final, rest = drive(step, state, n_steps, warm_up)
        steps = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), first, rest)
        # one array before the summaries reduce it, as the segments' buffer is: fused into
        # them, XLA summed the two parts apart (1 ulp off in 2 of the 65 summaries of a
        # 5-method lean run)
        steps = lax.optimization_barrier(steps)
    if final.moving is None:
        final = final._replace(moving=_moving_on(sim, x, key, mesh, n_steps))
    return _results(sim, final, steps, y, _slots(sim, mesh, n_active))


def _per_shard(sim: Simulation, mesh) -> bool:
    """Whether the loop runs on each device's shard of the agents (`jax.shard_map`, its
    chunk loops inside, the population reductions explicit all-reduces): with a mesh and
    chunks. With a mesh alone, the loop is one program over the global arrays, which GSPMD
    partitions (its chunk loops would slice the global agent axis, gathering it)."""
    return mesh is not None and sim.batch_size is not None


def _slots(sim: Simulation, mesh, n_active) -> Population:
    """The agent slots of the loop's arrays (all of them, not a shard's): N, or on each
    shard of a mesh (`_per_shard`) N rounded up to a multiple of the devices, so that each
    holds an equal share (`jax.shard_map` splits evenly). The slots past N are padding, as
    those past `n_active` are: left out of every reduction, and NaN in `agent_rmse`. With a
    mesh the arrays are the global ones that GSPMD splits (`Population.partitioned`)."""
    if not _per_shard(sim, mesh):
        return Population(sim.n_agents, n_active, partitioned=mesh is not None)
    shards = mesh.shape[AXIS]
    n_slots = -(-sim.n_agents // shards) * shards
    if n_active is None and n_slots > sim.n_agents:
        n_active = jnp.asarray(sim.n_agents, index_dtype(n_slots))
    return Population(n_slots, n_active, partitioned=True)


def _population(sim: Simulation, mesh, n_active) -> tuple[Population, Callable]:
    """The population as the loop's code sees it, and the function that pins per-agent
    arrays to the mesh: all the slots (GSPMD or one device), or one shard's."""
    pop = _slots(sim, mesh, n_active)
    if _per_shard(sim, mesh):
        return pop._replace(axis=AXIS, shards=mesh.shape[AXIS], partitioned=False), _same
    return pop, agent_sharding(mesh)


def _initial_state_on(sim: Simulation, x, y, key, mesh) -> _State:
    """`_initial_state` on `mesh` (on each shard with chunks, `_per_shard`)."""
    pop, shard = _population(sim, mesh, None)
    init = lambda: _initial_state(sim, x, y, key, shard, pop)
    if pop.axis is None:
        return init()
    whole = jax.eval_shape(lambda: _initial_state(sim, x, y, key, _same))
    return on_shards(mesh, init, (), state_specs(whole, sim.homogeneity == "h2"))()


def _step_on(sim: Simulation, x, y, key, mesh, n_active, track_agent):
    """`_make_step`'s step on `mesh` (on each shard with chunks, `_per_shard`)."""
    pop, shard = _population(sim, mesh, n_active)
    step = _make_step(sim, x, y, key, pop, shard, mesh is not None, track_agent)
    if pop.axis is None:
        return step

    def here(state: _State, t):
        new, stats = step(state, t)
        # a method's check may be each agent's own (`moments="own"`): the first failure in
        # agent order, from every shard's 4 numbers (a psum, which XLA packs with the
        # step's other sums: with ȳ_{t+1}'s; an all-gather was one collective more)
        leaves, tree = jax.tree.flatten(new.status)
        every = gather_in_sum(jnp.stack(leaves), pop.shards, sim.dtype)  # (shards, 4)
        first = Status.first_of_batch(jax.tree.unflatten(tree, list(every.T)))
        return new._replace(status=first), stats

    def shards(state: _State, t):
        specs = state_specs(state, sim.homogeneity == "h2")
        return on_shards(mesh, here, (specs, P()), (specs, P()))(state, t)

    return shards


def _moving_on(sim: Simulation, x, key, mesh, n_steps: int) -> Bool[Array, " n"]:
    """`_moving` on `mesh` (on each shard with chunks, `_per_shard`)."""
    pop, shard = _population(sim, mesh, None)
    if pop.axis is None:
        return _moving(sim, x, key, shard, pop, n_steps)
    return on_shards(mesh, lambda: _moving(sim, x, key, shard, pop, n_steps), (), P(AXIS))()


def _moving(sim: Simulation, x, key, shard, pop: Population, n_steps: int) -> Bool[Array, " n"]:
    """Whether each agent's features were nonzero at some step `t < n_steps`, for a lean
    loop with a stateless encoder: its draws recomputed once here, chunk by chunk, rather
    than once more at every step."""
    agents, kernels = _agents(sim, None, key, shard, pop), sim.kernels
    features = RecomputedFeatures(sim.encoder, kernels, x)

    def of(a):
        q, k = agents.draws(a)

        def at(t, moving):
            draw = lambda q_, k_: features.of(q_, k_, t)
            # into memory first: XLA:CPU fused the draws into the reduction, on one thread
            # (a quarter of a lean MEMOA run at N = 2·10⁶)
            z = computed_once(draw, q, k, live=t >= 0, apart=kernels.apart)
            return moving | jnp.any(z != 0, axis=(0, 1))

        return lax.fori_loop(0, n_steps, at, jnp.zeros(a.shape[-1:], bool))

    return map_chunks(of, agents.src, batch_size=sim.batch_size)


def _same(a):
    return a


def _warm_up_steps(sim: Simulation) -> int:
    """With `state="lean"`, the steps after which some methods never read their ring of
    past states again (`AbstractMethod.ring_until`); the loop runs them as a scan of their
    own and the rest without those rings (a second compiled body). 0: one scan."""
    ends = [m.ring_until for m in sim.methods if m.ring_until is not None]
    return max(ends) if sim.state == "lean" and ends else 0


def _drop_rings(sim: Simulation, methods: dict) -> dict:
    return {
        m.name: methods[m.name]._replace(yhat_ring=None)
        if m.ring_until is not None
        else methods[m.name]
        for m in sim.methods
    }


def _carries_draws(sim: Simulation) -> bool:
    """Whether the loop carries each agent's parameters and noise keys (stored, or lean
    with `carry_draws`) rather than re-deriving them from the agent's index."""
    return sim.state == "stored" or sim.carry_draws


def _agents(sim: Simulation, state: "_State | None", key, shard, pop: Population) -> AgentDraws:
    """The agents' draws: from `state` where it carries them (`_carries_draws`), else (or
    with no state: after the loop, `_moving`) re-derived from the agent index."""
    if state is None or state.noise_keys is None:
        index = shard(pop.slots(index_dtype(pop.n_slots)))
        return AgentDraws(index, lambda i: _agent_draws_at(sim, key, i))
    if sim.homogeneity == "h2":
        return AgentDraws((state.params, state.noise_keys), lambda a: a)
    return AgentDraws(state.noise_keys, lambda k: (state.params, k))


# nested jits: `agent_draws` (as written) once per argument shape in the lowered program
_agent_draws_at = eqx.filter_jit(agent_draws)


def _lean_features(sim: Simulation) -> bool:
    """Whether the features are recomputed from the counter (a stateless encoder, lean)."""
    return sim.state == "lean" and not sim.encoder.stateful


def _features(sim: Simulation, x) -> AbstractFeatures:
    """Where the step's features come from, chosen once: recomputed from the agents' keys
    (lean, a stateless encoder) or the stored ring."""
    if _lean_features(sim):
        return RecomputedFeatures(sim.encoder, sim.kernels, x)
    R = sim.history + 1
    return StoredFeatures(sim.encoder, sim.kernels, x, R, sim.batch_size, sim.dtype)


def _initial_state(sim: Simulation, x, y, key, shard, pop: Population | None = None) -> _State:
    """The agents' draws (stored), every ring empty, every prediction `y_0`: of every agent,
    or of the agents of `pop` (one shard's)."""
    pop = Population(sim.n_agents) if pop is None else pop
    N, d, p, dt, sdt = pop.n_here, sim.encoder.d, sim.encoder.p, sim.dtype, solve_dtype()
    R = sim.history + 1  # ring slots: the history and the current step
    h2 = sim.homogeneity == "h2"
    y0 = jnp.broadcast_to(y[0][:, None], (d, N))
    zeros_n = jnp.zeros((N,), dt)
    state = _State(
        noise_keys=None,
        params=None,
        features=FeatureRing(None, None),
        mom_M=jnp.zeros((R, d, p), sdt),
        mom_S=jnp.zeros((R, d, p, d, p), sdt),
        zbar=jnp.zeros((R, d, p), sdt) if _one_pass(sim) else None,
        zz=jnp.zeros((R, d, p, d, p), sdt) if _one_pass(sim) else None,
        methods={
            m.name: MethodState(y0, jnp.zeros((R, d, N), dt), m.init(N, p, dt)) for m in sim.methods
        },
        acc={m.name: _Acc(zeros_n, zeros_n) for m in sim.methods},
        server={m.name: sim.server.init(d, dt) for m in sim.methods},
        moving=None if _lean_features(sim) and not _one_pass(sim) else jnp.zeros((N,), bool),
        status=Status.ok(),
    )
    if _carries_draws(sim):  # (`init_agents`, of the agents here)
        params, noise_keys = agent_draws(sim, key, pop.slots(index_dtype(pop.n_slots)))
        state = state._replace(params=params, noise_keys=noise_keys)
    ring = _features(sim, x).init(_agents(sim, state, key, shard, pop), N)
    state = state._replace(features=ring)
    return shard_state(shard, state, h2)


def _make_step(sim: Simulation, x, y, key, pop: Population, shard, sharded: bool, track_agent):
    """The loop's `step(state, t) -> (state, {method: StepStats})`."""
    N, enc, kernels, bs, c = pop.n_here, sim.encoder, sim.kernels, sim.batch_size, sim.cost
    sdt = solve_dtype()
    R = sim.history + 1
    h2 = sim.homogeneity == "h2"
    features = _features(sim, x)
    method_kernels = features.method_kernels(kernels)
    need_moments = any(m.needs_moments for m in sim.methods)
    one_pass = _one_pass(sim)
    cost_of = stage_cost_rows if kernels.rows else _vmapped_stage_cost

    def pick(a):
        """Agent `track_agent`'s column of `a`: an index on one device; across devices a
        masked sum (an all-reduce of d numbers, where an index would gather the whole row)."""
        if not sharded:
            return a[:, track_agent]
        here = pop.slots() == track_agent.astype(int)
        return pop.total(jnp.sum(jnp.where(here, a, 0.0), axis=-1))

    def visit(state: _State, t, passes: dict):
        """The one pass over the agents of a step (`_one_pass`): each chunk's keys and
        parameters derived once, its features `Z_{t+o}` drawn once for every offset `o` a
        one-pass method reads (and `o = −1, 0`), then the methods' rows, the sums of the
        moment parts at `x_t`, `Z_t` and `Z_t ⊗ Z_{t−1}`, and whether `Z_t` is nonzero.
        Returns `({method: (base, energy, next)}, moved, sums)`."""
        agents = _agents(sim, state, key, shard, pop)
        recompute = features
        assert isinstance(recompute, RecomputedFeatures)  # (`_one_pass`: lean features)
        offsets = tuple(sorted({-1, 0}.union(*(p.offsets for p in passes.values()))))
        names = tuple(passes)

        def chunk(w, a, *yhats):
            q, k = agents.draws(a)
            zs = computed_once(
                lambda q_, k_: [recompute.of(q_, k_, t + o) for o in offsets],
                q,
                k,
                live=t >= 0,
                apart=kernels.apart,
            )
            z = dict(zip(offsets, zs))
            outs = {n: passes[n].rows(yh, z) for n, yh in zip(names, yhats)}
            now = masked(z[0].astype(sdt), w)
            sums: dict[str, Any] = {
                "zbar": jnp.sum(now, -1),
                "zz": jnp.einsum("akn,bln->akbl", now, z[-1].astype(sdt)),
            }
            if need_moments and h2:
                sums["moments"] = _moment_sums(enc, q, k, None, w, x[t], t, sdt, kernels)
            return (outs, jnp.any(z[0] != 0, axis=(0, 1))), sums

        yhats = [state.methods[n].yhat for n in names]
        (outs, moved), sums = map_sum_chunks(chunk, agents.src, *yhats, batch_size=bs, pop=pop)
        return outs, moved, sums

    def step(state: _State, t):
        x_t, y_t, y_next = x[t], y[t], y[t + 1]
        slot = jnp.mod(t, R)
        agents = _agents(sim, state, key, shard, pop)

        def agent_moments(tau):
            """Every agent's own exact moments at time `tau` (`moments="own"`), agent axis
            last; recomputed from the parameters, never stored."""
            one = lambda q: enc.moments(q, x[tau], kernels)
            params = agents.draws(agents.src)[0]
            if h2:
                M, S = jax.vmap(one, in_axes=-1, out_axes=-1)(params)
            else:
                M, S = jax.tree.map(
                    lambda a: jnp.broadcast_to(a[..., None], a.shape + (N,)), one(params)
                )
            return M.astype(sdt), S.astype(sdt)

        # FEATURES (shared by all methods), from the run's source (`_features`)
        feats, carried = features.at(state.features, agents, t)
        ctx = StepContext(
            t=t,
            y=y,
            agents=feats.src,
            features=feats.read,
            ring_size=R,
            mom_M=state.mom_M,
            mom_S=state.mom_S,
            batch_size=bs,
            pop=pop,
            agent_moments=agent_moments,
            kernels=method_kernels,
            zbar=state.zbar,
            zz=state.zz,
        )
        # ONE PASS (lean, `Kernels.onepass`): the one-pass methods' steps, prepared from the
        # rings of slots before t, then every agent visited once
        passes, outs, sums, moved = {}, {}, {}, feats.moved
        if one_pass:
            for m in sim.methods:
                plan = m.one_pass(ctx, state.methods[m.name])
                if plan is not None:
                    passes[m.name] = plan
            outs, moved, sums = visit(state, t, passes)
            assert state.zbar is not None and state.zz is not None
            zbar = ring_set(state.zbar, slot, sums["zbar"] / jnp.asarray(pop.n, sdt))
            zz = ring_set(state.zz, slot, sums["zz"] / jnp.asarray(pop.n, sdt))
            ctx = ctx._replace(zbar=zbar, zz=zz)
        # POPULATION MOMENTS AT x_t
        if need_moments:
            if one_pass and (h2 or enc.stateful):  # summed in the pass
                M_t, S_t = _moments_of_sums(sums["moments"], pop.n)
            elif h2 or enc.stateful:  # an all-reduce of d p + d² p + (d p)²
                M_t, S_t = _population_moments(
                    enc, agents.draws, agents.src, x_t, t, feats.prev, pop, bs, sdt, kernels
                )
            else:
                M_t, S_t = enc.moments(agents.draws(agents.src)[0], x_t, kernels)
            ctx = ctx._replace(
                mom_M=ring_set(state.mom_M, slot, M_t.astype(sdt)),
                mom_S=ring_set(state.mom_S, slot, S_t.astype(sdt)),
            )

        methods, acc, server, stats, status = {}, {}, {}, {}, state.status
        for m in sim.methods:
            ms, a = state.methods[m.name], state.acc[m.name]
            # CLIENT UPDATE (a failed runtime check is kept, the first one, for the host)
            if m.name in passes:
                (base, energy, y_hat_next), extra = outs[m.name], ms.extra
                check = passes[m.name].status
            else:
                base, energy, y_hat_next, extra, check = m.step_checked(ctx, ms)
            status = status.then(check.at_step(t))
            # SERVER MIXTURE: weights fitted on (Ŷ_t, y_t), applied to Ŷ_{t+1}
            srv, server[m.name] = sim.server.step(
                state.server[m.name], ms.yhat, y_t, y_hat_next, a.sse, pop
            )
            # METRICS. The square errors in a chunk loop of their own: they do not read
            # ȳ_{t+1}, so across shards XLA packs their sum with ȳ_{t+1}'s all-reduce (out
            # of the chunk loop of the stage costs, which reads ȳ_{t+1}, the sum waited for
            # it: one all-reduce more per step). (`cost_of`'s ȳ is unused there: any value.)
            square_error = lambda yh, e: cost_of(c, y_next, y_next, yh, e)[0]
            sq = map_chunks(square_error, y_hat_next, energy, batch_size=bs)
            ybar_next = pop.mean(y_hat_next)
            stage = map_chunks(
                lambda yh, e: cost_of(c, y_next, ybar_next, yh, e)[1],
                y_hat_next,
                energy,
                batch_size=bs,
            )
            stats[m.name] = StepStats(
                mse=pop.mean(sq),
                worst_se=pop.max(sq),
                server_se=jnp.sum((y_next - srv) ** 2),
                mean_field_se=jnp.sum((y_next - ybar_next) ** 2),
                server_pred=srv,
                agent_pred=pick(y_hat_next),
            )
            acc[m.name] = _Acc(a.sse + sq, a.cost + stage)
            ring = None if ms.yhat_ring is None else ring_set(ms.yhat_ring, slot, base)
            methods[m.name] = MethodState(y_hat_next, ring, extra)

        new = state._replace(
            features=carried,
            mom_M=ctx.mom_M,
            mom_S=ctx.mom_S,
            zbar=ctx.zbar,
            zz=ctx.zz,
            methods=methods,
            acc=acc,
            server=server,
            moving=None if moved is None or state.moving is None else state.moving | moved,
            status=status,
        )
        return shard_state(shard, new, h2), stats

    return step


def _results(sim: Simulation, final: _State, steps, y, pop: Population) -> SimResult:
    """Per-agent RMSE and the summaries from the final accumulators and the per-step stats."""
    n_steps = y.shape[0] - 1
    summary, agent_rmse = {}, {}
    persistence = persistence_rmse(y, 1)
    assert final.moving is not None
    for m in sim.methods:
        a = final.acc[m.name]
        rmse = jnp.sqrt(a.sse / n_steps)
        agent_rmse[m.name] = pop.fill_padding(rmse, jnp.nan)
        summary[m.name] = summarize(rmse, a.cost, final.moving, steps[m.name], pop, persistence)
    names = tuple(m.name for m in sim.methods)
    return SimResult(
        steps=steps, summary=summary, agent_rmse=agent_rmse, names=names, status=final.status
    )


def carry_bytes_per_agent(sim: Simulation) -> int:
    """Bytes per agent of the loop's carry (`simulate`'s state between steps; after the
    lean warm-up, `_warm_up_steps`), from its shapes alone (`jax.eval_shape`; nothing runs):
    the difference between the whole state at N + 1 and at N agents, so the N-independent
    rings of window moments drop out. A lower bound of a run's memory per agent."""
    x = jax.ShapeDtypeStruct((4, sim.encoder.d_x), sim.dtype)
    y = jax.ShapeDtypeStruct((4, sim.encoder.d), sim.dtype)
    key = jax.eval_shape(lambda: jr.key(0))

    def size(n: int) -> int:
        one = dataclasses.replace(sim, n_agents=n)
        state = jax.eval_shape(lambda x_, y_, k: _initial_state(one, x_, y_, k, _same), x, y, key)
        if _warm_up_steps(one):  # the carry of the main scan, after the warm-up
            state = state._replace(methods=_drop_rings(one, state.methods))
        return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))

    return size(1010) - size(1009)
