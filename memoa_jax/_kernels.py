"""The hot path's backend tricks, each beside its plain form, chosen by `Kernels`.

Everything per agent is written once for ONE agent (`_agents.py`, `_encoders.py`) and run
over a population with `vmap`: that is the plain path (`Simulation(kernels="plain")`), which
any backend compiles. The tricks below were measured on XLA:CPU, where they pay; each is one
switch of `Kernels`, so `memoa bench --kernels both` can time the whole loop with each of them
off, in one run, and a trick that stops paying can go: packing two rows that share work into
one complex array, and a `lax.cond` as a fusion barrier before the reductions over agents,
gained 9.9 % and 7.4 % of the full loop at N = 10⁶ (figures/bench_kernels/bench.json) and
went (complex128 does not exist on TPUs either). Gains of the ones kept, measured again
without those two (`memoa bench --kernels both --out figures/bench_kernels`): `rows` +209 %,
`small_solve` +776 %, `threefry` +16.5 %, `cephes` +26.3 %, `phases` +29.8 %; the plain path
is 9.6× slower on XLA:CPU.

Layout: the loop stores every per-agent array with the agent axis LAST (`(d, N)`,
`(H, d, p, N)`). The row forms (`*_rows`) index their tiny per-agent arrays entry by entry,
each entry a `(1, n)` row slice of a population array, and return lists of rows; the same
unrolled code takes scalars for one agent. Why (XLA:CPU, N = 10⁶, float64, 2 cores):

* vmapped one-agent code is lowered to 1-D rows restacked into `(d, N)`, and the fused
  loops run at ~14 GB/s; the same arithmetic on `(1, n)` slices runs at ~38 GB/s;
* ONE output row whose expression is a tree of cheap ops (`+`, `×`, one division) becomes one
  fused loop that computes each shared sub-expression once per agent, so the small linear
  systems are solved in closed form up to 3×3 (`small_solve`), not by a batched LAPACK call.
"""

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jss
import numpy as np
from jax import lax

from ._custom_types import Array, Float, UInt32


class Kernels(eqx.Module):
    """Which backend tricks the loop uses (all static); `Kernels()` is every trick,
    `Kernels.plain()` none: the vmapped one-agent functions and `jax.random` / `jax.scipy`.

    Attributes:
        rows: the hot per-agent steps (ridge, policy, advance, stage cost) as `(1, n)` row
            expressions instead of `vmap` of the one-agent functions (XLA:CPU fuses the rows
            into one loop per output; the vmapped form is restacked).
        small_solve: the ridge's small SPD systems (≤ 3×3 after the primal/dual choice) by
            the adjugate, up to 8×8 by an unrolled Cholesky, instead of `jnp.linalg.solve`
            (a batched LAPACK call per agent on CPU).
        threefry: the step noise's Threefry-2x32 written as uint32 arithmetic on agent-last
            rows, instead of `jax.extend.random.threefry_2x32` vmapped per agent (the same
            bits: results are identical).
        cephes: the normal cdf and density of the RFN moments in one branch-free pass sharing
            one `exp`, instead of `jax.scipy.special.ndtr` and a separate `exp`.
        phases: the ridge reads its ring at static slots, one `lax.switch` branch per phase
            `t mod R` (rings up to `STATIC_SLOTS_UP_TO` slots), instead of traced slots.
            Stored features only: a lean loop's recomputed features have no ring, and it
            runs without the trick (with it, each phase repeated the draws: compiled 1.8×
            slower and ran 14 % slower, lean, N = 10⁶).
        apart: values read many times (recomputed keys, parameters and features; the
            moment parts before their sums) computed into memory first (`computed_once`),
            instead of leaving XLA to fuse them into each reader. On XLA:CPU the lean loop
            ran 26× slower without it (figures/bench_kernels_lean, docs/performance.md).
        onepass: a lean loop (stateless encoder) visits its agents once per step: each
            agent's key chain, parameters and features drawn once, and with them the
            population moments at `x_t`, the feature statistics and every `MeanFieldGame`
            that syncs at every step (window ≤ 3, the default reading) replayed in the same
            pass, the replay's means `ȳ_s` from population statistics of the realized
            features (`MeanFieldGame.one_pass`); instead of one pass (and one derivation of
            the draws) per replay step and one for the moments. Equal to float round-off.
    """

    rows: bool = eqx.field(static=True, default=True)
    small_solve: bool = eqx.field(static=True, default=True)
    threefry: bool = eqx.field(static=True, default=True)
    cephes: bool = eqx.field(static=True, default=True)
    phases: bool = eqx.field(static=True, default=True)
    apart: bool = eqx.field(static=True, default=True)
    onepass: bool = eqx.field(static=True, default=True)

    @classmethod
    def plain(cls) -> "Kernels":
        return cls(**dict.fromkeys(TRICKS, False))

    def without(self, trick: str) -> "Kernels":
        """These kernels with `trick` replaced by its plain form."""
        if trick not in TRICKS:
            raise ValueError(f"unknown trick {trick!r}; the tricks are {', '.join(TRICKS)}")
        return dataclasses.replace(self, **{trick: False})


