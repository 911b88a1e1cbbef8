"""Client update rules run by the online loop: MEMOA and the greedy baselines (spec §4, §7).

Every method owns one prediction state per agent and, at step `t`, returns the state it
builds on, its control `β_t` and the next prediction `ŷ_{t+1}`. All of them see the same
data and the same feature draws `Zⁱ_t`, so they run side by side in one scan.

* `MeanFieldGame` — MEMOA (spec §4, §7.1): every `sync_every` steps once `t ≥ T`, the
  closed-form mean-field gains of the last `T` steps are solved (independent of N) and the
  window is replayed in hindsight with each agent's realized features, from the observed
  `y_{t−T}`, each agent using only its own state and the broadcast mean field `ȳ`.
  Before the first sync it runs the greedy ridge update. G2 (`window=1`) and G3 (`lam=0`)
  are instances of it, and so is the centralized comparator (`equilibrium="nash"`: the
  exact N-player feedback Nash gains of the window in place of the mean-field ones).
* `LocalRidge` — G1, FedMOE's greedy local ridge client.
* `FollowTheMean` — G4, every agent restarts from the population mean and adds its G1 step.
"""

import abc
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from ._agents import Population, advance, map_agents, map_chunks, mean_field_update, ridge_control
from ._custom_types import Array, Float
from ._mean_field import CostParams, solve_mean_field
from .nash._reduced import solve_fne_reduced


class StepContext(NamedTuple):
    """What the loop shares with every method at step `t` (agent axis LAST, see `_agents`).

    `z_ring` and `mom_*` are ring buffers of length `R = H + 1` (`H` = the longest history a
    method reads): slot `τ mod R` holds time `τ`, for `τ = t−H..t` — the current step
    included (`z_ring[t mod R]` is `z_now`), so that the loop writes it before anything reads
    the ring and XLA updates the ring in place. Slots of negative times hold zeros
    (`Z_{τ<0} = 0`).
    """

    t: Array
    y: Float[Array, "time d"]
    z_now: Float[Array, "d p n"]
    z_ring: Float[Array, "R d p n"]
    mom_M: Float[Array, "R d p"]
    mom_S: Float[Array, "R d p d p"]
    batch_size: int | None
    pop: Population  # which agent slots are real; means over agents go through it


class MethodState(NamedTuple):
    yhat: Float[Array, "d n"]  # each agent's prediction of y_t
    yhat_ring: Float[Array, "R d n"]  # the states it built on at times t−R..t−1 (ring, R = H+1)
    extra: Any = None  # per-agent state of a learning method (agent axis last), e.g. optax's


def _slot_times(t, R: int):
    """Time τ held by each slot j of a ring of length R at step t: the τ in [t−R+1, t] with
    τ ≡ j (mod R) (for `yhat_ring`, whose slot `t mod R` still holds `t − R`, the row of that
    slot is never used)."""
    j = jnp.arange(R)
    return t - R + 1 + jnp.mod(j - t - 1, R)


class AbstractMethod(eqx.Module):
    """A client update rule. `name` labels its results; `ridge_window` is its greedy `T_c`."""

    name: eqx.AbstractVar[str]
    cost: eqx.AbstractVar[CostParams]
    ridge_window: eqx.AbstractVar[int]

    @property
    def history(self) -> int:
        """How many past steps of features this method reads."""
        return self.ridge_window

    def greedy(self, ctx: StepContext, state: MethodState) -> Float[Array, "p n"]:
        """G1 ridge controls of all agents on their own past (spec §7.2)."""
        tau = _slot_times(ctx.t, ctx.z_ring.shape[0])
        dt = ctx.y.dtype
        in_window = (tau >= ctx.t - self.ridge_window) & (tau >= 0) & (tau < ctx.t)
        weights = jnp.where(in_window, jnp.exp(-self.cost.alpha * (ctx.t - 1 - tau)), 0.0)
        y_next = ctx.y[jnp.clip(tau + 1, 0, ctx.y.shape[0] - 1)]
        fn = lambda z_i, yh_i: ridge_control(
            z_i, yh_i, y_next, weights.astype(dt), jnp.asarray(self.cost.gamma, dt)
        )
        return map_agents(fn, ctx.z_ring, state.yhat_ring, batch_size=ctx.batch_size)

    @abc.abstractmethod
    def step(
        self, ctx: StepContext, state: MethodState
    ) -> tuple[Float[Array, "d n"], Float[Array, "p n"], Float[Array, "d n"]]:
        """Return `(base state ŷ_t, control β_t, next prediction ŷ_{t+1})`."""

    def init_extra(self, n_agents: int, p: int, dtype) -> Any:
        """Initial per-agent state of a method that carries one (`MethodState.extra`)."""
        del n_agents, p, dtype
        return None

    def step_extra(self, ctx: StepContext, state: MethodState):
        """`step`, plus the next `MethodState.extra` (what the loop calls)."""
        return (*self.step(ctx, state), state.extra)


