"""The MEMOA online protocol: one `step` scanned over time, agents vmapped (spec §7.1, §9).

Per step `t = 0..n−2` (the target of step `t` is `y_{t+1}`):

1. every agent draws its features `Zⁱ_t = enc_i(x_t)` (shared by all methods);
2. every method computes its controls and next predictions `Ŷ_{t+1}` (see `_methods.py`);
3. the server fits weights on `(Ŷ_t, y_t)` and predicts `ŷ^srv_{t+1} = w_tᵀ Ŷ_{t+1}`;
4. per-step statistics are emitted and per-agent accumulators updated — never an N × T array.

State holds only per-agent arrays (predictions, a ring of the last `H` feature draws, square
error and cost accumulators) plus N-independent ring buffers of the population moments.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax import lax

from ._agents import Population, map_agents, map_chunks, stage_cost
from ._custom_types import Array, Bool, Float, PRNGKeyArray, UInt32
from ._encoders import AbstractEncoder, ESNParams, RFNParams
from ._kernels import Kernels, as_kernels, evaluate_apart, stage_cost_rows
from ._mean_field import CostParams
from ._methods import AbstractMethod, MeanFieldGame, MethodState, StepContext
from ._metrics import SimResult, StepStats, persistence_rmse, summarize
from ._mixture import AbstractServer, RidgeMixture
from ._moments import assemble_second_moment
from ._random import key_words


def solve_dtype():
    """Window moments and gains are kept in float64 whenever JAX allows it (spec §13)."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


