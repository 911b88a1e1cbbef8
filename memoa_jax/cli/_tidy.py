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
