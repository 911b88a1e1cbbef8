"""Random-feature encoders of the agents (spec §1.2, §2).

An agent's encoder turns the public input `x_t` into a random feature matrix
`Z_t ∈ ℝ^{d×p}`; its prediction moves by `Z_t β_t`. The random-feature network (RFN) of
FedMOE is `Z_t = ReLU(A x_t 1ᵀ + b + σ w_tᵀ)` with `A ∈ ℝ^{d×d_x}`, `b ∈ ℝ^{d×p}` drawn once
per agent from `N(0, 1)` and `w_t ~ N(0, I_p)` fresh at every step; the echo-state network
(ESN) adds a reservoir, `Z_t = HardSigmoid(A x_t 1ᵀ + B Z_{t−1} + b + σ w_tᵀ)`.

Keys: agent `i` owns `jr.fold_in(key, i)`; its parameters come from that key, and its noise at
time `t` is a counter-based draw from its own two-word noise key at counter `t` (`_random.py`),
so any slice of the population can be regenerated on its own (chunk by chunk, or shard by
shard) with the same draws.
"""

import abc
from typing import Any

import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._custom_types import Array, Float, PRNGKeyArray, UInt32
from ._kernels import Kernels
from ._moments import rfn_moment_parts, rfn_moments
from ._random import agent_normals, normal_rows, split_rows


class AbstractEncoder(eqx.Module):
    """An agent's random feature map `(params, x_t, w_t[, Z_{t−1}]) ↦ Z_t ∈ ℝ^{d×p}`.

    `noise`, `features` and `moment_parts` take one agent's parameters, noise key and state,
    or a population's, with a trailing agent axis (the loop's layout; shared parameters have
    none). They are written with broadcasting over that axis instead of being `vmap`ped:
    XLA:CPU lays a vmapped per-agent vector out agent-major and transposes it back, which made
    the feature draw 3-5× slower.

    The step noise `w` is drawn in float32 (from 32 random bits per draw) whatever the dtype
    of the features: float64 normals would cost twice the bits and a float64 erf⁻¹, and a
    24-bit mantissa changes nothing a population statistic can see (the moments are those of
    the continuous law either way).
    """

    d: eqx.AbstractVar[int]
    d_x: eqx.AbstractVar[int]
    p: eqx.AbstractVar[int]
    sigma: eqx.AbstractVar[Float[Array, " d"] | float]

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

    @property
    def stateful(self) -> bool:
        """Whether `Z_t` depends on the agent's previous features `Z_{t−1}`."""
        return False

    def _sigma(self, dtype, ndim: int = 1) -> Float[Array, " d *ones"]:
        """σ per row, shaped `(d, 1, …)` to broadcast against arrays with `ndim` axes."""
        sigma = jnp.broadcast_to(jnp.asarray(self.sigma, dtype), (self.d,))
        return sigma.reshape((self.d,) + (1,) * (ndim - 1))

    def noise(
        self, key: UInt32[Array, " 2 *n"], t, kernels: Kernels = Kernels()
    ) -> Float[Array, " p *n"]:
        """The step noise `w_t ~ N(0, I_p)` (float32) of one agent, from its two-word noise
        key, or of many, from keys with a trailing agent axis (`kernels.threefry`: how the
        counter-based hash is computed; the same bits either way)."""
        return agent_normals(key, t, self.p, threefry=kernels.threefry)

    @abc.abstractmethod
    def init(self, key: PRNGKeyArray, dtype=float) -> eqx.Module:
        """Draw one agent's encoder parameters."""

    def init_rows(self, key: UInt32[Array, " 2 n"], dtype=float) -> eqx.Module:
        """`init` of many agents from their Threefry keys' words (`jax.random.key_data`,
        agent axis last); parameters with a trailing agent axis. The default vmaps `init`;
        an encoder may write it with `memoa_jax`'s row forms of `jax.random`
        (`_random.split_rows`, `normal_rows`: the same bits, cheaper on XLA:CPU)."""
        one = lambda words: self.init(jax.random.wrap_key_data(words, impl="threefry2x32"), dtype)
        return jax.vmap(one, in_axes=-1, out_axes=-1)(key)

    @abc.abstractmethod
    def features(
        self,
        params: Any,
        x: Float[Array, " d_x"],
        w: Float[Array, " p *n"],
        prev: Float[Array, "d p *n"] | None = None,
    ) -> Float[Array, "d p *n"]:
        """`Z_t` for input `x`, step noise `w` (a draw of `noise`) and, for a stateful encoder,
        the previous features `prev = Z_{t−1}`; per agent with a trailing agent axis."""

    def moments(
        self, params: Any, x: Float[Array, " d_x"], kernels: Kernels = Kernels()
    ) -> tuple[Float[Array, "d p"], Float[Array, "d p d p"]]:
        """Exact `(E Z, E[Z ⊗ Z])` of ONE agent over the step noise, where they have a closed
        form: what H1 (one shared encoder) and `MeanFieldGame(moments="own")` need. An
        encoder without one (e.g. the ESN) leaves this out; H2 needs only `moment_parts`."""
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form per-agent moments: use homogeneity='h2' "
            "and moments='population'"
        )

    @abc.abstractmethod
    def moment_parts(
        self,
        params: Any,
        x: Float[Array, " d_x"],
        *,
        prev: Float[Array, "d p *n"] | None = None,
        key: UInt32[Array, " 2 *n"] | None = None,
        t=None,
        kernels: Kernels = Kernels(),
    ) -> tuple[Float[Array, "d p *n"], Float[Array, "d d p *n"]]:
        """`(E Z, E[Z_ak Z_bk])` over the step noise, given the parameters, the input and (if
        stateful) `prev`: what a population average of the moments needs. `key`, `t`: the
        agent's noise key and step, for encoders whose moments are estimated by Monte Carlo.
        The other entries of the second moment factorise, `E Z_ak Z_bl = M_ak M_bl` (k ≠ l).
        `kernels`: the backend tricks the loop runs with (an encoder may ignore them)."""


