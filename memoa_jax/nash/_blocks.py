"""Exact O(1)-in-N algebra of exchangeable N-agent matrices (spec §5).

Agent 1's value matrix `P¹` on the stacked state `X ∈ (ℝ^d)^N` is invariant under every
permutation of the other agents `2..N`, so it has only five distinct blocks:

    (1,1) = a,   (1,j) = b,   (j,1) = bt,   (j,j) = c,   (j,k) = e    (j ≠ k, both ≠ 1).

Such matrices form an algebra (sums, products, transposes stay in it) whose operations need
only the blocks and the number of agents `n`, which may be a traced scalar: one compiled
call serves every `N`, and an N-sweep is a `vmap`. Vectors invariant under the same
permutations have two blocks, `own` (agent 1) and `other` (every other agent).

For `n = 1` the blocks that involve another agent do not exist and for `n = 2` neither does
`e`; `mask` sets them to zero so that no placeholder value can reach agent 1's blocks (every
product keeps them behind a factor `n − 1` or `n − 2`, which is zero there).
"""

from typing import NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from .._custom_types import Array


class Blocks(NamedTuple):
    """The five blocks of an exchangeable matrix (agent 1 = 'own'; any block shape)."""

    a: Array
    b: Array
    bt: Array
    c: Array
    e: Array


class Pair(NamedTuple):
    """The two blocks of an exchangeable vector: agent 1's and every other agent's."""

    own: Array
    other: Array


def symmetric(diag: Array, off: Array) -> Blocks:
    """`I_N ⊗ (diag − off) + 𝟙𝟙ᵀ ⊗ off`: every agent alike (no agent singled out)."""
    return Blocks(diag, off, off, diag, off)


def block_diagonal(own: Array, other: Array) -> Blocks:
    """`diag(own, other, ..., other)`."""
    zero = jnp.zeros_like(own)
    return Blocks(own, zero, zero, other, zero)


def matmul(A: Blocks, B: Blocks, n) -> Blocks:
    """`A B`, summing over the `n` agents in closed form."""
    return Blocks(
        a=A.a @ B.a + (n - 1) * (A.b @ B.bt),
        b=A.a @ B.b + A.b @ B.c + (n - 2) * (A.b @ B.e),
        bt=A.bt @ B.a + A.c @ B.bt + (n - 2) * (A.e @ B.bt),
        c=A.bt @ B.b + A.c @ B.c + (n - 2) * (A.e @ B.e),
        e=A.bt @ B.b + A.c @ B.e + A.e @ B.c + (n - 3) * (A.e @ B.e),
    )


def transpose(A: Blocks) -> Blocks:
    return Blocks(A.a.T, A.bt.T, A.b.T, A.c.T, A.e.T)


def matvec(A: Blocks, v: Pair, n) -> Pair:
    return Pair(
        A.a @ v.own + (n - 1) * (A.b @ v.other),
        A.bt @ v.own + A.c @ v.other + (n - 2) * (A.e @ v.other),
    )


def dot(u: Pair, v: Pair, n):
    """`uᵀ v` over all `n` agents."""
    return u.own @ v.own + (n - 1) * (u.other @ v.other)


def outer(u: Pair, v: Pair) -> Blocks:
    """`u vᵀ`."""
    o = jnp.outer
    return Blocks(
        o(u.own, v.own),
        o(u.own, v.other),
        o(u.other, v.own),
        o(u.other, v.other),
        o(u.other, v.other),
    )


def each(f, *xs):
    """Apply `f` block by block (e.g. `each(lambda B: M @ B, G)` is `(I_N ⊗ M) G`)."""
    return jax.tree.map(f, *xs)


_BlocksOrPair = TypeVar("_BlocksOrPair", Blocks, Pair)


def mask(x: _BlocksOrPair, n) -> _BlocksOrPair:
    """Zero the blocks of agents that do not exist (`n = 1`: all but `a`/`own`; `n = 2`: `e`)."""
    two, three = n >= 2, n >= 3
    if isinstance(x, Pair):
        return Pair(x.own, jnp.where(two, x.other, 0.0))
    return Blocks(
        x.a,
        jnp.where(two, x.b, 0.0),
        jnp.where(two, x.bt, 0.0),
        jnp.where(two, x.c, 0.0),
        jnp.where(three, x.e, 0.0),
    )
