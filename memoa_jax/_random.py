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
import jax.extend.random as jxr
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._custom_types import Array, Float, UInt32, UInt64
from ._kernels import counter_bits, threefry2x32

__all__ = [
    "agent_normals",
    "fold_in_index",
    "fold_in_rows",
    "index_words",
    "is_threefry",
    "key_words",
    "normal_rows",
    "split_rows",
    "threefry2x32",
    "uniform_open",
]


def uniform_open(bits: UInt32[Array, "..."] | UInt64[Array, "..."]) -> Float[Array, "..."]:
    """Uniform on `(−1, 1)` from random bits as `jax.random.normal` makes them: float32 from
    32 bits (23 of them), float64 from 64 bits (52 of them)."""
    if bits.dtype == jnp.uint64:
        mantissa = (bits >> np.uint64(12)) | np.uint64(0x3FF0000000000000)
        one_two = lax.bitcast_convert_type(mantissa, jnp.float64)
        lo = np.nextafter(np.float64(-1.0), np.float64(0.0))
    else:
        mantissa = (bits >> np.uint32(9)) | np.uint32(0x3F800000)
        one_two = lax.bitcast_convert_type(mantissa, jnp.float32)
        lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
    return jnp.maximum(lo, (one_two - 1.0) * (1.0 - lo) + lo)


# `jax.random`'s key derivations on agent-last rows (the `threefry` trick): a population's keys
# are `(2, *agents)` words, and each function gives, bit for bit, what `jax.random` gives for
# every agent's key with the default Threefry implementation (`jax_threefry_partitionable`,
# the default since JAX 0.5): 4-5× cheaper than `vmap` of `jax.random` on XLA:CPU, where the
# lean state recomputes every agent's parameters several times per step.


def is_threefry(key) -> bool:
    """Whether `key` (a typed or raw key) is a Threefry-2x32 key of `jax.random`'s
    partitionable derivations, so that the row forms below give its bits."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        impl = str(jax.random.key_impl(key))
    else:
        impl = getattr(jax.config, "jax_default_prng_impl")
    return impl == "threefry2x32" and bool(getattr(jax.config, "jax_threefry_partitionable"))


def _hash_at(key: UInt32[Array, " 2 *agents"], j: int):
    """Both words of Threefry-2x32 of each key at the counter `(0, j)`."""
    return threefry2x32(key[0], key[1], np.uint32(0), np.uint32(j))


def index_words(index) -> tuple[Array | None, Array]:
    """The high and low 32-bit words (uint32) of agent indices: an integer array (the high
    word None for a 32-bit one: it is 0), or a pair `(hi, lo)` of integer arrays, the form
    of a 64-bit index without `jax_enable_x64` (where int64 does not exist)."""
    if isinstance(index, tuple):
        hi, lo = index
        return jnp.asarray(hi).astype(jnp.uint32), jnp.asarray(lo).astype(jnp.uint32)
    index = jnp.asarray(index)
    if index.dtype.itemsize <= 4:
        return None, index.astype(jnp.uint32)
    return (index >> 32).astype(jnp.uint32), index.astype(jnp.uint32)


def fold_in_rows(key: UInt32[Array, " 2"], index) -> UInt32[Array, " 2 *agents"]:
    """Agent `i`'s key for every index `i` (`index_words`: 32- or 64-bit): Threefry-2x32 of
    `key` at the counter `(i >> 32, i mod 2³²)`. Below 2³² that is `jax.random.fold_in(key,
    i)`'s words (which folds in `uint32(i)`: agents `i` and `i + 2³²` would share a key);
    above, the high word takes the counter's first word, where `fold_in` puts 0, so every
    agent below 2³² keeps its bits at no extra hash."""
    hi, lo = index_words(index)
    w0, w1 = threefry2x32(key[0], key[1], np.uint32(0) if hi is None else hi, lo)
    return jnp.stack([w0, w1])


def fold_in_index(key, index):
    """`fold_in_rows` for one typed key and one index (scalar, `index_words`), by
    `jax.random`: `jax.random.fold_in(key, i)` below 2³², the same Threefry words above for
    a Threefry key. Another PRNG implementation folds the high word in after the low one,
    where it is nonzero."""
    hi, lo = index_words(index)
    low = jax.random.fold_in(key, lo)
    if hi is None:
        return low
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):  # a raw key: the default impl
        return jnp.where(hi == 0, low, jxr.threefry_2x32(key, jnp.stack([hi, lo])))
    impl = jax.random.key_impl(key)
    if str(impl) == "threefry2x32":
        words = jxr.threefry_2x32(jax.random.key_data(key), jnp.stack([hi, lo]))
        return jax.random.wrap_key_data(words, impl=impl)
    high = jax.random.fold_in(low, hi)
    data = jnp.where(hi == 0, jax.random.key_data(low), jax.random.key_data(high))
    return jax.random.wrap_key_data(data, impl=impl)


def split_rows(key: UInt32[Array, " 2 *agents"], num: int) -> list[UInt32[Array, " 2 *agents"]]:
    """`jax.random.split(k, num)`'s words for every key `k`, as a list of `num` keys."""
    return [jnp.stack(_hash_at(key, j)) for j in range(num)]


def bits_rows(key: UInt32[Array, " 2 *agents"], n: int, width: int = 32) -> Array:
    """`jax.random.bits(k, (n,), uint{width})` for every key `k`: shape `(n, *agents)`."""
    j = jnp.arange(n, dtype=jnp.uint32).reshape((n,) + (1,) * (key.ndim - 1))
    w0, w1 = threefry2x32(key[0][None], key[1][None], np.uint32(0), j)
    if width == 64:
        return (w0.astype(jnp.uint64) << np.uint64(32)) | w1.astype(jnp.uint64)
    return w0 ^ w1


def normal_rows(key: UInt32[Array, " 2 *agents"], shape: tuple[int, ...], dtype) -> Array:
    """`jax.random.normal(k, shape, dtype)` for every key `k`: shape `shape + agents`."""
    dtype = jnp.dtype(dtype)
    n = int(np.prod(shape))
    u = uniform_open(bits_rows(key, n, 8 * dtype.itemsize))
    z = np.sqrt(2.0).astype(dtype) * lax.erf_inv(u)
    return z.reshape(tuple(shape) + key.shape[1:])


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
