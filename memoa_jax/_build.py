"""From a `RunSpec` to what a run runs (`build`): the data, the simulations side by side on
it, the hyper-parameters they use and FedMOE's own game when asked for. `memoa run`, sweep
and tune and the experiments all build their runs here.
"""

from typing import Any, NamedTuple

from ._spec import COMPARATORS, RunSpec, SpecError


class Built(NamedTuple):
    """What `build(spec)` makes.

    Attributes:
        data: the `memoa_jax.data.Dataset` (after `rows`, column choice and scaling).
        sims: the simulations to run side by side on the same data and key (their results
            merged into one): the main one, and G1 at FedMOE's settings in its own
            (`g1_params="fedmoe"`) when g1_ridge is asked for; one that would run no method
            is left out.
        hp: the hyper-parameters of the game methods (`HyperSpec.values`), and under "g1"
            G1's own (with their "source") when they differ.
        names: the methods in the spec's order.
        notes: lines about a CSV to show the user (dropped columns, its date index).
        dates: a CSV's date column (text per row), or None.
        fedmoe_game: keyword arguments of `memoa_jax.simulate_fedmoe_game` when
            "fedmoe_game" is among the methods, else None.
        columns: a CSV's `(targets, inputs)` column names, or None.
        spec: the `RunSpec` it was built from.
    """

    data: Any
    sims: tuple
    hp: dict[str, Any]
    names: tuple[str, ...]
    notes: list[str]
    dates: tuple[str, ...] | None
    fedmoe_game: dict | None
    columns: tuple[tuple[str, ...], tuple[str, ...]] | None
    spec: RunSpec


def load_data(spec: RunSpec):
    """The data set of `spec.data` (its first `rows` rows), and a CSV's notes, dates and
    `(targets, inputs)` columns (else `[]`, None, None).

    Raises:
        SpecError: a CSV that is missing or cannot be read, more rows than the series has.
    """
    from pathlib import Path

    from .data import load_dataset, read_csv

    d = spec.data
    try:
        if d.csv is None:
            assert d.dataset is not None  # (`DataSpec`'s check)
            data = load_dataset(d.dataset, data_dir=d.data_dir)
            return (data if d.rows is None else data.head(d.rows)), [], None, None
        _check(Path(d.csv).is_file(), f"{{csv}}: no such file {d.csv!r}")
        series = read_csv(
            d.csv,
            target=d.target,
            inputs=d.inputs,
            lags=d.lags,
            target_lags=d.target_lags,
            scale=d.scale,
            rows=d.rows,
        )
    except SpecError:
        raise
    except ValueError as e:  # (a file's own error names the file and the line)
        raise SpecError(str(e).replace("{", "(").replace("}", ")")) from None
    return series.dataset, list(series.notes), series.dates, series.columns


def _check(cond: bool, detail: str) -> None:
    if not cond:
        raise SpecError(detail)


