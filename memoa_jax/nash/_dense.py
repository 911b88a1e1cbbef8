"""The dense centralized N-player feedback Nash equilibrium (spec §5): the oracle.

Stacked state `X = (ŷ¹, …, ŷᴺ) ∈ ℝ^{Nd}`, stacked control `β ∈ ℝ^{Np}`, dynamics
`X' = X + 𝒵 β` with `𝒵 = diag(Z¹, …, Zᴺ)`. Agent i's value is `Xᵀ Pⁱ X + 2 Xᵀ Sⁱ + cⁱ`;
backward, `s = T−1..0`:

    Qⁱ = ρ_s W_i + Pⁱ_{s+1},  ℓⁱ = −ρ_s q E_i y_{s+1} + Sⁱ_{s+1}
    𝒜_ii = 𝔐_s(Qⁱ_ii) + ρ_s γ I,  𝒜_ij = Mᵀ Qⁱ_ij M,  ℬ_i = Mᵀ E_iᵀ Qⁱ,  𝒞_i = Mᵀ E_iᵀ ℓⁱ
    G = −𝒜⁻¹ ℬ,  H = −𝒜⁻¹ 𝒞                                 (β = G X + H)
    Pⁱ ← Fᵀ Qⁱ F + Gᵀ Dⁱ G,  F = I + M̄ G,  Dⁱ = diag_j(Cov(Qⁱ_jj)) + ρ_s γ Ê_iÊ_iᵀ  (etc.)

Every agent's `Pⁱ` is a full `Nd × Nd` matrix: O(N³) memory and O(T N⁴) time, which is why
the centralized equilibrium does not scale. Written for clarity, not speed, as the
cross-check of `solve_fne_reduced` (keep `N ≲ 100`). Also the exact expected cost of any
stacked linear profile `β = G X + H` for every agent, and agent 1's best response to it.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from .._custom_types import Array, Float
from .._mean_field import CostParams, window_weights
from .._moments import second_moment_operator
from ._reduced import check_n_agents, covariance_operator, guard_singular


class DenseFNE(eqx.Module):
    """Dense feedback Nash equilibrium `β_s = G_s X_s + H_s` of the N-player window game.

    Attributes:
        G: `(T, N p, N d)` stacked gains; `H`: `(T, N p)` stacked offsets.
        K, L, h: the symmetric form read from agent 1's rows, `K = G_11 − G_12`,
            `L = N G_12`, `h = H_1` (`N = 1`: `K = G_11`, `L = 0`).
        J: `(N,)` every agent's expected window cost from `X_0 = 𝟙 ⊗ y_0`.
        cond: `(T,)` 1-norm condition number `‖𝒜_s‖₁ ‖𝒜_s⁻¹‖₁`.
    """

    G: Float[Array, "T Np Nd"]
    H: Float[Array, "T Np"]
    K: Float[Array, "T p d"]
    L: Float[Array, "T p d"]
    h: Float[Array, "T p"]
    J: Float[Array, " N"]
    cond: Float[Array, " T"]


def _weights(n: int, w_own, w_mean, d: int, dtype):
    """`(N, Nd, Nd)`: `(w_own e_ie_iᵀ + w_mean u_iu_iᵀ) ⊗ I_d`, `u_i = e_i − 𝟙/N`, per agent."""
    E = jnp.eye(n, dtype=dtype)
    U = E - 1.0 / n
    W = w_own * E[:, :, None] * E[:, None, :] + w_mean * U[:, :, None] * U[:, None, :]
    return jnp.einsum("ijk,ab->ijakb", W, jnp.eye(d, dtype=dtype)).reshape(n, n * d, n * d)


def _own(v, n: int, d: int):
    """`(N, Nd)` with agent i's block `v` in row i: `E_i v` for every i."""
    return jnp.einsum("ij,a->ija", jnp.eye(n, dtype=v.dtype), v).reshape(n, n * d)


