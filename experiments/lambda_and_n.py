"""Effect of the coupling λ and of the population size N on worst-agent and server RMSE.

Three series (Logistic, BoC, ETT), spec §10 hyper-parameters, H2 agents, mean ± std over
seeds. Left: λ ∈ {0, 0.1, 0.5, 1, 2, 5} at N = 1000 (λ changes MEMOA and G2, which share the
cost; G3 is MEMOA at λ = 0; G1 and G4 do not depend on λ). Right: N ∈ {5, 10, 30, 100, 300,
1000} at λ = 0.5 (all sizes run as padded populations of one compiled size).

Writes `lambda_and_n.png` and `lambda_and_n.json`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import numpy as np  # noqa: E402

NAME = "lambda_and_n"
SETS = ("logistic", "boc", "ett")


def config(quick: bool, datasets=None, rows=None) -> dict:
    names = [n for n in SETS if n in C.dataset_names(datasets)] if datasets else list(SETS)
    return dict(
        datasets=names,
        lams=[0.0, 0.5, 2.0] if quick else [0.0, 0.1, 0.5, 1.0, 2.0, 5.0],
        sizes=[5, 30, 100] if quick else [5, 10, 30, 100, 300, 1000],
        seeds=[C.SEED] if quick else [C.SEED, C.SEED + 1, C.SEED + 2],
        rows=rows or (201 if quick else None),
        lam=C.LAM,
    )


def units(quick: bool, datasets=None, rows=None) -> int:
    c = config(quick, datasets, rows)
    return len(c["datasets"]) * (len(c["lams"]) + len(c["sizes"])) * len(c["seeds"])


def _point(sim_for, dataset, n, lam, cfg, progress):
    sim = sim_for(lam)
    runs = []
    for seed in cfg["seeds"]:
        runs.append(C.summary_dict(C.RUNNER(sim, dataset, seed=seed, n_active=n)))
        progress.update(1)
    return {
        m: {
            f: C.mean_std([r[m][f] for r in runs])
            for f in ("worst_rmse", "server_rmse", "avg_rmse")
        }
        for m in C.METHODS
    }


def compute(cfg, progress):
    out = {}
    slots = max(cfg["sizes"])
    for name in cfg["datasets"]:
        dataset = C.data(name, cfg["rows"])
        sim_for = lambda lam: C.simulation(dataset, slots, lam=C.jnp.asarray(lam))[0]  # noqa: E731
        out[name] = dict(
            lam=[_point(sim_for, dataset, slots, lam, cfg, progress) for lam in cfg["lams"]],
            n=[_point(sim_for, dataset, n, cfg["lam"], cfg, progress) for n in cfg["sizes"]],
            rows=dataset.n_rows,
            hp=C.simulation(dataset, slots)[1],
        )
    return out


def figure(res, cfg):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = cfg["datasets"]
    fig, axes = plt.subplots(
        len(sets), 4, figsize=(17, 3.5 * len(sets) + 0.6), layout="constrained", squeeze=False
    )
    for i, name in enumerate(sets):
        for j, (key, xs, xlabel) in enumerate(
            (("lam", cfg["lams"], "coupling λ"), ("n", cfg["sizes"], "agents N"))
        ):
            for k, (f, lab) in enumerate(
                (("worst_rmse", "worst-agent RMSE"), ("server_rmse", "server RMSE"))
            ):
                ax = axes[i, 2 * j + k]
                for c, m in enumerate(C.METHODS):
                    mean = np.array([p[m][f]["mean"] for p in res[name][key]])
                    std = np.array([p[m][f]["std"] for p in res[name][key]])
                    if not np.all(np.isfinite(mean)) or np.max(np.abs(mean)) > 1e3:
                        continue  # diverged (G1 on some series): would flatten the others
                    ax.errorbar(xs, mean, yerr=std, marker="o", ms=3, capsize=2, color=f"C{c}",
                                lw=2.2 if m == "memoa" else 1.0, label=m)  # fmt: skip
                ax.set(xlabel=xlabel, ylabel=lab, yscale="log")
                if key == "lam":
                    ax.set_xscale("symlog", linthresh=0.1)
                    ax.set_xlim(-0.02, max(xs) * 1.3)
                else:
                    ax.set_xscale("log")
                fixed = f"N = {max(cfg['sizes'])}" if key == "lam" else f"λ = {cfg['lam']}"
                ax.set_title(f"{name}: {lab} vs {xlabel.split()[-1]} ({fixed})", fontsize=9)
                ax.grid(alpha=0.3, which="both")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    order = [m for m in C.METHODS if m in handles]
    fig.legend([handles[m] for m in order], order, loc="outside lower center", ncol=len(order))
    fig.suptitle(f"Effect of λ and N (mean ± std over {len(cfg['seeds'])} seed(s); "
                 "diverged methods omitted)")  # fmt: skip
    return fig


def run(out: Path, *, quick: bool, progress, datasets=None, rows=None):
    cfg = config(quick, datasets, rows)
    if not cfg["datasets"]:
        return []
    js, png = out / f"{NAME}.json", out / f"{NAME}.png"
    if C.complete(js, cfg, png):
        progress.update(units(quick, datasets, rows))
        return []
    res = compute(cfg, progress)
    rec = dict(config=cfg, environment=C.environment(), results=res)
    return [C.save_figure(png, figure(res, cfg)), C.write_json(js, rec)]


def outputs(out: Path, datasets=None) -> list[Path]:
    return [out / f"{NAME}.json", out / f"{NAME}.png"]


if __name__ == "__main__":
    C.script_main(run, __doc__.splitlines()[0])
