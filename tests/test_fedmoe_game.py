"""`fedmoe_game`: FedMOE's own dense N-player window game and its online driver.

* a float64 NumPy transcription of FedMOE's recursion, block loop by block loop, in both
  layouts (correct, and FedMOE's plain reshape + `Â` without `ρ` in the value update);
* the correct layout is a feedback Nash equilibrium: brute-force backward induction with
  exact expectations over a discrete feature law, first-order conditions by autodiff;
* the reduced FNE of `memoa_jax.nash` where the games coincide: N = 1 (η = 1 forces w = 1),
  and, for N > 1, the uniform weights `w = 𝟙/N` of κ → ∞ against the project's block algebra
  (`nash._blocks`, `value_step`) with FedMOE's stage weight `𝟙𝟙ᵀ/N²`;
* compat = correct where both defects vanish (p = 1, α = 0), and only there;
* the online driver against a NumPy transcription of FedMOE's `Server.fit`, and its draws
  and warm-up against `simulate`.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memoa_jax as mj
from memoa_jax._fedmoe_game import (
    agent_features_and_moments,
    fedmoe_game_on_features,
    replay_fedmoe_game,
    simulate_fedmoe_game,
    solve_fedmoe_game,
)
from memoa_jax._moments import second_moment_operator
from memoa_jax.nash import _blocks as bl
from memoa_jax.nash._reduced import covariance_operator, symmetric_profile, value_step

# ---------------------------------------------------------------- NumPy transcription of FedMOE


def np_fedmoe_game(M, S, w, y, gamma, alpha, compat):
    """FedMOE's `sync_round` backward pass (`game.py`, `rfn_game.py`), one block at a time."""
    T, N, d, p = M.shape
    P = [np.zeros((N * d, N * d)) for _ in range(N)]
    Sv = [np.zeros(N * d) for _ in range(N)]
    G_all, H_all = [None] * T, [None] * T

    def to_matrix(blocks):
        if compat:
            return blocks.reshape(N * p, N * p)
        out = np.zeros((N * p, N * p))
        for i in range(N):
            for j in range(N):
                out[i * p : (i + 1) * p, j * p : (j + 1) * p] = blocks[i, j]
        return out

    def block(Q, i, j):
        return Q[i * d : (i + 1) * d, j * d : (j + 1) * d]

    def expect(Q, s):
        out = np.zeros((N, N, p, p))
        for i in range(N):
            for j in range(N):
                if i == j:
                    Qii = block(Q, i, i)
                    for a in range(d):
                        for b in range(d):
                            out[i, i] += Qii[a, b] * S[s, i, a, :, b, :]
                else:
                    out[i, j] = M[s, i].T @ block(Q, i, j) @ M[s, j]
        return out

    def e_m(i, s):  # E_i Mⁱ, (Nd, p)
        out = np.zeros((N * d, p))
        out[i * d : (i + 1) * d] = M[s, i]
        return out

    for s in reversed(range(T)):
        rho = np.exp(-alpha * (T - 1 - s))
        W = np.kron(w[s][:, None], np.eye(d))
        WW, Wy = W @ W.T, W @ y[s + 1]
        Mbar = np.concatenate([e_m(i, s) for i in range(N)], axis=1)
        A_hat = to_matrix(expect(WW, s))
        D = [expect(P[i], s) for i in range(N)]
        A4 = np.stack([D[i][i] for i in range(N)])
        A = to_matrix(A4)
        B = np.concatenate([(P[i] @ e_m(i, s)).T for i in range(N)], axis=0)
        C = np.concatenate([e_m(i, s).T @ Sv[i] for i in range(N)])
        first = rho * gamma * np.eye(N * p) + A + rho * A_hat
        G = -np.linalg.inv(first) @ (rho * Mbar.T @ WW + B)
        H = np.linalg.inv(first) @ (rho * Mbar.T @ Wy - C)
        for i in range(N):
            E_i = np.zeros((N * p, p))
            E_i[i * p : (i + 1) * p] = np.eye(p)
            X = (1.0 if compat else rho) * A_hat + to_matrix(D[i]) + rho * gamma * E_i @ E_i.T
            Q = rho * WW + P[i]
            ell = -rho * Wy + Sv[i]
            P_new = G.T @ X @ G + Q @ Mbar @ G + G.T @ Mbar.T @ Q.T + Q
            S_new = G.T @ X @ H + Q @ Mbar @ H + G.T @ Mbar.T @ ell + ell
            P[i], Sv[i] = P_new, S_new
        G_all[s], H_all[s] = G, H
    return np.stack(G_all), np.stack(H_all)


