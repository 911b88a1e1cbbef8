"""Per-agent primitives, each written for ONE agent and `vmap`ped by the loop.

Layout: the loop stores every per-agent array with the agent axis LAST (struct of arrays:
`(d, N)`, `(H, d, p, N)`), and `map_agents` vmaps with `in_axes=-1, out_axes=-1`. The
one-agent functions below index their tiny arrays entry by entry, so under `vmap` every
entry is one contiguous length-N vector and a whole function becomes a few fused passes
over memory. (Written with `@` or broadcast-and-sum instead, XLA:CPU lowers the vmapped
5×5 products to batched contractions with strided access: 5–10× slower at 10^5 agents.)
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._custom_types import Array, Float


def matvec(A: Float[Array, "m n"], x: Float[Array, " n"]) -> Float[Array, " m"]:
    """`A @ x`, entry by entry."""
    m, n = A.shape
    return jnp.stack([sum(A[i, k] * x[k] for k in range(n)) for i in range(m)])


def spd_solve(A: Float[Array, "p p"], b: Float[Array, " p"]) -> Float[Array, " p"]:
    """Solve `A x = b` for a small symmetric positive-definite `A` (unrolled Cholesky).

    Falls back to `jnp.linalg.solve` above p = 8, where unrolling stops paying.
    """
    p = A.shape[-1]
    if p > 8:
        return jnp.linalg.solve(A, b)
    Lw: list[list] = [[None] * p for _ in range(p)]
    for j in range(p):
        diag = jnp.sqrt(A[j, j] - sum((Lw[j][k] * Lw[j][k] for k in range(j)), 0.0))
        Lw[j][j] = diag
        for i in range(j + 1, p):
            Lw[i][j] = (A[i, j] - sum((Lw[i][k] * Lw[j][k] for k in range(j)), 0.0)) / diag
    z: list = [None] * p
    for i in range(p):
        z[i] = (b[i] - sum((Lw[i][k] * z[k] for k in range(i)), 0.0)) / Lw[i][i]
    x: list = [None] * p
    for i in reversed(range(p)):
        x[i] = (z[i] - sum((Lw[k][i] * x[k] for k in range(i + 1, p)), 0.0)) / Lw[i][i]
    return jnp.stack(x)


def _gram(rows: list, gamma) -> Float[Array, "m m"]:
    """`X Xᵀ + γ I` for the rows `X[i]` (each a list of entries)."""
    m = len(rows)
    G = [[None] * m for _ in range(m)]
    for i in range(m):
        for j in range(i + 1):
            G[i][j] = sum(a * b for a, b in zip(rows[i], rows[j])) + (gamma if i == j else 0.0)
            G[j][i] = G[i][j]
    return jnp.stack([jnp.stack(row) for row in G])


def ridge_control(
    z_ring: Float[Array, "H d p"],
    yhat_ring: Float[Array, "H d"],
    y_next: Float[Array, "H d"],
    weights: Float[Array, " H"],
    gamma,
) -> Float[Array, " p"]:
    """Greedy local ridge control G1 (FedMOE's non-game client, spec §7.2).

    `β = (Σ_s w_s Z_sᵀZ_s + γ I)⁻¹ Σ_s w_s Z_sᵀ(y_{s+1} − ŷ_s)`: the increment that would
    best have moved each past state onto its next target, with recency weights
    `w_s = exp(−α (t − 1 − s))` (zero outside the last `T_c` steps). Slots may be in any order.
    With `m = H d` stacked rows `X_s = √w_s Z_s`, it solves the smaller of the `p × p` primal
    system and the `m × m` dual one, `β = Xᵀ(X Xᵀ + γ I)⁻¹ r` (push-through identity).
    """
    H, d, p = z_ring.shape
    sw = jnp.sqrt(weights)
    X = [[sw[s] * z_ring[s, a, k] for k in range(p)] for s in range(H) for a in range(d)]
    r = [sw[s] * (y_next[s, a] - yhat_ring[s, a]) for s in range(H) for a in range(d)]
    if H * d < p:  # dual
        u = spd_solve(_gram(X, gamma), jnp.stack(r))
        return jnp.stack([sum(X[i][k] * u[i] for i in range(H * d)) for k in range(p)])
    cols = [[row[k] for row in X] for k in range(p)]
    rhs = jnp.stack([sum(c * ri for c, ri in zip(cols[k], r)) for k in range(p)])
    return spd_solve(_gram(cols, gamma), rhs)


def mean_field_control(
    K: Float[Array, "p d"],
    L: Float[Array, "p d"],
    g: Float[Array, " p"],
    yhat: Float[Array, " d"],
    ybar: Float[Array, " d"],
) -> Float[Array, " p"]:
    """The decentralized MEMOA policy `β = K ŷ + L ȳ + g` (spec §4): own state + mean field.

    Each entry is one scalar expression, stacked once at the end: a sum of stacked vectors
    would make XLA materialise all of `β` (p numbers per agent) between this and `advance`.
    """
    p, d = K.shape
    return jnp.stack(
        [sum(K[k, b] * yhat[b] + L[k, b] * ybar[b] for b in range(d)) + g[k] for k in range(p)]
    )


def mean_field_update(
    K: Float[Array, "p d"],
    L: Float[Array, "p d"],
    g: Float[Array, " p"],
    yhat: Float[Array, "d n"],
    ybar: Float[Array, " d"],
    z: Float[Array, "d p n"],
) -> tuple[Float[Array, "d n"], Float[Array, "p n"]]:
    """`mean_field_control` then `advance` for a whole population (agent axis last): returns
    `(ŷ', β)` with `β = K ŷ + L ȳ + g`, `ŷ' = ŷ + Z β` per agent.

    The hot step of every replay, written on `(1, n)` row slices of the population arrays
    rather than vmapped: XLA:CPU compiles the vmapped one-agent form (1-D rows, restacked)
    into a fused loop that runs at ~14 GB/s, this one at ~38 GB/s (N = 10⁷, float64,
    2 cores). Equal to `vmap(advance ∘ mean_field_control)` (tested)."""
    p, d = K.shape
    row = lambda a, i: lax.slice_in_dim(a, i, i + 1, axis=0)  # (1, n), the slice keeps its dim
    beta = [
        sum(K[k, b] * row(yhat, b) + L[k, b] * ybar[b] for b in range(d)) + g[k] for k in range(p)
    ]
    new = [row(yhat, a) + sum(row(z[a], k) * beta[k] for k in range(p)) for a in range(d)]
    return jnp.concatenate(new), jnp.concatenate(beta)


def advance(yhat: Float[Array, " d"], z: Float[Array, "d p"], beta: Float[Array, " p"]):
    """The agent's prediction update `ŷ' = ŷ + Z β`."""
    return yhat + matvec(z, beta)


def map_agents(fn: Callable, *args, batch_size: int | None = None):
    """Apply a one-agent function over the LAST (agent) axis of every array in `args`.

    `batch_size=None` vmaps the whole population at once. An integer processes it in chunks
    of that many agents, bounding the memory of intermediates, with the same result (see
    `map_chunks`).
    """
    return map_chunks(jax.vmap(fn, in_axes=-1, out_axes=-1), *args, batch_size=batch_size)


def map_chunks(fn: Callable, *args, batch_size: int | None = None):
    """Apply `fn`, which maps arrays with a trailing agent axis to arrays with a trailing agent
    axis agent by agent, to the whole population (`batch_size=None`) or chunk by chunk.

    Chunks: a loop that slices and writes back along the agent axis (the last chunk is
    shifted to end at N, recomputing a few agents, so any N works without padding).
    """
    if batch_size is None:
        return fn(*args)
    n = jax.tree.leaves(args)[0].shape[-1]
    if batch_size >= n:
        return fn(*args)
    take = lambda a, start: lax.dynamic_slice_in_dim(a, start, batch_size, axis=a.ndim - 1)
    shapes = jax.eval_shape(fn, *jax.tree.map(lambda a: take(a, 0), args))
    out = jax.tree.map(lambda s: jnp.zeros(s.shape[:-1] + (n,), s.dtype), shapes)

    def body(i, out):
        start = jnp.minimum(i * batch_size, n - batch_size)
        res = fn(*jax.tree.map(lambda a: take(a, start), args))
        return jax.tree.map(
            lambda o, r: lax.dynamic_update_slice_in_dim(o, r, start, axis=o.ndim - 1), out, res
        )

    return lax.fori_loop(0, -(-n // batch_size), body, out)


class Population(NamedTuple):
    """Which agent slots hold real agents: the first `n_active` of the `n_slots` (the rest
    is padding, so that one compiled loop serves every N up to `n_slots`).

    Reductions over the agent axis (the LAST axis) go through it; with `n_active=None`
    every slot is an agent and they are the plain `mean` / `max` / `argmax`.
    """

    n_slots: int
    n_active: Array | None = None

    @property
    def n(self):
        return self.n_slots if self.n_active is None else self.n_active

    def mask(self) -> Array | None:
        return None if self.n_active is None else jnp.arange(self.n_slots) < self.n_active

    def zero_padding(self, a: Array) -> Array:
        """`a` with the padding slots set to 0."""
        return a if self.n_active is None else jnp.where(self.mask(), a, 0)

    def sum(self, a: Array) -> Array:
        return jnp.sum(self.zero_padding(a), axis=-1)

    def mean(self, a: Array) -> Array:
        return jnp.mean(a, axis=-1) if self.n_active is None else self.sum(a) / self.n_active

    def max(self, a: Array) -> Array:
        return jnp.max(a if self.n_active is None else jnp.where(self.mask(), a, -jnp.inf), -1)

    def argmax(self, a: Array) -> Array:
        return jnp.argmax(a if self.n_active is None else jnp.where(self.mask(), a, -jnp.inf), -1)