TRICKS = ("rows", "small_solve", "threefry", "cephes", "phases", "apart", "onepass")


def as_kernels(spec: "str | Kernels") -> Kernels:
    """`"tuned"`, `"plain"` or a `Kernels`."""
    if isinstance(spec, Kernels):
        return spec
    if spec == "tuned":
        return Kernels()
    if spec == "plain":
        return Kernels.plain()
    raise ValueError(f"kernels must be 'tuned', 'plain' or a Kernels, got kernels={spec!r}")


# ------------------------------------------------------------------------------------------
# rows: population arrays as lists of (1, n) slices
# ------------------------------------------------------------------------------------------


def rows(a: Float[Array, "m n"]) -> list[Float[Array, "1 n"]]:
    """The rows of a population array as `(1, n)` slices (each slice keeps its dimension)."""
    return [lax.slice_in_dim(a, i, i + 1, axis=0) for i in range(a.shape[0])]


def spd_solve_entries(A: list, b: list) -> list:
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


SMALL_SOLVE_UP_TO = 8


def _gram(X: list, gamma) -> list:
    """`X Xᵀ + γ I` (nested lists of entries) for the rows `X[i]` (each a list of entries)."""
    m = len(X)
    G: list[list] = [[None] * m for _ in range(m)]
    for i in range(m):
        for j in range(i + 1):
            G[i][j] = sum(a * b for a, b in zip(X[i], X[j])) + (gamma if i == j else 0.0)
            G[j][i] = G[i][j]
    return G


def ridge_entries(X: list, r: list, gamma) -> list:
    """`β = (XᵀX + γI)⁻¹ Xᵀ r` for the rows `X[i]` (lists of p entries) and residuals `r[i]`:
    the smaller of the `p × p` primal system and the `m × m` dual one, `β = Xᵀ(X Xᵀ + γ I)⁻¹ r`
    (push-through identity), by `spd_solve_entries`. Entries are scalars or `(1, n)` rows."""
    m, p = len(X), len(X[0])
    if m < p:  # dual
        u = spd_solve_entries(_gram(X, gamma), r)
        return [sum(X[i][k] * u[i] for i in range(m)) for k in range(p)]
    cols = [[row[k] for row in X] for k in range(p)]
    rhs = [sum(c * ri for c, ri in zip(cols[k], r)) for k in range(p)]
    return spd_solve_entries(_gram(cols, gamma), rhs)


def ridge_rows(
    z_win: list[Float[Array, "d p n"]],
    yhat_win: list[Float[Array, "d n"]],
    y_next: Float[Array, "H d"],
    weights: Float[Array, " H"],
    gamma,
) -> list[Float[Array, "1 n"]]:
    """`_agents.ridge_control` of every agent as p rows (small systems only); the window's H
    slots are `z_win[s]` and `yhat_win[s]` (any order). Equal to `vmap(ridge_control)`."""
    H = len(z_win)
    d = z_win[0].shape[0]
    sw = jnp.sqrt(weights)
    X = [[sw[s] * zr for zr in rows(z_win[s][a])] for s in range(H) for a in range(d)]
    r = [sw[s] * (y_next[s, a] - yr) for s in range(H) for a, yr in enumerate(rows(yhat_win[s]))]
    return ridge_entries(X, r, gamma)


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


def advance_rows(
    yhat: list[Float[Array, "1 n"]], z: Float[Array, "d p n"], beta: list[Float[Array, "1 n"]]
) -> list[Float[Array, "1 n"]]:
    """`ŷ' = ŷ + Z β` of every agent, as d rows."""
    return [y_a + sum(zr * b for zr, b in zip(rows(z[a]), beta)) for a, y_a in enumerate(yhat)]


