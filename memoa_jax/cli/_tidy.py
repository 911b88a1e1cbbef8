"""`summary.csv`: the tidy table beside every command's results.json, one row per method ×
seed × metric, so that `pandas.read_csv(out / "summary.csv")` loads it as it is."""

import csv
import io
import math
from pathlib import Path

from ._outputs import write_text

COLUMNS = ("method", "seed", "metric", "value")


def tidy_rows(summary: dict, seeds: list[int]) -> list[tuple]:
    """The rows of `summary.csv` from `memoa run`'s aggregated summary (method -> field ->
    `per_seed` values, and `persistence`): every per-seed field of every method, then the
    persistence forecasts as methods of their own (`persistence_lag_1`, and the seasonal
    `persistence_lag_S`), whose avg, worst and server RMSEs are one number. A value that
    overflowed is left empty (pandas reads NaN)."""
    rows: list[tuple] = []
    p = None
    for name, s in summary.items():
        p = s["persistence"]
        for metric, stat in s.items():
            if not isinstance(stat, dict) or "per_seed" not in stat:
                continue
            for seed, v in zip(seeds, stat["per_seed"]):
                rows.append((name, seed, metric, v))
    if p is not None:
        lags = [(1, p["lag_1"])]
        if p.get("seasonal") is not None:
            lags.append((p["season"], p["seasonal"]))
        for lag, value in lags:
            for seed in seeds:
                for metric in ("avg_rmse", "worst_rmse", "server_rmse"):
                    rows.append((f"persistence_lag_{lag}", seed, metric, value))
    return rows


def sweep_rows(records: list[dict]) -> list[tuple]:
    """The rows of `memoa sweep`'s `summary.csv` (under `SWEEP_COLUMNS`): every summary
    field of every method at every finished `(N, seed)`, and the point's agent-steps/s."""
    rows: list[tuple] = []
    for r in records:
        n, seed = r["n_agents"], r["seed"]
        for method, summary in r["summary"].items():
            rows += [(n, method, seed, metric, v) for metric, v in summary.items()]
        rows.append((n, "all", seed, "agent_steps_per_s", r["agent_steps_per_s"]))
    return rows


SWEEP_COLUMNS = ("n_agents", *COLUMNS)


def write_summary_csv(path: Path, rows: list[tuple], columns: tuple = COLUMNS) -> Path:
    """`rows` under `columns` as CSV, atomically; non-finite or missing values empty."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        *keys, v = row
        ok = v is not None and not (isinstance(v, float) and not math.isfinite(v))
        w.writerow([*keys, repr(float(v)) if ok and isinstance(v, float) else (v if ok else "")])
    return write_text(path, buf.getvalue())


def _number(v):
    """A value for a tidy row: numbers as they are (a bool as 0 or 1), anything else None."""
    if isinstance(v, bool):
        return int(v)
    return v if isinstance(v, (int, float)) else None


VERIFY_COLUMNS = ("n_agents", "quantity", "value")


def verify_rows(record: dict) -> list[tuple]:
    """The rows of `memoa verify`'s `summary.csv` (under `VERIFY_COLUMNS`) from its
    nash_verify.json record: per N every field of its row (gain_gap, eps, cost_gap, J_mf,
    J_fne, J_br and the solvers' seconds), the dense check's (`dense_*`) and the Monte
    Carlo check's (`mc_*`; an interval's bounds as `mc_<name>_ci95_lo`/`_hi`)."""
    rows: list[tuple] = []
    for r in record["rows"]:
        rows += [(r["n_agents"], k, _number(v)) for k, v in r.items() if k != "n_agents"]
    for r in record["dense"]:
        rows += [(r["n_agents"], f"dense_{k}", _number(v)) for k, v in r.items() if k != "n_agents"]
    for r in record["monte_carlo"]:
        for k, v in r.items():
            if isinstance(v, dict):  # mean, se, ci95
                rows += [(r["n_agents"], f"mc_{k}_{s}", v[s]) for s in ("mean", "se")]
                rows += [
                    (r["n_agents"], f"mc_{k}_ci95_{e}", b) for e, b in zip(("lo", "hi"), v["ci95"])
                ]
            elif k != "n_agents":
                rows.append((r["n_agents"], f"mc_{k}", _number(v)))
    return rows


BENCH_COLUMNS = ("part", "state", "n_agents", "metric", "value")


def bench_rows(record: dict) -> list[tuple]:
    """The rows of `memoa bench`'s `summary.csv` (under `BENCH_COLUMNS`) from its bench.json
    record: every numeric figure of the full loop (part `loop`, per state), of the policy
    step (`policy`, no state), of `--kernels both` (`kernels: <variant>`, per state), of the
    Nash solves (`nash`; the reduced solve at N = 10⁹, the mean-field one at no N) and of
    the copy test (`copy`, no N). The state is `bench.state_label`'s."""
    from ..bench import state_label

    rows: list[tuple] = []

    def add(part, state, n, timings: dict):
        rows.extend(
            (part, state, n, k, _number(v))
            for k, v in timings.items()
            if k not in ("state", "carry_draws", "n_agents", "variant") and _number(v) is not None
        )

    for p in record["points"]:
        n = p["n_agents"]
        for key in ("loop", "loop_lean"):
            if key in p:
                add("loop", state_label(p[key]), n, p[key])
        if "policy" in p:
            add("policy", "", n, p["policy"])
    for key in ("kernels", "kernels_lean"):
        if key in record:
            k = record[key]
            for v in k["variants"]:
                add(f"kernels: {v['variant']}", state_label(k), k["n_agents"], v)
    if "nash" in record:
        nsh = record["nash"]
        rows.append(("nash", "", "", "mean_field_s", nsh["mean_field_s"]))
        rows.append(("nash", "", 10**9, "reduced_s", nsh["reduced_1e9_s"]))
        rows += [("nash", "", r["n_agents"], "dense_s", r["run_s"]) for r in nsh["dense"]]
    add("copy", "", "", record["copy"])
    return rows


