"""Per-agent step noise from a counter-based generator, written for ONE agent (or many, with a
trailing agent axis).

Agent `i` owns a key of two 32-bit words; its noise at step `t` is Threefry-2x32 (Salmon et
al. 2011, "Parallel random numbers: as easy as 1, 2, 3"; the generator behind
`jax.random`) of that key at the counters `(t, j)`, `j = 0, 1, …`. So any agent's noise at any
step is a pure function of `(key_i, t)`: a chunk or a shard of the population regenerates its
own draws, and nothing is carried between steps. The hash itself is a `Kernels` trick
(`_kernels.counter_bits`): hand-written on agent-last rows, or `jax.random`'s, same bits.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._custom_types import Array, Float, UInt32
from ._kernels import counter_bits, threefry2x32

__all__ = ["agent_normals", "key_words", "threefry2x32", "uniform_open"]


def uniform_open(bits: UInt32[Array, "..."]) -> Float[Array, "..."]:
    """Uniform float32 on `(−1, 1)` from 32 random bits (23 of them), as `jax.random.normal`."""
    one_two = lax.bitcast_convert_type((bits >> np.uint32(9)) | np.uint32(0x3F800000), jnp.float32)
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
    return jnp.maximum(lo, (one_two - 1.0) * (1.0 - lo) + lo)


def agent_normals(
    key: UInt32[Array, " 2 *agents"], t, n: int, offset: int = 0, threefry: bool = True
) -> Float[Array, " n *agents"]:
    """`n` standard normal float32 draws of one agent at step `t` (or of many: `key` with a
    trailing agent axis): `√2 erf⁻¹(u)` of uniforms from the first word of Threefry-2x32 of
    the agent's key at counters `(t, offset + j)`, `j < n` (disjoint offsets: independent
    streams). `threefry`: the `Kernels` trick (same bits either way).

    One hash per draw (the second word is dropped): the draws are then elementwise maths on
    an `(n, agents)` array of counters, which XLA:CPU vectorises along the agents.
    """
    j = jnp.arange(offset, offset + n, dtype=jnp.uint32)
    bits = counter_bits(key, t, j, threefry)
    return np.float32(np.sqrt(2.0)) * lax.erf_inv(uniform_open(bits))


def key_words(keys) -> UInt32[Array, "2 n"]:
    """Two-word noise keys, agent axis last, from typed JAX keys (any PRNG implementation)."""
    return jax.vmap(lambda k: jax.random.bits(k, (2,), jnp.uint32), out_axes=-1)(keys)
