"""The exact centralized N-player feedback Nash equilibrium in O(1) work per N (spec §5).

Under homogeneity (all agents share the moments `M_s`, `𝕊_s` and start at `y_0`) the feedback
Nash equilibrium (FNE) of the N-player game is symmetric, `G_ii = K^N + L^N/N`,
`G_ij = L^N/N`, `H_i = h^N`: every agent plays `βⁱ = K^N ŷⁱ + L^N ȳ + h^N`, the same form as
the mean-field policy. Agent i's value `Xᵀ Pⁱ X + 2 Xᵀ Sⁱ + cⁱ` on the stacked state has
five distinct `d × d` blocks (`_blocks.py`), and every system matrix of the dense recursion is
`I_N ⊗ X + 𝟙𝟙ᵀ ⊗ Y`, which acts as `X` on the agents' deviations from their mean and as
`X + N Y` on the mean. So, per window step (backward, `s = T−1..0`):

    Qⁱ = ρ_s W_i + Pⁱ_{s+1},   ℓⁱ = −ρ_s q E_i y_{s+1} + Sⁱ_{s+1}
    X_𝒜 = 𝔐_s(Q_a) + ρ_s γ I − Mᵀ Q_b M,   Y_𝒜 = Mᵀ Q_b M      (𝒜 = I ⊗ X_𝒜 + 𝟙𝟙ᵀ ⊗ Y_𝒜)
    X_ℬ = Mᵀ (Q_a − Q_b),                   Y_ℬ = Mᵀ Q_b
    K^N = −X_𝒜⁻¹ X_ℬ                                    (deviation part)
    K^N + L^N = −(X_𝒜 + N Y_𝒜)⁻¹ (X_ℬ + N Y_ℬ)          (mean part)
    h^N = −(X_𝒜 + N Y_𝒜)⁻¹ Mᵀ ℓ_own

and the value update of the dense recursion, written in blocks (`value_step`). Cost per
window: O(T (p³ + d³)), the same for `N = 2` and `N = 10⁹`. `N` may be a traced scalar:
`jax.vmap(solve_fne_reduced, in_axes=(None,) * 4 + (0,))` solves a whole N-sweep in one call.
"""

import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._custom_types import Array, Float
from .._mean_field import CostParams, singular_step, window_weights
from .._methods import MeanFieldGame
from .._moments import second_moment_operator
from .._status import RESULTS, Status
from . import _blocks as bl
from ._blocks import Blocks, Pair


class FNESolution(eqx.Module):
    """Symmetric feedback Nash equilibrium of the N-player window game.

    Every agent plays `βⁱ_s = K_s ŷⁱ_s + L_s ȳ_s + h_s` (for `N = 1`, `L = 0` by convention).

    Attributes:
        K, L: `(T, p, d)` gains on the own state and on the empirical mean `ȳ`.
        h: `(T, p)` offsets.
        J: agent 1's (= every agent's) expected window cost from the common start `ŷⁱ_0 = y_0`.
        cond: `(T,)` `‖R_s‖ / σ_min` of the two system matrices `X_𝒜`, `X_𝒜 + N Y_𝒜`.
    """

    K: Float[Array, "T p d"]
    L: Float[Array, "T p d"]
    h: Float[Array, "T p"]
    J: Float[Array, ""]
    cond: Float[Array, " T"]


def state_weights(n, w_own, w_mean, d: int, dtype) -> Blocks:
    """Agent 1's weight `(w_own e_1e_1ᵀ + w_mean u_1u_1ᵀ) ⊗ I_d`, `u_1 = e_1 − 𝟙/N` (spec §5)."""
    eye = jnp.eye(d, dtype=dtype)
    u = 1.0 - 1.0 / n
    return bl.mask(
        Blocks(
            a=(w_own + w_mean * u * u) * eye,
            b=(-w_mean * u / n) * eye,
            bt=(-w_mean * u / n) * eye,
            c=(w_mean / (n * n)) * eye,
            e=(w_mean / (n * n)) * eye,
        ),
        n,
    )


def covariance_operator(Q: Float[Array, "d d"], M_s, S_s) -> Float[Array, "p p"]:
    """`𝔐_s(Q) − M_sᵀ Q M_s = E[(Z − M)ᵀ Q (Z − M)]`: the multiplicative-noise part."""
    return second_moment_operator(Q, S_s) - M_s.T @ Q @ M_s


def symmetric_profile(K, L, h, n) -> tuple[Blocks, Pair]:
    """Stacked `(G, H)` of the profile where every agent plays `β = K ŷ + L ȳ + h`."""
    return bl.symmetric(K + L / n, L / n), Pair(h, h)


