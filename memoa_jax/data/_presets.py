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