class RFNParams(eqx.Module):
    """Parameters of one RFN encoder (or of many, with a trailing agent axis)."""

    A: Float[Array, "d d_x *n"]
    b: Float[Array, "d p *n"]


class RFNEncoder(AbstractEncoder):
    """Random-feature network `Z = ReLU(A x 1ᵀ + b + σ wᵀ)` (FedMOE `random_feature_net.py`).

    Attributes:
        d: target dimension (rows of Z).
        d_x: input dimension.
        p: number of features (columns of Z, the control dimension).
        sigma: noise scale σ > 0 (one per row or a scalar).
    """

    d: int = eqx.field(static=True)
    d_x: int = eqx.field(static=True)
    p: int = eqx.field(static=True)
    sigma: Float[Array, " d"] | float = 0.1

    def init(self, key: PRNGKeyArray, dtype=float) -> RFNParams:
        """Draw one agent's `(A, b)` from `N(0, 1)`."""
        kA, kb = jr.split(key)
        return RFNParams(
            A=jr.normal(kA, (self.d, self.d_x), dtype), b=jr.normal(kb, (self.d, self.p), dtype)
        )

    def init_rows(self, key, dtype=float) -> RFNParams:
        kA, kb = split_rows(key, 2)
        return RFNParams(
            A=normal_rows(kA, (self.d, self.d_x), dtype), b=normal_rows(kb, (self.d, self.p), dtype)
        )

    def preactivation(self, params: RFNParams, x: Float[Array, " d_x"]) -> Float[Array, "d p *n"]:
        """`A x 1ᵀ + b` (entry by entry over `x`)."""
        ax = params.A[:, 0] * x[0]
        for j in range(1, self.d_x):
            ax = ax + params.A[:, j] * x[j]
        return ax[:, None] + params.b

    def features(self, params, x, w, prev=None):
        del prev  # no reservoir
        pre = self.preactivation(params, x)
        if pre.ndim < w.ndim + 1:  # shared parameters, many agents
            pre = pre[..., None]
        return jnp.maximum(pre + self._sigma(pre.dtype, pre.ndim) * w[None].astype(pre.dtype), 0.0)

    def moments(
        self, params: Any, x: Float[Array, " d_x"], kernels: Kernels = Kernels()
    ) -> tuple[Float[Array, "d p"], Float[Array, "d p d p"]]:
        """Exact `(E Z, E[Z ⊗ Z])` over the step noise, given one agent's parameters and input."""
        pre = self.preactivation(params, x)
        return rfn_moments(pre, self._sigma(pre.dtype), kernels.cephes)

    def moment_parts(self, params, x, *, prev=None, key=None, t=None, kernels=Kernels()):
        """Exact (closed-form, spec §2.1); the state, key and step are not needed."""
        del prev, key, t
        pre = self.preactivation(params, x)
        return rfn_moment_parts(pre, self._sigma(pre.dtype), kernels.cephes)


def hard_sigmoid(u):
    """PyTorch's `HardSigmoid`: `clip(u/6 + 1/2, 0, 1)` (= `ReLU6(u + 3)/6`)."""
    return jnp.clip(u / 6.0 + 0.5, 0.0, 1.0)


class ESNParams(eqx.Module):
    """Parameters of one echo-state (ESN) encoder (or of many, with a trailing agent axis)."""

    A: Float[Array, "d d_x *n"]
    B: Float[Array, "d d *n"]
    b: Float[Array, "d p *n"]


