"""The method protocol: what a client update rule gives the online loop, and what it asks of it.

A method is an `eqx.Module` (abstract/final, as diffrax's solvers): `init` gives its extra
per-agent state, `step` one step of every agent; the properties say what it needs from the
loop (`history`, `needs_moments`, `needs_agent_moments`, `ring_until`, `warm_up`) and what
`tune` may move (`tunable`). Everything else has a default that a simple method leaves alone.
"""

import abc
from typing import Any

import equinox as eqx

from .._custom_types import Array, Float
from .._kernels import Kernels
from .._status import RESULTS, Status
from ._context import MethodState, OnePass, StepContext


class AbstractMethod(eqx.Module):
    """A client update rule. `name` labels its results.

    A method implements `step(ctx, state) -> (base, ‖β‖², next prediction)`, per agent with
    the agent axis last (`StepContext`, `MethodState`), and says what it reads from the
    loop: `history` (how far back its features go), `needs_moments` (the population
    moments), `needs_agent_moments` (every agent's own exact moments). A method with state
    of its own (an optimiser's) gives it with `init` and returns its next value from
    `step_extra`; one whose step can fail reports it from `step_checked`.
    """

    name: eqx.AbstractVar[str]

    # WHAT THE METHOD NEEDS FROM THE LOOP

    @property
    def history(self) -> int:
        """How many past steps of features (and of its ring of base states,
        `MethodState.yhat_ring`) this method reads, at least 1. By default its
        `ridge_window` where it has one (what a method declared before `history` existed),
        else 1."""
        return getattr(self, "ridge_window", 1)

    @property
    def needs_moments(self) -> bool:
        """Whether this method reads the population moments (`StepContext.mom_M`,
        `mom_S`): the loop computes them if any of its methods does. True unless a method
        says otherwise, so that a new method that reads them never gets zeros."""
        return True

    @property
    def needs_agent_moments(self) -> bool:
        """Whether this method reads every agent's own exact moments
        (`StepContext.agent_moments`): only an encoder with closed-form moments has them."""
        return False

    @property
    def ring_until(self) -> int | None:
        """The step from which this method never reads its ring of past states
        (`MethodState.yhat_ring`) again, so that a lean loop can drop it; None: never."""
        return None

    @property
    def warm_up(self) -> int:
        """The steps before this method's own rule first plays (a game's window `T`): a
        series needs more prediction steps than this. 0: none."""
        return 0

    @property
    def tunable(self) -> tuple[str, ...]:
        """The continuous hyper-parameters `tune` may move for this method (fields of its
        `cost`, or its own array fields): by default `gamma` and `alpha` of a method with a
        `cost`, else none."""
        return ("gamma", "alpha") if hasattr(self, "cost") else ()

    # ITS STEP

    def init(self, n_agents: int, p: int, dtype) -> Any:
        """Initial per-agent state of a method that carries one (`MethodState.extra`,
        agent axis last), for `n_agents` agents with `p` features each; None by default
        (or what `init_extra`, its older name, gives)."""
        return self.init_extra(n_agents, p, dtype)

    def init_extra(self, n_agents: int, p: int, dtype) -> Any:
        """The older name of `init`, kept for methods that override it."""
        del n_agents, p, dtype
        return None

    @abc.abstractmethod
    def step(
        self, ctx: StepContext, state: MethodState
    ) -> tuple[Float[Array, "d n"], Float[Array, " n"], Float[Array, "d n"]]:
        """Return `(base state ŷ_t, control energy ‖β_t‖², next prediction ŷ_{t+1})`."""

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

    # ITS STEP INSIDE THE LEAN LOOP'S ONE PASS (optional)

    def fuses(self, kernels: Kernels) -> bool:
        """Whether this method has a `one_pass` form under `kernels` (static)."""
        del kernels
        return False

    def one_pass(self, ctx: StepContext, state: MethodState) -> OnePass | None:
        """This step as part of the lean loop's single pass over the agents (`OnePass`),
        or None where the method steps on its own (`step_checked`)."""
        del ctx, state
        return None