def _advance(yhat, z, beta, batch_size):
    return map_agents(advance, yhat, z, beta, batch_size=batch_size)


class LocalRidge(AbstractMethod):
    """G1: greedy local ridge (FedMOE's non-game client), `ŷ_{t+1} = ŷ_t + Z_t β^{ridge}_t`."""

    cost: CostParams
    ridge_window: int = eqx.field(static=True, default=3)
    name: str = eqx.field(static=True, default="g1_ridge")

    def step(self, ctx, state):
        beta = self.greedy(ctx, state)
        return state.yhat, beta, _advance(state.yhat, ctx.z_now, beta, ctx.batch_size)


class FollowTheMean(AbstractMethod):
    """G4: `ŷⁱ_{t+1} = ȳ_t + Zⁱ_t βⁱ` with the G1 step `βⁱ` (`ȳ_t` alone if `increment=False`)."""

    cost: CostParams
    ridge_window: int = eqx.field(static=True, default=3)
    increment: bool = eqx.field(static=True, default=True)
    name: str = eqx.field(static=True, default="g4_follow_mean")

    def step(self, ctx, state):
        base = jnp.broadcast_to(ctx.pop.mean(state.yhat)[:, None], state.yhat.shape)
        if not self.increment:
            return base, jnp.zeros(ctx.z_now.shape[1:], base.dtype), base
        beta = self.greedy(ctx, state)
        return base, beta, _advance(base, ctx.z_now, beta, ctx.batch_size)


