"""Main table: MEMOA against FedMOE's own greedy client at FedMOE's own settings, N = 5 and 1000.

Methods, all on the same data and the same server (constrained ridge, κ = η = 1), H2 agents
(one RFN encoder per agent, population moments). At N = 5 (and in FedMOE's game row), the
median and interquartile range over 10 seeds: with 5 agents, one seed's encoder draw can freeze
3 of 5 of them and a mean over 3 seeds follows that tail draw (FedMOE's game on ETT: mean over
seeds 0–2 0.0333, median over 50 seeds 0.0269). At N = 1000 the mean ± std over 3 seeds:
the frozen share averages 1000 draws, and the server RMSE's std over seeds is under 10 % of
its mean on every series but Concept. The N = 1000 cells where one of seeds 0–2 set the mean
of a MEMOA headline, Concept (server RMSE 0.308, 0.217, 0.219) and Concept drift (worst agent
0.46, 0.42, 1.96), are listed in `MANY_SEEDS_CELLS` and read median [IQR] over 10 seeds too
(see docs/reproduction.md):

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
`main_table.png` (every method's server RMSE ÷ lag-1 persistence, per data set, N = 5 and
1000: the headline picture); finished cells are kept in
`main_table_cells/<dataset>-N<n>.json`, so an interrupted run resumes cell by cell.
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
        # N <= FEDMOE_GAME_MAX_N: median and IQR over >= 10 seeds (`C.MEDIAN_MIN_SEEDS`)
        small_n_seeds=[C.SEED] if quick else list(range(C.SEED, C.SEED + SMALL_N_SEEDS)),
        # the larger cells that take those seeds too (`MANY_SEEDS_CELLS`)
        many_seeds_cells=[] if quick else [f"{d}-N{n}" for d, n in MANY_SEEDS_CELLS],
        rows=rows or (201 if quick else None),  # quick: the first 201 rows of the real series
        lam=C.LAM,
        g1_params="fedmoe",
        methods=_methods(),
    )


SMALL_N_SEEDS = 10
FEDMOE_GAME_MAX_N = 32  # FedMOE's game is dense: run at N <= 32 (1-D targets)
# The (data set, N) cells above FEDMOE_GAME_MAX_N that also run the SMALL_N_SEEDS seeds and read
# median [IQR]: those where one of seeds 0-2 set the mean over 3 of a MEMOA headline (server or
# worst agent; docs/reproduction.md): Concept's server RMSE 0.308, 0.217, 0.219 (std 17 % of
# the mean), Concept drift's worst agent 0.46, 0.42, 1.96 (std 76 %). A fixed list, not a rule
# applied to each run's numbers: no other cell's configuration, and so no other cell's numbers,
# moves.
MANY_SEEDS_CELLS = (("concept", 1000), ("concept-drift", 1000))


def seeds_for(cfg: dict, dataset: str, n: int) -> list[int]:
    """The seeds of the cell of `dataset` with N agents: more where one draw can be decisive
    (any N <= FEDMOE_GAME_MAX_N, and the cells of `MANY_SEEDS_CELLS`)."""
    many = n <= FEDMOE_GAME_MAX_N or f"{dataset}-N{n}" in cfg["many_seeds_cells"]
    return cfg["small_n_seeds"] if many else cfg["seeds"]


def cell_config(cfg: dict, dataset: str, n: int) -> dict:
    """What the cell of `dataset` with N agents is kept with: `cfg` without the data sets, and
    with its own seeds only (the other N = 1000 cells keep the configuration they were computed
    under)."""
    out = {
        k: v for k, v in cfg.items() if k not in ("datasets", "small_n_seeds", "many_seeds_cells")
    }
    return dict(out, seeds=seeds_for(cfg, dataset, n))


def units(quick: bool, datasets=None, rows=None) -> int:
    cfg = config(quick, datasets, rows)
    return sum(len(seeds_for(cfg, d, n)) for d in cfg["datasets"] for n in cfg["sizes"])


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
    seeds = seeds_for(cfg, name, n)
    cell = make_cell(sims, hp, dataset, n, seeds, progress)
    if n <= FEDMOE_GAME_MAX_N and dataset.d == 1:
        cell["fedmoe_game"] = fedmoe_game(dataset, hp, n, seeds)
    return cell


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
    """One method's metric over the seeds of a cell, see `fmt_stats`."""
    s = cell["methods"][method]
    return fmt_stats(cell, s[metric], int(max(s["n_diverged"]["per_seed"])), std=std)


