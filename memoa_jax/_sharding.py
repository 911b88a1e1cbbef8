"""Sharding the agent axis over a device mesh (`jax.sharding`): the only cross-device
traffic is the population reductions, which GSPMD inserts."""

import jax
from jax import lax


def agent_sharding(mesh):
    """A function that places an array (or pytree), agent axis last, on `mesh`'s "agents" axis."""
    if mesh is None:
        return lambda tree: tree
    if "agents" not in mesh.axis_names:
        raise ValueError(f"the mesh needs an axis named 'agents', got axes {mesh.axis_names}")
    # GSPMD propagation ("Auto" axes) on the same devices, whatever axis types the caller used
    # (`jax.make_mesh` makes "Explicit" axes, whose shardings would have to be typed by hand)
    auto = (jax.sharding.AxisType.Auto,) * len(mesh.axis_names)
    mesh = jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=auto)

    def constrain(a):
        spec = jax.sharding.PartitionSpec(*([None] * (a.ndim - 1)), "agents")
        return lax.with_sharding_constraint(a, jax.sharding.NamedSharding(mesh, spec))

    return lambda tree: jax.tree.map(constrain, tree)


def shard_state(shard, state, h2: bool):
    """Pin every per-agent part of the state to the agent sharding (a no-op on one device)."""
    return state._replace(
        noise_keys=shard(state.noise_keys),
        params=shard(state.params) if h2 else state.params,
        z_ring=shard(state.z_ring),
        z_next=shard(state.z_next),
        methods=shard(state.methods),
        acc=shard(state.acc),
        moving=shard(state.moving),
    )
