"""The main-table comparison with echo-state (ESN) agents instead of RFN agents (spec §1.2).

Logistic, BoC and ETT; N = 5 and N = 1000; mean ± std over 3 seeds; spec §10
hyper-parameters, λ = 0.5, H2 agents, each with its own HardSigmoid reservoir; MEMOA's
moments by Monte Carlo over the encoder noise (16 draws per agent and step, population mean).

Writes `esn_table.md` and `esn_table.json`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import main_table as T  # noqa: E402

NAME = "esn_table"
SETS = ("logistic", "boc", "ett")


def config(quick: bool, datasets=None, rows=None) -> dict:
    names = [n for n in SETS if n in C.dataset_names(datasets)] if datasets else list(SETS)
    return dict(
        datasets=names,
        sizes=[5, 100] if quick else [5, 1000],
        seeds=[C.SEED] if quick else [C.SEED, C.SEED + 1, C.SEED + 2],
        rows=rows or (201 if quick else None),
        lam=C.LAM,
        encoder="esn",
    )


def units(quick: bool, datasets=None, rows=None) -> int:
    c = config(quick, datasets, rows)
    return len(c["datasets"]) * len(c["sizes"]) * len(c["seeds"])


def _cell(name, n, cfg, progress):
    dataset = C.data(name, cfg["rows"])
    lam = C.jnp.asarray(cfg["lam"])
    sims, hp = C.simulation(dataset, max(cfg["sizes"]), lam=lam, encoder="esn")
    return T.make_cell(sims, hp, dataset, n, cfg["seeds"], progress)


def run(out: Path, *, quick: bool, progress, datasets=None, rows=None):
    cfg = config(quick, datasets, rows)
    if not cfg["datasets"]:
        return []
    js, md = out / f"{NAME}.json", out / f"{NAME}.md"
    if C.complete(js, cfg, md):
        progress.update(units(quick, datasets, rows))
        return []
    cells = {
        (name, n): _cell(name, n, cfg, progress) for name in cfg["datasets"] for n in cfg["sizes"]
    }
    text = (
        T.markdown(cells, cfg)
        .replace("# Main table: MEMOA vs FedMOE", "# ESN agents: MEMOA vs FedMOE")
        .replace("H2 agents (one RFN encoder each)", "H2 agents (one ESN reservoir each)")
    )
    rec = dict(config=cfg, environment=C.environment(), cells=list(cells.values()))
    rec["memoa_vs_best_greedy"] = {f"{k[0]}-N{k[1]}": T.comparison(c) for k, c in cells.items()}
    return [C.write_text(md, text), C.write_json(js, rec)]


def outputs(out: Path, datasets=None) -> list[Path]:
    return [out / f"{NAME}.json", out / f"{NAME}.md"]


if __name__ == "__main__":
    C.script_main(run, __doc__.splitlines()[0])
