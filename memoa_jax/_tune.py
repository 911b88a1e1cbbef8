"""Gradient-based tuning of a method's continuous hyper-parameters through the whole loop.

The online loop (`simulate`) is one pure `lax.scan`, smooth in the cost weights (spec §3,
§4: λ, γ, α), the server ridge κ (spec §8) and the online-gradient learning rate, so a
run's RMSE can be differentiated with `jax.grad` (reverse mode through every step, every
hindsight window and every Riccati recursion) and lowered with an optax optimiser.

Parameterisation (positivity without clipping): every tuned value is `v₀ · softplus(u)` of
an unconstrained `u` starting at `softplus⁻¹(1)` (`v₀` the start value, so that a step in
`u` is a relative change), except the mean-field coupling, which may be negative down to
`−q` (spec §3): `λ = (q + λ₀) · softplus(u) − q`, so that `q + λ > 0` always holds.

Objectives (over the agents of one method; `r_i` = agent i's RMSE over the span):
* "worst": the worst-agent RMSE smoothed by a log-mean-exp of temperature `τ`,
  `τ log((1/N) Σ_i exp(r_i / τ))` with `τ = temperature · mean_i r_i` (relative, so that
  one temperature suits every scale of series). It lies in `[mean_i r_i, max_i r_i]` and
  above `max_i r_i − τ log N`; `temperature → 0` gives the max (spec §9's worst-client RMSE).
* "avg": the average RMSE `mean_i r_i`.
* "server": the server-mixture RMSE.

No file I/O here (`memoa tune` in `cli/tune.py` does that).
"""

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ._custom_types import Array, Float, PRNGKeyArray
from ._loop import Simulation, simulate
from ._methods import OnlineGradient
from ._metrics import SimResult
from ._mixture import RidgeMixture

OBJECTIVES = ("worst", "avg", "server")


def _where(name: str) -> Callable[[Simulation], Float[Array, ""] | float]:
    """The location of hyper-parameter `name` in a one-method `Simulation`."""
    # `_check` (via `tunable`) admits κ only with a `RidgeMixture` server and the learning
    # rate only for an `OnlineGradient` method; the casts state that, they check nothing
    if name == "kappa":
        return lambda s: cast(RidgeMixture, s.server).kappa
    if name == "learning_rate":
        return lambda s: cast(OnlineGradient, s.methods[0]).learning_rate
    return lambda s: getattr(_cost(s), name)


def _cost(sim: Simulation):
    """The cost weights of the one method of `sim` (every method `tunable` admits a cost
    weight for has one, see `AbstractMethod.tunable`)."""
    return getattr(sim.methods[0], "cost")


def tunable(sim: Simulation, kind: str = "server") -> tuple[str, ...]:
    """The continuous hyper-parameters `tune` can move for the one method of `sim`.

    MEMOA and G2: `lam`, `gamma`, `alpha`; G3 (a `MeanFieldGame` whose `lam` is 0 by
    definition), G1 and G4: `gamma`, `alpha`; online gradient: `learning_rate`; plus `kappa`
    with the ridge server when the objective `kind` is "server" (the agents never see the
    server's weights, so κ does not move the agents' RMSE).
    """
    if len(sim.methods) != 1:
        raise ValueError(f"tune one method at a time, got methods={[m.name for m in sim.methods]}")
    (m,) = sim.methods
    names = m.tunable  # (`AbstractMethod.tunable`)
    server = isinstance(sim.server, RidgeMixture) and kind == "server"
    return names + (("kappa",) if server else ())


def _check(sim: Simulation, names: Sequence[str]):
    """One method, and names that can be tuned for it with some objective."""
    allowed = tunable(sim)
    for n in names:
        if n not in allowed:
            raise ValueError(
                f"cannot tune {n!r} for method {sim.methods[0].name!r}; tunable: {allowed}"
            )
    if not names:
        raise ValueError("nothing to tune: got an empty list of hyper-parameters")


def _shift(sim: Simulation, name: str) -> float:
    """`q` for λ (so that λ > −q), 0 otherwise."""
    return float(_cost(sim).q) if name == "lam" else 0.0


_U0 = math.log(math.expm1(1.0))  # softplus⁻¹(1)


