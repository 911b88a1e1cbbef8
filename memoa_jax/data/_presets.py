"""Per-data-set hyper-parameter defaults (spec §10), kept beside the data they belong to.

The values are FedMOE's best random-feature-net settings for each series (Tavakoli et al.,
https://arxiv.org/abs/2505.00216, code https://github.com/fatemetkl/FedMOE; spec §10):

* periodic: α = 1e−3, γ = 10, σ = .1, d_z = 3, T_c = T = 3;
* logistic and the concept(-drift) series: α = 1e−4, γ = 15, σ = .1, d_z = 5, T_c = T = 3;
* Bank of Canada (and its validation segment): α = .01, γ = 10, σ = 1, d_z = 6, T_c = 5, T = 2;
* ETTh1 (and its validation segment): α = 5, γ = 10, σ = .1, d_z = 1, T_c = 2, T = 3;
* ECB (our default series, no FedMOE setting): the Bank-of-Canada values, the same kind of
  series (daily exchange-rate closes).

MEMOA's own knobs (q = 1, λ = .5) are not per data set and are not here.

The greedy baseline G1 has settings of its own (`g1_preset`, issue 13): FedMOE tuned its
greedy (non-game) client separately, in its `*/non_game_best_hp.sh` files (commit 708ae18,
5 clients). The validation series have no file (the same values are used); Concept (2-D) has
no FedMOE recipe at all (its game handles 1-D targets only) and takes Concept drift's, flagged
in `NO_FEDMOE_RECIPE`; ECB (ours) takes BoC's, as its game settings do.
"""

import equinox as eqx


class Preset(eqx.Module):
    """The default hyper-parameters of one data set.

    Attributes:
        alpha: recency discount α ≥ 0 of the agents' ridge cost.
        gamma: ridge weight γ > 0.
        sigma: random-feature noise scale σ > 0.
        features: features per agent p (d_z).
        ridge_window: the greedy baselines' ridge window T_c.
        window: MEMOA's game window T.
    """

    alpha: float
    gamma: float
    sigma: float
    features: int = eqx.field(static=True)
    ridge_window: int = eqx.field(static=True)
    window: int = eqx.field(static=True)

    def as_dict(self) -> dict:
        """The values by name, in the order above (`alpha, gamma, ..., window`)."""
        names = ("alpha", "gamma", "sigma", "features", "ridge_window", "window")
        return {n: getattr(self, n) for n in names}


_PERIODIC = Preset(alpha=1e-3, gamma=10.0, sigma=0.1, features=3, ridge_window=3, window=3)
_LOGISTIC = Preset(alpha=1e-4, gamma=15.0, sigma=0.1, features=5, ridge_window=3, window=3)
_BOC = Preset(alpha=1e-2, gamma=10.0, sigma=1.0, features=6, ridge_window=5, window=2)
_ETT = Preset(alpha=5.0, gamma=10.0, sigma=0.1, features=1, ridge_window=2, window=3)

PRESETS: dict[str, Preset] = {
    "periodic": _PERIODIC,
    "logistic": _LOGISTIC,
    "concept": _LOGISTIC,
    "concept-drift": _LOGISTIC,
    "ecb": _BOC,
    "boc": _BOC,
    "boc-val": _BOC,
    "ett": _ETT,
    "ett-val": _ETT,
}


def preset(name: str) -> Preset:
    """The default hyper-parameters of the data set `name` (a key of `DATASETS`).

    Raises:
        ValueError: if `name` has no preset.
    """
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"no hyper-parameter preset for data set {name!r}; presets exist for: "
            f"{', '.join(sorted(PRESETS))}"
        ) from None


class G1Preset(eqx.Module):
    """FedMOE's own settings of its greedy (non-game) client, our G1 (`LocalRidge`).

    G1 runs at these in a simulation of its own, with its own encoder draw (d_z and σ differ
    from the game's), on the same data and key as the game methods.

    Attributes:
        alpha: recency discount α ≥ 0.
        gamma: ridge weight γ > 0.
        sigma: random-feature noise scale σ > 0.
        features: features per agent p (d_z).
        ridge_window: the ridge window T_c.
        source: where the values come from (a note for tables and records).
    """

    alpha: float
    gamma: float
    sigma: float
    features: int = eqx.field(static=True)
    ridge_window: int = eqx.field(static=True)
    source: str = eqx.field(static=True, default="FedMOE non_game_best_hp")

    def as_dict(self) -> dict:
        """The values by name (`alpha, gamma, sigma, features, ridge_window`), without `source`."""
        names = ("alpha", "gamma", "sigma", "features", "ridge_window")
        return {n: getattr(self, n) for n in names}


NO_FEDMOE_RECIPE: dict[str, str] = {
    "concept": "no FedMOE recipe (its game handles 1-D targets only)"
}

_G1_LOGISTIC = G1Preset(alpha=0.01, gamma=15.0, sigma=0.01, features=3, ridge_window=3)
_G1_BOC = G1Preset(alpha=1.0, gamma=10.0, sigma=1.0, features=3, ridge_window=5)
_G1_ETT = G1Preset(alpha=0.1, gamma=10.0, sigma=1.0, features=2, ridge_window=3)

G1_PRESETS: dict[str, G1Preset] = {
    "periodic": G1Preset(alpha=0.1, gamma=10.0, sigma=1.0, features=3, ridge_window=3),
    "logistic": _G1_LOGISTIC,
    "concept": G1Preset(
        alpha=0.01,
        gamma=15.0,
        sigma=0.01,
        features=3,
        ridge_window=3,
        source=NO_FEDMOE_RECIPE["concept"],
    ),
    "concept-drift": _G1_LOGISTIC,
    "boc": _G1_BOC,
    "boc-val": _G1_BOC,
    "ett": _G1_ETT,
    "ett-val": _G1_ETT,
    "ecb": G1Preset(
        alpha=1.0,
        gamma=10.0,
        sigma=1.0,
        features=3,
        ridge_window=5,
        source="FedMOE non_game_best_hp of BoC (ECB has no FedMOE setting)",
    ),
}


def g1_preset(name: str) -> G1Preset:
    """FedMOE's settings of its greedy client for the data set (or preset) `name`.

    Raises:
        ValueError: if `name` has no G1 preset.
    """
    try:
        return G1_PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"no G1 preset for data set {name!r}; presets exist for: "
            f"{', '.join(sorted(G1_PRESETS))}"
        ) from None
