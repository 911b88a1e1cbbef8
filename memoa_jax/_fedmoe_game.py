"""FedMOE's own N-player game as a comparator: `fedmoe_game` (issue 13, item 5).

In FedMOE (github.com/fatemetkl/FedMOE, commit 708ae18, `fedmoe/server.py`,
`fedmoe/game/game.py`, `fedmoe/game/rfn_game.py`; read, not copied) every client i pays, over
the game window `s = 0..T−1` of server times `τ_s = t − T + s`, the SERVER's mixture error with
the realized server weights `w_s = w_{τ_s}`:

    Jⁱ = Σ_s ρ_s ( ‖y_{s+1} − w_sᵀ Ŷ_{s+1}‖² + γ ‖βⁱ_s‖² ),   ρ_s = e^{−α (T−1−s)},

with the stacked predictions `X = Ŷ ∈ ℝ^{Nd}`, `X_{s+1} = X_s + 𝒵_s β_s`,
`𝒵_s = diag(Z¹_s, …, Zᴺ_s)`, each client with its OWN exact RFN moments
`Mⁱ_s = E Zⁱ_s`, `𝕊ⁱ_s = E[Zⁱ_s ⊗ Zⁱ_s]`, and zero terminal value. It is a dense N-player
feedback Nash equilibrium `β_s = G_s X_s + H_s`. With `W_s = w_s ⊗ I_d` (`Nd × d`),
`M̄ = diag(M¹, …, Mᴺ)` (`Nd × Np`), `E_i = e_i ⊗ I_d`, `Ê_i = e_i ⊗ I_p` and
`𝔈(Q)` the `Np × Np` matrix `E[𝒵ᵀ Q 𝒵]` (blocks `(i, j)`: `MⁱᵀQ_ij Mʲ` for `i ≠ j`,
`𝔐ⁱ(Q_ii) = E[ZⁱᵀQ_ii Zⁱ]` on the diagonal), backward from `Pⁱ_T = 0`, `Sⁱ_T = 0`:

    Qⁱ = ρ W Wᵀ + Pⁱ_{s+1},   ℓⁱ = −ρ W y_{s+1} + Sⁱ_{s+1}
    Â = 𝔈(W Wᵀ),   Dⁱ = 𝔈(Pⁱ_{s+1}),   A = row blocks i of Dⁱ (block (i, j) = Dⁱ_ij)
    𝒜 = ρ γ I + A + ρ Â,   ℬ_i = Miᵀ E_iᵀ Pⁱᵀ,   𝒞_i = Miᵀ E_iᵀ Sⁱ
    G = −𝒜⁻¹ (ρ M̄ᵀ W Wᵀ + ℬ),   H = 𝒜⁻¹ (ρ M̄ᵀ W y_{s+1} − 𝒞)
    Xⁱ = ρ Â + Dⁱ + ρ γ Ê_iÊ_iᵀ                                   (= E[𝒵ᵀQⁱ𝒵] + ργÊÊᵀ)
    Pⁱ_s = Gᵀ Xⁱ G + Qⁱ M̄ G + Gᵀ M̄ᵀ Qⁱᵀ + Qⁱ
    Sⁱ_s = Gᵀ Xⁱ H + Qⁱ M̄ H + Gᵀ M̄ᵀ ℓⁱ + ℓⁱ

(`Server.sync_round` / `Game.calculate_*`: `calculate_g`, `calculate_h`, `calculate_pt_client`,
`calculate_st_client` lines 1–4.) The `(N, N, p, p)` block tensors `A`, `Â`, `Dⁱ` become
`Np × Np` matrices with block `(i, j)` at rows `i p…`, columns `j p…` (transpose, then
reshape).

`fedmoe_compat=True` reproduces FedMOE's two defects so its numbers can be regenerated:

1. `A`, `Â` and `Dⁱ` are turned into `Np × Np` by a plain `reshape` of the `(N, N, p, p)`
   tensor (`game_state.py` `set_A_t`/`set_A_hat_t`, `game.py` `set_client_Dt`): the blocks
   are scrambled for `p > 1` (identical for `p = 1` or `N = 1`);
2. the value updates use `Â` where the gains use `ρ Â` (`Xⁱ = Â + Dⁱ + ργÊÊᵀ` in
   `calculate_pt_client` and `calculate_st_client`): identical when `ρ = 1` (α = 0) and at
   the window's last step.

FedMOE's game is written for `d = 1` only (`rfn_game.py`); the correct layout here works for
any `d`, the compat mode requires `d = 1`.

Online (`Server.fit`, game frequency 1, as in all of FedMOE's tuned runs), at step `t`:
agents draw `Zⁱ_t`; the server fits `w_t` on `(Ŷ_t, y_t)` (`_mixture.ridge_weights`); if
`t ≥ T` the game of the window `τ = t−T..t` is solved with the weights `w_{t−T..t−1}` and the
targets `y_{t−T+1..t}`, replayed from `Ŷ_0 = 𝟙 ⊗ y_{t−T}` with the realized features
(`β_s = G_s Ŷ_s + H_s`, `Ŷ_{s+1} = Ŷ_s + 𝒵_{τ_s} β_s`), and every client predicts
`ŷⁱ_{t+1} = ŷⁱ_T + Zⁱ_t βⁱ_{T−1}`; before (`t < T`) clients run FedMOE's greedy local ridge
(window `T_c`). The server publishes `ŷ^srv_{t+1} = w_tᵀ Ŷ_{t+1}`. Same protocol, keys,
encoders and feature draws as `simulate` (`init_agents`, `enc.features(params, x[t],
enc.noise(keys, t))`), so a run shares its draws with `simulate` for the same key.
"""

