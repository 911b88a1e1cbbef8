"""Population sweeps: one `Simulation` run at many population sizes N, compiled once per
padded bucket (spec §9).

Agent `i` is the same in any population (its key is `fold_in(key, i)`), so a run of the
first `n` agents of a larger population equals a run with `n_agents=n`: sizes below
`pad_below` run in the smallest power-of-two population (at least 1024 slots) that holds them,
the extra slots being padding that no reduction sees (`simulate(n_active=n)`), and share its
compilation. Above it, padding would cost more run time than a compilation saves.
"""

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax

from ._custom_types import Array, Float, PRNGKeyArray
from ._loop import Simulation, simulate
from ._metrics import Summary


class SweepPoint(NamedTuple):
    """One population size of a sweep."""

    n_agents: int
    slots: int  # the population compiled for it (n_agents plus padding)
    summary: dict[str, Summary]  # per method, in the order of `sim.methods`
    seconds: float  # wall time of the run (the first of a bucket includes its compilation)


def bucket_slots(n: int, pad_below: float | int = 1e5) -> int:
    """The population compiled for `n` agents: `n` itself from `pad_below` on, else the
    smallest power of two ≥ max(n, 1024)."""
    if n < 1:
        raise ValueError(f"population sizes must be positive, got {n}")
    if n >= pad_below:
        return n
    return max(1024, 1 << (n - 1).bit_length())


def sweep(
    sim: Simulation,
    x: Float[Array, "time d_x"],
    y: Float[Array, "time d"],
    sizes: Sequence[int],
    *,
    key: PRNGKeyArray,
    pad_below: float | int = 1e5,
    progress: Callable[[SweepPoint], None] | None = None,
) -> list[SweepPoint]:
    """Run `sim` (its `n_agents` is ignored) for every population size in `sizes`, with the
    same key: one compilation per bucket (`bucket_slots`).

    Args:
        sim: the population's encoder, methods, server and cost.
        x, y: the series, as for `simulate`.
        sizes: population sizes, each ≥ 1 (run in increasing order, repeats dropped).
        key: the PRNG key of every run (agent i is the same agent at every size).
        pad_below: sizes below this share padded compilations.
        progress: called with each finished `SweepPoint`.

    Returns:
        One `SweepPoint` per size, in increasing order of size.

    Examples:
        The population of `simulate`'s example at N = 10 and 100, both in one padded
        compilation of 1024 slots (`bucket_slots`); agent `i` is the same at every size:

        >>> import jax
        >>> jax.config.update("jax_enable_x64", True)
        >>> import jax.numpy as jnp
        >>> import memoa_jax as mj
        >>> from memoa_jax.data import load_dataset
        >>> data = load_dataset("logistic", n_rows=60)
        >>> x, y = jnp.asarray(data.x), jnp.asarray(data.y)
        >>> cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
        >>> sim = mj.Simulation(
        ...     n_agents=100,
        ...     encoder=mj.RFNEncoder(d=1, d_x=data.d_x, p=5, sigma=0.1),
        ...     methods=mj.default_methods(cost, window=3, ridge_window=3)[:1],  # memoa
        ...     cost=cost,
        ... )
        >>> points = mj.sweep(sim, x, y, [10, 100], key=jax.random.key(0))
        >>> [(p.n_agents, p.slots) for p in points]
        [(10, 1024), (100, 1024)]
        >>> print(f"{points[1].summary['memoa'].avg_rmse:.3f}")  # simulate's run at N = 100
        0.231
    """
    points = []
    for n in sorted({int(s) for s in sizes}):
        slots = bucket_slots(n, pad_below)
        start = time.perf_counter()
        res = simulate(
            dataclasses.replace(sim, n_agents=slots),
            x,
            y,
            key=key,
            n_active=None if slots == n else n,
        )
        res = jax.block_until_ready(res)
        point = SweepPoint(n, slots, dict(res.ordered()), time.perf_counter() - start)
        points.append(point)
        if progress is not None:
            progress(point)
    return points