def random_window(rng, T, N, d, p, shared=False):
    """Per-agent exact RFN moments at random pre-activations, random weights and targets."""
    sigma = jnp.asarray(rng.uniform(0.3, 1.0, d))
    pre = rng.normal(size=(T, 1 if shared else N, d, p))
    M, S = jax.vmap(jax.vmap(lambda a: mj.rfn_moments(jnp.asarray(a), sigma)))(pre)
    if shared:
        M, S = jnp.repeat(M, N, axis=1), jnp.repeat(S, N, axis=1)
    w = rng.normal(size=(T, N))
    w = w / w.sum(axis=1, keepdims=True)  # affine weights, summing to η = 1
    y = rng.normal(size=(T + 1, d))
    return np.asarray(M), np.asarray(S), w, y


@pytest.mark.parametrize(
    "N,d,p,compat",  # FedMOE's game (compat) is defined for d = 1 only
    [(3, 1, 2, False), (3, 1, 2, True), (2, 1, 2, False), (2, 1, 2, True), (2, 2, 1, False)],
)
def test_matches_numpy_transcription(N, d, p, compat):
    rng = np.random.default_rng(10 * N + p + d)
    M, S, w, y = random_window(rng, 3, N, d, p)
    sol = solve_fedmoe_game(M, S, w, y, gamma=0.7, alpha=0.4, fedmoe_compat=compat)
    G, H = np_fedmoe_game(M, S, w, y, 0.7, 0.4, compat)
    np.testing.assert_allclose(sol.G, G, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sol.H, H, rtol=1e-10, atol=1e-12)


# ------------------------------------------------- the correct layout is a feedback Nash eq.


def brute_force_fne(zs, probs, w, y, gamma, alpha):
    """Feedback Nash equilibrium by backward induction with exact expectations over a discrete
    feature law (agent i's `Zⁱ_s = zs[s, i, k]` with probability `probs[k]`, independent).
    Each stage's Nash conditions `∂Jⁱ/∂βⁱ = 0` are affine in `(X, β)`: their coefficients are
    read off by central differences, exact for these quadratics up to rounding. No
    hand-derived value update: the continuation values are evaluated by enumeration."""
    T, N, K, d, p = zs.shape
    outcomes = [
        (np.prod([probs[k] for k in ks]), [zs[:, i, k] for i, k in enumerate(ks)])
        for ks in itertools.product(range(K), repeat=N)
    ]
    gains = [None] * T

    def cost(s, i, X, beta):
        """Agent i's expected cost from step s at state X when it and all others play `beta`
        at s and the equilibrium gains from s + 1 on."""
        rho = np.exp(-alpha * (T - 1 - s))
        b = beta.reshape(N, p)
        total = rho * gamma * b[i] @ b[i]
        for pr, Zs in outcomes:
            Xn = X + np.concatenate([Zs[j][s] @ b[j] for j in range(N)])
            err = y[s + 1] - Xn.reshape(N, d).T @ w[s]
            total += pr * rho * err @ err
            if s + 1 < T:
                G, H = gains[s + 1]
                total += pr * cost(s + 1, i, Xn, G @ Xn + H)
        return total

    def foc(s, X, beta):
        out = []
        for i in range(N):
            for k in range(p):
                e = np.zeros(N * p)
                e[i * p + k] = 1.0
                out.append((cost(s, i, X, beta + e) - cost(s, i, X, beta - e)) / 2.0)
        return np.array(out)

    for s in reversed(range(T)):
        X0, b0 = np.zeros(N * d), np.zeros(N * p)
        f0 = foc(s, X0, b0)
        A = np.stack([foc(s, X0, e) - f0 for e in np.eye(N * p)], axis=1)
        B = np.stack([foc(s, e, b0) - f0 for e in np.eye(N * d)], axis=1)
        gains[s] = (-np.linalg.solve(A, B), -np.linalg.solve(A, f0))
    return np.stack([g for g, _ in gains]), np.stack([h for _, h in gains])


