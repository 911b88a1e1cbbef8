"""Main table: data sets × methods × metrics, mean ± std over seeds, N = 5 and N = 1000.

Methods: MEMOA, the greedy baselines G1–G4 (spec §7.2) and the centralized comparator "fne"
(spec §7.1 b: the exact N-player feedback Nash gains of each window instead of the mean-field
ones), all on the same data, the same feature draws and the same server (constrained ridge,
κ = η = 1), H2 agents (one RFN encoder per agent, population moments). Hyper-parameters:
spec §10 (FedMOE's best RFN settings per data set; q = 1, λ = 0.5) — no tuning. Metrics
(spec §9): average over agents of each agent's RMSE, worst agent's RMSE, server-mixture RMSE.
Beside ours, the numbers published for the paper (spec §1.1), whose method, N and metric are
not stated.

Writes `main_table.md`, `main_table.json` and `main_table.png` (worst-agent and server RMSE of
MEMOA relative to the best greedy baseline); finished cells are kept in
`main_table_cells/<dataset>-N<n>.json`, so an interrupted run resumes cell by cell.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import numpy as np  # noqa: E402

NAME = "main_table"
METRICS = (
    ("avg_rmse", "avg RMSE"),
    ("worst_rmse", "worst-agent RMSE"),
    ("server_rmse", "server RMSE"),
)
# the centralized comparator: the exact N-player feedback Nash gains (memoa_jax.nash) played
# in the same protocol, on the same draws (O(1) in N, so at every N of the table)
FNE = "fne"


def config(quick: bool, datasets=None, rows=None) -> dict:
    return dict(
        datasets=C.dataset_names(datasets),
        sizes=[5, 100] if quick else [5, 1000],
        seeds=[C.SEED] if quick else [C.SEED, C.SEED + 1, C.SEED + 2],
        rows=rows or (201 if quick else None),  # quick: the first 201 rows of the real series
        lam=C.LAM,
        methods=_methods(),
    )


def units(quick: bool, datasets=None, rows=None) -> int:
    cfg = config(quick, datasets, rows)
    return len(cfg["datasets"]) * len(cfg["sizes"]) * len(cfg["seeds"])


def _methods():
    return [*C.METHODS, FNE]


def _cell(runner, name, n, cfg, progress):
    dataset = C.data(name, cfg["rows"])
    sim, hp = C.simulation(dataset, max(cfg["sizes"]), lam=C.jnp.asarray(cfg["lam"]), nash=True)
    per_seed = []
    for seed in cfg["seeds"]:
        per_seed.append(C.summary_dict(runner(sim, dataset, seed=seed, n_active=n)))
        progress.update(1)
    hp["lam"] = cfg["lam"]
    out = dict(dataset=name, rows=dataset.n_rows, n_agents=n, hp=hp, credit=dataset.credit)
    out["methods"] = {
        m: {f: C.mean_std([s[m][f] for s in per_seed]) for f, _ in METRICS} for m in _methods()
    }
    return out


def _fmt(s):
    m, sd = s["mean"], s["std"]
    if not np.isfinite(m) or abs(m) > 1e6:
        return f"{m:.2g} (diverged)"
    return f"{m:.4f} ± {sd:.4f}"


def _best_greedy(cell, metric):
    vals = {g: cell["methods"][g][metric]["mean"] for g in C.GREEDY}
    vals = {g: v for g, v in vals.items() if np.isfinite(v)}
    g = min(vals, key=vals.get)
    return g, vals[g]


def comparison(cell, against: str | None = None) -> dict:
    """MEMOA vs the best greedy baseline (per metric, chosen after the fact: a strict bar),
    or vs the baseline `against`."""
    out = {}
    for f, _ in METRICS:
        if against is None:
            g, best = _best_greedy(cell, f)
        else:
            g, best = against, cell["methods"][against][f]["mean"]
        ours = cell["methods"]["memoa"][f]["mean"]
        out[f] = dict(best_greedy=g, best_greedy_value=best, memoa=ours)
        out[f].update(relative_change=(ours - best) / best, memoa_wins=bool(ours < best))
    return out


def _rel(r) -> str:
    return "−100% (G1 diverged)" if r < -0.999 else f"{100 * r:+.1f}%"


def markdown(cells, cfg) -> str:
    lines = [
        f"# Main table: MEMOA vs greedy baselines (mean ± std over {len(cfg['seeds'])} seed(s))",
        "",
        "H2 agents (one RFN encoder each), constrained-ridge server (κ = η = 1), spec §10 "
        f"hyper-parameters, q = 1, λ = {cfg['lam']}. Lower is better. 'diverged' = the method "
        "blew up on at least one seed. The column after the metrics is the number published "
        f"for the paper (spec §1.1); **{C.PUBLISHED_LABEL}** — it is not comparable cell by "
        "cell. The last column is the RMSE of the naive persistence forecast ŷ_{t+1} = y_t "
        "(no agents) over the same steps.",
        "",
    ]
    for n in cfg["sizes"]:
        lines += [f"## N = {n}", ""]
        head = ["dataset", "method"] + [lab for _, lab in METRICS] + [C.PUBLISHED_LABEL]
        head += ["naive ŷ_{t+1} = y_t"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, label in C.labelled(cfg):
            cell = cells[(name, n)]
            pub = C.PUBLISHED.get(name)
            for i, m in enumerate(m for m in _methods() if m in cell["methods"]):
                vals = [_fmt(cell["methods"][m][f]) for f, _ in METRICS]
                best = {f: _best_greedy(cell, f)[0] for f, _ in METRICS}
                if m == "memoa":
                    vals = [f"**{v}**" for v in vals]
                else:
                    vals = [v + (" ◂best greedy" if best[f] == m else "") for v, (f, _) in
                            zip(vals, METRICS)]  # fmt: skip
                first = f"{label} ({cell['rows']} rows)" if i == 0 else ""
                p = (f"{pub}" if pub is not None else "—") if i == 0 else ""
                naive = f"{persistence(name, cfg['rows']):.4f}" if i == 0 else ""
                lines.append("| " + " | ".join([first, m, *vals, p, naive]) + " |")
        lines += [
            "",
            f"MEMOA vs the best greedy baseline at N = {n} (relative change of the mean; "
            "negative = MEMOA better):",
            "",
            "| dataset | worst-agent RMSE | server RMSE | avg RMSE | worst-agent vs G1 (FedMOE "
            "local ridge) | server vs G1 |",
            "|---|---|---|---|---|---|",
        ]
        for name, label in C.labelled(cfg):
            c = comparison(cells[(name, n)])
            row = [
                f"{100 * c[f]['relative_change']:+.1f}% vs {c[f]['best_greedy']}"
                for f in ("worst_rmse", "server_rmse", "avg_rmse")
            ]
            g1 = comparison(cells[(name, n)], "g1_ridge")
            row += [_rel(g1[f]["relative_change"]) for f in ("worst_rmse", "server_rmse")]
            lines.append(f"| {label} | " + " | ".join(row) + " |")
        lines.append("")
    credits = sorted({c["credit"] for c in cells.values() if c["credit"]})
    lines += ["Data credits: " + "; ".join(credits), ""]
    return "\n".join(lines)


def persistence(name: str, rows) -> float:
    """RMSE of the naive forecast `ŷ_{t+1} = y_t` over the same prediction steps."""
    y = C.data(name, rows).y
    return float(np.sqrt(np.mean(np.sum((y[1:] - y[:-1]) ** 2, axis=1))))


def compact(cells, cfg) -> str:
    """One row per data set and N: MEMOA vs the best greedy baseline, worst agent and server."""
    f2 = lambda s: _fmt(s).replace(" ± ", " ±")  # noqa: E731
    head = "| dataset | N | worst-agent RMSE: MEMOA | best greedy | server RMSE: MEMOA | "
    head += "best greedy | centralized FNE: worst / server | G1 worst agent | "
    head += f"naive ŷ_{{t+1}} = y_t | {C.PUBLISHED_LABEL} |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for name, label in C.labelled(cfg):
        for n in cfg["sizes"]:
            cell = cells[(name, n)]
            row = [label, str(n)]
            for f in ("worst_rmse", "server_rmse"):
                g, _ = _best_greedy(cell, f)
                row += [f2(cell["methods"]["memoa"][f]), f"{f2(cell['methods'][g][f])} ({g})"]
            fne = cell["methods"].get(FNE)  # absent from tables that reuse this one (ESN)
            row.append(f"{f2(fne['worst_rmse'])} / {f2(fne['server_rmse'])}" if fne else "—")
            row.append(f2(cell["methods"]["g1_ridge"]["worst_rmse"]))
            row.append(f"{persistence(name, cfg['rows']):.4f}" if n == cfg["sizes"][0] else "")
            row.append(str(C.PUBLISHED.get(name, "—")) if n == cfg["sizes"][0] else "")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def figure(cells, cfg):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), constrained_layout=True)
    labels = [lab for _, lab in C.labelled(cfg)]
    width = 0.8 / len(cfg["sizes"])
    for ax, f, title in zip(
        axes, ("worst_rmse", "server_rmse"), ("worst-agent RMSE", "server RMSE")
    ):
        for k, n in enumerate(cfg["sizes"]):
            rel = [
                100 * comparison(cells[(name, n)])[f]["relative_change"] for name in cfg["datasets"]
            ]
            ax.bar(np.arange(len(labels)) + (k - (len(cfg["sizes"]) - 1) / 2) * width, rel, width,
                   label=f"N = {n}")  # fmt: skip
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(labels)), labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("MEMOA vs best greedy, % (< 0: MEMOA better)")
        ax.set_yscale("symlog", linthresh=10)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"MEMOA relative to the best greedy baseline (mean of {len(cfg['seeds'])} seed(s))"
    )
    return fig


def run(out: Path, *, quick: bool, progress, datasets=None, rows=None):
    cfg = config(quick, datasets, rows)
    runner = C.RUNNER
    cells = {}
    cell_cfg = {k: v for k, v in cfg.items() if k != "datasets"}  # a cell is any subset's
    for name in cfg["datasets"]:
        for n in cfg["sizes"]:
            path = out / f"{NAME}_cells" / f"{name}-N{n}.json"
            done = C.read_json(path)
            if done is not None and done.get("config") == cell_cfg:
                cells[(name, n)] = done
                progress.update(len(cfg["seeds"]))
                continue
            cell = _cell(runner, name, n, cfg, progress)
            cell["config"] = cell_cfg
            C.write_json(path, cell)
            cells[(name, n)] = cell
    record = dict(
        config=cfg,
        environment=C.environment(),
        published=C.PUBLISHED,
        persistence_rmse={name: persistence(name, cfg["rows"]) for name in cfg["datasets"]},
        published_note=C.PUBLISHED_LABEL + " — spec §1.1 (wizwand rows of arXiv 2605.05492)",
        cells=[cells[(name, n)] for n in cfg["sizes"] for name, _ in C.labelled(cfg)],
        memoa_vs_g1_ridge={
            f"{name}-N{n}": comparison(cells[(name, n)], "g1_ridge")
            for n in cfg["sizes"]
            for name in cfg["datasets"]
        },
        memoa_vs_best_greedy={
            f"{name}-N{n}": comparison(cells[(name, n)])
            for n in cfg["sizes"]
            for name in cfg["datasets"]
        },
    )
    paths = [C.write_json(out / f"{NAME}.json", record)]
    paths.append(C.write_text(out / f"{NAME}.md", markdown(cells, cfg)))
    paths.append(C.write_text(out / f"{NAME}_compact.md", compact(cells, cfg)))
    paths.append(C.save_figure(out / f"{NAME}.png", figure(cells, cfg)))
    return paths


def outputs(out: Path, datasets=None) -> list[Path]:
    return [out / f"{NAME}.{ext}" for ext in ("json", "md", "png")] + [out / f"{NAME}_compact.md"]


if __name__ == "__main__":
    C.script_main(run, __doc__.splitlines()[0])
