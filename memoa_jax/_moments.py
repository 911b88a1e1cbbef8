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

from ._custom_types import Array, Float
from ._kernels import ndtr_and_pdf


def second_moment_operator(
    Q: Float[Array, "d d"], S: Float[Array, "d p d p"]
) -> Float[Array, "p p"]:
    """`𝔐(Q) = E[Zᵀ Q Z]`, linear in `Q` (spec §2)."""
    return jnp.einsum("ab,akbl->kl", Q, S)


def rfn_moment_parts(
    pre: Float[Array, "d p *n"], sigma: Float[Array, " d"], cephes: bool = True
) -> tuple[Float[Array, "d p *n"], Float[Array, "d d p *n"]]:
    """The distinct moments of `Z_ak = ReLU(pre_ak + sigma_a w_k)`, `w ~ N(0, I_p)` (§2.1),
    of one agent or, with a trailing agent axis on `pre`, of each agent.

    Returns:
        `(M, C)`: `M[a, k] = E Z_ak` and `C[a, b, k] = E Z_ak Z_bk` (same noise coordinate).
        Every other entry of the second moment factorises, `E Z_ak Z_bl = M_ak M_bl` (k ≠ l).
    `cephes`: the `Kernels` trick for the normal cdf (`_kernels.ndtr_and_pdf`).
    """
    d = pre.shape[0]
    sig = sigma.reshape((d,) + (1,) * (pre.ndim - 1))
    r = pre / sig
    cdf, pdf = ndtr_and_pdf(r, cephes)
    mean = pre * cdf + sig * pdf
    square = (pre * pre + sig * sig) * cdf + pre * sig * pdf  # a = b
    if d == 1:
        return mean, square[:, None, :]
    # a ≠ b, k = l: rows share w_k; Z_ak Z_bk > 0 iff w_k > c = max(-a1/s1, -a2/s2).
    a1, a2 = pre[:, None, :], pre[None, :, :]  # (d, d, p)
    s1, s2 = sig[:, None, :], sig[None, :, :]
    c = jnp.maximum(-a1 / s1, -a2 / s2)
    tail, pdf_c = ndtr_and_pdf(-c, cephes)  # φ is even: φ(−c) = φ(c)
    cross = a1 * a2 * tail + (a1 * s2 + a2 * s1) * pdf_c + s1 * s2 * (c * pdf_c + tail)
    eye = jnp.eye(d, dtype=bool).reshape((d, d) + (1,) * (pre.ndim - 1))
    return mean, jnp.where(eye, square[:, None, :], cross)


def assemble_second_moment(
    outer: Float[Array, "d p d p"], same: Float[Array, "d d p"]
) -> Float[Array, "d p d p"]:
    """`S[a,k,b,l] = outer[a,k,b,l]` for k ≠ l and `same[a,b,k]` for k = l.

    With `outer = E_i[M_i ⊗ M_i]` and `same = E_i[C_i]` this is the second moment of a
    population mixture (spec §2.2, H2): one GEMM over agents, no per-agent (d p)² tensor.
    """
    p = same.shape[-1]
    eye = jnp.eye(p, dtype=same.dtype)
    diag = jnp.einsum("abk,kl->akbl", same, eye)
    return outer * (1.0 - eye)[None, :, None, :] + diag


def rfn_moments(
    pre: Float[Array, "d p"], sigma: Float[Array, " d"], cephes: bool = True
) -> tuple[Float[Array, "d p"], Float[Array, "d p d p"]]:
    """Closed-form moments of `Z_ak = ReLU(pre_ak + sigma_a w_k)`, `w ~ N(0, I_p)` (spec §2.1).

    Args:
        pre: the pre-activation `A x 1ᵀ + b` of one agent at one time.
        sigma: the noise scale of each row, all positive.

    Returns:
        `(M, S)`: `M = E[Z]` and `S[a, k, b, l] = E[Z_ak Z_bl]`.
    """
    mean, same = rfn_moment_parts(pre, sigma, cephes)
    return mean, assemble_second_moment(jnp.einsum("ak,bl->akbl", mean, mean), same)
