"""The closed-form decentralized mean-field policy (spec §4).

Inside a hindsight window `s = 0..T` every agent pays

    Jⁱ = E Σ_s ρ_s [ q‖y_{s+1} − ŷⁱ_{s+1}‖² + λ‖ŷⁱ_{s+1} − ȳ_{s+1}‖² + γ‖βⁱ_s‖² ]
         + q_T‖y_T − ŷⁱ_T‖² + λ_T‖ŷⁱ_T − ȳ_T‖²,        ŷⁱ_{s+1} = ŷⁱ_s + Zⁱ_s βⁱ_s,

and in the N → ∞ limit its Nash (NCE) response is the affine feedback
`βⁱ_s = K_s ŷⁱ_s + L_s ȳ_s + g_s`, from three backward recursions (symmetric Riccati `P`,
non-symmetric Riccati `Π`, offset `φ`) that need only the moments `M_s = E Z_s` and
`𝔐_s(Q) = E[Z_sᵀ Q Z_s]`. Cost: O(T (p³ + d³)), independent of the number of agents.

The NCE fixed-point form (`nce_fixed_point`) solves the same equilibrium another way (best
response to a flow `m`, then the fixed point of `m ↦ E ŷ`) and is kept as an independent check.
"""

import math

import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
from jax import lax

from ._custom_types import Array, Float
from ._moments import second_moment_operator
from ._status import RESULTS, Status


class CostParams(eqx.Module):
    """Weights of the per-agent online cost (spec §3). All are array leaves (sweepable).

    Attributes:
        q: own tracking-error weight, `q ≥ 0`.
        lam: mean-field coupling λ; `λ > 0` herds to the mean, `−q < λ < 0` anti-herds.
        gamma: ridge weight on the control, `γ > 0`.
        alpha: recency discount; window step `s` has weight `ρ_s = exp(−α (T − 1 − s))`.
        q_T, lam_T: optional terminal weights (default 0, as in FedMOE).
    """

    q: Float[Array, ""] | float = 1.0
    lam: Float[Array, ""] | float = 0.5
    gamma: Float[Array, ""] | float = 10.0
    alpha: Float[Array, ""] | float = 1e-3
    q_T: Float[Array, ""] | float = 0.0
    lam_T: Float[Array, ""] | float = 0.0

    def __check_init__(self):
        vals = {k: getattr(self, k) for k in ("q", "lam", "gamma", "alpha", "q_T", "lam_T")}
        if any(isinstance(v, jax.core.Tracer) for v in vals.values()):
            return  # traced (vmap/grad over costs): validated by the caller's concrete values
        v = {k: float(x) for k, x in vals.items()}
        for k, x in v.items():
            if not math.isfinite(x):
                raise ValueError(f"cost weight {k}={x} must be finite")
        if v["q"] < 0:
            raise ValueError(f"own-error weight must be non-negative, got q={v['q']}")
        if v["gamma"] <= 0:
            raise ValueError(f"ridge weight must be positive, got gamma={v['gamma']}")
        if v["alpha"] < 0:
            raise ValueError(f"discount must be non-negative, got alpha={v['alpha']}")
        if v["q"] + v["lam"] <= 0:
            raise ValueError(f"need q + lam > 0 (own-state weight), got q={v['q']}, lam={v['lam']}")
        if v["q_T"] < 0 or v["q_T"] + v["lam_T"] < 0:
            raise ValueError(f"need q_T >= 0 and q_T + lam_T >= 0, got {v['q_T']=}, {v['lam_T']=}")


class MeanFieldSolution(eqx.Module):
    """Gains and value terms of the mean-field policy over one window of length `T`.

    Attributes:
        K, L: `(T, p, d)` feedback gains on the own state and on the mean field.
        g: `(T, p)` offsets.
        P, Pi, phi: `(T + 1, d, d)`, `(T + 1, d, d)`, `(T + 1, d)` value terms.
        m: `(T + 1, d)` mean-field flow, `m_0 = y_0`.
        cond: `(T,)` `‖R_s‖ / σ_min(R̃_s)`: large when `R̃_s`, whose singularity breaks uniqueness,
            is close to singular.
    """

    K: Float[Array, "T p d"]
    L: Float[Array, "T p d"]
    g: Float[Array, "T p"]
    P: Float[Array, "T+1 d d"]
    Pi: Float[Array, "T+1 d d"]
    phi: Float[Array, "T+1 d"]
    m: Float[Array, "T+1 d"]
    cond: Float[Array, " T"]


