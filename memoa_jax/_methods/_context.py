"""What the loop and a method exchange at each step: `StepContext` (what the loop shares),
`MethodState` (what it carries for the method) and `OnePass` (a method's step inside the lean
loop's one visit of the agents)."""

from collections.abc import Callable
from typing import Any, NamedTuple

from .._agents import Population
from .._custom_types import Array, Float
from .._kernels import Kernels
from .._status import Status


class StepContext(NamedTuple):
    """What the loop shares with every method at step `t` (agent axis LAST, see `_agents`).

    Features: `features(agents, offset, slot=None)` is `Z_{t+offset}` (`−H ≤ offset ≤ 0`,
    zeros at negative times) of the agents in `agents`, a pytree of per-agent leaves (agent
    axis last) to pass through `map_chunks` / `vmap` with a method's other per-agent
    arrays, so that each chunk (or agent) reads or recomputes its own: the run's features
    source (`AbstractFeatures`, its `Features.src` and `Features.read`), the stored ring of
    the last `R = H + 1` draws, or, with `Simulation(state="lean")`, the agent indices from
    which the counter-based draws are recomputed. `slot`: the ring slot `(t + offset) mod R` when
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
