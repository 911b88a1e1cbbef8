"""The synthetic FedMOE series: periodic, logistic map and concept drift (spec §10).

Each recipe reproduces the FedMOE code (`fedmoe/datasets/`, checked against the stored
repository `fatemetkl/FedMOE`) for `total_time_steps = 201`, i.e. 200 rounds of predictions
plus the initial row. FedMOE always generates `total_time_steps + 1 = 202` points and then
trims one:

* periodic and logistic (`TimeSeriesPeriodic` / `TimeSeriesLogisticMap`) keep the first 201
  points, with `x_t = y_t = s_t`: the input at time `t` is the current value and the target
  to predict is the next value `s_{t+1}`;
* concept drift (`TimeSeriesData._post_process_data_matrices`) drops the first *input* row
  and the last *target* row, so that `y[t + 1] = f(x[t])`.

Pure NumPy float64.
"""

import math

import numpy as np

from ._dataset import Dataset

_N_POINTS = 202  # FedMOE: total_rounds = 200 -> 201 rows -> 202 generated points.

# Periodic (EchoTorch `PeriodicSignalDataset`, copied into FedMOE).
_PERIODS = (5, 6, 12, 20)

# Logistic map (EchoTorch `LogisticMapDataset` defaults, copied into FedMOE).
_LOGISTIC_S0 = 0.6
_LOGISTIC_C = 3.6
_LOGISTIC_B = 0.13
_LOGISTIC_FREQS = (5, 11, 13)

# Concept drift: phase switch of the mixing weight alpha(x1).
_DRIFT_START = 7 * math.pi / 8
_DRIFT_END = 9 * math.pi / 8


def periodic() -> Dataset:
    """The period-4 signal of FedMOE's periodic data set (EchoTorch `PeriodicSignalDataset`).

    The period list `p = (5, 6, 12, 20)` is rescaled to `r = 1.8 (p - 5) / 15 - 0.9`, i.e.
    `r = (-0.9, -0.78, -0.06, 0.9)`, and `s_n = r[(n + 1) mod 4]` for `n = 0..201`; the last
    point is dropped, leaving 201 rows with `x_t = y_t = s_t`.

    Note: spec §10 lists the third level as `+.06`; the formula (and the FedMOE/EchoTorch
    code, `1.8 * (period - min) / (max - min) - 0.9`) gives `1.8 * 7 / 15 - 0.9 = -0.06`,
    which is what is used here.

    Returns:
        `Dataset` named `"periodic"` with 201 rows, `d_x = d = 1`.
    """
    periods = np.asarray(_PERIODS, dtype=np.float64)
    levels = 1.8 * (periods - periods.min()) / (periods.max() - periods.min()) - 0.9
    n = np.arange(_N_POINTS)
    s = levels[(n + 1) % len(_PERIODS)][:-1, None]  # drop the last point (FedMOE [:-1])
    return Dataset(name="periodic", x=s, y=s, season=len(_PERIODS))


def logistic() -> Dataset:
    """FedMOE's forced logistic map (EchoTorch `LogisticMapDataset`).

    `s_0 = 0.6` and `s_n = r_n s_{n-1} (1 - s_{n-1})` for `n = 1..201`, with the forcing
    evaluated at the index of the *new* point, as in the FedMOE code
    (`series[i] = logistic_map(series[i - 1], c + b * dforce[i])`):
    `r_n = 3.6 + 0.13 (sin 2π5τ_n + sin 2π11τ_n + sin 2π13τ_n)`,
    `τ = linspace(0, 1, 202, endpoint=False)`. The last point is dropped, leaving 201 rows
    with `x_t = y_t = s_t`.

    The map is chaotic (`r_n ≈ 3.2..4.0`), so values late in the series depend on the last
    bits of the `sin` implementation; the evaluation order here is that of the FedMOE code.

    Returns:
        `Dataset` named `"logistic"` with 201 rows, `d_x = d = 1`.
    """
    tau = np.linspace(0.0, 1.0, _N_POINTS, endpoint=False)
    two_pi = np.pi * 2
    force = np.zeros_like(tau)  # summed in this order, as `sum(...)` does: the map is chaotic
    for f in _LOGISTIC_FREQS:
        force = force + np.sin(two_pi * f * tau)
    rates = _LOGISTIC_C + _LOGISTIC_B * force  # rates[n] is used for s_n; rates[0] is unused
    s = np.empty(_N_POINTS, dtype=np.float64)
    s[0] = _LOGISTIC_S0
    for n in range(1, _N_POINTS):
        s[n] = rates[n] * s[n - 1] * (1.0 - s[n - 1])
    s = s[:-1, None]  # drop the last point (FedMOE [:-1])
    return Dataset(name="logistic", x=s, y=s)