class ESNEncoder(AbstractEncoder):
    """Echo-state network `Z_t = HardSigmoid(A x_t 1ᵀ + B Z_{t−1} + b + σ w_tᵀ)` (spec §1.2).

    `A ∈ ℝ^{d×d_x}`, `B ∈ ℝ^{d×d}`, `b ∈ ℝ^{d×p}` are drawn once per agent from `N(0, 1)`
    (FedMOE `echo_state_net.py`); `w_t ~ N(0, I_p)` is fresh at every step; `Z_{−1} = 0`. The
    reservoir state is the agent's own previous feature matrix, which the loop already keeps.
    HardSigmoid keeps `Z` in [0, 1]: with unit-variance `B` a ReLU reservoir (FedMOE's code)
    can grow without bound.

    Moments (what the mean-field policy needs) are estimated by Monte Carlo over the encoder
    noise: given the agent's previous state, `n_mc` fresh noise draws (counters `p, p+1, …` of
    the agent's key at step `t`: a stream apart from the realized draws, counters `< p`) give
    per-agent estimates of `E Z` and `E[Z_ak Z_bk]`; columns `k ≠ l` are independent given
    the state (different `w_k`), so the rest of the second moment factorises exactly as for
    the RFN. The loop averages these over the population (spec §2.2, H2), `N · n_mc` draws.

    Attributes:
        d, d_x, p: target, input and feature dimensions.
        sigma: noise scale σ > 0 (one per row or a scalar).
        n_mc: Monte-Carlo draws per agent and step for the moments.
    """

    d: int = eqx.field(static=True)
    d_x: int = eqx.field(static=True)
    p: int = eqx.field(static=True)
    sigma: Float[Array, " d"] | float = 0.1
    n_mc: int = eqx.field(static=True, default=16)

    def __check_init__(self):
        if not isinstance(self.n_mc, int) or self.n_mc < 1:
            raise ValueError(f"n_mc must be a positive integer, got n_mc={self.n_mc!r}")

    @property
    def stateful(self) -> bool:
        return True

    def init(self, key: PRNGKeyArray, dtype=float) -> ESNParams:
        """Draw one agent's `(A, B, b)` from `N(0, 1)`."""
        kA, kB, kb = jr.split(key, 3)
        return ESNParams(
            A=jr.normal(kA, (self.d, self.d_x), dtype),
            B=jr.normal(kB, (self.d, self.d), dtype),
            b=jr.normal(kb, (self.d, self.p), dtype),
        )

    def init_rows(self, key, dtype=float) -> ESNParams:
        kA, kB, kb = split_rows(key, 3)
        return ESNParams(
            A=normal_rows(kA, (self.d, self.d_x), dtype),
            B=normal_rows(kB, (self.d, self.d), dtype),
            b=normal_rows(kb, (self.d, self.p), dtype),
        )

    def preactivation(
        self, params: ESNParams, x: Float[Array, " d_x"], prev: Float[Array, "d p *n"]
    ) -> Float[Array, "d p *n"]:
        """`A x 1ᵀ + B Z_{t−1} + b` (entry by entry over `x` and the rows of `Z_{t−1}`)."""
        extra = prev.ndim - 2  # a trailing agent axis on the state; shared parameters get one
        A, B, b = (
            a.reshape(a.shape + (1,) * (extra + 2 - a.ndim)) for a in (params.A, params.B, params.b)
        )
        ax = A[:, 0] * x[0]
        for j in range(1, self.d_x):
            ax = ax + A[:, j] * x[j]
        Bz = B[:, 0][:, None] * prev[0][None]
        for c in range(1, self.d):
            Bz = Bz + B[:, c][:, None] * prev[c][None]
        return ax[:, None] + Bz + b

    def features(self, params, x, w, prev=None):
        assert prev is not None, "the ESN's features need its previous features (Z_{-1} = 0)"
        pre = self.preactivation(params, x, prev)
        return hard_sigmoid(pre + self._sigma(pre.dtype, pre.ndim) * w[None].astype(pre.dtype))

    def moment_parts(self, params, x, *, prev=None, key=None, t=None, kernels=Kernels()):
        """Monte-Carlo `(E Z, E[Z_ak Z_bk])` over `n_mc` noise draws, given `prev`."""
        assert prev is not None and key is not None, "the ESN's moments need prev and key"
        pre = self.preactivation(params, x, prev)
        draws = agent_normals(key, t, self.n_mc * self.p, self.p, kernels.threefry)
        w = draws.astype(pre.dtype)
        w = w.reshape((self.n_mc, self.p) + w.shape[1:])
        z = hard_sigmoid(pre[None] + self._sigma(pre.dtype, pre.ndim)[None] * w[:, None])
        return jnp.mean(z, axis=0), jnp.mean(z[:, :, None] * z[:, None, :], axis=0)


ENCODERS = {"rfn": RFNEncoder, "esn": ESNEncoder}
