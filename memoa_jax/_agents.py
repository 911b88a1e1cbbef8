"""Per-agent rules, written once for ONE agent in plain `jax.numpy`, and the plumbing that
runs them over a population (agent axis LAST: `(d, N)`, `(H, d, p, N)`).

`vmap` of these functions is the plain path of the loop (`Simulation(kernels="plain")`); the
tuned path runs the same rules as `(1, n)` row expressions (`_kernels.py`), tested equal.
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._custom_types import Array, Bool, Float
from ._kernels import SMALL_SOLVE_UP_TO, computed_once, ridge_entries


def ridge_control(
    z_ring: Float[Array, "H d p"],
    yhat_ring: Float[Array, "H d"],
    y_next: Float[Array, "H d"],
    weights: Float[Array, " H"],
    gamma,
    small_solve: bool = True,
) -> Float[Array, " p"]:
    """Greedy local ridge control G1 (FedMOE's non-game client, spec §7.2), one agent.

    `β = (Σ_s w_s Z_sᵀZ_s + γ I)⁻¹ Σ_s w_s Z_sᵀ(y_{s+1} − ŷ_s)`: the increment that would
    best have moved each past state onto its next target, with recency weights
    `w_s = exp(−α (t − 1 − s))` (zero outside the last `T_c` steps). Slots may be in any order.
    `small_solve` (a `Kernels` trick): with `m = H d` stacked rows `X_s = √w_s Z_s`, solve the
    smaller of the `p × p` primal system and the `m × m` dual one in closed form when it is at
    most 8×8; otherwise (and when off) `jnp.linalg.solve` on the primal system.
    """
    H, d, p = z_ring.shape
    sw = jnp.sqrt(weights)
    if small_solve and min(H * d, p) <= SMALL_SOLVE_UP_TO:
        X = [[sw[s] * z_ring[s, a, k] for k in range(p)] for s in range(H) for a in range(d)]
        r = [sw[s] * (y_next[s, a] - yhat_ring[s, a]) for s in range(H) for a in range(d)]
        return jnp.stack(ridge_entries(X, r, gamma))
    X = (sw[:, None, None] * z_ring).reshape(H * d, p)
    r = (sw[:, None] * (y_next - yhat_ring)).reshape(H * d)
    # the normal equations by broadcasting, not `X.T @ X`: under `vmap` over 10⁴+ agents a
    # batched dot_general inside the loop deadlocked XLA:CPU's multi-threaded Eigen pool
    A = jnp.sum(X[:, :, None] * X[:, None, :], axis=0) + gamma * jnp.eye(p, dtype=X.dtype)
    return jnp.linalg.solve(A, jnp.sum(X * r[:, None], axis=0))


def mean_field_control(
    K: Float[Array, "p d"],
    L: Float[Array, "p d"],
    g: Float[Array, " p"],
    yhat: Float[Array, " d"],
    ybar: Float[Array, " d"],
) -> Float[Array, " p"]:
    """The decentralized MEMOA policy `β = K ŷ + L ȳ + g` (spec §4): own state +
    mean field."""
    return K @ yhat + L @ ybar + g


def advance(yhat: Float[Array, " d"], z: Float[Array, "d p"], beta: Float[Array, " p"]):
    """The agent's prediction update `ŷ' = ŷ + Z β`."""
    return yhat + z @ beta


def stage_cost(cost, y_next, ybar_next, yhat_next: Float[Array, " d"], energy):
    """One agent's square error `‖y_{t+1} − ŷ_{t+1}‖²` and realized stage cost
    `q‖y_{t+1} − ŷ_{t+1}‖² + λ‖ŷ_{t+1} − ȳ_{t+1}‖² + γ‖β_t‖²` (spec §3),
    `energy = ‖β_t‖²`."""
    sq = jnp.sum((y_next - yhat_next) ** 2)
    dev = jnp.sum((yhat_next - ybar_next) ** 2)
    return sq, cost.q * sq + cost.lam * dev + cost.gamma * energy


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
    shifted to end at N, recomputing a few agents, so any N works without padding). Each
    chunk's results are computed into memory before they are written back
    (`_kernels.computed_once`): fused into the write, XLA:CPU ran a chunk's feature draw
    15× slower. (Not a `Kernels` trick: chunks are themselves the opt-in trade of time for
    memory, and this is how their loop is written on every backend.)
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
        res = computed_once(fn, *jax.tree.map(lambda a: take(a, start), args), live=i >= 0)
        return jax.tree.map(
            lambda o, r: lax.dynamic_update_slice_in_dim(o, r, start, axis=o.ndim - 1), out, res
        )

    return lax.fori_loop(0, -(-n // batch_size), body, out)


def sum_chunks(fn: Callable, *args, batch_size: int | None, pop: "Population"):
    """Sums over the population of per-agent terms, chunk by chunk (`map_chunks`'s chunks),
    never holding a whole-population intermediate: for reductions whose terms are large per
    agent (the population moments, `d p + d² p` numbers per agent).

    `fn(w, *chunk)` returns sums over the agents of its chunk (e.g. `jnp.sum(masked(a, w), -1)`
    or a GEMM over them); `w` is a bool per agent of the chunk, False for padding slots and for
    the agents a shifted last chunk shares with the chunk before (counted there). The chunks'
    sums are added in order with Kahan's compensation (a few numbers, whatever N), so that
    10² chunks in float32 lose no more than one sum does (XLA reduces pairwise).
    """
    return map_sum_chunks(lambda w, *a: ((), fn(w, *a)), *args, batch_size=batch_size, pop=pop)[1]


def map_sum_chunks(fn: Callable, *args, batch_size: int | None, pop: "Population"):
    """`map_chunks` and `sum_chunks` in one pass over the agents: `fn(w, *chunk)` returns
    `(per_agent, sums)`, per-agent outputs (agent axis last) and sums over the chunk's
    agents where `w` holds (see `sum_chunks`); returns `(per_agent, sums)` of the whole
    population. For a pass that both updates every agent and reduces over them (the lean
    loop's one pass: its draws made once for both). On one shard of a mesh (`pop.axis`),
    the chunks are the shard's and the sums are the whole population's: one all-reduce of
    every sum together, after the chunks."""
    n = jax.tree.leaves(args)[0].shape[-1]
    if batch_size is None or batch_size >= n:
        res, sums = fn(pop.valid(pop.slots()), *args)
        return res, pop.total(sums)
    take = lambda a, start: lax.dynamic_slice_in_dim(a, start, batch_size, axis=a.ndim - 1)
    w0 = jnp.ones((batch_size,), bool)
    shapes = jax.eval_shape(fn, w0, *jax.tree.map(lambda a: take(a, 0), args))
    out = jax.tree.map(lambda s: jnp.zeros(s.shape[:-1] + (n,), s.dtype), shapes[0])
    zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes[1])

    def body(i, carry):
        out, total, lost = carry  # Kahan: `lost` is what rounding took from `total` so far
        start = jnp.minimum(i * batch_size, n - batch_size)
        index = start + jnp.arange(batch_size, dtype=start.dtype)
        w = (index >= i * batch_size) & pop.valid(pop.offset().astype(index.dtype) + index)
        chunk = jax.tree.map(lambda a: take(a, start), args)
        res, sums = computed_once(fn, w, *chunk, live=i >= 0)
        out = jax.tree.map(
            lambda o, r: lax.dynamic_update_slice_in_dim(o, r, start, axis=o.ndim - 1), out, res
        )
        term = jax.tree.map(jnp.subtract, sums, lost)
        new = jax.tree.map(jnp.add, total, term)
        return out, new, jax.tree.map(lambda n_, t, y: (n_ - t) - y, new, total, term)

    out, total, _ = lax.fori_loop(0, -(-n // batch_size), body, (out, zero, zero))
    return out, pop.total(total)


def masked(a: Array, w: Array) -> Array:
    """`a` (agent axis last) with the agents where `w` is False set to 0."""
    return jnp.where(w.reshape((1,) * (a.ndim - 1) + w.shape), a, jnp.zeros((), a.dtype))


class Population(NamedTuple):
    """Which agent slots hold real agents: the first `n_active` of the `n_slots` (the rest
    is padding, so that one compiled loop serves every N up to `n_slots`).

    Reductions over the agent axis (the LAST axis) go through it; with `n_active=None`
    every slot is an agent and they are the plain `mean` / `max` / `argmax`.

    Inside `jax.shard_map` over the mesh axis `axis`, split in `shards` equal shards, the
    arrays hold one shard's slots (`n_here` of them, from `offset()` on), and every reduction
    is the shard's followed by one all-reduce across the shards (`total`). `partitioned`:
    the arrays are global ones that GSPMD splits across devices (a mesh without
    `jax.shard_map`), so the reductions keep the forms it turns into all-reduces.
    """

    n_slots: int
    n_active: Array | None = None
    axis: str | None = None
    shards: int = 1
    partitioned: bool = False

    @property
    def n(self):
        return self.n_slots if self.n_active is None else self.n_active

    @property
    def n_here(self) -> int:
        """The slots of the arrays here: all of them, or one shard's."""
        return self.n_slots // self.shards

    def offset(self) -> Array:
        """The first slot here (0, or the shard's first agent's global index)."""
        if self.axis is None:
            return jnp.zeros((), count_dtype())
        return lax.axis_index(self.axis).astype(count_dtype()) * self.n_here

    def slots(self, dtype=None) -> Array:
        """The global indices of the slots here (`jnp.arange(n_slots)` on one shard)."""
        here = jnp.arange(self.n_here, dtype=dtype)
        return here if self.axis is None else self.offset().astype(here.dtype) + here

    def total(self, tree, reduce=lax.psum):
        """`tree`, a pytree of the shard's reductions, reduced across the shards (`reduce`:
        `lax.psum`, `lax.pmax` or `lax.pmin`): one all-reduce for the whole tree. The identity
        without shards."""
        return tree if self.axis is None else reduce(tree, self.axis)

    def mask(self) -> Array | None:
        return None if self.n_active is None else self.valid(self.slots())

    def valid(self, index: Array) -> Array:
        """Whether the slots `index` hold real agents (bool, the shape of `index`)."""
        if self.n_active is None:
            return jnp.ones(index.shape, bool)
        return index < self.n_active.astype(index.dtype)

    def fill_padding(self, a: Array, fill) -> Array:
        """`a` with the padding slots set to `fill`."""
        mask = self.mask()
        return a if mask is None else jnp.where(mask, a, fill)

    def zero_padding(self, a: Array) -> Array:
        """`a` with the padding slots set to 0."""
        return self.fill_padding(a, 0)

    def sum(self, a: Array) -> Array:
        return self.total(jnp.sum(self.zero_padding(a), axis=-1))

    def mean(self, a: Array) -> Array:
        if self.n_active is None and self.axis is None:
            return jnp.mean(a, axis=-1)
        total = self.sum(a)
        return total / jnp.asarray(self.n, total.dtype)

    def max(self, a: Array) -> Array:
        return self.total(jnp.max(self.fill_padding(a, -jnp.inf), -1), lax.pmax)

    def argmax(self, a: Array) -> Array:
        """The first slot holding the largest value of `a` over the agents (the first NaN if
        any), as `jnp.argmax`, by two reductions (a max, then a min over the slots that hold
        it), so that across devices it is two all-reduces of one number each, where
        `jnp.argmax` all-gathers every device's candidate."""
        a = self.fill_padding(a, -jnp.inf)
        top = self.total(jnp.max(a, axis=-1, keepdims=True), lax.pmax)  # NaN if any is NaN
        hit = (a == top) | (jnp.isnan(a) & jnp.isnan(top))
        slot = lax.broadcasted_iota(count_dtype(), a.shape, a.ndim - 1) + self.offset()
        first = jnp.min(jnp.where(hit, slot, jnp.asarray(self.n_slots, slot.dtype)), axis=-1)
        return self.total(first, lax.pmin)

    def n_where(self, a: Bool[Array, "*batch n"]) -> Array:
        """How many agents (not padding) have `a` True: an integer of `count_dtype()`, exact
        for any N (a float sum of ones is not, in float32 above 2²⁴ agents)."""
        mask = self.mask()
        return self.total(jnp.sum(a if mask is None else a & mask, axis=-1, dtype=count_dtype()))

    def quantile(self, a: Float[Array, " n"], q: float) -> Array:
        """The `q`-quantile of `a` over the agents (see `quantiles`)."""
        return self.quantiles(a, (q,))[0]

    def quantiles(self, a: Float[Array, " n"], qs: Sequence[float]) -> Array:
        """The `qs`-quantiles of `a` over the agents, interpolated linearly between order
        statistics as NumPy's default (`s[lo] + frac (s[hi] − s[lo])` at the position
        `q (n − 1)` of the sorted values `s`; NaN sorts last, as in `jnp.sort`).

        The order statistics come from `order_statistics`, never from a sort: `a` is not
        gathered, copied or sorted, so across devices each pass is an all-reduce of a few
        counts. They are `jnp.sort`'s entries bit for bit (but for a zero, always +0, and a
        NaN, always the canonical NaN; an RMSE is never −0), and so is the result
        (`tests/test_metrics.py`). Padding slots are left out; the sort filled them with
        +inf, which it placed before a NaN agent.
        """
        n = jnp.asarray(self.n, count_dtype())
        pos = jnp.stack([q * (n - 1).astype(float) for q in qs])
        below = jnp.floor(pos)
        lo = below.astype(n.dtype)
        hi = jnp.minimum(lo + 1, n - 1)
        s_lo = self.order_statistics(a, lo)
        # s[hi] (hi = lo or lo + 1) in one more pass: s[lo] if more than hi agents are at or
        # below it, else the smallest value above it
        keys, at = ordered_bits(a), ordered_bits(s_lo)
        word = keys.dtype
        valid = self.mask()
        count = self._n_hits(keys[None, :] <= at[:, None], valid)
        above = keys[None, :] > at[:, None]
        above = above if valid is None else above & valid[None, :]
        top = jnp.asarray(np.iinfo(word).max, word)
        after = self.total(jnp.min(jnp.where(above, keys[None, :], top), axis=-1), lax.pmin)
        s_hi = jnp.where(count > hi, s_lo, from_ordered_bits(after, a.dtype))
        frac = (pos - below).astype(a.dtype)
        return jnp.where(frac == 0, s_lo, s_lo + frac * (s_hi - s_lo))

    def order_statistics(self, a: Float[Array, " n"], ranks: Array) -> Array:
        """`jnp.sort(a over the agents)[ranks]` (0-based ranks, each below the number of
        agents), without sorting or gathering `a`: a radix select on the floats' ordered bit
        patterns (`ordered_bits`). For every rank at once, the answer's bits are found from
        the most significant down, one pass per bit (32 in float32, 64 in float64): a pass
        counts the agents whose key is at most the answer so far with this bit 0 and every
        lower bit 1; if those are more than the rank, the bit is 0. The passes are
        reductions over the agent axis (across devices, an all-reduce of `len(ranks)`
        counts per pass) and the answer is the smallest key with more than `rank` agents at
        or below it: exactly the sorted array's entry.
        """
        keys = ordered_bits(a)
        word = keys.dtype
        ranks = ranks.astype(count_dtype())
        valid = self.mask()

        def bit(i):
            shift = jnp.asarray(8 * word.itemsize - 1 - i, word)  # (a Python int without jit)
            return jnp.left_shift(jnp.asarray(1, word), shift)

        def refine(i, prefix):
            trial = prefix | (bit(i) - jnp.asarray(1, word))  # this bit 0, the lower ones 1
            count = self._n_hits(keys[None, :] <= trial[:, None], valid)
            return jnp.where(count > ranks, prefix, prefix | bit(i))

        prefix = lax.fori_loop(0, 8 * word.itemsize, refine, jnp.zeros(ranks.shape, word))
        return from_ordered_bits(prefix, a.dtype)

    def _n_hits(self, hits: Bool[Array, "k n"], valid: Bool[Array, " n"] | None) -> Array:
        """Per row, how many agents `hits` holds, as `count_dtype()`. Summed in int32 when
        the slots fit in it: XLA:CPU vectorises int64 sums poorly (about 6× slower at
        N = 10⁶). The rows are counted in one pass, a variadic reduce of one operand per
        row: `jnp.sum(hits, axis=-1)` had XLA:CPU write the (k, n) counts to memory first,
        and the float32 p50, p90 and p99 took 3.8–4.2× longer at N = 10⁷ (0.74–0.79 s
        against 0.18–0.21 s), 6.7–8.8× at 10⁶ (`experiments/bench_quantiles.py`). Not when
        `partitioned`: GSPMD all-gathers a variadic reduce's partial counts."""
        if valid is not None:
            hits = hits & valid[None, :]
        dtype = jnp.int32 if self.n_slots < 2**31 else count_dtype()
        if self.partitioned:
            n = jnp.sum(hits, axis=-1, dtype=dtype)
        else:
            rows = [row.astype(dtype) for row in hits]
            zeros = [jnp.zeros((), dtype)] * len(rows)
            add = lambda a, b: [u + v for u, v in zip(a, b)]  # noqa: E731
            n = jnp.stack(lax.reduce(rows, zeros, add, (0,)))
        return self.total(n).astype(count_dtype())


def count_dtype():
    """The integer type of agent counts, ranks and slots: int64 (int32 without
    `jax_enable_x64`), what `jnp.argmax` and `jnp.arange` give."""
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.int64))


_UNSIGNED = {4: jnp.uint32, 8: jnp.uint64}


def ordered_bits(a: Float[Array, "*shape"]) -> Array:
    """Unsigned integers (as wide as `a`'s floats) in the order `jnp.sort` puts the floats:
    −inf < … < −0 = +0 < … < +inf < NaN, every NaN one value (zeros become +0, NaNs the
    canonical NaN). Flip the sign bit of a non-negative float, every bit of a negative
    one."""
    word = jnp.dtype(_UNSIGNED[a.dtype.itemsize])
    sign = np.asarray(1 << (8 * word.itemsize - 1), word)
    bits = lax.bitcast_convert_type(a, word)
    bits = jnp.where(a == 0, np.asarray(0, word), bits)
    bits = jnp.where(jnp.isnan(a), np.asarray(np.nan, a.dtype).view(word), bits)
    return jnp.where(bits >= sign, ~bits, bits | sign)


def from_ordered_bits(keys: Array, dtype) -> Array:
    """The floats of `ordered_bits`' keys (its inverse, up to the zeros' sign and NaN's
    payload, which it makes canonical)."""
    sign = np.asarray(1 << (8 * keys.dtype.itemsize - 1), keys.dtype)
    return lax.bitcast_convert_type(jnp.where(keys >= sign, keys ^ sign, ~keys), jnp.dtype(dtype))
