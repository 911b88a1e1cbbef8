"""`Runner`: simulations compiled once per structure and run on many keys, their results
merged. `memoa run` and the experiments run through it.
"""

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._loop import simulate
from ._metrics import SimResult
from ._simulation import Simulation


class Compiled(NamedTuple):
    """One compiled simulation (`Runner.compile`).

    Attributes:
        program: `program(sim, x, y, key=..., **run_time)`, the `SimResult`.
        compile_s: seconds to trace, lower and compile it.
        trace_s: of which tracing and lowering.
        from_cache: whether XLA's part came from JAX's persistent compilation cache.
    """

    program: Callable[..., SimResult]
    compile_s: float
    trace_s: float
    from_cache: bool


class Runner:
    """Runs simulations, each compiled once per structure: its static fields (N, the
    methods, ...), the data's shape and which run-time options it takes. The key, the
    data's values, the cost weights and `n_active`/`track` are run-time values, so seeds,
    λ (an array) and N up to `sim.n_agents` reuse one program.

    Args:
        mesh: shard the agents over this mesh (`simulate`'s `mesh`), or None.
        throw: raise a failed runtime check (`simulate`'s `throw`); False: it comes back
            in the result's `status` (the program then holds no host callback, so JAX's
            persistent cache keeps it).
    """

    def __init__(self, *, mesh: jax.sharding.Mesh | None = None, throw: bool = True):
        self.mesh = mesh
        self.throw = throw
        self._compiled: dict[Any, Compiled] = {}

    @staticmethod
    def _run_time(n_active, track) -> dict[str, Array]:
        """`simulate`'s run-time options that were given, as int32 arrays."""
        out = {}
        if n_active is not None:
            out["n_active"] = jnp.asarray(n_active, jnp.int32)
        if track is not None:
            out["track_agent"] = jnp.asarray(track, jnp.int32)
        return out

    def compile(
        self,
        sim: Simulation,
        x: Float[Array, "time d_x"],
        y: Float[Array, "time d"],
        *,
        n_active: int | Array | None = None,
        track: int | Array | None = None,
    ) -> Compiled:
        """The compiled program of `sim` on data of the shape of `x` and `y`, taking
        `n_active` and `track` as run-time values where given (their values here do not
        matter); compiled on the first call for its structure, kept after."""
        run_time = self._run_time(n_active, track)
        static = jax.tree.flatten(eqx.filter(sim, eqx.is_array, inverse=True))
        shapes = tuple((a.shape, a.dtype) for a in (x, y))
        k = (static[1], tuple(static[0]), shapes, tuple(sorted(run_time)))
        if k not in self._compiled:
            self._compiled[k] = self._compile(sim, x, y, run_time)
        return self._compiled[k]

    def _compile(self, sim, x, y, run_time) -> Compiled:
        import jax.monitoring

        mesh, throw = self.mesh, self.throw
        fn = eqx.filter_jit(
            lambda sim_, x_, y_, *, key, **kw: simulate(
                sim_, x_, y_, key=key, mesh=mesh, throw=throw, **kw
            )
        )
        seen: set[str] = set()

        def listen(event: str, **_) -> None:
            seen.add(event)

        t0 = time.perf_counter()
        lowered = fn.lower(sim, x, y, key=jax.random.key(0), **run_time)  # pyright: ignore[reportFunctionMemberAccess]
        t1 = time.perf_counter()
        jax.monitoring.register_event_listener(listen)
        try:
            program = lowered.compile()
        finally:
            jax.monitoring.unregister_event_listener(listen)
        hit = "/jax/compilation_cache/cache_hits" in seen
        return Compiled(program, time.perf_counter() - t0, t1 - t0, hit)

    def run(
        self,
        sim: Simulation,
        x: Float[Array, "time d_x"],
        y: Float[Array, "time d"],
        *,
        key: PRNGKeyArray,
        n_active: int | Array | None = None,
        track: int | Array | None = None,
    ) -> SimResult:
        """`simulate(sim, x, y, key=key, n_active=..., track_agent=...)` by the compiled
        program of its structure, finished (`block_until_ready`)."""
        program = self.compile(sim, x, y, n_active=n_active, track=track).program
        run_time = self._run_time(n_active, track)
        return jax.block_until_ready(program(sim, x, y, key=key, **run_time))

    def __call__(
        self,
        sims: Sequence[Simulation],
        x: Float[Array, "time d_x"],
        y: Float[Array, "time d"],
        *,
        key: PRNGKeyArray,
        n_active: int | Array | None = None,
        track: int | Array | None = None,
    ) -> SimResult:
        """Every simulation of `sims` on the same data and key, as one `SimResult` (the
        methods of each, in order)."""
        runs = [self.run(s, x, y, key=key, n_active=n_active, track=track) for s in sims]
        merged = lambda field: {k: v for r in runs for k, v in getattr(r, field).items()}  # noqa: E731
        return SimResult(
            steps=merged("steps"), summary=merged("summary"), agent_rmse=merged("agent_rmse")
        )