class MeanFieldGame(AbstractMethod):
    """MEMOA: the closed-form decentralized mean-field policy replayed over a hindsight window.

    Attributes:
        cost: the per-agent cost (spec §3); `lam=0` gives G3 (independent agents).
        window: game window `T` (`window=1` gives G2, the myopic mean-field policy).
        sync_every: play the game every this many steps (FedMOE `game_sync_freq`).
        ridge_window: `T_c` of the greedy warm-up used before the first sync.
        mean_field: "realized" — agents use the broadcast empirical mean ȳ_s (default, A5);
            "flow" — they use the deterministic flow m_s (no communication inside the window).
        equilibrium: "mean_field" — the decentralized policy (K, L, g) of the N = ∞ limit
            (MEMOA); "nash" — the centralized comparator of spec §7.1 b: the exact symmetric
            feedback Nash equilibrium (K^N, L^N, h^N) of the N-player window game for the
            actual N (`memoa_jax.nash.solve_fne_reduced`, O(1) in N), with realized ȳ.
    """

    cost: CostParams
    window: int = eqx.field(static=True, default=3)
    sync_every: int = eqx.field(static=True, default=1)
    ridge_window: int = eqx.field(static=True, default=3)
    mean_field: str = eqx.field(static=True, default="realized")
    equilibrium: str = eqx.field(static=True, default="mean_field")
    name: str = eqx.field(static=True, default="memoa")

    def __check_init__(self):
        for k in ("window", "sync_every", "ridge_window"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {k}={v!r}")
        if self.mean_field not in ("realized", "flow"):
            raise ValueError(f"mean_field must be 'realized' or 'flow', got {self.mean_field!r}")
        if self.equilibrium not in ("mean_field", "nash"):
            raise ValueError(
                f"equilibrium must be 'mean_field' or 'nash', got equilibrium={self.equilibrium!r}"
            )
        if self.equilibrium == "nash" and self.mean_field != "realized":
            raise ValueError(
                "equilibrium='nash' plays the N-player feedback equilibrium on the realized ȳ; "
                f"it has no deterministic flow, got mean_field={self.mean_field!r}"
            )

    @property
    def history(self) -> int:
        return max(self.window, self.ridge_window)

    def gains(self, ctx: StepContext):
        """Gains `(K, L, g)` and flow `m` for the window `τ = t−T..t` (float64 when enabled),
        with the window's ring slots and targets."""
        T, R = self.window, ctx.z_ring.shape[0]
        slots = jnp.mod(ctx.t - T + jnp.arange(T), R)
        yw = lax.dynamic_slice_in_dim(ctx.y, ctx.t - T, T + 1).astype(ctx.mom_M.dtype)
        M, S = ctx.mom_M[slots], ctx.mom_S[slots]
        if self.equilibrium == "nash":
            fne = solve_fne_reduced(M, S, yw, self.cost, ctx.pop.n)
            return (fne.K, fne.L, fne.h, jnp.zeros_like(yw)), slots, yw  # no flow: realized ȳ
        sol = solve_mean_field(M, S, yw, self.cost)
        return (sol.K, sol.L, sol.g, sol.m), slots, yw

    def replay(self, ctx: StepContext, state: MethodState):
        """Hindsight re-simulation of the window (spec §7.1 c): returns `(ŷ_T, β_{T−1})`."""
        (K, L, g, m), slots, yw = self.gains(ctx)
        dt = state.yhat.dtype
        y0 = jnp.broadcast_to(yw[0].astype(dt)[:, None], state.yhat.shape)

        def policy_step(yh, xs, with_control: bool):
            K, L, g, slot, m = xs
            ybar = ctx.pop.mean(yh) if self.mean_field == "realized" else m
            update = lambda y_, z_: mean_field_update(K, L, g, y_, ybar, z_)
            new, beta = map_chunks(update, yh, ctx.z_ring[slot], batch_size=ctx.batch_size)
            return (new, beta) if with_control else new

        xs = (K.astype(dt), L.astype(dt), g.astype(dt), slots, m[:-1].astype(dt))
        head = jax.tree.map(lambda a: a[:-1], xs)
        last = jax.tree.map(lambda a: a[-1], xs)
        # only the last control is kept: the first T−1 steps carry predictions alone
        yh = y0
        if self.window > 1:
            yh, _ = lax.scan(lambda yh, xs: (policy_step(yh, xs, False), None), y0, head)
        return policy_step(yh, last, True)

    def step(self, ctx, state):
        is_sync = (ctx.t >= self.window) & (jnp.mod(ctx.t, self.sync_every) == 0)
        base, beta = lax.cond(
            is_sync,
            lambda: self.replay(ctx, state),
            lambda: (state.yhat, self.greedy(ctx, state)),
        )
        return base, beta, _advance(base, ctx.z_now, beta, ctx.batch_size)


def default_methods(
    cost: CostParams,
    *,
    window: int = 3,
    ridge_window: int = 3,
    sync_every: int = 1,
    mean_field: Literal["realized", "flow"] = "realized",
) -> tuple[AbstractMethod, ...]:
    """MEMOA and the greedy baselines G1–G4 of spec §7.2, all on the same cost weights."""
    game = dict(sync_every=sync_every, ridge_window=ridge_window, mean_field=mean_field)
    return (
        MeanFieldGame(cost, window=window, name="memoa", **game),
        LocalRidge(cost, ridge_window=ridge_window),
        MeanFieldGame(cost, window=1, name="g2_myopic", **game),
        MeanFieldGame(
            eqx.tree_at(lambda c: c.lam, cost, 0.0), window=window, name="g3_independent", **game
        ),
        FollowTheMean(cost, ridge_window=ridge_window),
    )