class Simulation(eqx.Module):
    """Everything that defines a run except the data and the key.

    Attributes:
        n_agents: population size N.
        encoder: the agents' random-feature encoder: `RFNEncoder` (stateless) or
            `ESNEncoder` (its state, the previous features, is carried by the loop).
        methods: client update rules run side by side on the same draws (`default_methods`).
        server: the mixture rule applied to every method's predictions.
        cost: weights of the realized online cost reported for every method (spec §3, §9).
        homogeneity: "h1" — one shared encoder, agents differ by their noise (exact theory);
            "h2" — each agent draws its own `(A, b)`, the policy uses population moments (an
            all-reduce over agents) (spec §2.2).
        batch_size: process agents in chunks of this size (`lax.map`); None = all at once.
        dtype: float type of the per-agent arrays.
        kernels: the backend tricks of the hot path: "tuned" (default; each measured to pay
            on XLA:CPU, `memoa bench --kernels both`), "plain" (`vmap` of the one-agent
            functions, `jax.random`, `jax.scipy`), or a `Kernels` choosing trick by trick.
            Same results up to rounding (tested).
    """

    n_agents: int = eqx.field(static=True)
    encoder: AbstractEncoder
    methods: tuple[AbstractMethod, ...]
    server: AbstractServer = RidgeMixture()
    cost: CostParams = CostParams()
    homogeneity: str = eqx.field(static=True, default="h2")
    batch_size: int | None = eqx.field(static=True, default=None)
    dtype: type = eqx.field(static=True, default=jnp.float64)
    kernels: Kernels = eqx.field(default_factory=Kernels, converter=as_kernels)

    def __check_init__(self):
        if not isinstance(self.n_agents, int) or self.n_agents < 1:
            raise ValueError(f"need at least one agent, got n_agents={self.n_agents!r}")
        if self.homogeneity not in ("h1", "h2"):
            raise ValueError(f"homogeneity must be 'h1' or 'h2', got {self.homogeneity!r}")
        if self.batch_size is not None and (
            not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise ValueError(
                f"batch_size must be a positive integer, got batch_size={self.batch_size!r}"
            )
        if not self.methods:
            raise ValueError("need at least one method")
        if self.encoder.stateful and any(
            getattr(m, "moments", "population") == "own" for m in self.methods
        ):
            raise ValueError(
                "moments='own' needs closed-form per-agent moments; the encoder "
                f"{type(self.encoder).__name__} is stateful (its moments are Monte Carlo)"
            )
        names = [m.name for m in self.methods]
        if len(set(names)) != len(names):
            raise ValueError(f"method names must be unique, got {names}")
        if jnp.dtype(self.dtype) == jnp.float64 and not jax.config.jax_enable_x64:
            raise ValueError(
                "dtype=float64 needs `jax.config.update('jax_enable_x64', True)` first "
                "(or pass dtype=jnp.float32)"
            )

    @property
    def history(self) -> int:
        return max(m.history for m in self.methods)


class _Acc(NamedTuple):
    sse: Float[Array, " n"]
    cost: Float[Array, " n"]


class _State(NamedTuple):
    noise_keys: UInt32[Array, "2 n"]
    params: RFNParams | ESNParams
    z_ring: Float[Array, "R d p n"]  # R = H + 1 slots: times t−H..t (see StepContext)
    z_next: Float[Array, "d p n"]  # the features of the coming step, drawn one step ahead
    mom_M: Float[Array, "R d p"]
    mom_S: Float[Array, "R d p d p"]
    methods: dict[str, MethodState]
    acc: dict[str, _Acc]
    moving: Bool[Array, " n"]  # the agent's features were nonzero at some step so far


def _ring_set(ring: Array, slot, value: Array) -> Array:
    """`ring[slot] = value` as a dynamic-update-slice, in place in the scan carry when nothing
    reads the old ring afterwards (`.at[slot].set` is a scatter, which XLA:CPU made a select
    over the whole ring)."""
    return lax.dynamic_update_index_in_dim(ring, value, slot, 0)


def init_agents(
    sim: Simulation, *, key: PRNGKeyArray
) -> tuple[RFNParams | ESNParams, UInt32[Array, "2 n"]]:
    """Per-agent encoder parameters and two-word noise keys (agent axis last, as everything
    per agent); agent `i` owns `fold_in(agents_key, i)`, so agent `i` is the same in any
    population."""
    agents_key, shared_key = jr.split(key)
    agent_keys = jax.vmap(lambda i: jr.fold_in(agents_key, i))(jnp.arange(sim.n_agents))
    param_keys, noise_keys = jax.vmap(jr.split, out_axes=1)(agent_keys)
    if sim.homogeneity == "h2":  # agent axis last, like all per-agent state
        params = jax.vmap(lambda k: sim.encoder.init(k, sim.dtype), out_axes=-1)(param_keys)
    else:  # h1: one encoder for everyone, drawn from its own key
        params = sim.encoder.init(shared_key, sim.dtype)
    return params, key_words(noise_keys)


def _population_moments(
    enc: AbstractEncoder,
    params,
    h2: bool,
    x_t,
    t,
    keys,
    prev,
    pop: Population,
    bs,
    dtype,
    kernels: Kernels,
):
    """Population moments at `x_t` (spec §2.2): the means over agents of each agent's `M` and
    `C` (exact for the RFN, Monte Carlo for the ESN, given each agent's `Z_{t−1}` = `prev`),
    and of `M ⊗ M` as one GEMM over the agents (no per-agent `(d p)²` tensor). `params` are
    per agent (`h2`) or shared (H1, where only a stateful encoder's moments differ by agent).

    With the `pack` and `apart` tricks each agent's `C[a, b, k]` and `M[a, k]` are packed as
    one complex array `C + i M` and evaluated apart from the reductions: `M` and `C` share
    every `exp` and division, and as two outputs XLA:CPU computed them in five passes, the
    last fused into a one-thread reduction (H2 moments at N = 10⁶, p = 5, float64, 2 cores:
    43 → 30 ms per step).
    """

    def parts(q, k, z):
        M, C = enc.moment_parts(q, x_t, prev=z, key=k, t=t, kernels=kernels)
        M, C = M.astype(dtype), C.astype(dtype)
        if kernels.pack:
            return lax.complex(C, jnp.broadcast_to(M[:, None], C.shape))
        return M, C

    def all_parts(params, keys, prev):
        if h2:
            return map_chunks(parts, params, keys, prev, batch_size=bs)
        return map_chunks(lambda k, z: parts(params, k, z), keys, prev, batch_size=bs)

    out = evaluate_apart(all_parts, params, keys, prev, live=t >= 0, apart=kernels.apart)
    if kernels.pack:
        M, mean = jnp.imag(out[:, 0]), pop.mean(out)
        mean_M, mean_C = jnp.imag(mean[:, 0]), jnp.real(mean)
    else:
        M, mean_M, mean_C = out[0], pop.mean(out[0]), pop.mean(out[1])
    outer = jnp.einsum("akn,bln->akbl", M, pop.zero_padding(M)) / pop.n
    return mean_M, assemble_second_moment(outer, mean_C)


def _agent_sharding(mesh):
    """A function that places an array (or pytree), agent axis last, on `mesh`'s "agents" axis."""
    if mesh is None:
        return lambda tree: tree
    if "agents" not in mesh.axis_names:
        raise ValueError(f"the mesh needs an axis named 'agents', got axes {mesh.axis_names}")
    # GSPMD propagation ("Auto" axes) on the same devices, whatever axis types the caller used
    # (`jax.make_mesh` makes "Explicit" axes, whose shardings would have to be typed by hand)
    auto = (jax.sharding.AxisType.Auto,) * len(mesh.axis_names)
    mesh = jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=auto)

    def constrain(a):
        spec = jax.sharding.PartitionSpec(*([None] * (a.ndim - 1)), "agents")
        return lax.with_sharding_constraint(a, jax.sharding.NamedSharding(mesh, spec))

    return lambda tree: jax.tree.map(constrain, tree)