from typing import NamedTuple, cast

import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
from jax import lax

from ._agents import Population
from ._custom_types import Array, ArrayLike, Float, PRNGKeyArray
from ._encoders import AbstractEncoder, RFNEncoder, RFNParams
from ._metrics import StepStats, Summary, persistence_rmse, summarize
from ._mixture import ridge_weights
from ._moments import rfn_moments

MAX_AGENTS = 32
"""The dense game keeps N value matrices of size `Nd × Nd` and solves `Np × Np` systems."""


class FedmoeGameSolution(NamedTuple):
    """Feedback Nash equilibrium `β_s = G_s X_s + H_s` of FedMOE's window game.

    Attributes:
        G: `(T, N p, N d)` stacked gains (row block i: client i's control).
        H: `(T, N p)` stacked offsets.
        P: `(T + 1, N, N d, N d)` every client's value matrices `Pⁱ_s` (`Pⁱ_T = 0`).
        S: `(T + 1, N, N d)` every client's linear value terms `Sⁱ_s`.
    """

    G: Float[Array, "T Np Nd"]
    H: Float[Array, "T Np"]
    P: Float[Array, "T+1 N Nd Nd"]
    S: Float[Array, "T+1 N Nd"]


class FedmoeGameResult(NamedTuple):
    """Output of `simulate_fedmoe_game` (prediction steps `t = 0..n−2`, targets `y_{t+1}`).

    Attributes:
        agent_rmse: `(N,)` each client's RMSE over all prediction steps.
        avg_rmse: mean over clients of `agent_rmse`.
        worst_rmse: max over clients (the under-performer).
        worst_agent: index of that client.
        server_rmse: RMSE of the server's mixture prediction `w_tᵀ Ŷ_{t+1}`.
        server_pred: `(n−1, d)` the server's predictions of `y_1..y_{n−1}`.
        agent_pred: `(n−1, N, d)` every client's predictions of `y_1..y_{n−1}`.
        weights: `(n−1, N)` the server weights `w_t` (fitted on `(Ŷ_t, y_t)`).
        frozen: `(N,)` whether a client's features are zero at every step `0..n−2`.
    """

    agent_rmse: Float[Array, " N"]
    avg_rmse: Float[Array, ""]
    worst_rmse: Float[Array, ""]
    worst_agent: Array
    server_rmse: Float[Array, ""]
    server_pred: Float[Array, "n1 d"]
    agent_pred: Float[Array, "n1 N d"]
    weights: Float[Array, "n1 N"]
    frozen: Array


def _check_n(n_agents) -> int:
    if isinstance(n_agents, bool) or not isinstance(n_agents, int):
        raise ValueError(f"n_agents must be an integer, got n_agents={n_agents!r}")
    if not 1 <= n_agents <= MAX_AGENTS:
        raise ValueError(
            f"fedmoe_game is a dense N-player game for 1 <= N <= {MAX_AGENTS}, "
            f"got n_agents={n_agents}"
        )
    return n_agents