@pytest.mark.parametrize("d,p", [(1, 2), (2, 1)])
def test_correct_layout_is_the_feedback_nash_equilibrium(d, p):
    rng = np.random.default_rng(3 + d)
    T, N, K = 3, 2, 2
    zs = rng.uniform(0.0, 1.5, size=(T, N, K, d, p))
    probs = np.array([0.3, 0.7])
    M = np.einsum("k,tikap->tiap", probs, zs)
    S = np.einsum("k,tikap,tikbq->tiapbq", probs, zs, zs)
    w = np.array([[0.7, 0.3], [1.4, -0.4], [0.2, 0.8]])
    y = rng.normal(size=(T + 1, d))
    G_bf, H_bf = brute_force_fne(zs, probs, w, y, 0.5, 0.6)
    sol = solve_fedmoe_game(M, S, w, y, gamma=0.5, alpha=0.6)
    np.testing.assert_allclose(sol.G, G_bf, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sol.H, H_bf, rtol=1e-8, atol=1e-10)
    if d == 1:  # p = 2, N = 2, α > 0: FedMOE's own recursion is not this equilibrium
        compat = solve_fedmoe_game(M, S, w, y, gamma=0.5, alpha=0.6, fedmoe_compat=True)
        assert np.max(np.abs(compat.G - G_bf)) > 1e-3


# ------------------------------------------------------------------------ compat vs correct


def test_compat_equals_correct_where_both_defects_vanish():
    rng = np.random.default_rng(7)
    M1, S1, w, y = random_window(rng, 3, 3, 1, 1)
    kw = dict(gamma=0.9)
    a = solve_fedmoe_game(M1, S1, w, y, alpha=0.0, fedmoe_compat=False, **kw)
    b = solve_fedmoe_game(M1, S1, w, y, alpha=0.0, fedmoe_compat=True, **kw)
    np.testing.assert_allclose(a.G, b.G, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.H, b.H, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.P, b.P, rtol=1e-12, atol=1e-14)
    # each defect alone is visible: ρ ≠ 1 (p = 1), and the scrambled layout (p = 2, α = 0)
    a = solve_fedmoe_game(M1, S1, w, y, alpha=0.5, fedmoe_compat=False, **kw)
    b = solve_fedmoe_game(M1, S1, w, y, alpha=0.5, fedmoe_compat=True, **kw)
    assert np.max(np.abs(a.G[:-1] - b.G[:-1])) > 1e-4
    np.testing.assert_allclose(a.G[-1], b.G[-1], rtol=1e-12)  # the last step has no value term
    M2, S2, w, y = random_window(rng, 3, 3, 1, 2)
    a = solve_fedmoe_game(M2, S2, w, y, alpha=0.0, fedmoe_compat=False, **kw)
    b = solve_fedmoe_game(M2, S2, w, y, alpha=0.0, fedmoe_compat=True, **kw)
    assert np.max(np.abs(a.G - b.G)) > 1e-4


# ------------------------------------------------------------ the project's reduced FNE


@pytest.mark.parametrize("compat", [False, True])
def test_one_agent_is_the_reduced_fne(compat):
    """N = 1: η = 1 forces w = 1 whatever κ; the game is the project's with q = 1, λ = 0.
    (Compat: the layout is exact for N = 1; the Â defect needs α = 0 to vanish.)"""
    rng = np.random.default_rng(11)
    M, S, _, y = random_window(rng, 3, 1, 1, 2)
    alpha = 0.0 if compat else 0.8
    sol = solve_fedmoe_game(M, S, np.ones((3, 1)), y, gamma=0.6, alpha=alpha, fedmoe_compat=compat)
    cost = mj.CostParams(q=1.0, lam=0.0, gamma=0.6, alpha=alpha)
    fne = mj.solve_fne_reduced(jnp.asarray(M[:, 0]), jnp.asarray(S[:, 0]), jnp.asarray(y), cost, 1)
    np.testing.assert_allclose(sol.G, fne.K, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sol.H, fne.h, rtol=1e-10, atol=1e-12)


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def reduced_uniform_fne(M, S, y, gamma, alpha, n):
    """The symmetric FNE of FedMOE's game with `w = 𝟙/N` and shared moments, in the O(1)-in-N
    block algebra of `memoa_jax.nash` (`solve_fne_reduced`'s gains and `value_step`), with
    FedMOE's stage weight `W = 𝟙𝟙ᵀ/N² ⊗ I` and linear term `−ρ 𝟙 ⊗ y/N` in place of
    MEMOA's `(q e_ie_iᵀ + λ u_iu_iᵀ) ⊗ I` and `−ρ q E_i y`."""
    T, d, p = M.shape
    eye_d, eye_p = jnp.eye(d), jnp.eye(p)
    zeros = jnp.zeros((d, d))
    P, Sv, c = bl.Blocks(*(zeros,) * 5), bl.Pair(jnp.zeros(d), jnp.zeros(d)), 0.0
    W = bl.Blocks(*(eye_d / n**2,) * 5)
    out = [None] * T
    for s in reversed(range(T)):
        rho = np.exp(-alpha * (T - 1 - s))
        M_s, S_s = M[s], S[s]
        Q = bl.each(lambda w_, x: rho * w_ + x, W, P)
        ell = bl.Pair(Sv.own - rho * y[s + 1] / n, Sv.other - rho * y[s + 1] / n)
        R = second_moment_operator(Q.a, S_s) + rho * gamma * eye_p
        MQbM = M_s.T @ Q.b @ M_s
        X_A, mean_A = R - MQbM, R - MQbM + n * MQbM
        K = -jnp.linalg.solve(X_A, M_s.T @ (Q.a - Q.b))
        KL = -jnp.linalg.solve(mean_A, M_s.T @ (Q.a - Q.b) + n * (M_s.T @ Q.b))
        h = -jnp.linalg.solve(mean_A, M_s.T @ ell.own)
        G, H = symmetric_profile(K, KL - K, h, n)
        D = bl.block_diagonal(
            covariance_operator(Q.a, M_s, S_s) + rho * gamma * eye_p,
            covariance_operator(Q.c, M_s, S_s),
        )
        P, Sv, c = value_step(P, Sv, c, Q, ell, G, H, D, M_s, 0.0, n)
        out[s] = (K, KL - K, h)
    return [jnp.stack(a) for a in zip(*out)]