REPRODUCE_COLUMNS = ("table", "row", "column", "value")


def _means(methods: dict) -> list[tuple[str, float]]:
    """`(method metric, mean)` of every summary field with a mean, of every method."""
    return [
        (f"{m} {k}", stat["mean"])
        for m, fields in methods.items()
        for k, stat in fields.items()
        if isinstance(stat, dict) and "mean" in stat
    ]


def reproduce_rows(out: Path) -> list[tuple]:
    """The rows of `memoa reproduce`'s `summary.csv` (under `REPRODUCE_COLUMNS`), read from
    the experiments' JSON files in `out` (those present): the cell tables (main_table,
    readings, esn_table: row `<dataset> N=<N>`, column `<method> <metric>` or `persistence
    <lag>`, the mean over seeds), lambda_and_n (rows `<dataset> lam=<λ>` and `<dataset>
    N=<N>`), tune_val (rows `<dataset> N=<N>` of the tuned settings' scores) and the
    trajectories (row `<dataset>`, one seed)."""
    import json

    def load(name):
        path = out / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    rows: list[tuple] = []
    for table in ("main_table", "readings", "esn_table"):
        for c in (load(table) or {}).get("cells", []):
            row = f"{c['dataset']} N={c['n_agents']}"
            rows += [(table, row, f"persistence {k}", v) for k, v in c["persistence"].items()]
            rows += [(table, row, col, v) for col, v in _means(c["methods"])]
    lam = load("lambda_and_n")
    if lam is not None:
        for name, res in lam["results"].items():
            for axis, values in (("lam", lam["config"]["lams"]), ("N", lam["config"]["sizes"])):
                for value, methods in zip(values, res[axis.lower()]):
                    row = f"{name} {axis}={value}"
                    rows += [("lambda_and_n", row, col, v) for col, v in _means(methods)]
    tune = load("tune_val")
    if tune is not None:
        for name, res in tune["results"].items():
            for n, methods in res["scored"].items():
                rows += [("tune_val", f"{name} N={n}", col, v) for col, v in _means(methods)]
    for path in sorted((out / "trajectories").glob("*.json")):
        rec = json.loads(path.read_text())
        for m, summary in rec["summary"].items():
            rows += [
                ("trajectories", rec["dataset"], f"{m} {k}", _number(v))
                for k, v in summary.items()
                if _number(v) is not None
            ]
    return rows