def _diag_blocks(Q, n: int, d: int):
    """`(N, d, d)`: the diagonal blocks `Q_jj`."""
    return jnp.einsum("jakb,jk->jab", Q.reshape(n, d, n, d), jnp.eye(n, dtype=Q.dtype))


def _noise_weight(Q, i, M_s, S_s, rho_gamma, n: int, d: int):
    """`(N, p, p)` blocks of `Dⁱ = diag_j(Cov(Qⁱ_jj)) + ρ γ Ê_iÊ_iᵀ`."""
    p = M_s.shape[1]
    cov = jax.vmap(lambda Qjj: covariance_operator(Qjj, M_s, S_s))(_diag_blocks(Q, n, d))
    own = (jnp.arange(n) == i).astype(Q.dtype)[:, None, None]
    return cov + own * rho_gamma * jnp.eye(p, dtype=Q.dtype)[None]


def _value_step(c, Q, ell, G, H, Dblk, M_s, const, n: int):
    """Agent's value update under `β = G X + H` (the dense form of `value_step`)."""
    d, p = M_s.shape
    Gr = G.reshape(n, p, n * d)
    Hr = H.reshape(n, p)
    F = jnp.eye(n * d, dtype=G.dtype) + jnp.einsum("ak,jkx->jax", M_s, Gr).reshape(n * d, n * d)
    MH = (Hr @ M_s.T).reshape(n * d)
    DG = jnp.einsum("jkl,jly->jky", Dblk, Gr)
    P = F.T @ Q @ F + jnp.einsum("jkx,jky->xy", Gr, DG)
    S = F.T @ (ell + Q @ MH) + jnp.einsum("jkx,jkl,jl->x", Gr, Dblk, Hr)
    c = c + const + MH @ Q @ MH + jnp.einsum("jk,jkl,jl->", Hr, Dblk, Hr) + 2.0 * ell @ MH
    return 0.5 * (P + P.T), S, c


def _terminal(y_T, cost: CostParams, n: int, d: int):
    P = _weights(n, cost.q_T, cost.lam_T, d, y_T.dtype)
    S = -cost.q_T * _own(y_T, n, d)
    c = jnp.full((n,), cost.q_T * (y_T @ y_T))
    return P, S, c


def _start_cost(P, S, c, y0, n: int):
    X0 = jnp.tile(y0, n)
    return jnp.einsum("x,ixy,y->i", X0, P, X0) + 2.0 * S @ X0 + c


def _symmetric_form(G, H, n: int, d: int, p: int):
    G11, H1 = G[:, :p, :d], H[:, :p]
    if n == 1:
        return G11, jnp.zeros_like(G11), H1
    G12 = G[:, :p, d : 2 * d]
    return G11 - G12, n * G12, H1


def dense_bytes(n: int, d: int, p: int) -> int:
    """The dense solver's memory at N = n, a lower bound (its O(N³)): the value matrices of
    every agent before and after a step and their weights (three float64 arrays of
    N × (N d)²), and the stacked system with its right-hand sides (two of (N p)²)."""
    return 8 * (3 * n * (n * d) ** 2 + 2 * (n * p) ** 2)


def stack_policy(
    K: Float[Array, "T p d"],
    L: Float[Array, "T p d"],
    h: Float[Array, "T p"],
    n_agents: int | float,
) -> tuple[Float[Array, "T Np Nd"], Float[Array, "T Np"]]:
    """Stacked `(G, H)` of the profile where every agent plays `β = K ŷ + L ȳ + h`."""
    check_n_agents(n_agents)
    n = int(n_agents)
    eye, ones = jnp.eye(n, dtype=K.dtype), jnp.ones((n, n), K.dtype)
    G = jax.vmap(lambda K_s, L_s: jnp.kron(eye, K_s) + jnp.kron(ones, L_s) / n)(K, L)
    return G, jnp.tile(h, (1, n))


