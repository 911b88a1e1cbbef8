"""Where the loop's features come from (spec §7.1): one strategy, chosen once per run.

Every agent's features `Zⁱ_τ = enc_i(x_τ, wⁱ_τ)` are a pure function of the agent's
encoder parameters, its noise keys and `τ` (counter-based noise), so a step can either

* `StoredFeatures`: carry a ring of the last `R = H + 1` draws (`R × d × p` numbers per
  agent) and draw each step's features once, one step ahead; or
* `RecomputedFeatures`: carry nothing and recompute `Z_τ` from the agent's keys wherever a
  method reads it, chunk by chunk (`Simulation(state="lean")`, a stateless encoder).

Both give the same `Z_τ`. The step asks the source for `Features` once per step and hands
them to the methods through `StepContext`; it never branches on where they come from.
"""

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jax import lax

from ._agents import map_chunks
from ._custom_types import Array, Bool, Float
from ._encoders import AbstractEncoder
from ._kernels import Kernels, computed_once


class AgentDraws(NamedTuple):
    """Where the agents' draws come from: `src`, per-agent leaves (agent axis last) that go
    through `map_chunks` / `vmap` / sharding with the other per-agent arrays, and
    `draws(src_slice) -> (params, noise_keys)`. Stored: `src` holds the parameters (H2) and
    the noise keys, `draws` unpacks them. Lean: `src` is the agent indices and `draws` is
    `agent_draws`, recomputed where needed."""

    src: Any
    draws: Callable[[Any], tuple[Any, Array]]


class FeatureRing(NamedTuple):
    """What a features source carries between steps (None where it recomputes)."""

    ring: Float[Array, "R d p n"] | None  # R = H + 1 slots: times t−H..t (see StepContext)
    next: Float[Array, "d p n"] | None  # the features of the coming step, drawn one ahead


class Features(NamedTuple):
    """The features of one step `t`, as the methods read them (`StepContext.agents`,
    `StepContext.features`).

    `src`: per-agent leaves (agent axis last) to pass through `map_chunks` / `vmap` with a
    method's other per-agent arrays; `read(src, offset, slot=None)`: `Z_{t+offset}` of the
    agents of `src` (a tuple of offsets: the list of their features); `prev`: every agent's
    `Z_{t−1}` where it is at hand (stored; what a stateful encoder's moments need); `moved`:
    whether each agent's `Z_t` is nonzero, where it is at hand (stored), else None."""

    src: Any
    read: Callable[..., Any]
    prev: Float[Array, "d p n"] | None
    moved: Bool[Array, " n"] | None


class AbstractFeatures(eqx.Module):
    """A features source: `init(agents, n)` the carried `FeatureRing` before step 0, and
    `at(ring, agents, t) -> (Features, ring)` the features of step `t` and the ring after
    it, for the agents of `agents` (`AgentDraws`)."""

    @abc.abstractmethod
    def init(self, agents: AgentDraws, n: int) -> FeatureRing:
        """The carried ring before step 0, for `n` agents."""

    @abc.abstractmethod
    def at(self, ring: FeatureRing, agents: AgentDraws, t) -> tuple[Features, FeatureRing]:
        """The features of step `t`, and the ring to carry to step `t + 1`."""

    def method_kernels(self, kernels: Kernels) -> Kernels:
        """The tricks the methods run with when they read these features: all of `kernels`
        unless the source makes one of them pointless."""
        return kernels


