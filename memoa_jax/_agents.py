"""Per-agent primitives: written once for ONE agent (`vmap`ped by `map_agents` and the
tests), and the hot ones once more for a whole population, on `(1, n)` row slices.

Layout: the loop stores every per-agent array with the agent axis LAST (struct of arrays:
`(d, N)`, `(H, d, p, N)`). The one-agent functions index their tiny arrays entry by entry;
the population forms (`*_rows`) do the same with each entry a `(1, n)` row slice of a
population array, and return lists of rows. That is how XLA:CPU compiles them best
(measured at N = 10⁶, float64, 2 cores):

* vmapped one-agent code is lowered to 1-D rows restacked into `(d, N)`, and the fused
  loops run at ~14 GB/s; the same arithmetic on `(1, n)` slices runs at ~38 GB/s;
* ONE output row whose expression is a tree of cheap ops (`+`, `×`, one division) becomes one
  fused loop that computes each shared sub-expression once per agent (the G1 ridge update:
  5 ms, 46 GB/s); a concatenation of rows that share work, or a shared `sqrt` / division
  feeding several rows, is split into passes that write intermediate rows to memory and
  recompute the rest (the same update via a 3×3 Cholesky with `β` concatenated: 50 ms).

So a method's step asks for each output row it needs as its own expression, and the small
linear systems are solved in closed form up to 3×3. Two rows that share the expensive part
(the next prediction and `‖β‖²` share the solve) are packed as the real and imaginary parts
of ONE complex row (`complex_rows`): one expression, so one loop that reads the inputs once;
consumers take `real` / `imag` of the stored row (the G1 step on one core: 22 → 11 ms).
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


def rows(a: Float[Array, "m n"]) -> list[Float[Array, "1 n"]]:
    """The rows of a population array as `(1, n)` slices (each slice keeps its dimension)."""
    return [lax.slice_in_dim(a, i, i + 1, axis=0) for i in range(a.shape[0])]


def _spd_solve_entries(A: list, b: list) -> list:
    """Solve `A x = b` for a small symmetric positive-definite `A` (nested lists of entries).

    Entries are scalars (one agent) or `(1, n)` rows (a population), so one unrolled code
    serves both. Up to 3×3: the adjugate over the determinant (one division; the
    determinant of an SPD matrix is positive, and the error is that of Cholesky, O(κ(A) ε)).
    Larger: an unrolled Cholesky, one reciprocal square root per column.
    """
    m = len(b)
    if m == 1:
        return [b[0] / A[0][0]]
    if m == 2:
        inv = 1.0 / (A[0][0] * A[1][1] - A[0][1] * A[0][1])
        return [(A[1][1] * b[0] - A[0][1] * b[1]) * inv, (A[0][0] * b[1] - A[0][1] * b[0]) * inv]
    if m == 3:
        c00 = A[1][1] * A[2][2] - A[1][2] * A[1][2]
        c01 = A[0][2] * A[1][2] - A[0][1] * A[2][2]
        c02 = A[0][1] * A[1][2] - A[1][1] * A[0][2]
        c11 = A[0][0] * A[2][2] - A[0][2] * A[0][2]
        c12 = A[0][1] * A[0][2] - A[0][0] * A[1][2]
        c22 = A[0][0] * A[1][1] - A[0][1] * A[0][1]
        inv = 1.0 / (A[0][0] * c00 + A[0][1] * c01 + A[0][2] * c02)
        adj = [[c00, c01, c02], [c01, c11, c12], [c02, c12, c22]]
        return [sum(adj[i][j] * b[j] for j in range(3)) * inv for i in range(3)]
    Lw: list[list] = [[None] * m for _ in range(m)]
    inv_diag: list = [None] * m  # 1 / L_jj
    for j in range(m):
        inv_diag[j] = lax.rsqrt(A[j][j] - sum((Lw[j][k] * Lw[j][k] for k in range(j)), 0.0))
        for i in range(j + 1, m):
            Lw[i][j] = (A[i][j] - sum((Lw[i][k] * Lw[j][k] for k in range(j)), 0.0)) * inv_diag[j]
    z: list = [None] * m
    for i in range(m):
        z[i] = (b[i] - sum((Lw[i][k] * z[k] for k in range(i)), 0.0)) * inv_diag[i]
    x: list = [None] * m
    for i in reversed(range(m)):
        x[i] = (z[i] - sum((Lw[k][i] * x[k] for k in range(i + 1, m)), 0.0)) * inv_diag[i]
    return x


def _gram(X: list, gamma) -> list:
    """`X Xᵀ + γ I` (nested lists of entries) for the rows `X[i]` (each a list of entries)."""
    m = len(X)
    G: list[list] = [[None] * m for _ in range(m)]
    for i in range(m):
        for j in range(i + 1):
            G[i][j] = sum(a * b for a, b in zip(X[i], X[j])) + (gamma if i == j else 0.0)
            G[j][i] = G[i][j]
    return G


def _ridge(X: list, r: list, gamma) -> list:
    """`β = (XᵀX + γI)⁻¹ Xᵀ r` for the rows `X[i]` (lists of p entries) and residuals `r[i]`:
    the smaller of the `p × p` primal system and the `m × m` dual one, `β = Xᵀ(X Xᵀ + γ I)⁻¹ r`
    (push-through identity). Entries are scalars (one agent) or `(1, n)` rows (a population)."""
    m, p = len(X), len(X[0])
    if m < p:  # dual
        u = _spd_solve_entries(_gram(X, gamma), r)
        return [sum(X[i][k] * u[i] for i in range(m)) for k in range(p)]
    cols = [[row[k] for row in X] for k in range(p)]
    rhs = [sum(c * ri for c, ri in zip(cols[k], r)) for k in range(p)]
    return _spd_solve_entries(_gram(cols, gamma), rhs)


def ridge_control(
    z_ring: Float[Array, "H d p"],
    yhat_ring: Float[Array, "H d"],
    y_next: Float[Array, "H d"],
    weights: Float[Array, " H"],
    gamma,
) -> Float[Array, " p"]:
    """Greedy local ridge control G1 (FedMOE's non-game client, spec §7.2), one agent.

    `β = (Σ_s w_s Z_sᵀZ_s + γ I)⁻¹ Σ_s w_s Z_sᵀ(y_{s+1} − ŷ_s)`: the increment that would
    best have moved each past state onto its next target, with recency weights
    `w_s = exp(−α (t − 1 − s))` (zero outside the last `T_c` steps). Slots may be in any order.
    With `m = H d` stacked rows `X_s = √w_s Z_s`, it solves the smaller of the `p × p` primal
    system and the `m × m` dual one (`jnp.linalg.solve` when both are larger than 8).
    `ridge_rows` is the same for a whole population.
    """
    H, d, p = z_ring.shape
    sw = jnp.sqrt(weights)
    if min(H * d, p) > 8:
        X = (sw[:, None, None] * z_ring).reshape(H * d, p)
        r = (sw[:, None] * (y_next - yhat_ring)).reshape(H * d)
        return jnp.linalg.solve(X.T @ X + gamma * jnp.eye(p, dtype=X.dtype), X.T @ r)
    X = [[sw[s] * z_ring[s, a, k] for k in range(p)] for s in range(H) for a in range(d)]
    r = [sw[s] * (y_next[s, a] - yhat_ring[s, a]) for s in range(H) for a in range(d)]
    return jnp.stack(_ridge(X, r, gamma))


def ridge_rows(
    z_win: list[Float[Array, "d p n"]],
    yhat_win: list[Float[Array, "d n"]],
    y_next: Float[Array, "H d"],
    weights: Float[Array, " H"],
    gamma,
) -> list[Float[Array, "1 n"]]:
    """`ridge_control` of every agent, as p rows; the window's H slots are `z_win[s]` and
    `yhat_win[s]` (any order). Equal to `vmap(ridge_control)` (tested). When both the primal
    and the dual system are larger than 8, it falls back to the vmapped one-agent form."""
    H, (d, p) = len(z_win), z_win[0].shape[:2]
    if min(H * d, p) > 8:
        one = lambda zw, yw: ridge_control(zw, yw, y_next, weights, gamma)
        return rows(jax.vmap(one, -1, -1)(jnp.stack(z_win), jnp.stack(yhat_win)))
    sw = jnp.sqrt(weights)
    X = [[sw[s] * zr for zr in rows(z_win[s][a])] for s in range(H) for a in range(d)]
    r = [sw[s] * (y_next[s, a] - yr) for s in range(H) for a, yr in enumerate(rows(yhat_win[s]))]
    return _ridge(X, r, gamma)


def mean_field_control(
    K: Float[Array, "p d"],
    L: Float[Array, "p d"],
    g: Float[Array, " p"],
    yhat: Float[Array, " d"],
    ybar: Float[Array, " d"],
) -> Float[Array, " p"]:
    """The decentralized MEMOA policy `β = K ŷ + L ȳ + g` (spec §4): own state + mean field.

    Each entry is one scalar expression (`control_rows` on the agent's d entries), stacked
    once at the end: a sum of stacked vectors would make XLA materialise all of `β` (p numbers
    per agent) between this and `advance`.
    """
    return jnp.stack(control_rows(K, L, g, list(yhat), ybar))


def control_rows(
    K: Float[Array, "p d *own"],
    L: Float[Array, "p d *own"],
    g: Float[Array, " p *own"],
    yhat: list,
    ybar: Float[Array, " d"],
) -> list:
    """`β = K ŷ + L ȳ + g` entry by entry: `yhat` holds d entries, scalars (one agent) or
    `(1, n)` rows (every agent); returns p entries of the same kind. Gains with trailing
    `(1, n)` axes are each agent's own (`MeanFieldGame(moments="own")`)."""
    p, d = K.shape[:2]
    return [sum(K[k, b] * yhat[b] + L[k, b] * ybar[b] for b in range(d)) + g[k] for k in range(p)]


def advance(yhat: Float[Array, " d"], z: Float[Array, "d p"], beta: Float[Array, " p"]):
    """The agent's prediction update `ŷ' = ŷ + Z β`."""
    return yhat + matvec(z, beta)


def advance_rows(
    yhat: list[Float[Array, "1 n"]], z: Float[Array, "d p n"], beta: list[Float[Array, "1 n"]]
) -> list[Float[Array, "1 n"]]:
    """`advance` of every agent: `ŷ' = ŷ + Z β` as d rows."""
    return [y_a + sum(zr * b for zr, b in zip(rows(z[a]), beta)) for a, y_a in enumerate(yhat)]


def complex_rows(re: list[Float[Array, "1 n"]], im: list[Float[Array, "1 n"]]) -> Array:
    """The rows `re[a] + i im[a]` as one `(m, n)` complex array: two outputs that share their
    expensive part, as one expression that XLA computes in one loop (see the module
    docstring); consumers take its `real` and `imag`."""
    return jnp.concatenate([lax.complex(r, i) for r, i in zip(re, im, strict=True)])


def energy_rows(beta: list[Float[Array, "1 n"]]) -> Float[Array, " n"]:
    """Every agent's control energy `‖β‖²` (the ridge term of the stage cost), as `(n,)`."""
    return sum(b * b for b in beta)[0]


def mean_field_update(
    K: Float[Array, "p d *own"],
    L: Float[Array, "p d *own"],
    g: Float[Array, " p *own"],
    yhat: Float[Array, "d n"],
    ybar: Float[Array, " d"],
    z: Float[Array, "d p n"],
) -> Float[Array, "d n"]:
    """One replay step for a whole population (agent axis last): `ŷ' = ŷ + Z β` with
    `β = K ŷ + L ȳ + g` per agent (gains shared, or each agent's own with trailing `(1, n)`
    axes). Equal to `vmap(advance ∘ mean_field_control)` (tested)."""
    y = rows(yhat)
    return jnp.concatenate(advance_rows(y, z, control_rows(K, L, g, y, ybar)))


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


def evaluate_apart(fn: Callable, *args, live: Array):
    """`fn(*args)`, computed into memory by loops of its own before any consumer reads it.

    XLA:CPU fuses an elementwise producer into the reduction over agents that consumes it,
    and runs that reduction on one thread; where the producer has expensive shared parts
    (`exp`, divisions) it also splits them into passes of their own. A conditional is a
    fusion boundary XLA:CPU keeps (it deletes `optimization_barrier`), so `fn` runs inside
    one, alone: one multi-threaded loop per output array. Both branches are `fn`, so the value
    of `live` does not matter, but it must be traced: XLA folds a conditional on a constant
    away, and the boundary with it.
    """
    return lax.cond(live, fn, fn, *args)


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

    def quantile(self, a: Float[Array, " n"], q: float) -> Array:
        """The `q`-quantile of `a` over the agents, interpolated linearly between order
        statistics (NumPy's default); one sort of the population."""
        s = jnp.sort(a if self.n_active is None else jnp.where(self.mask(), a, jnp.inf))
        pos = q * (jnp.asarray(self.n, jnp.int32) - 1)
        lo = jnp.floor(pos).astype(jnp.int32)
        hi = jnp.minimum(lo + 1, jnp.asarray(self.n, jnp.int32) - 1)
        frac = (pos - lo).astype(s.dtype)
        return jnp.where(frac == 0, s[lo], s[lo] + frac * (s[hi] - s[lo]))
