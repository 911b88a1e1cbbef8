"""The scan drivers of the loop: plain, and checkpointed for reverse-mode differentiation."""

import math

import jax
import jax.numpy as jnp
from jax import lax


def scan(step, init, n_steps: int):
    return lax.scan(step, init, jnp.arange(n_steps))


def scan_remat(step, init, n_steps: int):
    """`scan` with two-level checkpointing: `n_steps = k·n_seg + rest`, `k = ⌊√n_steps⌋`.

    The outer scan over segments saves only each segment's input state; the backward pass
    re-runs one segment at a time, whose (checkpointed) steps save only their input state.
    Peak: about `n_seg + k ≈ 2√T` copies of the carry instead of T steps of activations.
    """
    k = max(1, math.isqrt(n_steps))
    n_seg, rest = divmod(n_steps, k)
    step = jax.checkpoint(step)
    segment = jax.checkpoint(lambda carry, ts: lax.scan(step, carry, ts))
    final, steps = lax.scan(segment, init, jnp.arange(n_seg * k).reshape(n_seg, k))
    steps = jax.tree.map(lambda a: a.reshape((n_seg * k,) + a.shape[2:]), steps)
    if rest:
        final, tail = lax.scan(step, final, jnp.arange(n_seg * k, n_steps))
        steps = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), steps, tail)
    return final, steps