def energy_rows(beta: list[Float[Array, "1 n"]]) -> Float[Array, " n"]:
    """Every agent's control energy `‖β‖²`, as `(n,)`."""
    energy = beta[0] * beta[0]
    for b in beta[1:]:
        energy = energy + b * b
    return energy[0]


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


def stage_cost_rows(cost, y_next, ybar_next, yhat_next, energy):
    """`_agents.stage_cost` of every agent, each output one row expression."""
    y_rows = rows(yhat_next)
    sq = _row_sum([(y_next[a] - yr) ** 2 for a, yr in enumerate(y_rows)])
    dev = _row_sum([(yr - ybar_next[a]) ** 2 for a, yr in enumerate(y_rows)])
    return sq, cost.q * sq + cost.lam * dev + cost.gamma * energy


def _row_sum(terms: list[Float[Array, "1 n"]]) -> Float[Array, " n"]:
    """`Σ terms` (at least one) as `(n,)`."""
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total[0]


# ------------------------------------------------------------------------------------------
# phases: static ring slots
# ------------------------------------------------------------------------------------------

STATIC_SLOTS_UP_TO = 9


def by_phase(t, R: int, fn: Callable, static: bool):
    """`fn(slot)`, where `slot(offset)` is the ring slot of time `t + offset` (`mod R`).

    `static` (the `phases` trick) and rings up to `STATIC_SLOTS_UP_TO` slots: the slots are
    Python ints, `fn` is traced once per phase `t mod R` and `lax.switch` runs the current
    one (a ring slot read at a traced index inside a fused loop doubled its cost on XLA:CPU:
    the clamped index is recomputed per element). Otherwise one trace at traced slots.
    """
    if not static or R > STATIC_SLOTS_UP_TO:
        return fn(lambda offset: jnp.mod(t + offset, R))
    branches = [lambda j=j: fn(lambda offset: (j + offset) % R) for j in range(R)]
    return lax.switch(jnp.mod(t, R), branches)


# ------------------------------------------------------------------------------------------
# threefry: counter-based normals
# ------------------------------------------------------------------------------------------

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(v, r: int):
    return (v << np.uint32(r)) | (v >> np.uint32(32 - r))


