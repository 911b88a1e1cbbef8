"""What a run reports (spec §9): per-step statistics, per-method summaries, the run's result.

Every summary is computed from per-agent accumulators and per-step scalars: never an N × T
array. Besides the mean and the max over agents it reports what a max alone hides:

* the per-agent RMSE quantiles p50 / p90 / p99;
* the share of *frozen* agents, whose features were zero at every step (an H2 RFN agent with
  a negative pre-activation and a small σ). Such an agent never moves: under every method it
  predicts a stale observation (`y_0`, or `y_{t−T}` after a hindsight replay), so once N is
  larger than about one over that share the max over agents is set by it, not by the policy;
  `worst_moving_rmse` is the max over the agents that moved;
* `n_diverged`: agents whose RMSE is not finite or exceeds `DIVERGED_FACTOR` times that of
  the lag-1 persistence forecast `ŷ_{t+1} = y_t` (`persistence_rmse`).
"""

from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp

from ._agents import Population
from ._custom_types import Array, Bool, Float
from ._status import Status

DIVERGED_FACTOR = 1e6


class StepStats(NamedTuple):
    """Per-step statistics of one method (each a scalar per step)."""

    mse: Array  # mean over agents of ‖y_{t+1} − ŷⁱ_{t+1}‖²
    worst_se: Array  # max over agents of the same
    server_se: Array  # ‖y_{t+1} − ŷ^srv_{t+1}‖²
    mean_field_se: Array  # ‖y_{t+1} − ȳ_{t+1}‖²
    server_pred: Array  # ŷ^srv_{t+1}, shape (d,) per step
    agent_pred: Array  # ŷⁱ_{t+1} of the tracked agent i (`simulate(track_agent=i)`), (d,)


class Summary(NamedTuple):
    """Run metrics of one method (spec §9). RMSEs are per agent over the run's steps."""

    avg_rmse: Array  # mean over agents of each agent's RMSE
    worst_rmse: Array  # max over agents (the under-performer)
    worst_agent: Array  # index of that agent
    server_rmse: Array
    mean_field_rmse: Array
    worst_cost: Array  # realized under-performer regret: max_i Σ_t stage cost
    mean_cost: Array
    p50_rmse: Array  # quantiles of the agents' RMSE (linear interpolation, as NumPy's)
    p90_rmse: Array
    p99_rmse: Array
    frozen_share: Array  # share of agents whose features were zero at every step
    worst_moving_rmse: Array  # max over the agents that are not frozen (NaN if none moved)
    n_diverged: Array  # agents with a non-finite RMSE or one > DIVERGED_FACTOR × persistence


class SimResult(eqx.Module):
    """Output of `simulate`: per-step statistics, summaries and per-agent RMSE, per method.

    The dicts are keyed by method name (JAX orders a dict's keys when it rebuilds one);
    `names` lists the methods in the order they were given. `status`: the outcome of the
    loop's runtime checks (`Status`; `simulate(throw=False)` leaves a failure there)."""

    steps: dict[str, StepStats]
    summary: dict[str, Summary]
    agent_rmse: dict[str, Float[Array, " n"]]
    names: tuple[str, ...] = eqx.field(static=True, default=())
    status: Status | None = None

    def ordered(self) -> list[tuple[str, Summary]]:
        """`(name, summary)` of every method, in the order the methods were given."""
        names = self.names or tuple(self.summary)
        return [(n, self.summary[n]) for n in names]


def persistence_rmse(y: Float[Array, "time d"], lag: int) -> Float[Array, ""]:
    """RMSE of the forecast `ŷ_{t+1} = y_{max(t+1−lag, 0)}` over the run's steps `t = 0..n−2`.

    Lag 1 is the naive forecast `y_t`. Lag `T + 1` is what a frozen agent predicts under a
    hindsight replay of `T` steps: the observed `y_{t−T}` (and `y_0` before the first replay).
    """
    if lag < 1:
        raise ValueError(f"lag must be a positive integer, got lag={lag!r}")
    n = y.shape[0]
    src = jnp.maximum(jnp.arange(1, n) - lag, 0)
    return jnp.sqrt(jnp.mean(jnp.sum((y[1:] - y[src]) ** 2, axis=-1)))


def summarize(
    rmse: Float[Array, " n"],
    cost: Float[Array, " n"],
    moving: Bool[Array, " n"],
    steps: StepStats,
    pop: Population,
    persistence: Float[Array, ""],
) -> Summary:
    """A method's `Summary` from its agents' RMSE and realized cost, which agents moved, its
    per-step statistics and the lag-1 persistence RMSE of the series.

    Every entry is a reduction over the agents (sums, maxima, counts; the quantiles by
    `Population.quantiles`, a radix select made of counts): sharded over devices, each is
    an all-reduce of a few numbers, and no per-agent array is gathered, copied or sorted."""
    movers = pop.max(jnp.where(moving, rmse, -jnp.inf))
    ok = rmse <= DIVERGED_FACTOR * persistence  # False for NaN and ±inf
    p50, p90, p99 = pop.quantiles(rmse, (0.5, 0.9, 0.99))
    n = jnp.asarray(pop.n, rmse.dtype)
    return Summary(
        avg_rmse=pop.mean(rmse),
        worst_rmse=pop.max(rmse),
        worst_agent=pop.argmax(rmse),
        server_rmse=jnp.sqrt(jnp.mean(steps.server_se)),
        mean_field_rmse=jnp.sqrt(jnp.mean(steps.mean_field_se)),
        worst_cost=pop.max(cost),
        mean_cost=pop.mean(cost),
        p50_rmse=p50,
        p90_rmse=p90,
        p99_rmse=p99,
        frozen_share=pop.n_where(~moving).astype(rmse.dtype) / n,
        worst_moving_rmse=jnp.where(jnp.isneginf(movers), jnp.nan, movers),
        n_diverged=pop.n_where(~ok),
    )


def is_diverged(value: float, persistence: float) -> bool:
    """Whether an RMSE counts as diverged: not finite, or above `DIVERGED_FACTOR` times the
    lag-1 persistence RMSE of the same series."""
    return not (value <= DIVERGED_FACTOR * persistence)


def format_rmse(value: float, persistence: float, n_diverged: int = 0, n_agents: int = 0) -> str:
    """An RMSE for a table: `0.0123`, or `diverged (k of N agents)` instead of a raw 1e77."""
    if is_diverged(value, persistence):
        return f"diverged ({n_diverged} of {n_agents} agents)" if n_agents else "diverged"
    return f"{value:.4f}"
