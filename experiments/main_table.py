"""Main table: MEMOA against FedMOE's own greedy client at FedMOE's own settings, N = 5 and 1000.

Methods, all on the same data and the same server (constrained ridge, κ = η = 1), H2 agents
(one RFN encoder per agent, population moments), mean ± std over 3 seeds:

* MEMOA at spec §10's settings (FedMOE's best *game* hyper-parameters; q = 1, λ = 0.5);
* G1, FedMOE's greedy local-ridge client, at the settings FedMOE tuned for it
  (`C.FEDMOE_G1`: its own α, γ, T_c and its own encoder draw with its d_z and σ) — the
  comparison FedMOE's authors made;
* G2–G4, this project's own (stronger) decentralized baselines, on the game's settings and
  MEMOA's feature draws, and "fne", the centralized comparator (the exact N-player feedback
  Nash gains of each window in place of the mean-field ones, same protocol and draws).

Metrics (spec §9): each agent's RMSE over the run, summarised by the mean, the p50 / p90 / p99
quantiles and the max (the worst agent); the worst agent among those that move (an agent
whose features are zero at every step is *frozen*: it predicts a stale observation under every
method, see `memoa_jax._metrics`) and the frozen share; the server-mixture RMSE. Beside every
row the persistence forecasts ŷ_{t+1} = y_t (lag 1) and ŷ_{t+1} = y_{t−T} (lag T + 1, what a
frozen agent predicts under MEMOA's window T). A value that is not finite or exceeds 10⁶ × the
lag-1 persistence is printed as "diverged (k of N agents)". The numbers published for the
paper (whose method, N and metric are not stated) are compared at N = 5 on the server RMSE, as
the mean over seeds of the RMSE and as the root of the mean MSE.

Writes `main_table.md` (the full table), `main_table_compact.md`, `main_table.json` and
`main_table.png`; finished cells are kept in `main_table_cells/<dataset>-N<n>.json`, so an
interrupted run resumes cell by cell.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import numpy as np  # noqa: E402

import memoa_jax as mj  # noqa: E402

NAME = "main_table"
METRICS = (
    ("avg_rmse", "avg"),
    ("p50_rmse", "p50"),
    ("p90_rmse", "p90"),
    ("p99_rmse", "p99"),
    ("worst_rmse", "worst"),
    ("worst_moving_rmse", "worst mover"),
    ("server_rmse", "server"),
)
COUNTS = ("frozen_share", "n_diverged")
FNE = "fne"
OURS = ("g2_myopic", "g3_independent", "g4_follow_mean")  # this project's own baselines
LABELS = {
    "memoa": "MEMOA",
    "g1_ridge": "G1 local ridge (FedMOE's settings)",
    "g2_myopic": "G2 myopic (ours)",
    "g3_independent": "G3 independent (ours)",
    "g4_follow_mean": "G4 follow the mean (ours)",
    FNE: "centralized FNE",
}


def config(quick: bool, datasets=None, rows=None) -> dict:
    return dict(
        datasets=C.dataset_names(datasets),
        sizes=[5, 100] if quick else [5, 1000],
        seeds=[C.SEED] if quick else [C.SEED, C.SEED + 1, C.SEED + 2],
        rows=rows or (201 if quick else None),  # quick: the first 201 rows of the real series
        lam=C.LAM,
        g1_params="fedmoe",
        methods=_methods(),
    )


def units(quick: bool, datasets=None, rows=None) -> int:
    cfg = config(quick, datasets, rows)
    return len(cfg["datasets"]) * len(cfg["sizes"]) * len(cfg["seeds"])


def _methods():
    return ["memoa", "g1_ridge", *OURS, FNE]


def persistence(dataset, lag: int) -> float:
    return float(mj.persistence_rmse(C.jnp.asarray(dataset.y), lag))


def make_cell(sims, hp, dataset, n, seeds, progress) -> dict:
    """Run every seed of one (data set, N) and summarise each method over the seeds."""
    per_seed = []
    for seed in seeds:
        per_seed.append(C.summary_dict(C.RUNNER(sims, dataset, seed=seed, n_active=n)))
        progress.update(1)
    out = dict(dataset=dataset.name, rows=dataset.n_rows, n_agents=n, hp=hp)
    out.update(credit=dataset.credit, window=hp["window"])
    out["persistence"] = {
        "lag1": persistence(dataset, 1),
        f"lag{hp['window'] + 1}": persistence(dataset, hp["window"] + 1),
    }
    out["methods"] = {}
    for m in per_seed[0]:
        stats = {f: C.mean_std([s[m][f] for s in per_seed]) for f, _ in METRICS}
        stats.update({f: C.mean_std([s[m][f] for s in per_seed]) for f in COUNTS})
        server = np.asarray([s[m]["server_rmse"] for s in per_seed])
        stats["server_root_mean_mse"] = float(np.sqrt(np.mean(server**2)))
        stats["worst_agent_per_seed"] = [int(s[m]["worst_agent"]) for s in per_seed]
        out["methods"][m] = stats
    return out


def _cell(name, n, cfg, progress):
    dataset = C.data(name, cfg["rows"])
    sims, hp = C.simulation(
        dataset,
        max(cfg["sizes"]),
        lam=C.jnp.asarray(cfg["lam"]),
        nash=True,
        g1_params=cfg["g1_params"],
    )
    hp["lam"] = cfg["lam"]
    cell = make_cell(sims, hp, dataset, n, cfg["seeds"], progress)
    if n <= FEDMOE_GAME_MAX_N and dataset.d == 1:
        cell["fedmoe_game"] = fedmoe_game(dataset, hp, n, cfg["seeds"])
    return cell


FEDMOE_GAME_MAX_N = 32


def fedmoe_game(dataset, hp, n, seeds) -> dict:
    """FedMOE's own game (`mj.simulate_fedmoe_game`, dense, 1-D targets) on the game's
    settings and this project's draws (the same key as the other methods), both modes:
    `compat` (FedMOE's recursion with its two defects) and `correct`."""
    enc = mj.RFNEncoder(d=dataset.d, d_x=dataset.d_x, p=hp["features"], sigma=hp["sigma"])
    x, y = C.jnp.asarray(dataset.x), C.jnp.asarray(dataset.y)
    out = {}
    for mode, compat in (("compat", True), ("correct", False)):
        runs = [
            mj.simulate_fedmoe_game(
                enc,
                x,
                y,
                key=C.jax.random.key(seed),
                n_agents=n,
                gamma=hp["gamma"],
                alpha=hp["alpha"],
                window=hp["window"],
                ridge_window=hp["ridge_window"],
                fedmoe_compat=compat,
            )
            for seed in seeds
        ]
        server = np.asarray([float(r.server_rmse) for r in runs])
        out[mode] = dict(
            server_rmse=C.mean_std(server),
            server_root_mean_mse=float(np.sqrt(np.mean(server**2))),
            worst_rmse=C.mean_std([float(r.worst_rmse) for r in runs]),
            frozen_share=C.mean_std([float(np.mean(r.frozen)) for r in runs]),
        )
    return out


def fmt(cell, method, metric, *, std=True) -> str:
    """`mean ± std` over seeds, or "diverged (k of N agents)" (k: the most over the seeds)."""
    s = cell["methods"][method]
    m, sd = s[metric]["mean"], s[metric]["std"]
    p1 = cell["persistence"]["lag1"]
    if mj.is_diverged(m, p1):
        k = int(max(s["n_diverged"]["per_seed"]))
        return mj.format_rmse(m, p1, k, cell["n_agents"])
    return f"{m:.4f} ± {sd:.4f}" if std and len(s[metric]["per_seed"]) > 1 else f"{m:.4f}"


def _best_ours(cell, metric):
    vals = {g: cell["methods"][g][metric]["mean"] for g in OURS if g in cell["methods"]}
    vals = {g: v for g, v in vals.items() if not mj.is_diverged(v, cell["persistence"]["lag1"])}
    if not vals:
        return None, float("nan")
    g = min(vals, key=vals.get)
    return g, vals[g]


def comparison(cell, against: str | None = None) -> dict:
    """MEMOA vs `against` (default: the best of this project's baselines G2–G4 per metric,
    picked after the fact), relative change of the mean over seeds (< 0: MEMOA better)."""
    out = {}
    for f in ("worst_rmse", "p90_rmse", "server_rmse", "worst_moving_rmse", "avg_rmse"):
        if against is None:
            g, other = _best_ours(cell, f)
        else:
            g, other = against, cell["methods"][against][f]["mean"]
        ours = cell["methods"]["memoa"][f]["mean"]
        diverged = mj.is_diverged(other, cell["persistence"]["lag1"])
        rel = float("nan") if diverged or not np.isfinite(other) else (ours - other) / other
        out[f] = dict(against=g, value=other, memoa=ours, relative_change=rel)
        out[f].update(other_diverged=diverged, memoa_wins=bool(diverged or ours < other))
    return out


def _persistence_cells(cell):
    return [f"{v:.4f}" for v in cell["persistence"].values()]


def markdown(cells, cfg) -> str:
    seeds = len(cfg["seeds"])
    lines = [
        f"# Main table: MEMOA vs FedMOE's greedy client, and this project's baselines "
        f"(mean ± std over {seeds} seed(s))",
        "",
        "H2 agents (one RFN encoder each), constrained-ridge server (κ = η = 1), q = 1, "
        f"λ = {cfg['lam']}. MEMOA, G2–G4 and the centralized FNE: spec §10 (FedMOE's best game "
        "settings). G1: FedMOE's own settings for its greedy client (its own α, γ, T_c, d_z, "
        "σ and encoder draw). G2–G4 are this project's own baselines, not FedMOE's. Lower is "
        "better. Per-agent RMSE summarised by mean, quantiles and max; 'worst mover' = the "
        "worst agent whose features were not zero at every step; 'frozen' = the share of "
        "agents whose were. Persistence: ŷ_{t+1} = y_t (lag 1) and ŷ_{t+1} = y_{t−T} "
        "(lag T + 1, a frozen agent's forecast under MEMOA). 'diverged (k of N agents)': not "
        "finite or above 10⁶ × lag-1 persistence on some seed (k: the most over the seeds).",
        "",
    ]
    for n in cfg["sizes"]:
        lines += [f"## N = {n}", ""]
        head = ["dataset", "method", *(lab for _, lab in METRICS), "frozen", "persistence 1 / T+1"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, label in C.labelled(cfg):
            cell = cells[(name, n)]
            flag = f" ⚠ G1: {C.NO_FEDMOE_RECIPE[name]}" if name in C.NO_FEDMOE_RECIPE else ""
            for i, m in enumerate(m for m in _methods() if m in cell["methods"]):
                vals = [fmt(cell, m, f) for f, _ in METRICS]
                if m == "memoa":
                    vals = [f"**{v}**" for v in vals]
                frozen = f"{100 * cell['methods'][m]['frozen_share']['mean']:.0f}%"
                first = f"{label} ({cell['rows']} rows){flag}" if i == 0 else ""
                pers = " / ".join(_persistence_cells(cell)) if i == 0 else ""
                lines.append("| " + " | ".join([first, LABELS[m], *vals, frozen, pers]) + " |")
        lines.append("")
    lines += published_section(cells, cfg)
    credits = sorted({c["credit"] for c in cells.values() if c["credit"]})
    lines += ["Data credits: " + "; ".join(credits), ""]
    return "\n".join(lines)


def published_section(cells, cfg) -> list[str]:
    """The published rows against the server RMSE at N = 5, read both ways."""
    n = min(cfg["sizes"])
    lines = [
        f"## The published numbers, at N = {n}, on the server RMSE",
        "",
        f"{C.PUBLISHED_LABEL}. 'mean' = mean over seeds of each seed's RMSE; '√mean MSE' = root "
        "of the seeds' mean square error. FedMOE's game: its own dense N-player game "
        "(`memoa_jax.simulate_fedmoe_game`, every agent pays the server's mixture error, own "
        "moments) with its two defects (`fedmoe_compat=True`), on the game's settings and "
        "this project's draws.",
        "",
        "| dataset | published | MEMOA server: mean / √mean MSE | G1 (FedMOE settings) "
        "server: mean / √mean MSE | FedMOE's game (compat) server: mean / √mean MSE | "
        "persistence lag 1 |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in C.labelled(cfg):
        cell = cells[(name, n)]
        row = [label, str(C.PUBLISHED.get(name, "—"))]
        for m in ("memoa", "g1_ridge"):
            s = cell["methods"][m]
            p1 = cell["persistence"]["lag1"]
            a, b = s["server_rmse"]["mean"], s["server_root_mean_mse"]
            row.append(f"{mj.format_rmse(a, p1)} / {mj.format_rmse(b, p1)}")
        game = cell.get("fedmoe_game", {}).get("compat")
        if game:
            a, b = game["server_rmse"]["mean"], game["server_root_mean_mse"]
            row.append(f"{mj.format_rmse(a, p1)} / {mj.format_rmse(b, p1)}")
        else:
            row.append("— (2-D target)" if name in C.NO_FEDMOE_RECIPE else "—")
        row.append(f"{cell['persistence']['lag1']:.4f}")
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def compact(cells, cfg) -> str:
    """One row per data set and N: MEMOA vs G1 at FedMOE's settings first, then the rest."""
    f2 = lambda c, m, f: fmt(c, m, f).replace(" ± ", " ±")  # noqa: E731
    head = [
        "dataset",
        "N",
        "MEMOA worst / p90 / server",
        "G1 (FedMOE settings) worst / p90 / server",
        "frozen",
        "MEMOA worst mover",
        "best of G2–G4 (ours) worst / server",
        "centralized FNE worst / server",
        "persistence lag 1 / T+1",
        C.PUBLISHED_LABEL,
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, label in C.labelled(cfg):
        for n in cfg["sizes"]:
            c = cells[(name, n)]
            trio = lambda m: " / ".join(
                f2(c, m, f) for f in ("worst_rmse", "p90_rmse", "server_rmse")
            )  # noqa: E731, E501
            gw, _ = _best_ours(c, "worst_rmse")
            gs, _ = _best_ours(c, "server_rmse")
            ours = (
                f"{f2(c, gw, 'worst_rmse')} ({gw}) / {f2(c, gs, 'server_rmse')} ({gs})"
                if gw and gs
                else "diverged"
            )
            flag = " ⚠" if name in C.NO_FEDMOE_RECIPE else ""
            row = [
                label + flag,
                str(n),
                trio("memoa"),
                trio("g1_ridge"),
                f"{100 * c['methods']['memoa']['frozen_share']['mean']:.0f}%",
                f2(c, "memoa", "worst_moving_rmse"),
                ours,
                f"{f2(c, FNE, 'worst_rmse')} / {f2(c, FNE, 'server_rmse')}"
                if FNE in c["methods"]
                else "—",
                " / ".join(_persistence_cells(c)),
                str(C.PUBLISHED.get(name, "—")) if n == cfg["sizes"][0] else "",
            ]
            lines.append("| " + " | ".join(row) + " |")
    if any(n in C.NO_FEDMOE_RECIPE for n in cfg["datasets"]):
        lines += ["", "⚠ " + "; ".join(f"{n}: {why}" for n, why in C.NO_FEDMOE_RECIPE.items())]
        lines[-1] += " — G1 takes Concept drift's settings."
    return "\n".join(lines) + "\n"


def figure(cells, cfg):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (("worst_rmse", "worst agent"), ("p90_rmse", "p90 agent"), ("server_rmse", "server"))
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2), constrained_layout=True)
    labels = [lab for _, lab in C.labelled(cfg)]
    width = 0.8 / len(cfg["sizes"])
    for ax, (f, title) in zip(axes, metrics):
        for k, n in enumerate(cfg["sizes"]):
            xs = np.arange(len(labels)) + (k - (len(cfg["sizes"]) - 1) / 2) * width
            for x, name in zip(xs, cfg["datasets"]):
                c = comparison(cells[(name, n)], "g1_ridge")[f]
                if c["other_diverged"]:
                    ax.bar(x, -100, width, color=f"C{k}", alpha=0.35, hatch="//")
                    ax.annotate("G1 div.", (x, -100), ha="center", va="top", fontsize=6,
                                rotation=90, xytext=(0, -2),
                                textcoords="offset points")  # fmt: skip
                    continue
                v = 100 * c["relative_change"]
                ax.bar(x, v, width, color=f"C{k}")
                ax.annotate(f"{v:+.0f}", (x, v), ha="center", va="bottom" if v >= 0 else "top",
                            fontsize=6, xytext=(0, 1 if v >= 0 else -1),
                            textcoords="offset points")  # fmt: skip
            ax.bar(np.nan, 0, color=f"C{k}", label=f"N = {n}")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(labels)), labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("MEMOA vs G1 at FedMOE's settings (%; < 0: MEMOA better)")
        ax.set_yscale("symlog", linthresh=10)
        ax.set_title(f"{title} RMSE")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        "MEMOA relative to FedMOE's greedy client at its own settings "
        f"(mean of {len(cfg['seeds'])} seed(s); hatched: G1 diverged)"
    )
    return fig


def run(out: Path, *, quick: bool, progress, datasets=None, rows=None):
    cfg = config(quick, datasets, rows)
    compute = lambda name, n: _cell(name, n, cfg, progress)  # noqa: E731
    cells = C.cells(out, NAME, cfg, compute, lambda n: len(cfg["seeds"]), progress)
    keys = [(name, n) for n in cfg["sizes"] for name in cfg["datasets"]]
    record = dict(
        config=cfg,
        environment=C.environment(),
        published=C.PUBLISHED,
        published_note=C.PUBLISHED_LABEL + " — spec §1.1 (wizwand rows of arXiv 2605.05492)",
        fedmoe_g1=C.FEDMOE_G1,
        cells=[cells[k] for k in keys],
        memoa_vs_g1_fedmoe={f"{k[0]}-N{k[1]}": comparison(cells[k], "g1_ridge") for k in keys},
        memoa_vs_best_of_ours={f"{k[0]}-N{k[1]}": comparison(cells[k]) for k in keys},
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