def build(spec: RunSpec, *, data=None) -> Built:
    """The data and the simulations of `spec` (`Built`). Float64 needs `jax_enable_x64`
    on (the caller's choice: `memoa run` turns it on).

    Args:
        spec: the run (`RunSpec`).
        data: the data set, when the caller holds it already (e.g. a built-in one cut to
            its rows); default: read here (`load_data`).

    Returns:
        A `Built`: the data, the simulations, the hyper-parameters, the method names, a
        CSV's notes, dates and columns, `simulate_fedmoe_game`'s arguments, the spec.

    Raises:
        SpecError: what the spec's own checks cannot see without the data (a window
            longer than the series, fedmoe_compat on a multi-dimensional target, a
            missing or unreadable CSV).
    """
    import jax.numpy as jnp

    from ._encoders import ESNEncoder, RFNEncoder
    from ._mean_field import CostParams
    from ._methods import METHODS, make_method
    from ._mixture import HedgeMixture, RidgeMixture
    from ._simulation import Simulation
    from .data import g1_preset

    notes, dates, columns = [], None, None
    if data is None:
        data, notes, dates, columns = load_data(spec)
    preset = spec.preset_name
    hp = spec.hyper.values(preset)
    n_steps = data.n_rows - 1
    for k in ("window", "ridge_window"):
        _check(
            hp[k] < n_steps,
            f"{{{k}}} {hp[k]} needs more than {hp[k]} prediction steps; the series has "
            f"{data.n_rows} rows ({n_steps} prediction steps)",
        )
    _check(
        spec.sync_every <= n_steps,
        f"{{sync_every}} {spec.sync_every}: the series has only {n_steps} prediction steps",
    )
    names = spec.methods
    g1_own = spec.g1_params == "fedmoe" and "g1_ridge" in names
    dtype = jnp.float64 if spec.dtype == "float64" else jnp.float32

    def encoder(features, sigma):
        size = dict(d=data.d, d_x=data.d_x, p=features, sigma=sigma)
        if spec.encoder == "esn":
            return ESNEncoder(**size, n_mc=spec.mc_samples)
        return RFNEncoder(**size)

    try:
        cost = CostParams(q=spec.q, lam=spec.lam, gamma=hp["gamma"], alpha=hp["alpha"])
        enc = encoder(hp["features"], hp["sigma"])
        if spec.server == "ridge":
            server = RidgeMixture(kappa=spec.kappa, eta=spec.eta)
        else:
            bound = float(abs(data.y).max()) or 1.0
            rate = 1.0 / (8.0 * bound**2) if spec.hedge_rate is None else spec.hedge_rate
            server = HedgeMixture(rate=rate)
        settings = dict(
            window=hp["window"],
            ridge_window=hp["ridge_window"],
            sync_every=spec.sync_every,
            mean_field=spec.mean_field,
            learning_rate=spec.learning_rate,
            replay_base=spec.replay_base,
            replay_control=spec.replay_control,
            moments=spec.moments,
        )
        # every named method (`memoa_jax.METHODS`), so that each setting is checked
        by_name = {n: make_method(n, cost, **settings) for n in METHODS}

        def simulation(enc, methods) -> Simulation:
            return Simulation(
                n_agents=spec.n_agents,
                encoder=enc,
                methods=methods,
                server=server,
                cost=cost,
                homogeneity=spec.homogeneity,
                batch_size=spec.batch_size,
                dtype=dtype,
                state=spec.state,
                carry_draws=spec.carry_draws,
            )

        main = [n for n in names if not (g1_own and n == "g1_ridge") and n not in COMPARATORS]
        sims = []
        if main:
            sims.append(simulation(enc, tuple(by_name[n] for n in main)))
        if g1_own:
            g1 = g1_preset(preset)
            _check(
                g1.ridge_window < n_steps,
                f"g1_ridge at FedMOE's settings ({{g1_params}} fedmoe) has ridge window "
                f"{g1.ridge_window}; the series has only {n_steps} prediction steps (use "
                "more {rows}, or {g1_params} game)",
            )
            g1_cost = CostParams(q=spec.q, lam=spec.lam, gamma=g1.gamma, alpha=g1.alpha)
            sims.append(
                simulation(
                    encoder(g1.features, g1.sigma),
                    # the realized cost is measured with the game's weights, like the others'
                    (make_method("g1_ridge", g1_cost, ridge_window=g1.ridge_window),),
                )
            )
            hp = dict(hp, g1=dict(g1.as_dict(), source=g1.source))
    except SpecError:
        raise
    except ValueError as e:  # (a setting a class refuses)
        raise SpecError(str(e).replace("{", "(").replace("}", ")")) from None
    game = None
    if "fedmoe_game" in names:
        _check(
            not spec.fedmoe_compat or data.d == 1,
            f"{{fedmoe_compat}}: FedMOE's game is defined for 1-D targets, this one has d={data.d}",
        )
        game = dict(
            encoder=enc,
            n_agents=spec.n_agents,
            gamma=hp["gamma"],
            alpha=hp["alpha"],
            window=hp["window"],
            ridge_window=hp["ridge_window"],
            kappa=spec.kappa,
            eta=spec.eta,
            fedmoe_compat=spec.fedmoe_compat,
            homogeneity=spec.homogeneity,
        )
    return Built(data, tuple(sims), hp, tuple(names), notes, dates, game, columns, spec)
