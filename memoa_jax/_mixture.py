"""The server's online weighting of client predictions (spec §8).

At step `t` the server fits weights `w_t` to the clients' predictions `Ŷ_t` of the observed
`y_t`, then publishes `ŷ^srv_{t+1} = w_tᵀ Ŷ_{t+1}`.

* `RidgeMixture` (default; FedMOE `Server.compute_mixture_weights`):
  `w_t = argmin ‖y_t − Y_t w‖² + κ‖w‖²  s.t. 𝟙ᵀw = η`, `Y_t = [ŷ¹_t … ŷᴺ_t] ∈ ℝ^{d×N}`,
  in O(N d²) by the push-through identity: `C = (κ I_d + Y Yᵀ)⁻¹`, `a = YᵀC y`,
  `c = (𝟙 − YᵀC Y 𝟙)/κ`, `w = a − ((𝟙ᵀa − η)/𝟙ᵀc) c`. The server prediction needs only
  d×d reductions over agents, so the N weights are never formed.
* `HedgeMixture` (option, reconstructed): exponentially weighted average forecaster
  `w_{t,i} ∝ exp(−η_E Σ_{u≤t} ‖y_u − ŷⁱ_u‖²)`, log-sum-exp stabilised (Cesa-Bianchi & Lugosi
  2006, Prop. 3.1: exp-concave square loss on [−B, B]^d with `η_E = 1/(8B²)`).
"""

import abc
from typing import Any

import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
from jax import lax

from ._agents import Population
from ._custom_types import Array, Float


def _f64(x):
    return x.astype(jnp.float64) if jax.config.read("jax_enable_x64") else x


def _push_through(Y: Float[Array, "d n"], kappa, pop: Population | None = None, s=None):
    """`C = (κI + YYᵀ)⁻¹`, `s = Y𝟙` and `𝟙ᵀc = (n − sᵀCs)/κ`, the d×d pieces of §8 (`s`
    given: summed by the caller with its other sums).

    `𝟙ᵀc` is formed as `n / (κ(1 + n ȳᵀA⁻¹ȳ))` with the centred `A = κI + ỸỸᵀ`
    (Sherman–Morrison on `κI + YYᵀ = A + n ȳȳᵀ`): the direct difference loses
    `log10(n‖ŷ‖²/κ)` digits when the clients agree, as they do in a large population.
    """
    pop = Population(Y.shape[1]) if pop is None else pop
    d, n = Y.shape[0], jnp.asarray(pop.n, Y.dtype)
    Y = pop.zero_padding(Y)
    ybar = (pop.sum(Y) if s is None else s) / n
    Yc = pop.zero_padding(Y - ybar[:, None])
    A = kappa * jnp.eye(d, dtype=Y.dtype) + pop.total(Yc @ Yc.T)
    C = jnp.linalg.inv(A + n * jnp.outer(ybar, ybar))
    sum_c = n / (kappa * (1.0 + n * ybar @ jnp.linalg.solve(A, ybar)))
    return C, n * ybar, sum_c


class AbstractServer(eqx.Module):
    """A server rule with its own state, in a solver's protocol (diffrax's `init`/`step`):
    `init` gives the state before step 0, `step` predicts `y_{t+1}` and gives the state
    after step `t`. The loop carries one state per method (`SimCarry.state.server`), beside
    the metrics and saved with the carry by `save_checkpoint`; it is replicated, not split
    across devices, so it should not grow with the population. A rule with no state of its
    own subclasses `AbstractStatelessServer` and writes `predict` only."""

    @abc.abstractmethod
    def init(self, d: int, dtype) -> Any:
        """The server's state before step 0, for targets of dimension `d` (the clients'
        predictions have type `dtype`)."""

    @abc.abstractmethod
    def step(
        self,
        state: Any,
        Y_t: Float[Array, "d n"],
        y_t: Float[Array, " d"],
        Y_next: Float[Array, "d n"],
        cum_loss: Float[Array, " n"],
        pop: Population,
    ) -> tuple[Float[Array, " d"], Any]:
        """The server's prediction of `y_{t+1}` and its state after step `t`, from its
        state before, the clients' predictions `Y_t = [ŷ¹_t … ŷᴺ_t]` of `y_t` and `Y_next`
        of `y_{t+1}`; `cum_loss[i] = Σ_{u≤t} ‖y_u − ŷⁱ_u‖²` (the clients' losses so far,
        which the loop keeps for the metrics); the clients are the real agent slots of
        `pop`: means and sums over them go through `pop` (across devices, all-reduces)."""


