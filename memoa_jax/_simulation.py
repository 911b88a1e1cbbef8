"""The configuration of a run: `Simulation` (everything but the data and the key) and the
checks of the data against it."""

import equinox as eqx
import jax
import jax.numpy as jnp

from ._encoders import AbstractEncoder
from ._kernels import Kernels, as_kernels
from ._mean_field import CostParams
from ._methods import AbstractMethod
from ._mixture import AbstractServer, RidgeMixture


def solve_dtype():
    """Window moments and gains are kept in float64 whenever JAX allows it (spec §13)."""
    return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


class Simulation(eqx.Module):
    """Everything that defines a run except the data and the key.

    Attributes:
        n_agents: population size N.
        encoder: the agents' random-feature encoder: `RFNEncoder` (stateless) or
            `ESNEncoder` (its state, the previous features, is carried by the loop).
        methods: client update rules run side by side on the same draws (`default_methods`).
        server: the mixture rule applied to every method's predictions.
        cost: weights of the realized online cost reported for every method (spec §3, §9).
        homogeneity: "h1" — one shared encoder, agents differ by their noise (exact theory);
            "h2" — each agent draws its own `(A, b)`, the policy uses population moments (an
            all-reduce over agents) (spec §2.2).
        batch_size: process agents in chunks of this size (`lax.map`); None = all at once.
        dtype: float type of the per-agent arrays.
        state: what the loop carries per agent. "stored" (default): the encoder parameters,
            the noise keys, a ring of the last `H + 1` feature draws and the next draw.
            "lean": none of these; they are pure functions of the run's key, the agent's
            index and the step counter, recomputed where a method reads them (a stateful
            encoder, the ESN, still carries its ring: each draw depends on the previous
            one). Same results; less memory per agent, more arithmetic per step.
        carry_draws: with `state="lean"`, carry each agent's encoder parameters and noise
            keys (as "stored" does) and recompute only the features from them: the key chain
            and the parameter normals are derived once per run instead of in every pass of
            every step. Same results, bitwise (tested); about 1.5× the agent-steps/s of lean
            at 10⁷ agents in chunks on XLA:CPU (docs/performance.md) for 32 more carried bytes
            per agent (float32, RFN p = 5: 45 B against 13; `carry_bytes_per_agent`).
        kernels: the backend tricks of the hot path: "tuned" (default; each measured to pay
            on XLA:CPU, `memoa bench --kernels both`), "plain" (`vmap` of the one-agent
            functions, `jax.random`, `jax.scipy`), or a `Kernels` choosing trick by trick.
            Same results up to rounding (tested).

    Examples:
        100 agents, each with its own random-feature encoder (`homogeneity="h2"`, the
        default), playing MEMOA's mean-field game (the first of `default_methods`); run it
        with `simulate`:

        >>> import memoa_jax as mj
        >>> cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
        >>> sim = mj.Simulation(
        ...     n_agents=100,
        ...     encoder=mj.RFNEncoder(d=1, d_x=1, p=5, sigma=0.1),
        ...     methods=mj.default_methods(cost, window=3, ridge_window=3)[:1],
        ...     cost=cost,
        ... )
        >>> sim.n_agents, sim.homogeneity, [m.name for m in sim.methods]
        (100, 'h2', ['memoa'])
    """

    n_agents: int = eqx.field(static=True)
    encoder: AbstractEncoder
    methods: tuple[AbstractMethod, ...]
    server: AbstractServer = RidgeMixture()
    cost: CostParams = CostParams()
    homogeneity: str = eqx.field(static=True, default="h2")
    batch_size: int | None = eqx.field(static=True, default=None)
    dtype: type = eqx.field(static=True, default=jnp.float64)
    kernels: Kernels = eqx.field(default_factory=Kernels, converter=as_kernels)
    state: str = eqx.field(static=True, default="stored")
    carry_draws: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not isinstance(self.n_agents, int) or self.n_agents < 1:
            raise ValueError(f"need at least one agent, got n_agents={self.n_agents!r}")
        if self.state not in ("stored", "lean"):
            raise ValueError(f"state must be 'stored' or 'lean', got state={self.state!r}")
        if self.carry_draws not in (False, True):
            raise ValueError(f"carry_draws must be True or False, got {self.carry_draws!r}")
        if self.carry_draws and self.state != "lean":
            raise ValueError(
                f"carry_draws=True is an option of state='lean' (state={self.state!r} carries "
                "the draws already)"
            )
        if self.homogeneity not in ("h1", "h2"):
            raise ValueError(f"homogeneity must be 'h1' or 'h2', got {self.homogeneity!r}")
        if self.batch_size is not None and (
            not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise ValueError(
                f"batch_size must be a positive integer, got batch_size={self.batch_size!r}"
            )
        if not self.methods:
            raise ValueError("need at least one method")
        if self.encoder.stateful and any(m.needs_agent_moments for m in self.methods):
            raise ValueError(
                "moments='own' needs closed-form per-agent moments; the encoder "
                f"{type(self.encoder).__name__} is stateful (its moments are Monte Carlo)"
            )
        names = [m.name for m in self.methods]
        if len(set(names)) != len(names):
            raise ValueError(f"method names must be unique, got {names}")
        if jnp.dtype(self.dtype) == jnp.float64 and not jax.config.read("jax_enable_x64"):
            raise ValueError(
                "dtype=float64 needs `jax.config.update('jax_enable_x64', True)` first "
                "(or pass dtype=jnp.float32)"
            )

    @property
    def history(self) -> int:
        return max(m.history for m in self.methods)


def validate_data(sim: Simulation, x, y):
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"need x (time, d_x) and y (time, d) of equal length, got {x.shape}, {y.shape}"
        )
    if x.shape[1] != sim.encoder.d_x or y.shape[1] != sim.encoder.d:
        raise ValueError(
            f"data shapes x{tuple(x.shape)}, y{tuple(y.shape)} do not match the encoder "
            f"(d_x={sim.encoder.d_x}, d={sim.encoder.d})"
        )
    n = x.shape[0]
    longest = max(m.warm_up for m in sim.methods)
    if n - 1 <= longest:
        raise ValueError(
            f"window={longest} is not shorter than the {n - 1} prediction steps of the series "
            f"({n} rows): the game would never be played"
        )