def window_weights(alpha, T: int, dtype=None) -> Float[Array, " T"]:
    """Recency weights `ρ_s = exp(−α (T − 1 − s))`, `s = 0..T−1` (spec §2)."""
    s = jnp.arange(T, dtype=dtype)
    return jnp.exp(-alpha * (T - 1 - s))


def _singular_tol(dtype) -> float:
    return 1.0 / (100.0 * float(jnp.finfo(dtype).eps))


def singular_step(cond: Float[Array, " T"], tol: float | None = None):
    """`(any, s)`: whether some window step's system is singular (`cond` not below `tol`,
    inf and nan included) and the last such step `s`, where the breakdown started (the
    recursion runs backward, so a failure at step s poisons every step before it)."""
    T = cond.shape[0]
    bad = ~(cond < (_singular_tol(cond.dtype) if tol is None else tol))
    return jnp.any(bad), T - 1 - jnp.argmax(bad[::-1])


def _guard_singular(x, cond: Float[Array, " T"], code: RESULTS):
    """Raise (under jit too, `eqx.error_if`) naming the window step whose matrix is singular."""
    T = cond.shape[0]
    bad, first = singular_step(cond)
    return eqx.branched_error_if(x, bad, first, [code.message(s, T) for s in range(T)])


def solve_mean_field(
    M: Float[Array, "T d p"],
    S: Float[Array, "T d p d p"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
) -> MeanFieldSolution:
    """Closed-form mean-field policy over one window (spec §4).

    Args:
        M: feature means `E Z_s`, `s = 0..T−1`.
        S: second-moment tensors `E[Z_s,ak Z_s,bl]`.
        y: window targets `y_0..y_T` (`y_0` is also the common start, `m_0 = y_0`).
        cost: the cost weights.

    Returns:
        The gains `(K, L, g)`, the value terms and the flow `m`.

    Raises:
        RuntimeError: (also under jit) naming the window step where `R̃_s` is singular.
    """
    sol, _ = solve_mean_field_status(M, S, y, cost)
    return _guard_singular(sol, sol.cond, RESULTS.singular_mean_field)


def solve_mean_field_status(
    M: Float[Array, "T d p"],
    S: Float[Array, "T d p d p"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
) -> tuple[MeanFieldSolution, Status]:
    """`solve_mean_field` without a host callback: the solution and the `Status` of its check
    (`RESULTS.singular_mean_field` at the window step where `R̃_s` is singular), what the
    compiled loop carries instead of raising."""
    T, d, p = M.shape
    dtype = M.dtype
    rho = window_weights(cost.alpha, T, dtype)
    I_d, I_p = jnp.eye(d, dtype=dtype), jnp.eye(p, dtype=dtype)
    P_T = (cost.q_T + cost.lam_T) * I_d
    Pi_T = -cost.lam_T * I_d
    phi_T = -cost.q_T * y[T]

    def backward(carry, xs):
        P, Pi, phi = carry
        M_s, S_s, y_next, rho_s = xs
        Q = rho_s * (cost.q + cost.lam) * I_d + P
        R = second_moment_operator(Q, S_s) + rho_s * cost.gamma * I_p
        K = -jnp.linalg.solve(R, M_s.T @ Q)
        Gam = Pi - rho_s * cost.lam * I_d
        Rt = R + M_s.T @ Gam @ M_s
        IMK = I_d + M_s @ K
        L = -jnp.linalg.solve(Rt, M_s.T @ Gam @ IMK)
        lin = phi - rho_s * cost.q * y_next
        g = -jnp.linalg.solve(Rt, M_s.T @ lin)
        A = I_d + M_s @ (K + L)
        P_new = Q + Q @ M_s @ K  # = Q − Q M R⁻¹ Mᵀ Q
        P_new = 0.5 * (P_new + P_new.T)
        Pi_new = IMK.T @ Gam @ A
        phi_new = IMK.T @ (Gam @ M_s @ g + lin)
        # ‖R‖ / σ_min(R̃): how close R̃ is to singular on the scale of the cost it comes from
        cond = jnp.linalg.norm(R, 2) / jnp.min(jnp.linalg.svd(Rt, compute_uv=False))
        out = (K, L, g, P_new, Pi_new, phi_new, cond)
        return (P_new, Pi_new, phi_new), out

    _, (K, L, g, P, Pi, phi, cond) = lax.scan(
        backward, (P_T, Pi_T, phi_T), (M, S, y[1:], rho), reverse=True
    )

    def forward(m, xs):
        M_s, K_s, L_s, g_s = xs
        m_next = m + M_s @ ((K_s + L_s) @ m + g_s)
        return m_next, m_next

    _, m_tail = lax.scan(forward, y[0], (M, K, L, g))
    bad, first = singular_step(cond)
    status = Status.failed_if(bad, RESULTS.singular_mean_field, first, T)
    sol = MeanFieldSolution(
        K=K,
        L=L,
        g=g,
        P=jnp.concatenate([P, P_T[None]]),
        Pi=jnp.concatenate([Pi, Pi_T[None]]),
        phi=jnp.concatenate([phi, phi_T[None]]),
        m=jnp.concatenate([y[:1], m_tail]),
        cond=cond,
    )
    return sol, status


def best_response_to_flow(
    M: Float[Array, "T d p"],
    S: Float[Array, "T d p d p"],
    y: Float[Array, "T+1 d"],
    m: Float[Array, "T+1 d"],
    cost: CostParams,
) -> tuple[Float[Array, "T p d"], Float[Array, "T p"], Float[Array, "T+1 d"]]:
    """One agent's optimal tracking response `β_s = K_s ŷ_s + h_s` to a fixed flow `m`.

    Returns `(K, h, m')` where `m'` is the forward mean of that response from `m'_0 = y_0`
    (the map `m ↦ m'` is affine; its fixed point is the mean-field equilibrium, spec §4).
    """
    T, d, p = M.shape
    dtype = M.dtype
    rho = window_weights(cost.alpha, T, dtype)
    I_d, I_p = jnp.eye(d, dtype=dtype), jnp.eye(p, dtype=dtype)

    def backward(carry, xs):
        P, s_next = carry
        M_s, S_s, y_next, m_next, rho_s = xs
        Q = rho_s * (cost.q + cost.lam) * I_d + P
        R = second_moment_operator(Q, S_s) + rho_s * cost.gamma * I_p
        K = -jnp.linalg.solve(R, M_s.T @ Q)
        ell = -rho_s * (cost.q * y_next + cost.lam * m_next) + s_next
        h = -jnp.linalg.solve(R, M_s.T @ ell)
        P_new = Q + Q @ M_s @ K
        s_new = (I_d + M_s @ K).T @ ell
        return (0.5 * (P_new + P_new.T), s_new), (K, h)

    P_T = (cost.q_T + cost.lam_T) * I_d
    s_T = -(cost.q_T * y[T] + cost.lam_T * m[T])
    _, (K, h) = lax.scan(backward, (P_T, s_T), (M, S, y[1:], m[1:], rho), reverse=True)

    def forward(mm, xs):
        M_s, K_s, h_s = xs
        nxt = mm + M_s @ (K_s @ mm + h_s)
        return nxt, nxt

    _, tail = lax.scan(forward, y[0], (M, K, h))
    return K, h, jnp.concatenate([y[:1], tail])


def nce_fixed_point(
    M: Float[Array, "T d p"],
    S: Float[Array, "T d p d p"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
) -> tuple[Float[Array, "T+1 d"], Float[Array, "T p"]]:
    """Mean-field equilibrium as the fixed point of `m ↦ E ŷ[best response to m]` (spec §4).

    The map is affine, `m ↦ J m + c`, so the fixed point solves `(I − J) m = c` with `T d`
    unknowns (`m_1..m_T`; `m_0 = y_0` is fixed). An independent check of `solve_mean_field`.

    Returns:
        `(m, h)`: the equilibrium flow and the response offsets, `h_s = L_s m_s + g_s`.
    """
    T, d, _ = M.shape

    def response(m_tail):
        m = jnp.concatenate([y[:1], m_tail.reshape(T, d)])
        return best_response_to_flow(M, S, y, m, cost)[2][1:].reshape(-1)

    zero = jnp.zeros(T * d, M.dtype)
    c = response(zero)
    J = jax.jacfwd(response)(zero)
    m_tail = jnp.linalg.solve(jnp.eye(T * d, dtype=M.dtype) - J, c)
    m = jnp.concatenate([y[:1], m_tail.reshape(T, d)])
    _, h, _ = best_response_to_flow(M, S, y, m, cost)
    return m, h
