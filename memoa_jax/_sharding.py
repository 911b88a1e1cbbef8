"""Sharding the agent axis over a device mesh (`jax.sharding`). Unchunked, one program over
the global arrays, whose population reductions GSPMD turns into all-reduces; with chunks
(`Simulation.batch_size`), the loop runs on each device's shard (`jax.shard_map`), its
chunk loops inside, and the reductions are explicit (`Population.total`)."""

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

AXIS = "agents"
"""The mesh axis over which the agents are split."""


def _auto(mesh):
    """`mesh` with GSPMD propagation ("Auto" axes) on the same devices, whatever axis types
    the caller used (`jax.make_mesh` makes "Explicit" axes, whose shardings would have to be
    typed by hand)."""
    if AXIS not in mesh.axis_names:
        raise ValueError(f"the mesh needs an axis named 'agents', got axes {mesh.axis_names}")
    auto = (jax.sharding.AxisType.Auto,) * len(mesh.axis_names)
    return jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=auto)


def agent_spec(a) -> P:
    """The partition of an array with the agent axis last."""
    return P(*([None] * (a.ndim - 1)), AXIS)


def agent_sharding(mesh):
    """A function that places an array (or pytree), agent axis last, on `mesh`'s "agents" axis."""
    if mesh is None:
        return lambda tree: tree
    mesh = _auto(mesh)

    def constrain(a):
        return lax.with_sharding_constraint(a, jax.sharding.NamedSharding(mesh, agent_spec(a)))

    return lambda tree: jax.tree.map(constrain, tree)


def shard_state(shard, state, h2: bool):
    """Pin every per-agent part of the state to the agent sharding (a no-op on one device)."""
    return state._replace(
        noise_keys=shard(state.noise_keys),
        params=shard(state.params) if h2 else state.params,
        features=shard(state.features),
        methods=shard(state.methods),
        acc=shard(state.acc),
        moving=shard(state.moving),
    )


def state_specs(state, h2: bool):
    """The partitions of the loop state's leaves (of arrays or their shapes): the per-agent
    parts of `shard_state` split on the agent axis, the rest replicated."""
    marked = shard_state(lambda tree: jax.tree.map(agent_spec, tree), state, h2)
    return jax.tree.map(
        lambda a: a if isinstance(a, P) else P(), marked, is_leaf=lambda a: isinstance(a, P)
    )


def on_shards(mesh, fn, in_specs, out_specs):
    """`fn` run on each device's shard (`jax.shard_map` over `mesh`). The outputs that
    `out_specs` replicate must be equal on every shard (all-reduced, or computed from
    replicated values alone): unchecked (`check_vma=False`), as the code that runs inside
    is written for global arrays and does not type its loops' carries as varying."""
    mesh = _auto(mesh)
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def gather_in_sum(row, shards: int, dtype):
    """Every shard's int32 vector `row`, stacked in shard order `(shards, k)`, inside
    `jax.shard_map` over the agent axis: an all-gather written as a psum, in the float
    `dtype`, of a matrix that holds each shard's row in its own line, so that XLA's
    all-reduce combiner packs it with the step's other sums of that type (an all-gather
    stays a collective of its own). Exact: each int32 goes as its two 16-bit halves."""
    halves = jnp.concatenate([row >> 16, row & 0xFFFF]).astype(dtype)  # (arithmetic shift)
    rows = jnp.zeros((shards, halves.shape[0]), dtype)
    rows = lax.dynamic_update_slice_in_dim(rows, halves[None], lax.axis_index(AXIS), 0)
    every = lax.psum(rows, AXIS).astype(row.dtype)
    k = row.shape[0]
    return (every[:, :k] << 16) | every[:, k:]
