"""How a game's window gains are solved, as strategies of `MeanFieldGame` (spec §4, §7.1).

* the equilibrium — `MeanFieldEquilibrium`: the decentralized policy `(K, L, g)` of the
  N = ∞ limit, with its flow `m` (MEMOA); `NashEquilibrium`: the centralized comparator of
  spec §7.1 b, the exact symmetric feedback Nash equilibrium `(K^N, L^N, h^N)` of the
  N-player window game for the actual N (its solver given by the caller, no flow);
* the moments they are solved from — `PopulationMoments`: one set of gains from the
  population's (spec §2.2, H2); `OwnMoments`: each agent's own exact moments (FedMOE's
  reading, per-agent gains);
* the mean field the agents play against in the replay — `RealizedMean`: the broadcast
  empirical mean `ȳ_s` (A5); `FlowMean`: the deterministic flow `m_s`.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._agents import Population
from .._custom_types import Array
from .._mean_field import CostParams, solve_mean_field_status
from .._status import RESULTS, Status
from ._context import StepContext

Gains = tuple[Array, Array, Array, Array]  # (K, L, g, m)
Solve = Callable[[Array, Array], tuple[Gains, Status]]  # (M, S) of a window -> gains


class AbstractEquilibrium(eqx.Module):
    """Which equilibrium of the window game the agents play."""

    @abc.abstractmethod
    def solver(
        self, cost: CostParams, gains_solver: Callable | None, yw: Array, pop: Population
    ) -> Solve:
        """The gains `(K, L, g, m)` and their `Status` from the moments `(M, S)` of the
        window whose targets are `yw`, for the cost weights `cost` (`gains_solver`: the
        game's, see `NashEquilibrium`)."""

    @abc.abstractmethod
    def checks(self, window: int) -> tuple[tuple[RESULTS, int], ...]:
        """The `(code, window)` pairs its `Status` can hold."""

    @property
    @abc.abstractmethod
    def has_flow(self) -> bool:
        """Whether it has a deterministic mean-field flow `m` (`FlowMean` needs one)."""

    @property
    @abc.abstractmethod
    def needs_gains_solver(self) -> bool:
        """Whether the game's `gains_solver` solves it (the core does not depend on
        `nash/`)."""

    @property
    @abc.abstractmethod
    def takes_own_moments(self) -> bool:
        """Whether each agent may solve it from its own moments (`OwnMoments`); the
        symmetric N-player equilibrium is one of the population moments."""


class MeanFieldEquilibrium(AbstractEquilibrium):
    """MEMOA: the closed-form decentralized mean-field gains and flow (`solve_mean_field`)."""

    def solver(self, cost, gains_solver, yw, pop):
        del gains_solver, pop

        def solve(M, S):
            sol, status = solve_mean_field_status(M, S, yw, cost)
            return (sol.K, sol.L, sol.g, sol.m), status

        return solve

    def checks(self, window):
        return ((RESULTS.singular_mean_field, window),)

    @property
    def has_flow(self) -> bool:
        return True

    @property
    def needs_gains_solver(self) -> bool:
        return False

    @property
    def takes_own_moments(self) -> bool:
        return True


class NashEquilibrium(AbstractEquilibrium):
    """The centralized comparator (spec §7.1 b): the exact N-player feedback Nash gains of
    the window, from the game's `gains_solver` (`memoa_jax.nash.fne_gains`: the core does
    not depend on `nash/`), played on the realized `ȳ`."""

    def solver(self, cost, gains_solver, yw, pop):
        assert gains_solver is not None  # checked in MeanFieldGame.__check_init__

        def solve(M, S):
            K, L, h, *checked = gains_solver(M, S, yw, cost, pop.n)
            status = checked[0] if checked else Status.ok()
            return (K, L, h, jnp.zeros_like(yw)), status  # no flow: realized ȳ

        return solve

    def checks(self, window):
        return ((RESULTS.singular_nash, window), (RESULTS.no_agents, 0))

    @property
    def has_flow(self) -> bool:
        return False

    @property
    def needs_gains_solver(self) -> bool:
        return True

    @property
    def takes_own_moments(self) -> bool:
        return False


class AbstractMoments(eqx.Module):
    """Whose moments the window's gains are solved from."""

    @abc.abstractmethod
    def gains(self, solve: Solve, ctx: StepContext, window: int) -> tuple[Gains, Status]:
        """The window's gains (`solve` of its moments) and their `Status`."""

    @property
    @abc.abstractmethod
    def per_agent(self) -> bool:
        """Whether the gains have a trailing agent axis (`(…, 1, N)`)."""


class PopulationMoments(AbstractMoments):
    """One set of gains from the population moments of the window (`StepContext.mom_M`,
    `mom_S`)."""

    def gains(self, solve, ctx, window):
        slots = jnp.mod(ctx.t - window + jnp.arange(window), ctx.ring_size)
        return solve(ctx.mom_M[slots], ctx.mom_S[slots])

    @property
    def per_agent(self) -> bool:
        return False


class OwnMoments(AbstractMoments):
    """FedMOE's reading: each agent solves the window game with its own exact moments
    (`StepContext.agent_moments`, RFN only), O(N T p³) per sync, still decentralized: agent
    i needs only its own encoder and the broadcast `ȳ`. The gains have a trailing agent
    axis (`K: (T, p, d, 1, N)`, `g: (T, p, 1, N)`, `m: (T + 1, d, 1, N)`)."""

    def gains(self, solve, ctx, window):
        if ctx.agent_moments is None:
            raise ValueError("moments='own' needs an encoder with closed-form moments (RFN)")
        M, S = jax.vmap(ctx.agent_moments)(ctx.t - window + jnp.arange(window))
        gains, status = jax.vmap(solve, in_axes=-1, out_axes=-1)(M, S)
        own = lambda a: jnp.expand_dims(a, -2)  # (..., N) -> (..., 1, N): rows broadcast
        K, L, g, m = gains
        return (own(K), own(L), own(g), own(m)), status.first_of_batch(ctx.pop.mask())

    @property
    def per_agent(self) -> bool:
        return True


class AbstractMeanField(eqx.Module):
    """The mean field the agents play against in the window's replay."""

    @abc.abstractmethod
    def mean(self, pop: Population, yhat: Array, flow: Array, s) -> Array:
        """`ȳ_s` of the replay's states `yhat` at window step `s` (`flow`: `m`)."""

    @abc.abstractmethod
    def replay_means(
        self, realized: Callable[[], list[Array]], flow: Array, window: int
    ) -> list[Array]:
        """The replay's means `ȳ_s`, `s < T` (`realized()`: those of the replay's states,
        computed without visiting the agents, `MeanFieldGame.replay_means`)."""

    @property
    @abc.abstractmethod
    def realized(self) -> bool:
        """Whether it is the broadcast empirical mean (every equilibrium has one)."""


class RealizedMean(AbstractMeanField):
    """The broadcast empirical mean `ȳ_s` of the replay's states (A5, the default)."""

    def mean(self, pop, yhat, flow, s):
        del flow, s
        return pop.mean(yhat)

    def replay_means(self, realized, flow, window):
        del flow, window
        return realized()

    @property
    def realized(self) -> bool:
        return True


class FlowMean(AbstractMeanField):
    """The deterministic flow `m_s` (no communication inside the window)."""

    def mean(self, pop, yhat, flow, s):
        del pop, yhat
        return flow[s]

    def replay_means(self, realized, flow, window):
        del realized
        return [flow[s] for s in range(window)]

    @property
    def realized(self) -> bool:
        return False
