"""G1: FedMOE's greedy local ridge client (spec §7.2)."""

import equinox as eqx

from .._mean_field import CostParams
from ._base import AbstractMethod
from ._greedy import greedy_step


class LocalRidge(AbstractMethod):
    """G1: greedy local ridge (FedMOE's non-game client), `ŷ_{t+1} = ŷ_t + Z_t β^{ridge}_t`
    (`greedy_step`).

    Attributes:
        cost: its discount `alpha` and ridge weight `gamma` (spec §7.2).
        ridge_window: `T_c`, the past steps each agent's ridge fits.
        name: label of its results.
    """

    cost: CostParams
    ridge_window: int = eqx.field(static=True, default=3)
    name: str = eqx.field(static=True, default="g1_ridge")

    @property
    def needs_moments(self) -> bool:
        return False

    def step(self, ctx, state):
        return state.yhat, *greedy_step(ctx, state, state.yhat, self.cost, self.ridge_window)