def _check_positive(name: str, value, strict: bool = True):
    if isinstance(value, jax.core.Tracer):
        return
    v = float(value)
    ok = v > 0 if strict else v >= 0
    if not (ok and v == v and v != float("inf")):
        rel = "> 0" if strict else ">= 0"
        raise ValueError(f"{name} must be finite and {rel}, got {name}={value!r}")


def _layout(blocks: Float[Array, "N N p p"], compat) -> Float[Array, "Np Np"]:
    """`(N, N, p, p)` blocks → `Np × Np`: block `(i, j)` at rows `i p…`, columns `j p…`, or
    FedMOE's plain `reshape` where `compat` (a boolean, possibly traced: one compilation
    serves both modes)."""
    n, _, p, _ = blocks.shape
    correct = blocks.transpose(0, 2, 1, 3).reshape(n * p, n * p)
    return jnp.where(compat, blocks.reshape(n * p, n * p), correct)


def _expect_blocks(Q, M, S):
    """`(N, N, p, p)` blocks of `E[𝒵ᵀ Q 𝒵]` for `Q` (`Nd × Nd`): `MⁱᵀQ_ij Mʲ` off the
    diagonal, `𝔐ⁱ(Q_ii) = Σ_ab (Q_ii)_ab 𝕊ⁱ[a, :, b, :]` on it."""
    n, d, p = M.shape
    Qb = Q.reshape(n, d, n, d).transpose(0, 2, 1, 3)  # (N, N, d, d), block (i, j)
    off = jnp.einsum("iak,ijab,jbl->ijkl", M, Qb, M)
    agents = jnp.arange(n)
    diag = jnp.einsum("iab,iakbl->ikl", Qb[agents, agents], S)
    return off.at[agents, agents].set(diag)


def solve_fedmoe_game(
    M: Float[ArrayLike, "T N d p"],
    S: Float[ArrayLike, "T N d p d p"],
    w: Float[ArrayLike, "T N"],
    y: Float[ArrayLike, "T+1 d"],
    *,
    gamma,
    alpha,
    fedmoe_compat: bool = False,
) -> FedmoeGameSolution:
    """FedMOE's window game: the dense N-player feedback Nash equilibrium (module docstring).

    Arguments:
        M: `(T, N, d, p)` every client's feature mean `E Zⁱ_s` at window steps `s = 0..T−1`.
        S: `(T, N, d, p, d, p)` every client's second moments `E[Zⁱ_s,ak Zⁱ_s,bl]`.
        w: `(T, N)` the realized server weights `w_s` that score step `s` (`w_{t−T+s}` online).
        y: `(T + 1, d)` window targets `y_0..y_T`; step `s` is scored on `y_{s+1}`.
        gamma: ridge weight γ > 0 (every client).
        alpha: recency discount α ≥ 0, `ρ_s = exp(−α (T − 1 − s))`.
        fedmoe_compat: reproduce FedMOE's two defects (plain-reshape block layout, `Â`
            without `ρ` in the value updates); requires `d = 1`.

    Returns:
        `FedmoeGameSolution(G, H, P, S)`.

    Raises:
        ValueError: inconsistent shapes, `N` outside `1..32`, `γ ≤ 0`, `α < 0`, or
            `fedmoe_compat` with `d ≠ 1`.
    """
    M, S, w, y = (jnp.asarray(a) for a in (M, S, w, y))
    if M.ndim != 4:
        raise ValueError(f"M must have shape (T, N, d, p), got M.shape={M.shape}")
    T, n, d, p = M.shape
    _check_n(n)
    if S.shape != (T, n, d, p, d, p):
        raise ValueError(f"S must have shape {(T, n, d, p, d, p)}, got S.shape={S.shape}")
    if w.shape != (T, n):
        raise ValueError(f"w must have shape {(T, n)}, got w.shape={w.shape}")
    if y.shape != (T + 1, d):
        raise ValueError(f"y must have shape {(T + 1, d)}, got y.shape={y.shape}")
    if fedmoe_compat and d != 1:
        raise ValueError(
            f"fedmoe_compat reproduces FedMOE's game, which is defined for d = 1 only, got d={d}"
        )
    _check_positive("gamma", gamma)
    _check_positive("alpha", alpha, strict=False)
    dt = M.dtype
    hyper = (jnp.asarray(gamma, dt), jnp.asarray(alpha, dt), jnp.asarray(bool(fedmoe_compat)))
    return _solve(M, S, w, y, *hyper)


