"""Shared helpers of the experiment scripts: configurations, runs, atomic outputs.

Every script in `experiments/` exposes `run(out: Path, *, quick: bool, progress) -> list[Path]`
(and runs itself with `python experiments/<name>.py [--quick]`). Outputs go to `out`
(default `runs/reproduce-full/`, or `runs/reproduce-quick/`), each written atomically
(`memoa_jax.data.write_atomic`), so a file that exists is complete; `memoa reproduce` relies
on that to skip finished work after an interruption.
"""

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import memoa_jax as mj
from memoa_jax.data import (
    G1_PRESETS,
    NO_FEDMOE_RECIPE,
    load_dataset,
    write_atomic,
)

SEED = 0  # first seed of every experiment (seeds SEED, SEED + 1, ...)
LAM = 0.5  # spec §10: MEMOA's coupling default
Q = 1.0
METHODS = ("memoa", "g1_ridge", "g2_myopic", "g3_independent", "g4_follow_mean")
GREEDY = ("g1_ridge", "g2_myopic", "g3_independent", "g4_follow_mean")

# (name, label, registry key) of the paper's rows, in the paper's order, plus our ECB default
DATASETS = (
    ("periodic", "Periodic"),
    ("logistic", "Logistic"),
    ("concept", "Concept"),
    ("concept-drift", "Concept drift"),
    ("boc", "BoC"),
    ("boc-val", "BoC (val)"),
    ("ett", "ETT"),
    ("ett-val", "ETT (val)"),
    ("ecb", "ECB (ours, no paper row)"),
)
# spec §1.1 (wizwand benchmark rows of 2605.05492): which method, N and metric is NOT stated
PUBLISHED = {
    "periodic": 0.9171,
    "logistic": 0.1883,
    "concept": 0.247,
    "concept-drift": 0.32,
    "boc": 0.0067,
    "boc-val": 0.0049,
    "ett": 0.0263,
    "ett-val": 0.0514,
}
PUBLISHED_LABEL = "published (method/metric unstated)"

# FedMOE's separately tuned greedy (non-game) client: `memoa_jax.data.G1_PRESETS` (values,
# sources and the Concept flag live beside the data's other presets).
FEDMOE_G1 = {name: p.as_dict() for name, p in G1_PRESETS.items()}


def dataset_names(only=None) -> list[str]:
    """The registry keys of `DATASETS`, or those of `only` in table order."""
    names = [n for n, _ in DATASETS]
    if only is None:
        return names
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ValueError(f"unknown dataset {unknown[0]!r}; choose from {', '.join(names)}")
    return [n for n in names if n in only]


def labelled(cfg) -> list[tuple[str, str]]:
    return [(n, lab) for n, lab in DATASETS if n in cfg["datasets"]]


def data(name: str, rows: int | None = None):
    d = load_dataset(name)
    return d if rows is None or rows >= d.n_rows else d.head(rows)


def spec(
    dataset,
    n_agents: int,
    *,
    lam: float = LAM,
    hp: dict | None = None,
    encoder: str = "rfn",
    g1_params: str = "fedmoe",
    reading: dict | None = None,
) -> mj.RunSpec:
    """The `RunSpec` of the experiments' runs of one data set (`dataset`, already cut to its
    rows): H2 agents, MEMOA and G1–G4, q = 1, the ridge server κ = η = 1; `hp` replaces
    preset values; `reading`: fields of every game method (`replay_base`, `replay_control`,
    `moments`; default FedMOE's reading)."""
    return mj.RunSpec(
        data=mj.DataSpec(dataset.name, rows=dataset.n_rows),
        hyper=mj.HyperSpec(**(hp or {})),
        n_agents=n_agents,
        methods=mj.DEFAULT_METHODS,
        q=Q,
        lam=float(lam),
        encoder=encoder,
        g1_params=g1_params,
        **(reading or {}),
    )


