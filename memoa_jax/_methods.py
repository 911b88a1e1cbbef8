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
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from ._agents import (
    Population,
    advance,
    map_agents,
    map_chunks,
    mean_field_control,
    ridge_control,
)
from ._custom_types import Array, Float
from ._kernels import (
    SMALL_SOLVE_UP_TO,
    Kernels,
    advance_rows,
    by_phase,
    control_rows,
    energy_rows,
    mean_field_update,
    ridge_rows,
    rows,
)
from ._mean_field import CostParams, solve_mean_field_status
from ._status import RESULTS, Status


class StepContext(NamedTuple):
    """What the loop shares with every method at step `t` (agent axis LAST, see `_agents`).

    Features: `features(agents, offset, slot=None)` is `Z_{t+offset}` (`−H ≤ offset ≤ 0`,
    zeros at negative times) of the agents in `agents`, a pytree of per-agent leaves (agent
    axis last) to pass through `map_chunks` / `vmap` with a method's other per-agent
    arrays, so that each chunk (or agent) reads or recomputes its own: the stored ring of the
    last `R = H + 1` draws, or, with `Simulation(state="lean")`, the agent indices from which
    the counter-based draws are recomputed. `slot`: the ring slot `(t + offset) mod R` when
    the caller knows it statically (`_kernels.by_phase`). A tuple of offsets (and of slots)
    gives the list of their features: read together, a lean state recomputes the agents'
    encoder parameters once for all of them. `z(offset)`: the same for every agent at once.
    `mom_*`: rings of the population moments, slot `τ mod R` for time `τ`.
    `agent_moments(τ)`: every agent's own exact moments `(M, S)` at time `τ`, agent axis last
    (None where the encoder has no closed form, see `moments="own"`). `kernels`: the backend
    tricks to run with (`_kernels.Kernels`). `zbar`, `zz` (a lean loop with the `onepass`
    trick, else None): rings of the feature statistics, slot `τ mod R` for time `τ`: the
    population mean `Z̄_τ` and the lag-1 cross moment `mean_i Zⁱ_τ ⊗ Zⁱ_{τ−1}`.
    """

    t: Array
    y: Float[Array, "time d"]
    agents: Any
    features: Callable[..., Any]  # an array `(d, p, *n)`, or a list of them
    ring_size: int
    mom_M: Float[Array, "R d p"]
    mom_S: Float[Array, "R d p d p"]
    batch_size: int | None
    pop: Population  # which agent slots are real; means over agents go through it
    agent_moments: Callable[[Array], tuple[Array, Array]] | None = None
    kernels: Kernels = Kernels()
    zbar: Float[Array, "R d p"] | None = None
    zz: Float[Array, "R d p d p"] | None = None

    def z(self, offset, slot=None) -> Float[Array, "d p n"]:
        """Every agent's `Z_{t+offset}`."""
        return self.features(self.agents, offset, slot)


class MethodState(NamedTuple):
    """One method's per-agent state (agent axis last), carried by the loop between steps."""

    yhat: Float[Array, "d n"]  # each agent's prediction of y_t
    yhat_ring: Float[Array, "R d n"] | None  # its base states at t−R..t−1 (ring, R = H+1)
    extra: Any = None  # per-agent state of a learning method (agent axis last), e.g. optax's


class OnePass(NamedTuple):
    """A method's step as part of the lean loop's one pass over the agents
    (`AbstractMethod.one_pass`, the `onepass` trick): `rows(yhat, z)` maps a chunk of agents'
    predictions `ŷ_t` (`(d, n)`) and their features `z[offset]` = `Z_{t+offset}` (`(d, p, n)`,
    for each of `offsets`, drawn once for the whole pass) to `(base, ‖β‖², ŷ_{t+1})`; `status`:
    the runtime checks of what was solved before the pass."""

    offsets: tuple[int, ...]
    rows: Callable[..., tuple[Array, Array, Array]]
    status: Status


LAPACK_CHUNK = 16384
"""Agents per batched LAPACK solve of the plain ridge (`Kernels(small_solve=False)`): on
XLA:CPU (jaxlib 0.10, 2 cores) unchunked batched solves of several methods running
concurrently deadlocked the intra-op thread pool (jaxlib's `ParallelBatchMap` waits for
tasks queued behind its own callers); one chunk at a time they run."""