@eqx.filter_jit
def _solve(M, S, w, y, gamma, alpha, compat):
    T, n, d, p = M.shape
    dt = M.dtype
    nd, np_ = n * d, n * p
    eye_d = jnp.eye(d, dtype=dt)
    agents = jnp.arange(n)
    # M̄ = diag(M¹..Mᴺ), (Nd, Np)
    Mbar = jnp.einsum("siak,ij->siajk", M, jnp.eye(n, dtype=dt)).reshape(T, nd, np_)
    rho = jnp.exp(-alpha * (T - 1 - jnp.arange(T, dtype=dt)))
    ehat = jax.vmap(lambda i: jnp.kron(jnp.eye(n, dtype=dt)[i][:, None], jnp.eye(p, dtype=dt)))(
        agents
    )  # (N, Np, p): Ê_i
    ridge_own = jnp.einsum("ikp,ilp->ikl", ehat, ehat)  # Ê_iÊ_iᵀ, (N, Np, Np)

    def backward(carry, xs):
        P, Sv = carry  # (N, Nd, Nd), (N, Nd)
        M_s, S_s, Mbar_s, w_s, y_next, rho_s = xs
        Wm = jnp.kron(jnp.outer(w_s, w_s), eye_d)  # W Wᵀ
        Wy = jnp.kron(w_s, y_next)  # W y_{s+1}
        A_hat = _layout(_expect_blocks(Wm, M_s, S_s), compat)
        D4 = jax.vmap(lambda Pi: _expect_blocks(Pi, M_s, S_s))(P)  # (N, N, N, p, p)
        A = _layout(D4[agents, agents], compat)  # block (i, j) = Dⁱ_ij
        # ℬ_i = Mⁱᵀ E_iᵀ Pⁱᵀ: Mⁱᵀ times the transposed column block i of Pⁱ
        cols = P.reshape(n, nd, n, d)[agents, :, agents, :]  # (N, Nd, d)
        B = jnp.einsum("iak,ixa->ikx", M_s, cols).reshape(np_, nd)
        C = jnp.einsum("iak,ia->ik", M_s, Sv.reshape(n, n, d)[agents, agents]).reshape(np_)
        system = rho_s * gamma * jnp.eye(np_, dtype=dt) + A + rho_s * A_hat
        rhs = jnp.concatenate(
            [rho_s * Mbar_s.T @ Wm + B, (rho_s * Mbar_s.T @ Wy - C)[:, None]], axis=1
        )
        sol = jnp.linalg.solve(system, rhs)
        G, H = -sol[:, :nd], sol[:, nd]
        rho_value = jnp.where(compat, 1.0, rho_s)  # FedMOE's defect 2: Â without ρ

        def value(P_i, S_i, D_i, R_i):
            Q = rho_s * Wm + P_i
            ell = -rho_s * Wy + S_i
            X = rho_value * A_hat + _layout(D_i, compat) + rho_s * gamma * R_i
            QMG = Q @ Mbar_s @ G
            GMt = G.T @ Mbar_s.T
            P_new = G.T @ X @ G + QMG + GMt @ Q.T + Q
            S_new = G.T @ X @ H + Q @ Mbar_s @ H + GMt @ ell + ell
            return P_new, S_new

        P, Sv = jax.vmap(value)(P, Sv, D4, ridge_own)
        return (P, Sv), (G, H, P, Sv)

    init = (jnp.zeros((n, nd, nd), dt), jnp.zeros((n, nd), dt))
    _, (G, H, P, Sv) = lax.scan(
        backward, init, (M, S, Mbar, w.astype(dt), y[1:].astype(dt), rho), reverse=True
    )
    P = jnp.concatenate([P, init[0][None]], axis=0)
    Sv = jnp.concatenate([Sv, init[1][None]], axis=0)
    return FedmoeGameSolution(G=G, H=H, P=P, S=Sv)


