"""The scan drivers of the loop: plain, and checkpointed for reverse-mode differentiation."""

import math

import jax
import jax.numpy as jnp
from jax import lax


def scan(step, init, stop: int, start: int = 0):
    """`step` over `t = start..stop−1`."""
    return lax.scan(step, init, jnp.arange(start, stop))


def scan_remat(step, init, stop: int, start: int = 0):
    """`scan` with two-level checkpointing: `n_steps = k·n_seg + rest`, `k = ⌊√n_steps⌋`.

    The outer scan over segments saves only each segment's input state; the backward pass
    re-runs one segment at a time, whose (checkpointed) steps save only their input state.
    Peak: about `n_seg + k ≈ 2√T` copies of the carry instead of T steps of activations.
    """
    n_steps = stop - start
    k = max(1, math.isqrt(n_steps))
    n_seg, rest = divmod(n_steps, k)
    step = jax.checkpoint(step)
    segment = jax.checkpoint(lambda carry, ts: lax.scan(step, carry, ts))
    ts = jnp.arange(start, start + n_seg * k).reshape(n_seg, k)
    final, steps = lax.scan(segment, init, ts)
    steps = jax.tree.map(lambda a: a.reshape((n_seg * k,) + a.shape[2:]), steps)
    if rest:
        final, tail = lax.scan(step, final, jnp.arange(start + n_seg * k, stop))
        steps = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), steps, tail)
    return final, steps
