"""MEMOA: the closed-form decentralized mean-field policy replayed over a hindsight window
(spec §4, §7.1).

Every `sync_every` steps once `t ≥ T`, the window gains of the last `T` steps are solved
(independent of N, `_equilibria`) and the window is replayed in hindsight with each agent's
realized features, from the observed `y_{t−T}`, each agent using only its own state and the
broadcast mean field `ȳ`; the reading (`_readings`) gives the next prediction. Before the
first sync it runs the greedy ridge update (`greedy_step`). G2 (`window=1`) and G3
(`lam=0`) are instances of it, and so is the centralized comparator
(`equilibrium="nash"`: the exact N-player feedback Nash gains of the window in place of the
mean-field ones).
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jax import lax

from .._custom_types import Array
from .._kernels import Kernels, advance_rows, control_rows, energy_rows, rows
from .._mean_field import CostParams
from .._status import RESULTS, Status
from ._base import AbstractMethod
from ._context import OnePass, StepContext
from ._equilibria import (
    AbstractEquilibrium,
    AbstractMeanField,
    AbstractMoments,
    MeanFieldEquilibrium,
    PopulationMoments,
    RealizedMean,
)
from ._greedy import greedy_step
from ._readings import (
    AbstractReplayBase,
    AbstractReplayControl,
    Replay,
    ReplayControl,
    ReplayEnd,
)
from ._registry import EQUILIBRIA, MEAN_FIELDS, MOMENTS, REPLAY_BASES, REPLAY_CONTROLS, Registry


def _strategy(registry: Registry, kind: type) -> Callable[[Any], Any]:
    """A field converter: a name of `registry` to its strategy, a strategy (an instance of
    `kind`) as it is; anything else is refused with the names allowed."""

    def convert(value):
        if isinstance(value, kind):
            return value
        if isinstance(value, str) and value in registry:
            return registry[value]()
        raise ValueError(
            f"{registry.kind} must be one of {', '.join(map(repr, registry))}, "
            f"got {registry.kind}={value!r}"
        )

    return convert


def _name(registry: Registry, strategy) -> str:
    """The registry name of `strategy` (its class name where it has none)."""
    names = [n for n in registry if type(strategy) is registry[n]]
    return names[0] if names else type(strategy).__name__


class MeanFieldGame(AbstractMethod):
    """MEMOA: the closed-form decentralized mean-field policy replayed over a hindsight window.

    Each strategy option takes its name (a string, as listed) or the strategy itself.

    Attributes:
        cost: the per-agent cost (spec §3); `lam=0` gives G3 (independent agents).
        window: game window `T` (`window=1` gives G2, the myopic mean-field policy).
        sync_every: play the game every this many steps (FedMOE `game_sync_freq`).
        ridge_window: `T_c` of the greedy warm-up used before the first sync.
        mean_field: "realized" (`RealizedMean`) — agents use the broadcast empirical mean
            ȳ_s (default, A5); "flow" (`FlowMean`) — they use the deterministic flow m_s
            (no communication inside the window).
        equilibrium: "mean_field" (`MeanFieldEquilibrium`) — the decentralized policy
            (K, L, g) of the N = ∞ limit (MEMOA); "nash" (`NashEquilibrium`) — the
            centralized comparator of spec §7.1 b: the exact symmetric feedback Nash
            equilibrium (K^N, L^N, h^N) of the N-player window game for the actual N
            (`memoa_jax.nash.solve_fne_reduced`, O(1) in N), with realized ȳ.
        replay_base, replay_control: how the window's solution is used online at a sync step
            `t` (a reconstructed choice: the paper does not say; docs "readings"). The next
            prediction is `base + Z_t β` with
            - base "replay_end" (`ReplayEnd`, default, FedMOE's `Server.fit`): the replay's
              end `ŷ^rep_T`; "observed" (`ObservedBase`): the observation `y_t`; "own"
              (`OwnBase`): the agent's previous prediction `ŷ_t`;
            - control "replay" (`ReplayControl`, default): the replay's last control
              `β^rep_{T−1}`; "gains" (`GainsControl`): the window's last gains applied to
              the base, `β = K_{T−1} base + L_{T−1} mean(base) + g_{T−1}` (no replay is
              needed unless the base is the replay's end).
        moments: "population" (`PopulationMoments`) — one set of gains from the population
            moments (spec §2.2, H2); "own" (`OwnMoments`) — FedMOE's reading: each agent
            solves the window game with its own exact RFN moments (per-agent gains
            `(Kⁱ, Lⁱ, gⁱ)`, O(N T p³) per sync, still decentralized: agent i needs only its
            own encoder and the broadcast ȳ). RFN only.
        gains_solver: the centralized gains `(M, S, y, cost, n) -> (K, L, h, status)` for
            `equilibrium="nash"`, given by the caller (`memoa_jax.nash.fne_gains`): the core
            does not depend on `nash/`. `status`: the `Status` of its runtime checks (a
            solver returning `(K, L, h)` alone is taken as unchecked).
    """

    cost: CostParams
    window: int = eqx.field(static=True, default=3)
    sync_every: int = eqx.field(static=True, default=1)
    ridge_window: int = eqx.field(static=True, default=3)
    mean_field: AbstractMeanField = eqx.field(
        static=True, default=RealizedMean(), converter=_strategy(MEAN_FIELDS, AbstractMeanField)
    )
    equilibrium: AbstractEquilibrium = eqx.field(
        static=True,
        default=MeanFieldEquilibrium(),
        converter=_strategy(EQUILIBRIA, AbstractEquilibrium),
    )
    name: str = eqx.field(static=True, default="memoa")
    replay_base: AbstractReplayBase = eqx.field(
        static=True,
        default=ReplayEnd(),
        converter=_strategy(REPLAY_BASES, AbstractReplayBase),
    )
    replay_control: AbstractReplayControl = eqx.field(
        static=True,
        default=ReplayControl(),
        converter=_strategy(REPLAY_CONTROLS, AbstractReplayControl),
    )
    moments: AbstractMoments = eqx.field(
        static=True, default=PopulationMoments(), converter=_strategy(MOMENTS, AbstractMoments)
    )
    gains_solver: Callable | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        for k in ("window", "sync_every", "ridge_window"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {k}={v!r}")
        equilibrium = f"equilibrium={_name(EQUILIBRIA, self.equilibrium)!r}"
        flow = not self.mean_field.realized
        mean_field = f"mean_field={_name(MEAN_FIELDS, self.mean_field)!r}"
        if flow and not self.equilibrium.has_flow:
            raise ValueError(
                f"{equilibrium} plays the N-player feedback equilibrium on the realized ȳ; "
                f"it has no deterministic flow, got {mean_field}"
            )
        if self.moments.per_agent and not self.equilibrium.takes_own_moments:
            raise ValueError(
                f"{equilibrium} is the symmetric N-player equilibrium of the population "
                f"moments, got moments={_name(MOMENTS, self.moments)!r}"
            )
        if self.moments.per_agent and flow:
            raise ValueError(
                f"moments='own' plays each agent's own gains on the realized ȳ, got {mean_field}"
            )
        if self.equilibrium.needs_gains_solver and self.gains_solver is None:
            raise ValueError(
                f"{equilibrium} needs gains_solver=memoa_jax.nash.fne_gains (or use "
                "memoa_jax.nash.centralized_method)"
            )

    @property
    def options(self) -> dict[str, str]:
        """The names of its strategies (what `memoa_jax.reference` records): e.g.
        `{"mean_field": "realized", "equilibrium": "mean_field", "replay_base":
        "replay_end", "replay_control": "replay", "moments": "population"}` (a strategy
        with no registry name: its class name)."""
        registries = (MEAN_FIELDS, EQUILIBRIA, REPLAY_BASES, REPLAY_CONTROLS, MOMENTS)
        return {r.kind: _name(r, getattr(self, r.kind)) for r in registries}

    @property
    def history(self) -> int:
        return max(self.window, self.ridge_window)

    @property
    def needs_agent_moments(self) -> bool:
        return self.moments.per_agent

    @property
    def ring_until(self) -> int | None:
        # syncing at every step from t = window on: no greedy step, no ring, after it
        return self.window if self.sync_every == 1 else None

    @property
    def warm_up(self) -> int:
        return self.window

    @property
    def tunable(self) -> tuple[str, ...]:
        # G3 (lam = 0 by definition) keeps its lam
        return ("lam", "gamma", "alpha") if float(self.cost.lam) != 0.0 else ("gamma", "alpha")

    def gains(self, ctx: StepContext):
        """Gains `(K, L, g)` and flow `m` for the window `τ = t−T..t` (float64 when enabled),
        with the window's targets and the `Status` of the solve. With `moments="own"` the
        gains have a trailing agent axis (`K: (T, p, d, 1, N)`, `g: (T, p, 1, N)`,
        `m: (T + 1, d, 1, N)`)."""
        T = self.window
        yw = lax.dynamic_slice_in_dim(ctx.y, ctx.t - T, T + 1).astype(ctx.mom_M.dtype)
        solve = self.equilibrium.solver(self.cost, self.gains_solver, yw, ctx.pop)
        gains, status = self.moments.gains(solve, ctx, T)
        return gains, yw, status

    def replay(self, ctx: StepContext, state):
        """A sync step: the hindsight re-simulation of the window (spec §7.1 c, `Replay`)
        from the observed `y_{t−T}` with each agent's realized features, then the next
        prediction from the reading's base and control (see the class docstring): returns
        `(base, ‖β‖², base + Z_t β, status)` (`status`: the gains' `Status`)."""
        gains, yw, status = self.gains(ctx)
        replay = Replay(
            ctx,
            state,
            gains,
            yw,
            T=self.window,
            mean_field=self.mean_field,
            per_agent=self.moments.per_agent,
        )
        base, energy, nxt = self.replay_control.read(self.replay_base, replay)
        return base, energy, nxt, status

    ONE_PASS_UP_TO = 3
    """The longest window whose replay means `one_pass` writes from feature statistics."""

    def fuses(self, kernels: Kernels) -> bool:
        return (
            kernels.onepass
            and self.sync_every == 1
            and self.window <= self.ONE_PASS_UP_TO
            and self.replay_control.fuses_with(self.replay_base)
            and not self.moments.per_agent
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
        ybar = self.mean_field.replay_means(
            lambda: self.replay_means(ctx, K, L, g, y0), m, T
        )  # fmt: skip
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
        warm_up = lambda: (
            state.yhat,
            *greedy_step(ctx, state, state.yhat, self.cost, self.ridge_window),
            Status.ok(),
        )
        base, energy, nxt, status = lax.cond(is_sync, lambda: self.replay(ctx, state), warm_up)
        return base, energy, nxt, state.extra, status

    @property
    def checks(self) -> tuple[tuple[RESULTS, int], ...]:
        """The `(code, window)` pairs its `Status` can hold (`Status.error_if`)."""
        return self.equilibrium.checks(self.window)

    def step(self, ctx, state):
        """`step_checked`'s prediction, raising a failed check (`eqx.error_if`: a host
        callback; the loop calls `step_checked`)."""
        base, energy, nxt, _, status = self.step_checked(ctx, state)
        return status.error_if((base, energy, nxt), self.checks)