def replay_fedmoe_game(
    sol: FedmoeGameSolution,
    Z: Float[ArrayLike, "T N d p"],
    y0: Float[ArrayLike, " d"],
) -> tuple[Float[Array, "T+1 N d"], Float[Array, "T N p"]]:
    """Hindsight replay of the window with the realized features (FedMOE `sync_round`).

    Arguments:
        sol: the window's equilibrium (`solve_fedmoe_game`).
        Z: `(T, N, d, p)` every client's realized features at the window steps.
        y0: the observed `y` at the window's start; every client restarts there.

    Returns:
        `(Ŷ, β)`: `(T + 1, N, d)` the replayed predictions `Ŷ_0..Ŷ_T` and `(T, N, p)` the
        controls `β_s = G_s Ŷ_s + H_s`.
    """
    Z = jnp.asarray(Z)
    T, n, d, p = Z.shape

    def step(X, xs):
        G, H, Z_s = xs
        beta = (G @ X + H).reshape(n, p)
        X_next = X + jnp.einsum("iak,ik->ia", Z_s, beta).reshape(n * d)
        return X_next, (X_next, beta)

    X0 = jnp.tile(jnp.asarray(y0, Z.dtype), n)
    _, (Xs, beta) = lax.scan(step, X0, (sol.G, sol.H, Z))
    Y = jnp.concatenate([X0[None], Xs], axis=0).reshape(T + 1, n, d)
    return Y, beta


def agent_features_and_moments(
    encoder: RFNEncoder,
    x: Float[ArrayLike, "time d_x"],
    *,
    key: PRNGKeyArray,
    n_agents: int,
    homogeneity: str = "h2",
) -> tuple[Float[Array, "time N d p"], Float[Array, "time N d p"], Float[Array, "time N d p d p"]]:
    """Every client's realized features and exact own RFN moments at every time, with the
    keys and draws of `simulate` (`init_agents`; `enc.features(params, x[t], enc.noise(keys,
    t))`).

    Arguments:
        encoder: the clients' `RFNEncoder`.
        x: `(n, d_x)` public inputs.
        key: the run's key (as passed to `simulate`).
        n_agents: N.
        homogeneity: "h2" (each client its own `(A, b)`, FedMOE) or "h1" (one shared encoder).

    Returns:
        `(Z, M, S)`: `(n, N, d, p)` features, `(n, N, d, p)` means, `(n, N, d, p, d, p)` second
        moments.
    """
    from ._loop import Simulation, init_agents  # the loop imports the methods; keep it lazy
    from ._mean_field import CostParams
    from ._methods import LocalRidge

    dt = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    sim = Simulation(
        n_agents=n_agents,
        encoder=encoder,
        methods=(LocalRidge(cost=CostParams()),),
        homogeneity=homogeneity,
        dtype=dt,
    )
    params, noise_keys = init_agents(sim, key=key)
    params = cast(RFNParams, params)  # an RFNEncoder's agents carry RFNParams
    x = jnp.asarray(x, dt)
    if homogeneity == "h1":  # one encoder: give it the agent axis of the h2 layout
        params = jax.tree.map(
            lambda a: jnp.broadcast_to(a[..., None], a.shape + (n_agents,)), params
        )
    sigma = jnp.broadcast_to(jnp.asarray(encoder.sigma, dt), (encoder.d,))

    def at(t, x_t):
        Z = encoder.features(params, x_t, encoder.noise(noise_keys, t))  # (d, p, N)
        pre = encoder.preactivation(params, x_t)  # (d, p, N)
        M, S = jax.vmap(lambda pr: rfn_moments(pr, sigma), in_axes=-1)(pre)
        return jnp.moveaxis(Z, -1, 0), M, S

    return jax.vmap(at)(jnp.arange(x.shape[0]), x)


def _greedy(Z_hist, yhat_hist, y_next, z_now, yhat, weights, gamma):
    """FedMOE's local ridge client (spec §7.2 G1) for every client: rows `τ` of the history
    with weights `e^{−α(t−1−τ)}` (0 for `τ < 0`); returns `Ŷ_{t+1} = Ŷ_t + Z_t β`."""
    p = Z_hist.shape[-1]
    gram = jnp.einsum("h,hiak,hial->ikl", weights, Z_hist, Z_hist) + gamma * jnp.eye(p)[None]
    resid = y_next[:, None, :] - yhat_hist  # (H, N, d)
    rhs = jnp.einsum("h,hiak,hia->ik", weights, Z_hist, resid)
    beta = jnp.linalg.solve(gram, rhs[..., None])[..., 0]
    return yhat + jnp.einsum("iak,ik->ia", z_now, beta)