def _shard_state(shard, state: "_State", h2: bool) -> "_State":
    """Pin every per-agent part of the state to the agent sharding (a no-op on one device)."""
    return state._replace(
        noise_keys=shard(state.noise_keys),
        params=shard(state.params) if h2 else state.params,
        z_ring=shard(state.z_ring),
        z_next=shard(state.z_next),
        methods=shard(state.methods),
        acc=shard(state.acc),
        moving=shard(state.moving),
    )


def _vmapped_stage_cost(cost, y_next, ybar_next, yhat_next, energy):
    """`stage_cost` of every agent (the plain path)."""
    one = lambda yh, e: stage_cost(cost, y_next, ybar_next, yh, e)
    return map_agents(one, yhat_next, energy)


def _validate_data(sim: Simulation, x, y):
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"need x (time, d_x) and y (time, d) of equal length, got {x.shape}, {y.shape}"
        )
    if x.shape[1] != sim.encoder.d_x or y.shape[1] != sim.encoder.d:
        raise ValueError(
            f"data shapes x{tuple(x.shape)}, y{tuple(y.shape)} do not match the encoder "
            f"(d_x={sim.encoder.d_x}, d={sim.encoder.d})"
        )
    n = x.shape[0]
    longest = max((m.window for m in sim.methods if isinstance(m, MeanFieldGame)), default=0)
    if n - 1 <= longest:
        raise ValueError(
            f"window={longest} is not shorter than the {n - 1} prediction steps of the series "
            f"({n} rows): the game would never be played"
        )


def _scan(step, init, n_steps: int):
    return lax.scan(step, init, jnp.arange(n_steps))


def _scan_remat(step, init, n_steps: int):
    """`_scan` with two-level checkpointing: `n_steps = k·n_seg + rest`, `k = ⌊√n_steps⌋`.

    The outer scan over segments saves only each segment's input state; the backward pass
    re-runs one segment at a time, whose (checkpointed) steps save only their input state.
    Peak: about `n_seg + k ≈ 2√T` copies of the carry instead of T steps of activations.
    """
    k = max(1, math.isqrt(n_steps))
    n_seg, rest = divmod(n_steps, k)
    step = jax.checkpoint(step)
    segment = jax.checkpoint(lambda carry, ts: lax.scan(step, carry, ts))
    final, steps = lax.scan(segment, init, jnp.arange(n_seg * k).reshape(n_seg, k))
    steps = jax.tree.map(lambda a: a.reshape((n_seg * k,) + a.shape[2:]), steps)
    if rest:
        final, tail = lax.scan(step, final, jnp.arange(n_seg * k, n_steps))
        steps = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), steps, tail)
    return final, steps


def simulate(
    sim: Simulation,
    x: Float[Array, "time d_x"],
    y: Float[Array, "time d"],
    *,
    key: PRNGKeyArray,
    progress: Callable[[int], None] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    n_active: int | Array | None = None,
    remat: bool = False,
    track_agent: int | Array = 0,
) -> SimResult:
    """Run the online protocol over the whole series (spec §7.1), compiled (`eqx.filter_jit`).

    One compilation per `sim` structure (its static fields, e.g. N and the methods), data
    shape, `mesh` and `remat`: the key, the data's values, the cost weights, `n_active`,
    `track_agent` and `progress` are run-time values (a Python int is converted inside), so
    a sweep over seeds or population sizes up to `sim.n_agents` compiles once. It may also be
    called under an outer `jax.jit`, `jax.vmap` (e.g. over keys) or `jax.grad`.

    Args:
        sim: the population, methods and server.
        x: public inputs `x_0..x_{n−1}`.
        y: targets `y_0..y_{n−1}`; all agents start at `ŷ_0 = y_0` and predict `y_1..y_{n−1}`.
        key: the run's PRNG key (encoders and all feature noise).
        progress: optional host callback, called with `t` after each step (e.g. a progress bar).
        mesh: shard the agent axis over this device mesh's axis named "agents" (`jax.sharding`):
            every per-agent array is split across devices, and the population reductions
            (mean field, population moments, server statistics, metrics) are the only
            cross-device communication. None: one device. Results equal single-device ones up
            to the order of floating-point sums.
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

    Returns:
        A `SimResult` (its `names` give the methods in the order of `sim.methods`).

    Raises:
        ValueError: data shapes that do not match the encoder, a window not shorter than the
            series, `n_active` outside `[1, N]`.
    """
    _validate_data(sim, x, y)
    if n_active is not None and not isinstance(n_active, jax.core.Tracer):
        if not 1 <= int(n_active) <= sim.n_agents:
            raise ValueError(
                f"n_active must be in [1, n_agents={sim.n_agents}], got n_active={n_active}"
            )
    n_active = None if n_active is None else jnp.asarray(n_active, jnp.int32)
    slot = jnp.asarray(-1 if progress is None else _progress_slot(progress), jnp.int32)
    track = jnp.asarray(track_agent, jnp.int32)
    return _simulate(sim, x, y, key, slot, progress is not None, mesh, n_active, remat, track)


