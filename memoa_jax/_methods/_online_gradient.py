"""Online-gradient agents: the greedy learner a federated-learning user would try first.

Each agent keeps a readout `βⁱ` (the control of `ŷⁱ_{t+1} = ŷⁱ_t + Zⁱ_t βⁱ_t`, as in every
method here) and, at step `t`, once `y_t` is observed, takes one optax step on its own
one-step loss of the last prediction,

    ℓⁱ_t(β) = ‖y_t − ŷⁱ_{t−1} − Zⁱ_{t−1} β‖² + δ‖β‖²,        (G1's loss with T_c = 1, spec §7.2)

then predicts with the updated readout: `βⁱ_t = βⁱ_{t−1} + update(∇ℓⁱ_t)`,
`ŷⁱ_{t+1} = ŷⁱ_t + Zⁱ_t βⁱ_t`. Readouts start at 0; at `t = 0` the loss has no data
(`Zⁱ_{−1} = 0`) and its gradient is `2δβ = 0`. The update is written for one agent and
`vmap`ped (agent axis last); the readout and the optimiser state are the per-agent
`MethodState.extra`. No mean field, no server, no coupling: purely local.
"""

from typing import cast

import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
import optax

from .._agents import advance, map_agents
from .._custom_types import Array, Float
from .._mean_field import CostParams
from ._base import AbstractMethod
from ._context import StepContext

OPTIMIZERS = ("sgd", "adam")
EPS_ROOT = 1e-12


class OnlineGradient(AbstractMethod):
    """Per-agent online gradient descent on the one-step loss, with an optax optimiser.

    Attributes:
        cost: the cost weights (only for the common interface; the loss is the square error).
        optimizer: "sgd" (`optax.sgd`) or "adam" (`optax.adam`, defaults but
            `eps_root=1e-12`).
        learning_rate: the optimiser's step size (> 0; an array leaf, so it can be tuned).
        weight_decay: `δ ≥ 0`, the ridge weight of the one-step loss.
        name: label of its results.
    """

    cost: CostParams = CostParams()
    optimizer: str = eqx.field(static=True, default="sgd")
    learning_rate: Float[Array, ""] | float = 0.05
    weight_decay: Float[Array, ""] | float = 0.0
    ridge_window: int = eqx.field(static=True, default=1)
    name: str = eqx.field(static=True, default="ogd_sgd")

    def __check_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for k in ("learning_rate", "weight_decay"):
            v = getattr(self, k)
            if isinstance(v, jax.core.Tracer):
                continue
            if not (float(v) > 0 if k == "learning_rate" else float(v) >= 0):
                raise ValueError(f"{k} must be positive (decay: non-negative), got {k}={v!r}")
        if not isinstance(self.ridge_window, int) or self.ridge_window < 1:
            raise ValueError(f"ridge_window must be a positive integer, got {self.ridge_window!r}")

    def _opt(self) -> optax.GradientTransformation:
        if self.optimizer == "sgd":
            return optax.sgd(self.learning_rate)
        # eps_root keeps √v differentiable at v = 0 (the first, data-free step), so that
        # the learning rate can be tuned through the loop (optax's advice for meta-gradients)
        return optax.adam(self.learning_rate, eps_root=EPS_ROOT)

    @property
    def needs_moments(self) -> bool:
        return False

    @property
    def tunable(self) -> tuple[str, ...]:
        return ("learning_rate",)

    def init(self, n_agents, p, dtype):
        beta = jnp.zeros((p,), dtype)
        one = (beta, self._opt().init(beta))
        return jax.tree.map(lambda a: jnp.broadcast_to(a[..., None], a.shape + (n_agents,)), one)

    def step(self, ctx, state):
        return self.step_extra(ctx, state)[:3]

    def step_extra(self, ctx: StepContext, state):
        prev = jnp.mod(ctx.t - 1, ctx.ring_size)  # slot of time t−1 (zeros at t = 0)
        y_t = ctx.y[ctx.t]
        opt = self._opt()

        def agent(beta, opt_state, agent_src, base_prev, yhat):
            z_prev, z_now = ctx.features(agent_src, (-1, 0))

            def loss(b):
                r = y_t - advance(base_prev, z_prev, b)
                return jnp.sum(r**2) + self.weight_decay * jnp.sum(b**2)

            # optax's Adam raises its float decay to its int32 step count (bias correction):
            # an implicit promotion, so optax traces under standard promotion even when the
            # caller's is strict (the same numbers either way)
            with jax.numpy_dtype_promotion("standard"):
                updates, opt_state = opt.update(jax.grad(loss)(beta), opt_state, beta)
            beta = cast(Array, optax.apply_updates(beta, updates))  # stub: any pytree
            return beta, opt_state, advance(yhat, z_now, beta)

        beta, opt_state = state.extra
        assert state.yhat_ring is not None, "the online gradient reads its previous base state"
        beta, opt_state, y_next = map_agents(
            agent,
            beta,
            opt_state,
            ctx.agents,
            state.yhat_ring[prev],
            state.yhat,
            batch_size=ctx.batch_size,
        )
        return state.yhat, jnp.sum(beta**2, axis=0), y_next, (beta, opt_state)