def value_step(P, S, c, Q, ell, G: Blocks, H: Pair, D: Blocks, M_s, stage_const, n):
    """One backward step of agent 1's value under the profile `β = G X + H` (spec §5):

        P ← Fᵀ Q F + Gᵀ D G,   S ← Fᵀ (ℓ + Q M̄ H) + Gᵀ D H,
        c ← c + ρ q ‖y‖² + (M̄H)ᵀ Q (M̄H) + Hᵀ D H + 2 ℓᵀ M̄ H,

    with `F = I + M̄ G`, `M̄ = I_N ⊗ M`, and `D` the block-diagonal noise-plus-ridge weight
    `diag(Cov(Q_jj)) + ρ γ E_1E_1ᵀ` (so that `Gᵀ B G = (M̄G)ᵀ Q (M̄G) + Gᵀ D G`).
    """
    del P
    d = M_s.shape[0]
    eye = jnp.eye(d, dtype=M_s.dtype)
    MG = bl.each(lambda x: M_s @ x, G)
    F = MG._replace(a=eye + MG.a, c=eye + MG.c)
    MH = Pair(M_s @ H.own, M_s @ H.other)
    FT, GT = bl.transpose(F), bl.transpose(G)
    P_new = bl.each(
        lambda x, y: x + y,
        bl.matmul(FT, bl.matmul(Q, F, n), n),
        bl.matmul(GT, bl.matmul(D, G, n), n),
    )
    P_new = bl.each(lambda x, y: 0.5 * (x + y), P_new, bl.transpose(P_new))
    lin = bl.each(lambda x, y: x + y, ell, bl.matvec(Q, MH, n))
    S_new = bl.each(lambda x, y: x + y, bl.matvec(FT, lin, n), bl.matvec(GT, bl.matvec(D, H, n), n))
    c_new = (
        c
        + stage_const
        + bl.dot(MH, bl.matvec(Q, MH, n), n)
        + bl.dot(H, bl.matvec(D, H, n), n)
        + 2.0 * bl.dot(ell, MH, n)
    )
    return bl.mask(P_new, n), bl.mask(S_new, n), c_new


def terminal_value(y_T, cost: CostParams, n, d: int, dtype):
    """Agent 1's terminal value `(q_T e_1e_1ᵀ + λ_T u_1u_1ᵀ) ⊗ I`, `−q_T E_1 y_T`, `q_T‖y_T‖²`."""
    P = state_weights(n, cost.q_T, cost.lam_T, d, dtype)
    S = bl.mask(Pair(-cost.q_T * y_T, jnp.zeros_like(y_T)), n)
    return P, S, cost.q_T * (y_T @ y_T)


def start_value(P, S, c, y0, n):
    """`X_0ᵀ P X_0 + 2 X_0ᵀ S + c` at the common start `X_0 = 𝟙 ⊗ y_0`."""
    X0 = Pair(y0, y0)
    return bl.dot(X0, bl.matvec(P, X0, n), n) + 2.0 * bl.dot(X0, S, n) + c


def stage_terms(P, S, M_s, S_s, y_next, rho_s, cost: CostParams, n):
    """Agent 1's `Q = ρ W_1 + P_{s+1}` and `ℓ = −ρ q E_1 y_{s+1} + S_{s+1}` (spec §5)."""
    d, p = M_s.shape
    W = state_weights(n, cost.q, cost.lam, d, M_s.dtype)
    Q = bl.mask(bl.each(lambda w, x: rho_s * w + x, W, P), n)
    ell = Pair(S.own - rho_s * cost.q * y_next, S.other)
    D = bl.block_diagonal(
        covariance_operator(Q.a, M_s, S_s) + rho_s * cost.gamma * jnp.eye(p, dtype=M_s.dtype),
        covariance_operator(Q.c, M_s, S_s),
    )
    return Q, ell, bl.mask(D, n), rho_s * cost.q * (y_next @ y_next)


def check_n_agents(n_agents):
    """`ValueError` for a concrete `N < 1` (traced values are checked inside, `eqx.error_if`)."""
    if isinstance(n_agents, jax.core.Tracer):
        return
    arr = np.asarray(n_agents, dtype=float)
    if arr.size == 0 or not np.all(arr >= 1) or not np.all(np.isfinite(arr)):
        raise ValueError(f"need at least one agent (N >= 1), got n_agents={n_agents!r}")


def _tol(dtype) -> float:
    return 1.0 / (100.0 * float(jnp.finfo(dtype).eps))


def guard_singular(x, cond: Float[Array, " T"], name: str):
    """Raise (under jit and vmap too) naming the window step whose `name` is singular."""
    T = cond.shape[0]
    bad, first = singular_step(cond, _tol(cond.dtype))  # catches inf and nan
    msgs = [
        f"{name} is singular at window step s={s} (of T={T}): the N-player Nash equilibrium "
        "is not unique for these weights/moments; change lam, gamma or the features"
        for s in range(T)
    ]
    return eqx.branched_error_if(x, bad, first, msgs)


