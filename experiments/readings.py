"""Sensitivity to the readings of the window: every reading × moments, MEMOA and G2 vs G1.

The paper does not say how the hindsight window's solution is used online. At a sync step t
the next prediction is `base + Z_t β` with (`memoa_jax.MeanFieldGame`):

* base `replay_end` (FedMOE's `Server.fit`, the default) — the replay's end ŷ^rep_T;
  `observed` — y_t; `own` — the agent's own previous prediction ŷ_t;
* control `replay` (default) — the replay's last control β^rep_{T−1}; `gains` — the last
  gains at the base, K_{T−1} base + L_{T−1} mean(base) + g_{T−1};
* moments `population` (spec H2, default) or `own` (FedMOE: each agent plays the window game
  with its own exact RFN moments).

For each of the 6 × 2 combinations MEMOA (window T of spec §10) and G2 (T = 1) are run side
by side on the same draws, beside G1 at FedMOE's own settings; worst-agent, p90 and server
RMSE, spec §10 settings, λ = 0.5; N = 5 (mean over 3 seeds, every combination) and N = 1000
(one seed, population moments only: with `moments="own"` every agent solves its own window
game at every step, N batched small LAPACK solves per window step, which took from three
minutes (p ≤ 5) to over a quarter of an hour (BoC, p = 6) per run on two CPU cores). With
the `gains` control and the `observed` base MEMOA and G2 coincide (the last-step gains do
not depend on T).

Writes `readings.md` and `readings.json`.
"""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import main_table as T  # noqa: E402

NAME = "readings"
BASES = ("replay_end", "observed", "own")
CONTROLS = ("replay", "gains")
MOMENTS = ("population", "own")
SHOWN = (("worst_rmse", "worst"), ("p90_rmse", "p90"), ("server_rmse", "server"))


def variants(moments=MOMENTS) -> list[tuple[str, str, str]]:
    return [(b, c, m) for m in moments for b in BASES for c in CONTROLS]


def _variants_at(cfg, n) -> list[tuple[str, str, str]]:
    return variants(tuple(cfg["moments"][str(n)]))


def _tag(v) -> str:
    return "{}+{}/{}".format(*v)


def config(quick: bool, datasets=None, rows=None) -> dict:
    return dict(
        datasets=C.dataset_names(datasets),
        sizes=[5, 100] if quick else [5, 1000],
        seeds={"5": [C.SEED], "100": [C.SEED]}
        if quick
        else {"5": [C.SEED, C.SEED + 1, C.SEED + 2], "1000": [C.SEED]},
        moments={"5": list(MOMENTS), "100": list(MOMENTS)}
        if quick
        else {"5": list(MOMENTS), "1000": ["population"]},
        rows=rows or (201 if quick else None),
        lam=C.LAM,
        variants=[_tag(v) for v in variants()],
    )


def units(quick: bool, datasets=None, rows=None) -> int:
    c = config(quick, datasets, rows)
    return len(c["datasets"]) * sum(len(v) for v in c["seeds"].values())


def _sims(dataset, n_slots, lam, chosen):
    """One simulation with MEMOA and G2 under every reading of `chosen`, and G1 at FedMOE's
    settings."""
    (main, g1), hp = C.simulation(dataset, n_slots, lam=lam)
    memoa, g2 = (next(m for m in main.methods if m.name == k) for k in ("memoa", "g2_myopic"))
    methods = []
    for v in chosen:
        fields = dict(zip(("replay_base", "replay_control", "moments"), v))
        for m in (memoa, g2):
            methods.append(dataclasses.replace(m, name=f"{m.name}|{_tag(v)}", **fields))
    return (dataclasses.replace(main, methods=tuple(methods)), g1), hp


def _cell(name, n, cfg, progress):
    dataset = C.data(name, cfg["rows"])
    chosen = _variants_at(cfg, n)
    sims, hp = _sims(dataset, n, C.jnp.asarray(cfg["lam"]), chosen)  # no padding: N slots
    return T.make_cell(sims, hp, dataset, n, cfg["seeds"][str(n)], progress)