def solve_fne_dense(
    M: Float[Array, "T d p"],
    S: Float[Array, "T d p d p"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
    n_agents: int | float,
) -> DenseFNE:
    """Centralized feedback Nash equilibrium from the N coupled stacked recursions (spec §5).

    Args:
        M, S, y, cost: as for `memoa_jax.solve_mean_field`.
        n_agents: the number of agents N ≥ 1, a Python int (it sets the array shapes).
            Memory O(N³), time O(T N⁴): meant for N up to a few hundred.

    Returns:
        `DenseFNE(G, H, K, L, h, J, cond)`.

    Raises:
        ValueError: for `n_agents < 1` or a non-integer.
        RuntimeError: (also under jit) naming the window step where `𝒜_s` is singular.
    """
    check_n_agents(n_agents)
    if int(n_agents) != n_agents:
        raise ValueError(f"the dense solver needs an integer N, got n_agents={n_agents!r}")
    n = int(n_agents)
    T, d, p = M.shape
    dtype = M.dtype
    rho = window_weights(cost.alpha, T, dtype)
    W = _weights(n, cost.q, cost.lam, d, dtype)
    I_p = jnp.eye(p, dtype=dtype)
    eye_np = jnp.eye(n * p, dtype=dtype)
    agents = jnp.arange(n)

    def backward(carry, xs):
        P, Sv, c = carry
        M_s, S_s, y_next, rho_s = xs
        Q = rho_s * W + P
        ell = -rho_s * cost.q * _own(y_next, n, d) + Sv
        # agent i's row block i of Qⁱ: (N, d, N, d)
        eye_n = jnp.eye(n, dtype=dtype)
        rows = jnp.einsum("ijakb,ij->iakb", Q.reshape(n, n, d, n, d), eye_n)
        A = jnp.einsum("ak,iajb,bl->ijkl", M_s, rows, M_s)
        own = jax.vmap(lambda Qii: second_moment_operator(Qii, S_s))(jnp.einsum("iaib->iab", rows))
        A = A.at[agents, agents].set(own + rho_s * cost.gamma * I_p[None])
        A = A.transpose(0, 2, 1, 3).reshape(n * p, n * p)
        B = jnp.einsum("ak,iajb->ikjb", M_s, rows).reshape(n * p, n * d)
        ell_own = jnp.einsum("ija,ij->ia", ell.reshape(n, n, d), eye_n)
        C = (ell_own @ M_s).reshape(n * p)
        # one LU for the gains, the offsets and A⁻¹ (its 1-norm condition number: an SVD
        # of the Np × Np system would cost more than the solve)
        lu = jax.scipy.linalg.lu_factor(A)
        sol = jax.scipy.linalg.lu_solve(lu, jnp.concatenate([B, C[:, None], eye_np], axis=1))
        G, H, A_inv = -sol[:, : n * d], -sol[:, n * d], sol[:, n * d + 1 :]
        const = rho_s * cost.q * (y_next @ y_next)

        def one(Q_i, ell_i, c_i, i):
            Dblk = _noise_weight(Q_i, i, M_s, S_s, rho_s * cost.gamma, n, d)
            return _value_step(c_i, Q_i, ell_i, G, H, Dblk, M_s, const, n)

        P, Sv, c = jax.vmap(one)(Q, ell, c, agents)
        norm1 = lambda X: jnp.max(jnp.sum(jnp.abs(X), axis=0))
        return (P, Sv, c), (G, H, norm1(A) * norm1(A_inv))

    (P0, S0, c0), (G, H, cond) = lax.scan(
        backward, _terminal(y[T], cost, n, d), (M, S, y[1:], rho), reverse=True
    )
    G = guard_singular(G, cond, "the stacked Nash system matrix 𝒜")
    K, L, h = _symmetric_form(G, H, n, d, p)
    return DenseFNE(G=G, H=H, K=K, L=L, h=h, J=_start_cost(P0, S0, c0, y[0], n), cond=cond)


def evaluate_dense(
    M: Float[Array, "T d p"],
    S: Float[Array, "T d p d p"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
    G: Float[Array, "T Np Nd"],
    H: Float[Array, "T Np"],
) -> Float[Array, " N"]:
    """Every agent's exact expected window cost under the stacked profile `β = G X + H`,
    from `X_0 = 𝟙 ⊗ y_0` (multiplicative noise, exact expectations; spec §5)."""
    T, d, p = M.shape
    n = G.shape[-1] // d
    rho = window_weights(cost.alpha, T, M.dtype)
    W = _weights(n, cost.q, cost.lam, d, M.dtype)
    agents = jnp.arange(n)

    def backward(carry, xs):
        P, Sv, c = carry
        M_s, S_s, y_next, rho_s, G_s, H_s = xs
        Q = rho_s * W + P
        ell = -rho_s * cost.q * _own(y_next, n, d) + Sv
        const = rho_s * cost.q * (y_next @ y_next)

        def one(Q_i, ell_i, c_i, i):
            Dblk = _noise_weight(Q_i, i, M_s, S_s, rho_s * cost.gamma, n, d)
            return _value_step(c_i, Q_i, ell_i, G_s, H_s, Dblk, M_s, const, n)

        return jax.vmap(one)(Q, ell, c, agents), None

    (P0, S0, c0), _ = lax.scan(
        backward, _terminal(y[T], cost, n, d), (M, S, y[1:], rho, G, H), reverse=True
    )
    return _start_cost(P0, S0, c0, y[0], n)


def best_response_dense(
    M: Float[Array, "T d p"],
    S: Float[Array, "T d p d p"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
    G: Float[Array, "T Np Nd"],
    H: Float[Array, "T Np"],
) -> tuple[Float[Array, "T p Nd"], Float[Array, "T p"], Float[Array, ""]]:
    """Agent 1's best response when agents 2..N play the stacked profile `β = G X + H`.

    Returns:
        `(K_br, h_br, J_br)`: agent 1's optimal feedback `β¹ = K_br X + h_br` on the whole
        stacked state, and its optimal expected cost from `X_0 = 𝟙 ⊗ y_0`.
    """
    T, d, p = M.shape
    n = G.shape[-1] // d
    dtype = M.dtype
    rho = window_weights(cost.alpha, T, dtype)
    W = _weights(n, cost.q, cost.lam, d, dtype)[0]

    def backward(carry, xs):
        P, Sv, c = carry
        M_s, S_s, y_next, rho_s, G_s, H_s = xs
        Mbar = jnp.kron(jnp.eye(n, dtype=dtype), M_s)
        Q = rho_s * W + P
        ell = -rho_s * cost.q * _own(y_next, n, d)[0] + Sv
        cov = jax.vmap(lambda Qjj: covariance_operator(Qjj, M_s, S_s))(_diag_blocks(Q, n, d))
        blocks = jnp.einsum("jkl,jm->jkml", cov, jnp.eye(n, dtype=dtype)).reshape(n * p, n * p)
        E = Mbar.T @ Q @ Mbar + blocks
        G_hat, H_hat = G_s.at[:p].set(0.0), H_s.at[:p].set(0.0)
        hess = E[:p, :p] + rho_s * cost.gamma * jnp.eye(p, dtype=dtype)
        k_br = -jnp.linalg.solve(hess, (Mbar.T @ Q + E @ G_hat)[:p])
        h_br = -jnp.linalg.solve(hess, (E @ H_hat + Mbar.T @ ell)[:p])
        G_new, H_new = G_hat.at[:p].set(k_br), H_hat.at[:p].set(h_br)
        Dblk = _noise_weight(Q, 0, M_s, S_s, rho_s * cost.gamma, n, d)
        const = rho_s * cost.q * (y_next @ y_next)
        P, Sv, c = _value_step(c, Q, ell, G_new, H_new, Dblk, M_s, const, n)
        return (P, Sv, c), (k_br, h_br)

    P_T, S_T, c_T = _terminal(y[T], cost, n, d)
    (P0, S0, c0), (k_br, h_br) = lax.scan(
        backward, (P_T[0], S_T[0], c_T[0]), (M, S, y[1:], rho, G, H), reverse=True
    )
    J = _start_cost(P0[None], S0[None], c0[None], y[0], n)[0]
    return k_br, h_br, J