def fmt_stats(cell, stats, n_diverged: int | None = None, *, std=True) -> str:
    """`median [q25, q75]` from `C.MEDIAN_MIN_SEEDS` seeds on, else `mean ± std`; or
    "diverged (k of N agents)" (k: the most over the seeds; `n_diverged` None: not known)."""
    per_seed, p1 = stats["per_seed"], cell["persistence"]["lag1"]
    c = C.center(stats)
    if mj.is_diverged(c, p1):
        k, n = (0, 0) if n_diverged is None else (n_diverged, cell["n_agents"])
        return mj.format_rmse(c, p1, k, n)
    if not std or len(per_seed) == 1:
        return f"{c:.4f}"
    if len(per_seed) >= C.MEDIAN_MIN_SEEDS:
        q = C.median_iqr(per_seed)
        return f"{c:.4f} [{mj.format_rmse(q['q25'], p1)}, {mj.format_rmse(q['q75'], p1)}]"
    return f"{c:.4f} ± {stats['std']:.4f}"


def how_summarised(cell) -> str:
    k = len(cell["methods"]["memoa"]["server_rmse"]["per_seed"])
    if k >= C.MEDIAN_MIN_SEEDS:
        return f"median [interquartile range] over {k} seeds"
    return f"mean ± std over {k} seed(s)"


def size_summarised(cells, cfg, n, how=how_summarised) -> str:
    """`how` of the cells of N agents: the first data set's, then each other way with the data
    sets summarised so, by name ("mean ± std over 3 seed(s); Concept, Concept drift: ...")."""
    ways = {name: how(cells[(name, n)]) for name in cfg["datasets"]}
    first, others = ways[cfg["datasets"][0]], {}
    for name, label in C.labelled(cfg):
        if ways[name] != first:
            others.setdefault(ways[name], []).append(label)
    return "; ".join([first, *(f"{', '.join(labs)}: {way}" for way, labs in others.items())])


def many_seeds_text(cfg) -> str:
    """The cells of `MANY_SEEDS_CELLS` in this run, in words ("" if none; esn_table's
    configuration, which `markdown` also renders, has no such cells)."""
    labels, listed = dict(C.DATASETS), cfg.get("many_seeds_cells", [])
    cells = [(d, n) for d, n in MANY_SEEDS_CELLS if f"{d}-N{n}" in listed]
    return ", ".join(f"{labels[d]} at N = {n}" for d, n in cells if d in cfg["datasets"])


def _best_ours(cell, metric):
    vals = {g: C.center(cell["methods"][g][metric]) for g in OURS if g in cell["methods"]}
    vals = {g: v for g, v in vals.items() if not mj.is_diverged(v, cell["persistence"]["lag1"])}
    if not vals:
        return None, float("nan")
    g = min(vals, key=vals.get)
    return g, vals[g]


def comparison(cell, against: str | None = None) -> dict:
    """MEMOA vs `against` (default: the best of this project's baselines G2–G4 per metric,
    picked after the fact), relative change of the headline over seeds (`C.center`: the median
    from 10 seeds on, else the mean; < 0: MEMOA better)."""
    out = {}
    for f in ("worst_rmse", "p90_rmse", "server_rmse", "worst_moving_rmse", "avg_rmse"):
        if against is None:
            g, other = _best_ours(cell, f)
        else:
            g, other = against, C.center(cell["methods"][against][f])
        ours = C.center(cell["methods"]["memoa"][f])
        diverged = mj.is_diverged(other, cell["persistence"]["lag1"])
        rel = float("nan") if diverged or not np.isfinite(other) else (ours - other) / other
        out[f] = dict(against=g, value=other, memoa=ours, relative_change=rel)
        out[f].update(other_diverged=diverged, memoa_wins=bool(diverged or ours < other))
    return out


def _persistence_cells(cell):
    return [f"{v:.4f}" for v in cell["persistence"].values()]