def test_uniform_weights_are_the_reduced_fne_in_the_block_algebra():
    """κ → ∞ (η = 1) makes the server weights 𝟙/N; with shared moments FedMOE's game is then
    symmetric, `G_ii = K + L/N`, `G_ij = L/N`, `H_i = h`, and equals the reduced solve. (It
    is not MEMOA's game for any (q, λ): `‖y − ȳ‖²` has weight `𝟙𝟙ᵀ/N²`, whose (i, j) and
    (j, k) blocks would need λ = −1/(N−1) and λ = 1.)"""
    rng = np.random.default_rng(5)
    N, d, p, T = 3, 1, 2, 3
    M, S, _, y = random_window(rng, T, N, d, p, shared=True)
    Y = jnp.asarray(rng.normal(size=(d, N)))
    w_inf = mj.ridge_weights(Y, jnp.asarray(y[0]), 1e12, 1.0)
    np.testing.assert_allclose(w_inf, np.full(N, 1.0 / N), atol=1e-10)
    w = np.full((T, N), 1.0 / N)
    sol = solve_fedmoe_game(M, S, w, y, gamma=0.4, alpha=0.3)
    K, L, h = reduced_uniform_fne(M[:, 0], S[:, 0], jnp.asarray(y), 0.4, 0.3, N)
    K, L, h = (np.asarray(a) for a in (K, L, h))
    G = np.asarray(sol.G).reshape(T, N, p, N, d)
    for i in range(N):
        for j in range(N):
            want = K + L / N if i == j else L / N
            np.testing.assert_allclose(G[:, i, :, j, :], want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(sol.H).reshape(T, N, p), np.stack([h] * N, 1), rtol=1e-9)


# ----------------------------------------------------------------------- the online driver


