"""Progress meters: a run's progress reported on the host, between compiled segments of the
loop (`simulate(progress=...)`), never from inside the compiled program. The interface is
diffrax's `AbstractProgressMeter` (`init` / `step` / `close`), called from the host loop over
segments instead of through host callbacks inside the scan."""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx


class AbstractProgressMeter(eqx.Module):
    """Reports progress between segments. `segments`: how many segments a run is split
    into (each a call of the same compiled program; more segments, finer progress, one
    device-host synchronisation each)."""

    segments: eqx.AbstractVar[int]

    @abc.abstractmethod
    def init(self, n_steps: int) -> Any:
        """The meter's state before a run of `n_steps` steps."""

    @abc.abstractmethod
    def step(self, state: Any, done: int) -> Any:
        """`done` steps of the run have finished: report it, return the new state."""

    @abc.abstractmethod
    def close(self, state: Any) -> None:
        """The run has ended (finished or failed)."""


class NoProgressMeter(AbstractProgressMeter):
    """Reports nothing: the run is one segment."""

    segments: int = eqx.field(static=True, default=1)

    def init(self, n_steps: int) -> Any:
        del n_steps
        return None

    def step(self, state: Any, done: int) -> Any:
        del done
        return state

    def close(self, state: Any) -> None:
        del state


class CallbackProgressMeter(AbstractProgressMeter):
    """Calls `callback(t)` on the host for every finished step `t`, all the steps of a
    segment at once when it ends (e.g. `bar.update` of a progress bar per step)."""

    callback: Callable[[int], Any]
    segments: int = eqx.field(static=True, default=64)

    def __check_init__(self):
        if not isinstance(self.segments, int) or self.segments < 1:
            raise ValueError(f"segments must be a positive integer, got {self.segments!r}")

    def init(self, n_steps: int) -> Any:
        del n_steps
        return 0

    def step(self, state: Any, done: int) -> Any:
        for t in range(state, done):
            self.callback(t)
        return done

    def close(self, state: Any) -> None:
        del state
