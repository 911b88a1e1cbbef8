"""How a game's window solution is read online at a sync step `t` (docs "readings"): the next
prediction is `base + Z_t β`, the base and the control each a strategy of `MeanFieldGame`.

A reconstructed choice (the paper does not say):

* base — `ReplayEnd` (default, FedMOE's `Server.fit`): the end `ŷ^rep_T` of the hindsight
  replay of the window; `ObservedBase`: the observation `y_t`; `OwnBase`: the agent's own
  previous prediction `ŷ_t`;
* control — `ReplayControl` (default): the replay's last control `β^rep_{T−1}`;
  `GainsControl`: the window's last gains applied to the base,
  `β = K_{T−1} base + L_{T−1} mean(base) + g_{T−1}` (no replay unless the base is its end).

`Replay` is the hindsight re-simulation of the window (spec §7.1 c) that both read from.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from .._agents import advance, map_chunks, mean_field_control
from .._custom_types import Array
from .._kernels import advance_rows, control_rows, energy_rows, mean_field_update, rows
from ._context import MethodState, StepContext
from ._equilibria import AbstractMeanField


class Replay:
    """The window's replay at step `t`: every agent from the observed `y_{t−T}` (`yw[0]`)
    with its realized features and the window's gains `(K, L, g)` (cast to the state's
    dtype; `per_agent`: with a trailing agent axis, `OwnMoments`), against the mean field
    `mean_field` (with the flow `m`), over the window `T`. The per-agent rules are
    `_agents.mean_field_control` and `advance` (the plain path), or their row forms
    (`_kernels`). (Its ring slots are read at traced indices: unlike the ridge's, static
    slots measured no faster here.)"""

    def __init__(
        self,
        ctx: StepContext,
        state: MethodState,
        gains,
        yw: Array,
        *,
        T: int,
        mean_field: AbstractMeanField,
        per_agent: bool,
    ):
        K, L, g, m = gains
        dt = state.yhat.dtype
        self.ctx, self.state, self.mean_field, self.per_agent = ctx, state, mean_field, per_agent
        self.K, self.L, self.g, self.m = K.astype(dt), L.astype(dt), g.astype(dt), m.astype(dt)
        self.T = T
        self.y0 = jnp.broadcast_to(yw[0].astype(dt)[:, None], state.yhat.shape)

    def mean(self, yh: Array, s) -> Array:
        """The mean field `ȳ_s` the agents play against at window step `s`."""
        return self.mean_field.mean(self.ctx.pop, yh, self.m, s)

    def run(self, s, rows_fn, one_fn, *args):
        """`rows_fn((K_s, L_s, g_s), *args)` over the agents as rows, or `vmap` of the
        one-agent `one_fn` (the plain path): per-agent gains are chunked with the agents,
        population gains are closed over."""
        own, k, bs = self.per_agent, self.ctx.kernels, self.ctx.batch_size
        G = (self.K[s], self.L[s], self.g[s])
        fn = rows_fn
        if not k.rows:
            fn = jax.vmap(one_fn, in_axes=(-1 if own else None,) + (-1,) * len(args),
                          out_axes=-1)  # fmt: skip
            G = tuple(a[..., 0, :] for a in G) if own else G  # (…, 1, N) -> (…, N)
        if own:
            return map_chunks(lambda *a: fn(a[:3], *a[3:]), *G, *args, batch_size=bs)
        return map_chunks(lambda *a: fn(G, *a), *args, batch_size=bs)

    def policy_step(self, s, yh):
        """One step of the replay: window step `s`'s states to `s + 1`'s."""
        ctx, T = self.ctx, self.T
        ybar = self.mean(yh, s)
        z_of = lambda a: ctx.features(a, s - T)
        rows_fn = lambda G, y_, a: mean_field_update(G[0], G[1], G[2], y_, ybar, z_of(a))
        one_fn = lambda G, y_, a: advance(
            y_, z_of(a), mean_field_control(G[0], G[1], G[2], y_, ybar)
        )
        return self.run(s, rows_fn, one_fn, yh, ctx.agents)

    def states(self, n: int) -> Array:
        """The replay's states after `n ≤ T` steps."""
        return lax.fori_loop(0, n, self.policy_step, self.y0)

    def last(self):
        """The default reading in one replay: the first `T−1` steps carry predictions
        alone; the last one gives the end `ŷ_T`, the next prediction `ŷ_T + Z_t β_{T−1}`
        and `‖β_{T−1}‖²`. Returns `(base, ‖β‖², next)`."""
        ctx, s = self.ctx, self.T - 1
        yh = self.states(self.T - 1)
        ybar = self.mean(yh, s)

        def last_rows(G, y_, a):
            z_, z_now = ctx.features(a, (-1, 0))
            beta = control_rows(G[0], G[1], G[2], rows(y_), ybar)
            base = advance_rows(rows(y_), z_, beta)
            nxt = advance_rows(base, z_now, beta)
            return (jnp.concatenate(base), jnp.concatenate(nxt)), energy_rows(beta)

        def last_one(G, y_, a):
            z_, z_now = ctx.features(a, (-1, 0))
            beta = mean_field_control(G[0], G[1], G[2], y_, ybar)
            base = advance(y_, z_, beta)
            return (base, advance(base, z_now, beta)), beta @ beta

        (base, nxt), energy = self.run(s, last_rows, last_one, yh, ctx.agents)
        return base, energy, nxt

    def advance_with(self, base: Array, at: Array, ybar: Array):
        """`(base + Z_t β, ‖β‖²)` with the window's last gains' control `β` at the states
        `at` against the mean field `ybar`."""
        ctx = self.ctx

        def advance_rows_with(G, b_, y_, a):
            z_now = ctx.features(a, 0)
            beta = control_rows(G[0], G[1], G[2], rows(y_), ybar)
            return jnp.concatenate(advance_rows(rows(b_), z_now, beta)), energy_rows(beta)

        def advance_one_with(G, b_, y_, a):
            z_now = ctx.features(a, 0)
            beta = mean_field_control(G[0], G[1], G[2], y_, ybar)
            return advance(b_, z_now, beta), beta @ beta

        return self.run(self.T - 1, advance_rows_with, advance_one_with, base, at, ctx.agents)


