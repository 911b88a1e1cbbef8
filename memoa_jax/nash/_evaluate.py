"""Exact expected costs of linear policy profiles, best responses and ε-Nash gaps (spec §5).

All in the exchangeable block algebra of `_blocks.py`, so every quantity costs O(T (p³ + d³))
whatever N, and N may be traced (vmap an N-sweep). The profile is symmetric: every agent
plays `β = K ŷ + L ȳ + h` (the mean-field policy with the realized mean `ȳ`: `(K, L, g)`;
with the deterministic flow: `(K, 0, L m + g)`; the N-player equilibrium: `(K^N, L^N, h^N)`).

Best response: agent 1 optimizes against the others' closed loop
`X' = X + 𝒵_{−1}(G X + H) + E_1 Z¹ β¹`, expectations over every agent's features. With the
best-response value `V*` and its Q-function, which is quadratic in `β¹` with Hessian
`ℋ_s = 𝔐_s(Q_own) + ρ_s γ I`, the performance-difference identity gives the ε-Nash gap as a
sum of non-negative terms, with no cancellation between two nearly equal costs:

    ε_N = J¹(profile) − min_{β¹} J¹(β¹, others) = Σ_s E[δ_sᵀ ℋ_s δ_s],
    δ_s = β¹_profile(X_s) − β¹_best(X_s),  X_s distributed as under the profile,

where `E[δ δᵀ]` comes from the exact first and second moments of `X_s` (propagated forward
with the multiplicative noise `E[(Z − M) B (Z − M)ᵀ]`).
"""

import equinox as eqx
import jax.numpy as jnp
from jax import lax

from .._custom_types import Array, Float
from .._mean_field import CostParams, MeanFieldSolution, solve_mean_field, window_weights
from .._moments import second_moment_operator
from . import _blocks as bl
from ._blocks import Blocks, Pair
from ._reduced import (
    check_n_agents,
    solve_fne_reduced,
    stage_terms,
    start_value,
    symmetric_profile,
    terminal_value,
    value_step,
)


class BestResponse(eqx.Module):
    """Agent 1's best response `β¹_s = K_own ŷ¹_s + K_other Σ_{j≠1} ŷʲ_s + h_s` to a profile.

    Attributes:
        K_own, K_other: `(T, p, d)` gains on agent 1's state and on each other agent's state.
        h: `(T, p)` offsets.
        J: agent 1's optimal expected cost from the common start.
        hessian: `(T, p, p)` `ℋ_s`, the curvature of agent 1's Q-function in `β¹_s`.
    """

    K_own: Float[Array, "T p d"]
    K_other: Float[Array, "T p d"]
    h: Float[Array, "T p"]
    J: Float[Array, ""]
    hessian: Float[Array, "T p p"]


class NashGap(eqx.Module):
    """How far the decentralized mean-field policy is from the N-player Nash equilibrium.

    Attributes:
        n_agents: N.
        gain_gap: `max_s max(‖K^N − K‖_∞, ‖L^N − L‖_∞, ‖h^N − g‖_∞)`.
        eps: ε_N = J¹(all play MF) − min over agent 1's deviations (`exploitability`, ≥ 0).
        cost_gap: `J¹(all play MF) − J¹(FNE)` (signed; report its absolute value).
        J_mf, J_fne, J_br: agent 1's expected costs under MF, under the FNE, and of its best
            response to MF.
    """

    n_agents: Float[Array, ""]
    gain_gap: Float[Array, ""]
    eps: Float[Array, ""]
    cost_gap: Float[Array, ""]
    J_mf: Float[Array, ""]
    J_fne: Float[Array, ""]
    J_br: Float[Array, ""]