class StoredFeatures(AbstractFeatures):
    """The ring of the last `ring_size` draws, each step's features drawn once, one step
    ahead: drawn inside the step, XLA would fuse the noise generation (threefry + erfinv)
    into every consumer and recompute it once per method. The only source for a stateful
    encoder (its `Z_t` reads `Z_{t−1}`)."""

    encoder: AbstractEncoder
    kernels: Kernels
    x: Float[Array, "time d_x"]
    ring_size: int = eqx.field(static=True)
    batch_size: int | None = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def draw(self, agents: AgentDraws, t, prev: Float[Array, "d p n"]) -> Float[Array, "d p n"]:
        """Every agent's `Z_t` (`prev`: every agent's `Z_{t−1}`, for a stateful encoder)."""
        enc = self.encoder

        def one(a, z):
            q, k = agents.draws(a)
            return enc.features(q, self.x[t], enc.noise(k, t, self.kernels), z)

        return map_chunks(one, agents.src, prev, batch_size=self.batch_size)

    def init(self, agents: AgentDraws, n: int) -> FeatureRing:
        d, p, R = self.encoder.d, self.encoder.p, self.ring_size
        zeros = jnp.zeros((d, p, n), self.dtype)
        return FeatureRing(jnp.zeros((R, d, p, n), self.dtype), self.draw(agents, 0, zeros))

    def at(self, ring: FeatureRing, agents: AgentDraws, t) -> tuple[Features, FeatureRing]:
        # Z_t was drawn last step; draw Z_{t+1} now. The ring takes step t first: written
        # before any read, it is updated in place (written after the reads, XLA:CPU copied
        # the whole feature ring twice per step).
        assert ring.ring is not None and ring.next is not None
        R, z_now = self.ring_size, ring.next
        z_next = self.draw(agents, t + 1, z_now)
        z_ring = ring_set(ring.ring, jnp.mod(t, R), z_now)

        def read(src, offset, slot=None):
            if isinstance(offset, tuple):
                slots = (None,) * len(offset) if slot is None else slot
                return [read(src, o, s) for o, s in zip(offset, slots)]
            return src[jnp.mod(t + offset, R) if slot is None else slot]

        prev = z_ring[jnp.mod(t - 1, R)]  # Z_{t−1} (zeros at t = 0: Z_{−1} = 0)
        moved = jnp.any(z_now != 0, axis=(0, 1))
        return Features(z_ring, read, prev, moved), FeatureRing(z_ring, z_next)


class RecomputedFeatures(AbstractFeatures):
    """`Z_τ` recomputed from the agent's parameters, noise keys and `τ` wherever a method
    reads it, inside its chunk (a stateless encoder): nothing carried."""

    encoder: AbstractEncoder
    kernels: Kernels
    x: Float[Array, "time d_x"]

    def __check_init__(self):
        if self.encoder.stateful:
            raise ValueError(
                f"{type(self.encoder).__name__} is stateful (its Z_t reads Z_(t-1)): its "
                "features cannot be recomputed from the counter; use StoredFeatures"
            )

    def of(self, q, k, tau) -> Float[Array, "d p *n"]:
        """The features `Z_τ` of the agents with parameters `q` and noise keys `k` (agent
        axis last; none for one agent, as a vmapped one-agent method reads them): zeros at
        `τ < 0`."""
        z = _features_at(self.encoder, self.kernels, q, k, self.x[jnp.maximum(tau, 0)], tau)
        return jnp.where(tau >= 0, z, jnp.zeros((), z.dtype))

    def init(self, agents: AgentDraws, n: int) -> FeatureRing:
        del agents, n
        return FeatureRing(None, None)

    def method_kernels(self, kernels: Kernels) -> Kernels:
        """Without `phases`: that trick reads a stored ring at static slots, and here there is
        no ring, so its phase branches would only repeat the draws (lean, 5 methods,
        N = 10⁶, float32: compiled in 16.8 s instead of 31.0 s and ran 14 % faster without
        them, `memoa bench --state lean --kernels both --tricks phases`)."""
        return kernels.without("phases")

    def at(self, ring: FeatureRing, agents: AgentDraws, t) -> tuple[Features, FeatureRing]:
        def read(src, offset, slot=None):
            del slot
            q, k = agents.draws(src)  # once for all the offsets read together

            def draw(q_, k_):
                at = lambda o: self.of(q_, k_, t + o)
                return [at(o) for o in offset] if isinstance(offset, tuple) else at(offset)

            # into memory before the methods' row expressions read them: fused into each,
            # XLA:CPU would repeat the draws once per read (`computed_once`)
            return computed_once(draw, q, k, live=t >= 0, apart=self.kernels.apart)

        return Features(agents.src, read, None, None), ring


def ring_set(ring: Array, slot, value: Array) -> Array:
    """`ring[slot] = value` as a dynamic-update-slice, in place in the scan carry when nothing
    reads the old ring afterwards (`.at[slot].set` is a scatter, which XLA:CPU made a select
    over the whole ring)."""
    return lax.dynamic_update_index_in_dim(ring, value, slot, 0)


@eqx.filter_jit
def _features_at(enc: AbstractEncoder, kernels: Kernels, q, k, x_t, tau):
    """The agents' features at time `tau` from their parameters and noise keys (lean). A
    nested jit: the lowered program holds the draws once per argument shape, as a function
    that XLA inlines before it fuses, not once per read (per offset and per ring phase)."""
    return enc.features(q, x_t, enc.noise(k, tau, kernels))