def markdown(cells, cfg) -> str:
    lines = [
        "# Main table: MEMOA vs FedMOE's greedy client, and this project's baselines",
        "",
        "H2 agents (one RFN encoder each), constrained-ridge server (κ = η = 1), q = 1, "
        f"λ = {cfg['lam']}. MEMOA, G2–G4 and the centralized FNE: spec §10 (FedMOE's best game "
        "settings). G1: FedMOE's own settings for its greedy client (its own α, γ, T_c, d_z, "
        "σ and encoder draw). G2–G4 are this project's own baselines, not FedMOE's. Lower is "
        "better. Per-agent RMSE summarised by mean, quantiles and max; 'worst mover' = the "
        "worst agent whose features were not zero at every step; 'frozen' = the share of "
        "agents whose were. Persistence: ŷ_{t+1} = y_t (lag 1) and ŷ_{t+1} = y_{t−T} "
        "(lag T + 1, a frozen agent's forecast under MEMOA). 'diverged (k of N agents)': not "
        "finite or above 10⁶ × lag-1 persistence (k: the most over the seeds). With "
        f"{C.MEDIAN_MIN_SEEDS} seeds or more (N ≤ {FEDMOE_GAME_MAX_N}"
        + (f", and {many_seeds_text(cfg)}" if many_seeds_text(cfg) else "")
        + ") a cell reads median [25th, 75th percentile] over the seeds: a mean over a few "
        "seeds follows one tail draw (with 5 agents, one seed's encoder draw can freeze most of "
        "them; docs/reproduction.md).",
        "",
    ]
    for n in cfg["sizes"]:
        lines += [f"## N = {n} ({size_summarised(cells, cfg, n)})", ""]
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
        f"{C.PUBLISHED_LABEL}. Each cell: the headline "
        f"({how_summarised(cells[(cfg['datasets'][0], n)])}) "
        "· 'mean' = mean over seeds of each seed's RMSE · '√mean MSE' = root "
        "of the seeds' mean square error. FedMOE's game: its own dense N-player game "
        "(`memoa_jax.simulate_fedmoe_game`, every agent pays the server's mixture error, own "
        "moments) with its two defects (`fedmoe_compat=True`), on the game's settings and "
        "this project's draws.",
        "",
        "| dataset | published | MEMOA server: headline · mean · √mean MSE | G1 (FedMOE "
        "settings) server: headline · mean · √mean MSE | FedMOE's game (compat) server: "
        "headline · mean · √mean MSE | persistence lag 1 |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in C.labelled(cfg):
        cell = cells[(name, n)]
        row = [label, str(C.PUBLISHED.get(name, "—"))]
        p1 = cell["persistence"]["lag1"]
        three = lambda s: " · ".join(  # noqa: E731
            [fmt_stats(cell, s["server_rmse"]), mj.format_rmse(s["server_rmse"]["mean"], p1)]
            + [mj.format_rmse(s["server_root_mean_mse"], p1)]
        )
        row += [three(cell["methods"][m]) for m in ("memoa", "g1_ridge")]
        game = cell.get("fedmoe_game", {}).get("compat")
        if game:
            row.append(three(game))
        else:
            row.append("— (2-D target)" if name in C.NO_FEDMOE_RECIPE else "—")
        row.append(f"{cell['persistence']['lag1']:.4f}")
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def compact(cells, cfg) -> str:
    """One row per data set and N: MEMOA vs G1 at FedMOE's settings first, then the rest."""
    f2 = lambda c, m, f: fmt(  # noqa: E731  (medians alone at N <= 32: IQRs in main_table.md)
        c, m, f, std=c["n_agents"] > FEDMOE_GAME_MAX_N
    ).replace(" ± ", " ±")
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
    many = many_seeds_text(cfg)
    lines += ["", f"N ≤ {FEDMOE_GAME_MAX_N}: medians over the seeds (their interquartile ranges "
              "are in main_table.md); larger N: mean ± std over the seeds"
              + (f", but {many}: median [interquartile range]." if many else ".")]  # fmt: skip
    return "\n".join(lines) + "\n"


YARDSTICK = (
    ("memoa", "MEMOA"),
    ("g1_ridge", "G1 greedy (FedMOE's settings)"),
    ("g2_myopic", "G2 myopic (ours)"),
    ("g3_independent", "G3 independent (ours)"),
    ("g4_follow_mean", "G4 follow the mean (ours)"),
    ("fedmoe_game", "FedMOE's game (compat)"),
)


def yardstick(cell) -> dict:
    """Every method's server RMSE divided by the lag-1 persistence RMSE ŷ_{t+1} = y_t of the
    same rows (< 1: the method beats "tomorrow = today"): `ratio` (the headline over seeds,
    `C.center`), `lo` and `hi` (the 25th and 75th percentiles over seeds) and `diverged`
    (`mj.is_diverged` of the headline). FedMOE's game only where the cell ran it."""
    p1 = cell["persistence"]["lag1"]
    stats = {m: s["server_rmse"] for m, s in cell["methods"].items()}
    if "fedmoe_game" in cell:
        stats["fedmoe_game"] = cell["fedmoe_game"]["compat"]["server_rmse"]
    out = {}
    for m, _ in YARDSTICK:
        if m in stats:
            c, q = C.center(stats[m]), C.median_iqr(stats[m]["per_seed"])
            out[m] = dict(
                ratio=c / p1, lo=q["q25"] / p1, hi=q["q75"] / p1, diverged=mj.is_diverged(c, p1)
            )
    return out