def simulate_fedmoe_game(
    encoder: AbstractEncoder,
    x: Float[ArrayLike, "time d_x"],
    y: Float[ArrayLike, "time d"],
    *,
    key: PRNGKeyArray,
    n_agents: int,
    gamma,
    alpha,
    window: int = 3,
    ridge_window: int = 3,
    kappa=1.0,
    eta=1.0,
    fedmoe_compat: bool = False,
    homogeneity: str = "h2",
) -> FedmoeGameResult:
    """Run FedMOE's server loop (`Server.fit`, game every step) with its own N-player game.

    Arguments:
        encoder: the clients' `RFNEncoder` (FedMOE's game needs the exact RFN moments).
        x: `(n, d_x)` public inputs `x_0..x_{n−1}`.
        y: `(n, d)` targets; every client starts at `ŷ_0 = y_0` and predicts `y_1..y_{n−1}`.
        key: the run's key; the same key gives the same encoders and feature draws as
            `simulate`.
        n_agents: number of clients N, `1 ≤ N ≤ 32`.
        gamma: ridge weight γ > 0 (game and greedy warm-up).
        alpha: recency discount α ≥ 0 (game and greedy warm-up).
        window: game window T (FedMOE `game_T`); the game is played at every `t ≥ T`.
        ridge_window: greedy window `T_c` (FedMOE `client_T`) of the warm-up steps `t < T`.
        kappa, eta: the server's constrained ridge (`κ > 0`, weights summing to `η`).
        fedmoe_compat: reproduce FedMOE's two defects (see `solve_fedmoe_game`); needs d = 1.
        homogeneity: "h2" (each client its own encoder, FedMOE) or "h1".

    Returns:
        `FedmoeGameResult` (per-client RMSE, worst, mean, server RMSE, predictions, weights).

    Raises:
        ValueError: a non-RFN encoder, N outside `1..32`, shapes that do not match the
            encoder, a window not shorter than the series, non-positive γ or κ, α < 0,
            `fedmoe_compat` with `d ≠ 1`.
    """
    if not isinstance(encoder, RFNEncoder):
        raise ValueError(
            "fedmoe_game plays with each client's exact RFN moments: it needs an RFNEncoder, "
            f"got encoder={type(encoder).__name__}"
        )
    n_agents = _check_n(n_agents)
    for name, v in (("window", window), ("ridge_window", ridge_window)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {name}={v!r}")
    if homogeneity not in ("h1", "h2"):
        raise ValueError(f"homogeneity must be 'h1' or 'h2', got homogeneity={homogeneity!r}")
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"need x (time, d_x) and y (time, d) of equal length, got {x.shape}, {y.shape}"
        )
    if x.shape[1] != encoder.d_x or y.shape[1] != encoder.d:
        raise ValueError(
            f"data shapes x{tuple(x.shape)}, y{tuple(y.shape)} do not match the encoder "
            f"(d_x={encoder.d_x}, d={encoder.d})"
        )
    if x.shape[0] - 1 <= window:
        raise ValueError(
            f"window={window} is not shorter than the {x.shape[0] - 1} prediction steps of the "
            f"series ({x.shape[0]} rows): the game would never be played"
        )
    if fedmoe_compat and encoder.d != 1:
        raise ValueError(
            "fedmoe_compat reproduces FedMOE's game, which is defined for d = 1 only, "
            f"got d={encoder.d}"
        )
    _check_positive("gamma", gamma)
    _check_positive("alpha", alpha, strict=False)
    _check_positive("kappa", kappa)
    g, a, k, e = (jnp.asarray(v, float) for v in (gamma, alpha, kappa, eta))
    return _simulate(
        encoder,
        x,
        y,
        key,
        g,
        a,
        k,
        e,
        jnp.asarray(bool(fedmoe_compat)),
        n_agents=n_agents,
        window=window,
        ridge_window=ridge_window,
        homogeneity=homogeneity,
    )