_PROGRESS: dict[int, Callable[[int], None]] = {}


def _progress_slot(progress: Callable[[int], None]) -> int:
    """A number standing for `progress` inside the compiled loop, so that a new callback
    (a new progress bar) does not recompile it. The last 64 callbacks are kept."""
    for k, v in _PROGRESS.items():
        if v is progress:
            return k
    k = max(_PROGRESS, default=-1) + 1
    _PROGRESS[k] = progress
    for old in sorted(_PROGRESS)[:-64]:
        del _PROGRESS[old]
    return k


def _report_progress(slot, t):
    callback = _PROGRESS.get(int(slot))
    if callback is not None:
        callback(int(t))


@eqx.filter_jit
def _simulate(sim, x, y, key, progress_slot, has_progress, mesh, n_active, remat, track_agent):
    """The body of `simulate`, compiled (see there)."""
    pop = Population(sim.n_agents, n_active)
    dt, sdt = sim.dtype, solve_dtype()
    x, y = jnp.asarray(x, dt), jnp.asarray(y, dt)
    N, enc = sim.n_agents, sim.encoder
    R = sim.history + 1  # ring slots: the history and the current step
    d, p = enc.d, enc.p
    h2 = sim.homogeneity == "h2"
    if mesh is not None and sim.batch_size is not None:
        raise ValueError(
            f"batch_size={sim.batch_size} with a mesh: chunks of the global agent axis would be "
            "gathered across devices at every step; shard (each device then holds N/devices "
            "agents) or chunk, not both"
        )
    shard = _agent_sharding(mesh)
    # apart: fused into the first feature draw, the parameters' draw was computed twice
    draw_agents = lambda k: init_agents(sim, key=k)
    kernels = sim.kernels
    params, noise_keys = evaluate_apart(draw_agents, key, live=x[0, 0] > 0, apart=kernels.apart)
    noise_keys = shard(noise_keys)
    if h2:
        params = shard(params)
    need_moments = any(isinstance(m, MeanFieldGame) for m in sim.methods)
    bs = sim.batch_size

    c = sim.cost

    def draw_features(params, noise_keys, t, prev):
        """Every agent's `Z_t` (`prev`: every agent's `Z_{t−1}`, for a stateful encoder). The
        loop draws one step ahead and carries the draws, so that they are materialised once:
        drawn inside the step, XLA would fuse the noise generation (threefry + erfinv) into
        every consumer and recompute it once per method."""
        draw = lambda q, k, z: enc.features(q, x[t], enc.noise(k, t, kernels), z)
        if h2:
            return map_chunks(draw, params, noise_keys, prev, batch_size=bs)
        return map_chunks(lambda k, z: draw(params, k, z), noise_keys, prev, batch_size=bs)

    y0 = jnp.broadcast_to(y[0][:, None], (d, N))
    zeros_n = jnp.zeros((N,), dt)
    init = _shard_state(
        shard,
        _State(
            noise_keys=noise_keys,
            params=params,
            z_ring=jnp.zeros((R, d, p, N), dt),
            z_next=draw_features(params, noise_keys, 0, jnp.zeros((d, p, N), dt)),
            mom_M=jnp.zeros((R, d, p), sdt),
            mom_S=jnp.zeros((R, d, p, d, p), sdt),
            methods={
                m.name: MethodState(y0, jnp.zeros((R, d, N), dt), m.init_extra(N, p, dt))
                for m in sim.methods
            },
            acc={m.name: _Acc(zeros_n, zeros_n) for m in sim.methods},
            moving=jnp.zeros((N,), bool),
        ),
        h2,
    )

    def pick(a):
        """Agent `track_agent`'s column of `a`: an index on one device; across devices a
        masked sum (an all-reduce of d numbers, where an index would gather the whole row)."""
        if mesh is None:
            return a[:, track_agent]
        return jnp.sum(jnp.where(jnp.arange(N) == track_agent, a, 0.0), axis=-1)

    def agent_moments(tau):
        """Every agent's own exact moments at time `tau` (`moments="own"`), agent axis last;
        recomputed from the parameters, never stored."""
        one = lambda q: enc.moments(q, x[tau], kernels)
        if h2:
            M, S = jax.vmap(one, in_axes=-1, out_axes=-1)(params)
        else:
            M, S = jax.tree.map(
                lambda a: jnp.broadcast_to(a[..., None], a.shape + (N,)), one(params)
            )
        return M.astype(sdt), S.astype(sdt)

    def step(state: _State, t):
        x_t, y_t, y_next = x[t], y[t], y[t + 1]
        slot = jnp.mod(t, R)

        # FEATURES (shared by all methods): Z_t was drawn last step; draw Z_{t+1} now.
        # The rings take step t first: written before any read, they are updated in place
        # (written after the reads, XLA:CPU copied the whole feature ring twice per step).
        z_now = state.z_next
        z_next = draw_features(state.params, state.noise_keys, t + 1, z_now)
        z_ring = _ring_set(state.z_ring, slot, z_now)
        # POPULATION MOMENTS AT x_t
        if need_moments:
            if h2 or enc.stateful:  # population moments: an all-reduce of d p + d² p + (d p)²
                prev = z_ring[jnp.mod(t - 1, R)]  # Z_{t−1} (zeros at t = 0: Z_{−1} = 0)
                M_t, S_t = _population_moments(
                    enc, state.params, h2, x_t, t, state.noise_keys, prev, pop, bs, sdt, kernels
                )
            else:
                M_t, S_t = enc.moments(state.params, x_t, kernels)
            mom_M = _ring_set(state.mom_M, slot, M_t.astype(sdt))
            mom_S = _ring_set(state.mom_S, slot, S_t.astype(sdt))
        else:
            mom_M, mom_S = state.mom_M, state.mom_S

        ctx = StepContext(t, y, z_now, z_ring, mom_M, mom_S, bs, pop, agent_moments, kernels)
        cost_of = stage_cost_rows if kernels.rows else _vmapped_stage_cost
        methods, acc, stats = {}, {}, {}
        for m in sim.methods:
            ms, a = state.methods[m.name], state.acc[m.name]
            # CLIENT UPDATE
            base, energy, y_hat_next, extra = m.step_extra(ctx, ms)
            # SERVER MIXTURE: weights fitted on (Ŷ_t, y_t), applied to Ŷ_{t+1}
            srv = sim.server.predict(ms.yhat, y_t, y_hat_next, a.sse, pop)
            # METRICS
            ybar_next = pop.mean(y_hat_next)
            sq, stage = map_chunks(
                lambda yh, e: cost_of(c, y_next, ybar_next, yh, e),
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
            methods[m.name] = MethodState(y_hat_next, _ring_set(ms.yhat_ring, slot, base), extra)

        new = _shard_state(
            shard,
            _State(
                noise_keys=state.noise_keys,
                params=state.params,
                z_ring=z_ring,
                z_next=z_next,
                mom_M=mom_M,
                mom_S=mom_S,
                methods=methods,
                acc=acc,
                moving=state.moving | jnp.any(z_now != 0, axis=(0, 1)),
            ),
            h2,
        )
        if has_progress:
            jax.debug.callback(_report_progress, progress_slot, t)
        return new, stats

    n_steps = x.shape[0] - 1
    final, steps = (_scan_remat if remat else _scan)(step, init, n_steps)

    summary, agent_rmse = {}, {}
    persistence = persistence_rmse(y, 1)
    for m in sim.methods:
        a = final.acc[m.name]
        rmse = jnp.sqrt(a.sse / n_steps)
        agent_rmse[m.name] = rmse if pop.n_active is None else jnp.where(pop.mask(), rmse, jnp.nan)
        summary[m.name] = summarize(rmse, a.cost, final.moving, steps[m.name], pop, persistence)
    names = tuple(m.name for m in sim.methods)
    return SimResult(steps=steps, summary=summary, agent_rmse=agent_rmse, names=names)
