"""Names → classes: the named methods (`METHODS`, what `memoa run --methods` and the experiments
choose from, `default_methods` among them) and the strategies of `MeanFieldGame`'s string
options (`REPLAY_BASES`, `REPLAY_CONTROLS`, `MEAN_FIELDS`, `EQUILIBRIA`, `MOMENTS`).

This module imports no JAX: a class is imported on first use (`Registry`), so that the CLI's
`--help` can list the names (as evosax's `algorithms` registry drives its users' string
choices and its tests' parametrisation).
"""

import dataclasses
import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .._mean_field import CostParams
    from ._base import AbstractMethod


def _load(path: str) -> Any:
    """The object at `"module:name"` (module relative to this package)."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module, __package__), name)


class Registry(Mapping[str, Any]):
    """A read-only mapping of names to classes (or other objects) imported on first use.

    Args:
        kind: what a name names, for the error of an unknown one.
        paths: name → `"module:name"` of the object (module relative to `memoa_jax._methods`).
    """

    def __init__(self, kind: str, paths: dict[str, str]):
        self.kind = kind
        self._paths = dict(paths)

    def __getitem__(self, name: str) -> Any:
        if name not in self._paths:
            raise KeyError(f"unknown {self.kind} {name!r}; choose from {', '.join(self)}")
        return _load(self._paths[name])

    def __contains__(self, name: object) -> bool:  # without importing the object
        return name in self._paths

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self._paths!r})"


# THE STRATEGIES OF A GAME'S READING (`MeanFieldGame`'s string options)

REPLAY_BASES = Registry(
    "replay_base",
    {
        "replay_end": "._readings:ReplayEnd",
        "observed": "._readings:ObservedBase",
        "own": "._readings:OwnBase",
    },
)
REPLAY_CONTROLS = Registry(
    "replay_control",
    {"replay": "._readings:ReplayControl", "gains": "._readings:GainsControl"},
)
MEAN_FIELDS = Registry(
    "mean_field",
    {"realized": "._equilibria:RealizedMean", "flow": "._equilibria:FlowMean"},
)
EQUILIBRIA = Registry(
    "equilibrium",
    {"mean_field": "._equilibria:MeanFieldEquilibrium", "nash": "._equilibria:NashEquilibrium"},
)
MOMENTS = Registry(
    "moments",
    {"population": "._equilibria:PopulationMoments", "own": "._equilibria:OwnMoments"},
)


# THE NAMED METHODS

SETTINGS = (
    "window",
    "ridge_window",
    "sync_every",
    "mean_field",
    "replay_base",
    "replay_control",
    "moments",
    "learning_rate",
)
"""The settings `NamedMethod` passes on to the methods that take them."""


@dataclasses.dataclass(frozen=True)
class NamedMethod:
    """A method under a name: its class, and how the shared settings make one.

    Attributes:
        path: `"module:Class"` of its class (`cls`), imported on first use.
        takes: which of `SETTINGS` it passes on to the class (the others are ignored, so
            that one set of settings builds every method).
        fixed: keyword arguments of the class it always gets.
        cost: cost weights it changes (G3: `lam = 0`).
        default: whether `default_methods` (and `memoa run`) include it.
    """

    path: str
    takes: tuple[str, ...] = ()
    fixed: tuple[tuple[str, Any], ...] = ()
    cost: tuple[tuple[str, float], ...] = ()
    default: bool = True

    @property
    def cls(self) -> "type[AbstractMethod]":
        """The class of the method."""
        return _load(self.path)

    def __call__(self, name: str, cost: "CostParams", **settings) -> "AbstractMethod":
        """The method called `name` on the cost weights `cost` and the `settings` (any of
        `SETTINGS`) it takes."""
        import equinox as eqx

        unknown = set(settings) - set(SETTINGS)
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}; known: {SETTINGS}")
        for k, v in self.cost:
            cost = eqx.tree_at(lambda c: getattr(c, k), cost, v)
        kwargs = {k: settings[k] for k in self.takes if k in settings}
        cls: Any = self.cls  # a concrete method: it takes `cost` and `name`
        return cls(cost=cost, **kwargs, **dict(self.fixed), name=name)


_GAME = (
    "window",
    "ridge_window",
    "sync_every",
    "mean_field",
    "replay_base",
    "replay_control",
    "moments",
)
_GAME_CLS = "._mean_field_game:MeanFieldGame"
METHODS: dict[str, NamedMethod] = {
    "memoa": NamedMethod(_GAME_CLS, _GAME),
    "g1_ridge": NamedMethod("._local_ridge:LocalRidge", ("ridge_window",)),
    "g2_myopic": NamedMethod(_GAME_CLS, _GAME[1:], fixed=(("window", 1),)),
    "g3_independent": NamedMethod(_GAME_CLS, _GAME, cost=(("lam", 0.0),)),
    "g4_follow_mean": NamedMethod("._follow_the_mean:FollowTheMean", ("ridge_window",)),
    "ogd_sgd": NamedMethod(
        "._online_gradient:OnlineGradient",
        ("learning_rate",),
        fixed=(("optimizer", "sgd"),),
        default=False,
    ),
    "ogd_adam": NamedMethod(
        "._online_gradient:OnlineGradient",
        ("learning_rate",),
        fixed=(("optimizer", "adam"),),
        default=False,
    ),
}
"""The named methods: MEMOA and the greedy baselines G1–G4 of spec §7.2 (`default`), and
the online-gradient agents (selectable). `make_method(name, cost, **settings)` builds one."""

DEFAULT_METHODS = tuple(n for n, m in METHODS.items() if m.default)
"""The names of `default_methods`, in its order."""


def make_method(name: str, cost: "CostParams", **settings) -> "AbstractMethod":
    """The method `name` of `METHODS` on the cost weights `cost`.

    Args:
        name: a key of `METHODS` (also the method's `name`, which labels its results).
        cost: the cost weights.
        **settings: any of `SETTINGS`: `window`, `ridge_window`, `sync_every`,
            `mean_field`, the reading (`replay_base`, `replay_control`, `moments`), the
            online gradient's `learning_rate`; a method ignores those it does not take (G1
            has no `window`).

    Raises:
        ValueError: an unknown name, or a setting the method refuses.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name](name, cost, **settings)


def default_methods(
    cost: "CostParams",
    *,
    window: int = 3,
    ridge_window: int = 3,
    sync_every: int = 1,
    mean_field: Literal["realized", "flow"] = "realized",
) -> "tuple[AbstractMethod, ...]":
    """MEMOA and the greedy baselines G1–G4 of spec §7.2, all on the same cost weights
    (`DEFAULT_METHODS` of `METHODS`)."""
    settings = dict(
        window=window, ridge_window=ridge_window, sync_every=sync_every, mean_field=mean_field
    )
    return tuple(make_method(n, cost, **settings) for n in DEFAULT_METHODS)