def fedmoe_game_on_features(
    Z: Float[ArrayLike, "time N d p"],
    M: Float[ArrayLike, "time N d p"],
    S: Float[ArrayLike, "time N d p d p"],
    y: Float[ArrayLike, "time d"],
    *,
    gamma,
    alpha,
    window: int = 3,
    ridge_window: int = 3,
    kappa=1.0,
    eta=1.0,
    fedmoe_compat: bool = False,
) -> FedmoeGameResult:
    """`simulate_fedmoe_game` on given features and moments (e.g. another encoder's, or draws
    replayed from FedMOE's own random stream).

    Arguments:
        Z: `(n, N, d, p)` every client's realized features `Zⁱ_t`, `t = 0..n−1`.
        M: `(n, N, d, p)` their means `E Zⁱ_t` (what the game plays with).
        S: `(n, N, d, p, d, p)` their second moments `E[Zⁱ_t,ak Zⁱ_t,bl]`.
        y: `(n, d)` targets.
        gamma, alpha, window, ridge_window, kappa, eta, fedmoe_compat: as for
            `simulate_fedmoe_game`.

    Returns:
        `FedmoeGameResult`.

    Raises:
        ValueError: inconsistent shapes, N outside `1..32`, a window not shorter than the
            series, non-positive γ or κ, α < 0, `fedmoe_compat` with `d ≠ 1`.
    """
    Z, M, S, y = (jnp.asarray(a) for a in (Z, M, S, y))
    if Z.ndim != 4:
        raise ValueError(f"Z must have shape (time, N, d, p), got Z.shape={Z.shape}")
    n_rows, n, d, p = Z.shape
    _check_n(n)
    for name, a, shape in (
        ("M", M, Z.shape),
        ("S", S, (n_rows, n, d, p, d, p)),
        ("y", y, (n_rows, d)),
    ):
        if a.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {name}.shape={a.shape}")
    for name, v in (("window", window), ("ridge_window", ridge_window)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {name}={v!r}")
    if n_rows - 1 <= window:
        raise ValueError(
            f"window={window} is not shorter than the {n_rows - 1} prediction steps of the "
            f"series ({n_rows} rows): the game would never be played"
        )
    if fedmoe_compat and d != 1:
        raise ValueError(
            f"fedmoe_compat reproduces FedMOE's game, which is defined for d = 1 only, got d={d}"
        )
    _check_positive("gamma", gamma)
    _check_positive("alpha", alpha, strict=False)
    _check_positive("kappa", kappa)
    dt = Z.dtype
    g, a, k, e = (jnp.asarray(v, dt) for v in (gamma, alpha, kappa, eta))
    return _run(
        Z, M.astype(dt), S.astype(dt), y, g, a, k, e, jnp.asarray(bool(fedmoe_compat)),
        window=window, ridge_window=ridge_window,
    )  # fmt: skip


def _simulate(
    encoder,
    x,
    y,
    key,
    gamma,
    alpha,
    kappa,
    eta,
    compat,
    *,
    n_agents,
    window,
    ridge_window,
    homogeneity,
):
    """Features (one compiled call) then the loop (another, shared with
    `fedmoe_game_on_features`)."""
    features = eqx.filter_jit(agent_features_and_moments)
    Z, M, S = features(encoder, x, key=key, n_agents=n_agents, homogeneity=homogeneity)
    return _run(
        Z, M, S, y, gamma, alpha, kappa, eta, compat, window=window, ridge_window=ridge_window
    )


@eqx.filter_jit
def _run(Z, M, S, y, gamma, alpha, kappa, eta, compat, *, window, ridge_window):
    dt = Z.dtype
    y = y.astype(dt)
    n_rows, N, d, p = Z.shape
    T, Tc = window, ridge_window
    weigh = lambda Y, y_t: ridge_weights(Y.T, y_t, kappa, eta)  # Y: (N, d)

    # warm-up t = 0..T−1: the greedy local ridge on each client's own past ŷ_τ, τ ≥ 0
    def warm_step(carry, t):
        yhat, hist = carry  # ŷ_t (N, d); ŷ_0..ŷ_T (T + 1, N, d), filled up to t
        taus = t - Tc + jnp.arange(Tc)
        idx = jnp.maximum(taus, 0)
        wts = jnp.where(taus >= 0, jnp.exp(-alpha * (t - 1 - taus).astype(dt)), 0.0)
        nxt = _greedy(Z[idx], hist[idx], y[idx + 1], Z[t], yhat, wts, gamma)
        w_t = weigh(yhat, y[t])
        hist = lax.dynamic_update_index_in_dim(hist, nxt, t + 1, 0)
        return (nxt, hist), (nxt, w_t @ nxt, w_t)

    yhat = jnp.broadcast_to(y[0], (N, d)).astype(dt)
    hist = jnp.broadcast_to(yhat, (T + 1, N, d))
    (yhat, _), (w_pred, w_srv, ws) = lax.scan(warm_step, (yhat, hist), jnp.arange(T))

    def game_step(carry, t):
        yhat, w_buf = carry  # ŷ_t (N, d); w_{t−T..t−1} (T, N)
        w_t = weigh(yhat, y[t])
        sl = lambda a, k: lax.dynamic_slice_in_dim(a, t - T, k)
        sol = _solve(sl(M, T), sl(S, T), w_buf, sl(y, T + 1), gamma, alpha, compat)
        Y, beta = replay_fedmoe_game(sol, sl(Z, T), y[t - T])
        nxt = Y[-1] + jnp.einsum("iak,ik->ia", Z[t], beta[-1])
        w_buf = jnp.concatenate([w_buf[1:], w_t[None]], axis=0)
        return (nxt, w_buf), (nxt, w_t @ nxt, w_t)

    # w_0..w_{T−1} start the game's weight buffer
    _, (g_pred, g_srv, g_w) = lax.scan(game_step, (yhat, ws), jnp.arange(T, n_rows - 1))
    agent_pred = jnp.concatenate([w_pred, g_pred], axis=0)  # (n−1, N, d)
    server_pred = jnp.concatenate([w_srv, g_srv], axis=0)  # (n−1, d)
    weights = jnp.concatenate([ws, g_w], axis=0)
    target = y[1:]
    agent_rmse = jnp.sqrt(jnp.mean(jnp.sum((agent_pred - target[:, None]) ** 2, -1), axis=0))
    server_rmse = jnp.sqrt(jnp.mean(jnp.sum((server_pred - target) ** 2, -1)))
    frozen = jnp.all(Z[:-1] == 0, axis=(0, 2, 3))  # the features of steps 0..n−2
    return FedmoeGameResult(
        agent_rmse=agent_rmse,
        avg_rmse=jnp.mean(agent_rmse),
        worst_rmse=jnp.max(agent_rmse),
        worst_agent=jnp.argmax(agent_rmse),
        server_rmse=server_rmse,
        server_pred=server_pred,
        agent_pred=agent_pred,
        weights=weights,
        frozen=frozen,
    )


def fedmoe_game_summary(
    result: FedmoeGameResult, y: Float[ArrayLike, "time d"]
) -> tuple[Summary, StepStats]:
    """`simulate_fedmoe_game`'s result as the simulator's `Summary` and `StepStats`, so that
    it sits beside the other methods in a table: the same RMSE summaries, frozen share,
    worst mover and diverged count. Its realized costs (`worst_cost`, `mean_cost`) are NaN:
    FedMOE's clients pay the server's mixture error, not the simulator's cost."""
    y = jnp.asarray(y)
    err = y[1:, None, :] - result.agent_pred  # (T, N, d)
    sq = jnp.sum(err**2, axis=-1)
    mean_pred = jnp.mean(result.agent_pred, axis=1)
    steps = StepStats(
        mse=jnp.mean(sq, axis=1),
        worst_se=jnp.max(sq, axis=1),
        server_se=jnp.sum((y[1:] - result.server_pred) ** 2, axis=-1),
        mean_field_se=jnp.sum((y[1:] - mean_pred) ** 2, axis=-1),
        server_pred=result.server_pred,
        agent_pred=result.agent_pred[:, 0],
    )
    n = result.agent_rmse.shape[0]
    nan = jnp.full((n,), jnp.nan, result.agent_rmse.dtype)
    summary = summarize(
        result.agent_rmse, nan, ~result.frozen, steps, Population(n), persistence_rmse(y, 1)
    )
    return summary, steps
