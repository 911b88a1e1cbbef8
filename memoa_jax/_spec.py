"""What one run is, as a typed value: `RunSpec` (the data, the hyper-parameters, the
population and the methods), checked when it is made, and its JSON-safe form
(`RunSpec.to_dict`, `RunSpec.from_dict`). `memoa_jax.build(spec)` turns it into the data and
the simulations; `memoa run` writes it into results.json and reads it back (`--config`).

A spec is a frozen dataclass of names and numbers (no arrays; this module imports no JAX, so
that the CLI reads one before it imports JAX). Its checks need no data; those that do (a
window longer than the series) are `build`'s. Each check names its field, so that the
command line can say `--window` where a file says `window` (`SpecError.render`).
"""

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any, no_type_check

from ._methods._registry import (
    DEFAULT_METHODS,
    MEAN_FIELDS,
    METHODS,
    MOMENTS,
    REPLAY_BASES,
    REPLAY_CONTROLS,
)

SPEC_VERSION = 1
"""The version of `RunSpec.to_dict`'s format (its "spec_version" key)."""

COMPARATORS = ("fedmoe_game",)
"""Methods that are not simulations: FedMOE's own dense N-player game
(`memoa_jax.simulate_fedmoe_game`), run beside the simulations on the same data and key."""


class SpecError(ValueError):
    """A `RunSpec` (or a dict read as one) that cannot run: the field and the value in one
    line. The message names fields as `{field}`; `str(error)` shows the field names, and
    `render(name)` shows each as `name(field)` (the command line: its option)."""

    def __init__(self, detail: str):
        self.detail = detail
        super().__init__(self.render(lambda key: key))

    def render(self, name: Callable[[str], str]) -> str:
        """The message with every `{field}` replaced by `name(field)`."""
        return re.sub(r"\{(\w+)\}", lambda m: name(m.group(1)), self.detail)


def _check(cond: bool, detail: str) -> None:
    if not cond:
        raise SpecError(detail)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _at_least(key: str, v, low: int, *, optional: bool = False) -> None:
    if optional and v is None:
        return
    _check(_is_int(v), f"{{{key}}} must be an integer, got {v!r}")
    _check(v >= low, f"{{{key}}} must be at least {low}, got {v}")


def _finite(key: str, v, *, optional: bool = False) -> None:
    if optional and v is None:
        return
    _check(_is_number(v), f"{{{key}}} must be a number, got {v!r}")
    _check(math.isfinite(v), f"{{{key}}} must be a finite number, got {v}")


def _one_of(key: str, v, choices) -> None:
    _check(v in tuple(choices), f"{{{key}}} must be one of {', '.join(choices)}; got {v!r}")


def _convert(spec) -> None:
    """Integers as floats where a field is a float (a TOML `lam = 1`), lists as tuples (JSON
    has no tuples); any other value is left as it is, for the checks. (A spec's values come
    from files: its classes are `no_type_check`, so that the tests' runtime type checker
    leaves a wrong type to these checks, which name the field and the value.)"""
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if "float" in str(f.type) and _is_int(value):
            object.__setattr__(spec, f.name, float(value))
        elif "tuple" in str(f.type) and isinstance(value, list):
            object.__setattr__(spec, f.name, tuple(value))


def _names(key: str, v, *, optional: bool = True) -> None:
    if optional and v is None:
        return
    _check(
        isinstance(v, tuple) and all(isinstance(n, str) and n.strip() for n in v),
        f"{{{key}}} must be a list of column names, got {v!r}",
    )


def _lags(key: str, v) -> None:
    _check(
        isinstance(v, tuple) and all(_is_int(n) and n >= 0 for n in v),
        f"{{{key}}} {v!r}: lags are integers >= 0",
    )
    _check(len(set(v)) == len(v), f"{{{key}}} {v!r}: a lag is repeated")


SCALES = ("none", "max", "standard")


