"""`memoa reproduce`: run the experiment scripts of `experiments/` into an output folder
(`runs/reproduce-full/` by default; `--out figures` regenerates the committed figures).

Each script (`main_table`, `trajectories`, `lambda_and_n`, `tune_val`, `esn_table`) has a
fixed seed and writes the image and/or the numbers behind it; every output file is written to
a temporary file in the same folder and moved into place, so a file that exists is complete.
Started again after an interruption, the command skips what is already written with the same
configuration (the main table cell by cell). One process runs them all, so compilations are shared.
`--quick` (1 seed, the first 201 rows, N ≤ 100, fewer λ and N points) writes to
`runs/reproduce-quick/` so that it never passes for the full run.
"""

import importlib.util
import os
import sys
import time
from pathlib import Path
from types import ModuleType

from ._errors import Failure, Interrupted, InterruptGuard, UsageError, check, is_interrupt
from ._options import count_type
from ._outputs import command_line, default_out, make_out_dir
from ._tidy import REPRODUCE_COLUMNS, reproduce_rows, write_summary_csv

EXPERIMENTS = ("main_table", "readings", "trajectories", "lambda_and_n", "tune_val", "esn_table")
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "experiments"  # of the source checkout
SUMMARY = (
    "Rerun the paper's experiments with fixed seeds (resumable), in\n"
    "runs/reproduce-*; `--out figures` updates the repository's figures."
)


def add_parser(sub, formatter):
    r = sub.add_parser(
        "reproduce",
        help=SUMMARY,
        formatter_class=formatter,
        description="Run the experiment scripts (main table, per-dataset trajectories, effect "
        "of λ and N) with fixed seeds; each writes its image and its numbers (JSON/Markdown). "
        "A rerun skips outputs already complete.",
    )
    r.add_argument("--quick", action="store_true", help="1 seed, 201 rows, N <= 100 (minutes)")
    r.add_argument(
        "--out",
        type=Path,
        help="output folder (default runs/reproduce-full, or runs/reproduce-quick with "
        "--quick); --out figures regenerates the repository's figures",
    )
    r.add_argument("--only", help=f"comma-separated subset of: {', '.join(EXPERIMENTS)}")
    r.add_argument("--datasets", help="comma-separated subset of the data sets")
    r.add_argument(
        "--rows", type=count_type("--rows"), help="use only the first ROWS rows of each series"
    )
    r.add_argument(
        "--data-dir",
        type=Path,
        help="folder of the real data files (boc, ett); default $MEMOA_DATA, else "
        "../shared/data beside the source checkout",
    )
    r.add_argument(
        "--experiments-dir",
        type=Path,
        default=DEFAULT_DIR,
        help="folder of the experiment scripts (Python code from it is run)",
    )
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    r.set_defaults(func=main)