def _sigma_min(A):
    return jnp.min(jnp.linalg.svd(A, compute_uv=False))


def solve_fne_reduced(
    M: Float[Array, "T d p"],
    S: Float[Array, "T d p d p"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
    n_agents,
) -> FNESolution:
    """Exact symmetric feedback Nash equilibrium of the N-player window game, O(1) in N.

    Args:
        M: feature means `E Z_s`, `s = 0..T−1` (shared by all agents).
        S: second-moment tensors `E[Z_s,ak Z_s,bl]`.
        y: window targets `y_0..y_T`; every agent starts at `y_0`.
        cost: the cost weights (`memoa_jax.CostParams`).
        n_agents: the number of agents N ≥ 1; a Python number or a (traced) scalar, so that
            `jax.vmap` over an array of N sweeps the population size in one compiled call.

    Returns:
        `FNESolution(K, L, h, J, cond)`. Equals `solve_fne_dense` (the stacked N d × N d
        recursion) to rounding, and tends to the mean-field gains `(K, L, g)` as O(1/N).

    Raises:
        ValueError: if a concrete `n_agents < 1`.
        RuntimeError: (also under jit) naming the window step where a system matrix is
            singular (the N-player equilibrium is then not unique).
    """
    check_n_agents(n_agents)
    fne, n = _solve_fne_reduced(M, S, y, cost, n_agents)
    K = guard_singular(fne.K, fne.cond, "the N-player Nash system matrix X_A or X_A + N Y_A")
    J = eqx.error_if(fne.J, ~(n >= 1), RESULTS.no_agents.message())
    return eqx.tree_at(lambda f: (f.K, f.J), fne, (K, J))


def _solve_fne_reduced(M, S, y, cost: CostParams, n_agents) -> tuple[FNESolution, Array]:
    """`solve_fne_reduced` without its runtime checks, and `N` as an array."""
    T, d, p = M.shape
    dtype = M.dtype
    n = jnp.asarray(n_agents, dtype)
    rho = window_weights(cost.alpha, T, dtype)
    I_p = jnp.eye(p, dtype=dtype)

    def backward(carry, xs):
        P, Sv, c = carry
        M_s, S_s, y_next, rho_s = xs
        Q, ell, D, const = stage_terms(P, Sv, M_s, S_s, y_next, rho_s, cost, n)
        R = second_moment_operator(Q.a, S_s) + rho_s * cost.gamma * I_p
        MQbM = M_s.T @ Q.b @ M_s
        X_A = R - MQbM
        mean_A = X_A + n * MQbM
        K = -jnp.linalg.solve(X_A, M_s.T @ (Q.a - Q.b))
        KL = -jnp.linalg.solve(mean_A, M_s.T @ (Q.a - Q.b) + n * (M_s.T @ Q.b))
        h = -jnp.linalg.solve(mean_A, M_s.T @ ell.own)
        L = KL - K
        G, H = symmetric_profile(K, L, h, n)
        P, Sv, c = value_step(P, Sv, c, Q, ell, G, H, D, M_s, const, n)
        norm_R = jnp.linalg.norm(R, 2)
        cond = jnp.maximum(norm_R / _sigma_min(X_A), norm_R / _sigma_min(mean_A))
        return (P, Sv, c), (K, L, h, cond)

    init = terminal_value(y[T], cost, n, d, dtype)
    (P0, S0, c0), (K, L, h, cond) = lax.scan(backward, init, (M, S, y[1:], rho), reverse=True)
    return FNESolution(K=K, L=L, h=h, J=start_value(P0, S0, c0, y[0], n), cond=cond), n


def fne_gains(M, S, y, cost: CostParams, n):
    """`(K^N, L^N, h^N, status)` of `solve_fne_reduced`: the gains the simulator's centralized
    comparator plays (`MeanFieldGame(equilibrium="nash", gains_solver=fne_gains)`), and the
    `Status` of its checks (a singular system, `N < 1`) in place of raising inside the loop."""
    fne, n = _solve_fne_reduced(M, S, y, cost, n)
    bad, first = singular_step(fne.cond, _tol(fne.cond.dtype))
    status = Status.failed_if(bad, RESULTS.singular_nash, first, M.shape[0])
    status = status.then(Status.failed_if(~(n >= 1), RESULTS.no_agents))
    return fne.K, fne.L, fne.h, status


def centralized_method(cost: CostParams, *, name: str = "fne", **kwargs):
    """The centralized comparator of spec §7.1 b as a simulator method: MEMOA's protocol
    and draws with the exact N-player feedback Nash gains of each window (realized ȳ)."""
    return MeanFieldGame(cost=cost, equilibrium="nash", gains_solver=fne_gains, name=name, **kwargs)