def simulation(
    dataset,
    n_agents: int,
    *,
    lam: float = LAM,
    hp: dict | None = None,
    encoder: str = "rfn",
    nash: bool = False,
    g1_params: str = "fedmoe",
    reading: dict | None = None,
):
    """The `Simulation`s of one data set (`mj.build` of `spec(...)`) and their
    hyper-parameters, as the experiments record them.

    MEMOA and G2–G4 run on the spec §10 / FedMOE game settings of the data set. G1 runs at
    FedMOE's own settings for its greedy client (`g1_params="fedmoe"`, `FEDMOE_G1`: its own
    α, γ, T_c and its own encoder draw, with its d_z and σ, in a simulation of its own on the
    same data and key) or at the game's (`"game"`, in the same simulation). `lam` may be an
    array: one compilation then serves every λ. `nash`: also the centralized comparator
    "fne" (the exact N-player feedback Nash gains in place of the mean-field ones, same
    protocol and draws).

    Returns `(sims, hp)`: a tuple of simulations run side by side (`Runner` merges them).
    """
    run = spec(
        dataset, n_agents, lam=lam, hp=hp, encoder=encoder, g1_params=g1_params, reading=reading
    )
    built = mj.build(run, data=dataset)
    sims = built.sims
    if not isinstance(lam, (int, float)):
        sims = tuple(_with_lam(s, lam) for s in sims)
    if nash:
        main = sims[0]
        settings = dict(window=built.hp["window"], ridge_window=built.hp["ridge_window"])
        fne = mj.nash.centralized_method(main.cost, name="fne", **settings, **(reading or {}))
        sims = (eqx.tree_at(lambda s: s.methods, main, (*main.methods, fne)), *sims[1:])
    record = {k: v for k, v in built.hp.items() if k != "g1"}
    if encoder == "esn":
        n_mc = sims[0].encoder.n_mc
        record["encoder"] = f"esn (HardSigmoid reservoir, {n_mc} Monte-Carlo draws per agent)"
    record.update(q=Q, lam=float(lam), homogeneity="h2", server="ridge kappa=1 eta=1")
    record.update(reading or {})
    if g1_params == "game":
        record["g1"] = "the game's settings"
    else:
        source = NO_FEDMOE_RECIPE.get(dataset.name, "FedMOE non_game_best_hp")
        record["g1"] = dict(built.hp["g1"], source=source)
    return sims, record


def _with_lam(sim, lam):
    """`sim` with the array `lam` wherever the spec's λ went: the simulation's cost and each
    method's, unless the method fixes its own (G3's λ = 0, `mj.METHODS[name].cost`)."""

    def where(s):
        own = [m for m in s.methods if "lam" not in dict(mj.METHODS[m.name].cost)]
        return [s.cost.lam, *(m.cost.lam for m in own)]

    return eqx.tree_at(where, sim, [lam] * len(where(sim)))


class Runner:
    """`mj.Runner` on a data set and a seed: one compilation per (simulation structure,
    data shape); seeds, λ, N ≤ slots and the tracked agent are run-time values (padding
    slots, `simulate(n_active=...)`)."""

    def __init__(self):
        self.runner = mj.Runner()

    def __call__(self, sims, dataset, *, seed: int, n_active: int | None = None, track=0):
        """Every simulation of `sims` (same data, same key), as one `SimResult`."""
        x, y = jnp.asarray(dataset.x), jnp.asarray(dataset.y)
        key = jax.random.key(seed)
        return self.runner(sims, x, y, key=key, n_active=n_active, track=track)


def summary_dict(res) -> dict:
    return {m: {f: float(v) for f, v in s._asdict().items()} for m, s in res.summary.items()}


def mean_std(values) -> dict:
    v = np.asarray(values, dtype=float)
    return dict(mean=float(v.mean()), std=float(v.std()), per_seed=v.tolist())


MEDIAN_MIN_SEEDS = 10  # from this many seeds on, a table's headline is the median and IQR