def np_server_fit(Z, M, S, y, N, gamma, alpha, T, Tc, kappa, eta, compat):
    """FedMOE's `Server.fit` (game every step) on given features and moments, in NumPy."""
    n_rows, _, d, p = Z.shape

    def weights(Y, y_t):  # `compute_mixture_weights`, Y: (N, d)
        A = 2 * (Y @ Y.T + kappa * np.eye(N))
        b = 2 * Y @ y_t
        one = np.ones(N)
        nu = (one @ np.linalg.inv(A) @ b - eta) / (one @ np.linalg.inv(A) @ one)
        return np.linalg.inv(A) @ (b - nu * one)

    hist = [np.tile(y[0], (N, 1))]  # the clients' own predictions ŷ_0..ŷ_t
    yhat, ws, preds, server = hist[0], [], [], []
    for t in range(n_rows - 1):
        w_t = weights(yhat, y[t])
        if t >= T:
            sl = slice(t - T, t)
            G, H = np_fedmoe_game(M[sl], S[sl], np.stack(ws[t - T : t]), y[t - T : t + 1],
                                  gamma, alpha, compat)  # fmt: skip
            X = np.tile(y[t - T], N)
            for s in range(T):
                beta = G[s] @ X + H[s]
                X = X + np.concatenate(
                    [Z[t - T + s, i] @ beta[i * p : (i + 1) * p] for i in range(N)]
                )
            nxt = X.reshape(N, d) + np.stack(
                [Z[t, i] @ beta[i * p : (i + 1) * p] for i in range(N)]
            )
        else:  # the greedy local ridge client
            nxt = np.empty((N, d))
            for i in range(N):
                gram, rhs = gamma * np.eye(p), np.zeros(p)
                for s in range(max(t - Tc, 0), t):
                    r = np.exp(-alpha * (t - 1 - s))
                    gram += r * Z[s, i].T @ Z[s, i]
                    rhs += r * Z[s, i].T @ (y[s + 1] - hist[s][i])
                nxt[i] = yhat[i] + Z[t, i] @ np.linalg.solve(gram, rhs)
        ws.append(w_t)
        preds.append(nxt)
        server.append(w_t @ nxt)
        yhat = nxt
        hist.append(nxt)
    return np.stack(preds), np.stack(server)


def roundoff_sensitivity(f, *args, tries: int = 4) -> float:
    """The largest relative change of `f(*args)` when each input is perturbed by one ulp
    (random signs, float64): the spread that round-off alone gives two correct evaluations of
    the same computation in a different order, measured rather than assumed."""
    rng = np.random.default_rng(0)
    eps = np.finfo(np.float64).eps
    base = f(*args)
    worst = 0.0
    for _ in range(tries):
        moved = f(*(a * (1 + eps * rng.choice([-1.0, 1.0], a.shape)) for a in args))
        worst = max(worst, float(np.max(np.abs(moved - base) / np.maximum(np.abs(base), 1e-300))))
    return worst


