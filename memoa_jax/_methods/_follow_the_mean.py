"""G4: every agent restarts from the population mean and adds its G1 step (spec §7.2)."""

import equinox as eqx
import jax.numpy as jnp

from .._mean_field import CostParams
from ._base import AbstractMethod
from ._greedy import greedy_step


class FollowTheMean(AbstractMethod):
    """G4: `ŷⁱ_{t+1} = ȳ_t + Zⁱ_t βⁱ` with the G1 step `βⁱ` (`greedy_step`; `ȳ_t` alone if
    `increment=False`).

    Attributes:
        cost: its discount `alpha` and ridge weight `gamma` (spec §7.2).
        ridge_window: `T_c` of the G1 step.
        increment: add the G1 step to the mean (True) or predict the mean alone.
        name: label of its results.
    """

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
        return base, *greedy_step(ctx, state, base, self.cost, self.ridge_window)