def _load(folder: Path, name: str):
    """The experiment script `folder/name.py`, run as a module (its folder first on
    `sys.path`, so that it imports the experiments' `_common` beside it)."""
    path = folder / f"{name}.py"
    check(path.is_file(), f"experiment script {str(path)!r} not found (--experiments-dir)")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(f"memoa_experiments_{name}", path)
    check(spec is not None and spec.loader is not None, f"cannot load {str(path)!r}")
    assert spec is not None and spec.loader is not None  # (for the type checker)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # not an experiment script of this package
        raise UsageError(
            f"--experiments-dir {str(folder)!r}: {path.name} cannot be loaded "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    for attr in ("units", "run", "outputs"):
        check(
            callable(getattr(module, attr, None)),
            f"--experiments-dir {str(folder)!r}: {path.name} has no {attr}(): not an "
            "experiment script of memoa reproduce",
        )
    return module


def _common_module(folder: Path) -> ModuleType:
    """The experiments' common module (`_common.py` beside the scripts, with
    `dataset_names`), as the scripts imported it; one line if the folder has none."""
    common = sys.modules.get("_common")
    where = getattr(common, "__file__", None)
    if (
        common is None
        or where is None
        or Path(where).resolve().parent != folder.resolve()
        or not callable(getattr(common, "dataset_names", None))
    ):
        raise UsageError(
            f"--experiments-dir {str(folder)!r}: no _common.py with dataset_names() there "
            "(the experiments' common module); give the repository's experiments/ folder"
        )
    return common


def _kept(out: Path, outputs) -> str:
    """What an interrupted reproduction leaves: the complete outputs and table cells."""
    files = [p for p in outputs if p.exists()]
    cells = list(out.glob("*_cells/*.json"))
    return f"{len(files)} complete output(s) and {len(cells)} table cell(s) kept in {out}"


class _CheckedProgress:
    """The progress bar handed to the scripts: each update also raises a Ctrl-C that a host
    callback swallowed (`InterruptGuard`), so that one Ctrl-C always stops the run."""

    def __init__(self, bar, guard):
        self._bar, self._guard = bar, guard

    def update(self, n=1):
        self._guard.check()
        return self._bar.update(n)

    def __getattr__(self, name):
        return getattr(self._bar, name)


def main(args) -> int:
    import jax
    from tqdm.auto import tqdm

    from ..data import load_dataset

    only = list(EXPERIMENTS) if args.only is None else [s.strip() for s in args.only.split(",")]
    check(any(only), "--only is empty; leave it out to run every experiment")
    for name in only:
        check(name in EXPERIMENTS, f"--only: unknown experiment {name!r}; choose from "
               f"{', '.join(EXPERIMENTS)}")  # fmt: skip
    datasets = None if args.datasets is None else [s.strip() for s in args.datasets.split(",")]
    check(datasets is None or any(datasets), "--datasets is empty; leave it out for all")
    check(args.rows is None or args.rows >= 10, f"--rows must be at least 10, got {args.rows}")
    if args.data_dir is not None:
        os.environ["MEMOA_DATA"] = str(args.data_dir)  # read by the loaders the scripts call
    jax.config.update("jax_enable_x64", True)  # the experiments run in float64
    folder = args.experiments_dir
    check(folder.is_dir(), f"--experiments-dir {str(folder)!r}: no such folder")
    modules = [_load(folder, name) for name in only]
    common = _common_module(folder)
    try:
        names = common.dataset_names(datasets)
        for name in names:  # fail now, not half way: every file must be there and readable
            load_dataset(name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    out = args.out
    if out is None:
        out = default_out("reproduce", "quick" if args.quick else "full")
    make_out_dir(out)
    opts = dict(quick=args.quick, datasets=datasets, rows=args.rows)
    total = sum(m.units(**opts) for m in modules)
    print(
        f"memoa reproduce{' --quick' if args.quick else ''}: {', '.join(only)} on "
        f"{len(names)} data set(s) -> {out}/ ({total} simulation runs at most)"
    )
    t0 = time.perf_counter()
    bar = tqdm(total=total, unit="run", disable=args.no_progress, file=sys.stderr)
    report = []
    running = only[0]
    try:
        with InterruptGuard() as guard:
            progress = _CheckedProgress(bar, guard)
            for name, module in zip(only, modules):
                running = name
                bar.set_description(name)
                written = module.run(out, progress=progress, **opts)
                report.append((name, written, module.outputs(out, datasets)))
    except BaseException as e:
        bar.close()
        if isinstance(e, OSError):  # (a full disk: the experiment's file may not be named)
            where = e.filename or f"an output of {running} in {out}/"
            raise Failure(f"cannot write {where}: {e.strerror or e}") from None
        if not is_interrupt(e):
            raise
        outputs = [p for m in modules for p in m.outputs(out, datasets)]
        raise Interrupted(
            f"interrupted (Ctrl-C): {_kept(out, outputs)}; the same command resumes: "
            f"{command_line(args)}"
        ) from None
    bar.close()
    for name, written, outputs in report:
        kept = [p for p in outputs if p not in written]
        print(f"{name}:")
        for p in outputs:
            if p.exists():  # (an experiment may not apply to the chosen data sets)
                print(f"  {p}" + ("  (already complete, kept)" if p in kept else ""))
    rows = reproduce_rows(out)
    if rows:  # (the experiments' numbers, all those in `out`, as one tidy table)
        write_summary_csv(out / "summary.csv", rows, REPRODUCE_COLUMNS)
        print(f"summary (every experiment's numbers in {out}/, tidy): {out / 'summary.csv'}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0
