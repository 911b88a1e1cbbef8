"""Runtime checks without host callbacks: a status carried through the compiled loop.

A check that depends on array values (a singular system inside the loop) is recorded as a
`Status` (a `RESULTS` code and its numbers) in the loop's carry and outputs, and raised on the
host after the run, or after the segment where it failed, as a `SimulationError` (diffrax's
`RESULTS` idiom). The compiled loop then holds no host callback: it runs on any backend,
lowers for any platform (`jax.export`) and needs no device-host round trip per step.
Outside the loop (`solve_mean_field`, `solve_fne_reduced` called on their own) the same
messages are raised by `eqx.error_if`.
"""

import enum
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Int

from ._custom_types import Array


class SimulationError(RuntimeError):
    """A runtime check of the compiled loop failed (e.g. a singular system): raised on the
    host after the run with the check's own message. `status` holds its code and numbers
    (`status.step`: the loop step where it failed first)."""

    def __init__(self, message: str, status: "Status | None" = None):
        super().__init__(message)
        self.status = status


class RESULTS(enum.IntEnum):
    """What a run's runtime checks found (`Status.code`); `message` formats each."""

    successful = 0
    singular_mean_field = 1
    singular_nash = 2
    no_agents = 3

    def message(self, s: int = 0, T: int = 0) -> str:
        """The readable message, with the window step `s` of a window of length `T`."""
        return _MESSAGES[self].format(s=s, T=T)


_SINGULAR = (
    "{name} is singular at window step s={{s}} (of T={{T}}): the {eq} equilibrium is not unique "
    "for these weights/moments; change lam, gamma or the features"
)
_MESSAGES = {
    RESULTS.successful: "",
    RESULTS.singular_mean_field: _SINGULAR.format(
        name="R̃ (mean-field response matrix)", eq="mean-field"
    ),
    RESULTS.singular_nash: _SINGULAR.format(
        name="the N-player Nash system matrix X_A or X_A + N Y_A", eq="N-player Nash"
    ),
    RESULTS.no_agents: "the number of agents must be at least 1",
}


def _int(value) -> Array:
    return jnp.asarray(value, jnp.int32)


class Status(eqx.Module):
    """The outcome of the runtime checks so far: a `RESULTS` code (0: successful) with the
    window step `s` and window length `T` its message names, and the loop step `step` where
    it happened first (−1 outside the loop). A pytree of int32 scalars (with leading axes
    where it was vmapped)."""

    code: Int[Array, "*b"]
    s: Int[Array, "*b"]
    T: Int[Array, "*b"]
    step: Int[Array, "*b"]

    @classmethod
    def ok(cls) -> "Status":
        return cls(_int(RESULTS.successful), _int(0), _int(0), _int(-1))

    @classmethod
    def failed_if(cls, pred, code: RESULTS, s: int | Array = 0, T: int | Array = 0) -> "Status":
        """`code` (with `s`, `T`) where `pred`, else successful."""
        return cls(
            jnp.where(pred, _int(code), _int(RESULTS.successful)), _int(s), _int(T), _int(-1)
        )

    @property
    def failed(self) -> Array:
        return self.code != _int(RESULTS.successful)

    def then(self, later: "Status") -> "Status":
        """The first failure: this one if it failed, else `later`."""
        return jax.tree.map(lambda a, b: jnp.where(self.failed, a, b), self, later)

    def at_step(self, t) -> "Status":
        """This status, dated at loop step `t` if it failed and has no step yet."""
        return eqx.tree_at(lambda s: s.step, self, jnp.where(self.step < 0, _int(t), self.step))

    def first_of_batch(self, where=None) -> "Status":
        """A batched status (e.g. one per agent, from `vmap`) reduced to its first failure;
        `where` (bool, the batch's shape): the entries that count (e.g. not padding slots),
        the others taken as successful."""
        status = self
        if where is not None:
            ok = jax.tree.map(lambda a: jnp.broadcast_to(a, where.shape), Status.ok())
            status = jax.tree.map(lambda a, b: jnp.where(where, a, b), self, ok)
        flat = jax.tree.map(jnp.ravel, status)
        i = jnp.argmax(flat.failed)
        return jax.tree.map(lambda a: a[i], flat)

    def message(self) -> str:
        """The readable message (on the host, of a concrete status; "" if successful)."""
        code, s, T = (int(np.asarray(a)) for a in (self.code, self.s, self.T))
        return RESULTS(code).message(s, T)

    def raise_if_failed(self) -> None:
        """Raise `SimulationError` with the check's message if it failed (on the host)."""
        if bool(np.asarray(self.failed)):
            raise SimulationError(self.message(), self)

    def error_if(self, x, cases: Sequence[tuple[RESULTS, int]]):
        """`x`, raising the check's message under a trace (`eqx.branched_error_if`, a host
        callback: use only outside the compiled loop). `cases`: the `(code, T)` pairs the
        status can hold, whose messages are built when tracing."""
        msgs, index = [""], jnp.zeros((), jnp.int32)
        for code, T in dict.fromkeys(cases):
            windowed = code in (RESULTS.singular_mean_field, RESULTS.singular_nash)
            Ts = range(T) if windowed else range(1)
            here = (self.code == _int(code)) & ((self.T == _int(T)) if windowed else True)
            index = jnp.where(here, len(msgs) + jnp.clip(self.s, 0, len(Ts) - 1), index)
            msgs += [code.message(s, T) for s in Ts]
        return eqx.branched_error_if(x, self.failed & (index > 0), index, msgs)