def evaluate_policy(
    M: Float[Array, "T d p"],
    S: Float[Array, "T d p d p"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
    n_agents,
    K: Float[Array, "T p d"],
    L: Float[Array, "T p d"],
    h: Float[Array, "T p"],
) -> Float[Array, ""]:
    """Agent 1's (= every agent's) exact expected window cost when all N agents play
    `β = K ŷ + L ȳ + h` from the common start `y_0`. O(1) in N; N may be traced."""
    check_n_agents(n_agents)
    T, d, _ = M.shape
    n = jnp.asarray(n_agents, M.dtype)
    rho = window_weights(cost.alpha, T, M.dtype)

    def backward(carry, xs):
        P, Sv, c = carry
        M_s, S_s, y_next, rho_s, K_s, L_s, h_s = xs
        Q, ell, D, const = stage_terms(P, Sv, M_s, S_s, y_next, rho_s, cost, n)
        G, H = symmetric_profile(K_s, L_s, h_s, n)
        return value_step(P, Sv, c, Q, ell, G, H, D, M_s, const, n), None

    init = terminal_value(y[T], cost, n, d, M.dtype)
    (P0, S0, c0), _ = lax.scan(backward, init, (M, S, y[1:], rho, K, L, h), reverse=True)
    return start_value(P0, S0, c0, y[0], n)


def best_response(
    M: Float[Array, "T d p"],
    S: Float[Array, "T d p d p"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
    n_agents,
    K: Float[Array, "T p d"],
    L: Float[Array, "T p d"],
    h: Float[Array, "T p"],
) -> BestResponse:
    """Agent 1's exact best response when agents 2..N play `β = K ŷ + L ȳ + h`.

    Agent 1 sees the whole (exchangeable) state; its optimal feedback is linear in its own
    state and in the others' sum. O(1) in N; N may be traced.
    """
    check_n_agents(n_agents)
    T, d, p = M.shape
    n = jnp.asarray(n_agents, M.dtype)
    rho = window_weights(cost.alpha, T, M.dtype)
    I_p = jnp.eye(p, dtype=M.dtype)

    def backward(carry, xs):
        P, Sv, c = carry
        M_s, S_s, y_next, rho_s, K_s, L_s, h_s = xs
        Q, ell, D, const = stage_terms(P, Sv, M_s, S_s, y_next, rho_s, cost, n)
        G, _ = symmetric_profile(K_s, L_s, h_s, n)
        zero_pd, zero_p = jnp.zeros_like(K_s), jnp.zeros_like(h_s)
        G_hat = G._replace(a=zero_pd, b=zero_pd)  # agent 1's row removed
        H_hat = Pair(zero_p, h_s)
        # 𝔈 = E[𝒵ᵀ Q 𝒵]: blocks Mᵀ Q_jk M off the diagonal, 𝔐(Q_jj) on it
        E = bl.each(lambda x: M_s.T @ x @ M_s, Q)
        E = E._replace(a=second_moment_operator(Q.a, S_s), c=second_moment_operator(Q.c, S_s))
        hess = E.a + rho_s * cost.gamma * I_p
        row = bl.each(lambda x, y: M_s.T @ x + y, Q, bl.matmul(E, G_hat, n))
        k_own = -jnp.linalg.solve(hess, row.a)
        k_other = -jnp.linalg.solve(hess, row.b)
        h_br = -jnp.linalg.solve(hess, bl.matvec(E, H_hat, n).own + M_s.T @ ell.own)
        G_br = G_hat._replace(a=k_own, b=k_other)
        H_br = Pair(h_br, h_s)
        out = (k_own, k_other, h_br, hess)
        return value_step(P, Sv, c, Q, ell, G_br, H_br, D, M_s, const, n), out

    init = terminal_value(y[T], cost, n, d, M.dtype)
    (P0, S0, c0), (k_own, k_other, h_br, hess) = lax.scan(
        backward, init, (M, S, y[1:], rho, K, L, h), reverse=True
    )
    J = start_value(P0, S0, c0, y[0], n)
    return BestResponse(
        K_own=k_own, K_other=jnp.where(n >= 2, k_other, 0.0), h=h_br, J=J, hessian=hess
    )


def _noise_cov(B: Float[Array, "p p"], M_s, S_s) -> Float[Array, "d d"]:
    """`E[(Z − M) B (Z − M)ᵀ] = E[Z B Zᵀ] − M B Mᵀ`."""
    return jnp.einsum("kl,akbl->ab", B, S_s) - M_s @ B @ M_s.T


def exploitability(
    M: Float[Array, "T d p"],
    S: Float[Array, "T d p d p"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
    n_agents,
    K: Float[Array, "T p d"],
    L: Float[Array, "T p d"],
    h: Float[Array, "T p"],
    br: BestResponse | None = None,
) -> Float[Array, ""]:
    """ε-Nash gap of the symmetric profile `β = K ŷ + L ȳ + h`: what agent 1 gains by its best
    deviation, `Σ_s E[δ_sᵀ ℋ_s δ_s]` (performance-difference form, see the module docstring;
    equal to `evaluate_policy − best_response.J`, but exact to relative precision even when
    ε_N is 10⁻²⁰ of the cost). `br` may be passed if already computed."""
    check_n_agents(n_agents)
    if br is None:
        br = best_response(M, S, y, cost, n_agents, K, L, h)
    n = jnp.asarray(n_agents, M.dtype)
    zero_pd = jnp.zeros_like(K[0])
    zero_dd = jnp.zeros((M.shape[1],) * 2, M.dtype)

    def forward(carry, xs):
        mu, C, eps = carry
        M_s, S_s, K_s, L_s, h_s, k_own, k_other, hbr, hess = xs
        G, H = symmetric_profile(K_s, L_s, h_s, n)
        # δ = (agent 1's row of G − best response) X + (h − h_br)
        Dlt = Blocks(G.a - k_own, G.b - k_other, zero_pd, zero_pd, zero_pd)
        mean_d = bl.matvec(Dlt, mu, n).own + h_s - hbr
        var_d = bl.matmul(Dlt, bl.matmul(C, bl.transpose(Dlt), n), n).a
        eps = eps + mean_d @ hess @ mean_d + jnp.sum(hess * var_d)
        # moments of X under the profile: X' = F X + M̄ H + noise
        MG = bl.each(lambda x: M_s @ x, G)
        eye = jnp.eye(M_s.shape[0], dtype=M_s.dtype)
        F = MG._replace(a=eye + MG.a, c=eye + MG.c)
        beta = bl.each(lambda x, y: x + y, bl.matvec(G, mu, n), H)
        GCG = bl.matmul(G, bl.matmul(C, bl.transpose(G), n), n)
        noise = bl.block_diagonal(
            _noise_cov(GCG.a + jnp.outer(beta.own, beta.own), M_s, S_s),
            _noise_cov(GCG.c + jnp.outer(beta.other, beta.other), M_s, S_s),
        )
        C_new = bl.each(
            lambda x, y: x + y, bl.matmul(F, bl.matmul(C, bl.transpose(F), n), n), noise
        )
        C_new = bl.mask(bl.each(lambda x, y: 0.5 * (x + y), C_new, bl.transpose(C_new)), n)
        mu_new = bl.mask(bl.each(lambda x, y: x + M_s @ y, bl.matvec(F, mu, n), H), n)
        return (mu_new, C_new, eps), None

    mu0 = bl.mask(Pair(y[0], y[0]), n)
    C0 = Blocks(*([zero_dd] * 5))
    xs = (M, S, K, L, h, br.K_own, br.K_other, br.h, br.hessian)
    (_, _, eps), _ = lax.scan(forward, (mu0, C0, jnp.zeros((), M.dtype)), xs)
    return eps


def mean_field_profile(
    mf: MeanFieldSolution, mean_field: str = "realized"
) -> tuple[Float[Array, "T p d"], Float[Array, "T p d"], Float[Array, "T p"]]:
    """`(K, L, h)` of the mean-field policy: with the broadcast empirical mean `ȳ`
    ("realized", the default, spec A5) or with the deterministic flow `m` ("flow")."""
    if mean_field == "realized":
        return mf.K, mf.L, mf.g
    if mean_field == "flow":
        h = mf.g + jnp.einsum("spd,sd->sp", mf.L, mf.m[:-1])
        return mf.K, jnp.zeros_like(mf.L), h
    raise ValueError(f"mean_field must be 'realized' or 'flow', got {mean_field=}")


def nash_gap(
    M: Float[Array, "T d p"],
    S: Float[Array, "T d p d p"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
    n_agents,
    *,
    mean_field: str = "realized",
) -> NashGap:
    """Gain gap, ε-Nash gap and cost gap of the mean-field policy with N agents (spec §5).

    Args:
        M, S, y, cost: as for `memoa_jax.solve_mean_field` (the mean-field side is solved
            with it).
        n_agents: N ≥ 1, a number or a traced scalar: `jax.jit(jax.vmap(nash_gap,
            in_axes=(None,) * 4 + (0,)))` evaluates a whole N-sweep in one call.
        mean_field: the mean-field policy uses the realized mean ȳ ("realized") or the
            deterministic flow m ("flow").

    Returns:
        A `NashGap`; every number is exact (no sampling), O(1) work in N.

    Raises:
        ValueError: for a concrete `n_agents < 1` or an unknown `mean_field`.
        RuntimeError: if the mean-field or the N-player system is singular.
    """
    check_n_agents(n_agents)
    mf = solve_mean_field(M, S, y, cost)
    K, L, h = mean_field_profile(mf, mean_field)
    fne = solve_fne_reduced(M, S, y, cost, n_agents)
    J_mf = evaluate_policy(M, S, y, cost, n_agents, K, L, h)
    br = best_response(M, S, y, cost, n_agents, K, L, h)
    eps = exploitability(M, S, y, cost, n_agents, K, L, h, br)
    gain_gap = jnp.max(
        jnp.stack(
            [
                jnp.max(jnp.abs(fne.K - mf.K)),
                jnp.max(jnp.abs(fne.L - mf.L)),
                jnp.max(jnp.abs(fne.h - mf.g)),
            ]
        )
    )
    return NashGap(
        n_agents=jnp.asarray(n_agents, M.dtype),
        gain_gap=gain_gap,
        eps=eps,
        cost_gap=J_mf - fne.J,
        J_mf=J_mf,
        J_fne=fne.J,
        J_br=br.J,
    )
