"""Independent float64 NumPy implementation of the MEMOA online loop (the oracle and the baseline).

This module never imports JAX itself: it is the cross-check of `memoa_jax.simulate` and the
NumPy baseline of `memoa bench`. (Imported as `memoa_jax.reference`, the
package's `__init__` still loads JAX; load the file on its own, e.g. with `importlib.util`, to
avoid that.) It is written directly from the spec (`memoa-math.md` §2.1, §4, §7, §8, §9),
not as a translation of the JAX code: a plain Python loop over time, NumPy arrays over agents
(agent axis last inside the loop), and shift-register histories (Python lists holding the
last `H` steps) instead of ring buffers. SciPy is imported lazily (only `ndtr`).

Protocol at step `t = 0..n−2` (target `y_{t+1}`), per method, all methods on the same draws:

1. features `Zⁱ_t = features(t)` (N, d, p); population moments `moments(t)` are stored for
   the windows of later steps;
2. the method's base state `bⁱ_t`, control `βⁱ_t` and prediction `ŷⁱ_{t+1} = bⁱ_t + Zⁱ_t βⁱ_t`:
   * `ridge` (G1): `b = ŷ_t`, `β` = discounted ridge on the last `T_c` steps (§7.2);
   * `follow_mean` (G4): `b = ȳ_t` for every agent, `β` = the same ridge on the history of
     bases (or `β = 0`, `ŷ_{t+1} = ȳ_t` without increment);
   * `game` (MEMOA, G2, G3): on sync steps (`t ≥ T` and `t mod sync_every = 0`) the closed
     form gains of the window `t−T..t` are solved and the window is replayed from `y_{t−T}`
     with the realized features; `b = ŷ_T`, `β = β_{T−1}`. Otherwise the G1 ridge step.
3. the server predicts `ŷ^srv_{t+1}` from `(Ŷ_t, y_t)` (constrained ridge, §8) or the cumulative
   losses (hedge);
4. step statistics and per-agent accumulators (squared errors and the realized stage cost
   `q‖y_{t+1} − ŷⁱ_{t+1}‖² + λ‖ŷⁱ_{t+1} − ȳ_{t+1}‖² + γ‖βⁱ_t‖²` with the yardstick weights).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "config_from_simulation",
    "default_methods_config",
    "rfn_features_numpy",
    "rfn_moments_numpy",
    "rfn_population_moments_numpy",
    "simulate_numpy",
    "solve_mean_field_numpy",
]

_COST_KEYS = ("q", "lam", "gamma", "alpha", "q_T", "lam_T")
_COST_DEFAULTS = dict(q=1.0, lam=0.5, gamma=10.0, alpha=1e-3, q_T=0.0, lam_T=0.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Random-feature encoders (spec §1.2, §2.1)


def _pdf(x):
    return _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def _preactivation(A, b, x):
    """`A x 1ᵀ + b` over any leading agent axes of `A` / `b`."""
    A, b, x = np.asarray(A, np.float64), np.asarray(b, np.float64), np.asarray(x, np.float64)
    return (A @ x)[..., None] + b


def rfn_features_numpy(
    A, b, sigma, x, rng: np.random.Generator, n_agents: int | None = None, noise_dtype=np.float64
):
    """Draws `Z = ReLU(A x 1ᵀ + b + σ wᵀ)`, fresh `w ~ N(0, I_p)` per agent, from `rng`.

    Args:
        A: `(N, d, d_x)` per-agent input weights (H2) or `(d, d_x)` shared ones (H1).
        b: `(N, d, p)` or `(d, p)` biases.
        sigma: scalar or `(d,)` noise scales.
        x: `(d_x,)` the public input.
        rng: a NumPy generator (the noise source).
        n_agents: the population size when `A`, `b` are shared (H1).
        noise_dtype: float type in which `w` is drawn (then promoted to float64); the JAX
            encoders draw float32 (numpy supports float32 and float64).

    Returns:
        `(N, d, p)` features.
    """
    pre = _preactivation(A, b, x)
    d, p = pre.shape[-2:]
    lead = pre.shape[:-2]
    if not lead:
        if n_agents is None:
            raise ValueError("shared encoder parameters (H1) need n_agents")
        lead = (n_agents,)
    sig = np.broadcast_to(np.asarray(sigma, np.float64), (d,))
    w = rng.standard_normal(lead + (p,), dtype=np.dtype(noise_dtype)).astype(np.float64)
    return np.maximum(pre + sig[:, None] * w[..., None, :], 0.0)


def _rfn_parts(pre, sigma):
    """Mean `(…, d, p)` and the shared-noise moments `E Z_ak Z_bk` `(…, d, d, p)` (spec §2.1)."""
    pre = np.asarray(pre, np.float64)
    from scipy.special import ndtr

    d = pre.shape[-2]
    sig = np.broadcast_to(np.asarray(sigma, np.float64), (d,))[:, None]  # (d, 1)
    r = pre / sig
    cdf, dens = ndtr(r), _pdf(r)
    mean = pre * cdf + sig * dens
    diag = (pre * pre + sig * sig) * cdf + pre * sig * dens  # E Z_ak²
    if d == 1:
        return mean, diag[..., :, None, :]
    # rows a ≠ b share w_k: Z_ak Z_bk > 0 iff w_k > c = max(−a₁/σ₁, −a₂/σ₂)
    a1, a2 = pre[..., :, None, :], pre[..., None, :, :]  # (…, d, d, p)
    s1, s2 = sig[:, None, :], sig[None, :, :]  # (d, d, 1)
    c = np.maximum(-a1 / s1, -a2 / s2)
    tail, dc = ndtr(-c), _pdf(c)
    same = a1 * a2 * tail + (a1 * s2 + a2 * s1) * dc + s1 * s2 * (c * dc + tail)
    idx = np.arange(d)
    same[..., idx, idx, :] = diag
    return mean, same


def rfn_moments_numpy(pre, sigma):
    """Closed-form moments of `Z_ak = ReLU(pre_ak + σ_a w_k)`, `w ~ N(0, I_p)` (spec §2.1).

    Args:
        pre: `(…, d, p)` pre-activations `A x 1ᵀ + b` (any leading agent axes).
        sigma: scalar or `(d,)` noise scales.

    Returns:
        `(M, S)` with `M = E Z` `(…, d, p)` and `S[…, a, k, b, l] = E Z_ak Z_bl` `(…, d, p, d, p)`.
    """
    mean, same = _rfn_parts(pre, sigma)
    p = mean.shape[-1]
    eye = np.eye(p)
    S = mean[..., :, :, None, None] * mean[..., None, None, :, :]  # k ≠ l: independent w_k, w_l
    S = S * (1.0 - eye)[:, None, :]  # zero the k = l entries: (p, 1, p) over (k, b, l)
    # k = l: rows a, b share w_k.  S[a, k, b, k] = same[a, b, k]
    S = S + np.einsum("...abk,kl->...akbl", same, eye)
    return mean, S


def rfn_population_moments_numpy(pre, sigma):
    """Population moments `(mean_i Mⁱ, mean_i Sⁱ)` over all leading axes of `pre` (H2, §2.2).

    Same quantity as averaging `rfn_moments_numpy`, without forming the `(N, d, p, d, p)` array:
    the `k ≠ l` part is the mean of outer products of the agents' means (one matmul).
    """
    mean, same = _rfn_parts(pre, sigma)
    d, p = mean.shape[-2:]
    flat = mean.reshape(-1, d * p)
    n = flat.shape[0]
    outer = (flat.T @ flat / n).reshape(d, p, d, p)
    eye = np.eye(p)
    same_bar = same.reshape(-1, d, d, p).mean(axis=0)
    S = outer * (1.0 - eye)[:, None, :] + np.einsum("abk,kl->akbl", same_bar, eye)
    return flat.mean(axis=0).reshape(d, p), S


# --------------------------------------------------------------------------------------------
# Linear algebra over the agent axis. Inside the loop the agent axis is LAST (structure of
# arrays: predictions (d, N), features (d, p, N), controls (p, N)), so that every per-agent
# operation on a small matrix is a handful of contiguous length-N vector operations.


def _spd_solve(A, b):
    """Solve `A x = b` for small SPD matrices, matrix axes first: `A (m, m, …)`, `b (m, …)`.

    Unrolled Cholesky over the static size `m`, vectorised over the trailing (agent) axes.
    """
    m = len(b)
    Lc: list[list[Any]] = [[None] * m for _ in range(m)]
    for j in range(m):
        acc = A[j][j]
        for k in range(j):
            acc = acc - Lc[j][k] * Lc[j][k]
        Lc[j][j] = np.sqrt(acc)
        for i in range(j + 1, m):
            acc = A[i][j]
            for k in range(j):
                acc = acc - Lc[i][k] * Lc[j][k]
            Lc[i][j] = acc / Lc[j][j]
    z: list[Any] = [None] * m
    for i in range(m):
        acc = b[i]
        for k in range(i):
            acc = acc - Lc[i][k] * z[k]
        z[i] = acc / Lc[i][i]
    sol: list[Any] = [None] * m
    for i in reversed(range(m)):
        acc = z[i]
        for k in range(i + 1, m):
            acc = acc - Lc[k][i] * sol[k]
        sol[i] = acc / Lc[i][i]
    return np.stack(sol)


def _apply(Z, beta):
    """`Zⁱ βⁱ` for every agent: `Z (d, p, N)`, `β (p, N)` → `(d, N)`."""
    return np.einsum("apn,pn->an", Z, beta)


def _dot(u, v):
    """Per-agent inner product over the first axis: `(k, N) · (k, N)` → `(N,)`."""
    return np.einsum("kn,kn->n", u, v)


def _ridge_step(zs, bases, targets, weights, gamma):
    """G1 controls `β = (Σ_s w_s Z_sᵀZ_s + γI)⁻¹ Σ_s w_s Z_sᵀ(y_{s+1} − b_s)` of all agents.

    One ridge regression per agent on the stacked rows `√w_s Z_s[a, :]` (k·d rows, p unknowns,
    `zs` of shape `(d, p, N)`, `bases (d, N)`); with fewer rows than unknowns the push-through
    form `Xᵀ(XXᵀ + γI)⁻¹ỹ` is used. Returns `(p, N)`.
    """
    sw = np.sqrt(np.asarray(weights, np.float64))
    X = [w * z[a] for w, z in zip(sw, zs) for a in range(z.shape[0])]  # rows, each (p, N)
    r = [w * (tg[a] - b[a]) for w, tg, b in zip(sw, targets, bases) for a in range(b.shape[0])]
    rows, p = len(X), zs[0].shape[1]
    if rows < p:
        G = [[None] * rows for _ in range(rows)]
        for i in range(rows):
            for j in range(i + 1):
                G[i][j] = G[j][i] = _dot(X[i], X[j]) + (gamma if i == j else 0.0)
        u = _spd_solve(G, r)
        return sum(X[i] * u[i] for i in range(rows))
    Xs = np.stack(X)  # (rows, p, N)
    G = [[None] * p for _ in range(p)]
    for k in range(p):
        for j in range(k + 1):
            G[k][j] = G[j][k] = _dot(Xs[:, k], Xs[:, j]) + (gamma if k == j else 0.0)
    return _spd_solve(G, np.einsum("ipn,in->pn", Xs, np.stack(r)))


# --------------------------------------------------------------------------------------------
# Closed-form mean-field policy (spec §4)


def solve_mean_field_numpy(M, S, y, cost: dict) -> dict:
    """Gains `K, L (T, p, d)`, offsets `g (T, p)`, value terms and flow `m (T+1, d)` (spec §4).

    Args:
        M: `(T, d, p)` window means; S: `(T, d, p, d, p)` second moments.
        y: `(T+1, d)` window targets (`y_0` is the common start).
        cost: dict with q, lam, gamma, alpha, q_T, lam_T.
    """
    M, S, y = (np.asarray(a, np.float64) for a in (M, S, y))
    T, d, p = M.shape
    q, lam, gam, alpha = (float(cost[k]) for k in ("q", "lam", "gamma", "alpha"))
    qT, lamT = float(cost.get("q_T", 0.0)), float(cost.get("lam_T", 0.0))
    Id, Ip = np.eye(d), np.eye(p)
    rho = np.exp(-alpha * (T - 1 - np.arange(T)))
    P, Pi, phi = (qT + lamT) * Id, -lamT * Id, -qT * y[T]
    K, L, g = np.zeros((T, p, d)), np.zeros((T, p, d)), np.zeros((T, p))
    Ps, Pis, phis = [P], [Pi], [phi]
    for s in reversed(range(T)):
        Ms = M[s]
        Q = rho[s] * (q + lam) * Id + P
        R = np.einsum("ab,akbl->kl", Q, S[s]) + rho[s] * gam * Ip
        K[s] = -np.linalg.solve(R, Ms.T @ Q)
        Gam = Pi - rho[s] * lam * Id
        Rt = R + Ms.T @ Gam @ Ms
        if not np.linalg.cond(Rt) < 1.0 / (100.0 * np.finfo(np.float64).eps):
            raise np.linalg.LinAlgError(
                f"R̃ is singular at window step s={s} (of T={T}): the mean-field equilibrium "
                "is not unique"
            )
        IMK = Id + Ms @ K[s]
        ell = phi - rho[s] * q * y[s + 1]
        L[s] = -np.linalg.solve(Rt, Ms.T @ Gam @ IMK)
        g[s] = -np.linalg.solve(Rt, Ms.T @ ell)
        A = Id + Ms @ (K[s] + L[s])
        P = Q - Q @ Ms @ np.linalg.solve(R, Ms.T @ Q)
        P = 0.5 * (P + P.T)
        Pi = IMK.T @ Gam @ A
        phi = IMK.T @ (Gam @ Ms @ g[s] + ell)
        Ps.append(P)
        Pis.append(Pi)
        phis.append(phi)
    m = np.zeros((T + 1, d))
    m[0] = y[0]
    for s in range(T):
        m[s + 1] = (Id + M[s] @ (K[s] + L[s])) @ m[s] + M[s] @ g[s]
    return dict(
        K=K, L=L, g=g, P=np.stack(Ps[::-1]), Pi=np.stack(Pis[::-1]), phi=np.stack(phis[::-1]), m=m
    )


# --------------------------------------------------------------------------------------------
# Configuration


def _cost_of(spec: dict) -> dict:
    src = spec.get("cost", spec)
    return {k: float(src.get(k, _COST_DEFAULTS[k])) for k in _COST_KEYS}


def default_methods_config(
    q=1.0,
    lam=0.5,
    gamma=10.0,
    alpha=1e-3,
    q_T=0.0,
    lam_T=0.0,
    *,
    window=3,
    ridge_window=3,
    sync_every=1,
    mean_field="realized",
) -> list[dict]:
    """The method list of `memoa_jax.default_methods` as plain dicts (MEMOA and G1–G4)."""
    cost = dict(q=q, lam=lam, gamma=gamma, alpha=alpha, q_T=q_T, lam_T=lam_T)
    game = dict(
        kind="game",
        sync_every=sync_every,
        ridge_window=ridge_window,
        mean_field=mean_field,
        replay_base="replay_end",
        replay_control="replay",
        moments="population",
    )
    return [
        dict(name="memoa", window=window, **game, **cost),
        dict(kind="ridge", name="g1_ridge", ridge_window=ridge_window, **cost),
        dict(name="g2_myopic", window=1, **game, **cost),
        dict(name="g3_independent", window=window, **game, **{**cost, "lam": 0.0}),
        dict(
            kind="follow_mean",
            name="g4_follow_mean",
            ridge_window=ridge_window,
            increment=True,
            **cost,
        ),
    ]


def config_from_simulation(sim) -> dict:
    """Plain-dict configuration of a `memoa_jax.Simulation` (leaves converted with `float`)."""

    def cost(c):
        return {k: float(getattr(c, k)) for k in _COST_KEYS}

    methods = []
    for m in sim.methods:
        kind = type(m).__name__
        base = dict(name=m.name, ridge_window=int(m.ridge_window), **cost(m.cost))
        if kind == "MeanFieldGame":
            options = dict(m.options)
            if options.pop("equilibrium") != "mean_field":
                raise TypeError(
                    f"no NumPy reference for MeanFieldGame(equilibrium={m.equilibrium!r})"
                )
            methods.append(
                dict(
                    kind="game",
                    window=int(m.window),
                    sync_every=int(m.sync_every),
                    **options,
                    **base,
                )
            )
        elif kind == "LocalRidge":
            methods.append(dict(kind="ridge", **base))
        elif kind == "FollowTheMean":
            methods.append(dict(kind="follow_mean", increment=bool(m.increment), **base))
        else:
            raise TypeError(f"no NumPy reference for method type {kind}")
    skind = type(sim.server).__name__
    if skind == "RidgeMixture":
        server = dict(kind="ridge", kappa=float(sim.server.kappa), eta=float(sim.server.eta))
    elif skind == "HedgeMixture":
        server = dict(kind="hedge", rate=float(sim.server.rate))
    else:
        raise TypeError(f"no NumPy reference for server type {skind}")
    enc = sim.encoder
    sigma = np.broadcast_to(np.asarray(enc.sigma, np.float64), (enc.d,))
    return dict(
        n_agents=int(sim.n_agents),
        methods=methods,
        server=server,
        cost={k: float(getattr(sim.cost, k)) for k in ("q", "lam", "gamma")},
        homogeneity=str(sim.homogeneity),
        encoder=dict(
            d=int(enc.d),
            d_x=int(enc.d_x),
            p=int(enc.p),
            sigma=sigma.tolist(),
            noise_dtype="float32",  # the encoders draw their step noise in float32
        ),
    )


# --------------------------------------------------------------------------------------------
# Server mixtures (spec §8)


def _ridge_server(Y_t, y_t, Y_next, kappa, eta):
    """`w = argmin ‖y_t − Y_t w‖² + κ‖w‖², 𝟙ᵀw = η` by push-through (O(N d²)); returns `Ŷ_{t+1} w`.

    `Y_t`, `Y_next` are `(d, N)` (agents last): `C = (κI + Y Yᵀ)⁻¹`, `a = YᵀC y`,
    `c = (𝟙 − YᵀC Y𝟙)/κ`, `w = a − ((𝟙ᵀa − η)/𝟙ᵀc) c`.
    """
    d = Y_t.shape[0]
    C = np.linalg.inv(kappa * np.eye(d) + np.einsum("an,bn->ab", Y_t, Y_t))
    a = np.einsum("a,an->n", C @ y_t, Y_t)
    c = (1.0 - np.einsum("a,an->n", C @ Y_t.sum(axis=1), Y_t)) / kappa
    w = a - ((a.sum() - eta) / c.sum()) * c
    return np.einsum("an,n->a", Y_next, w)


def _hedge_server(Y_next, cum_loss, rate):
    """Exponentially weighted average, `w_i ∝ exp(−rate · cum_loss_i)` (log-sum-exp stable)."""
    logits = -rate * cum_loss
    w = np.exp(logits - logits.max())
    return np.einsum("an,n->a", Y_next, w / w.sum())


# --------------------------------------------------------------------------------------------
# The online loop


class _Method:
    """Per-method state (agents last): prediction `ŷ_t (d, N)`, bases, accumulators, stats."""

    def __init__(self, spec: dict, N: int, y0, n_steps: int):
        self.kind = spec.get("kind", "game")
        if self.kind not in ("game", "ridge", "follow_mean"):
            raise ValueError(f"unknown method kind {self.kind!r}")
        self.name = spec["name"]
        self.cost = _cost_of(spec)
        self.ridge_window = int(spec.get("ridge_window", 3))
        self.window = int(spec.get("window", 3)) if self.kind == "game" else 0
        self.sync_every = int(spec.get("sync_every", 1))
        self.mean_field = spec.get("mean_field", "realized")
        if self.mean_field not in ("realized", "flow"):
            raise ValueError(f"mean_field must be 'realized' or 'flow', got {self.mean_field!r}")
        self.replay_base = spec.get("replay_base", "replay_end")
        self.replay_control = spec.get("replay_control", "replay")
        self.moments = spec.get("moments", "population")
        self.increment = bool(spec.get("increment", True))
        for k in ("ridge_window", "sync_every") + (("window",) if self.kind == "game" else ()):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be a positive integer")
        self.history = max(self.window, self.ridge_window)
        self.yhat = np.repeat(y0[:, None], N, axis=1)  # (d, N)
        self.bases: list[np.ndarray] = []  # bases at times t−len..t−1 (most recent last)
        self.sse = np.zeros(N)
        self.cum_cost = np.zeros(N)
        self.stats = {
            k: np.zeros(n_steps) for k in ("mse", "worst_se", "server_se", "mean_field_se")
        }

    def greedy(self, t, y, zs):
        """G1 controls `(p, N)` at step `t` from the last `T_c` (feature, base) pairs."""
        k = min(self.ridge_window, t, len(zs))
        if k == 0:
            return None  # no past rows: β = (γI)⁻¹0 = 0
        taus = np.arange(t - k, t)
        weights = np.exp(-self.cost["alpha"] * (t - 1 - taus))
        return _ridge_step(
            zs[-k:], self.bases[-k:], [y[s + 1] for s in taus], weights, self.cost["gamma"]
        )

    def replay(self, t, y, zs, moms, own_moms):
        """A sync step (spec §7.1 c): the hindsight window `t−T..t` replayed from `y_{t−T}`,
        then the reading's `(base, β)` of every agent (`MeanFieldGame`'s docstring)."""
        T, N = self.window, self.yhat.shape[1]
        flow = None  # the population solution's mean flow `m_s` (mean_field="flow")
        if self.moments == "own":  # each agent's own gains (N, T, ...)
            sols = [
                solve_mean_field_numpy(
                    np.stack([m[i] for m, _ in own_moms[-T:]]),
                    np.stack([s_[i] for _, s_ in own_moms[-T:]]),
                    y[t - T : t + 1],
                    self.cost,
                )
                for i in range(N)
            ]
            gains = [np.stack([sol[k] for sol in sols]) for k in ("K", "L", "g")]
        else:
            M = np.stack([m for m, _ in moms[-T:]])
            S = np.stack([s_ for _, s_ in moms[-T:]])
            sol = solve_mean_field_numpy(M, S, y[t - T : t + 1], self.cost)
            gains = [np.repeat(sol[k][None], N, axis=0) for k in ("K", "L", "g")]
            flow = sol["m"]

        def control(s, yh, ybar):  # (p, N)
            K, L, g = (G[:, s] for G in gains)
            return np.einsum("ipd,di->pi", K, yh) + np.einsum("ipd,d->pi", L, ybar) + g.T

        def mean(yh, s):
            if self.mean_field == "realized":
                return yh.mean(axis=1)
            assert flow is not None, "mean_field='flow' needs the population moments"
            return flow[s]

        yh = np.repeat(y[t - T][:, None], N, axis=1)
        for s in range(T - 1):
            yh = yh + _apply(zs[-T + s], control(s, yh, mean(yh, s)))
        beta_replay = control(T - 1, yh, mean(yh, T - 1))
        end = yh + _apply(zs[-1], beta_replay)
        base = {
            "replay_end": end,
            "observed": np.repeat(y[t][:, None], N, axis=1),
            "own": self.yhat,
        }[self.replay_base]
        if self.replay_control == "replay":
            return base, beta_replay
        return base, control(T - 1, base, base.mean(axis=1))

    def step(self, t, y, z_now, zs, moms, own_moms):
        """`(base, β, ŷ_{t+1})`, all agents last; `β` is None for a zero control."""
        if self.kind == "ridge":
            base, beta = self.yhat, self.greedy(t, y, zs)
        elif self.kind == "follow_mean":
            base = np.repeat(self.yhat.mean(axis=1)[:, None], self.yhat.shape[1], axis=1)
            if not self.increment:
                return base, None, base
            beta = self.greedy(t, y, zs)
        elif t >= self.window and t % self.sync_every == 0:
            base, beta = self.replay(t, y, zs, moms, own_moms)
        else:
            base, beta = self.yhat, self.greedy(t, y, zs)
        nxt = base if beta is None else base + _apply(z_now, beta)
        return base, beta, nxt


def simulate_numpy(
    config: dict,
    x,
    y,
    features: Callable[[int], np.ndarray],
    moments: Callable[[int], tuple[np.ndarray, np.ndarray]] | None,
    agent_moments: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict:
    """Runs the MEMOA online protocol (spec §7.1, §9) in float64 NumPy.

    Args:
        config: `n_agents`; `methods`, a list of dicts with `kind` ("game", "ridge",
            "follow_mean"), `name`, `window`, `sync_every`, `ridge_window`, `mean_field`
            ("realized"/"flow"), `increment`, and the cost weights q, lam, gamma, alpha, q_T,
            lam_T (flat or under "cost"); `server`, `{"kind": "ridge", "kappa", "eta"}` or
            `{"kind": "hedge", "rate"}`; `cost`, the yardstick `{q, lam, gamma}` of the
            realized cost. (`config_from_simulation` builds it from a `memoa_jax.Simulation`,
            `default_methods_config` the default method list.)
        x: `(n, d_x)` inputs (only used through `features` / `moments`; kept for the shape check).
        y: `(n, d)` targets; all agents start at `y_0` and predict `y_1..y_{n−1}`.
        features: `features(t)` → `(N, d, p)` feature draws at time `t` (called once per step).
        moments: `moments(t)` → population `(M (d, p), S (d, p, d, p))` at time `t` (only
            called when a game method is present, and not at the last step).
        agent_moments: `agent_moments(t)` → every agent's own `(M (N, d, p), S (N, d, p, d,
            p))` at time `t` (needed only by game methods with `moments="own"`).

    Returns:
        `name → {"mse", "worst_se", "server_se", "mean_field_se"` (arrays over steps),
        `"avg_rmse", "worst_rmse", "worst_agent", "server_rmse", "mean_field_rmse",
        "worst_cost", "mean_cost", "p50_rmse", "p90_rmse", "p99_rmse", "frozen_share",
        "worst_moving_rmse", "n_diverged", "agent_rmse"}`.
    """
    y = np.asarray(y, np.float64)
    if y.ndim != 2 or np.ndim(x) != 2 or np.shape(x)[0] != y.shape[0]:
        raise ValueError(f"need x (time, d_x) and y (time, d), got {np.shape(x)}, {y.shape}")
    n_steps = y.shape[0] - 1
    N = int(config["n_agents"])
    methods = [_Method(spec, N, y[0], n_steps) for spec in config["methods"]]
    if not methods or len({m.name for m in methods}) != len(methods):
        raise ValueError("need at least one method, with unique names")
    longest = max(m.window for m in methods)
    if n_steps <= longest:
        raise ValueError(f"window={longest} is not shorter than the {n_steps} prediction steps")
    H = max(m.history for m in methods)
    need_moments = longest > 0
    server = dict(config.get("server", {"kind": "ridge"}))
    skind = server.get("kind", "ridge")
    if skind not in ("ridge", "hedge"):
        raise ValueError(f"unknown server kind {skind!r}")
    kappa, eta = float(server.get("kappa", 1.0)), float(server.get("eta", 1.0))
    rate = float(server.get("rate", 1.0))
    yard = config.get("cost", {})
    cq, clam, cgam = (float(yard.get(k, _COST_DEFAULTS[k])) for k in ("q", "lam", "gamma"))

    zs: list[np.ndarray] = []  # features (d, p, N) at times t−len..t−1 (most recent last)
    moms: list[tuple[np.ndarray, np.ndarray]] = []
    own_moms: list[tuple[np.ndarray, np.ndarray]] = []
    need_own = any(m.kind == "game" and m.moments == "own" for m in methods)
    moving = np.zeros(N, bool)
    for t in range(n_steps):
        z = np.asarray(features(t), np.float64)
        if z.ndim != 3 or z.shape[0] != N or z.shape[1] != y.shape[1]:
            raise ValueError(
                f"features({t}) must have shape (N={N}, d={y.shape[1]}, p), got {z.shape}"
            )
        z_now = np.ascontiguousarray(np.moveaxis(z, 0, -1))  # (d, p, N)
        moving |= np.any(z_now != 0, axis=(0, 1))
        y_t, y_next = y[t], y[t + 1]
        for m in methods:
            base, beta, nxt = m.step(t, y, z_now, zs, moms, own_moms)
            # server: weights fitted on (Ŷ_t, y_t), applied to Ŷ_{t+1}
            if skind == "ridge":
                srv = _ridge_server(m.yhat, y_t, nxt, kappa, eta)
            else:
                srv = _hedge_server(nxt, m.sse, rate)
            # metrics
            sq = np.sum((y_next[:, None] - nxt) ** 2, axis=0)
            ybar_next = nxt.mean(axis=1)
            dev = np.sum((nxt - ybar_next[:, None]) ** 2, axis=0)
            stage = cq * sq + clam * dev
            if beta is not None:
                stage = stage + cgam * np.sum(beta**2, axis=0)
            st = m.stats
            st["mse"][t], st["worst_se"][t] = sq.mean(), sq.max()
            st["server_se"][t] = np.sum((y_next - srv) ** 2)
            st["mean_field_se"][t] = np.sum((y_next - ybar_next) ** 2)
            m.sse = m.sse + sq
            m.cum_cost = m.cum_cost + stage
            m.yhat = nxt
            m.bases = (m.bases + [base])[-H:]
        zs = (zs + [z_now])[-H:]
        if need_moments and t < n_steps - 1:  # moments of time t serve the windows of t+1..
            assert moments is not None, "game methods need moments"
            M_t, S_t = moments(t)
            moms = (moms + [(np.asarray(M_t, np.float64), np.asarray(S_t, np.float64))])[-H:]
            if need_own:
                assert agent_moments is not None, "moments='own' needs agent_moments"
                M_own, S_own = agent_moments(t)
                own = (np.asarray(M_own, np.float64), np.asarray(S_own, np.float64))
                own_moms = (own_moms + [own])[-H:]

    out = {}
    persistence = np.sqrt(np.mean(np.sum((y[1:] - y[:-1]) ** 2, axis=1)))
    for m in methods:
        rmse = np.sqrt(m.sse / n_steps)
        st = m.stats
        out[m.name] = dict(
            **st,
            avg_rmse=float(rmse.mean()),
            worst_rmse=float(rmse.max()),
            worst_agent=int(np.argmax(rmse)),
            server_rmse=float(np.sqrt(st["server_se"].mean())),
            mean_field_rmse=float(np.sqrt(st["mean_field_se"].mean())),
            worst_cost=float(m.cum_cost.max()),
            mean_cost=float(m.cum_cost.mean()),
            p50_rmse=float(np.quantile(rmse, 0.5)),
            p90_rmse=float(np.quantile(rmse, 0.9)),
            p99_rmse=float(np.quantile(rmse, 0.99)),
            frozen_share=float(np.mean(~moving)),
            worst_moving_rmse=float(rmse[moving].max()) if moving.any() else float("nan"),
            n_diverged=int(np.sum(~(rmse <= 1e6 * persistence))),
            agent_rmse=rmse,
        )
    return out
