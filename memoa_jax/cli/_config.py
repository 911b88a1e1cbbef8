"""`memoa run --config FILE`: a `RunSpec` read from a results.json (its "spec") or from a
small .toml or .json spec file, given to the command line as its options' defaults, so that
an option given explicitly overrides the file's value (`config_defaults`).
"""

import dataclasses
import json
from pathlib import Path

from .._spec import HYPER_PARAMETERS, DataSpec, HyperSpec, RunSpec, SpecError
from ._build import lags_text
from ._errors import UsageError


def read_config(path: Path) -> RunSpec:
    """The spec in the file `path`: a results.json of `memoa run` (its "spec"), or a TOML or
    JSON table in `RunSpec.to_dict`'s format (any key left out takes its default). Raises
    UsageError: one line naming the file and the bad key or value."""
    where = f"--config {path}"
    if not path.is_file():
        raise UsageError(f"{where}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{where}: not UTF-8 ({e.reason} at byte {e.start + 1})") from None
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            record = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{where}: not TOML ({e})") from None
    else:
        try:
            record = json.loads(text)
        except ValueError as e:
            raise UsageError(f"{where}: not JSON ({e})") from None
    if isinstance(record, dict) and "summary" in record:  # a results.json
        if "spec" not in record:
            raise UsageError(f'{where}: a results.json without a "spec" (an older memoa?)')
        record = record["spec"]
    try:
        return RunSpec.from_dict(record)
    except SpecError as e:
        raise UsageError(f"{where}: {e.render(_key)}") from None


def _key(field: str) -> str:
    """A spec field as a file names it: `data.rows`, `hyper.window`, `n_agents`."""
    for part, cls in (("data", DataSpec), ("hyper", HyperSpec)):
        if field in {f.name for f in dataclasses.fields(cls)}:
            return f"{part}.{field}"
    return field


def config_defaults(spec: RunSpec) -> dict:
    """The options' values that describe `spec` (argparse `dest` → value), as defaults of
    `memoa run`'s parser: what the command line gives explicitly overrides them."""
    d, h = spec.data, spec.hyper
    names = lambda v: None if v is None else (",".join(v) if v else "none")  # noqa: E731
    out = dict(
        csv=None if d.csv is None else Path(d.csv),
        target=names(d.target),
        inputs=names(d.inputs),
        lags=lags_text(d.lags),
        target_lags=lags_text(d.target_lags),
        scale=d.scale,
        rows=d.rows,
        data_dir=None if d.data_dir is None else Path(d.data_dir),
        preset=h.preset,
        **{k: getattr(h, k) for k in HYPER_PARAMETERS},
        methods=",".join(spec.methods),
        ogd_lr=spec.learning_rate,
    )
    if d.dataset is not None:  # (a --csv given on the command line replaces it)
        out.update(dataset=d.dataset, default_dataset=d.dataset)
    skip = {"data", "hyper", "methods", "learning_rate"}
    out.update(
        {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name not in skip}
    )
    return out
