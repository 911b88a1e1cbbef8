"""The `Dataset` container shared by every data source (spec §2 and §10).

Convention (spec §2, FedMOE): row `t` holds what is public at time `t`. The input `x[t]` is
known at time `t`, and at time `t` every agent predicts the *next* target `y[t + 1]` from
information up to `t` (including `x[t]`). A data set of `n_rows` rows therefore gives
`n_rows - 1` predictions; agents start at `ŷ_0 = y[0]`.

Pure NumPy (float64): the data layer never imports JAX.
"""

import dataclasses

import numpy as np


def _as_float64_matrix(name: str, label: str, value: object) -> np.ndarray:
    """Copies `value` into a read-only float64 array and checks that it is 2-D and finite."""
    try:
        array = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"dataset {name!r}: {label} cannot be converted to a float64 array ({err})"
        ) from None
    if array.ndim != 2:
        raise ValueError(
            f"dataset {name!r}: {label} must be 2-D (n_rows, columns), got shape {array.shape}"
        )
    if array.shape[1] == 0:
        raise ValueError(f"dataset {name!r}: {label} has no columns, got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])  # first in row-major order
        raise ValueError(
            f"dataset {name!r}: {label} has a non-finite value {array[row, col]} "
            f"at row {row}, column {col}"
        )
    array.setflags(write=False)
    return array


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A one-step-ahead time series: public inputs `x` and targets `y`, row `t` = time `t`.

    At time `t` every agent predicts `y[t + 1]` from information up to time `t`, which includes
    `x[t]`; `x[t]` may therefore contain `y[t]` itself (lag 0) and earlier values.

    The arrays are stored as read-only float64 copies, so a `Dataset` is immutable.

    Attributes:
        name: short identifier, e.g. `"ecb"` or `"periodic"` (used in error messages).
        x: public inputs, shape `(n_rows, d_x)`; `x[t]` is known at time `t`.
        y: targets, shape `(n_rows, d)`; at time `t` agents predict `y[t + 1]`.
        credit: attribution line to print under figures and tables (`""` for synthetic data).
        season: the series' seasonal lag in rows (24 for hourly data with a daily cycle, the
            period of a periodic signal), whose persistence forecast `ŷ_{t+1} = y_{t+1−season}`
            the tables report beside the lag-1 one; 0: none known.

    Raises:
        ValueError: if `x` or `y` is not 2-D, has no columns, has a non-finite entry (the
            message names the first offending row and column), if they differ in number of
            rows, or if there are fewer than 2 rows.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    credit: str = ""
    season: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"dataset name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.credit, str):
            raise ValueError(f"dataset {self.name!r}: credit must be a string, got {self.credit!r}")
        if isinstance(self.season, bool) or not isinstance(self.season, int) or self.season < 0:
            raise ValueError(
                f"dataset {self.name!r}: season must be a non-negative integer (0: none), "
                f"got {self.season!r}"
            )
        x = _as_float64_matrix(self.name, "x", self.x)
        y = _as_float64_matrix(self.name, "y", self.y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"dataset {self.name!r}: x and y must have the same number of rows, "
                f"got x with {x.shape[0]} and y with {y.shape[0]}"
            )
        if x.shape[0] < 2:
            raise ValueError(
                f"dataset {self.name!r}: needs at least 2 rows (one prediction), got {x.shape[0]}"
            )
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    @property
    def n_rows(self) -> int:
        """Number of time steps `T_tot` (rows of `x` and `y`)."""
        return int(self.x.shape[0])

    @property
    def d_x(self) -> int:
        """Input dimension (columns of `x`)."""
        return int(self.x.shape[1])

    @property
    def d(self) -> int:
        """Target dimension (columns of `y`)."""
        return int(self.y.shape[1])

    def head(self, n_rows: int) -> "Dataset":
        """The first `n_rows` rows, with the same name and credit.

        Args:
            n_rows: number of rows to keep, `2 <= n_rows <= self.n_rows`.

        Returns:
            A new `Dataset` whose `x` and `y` are the first `n_rows` rows of this one.

        Raises:
            ValueError: if `n_rows` is not an integer, is below 2, or exceeds `self.n_rows`.
        """
        if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer):
            raise ValueError(f"n_rows must be an integer, got {n_rows!r}")
        n_rows = int(n_rows)
        if n_rows < 2:
            raise ValueError(f"n_rows={n_rows} must be at least 2 (one prediction)")
        if n_rows > self.n_rows:
            raise ValueError(
                f"n_rows={n_rows} exceeds the {self.n_rows} rows of dataset {self.name!r}"
            )
        return dataclasses.replace(self, x=self.x[:n_rows], y=self.y[:n_rows])

    def __repr__(self) -> str:
        # getattr: also called on half-built instances (e.g. in type-checker error messages).
        name, credit = getattr(self, "name", None), getattr(self, "credit", None)
        x, y = getattr(self, "x", None), getattr(self, "y", None)
        return (
            f"Dataset(name={name!r}, x.shape={getattr(x, 'shape', None)}, "
            f"y.shape={getattr(y, 'shape', None)}, credit={credit!r})"
        )
