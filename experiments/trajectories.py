"""Per-data-set trajectories: target vs MEMOA's server prediction vs the worst agents.

For each data set (N = 1000 agents, seed 0, spec §10 hyper-parameters, λ = 0.5): the target
`y_{t+1}`, MEMOA's server-mixture prediction, MEMOA's worst agent (largest RMSE over the run)
and the worst agent of the best greedy baseline (the one with the lowest worst-agent RMSE).
The worst agents are found by a first run; a second run with the same key replays the same
draws and records that one agent (`simulate(track_agent=i)`: one agent, never N × T).
For the 2-D Concept series the first target component is shown.

Writes `trajectories/<dataset>.png` and `trajectories/<dataset>.json` (the plotted series).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import numpy as np  # noqa: E402

NAME = "trajectories"


def config(quick: bool, datasets=None, rows=None) -> dict:
    rows = rows or (201 if quick else None)
    names = C.dataset_names(datasets)
    return dict(datasets=names, n_agents=100 if quick else 1000, seed=C.SEED, rows=rows, lam=C.LAM)


def units(quick: bool, datasets=None, rows=None) -> int:
    return 3 * len(config(quick, datasets, rows)["datasets"])


def _round(a) -> list[float]:
    return [float(f"{v:.7g}") for v in np.asarray(a, dtype=float)]


def _series(res, method):
    st = res.steps[method]
    return np.asarray(st.agent_pred)[:, 0], np.asarray(st.server_pred)[:, 0]


def _compute(name, cfg, progress):
    dataset = C.data(name, cfg["rows"])
    sim, hp = C.simulation(dataset, cfg["n_agents"], lam=C.jnp.asarray(cfg["lam"]))
    out_cfg = {k: v for k, v in cfg.items() if k != "datasets"}
    first = C.RUNNER(sim, dataset, seed=cfg["seed"], n_active=cfg["n_agents"])
    progress.update(1)
    summ = C.summary_dict(first)
    finite = {g: summ[g]["worst_rmse"] for g in C.GREEDY if np.isfinite(summ[g]["worst_rmse"])}
    greedy = min(finite, key=finite.get)
    out = dict(dataset=name, rows=dataset.n_rows, n_agents=cfg["n_agents"], seed=cfg["seed"], hp=hp)
    out.update(config=out_cfg, credit=dataset.credit, best_greedy=greedy, summary=summ)
    out["target"] = _round(dataset.y[1:, 0])
    for method in ("memoa", greedy):
        worst = int(summ[method]["worst_agent"])
        res = C.RUNNER(sim, dataset, seed=cfg["seed"], n_active=cfg["n_agents"], track=worst)
        progress.update(1)
        agent, server = _series(res, method)
        out[method] = dict(
            worst_agent=worst, worst_agent_pred=_round(agent), server_pred=_round(server)
        )
    return out


def figure(rec):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = rec["best_greedy"]
    t = np.arange(1, len(rec["target"]) + 1)
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), layout="constrained")
    s = rec["summary"]
    zoom = max(1, len(t) - 150)
    for ax, sl in zip(axes, (slice(None), slice(zoom, None))):
        ax.plot(t[sl], np.array(rec["target"])[sl], color="k", lw=1.6, label="target $y_{t+1}$")
        ax.plot(t[sl], np.array(rec["memoa"]["server_pred"])[sl], color="C0", lw=1.1,
                label=f"MEMOA server (RMSE {s['memoa']['server_rmse']:.3g})")  # fmt: skip
        ax.plot(t[sl], np.array(rec["memoa"]["worst_agent_pred"])[sl], color="C3", lw=0.9,
                alpha=0.85, label=f"MEMOA worst agent #{rec['memoa']['worst_agent']} "
                f"(RMSE {s['memoa']['worst_rmse']:.3g})")  # fmt: skip
        ax.plot(t[sl], np.array(rec[g]["worst_agent_pred"])[sl], color="C2", lw=0.9, ls="--",
                alpha=0.85, label=f"{g} worst agent #{rec[g]['worst_agent']} "
                f"(RMSE {s[g]['worst_rmse']:.3g})")  # fmt: skip
        target = np.array(rec["target"])[sl]
        lo, hi = target.min(), target.max()
        pad = 0.5 * (hi - lo) + 1e-12
        ax.set_ylim(lo - pad, hi + pad)  # a diverging agent would hide the target otherwise
        ax.set(xlabel="step t", ylabel="value")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    axes[0].set_title(
        f"{rec['dataset']}: N = {rec['n_agents']}, seed {rec['seed']}, λ = {rec['config']['lam']}"
    )
    axes[1].set_title(f"zoom: the last {len(t) - zoom} steps", fontsize=9)
    if rec["credit"]:
        fig.supxlabel(rec["credit"], x=0.01, ha="left", fontsize=6, color="0.4")
    return fig


def run(out: Path, *, quick: bool, progress, datasets=None, rows=None):
    cfg = config(quick, datasets, rows)
    paths = []
    for name in cfg["datasets"]:
        png, js = out / NAME / f"{name}.png", out / NAME / f"{name}.json"
        done = C.read_json(js)
        same = {k: v for k, v in cfg.items() if k != "datasets"}
        if done is not None and done.get("config") == same:
            if not png.exists():  # the JSON holds every plotted number
                paths.append(C.save_figure(png, figure(done)))
            progress.update(3)
            continue
        rec = _compute(name, cfg, progress)
        paths.append(C.save_figure(png, figure(rec)))
        paths.append(C.write_json(js, rec))  # last: its presence marks the data set done
    return paths


def outputs(out: Path, datasets=None) -> list[Path]:
    names = C.dataset_names(datasets)
    return [out / NAME / f"{name}.{ext}" for name in names for ext in ("png", "json")]


if __name__ == "__main__":
    C.script_main(run, __doc__.splitlines()[0])