class AbstractStatelessServer(AbstractServer):
    """A server rule whose prediction is a function of the step's inputs alone (no state:
    `init` gives None)."""

    @abc.abstractmethod
    def predict(
        self,
        Y_t: Float[Array, "d n"],
        y_t: Float[Array, " d"],
        Y_next: Float[Array, "d n"],
        cum_loss: Float[Array, " n"],
        pop: Population,
    ) -> Float[Array, " d"]:
        """Server prediction of `y_{t+1}` (the arguments are `AbstractServer.step`'s)."""

    def init(self, d: int, dtype) -> None:
        del d, dtype

    def step(self, state, Y_t, y_t, Y_next, cum_loss, pop):
        return self.predict(Y_t, y_t, Y_next, cum_loss, pop), state


class RidgeMixture(AbstractStatelessServer):
    """Constrained ridge weights (spec §8), O(N d²).

    Attributes:
        kappa: ridge κ > 0 (κ → ∞ gives the uniform weights η/N).
        eta: the weights' sum η.
    """

    kappa: Float[Array, ""] | float = 1.0
    eta: Float[Array, ""] | float = 1.0

    def __check_init__(self):
        if not isinstance(self.kappa, jax.core.Tracer) and not float(self.kappa) > 0:
            raise ValueError(f"server ridge must be positive, got kappa={self.kappa}")

    def predict(self, Y_t, y_t, Y_next, cum_loss, pop):
        del cum_loss
        Y, Yn, y = pop.zero_padding(_f64(Y_t)), pop.zero_padding(_f64(Y_next)), _f64(y_t)
        # Ŷ_t 𝟙, Ŷ_{t+1} Ŷ_tᵀ (d×d) and Ŷ_{t+1} 𝟙: across devices, one all-reduce of all
        sums = pop.total((jnp.sum(Y, axis=1), Yn @ Y.T, jnp.sum(Yn, axis=1)))
        sum_Y, cross, sum_next = sums
        C, s, sum_c = _push_through(Y, self.kappa, pop, sum_Y)
        sum_a = s @ C @ y  # 𝟙ᵀa
        nu = (sum_a - self.eta) / sum_c
        # Ŷ_{t+1} w = Ŷ_{t+1} a − ν Ŷ_{t+1} c, each through d×d reductions only
        pred = cross @ C @ y - nu * (sum_next - cross @ C @ s) / self.kappa
        return pred.astype(Y_next.dtype)


def ridge_weights(Y: Float[Array, "d n"], y: Float[Array, " d"], kappa, eta) -> Float[Array, " n"]:
    """The N constrained-ridge weights themselves, O(N d²) (spec §8); `Y = [ŷ¹ … ŷᴺ]`."""
    C, s, _ = _push_through(Y, kappa)
    a = Y.T @ (C @ y)
    c = (1.0 - Y.T @ (C @ s)) / kappa
    return a - ((jnp.sum(a) - eta) / jnp.sum(c)) * c  # sums exactly to η


def ridge_weights_dense(
    Y: Float[Array, "d n"], y: Float[Array, " d"], kappa, eta
) -> Float[Array, " n"]:
    """FedMOE's O(N³) closed form, kept as the reference: `A = 2(YᵀY + κI)`, `b = 2Yᵀy`,
    `ν = (𝟙ᵀA⁻¹b − η)/(𝟙ᵀA⁻¹𝟙)`, `w = A⁻¹(b − ν𝟙)`."""
    n = Y.shape[1]
    A = 2.0 * (Y.T @ Y + kappa * jnp.eye(n, dtype=Y.dtype))
    b = 2.0 * Y.T @ y
    ones = jnp.ones(n, Y.dtype)
    Ainv_b, Ainv_1 = jnp.linalg.solve(A, b), jnp.linalg.solve(A, ones)
    nu = (ones @ Ainv_b - eta) / (ones @ Ainv_1)
    return Ainv_b - nu * Ainv_1


class HedgeMixture(AbstractStatelessServer):
    """Exponentially weighted average of the clients (option; spec §8, A10).

    Attributes:
        rate: learning rate η_E > 0 of `w_i ∝ exp(−η_E · cumulative square loss_i)`.
    """

    rate: Float[Array, ""] | float = 1.0

    def __check_init__(self):
        if not isinstance(self.rate, jax.core.Tracer) and not float(self.rate) > 0:
            raise ValueError(f"hedge learning rate must be positive, got rate={self.rate}")

    def predict(self, Y_t, y_t, Y_next, cum_loss, pop):
        del Y_t, y_t
        # `jax.nn.softmax` over the agents, written with `pop`'s reductions (across devices,
        # a max, a sum and the weighted sum, each an all-reduce of a few numbers)
        logits = pop.fill_padding(-self.rate * _f64(cum_loss), -jnp.inf)
        e = jnp.exp(logits - lax.stop_gradient(pop.max(logits)))
        w = e / pop.sum(e)
        return pop.total(_f64(Y_next) @ w).astype(Y_next.dtype)