class AbstractMethod(eqx.Module):
    """A client update rule. `name` labels its results; `ridge_window` is its greedy `T_c`."""

    name: eqx.AbstractVar[str]
    cost: eqx.AbstractVar[CostParams]
    ridge_window: eqx.AbstractVar[int]

    @property
    def history(self) -> int:
        """How many past steps of features this method reads."""
        return self.ridge_window

    @property
    def ring_until(self) -> int | None:
        """The step from which this method never reads its ring of past states
        (`MethodState.yhat_ring`) again, so that a lean loop can drop it; None: never."""
        return None

    @property
    def needs_moments(self) -> bool:
        """Whether this method reads the population moments (`StepContext.mom_M`,
        `mom_S`): the loop computes them if any of its methods does. True unless a method
        says otherwise, so that a new method that reads them never gets zeros."""
        return True

    def fuses(self, kernels: Kernels) -> bool:
        """Whether this method has a `one_pass` form under `kernels` (static)."""
        del kernels
        return False

    def one_pass(self, ctx: StepContext, state: MethodState) -> "OnePass | None":
        """This step as part of the lean loop's single pass over the agents (`OnePass`),
        or None where the method steps on its own (`step_checked`)."""
        del ctx, state
        return None

    def greedy(
        self, ctx: StepContext, state: MethodState, base: Float[Array, "d n"]
    ) -> tuple[Float[Array, " n"], Float[Array, "d n"]]:
        """Every agent's G1 ridge control `β` on its own past `τ = t−T_c..t−1` (spec §7.2):
        returns `(‖β‖², base + Z_t β)`."""
        dt, k, Tc = ctx.y.dtype, ctx.kernels, self.ridge_window
        tau = ctx.t - Tc + jnp.arange(Tc)
        lag = (ctx.t - 1 - tau).astype(jnp.result_type(self.cost.alpha, float))
        weights = jnp.where(tau >= 0, jnp.exp(-self.cost.alpha * lag), 0.0)
        weights = weights.astype(dt)
        y_next = ctx.y[jnp.clip(tau + 1, 0, ctx.y.shape[0] - 1)]
        gamma = jnp.asarray(self.cost.gamma, dt)
        d, p = ctx.mom_M.shape[1:]
        rows_fit = k.rows and k.small_solve and min(Tc * d, p) <= SMALL_SOLVE_UP_TO

        def one(zw, yw, b, z):  # one agent: the plain path
            beta = ridge_control(zw, yw, y_next, weights, gamma, k.small_solve)
            return advance(b, z, beta), beta @ beta

        def update(zw, yw, b, z):  # the population as rows (see `_kernels`)
            beta = ridge_rows(zw, yw, y_next, weights, gamma)
            nxt = advance_rows(rows(b), z, beta)
            return jnp.concatenate(nxt), energy_rows(beta)

        def play(slot):
            slots = [slot(s - Tc) for s in range(Tc)]
            assert state.yhat_ring is not None, f"{self.name}: the greedy step reads the ring"
            yhat_win = [state.yhat_ring[j] for j in slots]

            def window(a):  # the agents' features at t−T_c..t−1 and at t
                offsets = tuple(s - Tc for s in range(Tc)) + (0,)
                *z_win, z = ctx.features(a, offsets, (*slots, slot(0)))
                return z_win, z

            def one_of(a, yw, b):
                z_win, z = window(a)
                return one(jnp.stack(z_win), yw, b, z)

            def update_of(a, yw, b):
                z_win, z = window(a)
                return update(z_win, yw, b, z)

            if not rows_fit:
                yw = jnp.stack(yhat_win)
                bs = ctx.batch_size
                if not k.small_solve and bs is None:  # batched LAPACK: see LAPACK_CHUNK
                    bs = LAPACK_CHUNK
                return map_agents(one_of, ctx.agents, yw, base, batch_size=bs)
            return map_chunks(update_of, ctx.agents, yhat_win, base, batch_size=ctx.batch_size)

        nxt, energy = by_phase(ctx.t, ctx.ring_size, play, k.phases)
        return energy, nxt

    @abc.abstractmethod
    def step(
        self, ctx: StepContext, state: MethodState
    ) -> tuple[Float[Array, "d n"], Float[Array, " n"], Float[Array, "d n"]]:
        """Return `(base state ŷ_t, control energy ‖β_t‖², next prediction ŷ_{t+1})`."""

    def init_extra(self, n_agents: int, p: int, dtype) -> Any:
        """Initial per-agent state of a method that carries one (`MethodState.extra`)."""
        del n_agents, p, dtype
        return None

    def step_extra(self, ctx: StepContext, state: MethodState):
        """`step`, plus the next `MethodState.extra`."""
        return (*self.step(ctx, state), state.extra)

    @property
    def checks(self) -> tuple[tuple[RESULTS, int], ...]:
        """The `(code, window)` pairs that `step_checked`'s `Status` can hold."""
        return ()

    def step_checked(self, ctx: StepContext, state: MethodState):
        """`step_extra`, plus the `Status` of the step's runtime checks (what the loop
        calls): a method whose step can fail (a singular system) reports it here, so that
        the compiled loop holds no host callback (`_status`)."""
        return (*self.step_extra(ctx, state), Status.ok())