def to_unconstrained(sim: Simulation, names: Sequence[str]) -> dict[str, Array]:
    """The starting point in `u`: `softplus⁻¹(1)` for every name (see `constrained`).

    Returns strongly typed arrays, so that the optimiser's updates keep their type and the
    jitted update compiles once.

    Raises:
        ValueError: a name that cannot be tuned, or a start value at its bound (e.g. α = 0).
    """
    _check(sim, names)
    for n in names:
        value, shift = float(_where(n)(sim)), _shift(sim, n)
        if not value + shift > 0:
            raise ValueError(f"cannot tune from {n}={value}: need {n} > {-shift}")
    return {n: jnp.asarray(_U0, dtype=jnp.result_type(float)) for n in names}


def constrained(sim: Simulation, u: dict[str, Array]) -> dict[str, Array]:
    """Values `(v₀ + shift) · softplus(u) − shift`, `v₀` the value in `sim` (the start).

    Scaled by the start value, a step in `u` moves every value by the same relative amount
    whatever its magnitude (γ = 15 and α = 10⁻⁴ alike); `softplus > 0` keeps γ, α, κ and
    the learning rate positive and λ above `−q`.
    """
    out = {}
    for n, v in u.items():
        shift = _shift(sim, n)
        out[n] = (float(_where(n)(sim)) + shift) * jax.nn.softplus(v) - shift
    return out


def with_params(sim: Simulation, values: Mapping[str, Array | float]) -> Simulation:
    """`sim` with the given hyper-parameter values (arrays may be traced)."""
    for n, v in values.items():
        sim = eqx.tree_at(_where(n), sim, jnp.asarray(v))
    return sim