def median_iqr(values) -> dict:
    """Median and interquartile range (25th and 75th percentiles, linear interpolation as
    `numpy.percentile`) of per-seed values; non-finite values (a diverged seed) count as +inf."""
    v = np.asarray(values, dtype=float)
    v = np.where(np.isfinite(v), v, np.inf)
    q25, med, q75 = (float(q) for q in np.percentile(v, [25.0, 50.0, 75.0]))
    return dict(median=med, q25=q25, q75=q75)


def center(stats: dict) -> float:
    """The headline of `mean_std(...)`'s record: the median over seeds from
    `MEDIAN_MIN_SEEDS` seeds on (a mean over a few seeds is swayed by one tail draw, such as
    a seed with most of 5 agents frozen), else the mean."""
    per_seed = stats["per_seed"]
    return median_iqr(per_seed)["median"] if len(per_seed) >= MEDIAN_MIN_SEEDS else stats["mean"]


def write_json(path: Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=1) + "\n")


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda f: f.write(text.encode()))


def save_figure(path: Path, fig) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
    return path


def read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def complete(record: Path, cfg: dict, *outputs: Path) -> bool:
    """Whether an experiment already wrote `record` (JSON) for this `cfg`, and its `outputs`:
    an interrupted `memoa reproduce` skips what is complete."""
    done = read_json(record)
    return done is not None and done.get("config") == cfg and all(o.exists() for o in outputs)


def cells(out: Path, name: str, cfg: dict, compute, n_seeds, progress, cell_config=None) -> dict:
    """Every `(data set, N)` cell of an experiment: `compute(data set, N)`, each kept in
    `<out>/<name>_cells/<data set>-N<N>.json` with the configuration (any subset's: the
    data sets are left out of it), so an interrupted run resumes cell by cell.
    `n_seeds(data set, N)` is the progress a cell stands for. `cell_config(data set, N)`: the
    configuration the cell is kept with (default: `cfg` without the data sets); a cell
    recomputes only when its own changes."""
    out_cells = {}
    if cell_config is None:
        cell_config = lambda _, n: {k: v for k, v in cfg.items() if k != "datasets"}  # noqa: E731
    for dataset in cfg["datasets"]:
        for n in cfg["sizes"]:
            cell_cfg = cell_config(dataset, n)
            path = out / f"{name}_cells" / f"{dataset}-N{n}.json"
            done = read_json(path)
            if done is not None and done.get("config") == cell_cfg:
                out_cells[(dataset, n)] = done
                progress.update(n_seeds(dataset, n))
                continue
            cell = compute(dataset, n)
            cell["config"] = cell_cfg
            write_json(path, cell)
            out_cells[(dataset, n)] = cell
    return out_cells


def environment() -> dict:
    return dict(jax=jax.__version__, device=str(jax.devices()[0]), dtype="float64")


def script_main(run, description: str):
    """`python experiments/<name>.py [--quick] [--out DIR]`: the entry point, which decides
    x64 (every experiment runs in float64; nothing flips it at import time)."""
    import argparse

    jax.config.update("jax_enable_x64", True)

    from tqdm.auto import tqdm

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer seeds, rows and sizes")
    p.add_argument(
        "--out",
        type=Path,
        help="output folder (default runs/reproduce-full, or runs/reproduce-quick with --quick; "
        "--out figures regenerates the committed figures)",
    )
    p.add_argument("--datasets", help="comma-separated subset of the data sets")
    p.add_argument("--rows", type=int, help="use only the first ROWS rows of each series")
    a = p.parse_args()
    if a.out is None:
        a.out = Path("runs") / ("reproduce-quick" if a.quick else "reproduce-full")
    only = a.datasets.split(",") if a.datasets else None
    with tqdm(unit="run") as bar:
        for path in run(a.out, quick=a.quick, progress=bar, datasets=only, rows=a.rows):
            print(f"wrote {path}")


RUNNER = Runner()  # shared by the scripts run in one process: compilations are reused