class LocalRidge(AbstractMethod):
    """G1: greedy local ridge (FedMOE's non-game client), `ŷ_{t+1} = ŷ_t + Z_t β^{ridge}_t`."""

    cost: CostParams
    ridge_window: int = eqx.field(static=True, default=3)
    name: str = eqx.field(static=True, default="g1_ridge")

    @property
    def needs_moments(self) -> bool:
        return False

    def step(self, ctx, state):
        return state.yhat, *self.greedy(ctx, state, state.yhat)


class FollowTheMean(AbstractMethod):
    """G4: `ŷⁱ_{t+1} = ȳ_t + Zⁱ_t βⁱ` with the G1 step `βⁱ` (`ȳ_t` alone if `increment=False`)."""

    cost: CostParams
    ridge_window: int = eqx.field(static=True, default=3)
    increment: bool = eqx.field(static=True, default=True)
    name: str = eqx.field(static=True, default="g4_follow_mean")

    @property
    def needs_moments(self) -> bool:
        return False

    def step(self, ctx, state):
        base = jnp.broadcast_to(ctx.pop.mean(state.yhat)[:, None], state.yhat.shape)
        if not self.increment:
            return base, jnp.zeros(base.shape[1:], base.dtype), base
        return base, *self.greedy(ctx, state, base)