def _mixing_weight(x1: np.ndarray) -> np.ndarray:
    """`α(x) = 1` for `x ≤ 7π/8`, `cos(2(x - 7π/8))` up to `9π/8`, then 0 (continuous).

    FedMOE adds the indicator of the first piece and the cosine of the closed middle piece,
    which would give 2 at exactly `x = 7π/8`; no grid point of the 202-point grid lies there
    (`7π/8 = 2π k / 201` needs `k = 87.94`), so the two definitions agree on the data.
    """
    middle = np.cos(2.0 * (x1 - _DRIFT_START))
    return np.where(x1 <= _DRIFT_START, 1.0, np.where(x1 <= _DRIFT_END, middle, 0.0))


def _concept_drift_matrices() -> tuple[np.ndarray, np.ndarray]:
    """FedMOE `ConceptDriftDataset` on 202 grid points, aligned so that `y[t+1] = f(x[t])`.

    Returns:
        `(x, y)` of shapes `(201, 3)` and `(201, 2)`.
    """
    grid = np.linspace(0.0, 2.0 * math.pi, _N_POINTS)
    x1, x2, x3 = grid, grid, np.sqrt(grid)
    alpha = _mixing_weight(x1)
    y1 = alpha * (x1**2 + np.sin(x2) + x1 * x3 + 0.5 * np.cos(10.0 * x1)) + (1.0 - alpha) * (
        x1 + x2 - np.sin(x3)
    )
    y2 = alpha * (x1 * np.cos(x2) + x3 - np.exp(-x2)) + (1.0 - alpha) * (
        np.cos(x1) * np.sin(x2) + x3**2 + 0.25 * np.cos(10.0 * x1)
    )
    inputs = np.stack([x1, x2, x3], axis=1)
    targets = np.stack([y1, y2], axis=1)
    # FedMOE TimeSeriesData: "trim first x and last y". Row t then holds x = g(t + 1) and
    # y = f(g(t)), so y[t + 1] = f(g(t + 1)) = f(x[t]).
    return inputs[1:], targets[:-1]


def concept() -> Dataset:
    """FedMOE's 2-D concept-drift series (`ConceptDriftDataset(201)`; the paper's "Concept").

    Grid `g_k = 2πk/201`, `k = 0..201` (`linspace(0, 2π, 202)`), inputs `x₁ = x₂ = g`,
    `x₃ = √g`, and targets, with `α = α(x₁)` from `_mixing_weight`,
    `y₁ = α(x₁² + sin x₂ + x₁x₃ + .5 cos 10x₁) + (1 - α)(x₁ + x₂ - sin x₃)`,
    `y₂ = α(x₁ cos x₂ + x₃ - e^{-x₂}) + (1 - α)(cos x₁ sin x₂ + x₃² + .25 cos 10x₁)`.

    Alignment (FedMOE: "trim first x and last y"): row `t` holds the input of grid point
    `t + 1` and the target generated by grid point `t`,
    `x[t] = (g_{t+1}, g_{t+1}, √g_{t+1})` and `y[t] = f(g_t)`. Hence `y[t + 1] = f(x[t])`:
    the input known at time `t` generates exactly the target agents predict at time `t`,
    and both arrays have 201 rows. In particular `y[0] = f(0) = (0.5, -1)` and
    `x[0] = (2π/201, 2π/201, √(2π/201))`.

    Returns:
        `Dataset` named `"concept"` with 201 rows, `d_x = 3`, `d = 2`.
    """
    x, y = _concept_drift_matrices()
    return Dataset(name="concept", x=x, y=y)


def concept_drift() -> Dataset:
    """FedMOE's 1-D concept-drift series (`one_dim=True`: target `y₂` only).

    Same inputs and alignment as `concept` (`y[t + 1] = f(x[t])`); spec §10 / A8 calls this
    the "Concept Drift" row.

    Returns:
        `Dataset` named `"concept-drift"` with 201 rows, `d_x = 3`, `d = 1`.
    """
    x, y = _concept_drift_matrices()
    return Dataset(name="concept-drift", x=x, y=y[:, 1:])