def _bars(cell) -> str:
    k = len(cell["methods"]["memoa"]["server_rmse"]["per_seed"])
    return f"{'median' if k >= C.MEDIAN_MIN_SEEDS else 'mean'} over {k} seed(s)"


YARDSTICK_TOP = 8.0  # the figure's y range ends here; larger ratios are drawn clipped


def figure(cells, cfg):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [lab.replace(" (ours, no paper row)", "\n(ours)") for _, lab in C.labelled(cfg)]
    colors = dict(memoa="#d62728", g1_ridge="#7f7f7f", g2_myopic="#1f77b4")
    colors.update(g3_independent="#17becf", g4_follow_mean="#2ca02c", fedmoe_game="#9467bd")
    sizes = cfg["sizes"]
    fig, axes = plt.subplots(len(sizes), 1, figsize=(13, 4.3 * len(sizes)), sharex=True)
    axes = np.atleast_1d(axes)
    width = 0.8 / len(YARDSTICK)
    bottom = 0.12
    for ax, n in zip(axes, sizes):
        for j, name in enumerate(cfg["datasets"]):
            ys = yardstick(cells[(name, n)])
            for k, (m, _) in enumerate(YARDSTICK):
                x = j + (k - (len(YARDSTICK) - 1) / 2) * width
                if m not in ys:
                    if m == "fedmoe_game" and n <= FEDMOE_GAME_MAX_N:  # a 2-D target
                        ax.text(x, bottom * 1.1, "no game (2-D)", rotation=90, fontsize=6.5,
                                ha="center", va="bottom")  # fmt: skip
                    continue
                r = ys[m]
                top = min(r["ratio"], YARDSTICK_TOP) if not r["diverged"] else YARDSTICK_TOP
                edge = "k" if m == "memoa" else "none"
                hatch = "//" if top < r["ratio"] or r["diverged"] else None
                ax.bar(x, top - bottom, width, bottom=bottom, color=colors[m], edgecolor=edge,
                       lw=0.6, hatch=hatch)  # fmt: skip
                if r["diverged"] or r["ratio"] > YARDSTICK_TOP:
                    text = "div." if r["diverged"] else f"{r['ratio']:.0f}×"
                    ax.annotate(text, (x, YARDSTICK_TOP), ha="center", va="bottom", fontsize=6.5,
                                rotation=90, xytext=(0, 2), textcoords="offset points")  # fmt: skip
                elif r["hi"] > r["lo"] and np.isfinite(r["hi"]):
                    lo, hi = max(r["lo"], bottom), min(r["hi"], YARDSTICK_TOP)
                    ax.plot([x, x], [lo, hi], color="k", lw=0.7)
        ax.axhline(1.0, color="k", lw=1.2, ls="--")
        ax.set_yscale("log")
        ax.set_ylim(bottom, YARDSTICK_TOP * 2.2)
        ticks = [0.125, 0.25, 0.5, 1, 2, 4, 8]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlim(-0.5, len(labels) - 0.5)
        for j in range(1, len(labels)):
            ax.axvline(j - 0.5, color="0.85", lw=0.6)
        ax.grid(axis="y", alpha=0.3)
        bars = size_summarised(cells, cfg, n, how=_bars)
        ax.set_title(f"N = {n} agents: bars the {bars}; whiskers the interquartile range over "
                     "seeds", fontsize=10, loc="left")  # fmt: skip
        ax.set_ylabel("server RMSE ÷ lag-1 persistence RMSE\n(< 1 beats persistence)")
    axes[-1].set_xticks(np.arange(len(labels)), labels, fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[m]) for m, _ in YARDSTICK]
    handles.append(plt.Line2D([0], [0], color="k", lw=1.2, ls="--"))
    names = [lab for _, lab in YARDSTICK] + ["lag-1 persistence (tomorrow = today)"]
    fig.legend(handles, names, loc="upper center", ncol=4, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.965))  # fmt: skip
    fig.suptitle(
        "Every method against the same yardstick: server RMSE ÷ lag-1 persistence "
        "(lower is better; hatched and labelled: off the scale or diverged)",
        fontsize=11,
        y=0.995,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.925))
    return fig


def run(out: Path, *, quick: bool, progress, datasets=None, rows=None):
    cfg = config(quick, datasets, rows)
    compute = lambda name, n: _cell(name, n, cfg, progress)  # noqa: E731
    n_seeds = lambda name, n: len(seeds_for(cfg, name, n))  # noqa: E731
    keep = lambda name, n: cell_config(cfg, name, n)  # noqa: E731
    cells = C.cells(out, NAME, cfg, compute, n_seeds, progress, keep)
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