class AbstractReplayBase(eqx.Module):
    """Where the next prediction starts from at a sync step."""

    @abc.abstractmethod
    def base(self, replay: Replay) -> Array:
        """Every agent's base state `(d, N)`."""


class ReplayEnd(AbstractReplayBase):
    """The replay's end `ŷ^rep_T` (the default, FedMOE's `Server.fit`)."""

    def base(self, replay):
        return replay.states(replay.T)


class ObservedBase(AbstractReplayBase):
    """The observation `y_t`, the same for every agent."""

    def base(self, replay):
        ctx, yhat = replay.ctx, replay.state.yhat
        return jnp.broadcast_to(ctx.y[ctx.t].astype(yhat.dtype)[:, None], yhat.shape)


class OwnBase(AbstractReplayBase):
    """The agent's own previous prediction `ŷ_t`."""

    def base(self, replay):
        return replay.state.yhat


class AbstractReplayControl(eqx.Module):
    """Which control `β` moves the base at a sync step."""

    @abc.abstractmethod
    def read(self, base: AbstractReplayBase, replay: Replay) -> tuple[Array, Array, Array]:
        """`(base, ‖β‖², base + Z_t β)` of every agent."""

    def fuses_with(self, base: AbstractReplayBase) -> bool:
        """Whether with `base` the reading is the replay alone (what `one_pass` writes)."""
        del base
        return False


class ReplayControl(AbstractReplayControl):
    """The replay's last control `β^rep_{T−1}` (the default)."""

    def read(self, base, replay):
        if self.fuses_with(base):  # the replay's end and its last control: one replay
            return replay.last()
        b = base.base(replay)
        at = replay.states(replay.T - 1)  # β_{T−1} of the replay's state at T−1
        nxt, energy = replay.advance_with(b, at, replay.mean(at, replay.T - 1))
        return b, energy, nxt

    def fuses_with(self, base):
        return isinstance(base, ReplayEnd)


class GainsControl(AbstractReplayControl):
    """The window's last gains at the base itself, against the base's mean."""

    def read(self, base, replay):
        b = base.base(replay)
        nxt, energy = replay.advance_with(b, b, replay.ctx.pop.mean(b))
        return b, energy, nxt
