"""First and second moments of the random feature matrix Z (spec §2).

The mean-field theory needs only `M = E[Z]` (shape `(d, p)`) and the second-moment tensor
`S[a, k, b, l] = E[Z_ak Z_bl]` (shape `(d, p, d, p)`), through the operator
`𝔐(Q) = E[Zᵀ Q Z] = Σ_ab Q_ab S[a, :, b, :]`.

Random-feature (RFN) agents draw `Z_ak = ReLU(a_ak + σ_a w_k)` with `w ~ N(0, I_p)` fresh at
every step and the pre-activation `a = A x 1ᵀ + b` fixed given the input; the moments of a
rectified Gaussian are closed-form (spec §2.1, d = 1 from FedMOE `rfn_game.py`; rows `a ≠ b`
share the same `w_k`, which gives the max-threshold formula below).
"""

import jax.numpy as jnp
from jax.scipy.special import ndtr

from ._custom_types import Array, Float

_INV_SQRT_2PI = 0.3989422804014327


def _pdf(x):
    return _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)


def second_moment_operator(
    Q: Float[Array, "d d"], S: Float[Array, "d p d p"]
) -> Float[Array, "p p"]:
    """`𝔐(Q) = E[Zᵀ Q Z]`, linear in `Q` (spec §2)."""
    return jnp.einsum("ab,akbl->kl", Q, S)


def rfn_moments(
    pre: Float[Array, "d p"], sigma: Float[Array, " d"]
) -> tuple[Float[Array, "d p"], Float[Array, "d p d p"]]:
    """Closed-form moments of `Z_ak = ReLU(pre_ak + sigma_a w_k)`, `w ~ N(0, I_p)` (spec §2.1).

    Args:
        pre: the pre-activation `A x 1ᵀ + b` of one agent at one time.
        sigma: the noise scale of each row, all positive.

    Returns:
        `(M, S)`: `M = E[Z]` and `S[a, k, b, l] = E[Z_ak Z_bl]`.
    """
    d, p = pre.shape
    sig = sigma[:, None]
    r = pre / sig
    mean = pre * ndtr(r) + sig * _pdf(r)
    # k = l: rows a, b share w_k; Z_ak Z_bk > 0 iff w_k > c = max(-a1/s1, -a2/s2).
    a1, a2 = pre[:, None, :], pre[None, :, :]  # (d, d, p)
    s1, s2 = sig[:, None, :], sig[None, :, :]
    c = jnp.maximum(-a1 / s1, -a2 / s2)
    tail = ndtr(-c)
    same = a1 * a2 * tail + (a1 * s2 + a2 * s1) * _pdf(c) + s1 * s2 * (c * _pdf(c) + tail)
    # k != l: independent noise coordinates, so the moment factorises.
    outer = jnp.einsum("ak,bl->akbl", mean, mean)
    same_kk = jnp.einsum("abk,kl->akbl", same, jnp.eye(p, dtype=pre.dtype))
    off = 1.0 - jnp.eye(p, dtype=pre.dtype)
    second = outer * off[None, :, None, :] + same_kk
    del d
    return mean, second