@no_type_check  # (see _convert)
@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The series a run predicts: a built-in data set, or a CSV file with its columns.

    Attributes:
        dataset: a key of `memoa_jax.data.DATASETS` (None with `csv`).
        csv: the path of a CSV file (`memoa_jax.data.read_csv`), or None.
        target: with `csv`: the target column(s) (None: the last numeric column).
        inputs: with `csv`: the input columns (None: every other numeric column; `()`: none).
        lags: with `csv`: the lags of the inputs in x.
        target_lags: with `csv`: the lags of the target in x (`()`: the target is no input).
        scale: with `csv`: "none", "max" or "standard".
        rows: only the first `rows` rows (at least 2), or None for all.
        data_dir: the folder of the real data files (boc, ett), or None for the default.
    """

    dataset: str | None = "ecb"
    csv: str | None = None
    target: tuple[str, ...] | None = None
    inputs: tuple[str, ...] | None = None
    lags: tuple[int, ...] = (0,)
    target_lags: tuple[int, ...] = (0,)
    scale: str = "none"
    rows: int | None = None
    data_dir: str | None = None

    def __post_init__(self):
        _convert(self)
        from .data import DATASETS

        _check(
            (self.dataset is None) != (self.csv is None),
            f"give one data set: {{dataset}} {self.dataset!r} or {{csv}} {self.csv!r}",
        )
        if self.csv is None:
            _check(
                self.dataset in DATASETS,
                f"unknown dataset {self.dataset!r}; choose one of: {', '.join(sorted(DATASETS))}",
            )
            for key, default in (
                ("target", None),
                ("inputs", None),
                ("lags", (0,)),
                ("target_lags", (0,)),
                ("scale", "none"),
            ):
                _check(getattr(self, key) == default, f"{{{key}}} is an option of {{csv}}")
        else:
            _check(
                isinstance(self.csv, str) and self.csv != "",
                f"{{csv}} must be a path, got {self.csv!r}",
            )
        _names("target", self.target)
        _names("inputs", self.inputs)
        _lags("lags", self.lags)
        _lags("target_lags", self.target_lags)
        _one_of("scale", self.scale, SCALES)
        _at_least("rows", self.rows, 2, optional=True)
        _check(
            self.data_dir is None or isinstance(self.data_dir, str),
            f"{{data_dir}} must be a path, got {self.data_dir!r}",
        )


HYPER_PARAMETERS = ("alpha", "gamma", "sigma", "features", "ridge_window", "window")
"""The per-data-set hyper-parameters (`memoa_jax.data.Preset`), in its order."""


@no_type_check  # (see _convert)
@dataclasses.dataclass(frozen=True)
class HyperSpec:
    """The hyper-parameters: a preset (`memoa_jax.data.preset`) and the values given in its
    place (None: the preset's).

    Attributes:
        preset: the data set whose preset applies; None: the data set's own (ECB's for a
            CSV). Only a CSV takes another data set's.
        alpha, gamma, sigma: the recency discount α ≥ 0, the ridge weight γ > 0 and the
            random-feature noise scale σ > 0.
        features, ridge_window, window: features per agent p, the greedy ridge window T_c
            and the game window T (each ≥ 1).
    """

    preset: str | None = None
    alpha: float | None = None
    gamma: float | None = None
    sigma: float | None = None
    features: int | None = None
    ridge_window: int | None = None
    window: int | None = None

    def __post_init__(self):
        _convert(self)
        from .data import DATASETS  # (each has a preset, `memoa_jax.data.PRESETS`)

        _check(
            self.preset is None or self.preset in DATASETS,
            f"{{preset}} {self.preset!r}: choose one of {', '.join(sorted(DATASETS))}",
        )
        for key in ("alpha", "gamma", "sigma"):
            _finite(key, getattr(self, key), optional=True)
        for key in ("window", "ridge_window", "features"):
            _at_least(key, getattr(self, key), 1, optional=True)

    def values(self, preset_name: str) -> dict[str, Any]:
        """The hyper-parameters by name (`HYPER_PARAMETERS`): the preset of `preset_name`
        (`RunSpec.preset_name`), with the values given in its place."""
        from .data import preset

        hp = preset(preset_name).as_dict()
        return {k: v if getattr(self, k) is None else getattr(self, k) for k, v in hp.items()}


@no_type_check  # (see _convert)
@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run: the data, the hyper-parameters, the population, the methods and the seeds.
    Every field has the default of `memoa run`; each is checked when the spec is made
    (`SpecError`, naming the field and the value). `memoa_jax.build(spec)` makes the data
    and the simulations.

    Attributes:
        data: the series (`DataSpec`).
        hyper: the preset and the hyper-parameters given in its place (`HyperSpec`).
        n_agents: the population size N ≥ 1.
        seeds: how many seeds (≥ 1), from `seed` on.
        seed: the first seed.
        dtype: "float64" or "float32".
        state: "stored" or "lean" (`Simulation.state`).
        carry_draws: lean: carry each agent's parameters and noise keys
            (`Simulation.carry_draws`).
        batch_size: agents per chunk, or None (`Simulation.batch_size`).
        methods: names of `memoa_jax.METHODS` (and of `COMPARATORS`), in the order of the
            results.
        q, lam: the own-error weight and the mean-field coupling λ.
        sync_every: play the game every K steps.
        encoder: "rfn" or "esn"; mc_samples: the ESN's moment draws per agent.
        homogeneity: "h1" (one shared encoder) or "h2" (one per agent).
        mean_field: a key of `memoa_jax._methods.MEAN_FIELDS` ("realized" or "flow").
        server: "ridge" (`RidgeMixture(kappa, eta)`) or "hedge" (`HedgeMixture`, rate
            `hedge_rate`, default 1/(8 B²) with B = max |y|).
        learning_rate: the online-gradient methods' (ogd_*) learning rate.
        replay_base, replay_control, moments: the game methods' reading.
        fedmoe_compat: fedmoe_game with FedMOE's two defects.
        g1_params: "fedmoe" (g1_ridge at FedMOE's own settings, in a simulation of its own)
            or "game" (at the game's).
    """

    data: DataSpec = DataSpec()
    hyper: HyperSpec = HyperSpec()
    n_agents: int = 1000
    seeds: int = 3
    seed: int = 0
    dtype: str = "float64"
    state: str = "stored"
    carry_draws: bool = False
    batch_size: int | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    q: float = 1.0
    lam: float = 0.5
    sync_every: int = 1
    encoder: str = "rfn"
    mc_samples: int = 16
    homogeneity: str = "h2"
    mean_field: str = "realized"
    server: str = "ridge"
    kappa: float = 1.0
    eta: float = 1.0
    hedge_rate: float | None = None
    learning_rate: float = 0.05
    replay_base: str = "replay_end"
    replay_control: str = "replay"
    moments: str = "population"
    fedmoe_compat: bool = False
    g1_params: str = "fedmoe"

    def __post_init__(self):
        _convert(self)
        _check(isinstance(self.data, DataSpec), f"{{data}} must be a DataSpec, got {self.data!r}")
        _check(
            isinstance(self.hyper, HyperSpec), f"{{hyper}} must be a HyperSpec, got {self.hyper!r}"
        )
        _check(
            self.hyper.preset is None or self.data.csv is not None,
            f"{{preset}} {self.hyper.preset} is an option of {{csv}}; {{dataset}} "
            f"{self.data.dataset} runs with its own hyper-parameters (give the ones to change "
            "as options, e.g. {gamma})",
        )
        for key in ("q", "lam", "kappa", "eta", "learning_rate"):
            _finite(key, getattr(self, key))
        _at_least("n_agents", self.n_agents, 1)
        _at_least("seeds", self.seeds, 1)
        _check(_is_int(self.seed), f"{{seed}} must be an integer, got {self.seed!r}")
        _at_least("sync_every", self.sync_every, 1)
        _at_least("batch_size", self.batch_size, 1, optional=True)
        _one_of("dtype", self.dtype, ("float64", "float32"))
        _one_of("state", self.state, ("stored", "lean"))
        _check(
            isinstance(self.carry_draws, bool),
            f"{{carry_draws}} must be true or false, got {self.carry_draws!r}",
        )
        _check(
            not self.carry_draws or self.state == "lean",
            f"{{carry_draws}} is an option of {{state}} lean (state {self.state} carries the "
            "draws already)",
        )
        _one_of("encoder", self.encoder, ("rfn", "esn"))
        if self.encoder == "esn":
            _at_least("mc_samples", self.mc_samples, 1)
        _one_of("homogeneity", self.homogeneity, ("h1", "h2"))
        _one_of("mean_field", self.mean_field, tuple(MEAN_FIELDS))
        _one_of("server", self.server, ("ridge", "hedge"))
        _finite("hedge_rate", self.hedge_rate, optional=True)
        _check(
            self.hedge_rate is None or self.hedge_rate > 0,
            f"{{hedge_rate}} must be a finite number > 0, got {self.hedge_rate}",
        )
        _one_of("replay_base", self.replay_base, tuple(REPLAY_BASES))
        _one_of("replay_control", self.replay_control, tuple(REPLAY_CONTROLS))
        _one_of("moments", self.moments, tuple(MOMENTS))
        _one_of("g1_params", self.g1_params, ("fedmoe", "game"))
        _check(
            isinstance(self.fedmoe_compat, bool),
            f"{{fedmoe_compat}} must be true or false, got {self.fedmoe_compat!r}",
        )
        names = self.methods
        _check(isinstance(names, tuple), f"{{methods}} must be a list of names, got {names!r}")
        known = (*METHODS, *COMPARATORS)
        for m in names:
            _check(m in known, f"unknown method {m!r}; choose from {', '.join(known)}")
        _check(bool(names), "{methods} is empty")
        _check(
            len(set(names)) == len(names),
            f"{{methods}} {','.join(names)!r}: a method is repeated",
        )
        if "fedmoe_game" in names:
            _check(
                self.n_agents <= 32,
                "fedmoe_game is FedMOE's dense N-player game: N ≤ 32, got {n_agents} "
                f"{self.n_agents}",
            )
            _check(
                self.encoder == "rfn",
                "fedmoe_game plays with the clients' exact RFN moments: it needs {encoder} rfn",
            )
            _check(
                self.server == "ridge",
                "fedmoe_game runs FedMOE's server: it needs {server} ridge",
            )
        else:
            _check(
                not self.fedmoe_compat,
                "{fedmoe_compat} applies to fedmoe_game: add it to {methods}",
            )

    @property
    def preset_name(self) -> str:
        """The data set whose presets apply: `hyper.preset`, else the data set (ecb's for
        a CSV)."""
        return self.hyper.preset or self.data.dataset or "ecb"

    # SERIALISATION

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-safe values (tuples as lists), with "spec_version";
        `RunSpec.from_dict` reads it back to an equal spec."""
        out: dict[str, Any] = {"spec_version": SPEC_VERSION}
        for key in _FIELDS:
            value = getattr(self, key)
            if isinstance(value, (DataSpec, HyperSpec)):
                value = {k: _plain(getattr(value, k)) for k in _PARTS[key]}
            out[key] = _plain(value)
        return out

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "RunSpec":
        """The spec `record` describes (`to_dict`'s format); a missing key takes its
        default, "spec_version" may be left out. Raises `SpecError`: an unknown key (named),
        another version, a bad value."""
        _check(isinstance(record, dict), f"a spec is a table of values, got {record!r}")
        record = dict(record)
        version = record.pop("spec_version", SPEC_VERSION)
        _check(
            version == SPEC_VERSION,
            f"{{spec_version}} {version!r}: this version reads spec_version {SPEC_VERSION}",
        )
        _known("", record, _FIELDS)
        parts = {}
        for key, names in _PARTS.items():
            if key in record:
                part = record.pop(key)
                _check(isinstance(part, dict), f"{{{key}}} must be a table, got {part!r}")
                _known(f"{key}.", part, names)
                parts[key] = (DataSpec if key == "data" else HyperSpec)(**part)
        return cls(**parts, **record)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _known(where: str, record: dict, names) -> None:
    for key in record:
        _check(key in names, f"unknown key {where + key!r} (known: {', '.join(names)})")


_FIELDS = tuple(f.name for f in dataclasses.fields(RunSpec))
_PARTS = {
    "data": tuple(f.name for f in dataclasses.fields(DataSpec)),
    "hyper": tuple(f.name for f in dataclasses.fields(HyperSpec)),
}