def markdown(cells, cfg) -> str:
    lines = [
        "# Readings of the window: MEMOA and G2 vs G1 ("
        + ", ".join(f"N = {n}: {len(v)} seed(s)" for n, v in cfg["seeds"].items())
        + ")",
        "",
        "base + control / moments (see `memoa_jax.MeanFieldGame`); the first row is the "
        "default (FedMOE's `Server.fit`). G1 runs at FedMOE's own settings. Lower is better; "
        "'diverged (k of N agents)': not finite or above 10⁶ × lag-1 persistence.",
        "",
    ]
    for name, label in C.labelled(cfg):
        for n in cfg["sizes"]:
            c = cells[(name, n)]
            pers = " / ".join(f"{v:.4f}" for v in c["persistence"].values())
            g1 = " / ".join(T.fmt(c, "g1_ridge", f, std=False) for f, _ in SHOWN)
            frozen = {
                who: 100 * c["methods"][m]["frozen_share"]["mean"]
                for who, m in (("G1's", "g1_ridge"), ("the game's", f"memoa|{_tag(variants()[0])}"))
            }
            lines += [
                f"## {label}, N = {n}",
                "",
                f"G1 (FedMOE settings) worst / p90 / server: {g1}; persistence lag 1 / "
                f"T+1: {pers}; frozen agents: "
                + ", ".join(f"{v:.0f}% ({who} encoder)" for who, v in frozen.items()),
                "",
                "| reading | MEMOA worst | p90 | server | G2 worst | p90 | server |",
                "|---|---|---|---|---|---|---|",
            ]
            chosen = _variants_at(cfg, n)
            best = min(chosen, key=lambda v: c["methods"][f"memoa|{_tag(v)}"]["worst_rmse"]["mean"])
            for v in chosen:
                vals = [
                    T.fmt(c, f"{m}|{_tag(v)}", f, std=False)
                    for m in ("memoa", "g2_myopic")
                    for f, _ in SHOWN
                ]
                tag = _tag(v) + (" ◂ best MEMOA worst" if v == best else "")
                lines.append("| " + " | ".join([tag, *vals]) + " |")
            lines.append("")
    return "\n".join(lines)


def best_reading(cell) -> dict:
    """The reading with the lowest MEMOA worst-agent RMSE, and its numbers."""
    run = [v for v in variants() if f"memoa|{_tag(v)}" in cell["methods"]]
    v = min(run, key=lambda v: cell["methods"][f"memoa|{_tag(v)}"]["worst_rmse"]["mean"])
    s = cell["methods"][f"memoa|{_tag(v)}"]
    return dict(reading=_tag(v), **{f: s[f]["mean"] for f, _ in SHOWN})


def run(out: Path, *, quick: bool, progress, datasets=None, rows=None):
    cfg = config(quick, datasets, rows)
    js, md = out / f"{NAME}.json", out / f"{NAME}.md"
    if C.complete(js, cfg, md):
        progress.update(units(quick, datasets, rows))
        return []
    compute = lambda name, n: _cell(name, n, cfg, progress)  # noqa: E731
    cells = C.cells(out, NAME, cfg, compute, lambda _, n: len(cfg["seeds"][str(n)]), progress)
    keys = [(name, n) for name in cfg["datasets"] for n in cfg["sizes"]]
    rec = dict(
        config=cfg,
        environment=C.environment(),
        best_reading={f"{k[0]}-N{k[1]}": best_reading(cells[k]) for k in keys},
        cells=[cells[k] for k in keys],
    )
    return [C.write_json(js, rec), C.write_text(md, markdown(cells, cfg))]


def outputs(out: Path, datasets=None) -> list[Path]:
    return [out / f"{NAME}.json", out / f"{NAME}.md"]


if __name__ == "__main__":
    C.script_main(run, __doc__.splitlines()[0])
