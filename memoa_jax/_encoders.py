"""Random-feature encoders of the agents (spec §1.2, §2).

An agent's encoder turns the public input `x_t` into a random feature matrix
`Z_t ∈ ℝ^{d×p}`; its prediction moves by `Z_t β_t`. The random-feature network (RFN) of
FedMOE is `Z_t = ReLU(A x_t 1ᵀ + b + σ w_tᵀ)` with `A ∈ ℝ^{d×d_x}`, `b ∈ ℝ^{d×p}` drawn once
per agent from `N(0, 1)` and `w_t ~ N(0, I_p)` fresh at every step.

Keys: agent `i` owns `jr.fold_in(key, i)`; its parameters come from that key, and its noise at
time `t` is a counter-based draw from its own two-word noise key at counter `t` (`_random.py`),
so any slice of the population can be regenerated on its own (chunk by chunk, or shard by
shard) with the same draws.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._custom_types import Array, Float, PRNGKeyArray, UInt32
from ._moments import rfn_moment_parts, rfn_moments
from ._random import agent_normals


class RFNParams(eqx.Module):
    """Parameters of one RFN encoder."""

    A: Float[Array, "d d_x"]
    b: Float[Array, "d p"]


class RFNEncoder(eqx.Module):
    """Random-feature network `Z = ReLU(A x 1ᵀ + b + σ wᵀ)` (FedMOE `random_feature_net.py`).

    Attributes:
        d: target dimension (rows of Z).
        d_x: input dimension.
        p: number of features (columns of Z, the control dimension).
        sigma: noise scale σ > 0 (one per row or a scalar).

    `noise`, `features` and `moment_parts` take one agent's parameters and noise key, or a
    population's, with a trailing agent axis (the loop's layout). They are written with
    broadcasting over that axis instead of being `vmap`ped: XLA:CPU lays a vmapped per-agent
    vector out agent-major and transposes it back, which made the feature draw 3-5× slower.

    The step noise `w` is drawn in float32 (from 32 random bits per draw) whatever the dtype
    of the features: float64 normals would cost twice the bits and a float64 erf⁻¹, and a
    24-bit mantissa changes nothing a population statistic can see (the moments are those of
    the continuous law either way).
    """

    d: int = eqx.field(static=True)
    d_x: int = eqx.field(static=True)
    p: int = eqx.field(static=True)
    sigma: Float[Array, " d"] | float = 0.1

    def __check_init__(self):
        for name in ("d", "d_x", "p"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(
                    f"encoder size {name} must be a positive integer, got {name}={v!r}"
                )
        shape = jnp.shape(self.sigma)
        if len(shape) > 1 or (len(shape) == 1 and shape[0] != self.d):
            raise ValueError(f"sigma must be a scalar or have shape ({self.d},), got {shape}")
        # NumPy, not jnp: inside a jit trace jnp would turn even a Python float into a tracer
        if not isinstance(self.sigma, jax.core.Tracer) and not np.all(np.asarray(self.sigma) > 0):
            raise ValueError(f"noise scale must be positive, got sigma={self.sigma}")

    def init(self, key: PRNGKeyArray, dtype=float) -> RFNParams:
        """Draw one agent's `(A, b)` from `N(0, 1)`."""
        kA, kb = jr.split(key)
        return RFNParams(
            A=jr.normal(kA, (self.d, self.d_x), dtype), b=jr.normal(kb, (self.d, self.p), dtype)
        )

    def _sigma(self, dtype, ndim: int = 1) -> Float[Array, " d *ones"]:
        """σ per row, shaped `(d, 1, …)` to broadcast against arrays with `ndim` axes."""
        sigma = jnp.broadcast_to(jnp.asarray(self.sigma, dtype), (self.d,))
        return sigma.reshape((self.d,) + (1,) * (ndim - 1))

    def preactivation(self, params: RFNParams, x: Float[Array, " d_x"]) -> Float[Array, "d p *n"]:
        """`A x 1ᵀ + b` (entry by entry over `x`)."""
        ax = sum(params.A[:, j] * x[j] for j in range(self.d_x))
        return ax[:, None] + params.b

    def noise(self, key: UInt32[Array, " 2 *n"], t) -> Float[Array, " p *n"]:
        """The step noise `w_t ~ N(0, I_p)` (float32) of one agent, from its two-word noise
        key, or of many, from keys with a trailing agent axis (see the class docstring)."""
        return agent_normals(key, t, self.p)

    def features(
        self, params: RFNParams, x: Float[Array, " d_x"], w: Float[Array, " p *n"]
    ) -> Float[Array, "d p *n"]:
        """`Z` for input `x` and step noise `w` (a draw of `noise`); with a trailing agent
        axis on `w` (and on the parameters, or shared ones), one `Z` per agent."""
        pre = self.preactivation(params, x)
        if pre.ndim < w.ndim + 1:  # shared parameters, many agents
            pre = pre[..., None]
        sigma = self._sigma(pre.dtype, pre.ndim)
        return jnp.maximum(pre + sigma * w[None].astype(pre.dtype), 0.0)

    def moments(
        self, params: RFNParams, x: Float[Array, " d_x"]
    ) -> tuple[Float[Array, "d p"], Float[Array, "d p d p"]]:
        """Exact `(E Z, E[Z ⊗ Z])` over the step noise, given one agent's parameters and input."""
        pre = self.preactivation(params, x)
        return rfn_moments(pre, self._sigma(pre.dtype))

    def moment_parts(
        self, params: RFNParams, x: Float[Array, " d_x"]
    ) -> tuple[Float[Array, "d p *n"], Float[Array, "d d p *n"]]:
        """`(E Z, E[Z_ak Z_bk])`: what a population average of the moments needs (per agent
        if the parameters have a trailing agent axis)."""
        pre = self.preactivation(params, x)
        return rfn_moment_parts(pre, self._sigma(pre.dtype))
