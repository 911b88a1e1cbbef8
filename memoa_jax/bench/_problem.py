"""The bench's problem (spec §10, FedMOE logistic defaults): H2 random-feature agents
(d = 1, p = 5, σ = .1), q = 1, λ = .5, γ = 15, α = 1e−4, T = T_c = 3, the constrained-ridge
server, all five methods (MEMOA, G1–G4) in one loop; and the bare policy step's inputs."""

from typing import TYPE_CHECKING

from .._encoders import RFNEncoder
from .._mean_field import CostParams
from .._methods import default_methods
from .._mixture import RidgeMixture
from .._simulation import Simulation

if TYPE_CHECKING:
    from .._kernels import Kernels

D, D_X, P, SIGMA = 1, 1, 5, 0.1
COST = dict(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
WINDOW = RIDGE_WINDOW = 3


def make_simulation(
    n_agents, n_steps, dtype, kernels: "str | Kernels" = "tuned", state="stored", carry_draws=False
):
    """The bench's simulation; `kernels`: "tuned", "plain" or a `Kernels`; `state`: "stored"
    or "lean"; `carry_draws`: the lean state's option (`Simulation.carry_draws`; the stored
    state carries its draws anyway, and ignores it)."""
    cost = CostParams(**COST)
    enc = RFNEncoder(d=D, d_x=D_X, p=P, sigma=SIGMA)
    methods = default_methods(cost, window=WINDOW, ridge_window=RIDGE_WINDOW)
    return Simulation(
        n_agents,
        enc,
        methods,
        RidgeMixture(),
        cost,
        "h2",
        dtype=dtype,
        kernels=kernels,
        state=state,
        carry_draws=carry_draws and state == "lean",
    )


def policy_bytes_per_agent(itemsize: int) -> int:
    """The policy step's bytes per agent: it reads `Z` (d·p numbers) and `ŷ` (d) and writes
    `ŷ'` (d)."""
    return (D * P + 2 * D) * itemsize


def bytes_per_agent(itemsize: int, steps: int, dtype, *, loop: bool) -> int:
    """The memory one agent of a bench point needs, a lower bound: the policy step's inputs
    and output and their NumPy copies, and with `loop` the loop's carry
    (`carry_bytes_per_agent`) at `steps` steps."""
    from .._loop import carry_bytes_per_agent

    per_agent = 2 * policy_bytes_per_agent(itemsize)
    if loop:
        per_agent += carry_bytes_per_agent(make_simulation(1, steps, dtype))
    return per_agent


def policy_inputs(n, dtype, seed=0):
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(seed)
    yhat = rng.standard_normal((D, n)).astype(dtype)
    z = np.maximum(rng.standard_normal((D, P, n)), 0).astype(dtype)
    K, L, g = (rng.standard_normal(s).astype(dtype) * 0.1 for s in ((P, D), (P, D), (P,)))
    return dict(
        yhat=jnp.asarray(yhat),
        z=jnp.asarray(z),
        K=jnp.asarray(K),
        L=jnp.asarray(L),
        g=jnp.asarray(g),
    )


def policy_step(yhat, z, K, L, g):
    """The decentralized MEMOA step of every agent: `ŷ' = ŷ + Z(Kŷ + Lȳ + g)` (the same
    `mean_field_update` every replay step of the loop runs)."""
    import jax.numpy as jnp

    from .._kernels import mean_field_update

    return mean_field_update(K, L, g, yhat, jnp.mean(yhat, axis=-1), z)