REPLAY_BASES = ("replay_end", "observed", "own")
REPLAY_CONTROLS = ("replay", "gains")


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
        replay_base, replay_control: how the window's solution is used online at a sync step
            `t` (a reconstructed choice: the paper does not say; docs "readings"). The next
            prediction is `base + Z_t β` with
            - base "replay_end" (default, FedMOE's `Server.fit`): the replay's end `ŷ^rep_T`;
              "observed": the observation `y_t`; "own": the agent's previous prediction `ŷ_t`;
            - control "replay" (default): the replay's last control `β^rep_{T−1}`;
              "gains": the window's last gains applied to the base,
              `β = K_{T−1} base + L_{T−1} mean(base) + g_{T−1}` (no replay is needed unless
              the base is the replay's end).
        moments: "population" — one set of gains from the population moments (spec §2.2,
            H2); "own" — FedMOE's reading: each agent solves the window game with its own
            exact RFN moments (per-agent gains `(Kⁱ, Lⁱ, gⁱ)`, O(N T p³) per sync, still
            decentralized: agent i needs only its own encoder and the broadcast ȳ). RFN only.
        gains_solver: the centralized gains `(M, S, y, cost, n) -> (K, L, h, status)` for
            `equilibrium="nash"`, given by the caller (`memoa_jax.nash.fne_gains`): the core
            does not depend on `nash/`. `status`: the `Status` of its runtime checks (a
            solver returning `(K, L, h)` alone is taken as unchecked).
    """

    cost: CostParams
    window: int = eqx.field(static=True, default=3)
    sync_every: int = eqx.field(static=True, default=1)
    ridge_window: int = eqx.field(static=True, default=3)
    mean_field: str = eqx.field(static=True, default="realized")
    equilibrium: str = eqx.field(static=True, default="mean_field")
    name: str = eqx.field(static=True, default="memoa")
    replay_base: str = eqx.field(static=True, default="replay_end")
    replay_control: str = eqx.field(static=True, default="replay")
    moments: str = eqx.field(static=True, default="population")
    gains_solver: Callable | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        for k in ("window", "sync_every", "ridge_window"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {k}={v!r}")
        choices = dict(
            mean_field=("realized", "flow"),
            equilibrium=("mean_field", "nash"),
            replay_base=REPLAY_BASES,
            replay_control=REPLAY_CONTROLS,
            moments=("population", "own"),
        )
        for k, allowed in choices.items():
            if getattr(self, k) not in allowed:
                raise ValueError(
                    f"{k} must be one of {', '.join(map(repr, allowed))}, "
                    f"got {k}={getattr(self, k)!r}"
                )
        if self.equilibrium == "nash" and self.mean_field != "realized":
            raise ValueError(
                "equilibrium='nash' plays the N-player feedback equilibrium on the realized ȳ; "
                f"it has no deterministic flow, got mean_field={self.mean_field!r}"
            )
        if self.equilibrium == "nash" and self.moments != "population":
            raise ValueError(
                "equilibrium='nash' is the symmetric N-player equilibrium of the population "
                f"moments, got moments={self.moments!r}"
            )
        if self.moments == "own" and self.mean_field != "realized":
            raise ValueError(
                "moments='own' plays each agent's own gains on the realized ȳ, got "
                f"mean_field={self.mean_field!r}"
            )
        if self.equilibrium == "nash" and self.gains_solver is None:
            raise ValueError(
                "equilibrium='nash' needs gains_solver=memoa_jax.nash.fne_gains (or use "
                "memoa_jax.nash.centralized_method)"
            )

    @property
    def history(self) -> int:
        return max(self.window, self.ridge_window)

    @property
    def ring_until(self) -> int | None:
        # syncing at every step from t = window on: no greedy step, no ring, after it
        return self.window if self.sync_every == 1 else None

    def gains(self, ctx: StepContext):
        """Gains `(K, L, g)` and flow `m` for the window `τ = t−T..t` (float64 when enabled),
        with the window's targets and the `Status` of the solve. With `moments="own"` the
        gains have a trailing agent axis (`K: (T, p, d, 1, N)`, `g: (T, p, 1, N)`,
        `m: (T + 1, d, 1, N)`)."""
        T, R = self.window, ctx.ring_size
        slots = jnp.mod(ctx.t - T + jnp.arange(T), R)
        yw = lax.dynamic_slice_in_dim(ctx.y, ctx.t - T, T + 1).astype(ctx.mom_M.dtype)
        if self.moments == "own":
            if ctx.agent_moments is None:
                raise ValueError("moments='own' needs an encoder with closed-form moments (RFN)")
            M, S = jax.vmap(ctx.agent_moments)(ctx.t - T + jnp.arange(T))
            solve = lambda M_i, S_i: solve_mean_field_status(M_i, S_i, yw, self.cost)
            sol, status = jax.vmap(solve, in_axes=-1, out_axes=-1)(M, S)
            own = lambda a: jnp.expand_dims(a, -2)  # (..., N) -> (..., 1, N): rows broadcast
            return (own(sol.K), own(sol.L), own(sol.g), own(sol.m)), yw, status.first_of_batch()
        M, S = ctx.mom_M[slots], ctx.mom_S[slots]
        if self.equilibrium == "nash":
            assert self.gains_solver is not None  # checked in __check_init__
            K, L, h, *checked = self.gains_solver(M, S, yw, self.cost, ctx.pop.n)
            status = checked[0] if checked else Status.ok()
            return (K, L, h, jnp.zeros_like(yw)), yw, status  # no flow: realized ȳ
        sol, status = solve_mean_field_status(M, S, yw, self.cost)
        return (sol.K, sol.L, sol.g, sol.m), yw, status

    def replay(self, ctx: StepContext, state: MethodState):
        """A sync step: the hindsight re-simulation of the window (spec §7.1 c) from the
        observed `y_{t−T}` with each agent's realized features, then the next prediction
        from the reading's base and control (see the class docstring): returns
        `(base, ‖β‖², base + Z_t β, status)` (`status`: the gains' `Status`).

        (Its ring slots are read at traced indices: unlike the ridge's, static slots measured
        no faster here.) The per-agent rules are `_agents.mean_field_control` and `advance`
        (the plain path), or their row forms (`_kernels`)."""
        (K, L, g, m), yw, status = self.gains(ctx)
        dt, bs, T = state.yhat.dtype, ctx.batch_size, self.window
        K, L, g, m = K.astype(dt), L.astype(dt), g.astype(dt), m.astype(dt)
        own, k = self.moments == "own", ctx.kernels
        mean = lambda yh, s: ctx.pop.mean(yh) if self.mean_field == "realized" else m[s]

        def run(s, rows_fn, one_fn, *args):
            """`rows_fn((K_s, L_s, g_s), *args)` over the agents as rows, or `vmap` of the
            one-agent `one_fn` (the plain path): per-agent gains are chunked with the agents,
            population gains are closed over."""
            G = (K[s], L[s], g[s])
            fn = rows_fn
            if not k.rows:
                fn = jax.vmap(one_fn, in_axes=(-1 if own else None,) + (-1,) * len(args),
                              out_axes=-1)  # fmt: skip
                G = tuple(a[..., 0, :] for a in G) if own else G  # (…, 1, N) -> (…, N)
            if own:
                return map_chunks(lambda *a: fn(a[:3], *a[3:]), *G, *args, batch_size=bs)
            return map_chunks(lambda *a: fn(G, *a), *args, batch_size=bs)

        def policy_step(s, yh):
            ybar = mean(yh, s)
            z_of = lambda a: ctx.features(a, s - T)
            rows_fn = lambda G, y_, a: mean_field_update(G[0], G[1], G[2], y_, ybar, z_of(a))
            one_fn = lambda G, y_, a: advance(
                y_, z_of(a), mean_field_control(G[0], G[1], G[2], y_, ybar)
            )
            return run(s, rows_fn, one_fn, yh, ctx.agents)

        s = T - 1
        y0 = jnp.broadcast_to(yw[0].astype(dt)[:, None], state.yhat.shape)
        if self.replay_base == "replay_end" and self.replay_control == "replay":
            # the default: the first T−1 steps carry predictions alone; the last one gives
            # ŷ_T, ŷ_{T+1} and ‖β‖²
            yh = lax.fori_loop(0, T - 1, policy_step, y0)
            ybar = mean(yh, s)

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

            (base, nxt), energy = run(s, last_rows, last_one, yh, ctx.agents)
            return base, energy, nxt, status

        if self.replay_base == "replay_end":  # with the gains: replay the whole window
            base = lax.fori_loop(0, T, policy_step, y0)
        elif self.replay_base == "observed":
            base = jnp.broadcast_to(ctx.y[ctx.t].astype(dt)[:, None], state.yhat.shape)
        else:
            base = state.yhat
        if self.replay_control == "replay":  # β_{T−1} of the replay's state at T−1
            at = lax.fori_loop(0, T - 1, policy_step, y0)
            ybar = mean(at, s)
        else:  # the last gains at the base itself
            at, ybar = base, ctx.pop.mean(base)

        def advance_rows_with(G, b_, y_, a):
            z_now = ctx.features(a, 0)
            beta = control_rows(G[0], G[1], G[2], rows(y_), ybar)
            return jnp.concatenate(advance_rows(rows(b_), z_now, beta)), energy_rows(beta)

        def advance_one_with(G, b_, y_, a):
            z_now = ctx.features(a, 0)
            beta = mean_field_control(G[0], G[1], G[2], y_, ybar)
            return advance(b_, z_now, beta), beta @ beta

        nxt, energy = run(s, advance_rows_with, advance_one_with, base, at, ctx.agents)
        return base, energy, nxt, status

    ONE_PASS_UP_TO = 3
    """The longest window whose replay means `one_pass` writes from feature statistics."""

    def fuses(self, kernels: Kernels) -> bool:
        return (
            kernels.onepass
            and self.sync_every == 1
            and self.window <= self.ONE_PASS_UP_TO
            and self.replay_base == "replay_end"
            and self.replay_control == "replay"
            and self.moments == "population"
        )

    def replay_means(self, ctx: StepContext, K, L, g, y0) -> list[Array]:
        """The replay's population means `ȳ_s`, `s < T ≤ 3`, from the feature statistics
        of the window (`StepContext.zbar`, `zz`), without visiting the agents. Every agent
        starts at `y0`, so the replay is a polynomial in its features: with `b₀ = K₀ y0 +
        L₀ y0 + g₀` and `a₁ = K₁ y0 + L₁ ȳ₁ + g₁`, `ȳ₁ = y0 + Z̄₀ b₀` and
        `ȳ₂ = ȳ₁ + Z̄₁ a₁ + E[Z₁ K₁ Z₀] b₀`, the last term from the lag-1 cross moment
        `E[Z₁ ⊗ Z₀]`. Equal to the mean of `replay`'s states to round-off (tested)."""
        T, R = self.window, ctx.ring_size
        assert ctx.zbar is not None and ctx.zz is not None and T <= self.ONE_PASS_UP_TO
        zbar, zz = ctx.zbar, ctx.zz
        at = lambda s: jnp.mod(ctx.t - T + s, R)  # the ring slot of the window's step s
        if T == 1:
            return [y0]
        b0 = K[0] @ y0 + L[0] @ y0 + g[0]
        ybar = [y0, y0 + zbar[at(0)] @ b0]
        if T == 3:
            a1 = K[1] @ y0 + L[1] @ ybar[1] + g[1]
            cross = jnp.einsum("akbl,kb,l->a", zz[at(1)], K[1], b0)  # E[Z₁ K₁ Z₀ b₀]
            ybar.append(ybar[1] + zbar[at(1)] @ a1 + cross)
        return ybar

    def one_pass(self, ctx, state):
        """At every step past the warm-up (the ring dropped), the default reading in the
        lean loop's one pass (`Kernels.onepass`): the gains and the replay's means before
        the pass (`replay_means`), then each agent's replay from `y_{t−T}` with its window's
        features, as `replay` computes it."""
        if state.yhat_ring is not None or not self.fuses(ctx.kernels) or ctx.zbar is None:
            return None
        (K, L, g, m), yw, status = self.gains(ctx)
        T, y0 = self.window, yw[0]
        if self.mean_field == "realized":
            ybar = self.replay_means(ctx, K, L, g, y0)
        else:
            ybar = [m[s] for s in range(T)]
        dt = state.yhat.dtype
        K, L, g = K.astype(dt), L.astype(dt), g.astype(dt)
        ybar, y0 = [b.astype(dt) for b in ybar], y0.astype(dt)

        def replay_rows(yhat, z):
            del yhat  # the replay starts from the observation y_{t−T}
            yh = rows(jnp.broadcast_to(y0[:, None], (y0.shape[0], z[0].shape[-1])))
            for s in range(T - 1):
                yh = advance_rows(yh, z[s - T], control_rows(K[s], L[s], g[s], yh, ybar[s]))
            beta = control_rows(K[T - 1], L[T - 1], g[T - 1], yh, ybar[T - 1])
            base = advance_rows(yh, z[-1], beta)
            nxt = advance_rows(base, z[0], beta)
            return jnp.concatenate(base), energy_rows(beta), jnp.concatenate(nxt)

        return OnePass(tuple(range(-T, 1)), replay_rows, status)

    def step_checked(self, ctx, state):
        if state.yhat_ring is None:  # dropped: past `ring_until`, every step is a sync
            base, energy, nxt, status = self.replay(ctx, state)
            return base, energy, nxt, state.extra, status
        is_sync = (ctx.t >= self.window) & (jnp.mod(ctx.t, self.sync_every) == 0)
        warm_up = lambda: (state.yhat, *self.greedy(ctx, state, state.yhat), Status.ok())
        base, energy, nxt, status = lax.cond(is_sync, lambda: self.replay(ctx, state), warm_up)
        return base, energy, nxt, state.extra, status

    @property
    def checks(self) -> tuple[tuple[RESULTS, int], ...]:
        """The `(code, window)` pairs its `Status` can hold (`Status.error_if`)."""
        if self.equilibrium == "nash":
            return ((RESULTS.singular_nash, self.window), (RESULTS.no_agents, 0))
        return ((RESULTS.singular_mean_field, self.window),)

    def step(self, ctx, state):
        """`step_checked`'s prediction, raising a failed check (`eqx.error_if`: a host
        callback; the loop calls `step_checked`)."""
        base, energy, nxt, _, status = self.step_checked(ctx, state)
        return status.error_if((base, energy, nxt), self.checks)


def default_methods(
    cost: CostParams,
    *,
    window: int = 3,
    ridge_window: int = 3,
    sync_every: int = 1,
    mean_field: Literal["realized", "flow"] = "realized",
) -> tuple[AbstractMethod, ...]:
    """MEMOA and the greedy baselines G1–G4 of spec §7.2, all on the same cost weights."""

    def game(name: str, cost: CostParams, window: int) -> MeanFieldGame:
        return MeanFieldGame(
            cost=cost,
            window=window,
            sync_every=sync_every,
            ridge_window=ridge_window,
            mean_field=mean_field,
            name=name,
        )

    return (
        game("memoa", cost, window),
        LocalRidge(cost=cost, ridge_window=ridge_window),
        game("g2_myopic", cost, 1),
        game("g3_independent", eqx.tree_at(lambda c: c.lam, cost, 0.0), window),
        FollowTheMean(cost=cost, ridge_window=ridge_window),
    )
