"""What one step of the loop computes per agent, counted from its jaxpr: Threefry hashes and
standard normals (erf⁻¹), the two costs that bound a lean loop (`memoa bench --state lean`).

A step is traced once (`jax.make_jaxpr`, nothing runs) at a time `t` past every method's
warm-up, so that it is the loop's steady state: the body of the main scan. Sub-programs are
walked recursively: a scan's body counts `length` times, a conditional its costliest branch
(the lean loop's `computed_once` is a conditional whose other branch is a constant). A call of
`_kernels.threefry2x32` (a nested jit, named in the jaxpr) counts one hash per element of
its output, and so does JAX's own `threefry2x32` primitive; every `erf_inv` element is one
normal.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr

from ._agents import Population


class DrawCounts(NamedTuple):
    """Per agent and step: Threefry-2x32 hashes (each a 2-word block of 20 rounds) and
    standard normals (inverse-erf evaluations)."""

    hashes: float
    normals: float


_HASH_JITS = ("_threefry2x32", "threefry2x32")


def _count(jaxpr, counts: dict) -> None:
    """Adds the hashes and normals of `jaxpr` (recursively, see the module) to `counts`."""
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name in ("pjit", "jit") and eqn.params.get("name") in _HASH_JITS:
            counts["hashes"] += eqn.outvars[0].aval.size
            continue
        if name == "threefry2x32":
            counts["hashes"] += eqn.outvars[0].aval.size
            continue
        if name == "erf_inv":
            counts["normals"] += eqn.outvars[0].aval.size
            continue
        if name == "scan":
            inner = {"hashes": 0, "normals": 0}
            _count(eqn.params["jaxpr"].jaxpr, inner)
            for k in counts:
                counts[k] += eqn.params["length"] * inner[k]
            continue
        if name == "cond":
            branches = []
            for br in eqn.params["branches"]:
                inner = {"hashes": 0, "normals": 0}
                _count(br.jaxpr, inner)
                branches.append(inner)
            for k in counts:
                counts[k] += max(b[k] for b in branches)
            continue
        if name == "while":
            inner = {"hashes": 0, "normals": 0}
            _count(eqn.params["body_jaxpr"].jaxpr, inner)
            if inner["hashes"] or inner["normals"]:
                raise ValueError("a while loop with draws inside: its trip count is unknown")
            continue
        for sub in _sub_jaxprs(eqn.params):
            _count(sub, counts)


def _sub_jaxprs(params) -> list:
    """The jaxprs an equation's parameters hold (a nested jit's, a custom rule's)."""
    out = []
    for v in params.values():
        vs = v if isinstance(v, (tuple, list)) else (v,)
        for u in vs:
            if hasattr(u, "jaxpr") and hasattr(u.jaxpr, "eqns"):
                out.append(u.jaxpr)
            elif hasattr(u, "eqns"):
                out.append(u)
    return out


def _steady_step(sim, n_steps: int):
    """One steady-state step of `sim`'s loop: `init(x, y, key)` (the carry of the main
    scan), `step(state, x, y, key, t)`, their abstract arguments (shapes only: nothing is
    allocated) and a time `t` past every method's warm-up."""
    from ._loop import _drop_rings, _initial_state, _make_step, _same, _warm_up_steps

    t_ = max(_warm_up_steps(sim), max(m.history for m in sim.methods)) + 1
    if t_ >= n_steps:
        raise ValueError(f"n_steps={n_steps} must exceed the warm-up of {t_} steps")
    x = jax.ShapeDtypeStruct((n_steps + 1, sim.encoder.d_x), sim.dtype)
    y = jax.ShapeDtypeStruct((n_steps + 1, sim.encoder.d), sim.dtype)
    key = jax.eval_shape(lambda: jr.key(0))

    def init(x, y, key):
        state = _initial_state(sim, x, y, key, _same)
        if _warm_up_steps(sim):
            state = state._replace(methods=_drop_rings(sim, state.methods))
        return state

    def step(state, x, y, key, t):
        pop = Population(sim.n_agents, None)
        make = _make_step(sim, x, y, key, pop, _same, False, jnp.zeros((), jnp.int32))
        return make(state, t)

    return init, step, (x, y, key), jnp.asarray(t_, jnp.arange(1).dtype)


def step_draw_counts(sim, *, n_steps: int = 16) -> DrawCounts:
    """Hashes and normals per agent of one steady-state step of `sim`'s loop (see the
    module docstring), traced at `sim.n_agents` agents on `n_steps + 1` observations:
    nothing is allocated or run."""
    init, step, args, t = _steady_step(sim, n_steps)
    state = jax.eval_shape(init, *args)
    counts = {"hashes": 0, "normals": 0}
    _count(jax.make_jaxpr(step)(state, *args, t).jaxpr, counts)
    return DrawCounts(counts["hashes"] / sim.n_agents, counts["normals"] / sim.n_agents)


def step_costs(sim, *, n_steps: int = 16) -> dict[str, float]:
    """XLA's figures for one steady-state step of `sim`'s loop, compiled alone for the
    default backend (nothing runs), per agent: `bytes_accessed` and `flops`
    (`compiled.cost_analysis()`), and `buffer_bytes`, the temporary buffers XLA allocates
    (`compiled.memory_analysis()`), beside what the loop carries (`carry_bytes_per_agent`)."""
    init, step, args, t = _steady_step(sim, n_steps)
    state = jax.eval_shape(init, *args)
    compiled = jax.jit(step).lower(state, *args, t).compile()
    cost = compiled.cost_analysis() or {}
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    memory = compiled.memory_analysis()
    n = sim.n_agents
    return dict(
        bytes_accessed=float(cost.get("bytes accessed", float("nan"))) / n,
        flops=float(cost.get("flops", float("nan"))) / n,
        buffer_bytes=float(getattr(memory, "temp_size_in_bytes", float("nan"))) / n,
    )
