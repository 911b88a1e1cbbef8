"""Random-feature encoders of the agents (spec §1.2, §2).

An agent's encoder turns the public input `x_t` into a random feature matrix
`Z_t ∈ ℝ^{d×p}`; its prediction moves by `Z_t β_t`. The random-feature network (RFN) of
FedMOE is `Z_t = ReLU(A x_t 1ᵀ + b + σ w_tᵀ)` with `A ∈ ℝ^{d×d_x}`, `b ∈ ℝ^{d×p}` drawn once
per agent from `N(0, 1)` and `w_t ~ N(0, I_p)` fresh at every step.

Keys: agent `i` owns `jr.fold_in(key, i)`; its parameters come from that key and its noise at
time `t` from `jr.fold_in(noise_key_i, t)`, so any slice of the population can be regenerated
on its own (chunk by chunk, or shard by shard) with the same draws.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._agents import matvec
from ._custom_types import Array, Float, PRNGKeyArray
from ._moments import rfn_moment_parts, rfn_moments


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
        noise_dtype: float type in which the step noise `w` is drawn, then cast. float32 by
            default: drawing float64 normals (threefry + a float64 erfinv) is the single most
            expensive op of a CPU step, and a 24-bit mantissa changes nothing a population
            statistic can see (the moments are those of the continuous law either way).
    """

    d: int = eqx.field(static=True)
    d_x: int = eqx.field(static=True)
    p: int = eqx.field(static=True)
    sigma: Float[Array, " d"] | float = 0.1
    noise_dtype: str = eqx.field(static=True, default="float32")

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

    def _sigma(self, dtype) -> Float[Array, " d"]:
        return jnp.broadcast_to(jnp.asarray(self.sigma, dtype), (self.d,))

    def preactivation(self, params: RFNParams, x: Float[Array, " d_x"]) -> Float[Array, "d p"]:
        """`A x 1ᵀ + b` (entry by entry: see `_agents.py` on why)."""
        return matvec(params.A, x)[:, None] + params.b

    def features(
        self, params: RFNParams, x: Float[Array, " d_x"], *, key: PRNGKeyArray
    ) -> Float[Array, "d p"]:
        """One draw of `Z` for input `x` (the noise comes from `key`)."""
        pre = self.preactivation(params, x)
        w = jr.normal(key, (self.p,), jnp.dtype(self.noise_dtype)).astype(pre.dtype)
        return jnp.maximum(pre + self._sigma(pre.dtype)[:, None] * w[None, :], 0.0)

    def moments(
        self, params: RFNParams, x: Float[Array, " d_x"]
    ) -> tuple[Float[Array, "d p"], Float[Array, "d p d p"]]:
        """Exact `(E Z, E[Z ⊗ Z])` over the step noise, given the parameters and input."""
        pre = self.preactivation(params, x)
        return rfn_moments(pre, self._sigma(pre.dtype))

    def moment_parts(
        self, params: RFNParams, x: Float[Array, " d_x"]
    ) -> tuple[Float[Array, "d p"], Float[Array, "d d p"]]:
        """`(E Z, E[Z_ak Z_bk])`: what a population average of the moments needs."""
        pre = self.preactivation(params, x)
        return rfn_moment_parts(pre, self._sigma(pre.dtype))


def hard_sigmoid(u):
    """PyTorch's `HardSigmoid`: `clip(u/6 + 1/2, 0, 1)` (= `ReLU6(u + 3)/6`)."""
    return jnp.clip(u / 6.0 + 0.5, 0.0, 1.0)


class ESNParams(eqx.Module):
    """Parameters of one echo-state (ESN) encoder."""

    A: Float[Array, "d d_x"]
    B: Float[Array, "d d"]
    b: Float[Array, "d p"]