@pytest.mark.parametrize("compat", [pytest.param(False, marks=pytest.mark.slow), True])
def test_driver_is_fedmoe_server_fit(compat):
    rng = np.random.default_rng(2)
    n_rows, d_x, N, p, T, Tc = 14, 3, 3, 2, 3, 2
    x, y = rng.uniform(-1, 1, size=(n_rows, d_x)), rng.normal(size=(n_rows, 1))
    enc = mj.RFNEncoder(d=1, d_x=d_x, p=p, sigma=0.5)
    key = jax.random.key(4)
    kw = dict(gamma=0.8, alpha=0.3, window=T, ridge_window=Tc, kappa=0.5, eta=1.0)
    res = simulate_fedmoe_game(enc, x, y, key=key, n_agents=N, fedmoe_compat=compat, **kw)
    Z, M, S = (np.asarray(a) for a in agent_features_and_moments(enc, x, key=key, n_agents=N))
    preds, server = np_server_fit(Z, M, S, y, N, 0.8, 0.3, T, Tc, 0.5, 1.0, compat)
    on_features = fedmoe_game_on_features(Z, M, S, y, fedmoe_compat=compat, **kw)
    # two compiled paths of the same float64 arithmetic, in another order: they may differ by
    # what one ulp of the inputs moves the result (FedMOE's game, compat=True, is ill-conditioned:
    # 1 ulp of the features moves the server's prediction by ~2e-9, relative, here)
    sens = roundoff_sensitivity(
        lambda Z_, M_, S_: np_server_fit(Z_, M_, S_, y, N, 0.8, 0.3, T, Tc, 0.5, 1.0, compat)[1],
        Z,
        M,
        S,
    )
    rtol = max(1e-12, 8 * sens)
    np.testing.assert_allclose(on_features.server_pred, res.server_pred, rtol=rtol, atol=1e-14)
    np.testing.assert_allclose(res.agent_pred, preds, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(res.server_pred, server, rtol=1e-9, atol=1e-11)
    err = (preds - y[1:, None]) ** 2
    np.testing.assert_allclose(res.agent_rmse, np.sqrt(err.sum(-1).mean(0)), rtol=1e-9)
    np.testing.assert_allclose(res.server_rmse, np.sqrt(((server - y[1:]) ** 2).mean()), rtol=1e-9)
    assert res.worst_rmse == res.agent_rmse.max() and res.avg_rmse == pytest.approx(
        float(res.agent_rmse.mean())
    )


def test_driver_draws_and_warm_up_equal_simulate():
    """Same key ⇒ same encoders and feature draws as `simulate`: before the first game
    (`t < T`) the driver is G1 (FedMOE's greedy client) under the same server."""
    rng = np.random.default_rng(8)
    n_rows, d_x, N, p, T, Tc = 14, 3, 3, 2, 3, 2  # the shapes of the test above: one compile
    x, y = rng.uniform(0, 1, size=(n_rows, d_x)), rng.normal(size=(n_rows, 1))
    enc = mj.RFNEncoder(d=1, d_x=d_x, p=p, sigma=0.3)
    cost = mj.CostParams(gamma=0.5, alpha=0.2)
    sim = mj.Simulation(n_agents=N, encoder=enc, methods=(mj.LocalRidge(cost, ridge_window=Tc),))
    ref = jax.jit(mj.simulate)(sim, x, y, key=jax.random.key(9), track_agent=1)
    res = simulate_fedmoe_game(
        enc, x, y, key=jax.random.key(9), n_agents=N, gamma=0.5, alpha=0.2, window=T,
        ridge_window=Tc,
    )  # fmt: skip
    g1 = ref.steps["g1_ridge"]
    np.testing.assert_allclose(res.server_pred[:T], g1.server_pred[:T], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.agent_pred[:T, 1], g1.agent_pred[:T], rtol=1e-9, atol=1e-12)
    assert np.max(np.abs(np.asarray(res.agent_pred[1:T]) - y[0])) > 1e-3  # the warm-up moves


def test_replay_restarts_at_the_window_start():
    rng = np.random.default_rng(1)
    M, S, w, y = random_window(rng, 3, 3, 1, 1)
    sol = solve_fedmoe_game(M, S, w, y, gamma=1.0, alpha=0.0)
    Z = np.zeros((3, 3, 1, 1))  # frozen clients never move from y_0
    Y, beta = replay_fedmoe_game(sol, jnp.asarray(Z), jnp.asarray(y[0]))
    np.testing.assert_array_equal(Y, np.broadcast_to(y[0], (4, 3, 1)))


# ------------------------------------------------------------------------------ validation


def test_validation_names_the_value():
    rng = np.random.default_rng(0)
    enc = mj.RFNEncoder(d=1, d_x=2, p=1)
    x, y = rng.normal(size=(10, 2)), rng.normal(size=(10, 1))
    key = jax.random.key(0)
    kw = dict(key=key, gamma=1.0, alpha=0.1)
    with pytest.raises(ValueError, match="n_agents=33"):
        simulate_fedmoe_game(enc, x, y, n_agents=33, **kw)
    with pytest.raises(ValueError, match="n_agents=0"):
        simulate_fedmoe_game(enc, x, y, n_agents=0, **kw)
    with pytest.raises(ValueError, match="window=9"):
        simulate_fedmoe_game(enc, x, y, n_agents=2, window=9, **kw)
    with pytest.raises(ValueError, match="gamma=0"):
        simulate_fedmoe_game(enc, x, y, n_agents=2, key=key, gamma=0.0, alpha=0.1)
    with pytest.raises(ValueError, match="kappa=-1"):
        simulate_fedmoe_game(enc, x, y, n_agents=2, kappa=-1.0, **kw)
    with pytest.raises(ValueError, match="ESNEncoder"):
        simulate_fedmoe_game(mj.ESNEncoder(d=1, d_x=2, p=1), x, y, n_agents=2, **kw)
    enc2 = mj.RFNEncoder(d=2, d_x=2, p=1)
    with pytest.raises(ValueError, match="d=2"):
        simulate_fedmoe_game(enc2, x, np.zeros((10, 2)), n_agents=2, fedmoe_compat=True, **kw)
    M, S, w, y4 = random_window(rng, 3, 2, 1, 1)
    with pytest.raises(ValueError, match="alpha=-1"):
        solve_fedmoe_game(M, S, w, y4, gamma=1.0, alpha=-1.0)
    with pytest.raises(ValueError, match="n_agents=33"):
        solve_fedmoe_game(*(np.zeros((1, 33) + a.shape[2:]) for a in (M, S, w)), y4[:2], gamma=1.0,
                          alpha=0.0)  # fmt: skip
    M, S, w, y4 = random_window(rng, 3, 2, 2, 1)
    with pytest.raises(ValueError, match="d=2"):
        solve_fedmoe_game(M, S, w, y4, gamma=1.0, alpha=0.0, fedmoe_compat=True)