def threefry2x32(k0, k1, x0, x1):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011; the `jax.random` hash) on uint32
    scalars or arrays: plain uint32 arithmetic, so under broadcasting every round is one pass
    over an agent-last row that fuses into its consumer (on XLA:CPU 6.6-8× cheaper than
    `jax.random`'s lowering vmapped over 10⁶ agents). Bit-identical to
    `jax.extend.random.threefry_2x32((k0, k1), [x0, x1])`.

    A nested `jax.jit`: the lowered program holds the 20 rounds once per argument shape, as
    a function that XLA inlines before it fuses (the same compiled code), instead of once per
    call (the lean loop hashes at every feature read: 80 % of its StableHLO)."""
    return _threefry2x32(*(jnp.asarray(a, jnp.uint32) for a in (k0, k1, x0, x1)))


@jax.jit
def _threefry2x32(k0, k1, x0, x1):
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _threefry_plain(key: UInt32[Array, " 2 *agents"], t, j: UInt32[Array, " n"]):
    """The first words of Threefry-2x32 of `key` at the counters `(t, j)`, by
    `jax.extend.random.threefry_2x32` vmapped over the agents (the plain form)."""
    import jax.extend.random as jxr

    def one(k):
        words = jxr.threefry_2x32(k, jnp.concatenate([jnp.full(j.shape, t, jnp.uint32), j]))
        return words[: j.shape[0]]

    if key.ndim == 1:
        return one(key)
    flat = key.reshape(2, -1)
    bits = jax.vmap(one, in_axes=1, out_axes=1)(flat)
    return bits.reshape((j.shape[0],) + key.shape[1:])


def computed_once(fn: Callable, *args, live: Array, apart: bool = True):
    """`fn(*args)`, computed into memory before any consumer reads it: the true branch of a
    conditional, a fusion boundary XLA:CPU keeps (it deletes `optimization_barrier`). For
    per-agent keys and draws that feed many consumers: fused into each, XLA:CPU would repeat
    their Threefry rounds once per consumer. `live`: a traced boolean that is true at run
    time (e.g. `t >= 0` of the step counter), replicated across devices; it only keeps the
    conditional from being folded away. The other branch, never taken, returns NaN (floats)
    or zeros of `fn`'s shapes: were it `fn` too, XLA would compile every draw twice (the lean
    MEMOA + 4 baselines program compiled in 27 s instead of 43 s on this CPU, its run time
    unchanged within the noise: `experiments/bench_lean.py`). Nested calls need predicates
    of their own: a branch knows its own predicate's value, and XLA folds a conditional on
    it. `apart=False` (the `apart` trick off): just `fn(*args)`."""
    if not apart:
        return fn(*args)

    def never(*args):
        fill = lambda s: jnp.full(
            s.shape, jnp.nan if jnp.issubdtype(s.dtype, jnp.inexact) else 0, s.dtype
        )
        return jax.tree.map(fill, jax.eval_shape(fn, *args))

    return lax.cond(live, fn, never, *args)


def counter_bits(key: UInt32[Array, " 2 *agents"], t, j, threefry: bool = True):
    """First word of Threefry-2x32 of each agent's two-word key at the counters `(t, j)`,
    shape `(len(j), *agents)`."""
    t = jnp.asarray(t).astype(jnp.uint32)
    if not threefry:
        return _threefry_plain(key, t, j)
    k = key[:, None]  # (2, 1, *agents): the counters j run along the new axis
    bits, _ = threefry2x32(k[0], k[1], t, j.reshape((-1,) + (1,) * (key.ndim - 1)))
    return bits


# ------------------------------------------------------------------------------------------
# cephes: the normal cdf and density in one pass
# ------------------------------------------------------------------------------------------

_INV_SQRT_2PI = 0.3989422804014327
_INV_SQRT_2 = 0.7071067811865476

# Cephes `ndtr.c` (S. L. Moshier; the coefficients SciPy's `ndtr` uses): erf(x) = x T(x²)/U(x²)
# for |x| < 1, erfc(x) = exp(−x²) P(x)/Q(x) for 1 ≤ x < 8 and exp(−x²) R(x)/S(x) beyond.
_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
      7.00332514112805075473e3, 5.55923013010394962768e4)  # fmt: skip
_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
      2.26290000613890934246e4, 4.92673942608635921086e4)  # fmt: skip
_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
      4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
      9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)  # fmt: skip
_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
      9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
      1.65666309194161350182e3, 5.57535340817727675546e2)  # fmt: skip
_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0,
      6.16021097993053585195e0, 7.40974269950448939160e0, 2.97886665372100240670e0)  # fmt: skip
_S = (1.0, 2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1,
      1.70814450747565897222e1, 9.60896809063285878198e0, 3.36907645100081516050e0)  # fmt: skip


def _polevl(x, coefficients):
    y = coefficients[0]
    for c in coefficients[1:]:
        y = y * x + c
    return y


def ndtr_and_pdf(x, cephes: bool = True):
    """The standard normal cdf and density, `(Φ(x), φ(x))`.

    `cephes`: Cephes' `ndtr` in one branch-free pass (each branch evaluated, one selected)
    sharing one `exp(−x²/2)` with the density. The H2 population moments need both at every
    feature of every agent: with `erfc` and a separate `exp` they took 57 ms per step at
    N = 10⁶, p = 5, with this 42 ms (float64, 2 CPU cores). Absolute error ≤ 2e-16, relative
    ≤ 5e-14 where Φ > 1e-20 (tested against SciPy). Plain: `jax.scipy.special.ndtr`.
    """
    e = jnp.exp(-0.5 * x * x)
    if not cephes:
        return jss.ndtr(x), _INV_SQRT_2PI * e
    u = jnp.abs(x) * _INV_SQRT_2  # e = exp(−u²), the factor of erfc(u)
    w = x * _INV_SQRT_2
    erf = w * _polevl(w * w, _T) / _polevl(w * w, _U)
    tail = jnp.where(u < 8.0, _polevl(u, _P) / _polevl(u, _Q), _polevl(u, _R) / _polevl(u, _S))
    half_erfc = 0.5 * e * tail  # Φ(−|x|)
    cdf = jnp.where(u < 1.0, 0.5 + 0.5 * erf, jnp.where(x > 0, 1.0 - half_erfc, half_erfc))
    return cdf, _INV_SQRT_2PI * e