class ESNEncoder(eqx.Module):
    """Echo-state network `Z_t = HardSigmoid(A x_t 1ᵀ + B Z_{t−1} + b + σ w_tᵀ)` (spec §1.2).

    `A ∈ ℝ^{d×d_x}`, `B ∈ ℝ^{d×d}`, `b ∈ ℝ^{d×p}` are drawn once per agent from `N(0, 1)`
    (FedMOE `echo_state_net.py`); `w_t ~ N(0, I_p)` is fresh at every step; `Z_{−1} = 0`. The
    reservoir state is the agent's own previous feature matrix, which the loop already carries
    (it draws features one step ahead), so `features` takes it as `prev`. HardSigmoid keeps
    `Z` in [0, 1]: with unit-variance `B` a ReLU reservoir (FedMOE's code) can grow without bound.

    Moments (what the mean-field policy needs) are estimated by Monte Carlo over the encoder
    noise: given the agent's previous state, `n_mc` fresh noise draws `w` (independent of the
    noise the agent actually uses) give per-agent estimates of `E Z` and `E[Z_ak Z_bk]`; the
    columns `k ≠ l` are independent given the state (different `w_k`), so the rest of the
    second moment factorises exactly as for the RFN. The loop averages these over the
    population (spec §2.2, H2), so the estimate uses `N · n_mc` draws per step.

    Attributes:
        d, d_x, p: target, input and feature dimensions.
        sigma: noise scale σ > 0 (one per row or a scalar).
        n_mc: Monte-Carlo draws per agent and step for the moments.
        noise_dtype: float type in which the step noise is drawn (as `RFNEncoder`).
    """

    d: int = eqx.field(static=True)
    d_x: int = eqx.field(static=True)
    p: int = eqx.field(static=True)
    sigma: Float[Array, " d"] | float = 0.1
    n_mc: int = eqx.field(static=True, default=16)
    noise_dtype: str = eqx.field(static=True, default="float32")

    def __check_init__(self):
        for name in ("d", "d_x", "p", "n_mc"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(
                    f"encoder size {name} must be a positive integer, got {name}={v!r}"
                )
        shape = jnp.shape(self.sigma)
        if len(shape) > 1 or (len(shape) == 1 and shape[0] != self.d):
            raise ValueError(f"sigma must be a scalar or have shape ({self.d},), got {shape}")
        if not isinstance(self.sigma, jax.core.Tracer) and not np.all(np.asarray(self.sigma) > 0):
            raise ValueError(f"noise scale must be positive, got sigma={self.sigma}")

    def init(self, key: PRNGKeyArray, dtype=float) -> ESNParams:
        """Draw one agent's `(A, B, b)` from `N(0, 1)`."""
        kA, kB, kb = jr.split(key, 3)
        return ESNParams(
            A=jr.normal(kA, (self.d, self.d_x), dtype),
            B=jr.normal(kB, (self.d, self.d), dtype),
            b=jr.normal(kb, (self.d, self.p), dtype),
        )

    def _sigma(self, dtype) -> Float[Array, " d"]:
        return jnp.broadcast_to(jnp.asarray(self.sigma, dtype), (self.d,))

    def preactivation(
        self, params: ESNParams, x: Float[Array, " d_x"], prev: Float[Array, "d p"]
    ) -> Float[Array, "d p"]:
        """`A x 1ᵀ + B Z_{t−1} + b` (entry by entry, see `_agents.py`)."""
        d = self.d
        Bz = jnp.stack([sum(params.B[a, c] * prev[c, :] for c in range(d)) for a in range(d)])
        return matvec(params.A, x)[:, None] + Bz + params.b

    def features(
        self,
        params: ESNParams,
        x: Float[Array, " d_x"],
        prev: Float[Array, "d p"],
        *,
        key: PRNGKeyArray,
    ) -> Float[Array, "d p"]:
        """One draw of `Z_t` given the input and the previous features `prev = Z_{t−1}`."""
        pre = self.preactivation(params, x, prev)
        w = jr.normal(key, (self.p,), jnp.dtype(self.noise_dtype)).astype(pre.dtype)
        return hard_sigmoid(pre + self._sigma(pre.dtype)[:, None] * w[None, :])

    def moment_parts(
        self,
        params: ESNParams,
        x: Float[Array, " d_x"],
        prev: Float[Array, "d p"],
        *,
        key: PRNGKeyArray,
    ) -> tuple[Float[Array, "d p"], Float[Array, "d d p"]]:
        """Monte-Carlo `(E Z, E[Z_ak Z_bk])` over `n_mc` noise draws, given `prev`."""
        pre = self.preactivation(params, x, prev)
        w = jr.normal(key, (self.n_mc, self.p), pre.dtype)
        z = hard_sigmoid(pre[None] + self._sigma(pre.dtype)[None, :, None] * w[:, None, :])
        return jnp.mean(z, axis=0), jnp.mean(z[:, :, None, :] * z[:, None, :, :], axis=0)


ENCODERS = {"rfn": RFNEncoder, "esn": ESNEncoder}