def _check_objective(kind: str, temperature: float):
    if kind not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {kind!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got temperature={temperature!r}")


def objective(
    res: SimResult, name: str, kind: str = "worst", temperature: float = 0.05
) -> Float[Array, ""]:
    """The scalar to minimise for method `name` (see the module docstring).

    Raises:
        ValueError: an unknown `kind` or a non-positive `temperature`.
    """
    _check_objective(kind, temperature)
    if kind == "avg":
        return res.summary[name].avg_rmse
    if kind == "server":
        return res.summary[name].server_rmse
    r = res.agent_rmse[name]
    tau = temperature * jnp.mean(r)
    return tau * (jax.nn.logsumexp(r / tau) - jnp.log(r.shape[-1]))


def make_loss(
    names: Sequence[str], kind: str = "worst", temperature: float = 0.05, remat: bool = False
) -> Callable:
    """`loss(u, sim, x, y, key)`: the objective of one run with hyper-parameters
    `constrained(sim, u)`. Differentiate it in `u` (`jax.value_and_grad`)."""
    names = tuple(names)

    def loss(u, sim, x, y, key):
        run = with_params(sim, constrained(sim, u))
        res = simulate(run, x, y, key=key, remat=remat)
        return objective(res, sim.methods[0].name, kind, temperature)

    return loss


def make_update(
    names: Sequence[str],
    opt: optax.GradientTransformation,
    kind: str = "worst",
    temperature: float = 0.05,
    remat: bool = False,
) -> Callable:
    """One jitted tuning step `update(u, opt_state, sim, x, y, key) -> (loss, u', state')`:
    a full run, its reverse-mode gradient in `u` and one optax update."""
    loss = make_loss(names, kind, temperature, remat)

    @eqx.filter_jit
    def update(u, opt_state, sim, x, y, key):
        value, grad = jax.value_and_grad(loss)(u, sim, x, y, key)
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam: float decay ** int32 count
            updates, opt_state = opt.update(grad, opt_state, u)
        return value, optax.apply_updates(u, updates), opt_state

    return update


def step_memory(
    sim: Simulation,
    x: Float[Array, "time d_x"],
    y: Float[Array, "time d"],
    *,
    key: PRNGKeyArray,
    names: Sequence[str] | None = None,
    kind: str = "worst",
    temperature: float = 0.05,
    remat: bool = False,
) -> dict[str, int]:
    """Bytes of one compiled tuning step (`make_update`), from XLA's memory analysis of the
    compiled program (nothing runs): `temp` (the peak of intermediates, which holds what the
    backward pass keeps), `argument`, `output` and `peak = temp + argument + output`."""
    names = tuple(tunable(sim, kind) if names is None else names)
    _check_objective(kind, temperature)
    u = to_unconstrained(sim, names)
    opt = optax.adam(0.05)
    update = make_update(names, opt, kind, temperature, remat)
    # `eqx.filter_jit` returns a wrapper with `.lower`; its stub says a plain callable
    lowered = cast(Any, update).lower(u, opt.init(u), sim, x, y, key)
    mem = lowered.compile().compiled.memory_analysis()
    out = dict(
        temp=int(mem.temp_size_in_bytes),
        argument=int(mem.argument_size_in_bytes),
        output=int(mem.output_size_in_bytes),
    )
    return dict(out, peak=sum(out.values()))


class TuneResult(NamedTuple):
    """Output of `tune`.

    Attributes:
        values: the chosen hyper-parameters (the iterate of lowest training objective).
        initial: the starting values.
        losses: training objective at every iterate, `losses[0]` at the start.
        history: hyper-parameter values at every iterate.
        best_step: the iterate `values` comes from.
    """

    values: dict[str, float]
    initial: dict[str, float]
    losses: list[float]
    history: list[dict[str, float]]
    best_step: int


def tune(
    sim: Simulation,
    x: Float[Array, "time d_x"],
    y: Float[Array, "time d"],
    *,
    key: PRNGKeyArray,
    names: Sequence[str] | None = None,
    kind: str = "worst",
    temperature: float = 0.05,
    steps: int = 50,
    optimizer: optax.GradientTransformation | None = None,
    remat: bool = False,
    callback: Callable[[int, float], None] | None = None,
) -> TuneResult:
    """Gradient descent on the hyper-parameters of `sim`'s one method through the whole loop.

    Every iterate runs the full online loop on `(x, y)` with the same `key` (common random
    numbers: the same encoders and feature draws), differentiates the objective with
    respect to the unconstrained `u` and applies one optax update.

    Args:
        sim: a `Simulation` with exactly one method; its values are the starting point.
        x, y: the training span.
        key: the run key, shared by every iterate.
        names: which hyper-parameters to move (default `tunable(sim, kind)`).
        kind, temperature: the objective (`objective`).
        steps: number of optimiser updates.
        optimizer: default `optax.adam(0.05)` (steps of about 5% in each value).
        remat: checkpoint the loop (see `simulate`), for large N or long series.
        callback: called as `callback(step, loss)` after each evaluation.

    Returns:
        A `TuneResult`; `losses` has `steps + 1` entries.

    Raises:
        ValueError: more than one method, a name that is not tunable, a bad objective.

    Examples:
        Two Adam steps on MEMOA's λ, γ and α (`tunable`), the worst agent's RMSE (softened)
        as the objective, on `simulate`'s example:

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
        >>> result = mj.tune(sim, x, y, key=jax.random.key(0), steps=2)
        >>> sorted(result.values), len(result.losses)
        (['alpha', 'gamma', 'lam'], 3)
        >>> result.losses[-1] < result.losses[0]
        True
    """
    names = tuple(tunable(sim, kind) if names is None else names)
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got steps={steps!r}")
    _check_objective(kind, temperature)
    u = to_unconstrained(sim, names)
    opt = optax.adam(0.05) if optimizer is None else optimizer
    update = make_update(names, opt, kind, temperature, remat)
    to_float = lambda u: {n: float(v) for n, v in constrained(sim, u).items()}
    opt_state = opt.init(u)
    losses, history = [], []
    for i in range(steps + 1):
        history.append(to_float(u))
        # the last iterate's value comes from the same compiled update (its step is dropped)
        value, u_next, state_next = update(u, opt_state, sim, x, y, key)
        if i < steps:
            u, opt_state = u_next, state_next
        losses.append(float(value))
        if callback is not None:
            callback(i, float(value))
    finite = [v if jnp.isfinite(v) else jnp.inf for v in losses]
    best = min(range(len(finite)), key=finite.__getitem__)
    return TuneResult(history[best], history[0], losses, history, best)
