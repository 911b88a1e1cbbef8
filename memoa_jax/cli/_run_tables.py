"""What `memoa run` prints: the table that fits 100 columns, the verdict against
persistence, the wide tables (`--wide`), the frozen-agents warning and the timings."""

import sys

from ._outputs import print_table
from ._resources import format_bytes, peak_rss_bytes


def spread(mean: float, std: float) -> str:
    """A mean over seeds with as many significant digits as its spread allows, and the spread
    relative to it: `0.008092 ±1.2%`; the mean alone (4 significant digits) when the spread is
    below 0.05 % of it (one seed, or round-off between seeds).

    Example:
        >>> spread(0.008092, 9.4e-05), spread(0.02561, 3.5e-18)
        ('0.008092 ±1.2%', '0.02561')
    """
    import math

    if not (math.isfinite(mean) and math.isfinite(std)) or mean == 0 or std <= 5e-4 * abs(mean):
        return f"{mean:.4g}"
    digits = math.floor(math.log10(abs(mean))) - math.floor(math.log10(std)) + 2
    return f"{mean:.{min(max(digits, 2), 4)}g} ±{100 * std / abs(mean):.2g}%"


def diverged_seeds(stat, summary) -> list[int]:
    """The seeds (indices) in which this RMSE diverged."""
    import memoa_jax as mj

    lag1 = summary["persistence"]["lag_1"]
    return [i for i, v in enumerate(stat["per_seed"]) if mj.is_diverged(v, lag1)]


def cell(stat, summary, n_agents, seeds, *, agents=True) -> str:
    """An RMSE over seeds for the wide table: `spread`, or `diverged (k of N agents)`
    (`memoa_jax.format_rmse`) when a seed diverged."""
    import memoa_jax as mj

    lag1 = summary["persistence"]["lag_1"]
    values = stat["per_seed"]
    bad = diverged_seeds(stat, summary)
    if bad:
        k = max(summary["n_diverged"]["per_seed"][i] for i in bad)
        text = mj.format_rmse(values[bad[0]], lag1, k if agents else 0, n_agents if agents else 0)
        return text if seeds == 1 else f"{text} in {len(bad)} of {seeds} seeds"
    return spread(stat["mean"], stat["std"])


def persistence_rows(p) -> list[tuple[str, float]]:
    """The persistence forecasts every table shows as rows: lag 1, and the seasonal lag."""
    rows = [("persistence (lag 1)", p["lag_1"])]
    if p.get("seasonal") is not None:
        rows.append((f"persistence (lag {p['season']})", p["seasonal"]))
    return rows


def print_summary(summary, n_agents, n_steps, seeds, wide=False):
    """The table that fits 100 columns (avg, worst agent, server, × persistence, frozen), the
    verdict against persistence under it, and with `wide` the quantiles and per-seed detail."""
    across = f"mean ±spread over {seeds} seeds" if seeds > 1 else "1 seed"
    p = next(iter(summary.values()))["persistence"]
    lag1 = p["lag_1"]
    cols = ["method", "avg agent", "worst agent", "server", "× persist.", "frozen"]
    rows, notes = [], []
    for name, s in summary.items():
        bad = diverged_seeds(s["avg_rmse"], s) or diverged_seeds(s["worst_rmse"], s)
        cells = []
        for f in ("avg_rmse", "worst_rmse", "server_rmse"):
            cells.append(
                "diverged" if diverged_seeds(s[f], s) else spread(s[f]["mean"], s[f]["std"])
            )
        server = s["server_rmse"]
        cells.append(
            "—" if diverged_seeds(server, s) or lag1 <= 0 else f"{server['mean'] / lag1:.2f}"
        )
        cells.append(f"{100 * s['frozen_share']['mean']:.1f} %")
        rows.append([name, *cells])
        if bad:
            notes.append(f"{name}: {cell(s['worst_rmse'], s, n_agents, seeds)}")
    for label, value in persistence_rows(p):
        rows.append([label, f"{value:.4g}", f"{value:.4g}", f"{value:.4g}"])
        rows[-1] += [f"{value / lag1:.2f}" if lag1 > 0 else "—", "—"]
    title = f"\nN = {n_agents:,} agents, {n_steps} steps, {across}; RMSE:"
    print_table(cols, rows, left=1, title=title)
    for line in notes:
        print(f"  {line} (diverged: RMSE not finite or > 10⁶ × lag-1 persistence)")
    print(verdict(summary))
    if wide:
        print_wide(summary, n_agents, seeds)


def verdict(summary) -> str:
    """One line: the best server against the best persistence forecast, and which methods'
    servers beat it (or that none does)."""
    p = next(iter(summary.values()))["persistence"]
    label, best_p = min(persistence_rows(p), key=lambda r: r[1])
    servers = {
        n: s["server_rmse"]["mean"]
        for n, s in summary.items()
        if not diverged_seeds(s["server_rmse"], s)
    }
    if not servers:
        return f"verdict: every method diverged; {label} scores {best_p:.4g}"
    best = min(servers, key=lambda n: servers[n])
    if best_p <= 0:
        return f"verdict: {label} is exact on this series; best server {best} {servers[best]:.4g}"
    beat = [n for n, v in servers.items() if v < best_p]
    tail = (
        f"{', '.join(beat)} beat{'s' if len(beat) == 1 else ''} it"
        if beat
        else "no method beats persistence on this series"
    )
    return (
        f"verdict: best server {best} {servers[best]:.4g} = {servers[best] / best_p:.2f} × "
        f"{label} ({best_p:.4g}); {tail}"
    )


def print_wide(summary, n_agents, seeds):
    """The per-agent quantiles, the lag-(T+1) persistence, and the per-seed detail."""
    cols = ["method", "p50", "p90", "p99", "worst mover", "persist. lag T+1"]
    rows = []
    for name, s in summary.items():
        cells = [cell(s[f], s, n_agents, seeds) for f in ("p50_rmse", "p90_rmse", "p99_rmse")]
        if all(f == 1.0 for f in s["frozen_share"]["per_seed"]):
            cells.append("none moved")
        else:
            cells.append(cell(s["worst_moving_rmse"], s, n_agents, seeds))
        p = s["persistence"]
        cells.append(f"{p['lag_T1']:.4g} (lag {p['T1']})")
        rows.append([name, *cells])
    print_table(cols, rows, left=1, title="\nper-agent RMSE quantiles:")

    cols = ["method", "worst agent (per seed)", "frozen agents", "diverged agents (per seed)"]
    rows = []
    for name, s in summary.items():
        frozen = s["frozen_share"]
        rows.append(
            [
                name,
                ", ".join(str(i) for i in s["worst_agent"]["per_seed"]),
                f"{100 * frozen['mean']:.1f} %",
                ", ".join(f"{k} of {n_agents:,}" for k in s["n_diverged"]["per_seed"]),
            ]
        )
    print()
    print_table(cols, rows, left=1)
    print(
        "\n(frozen: features zero at every step, the agent never moves; worst mover: the worst "
        "agent among those that move; diverged: RMSE not finite or > 10⁶ × lag-1 persistence)"
    )


FROZEN_WARNING = 0.10  # the frozen share above which `memoa run` warns


def print_frozen_warning(summary, features) -> None:
    """One warning when more than `FROZEN_WARNING` of some method's agents never moved."""
    frozen = {n: s["frozen_share"]["mean"] for n, s in summary.items() if n != "fedmoe_game"}
    worst = max(frozen, key=lambda n: frozen[n], default=None)
    if worst is None or frozen[worst] <= FROZEN_WARNING:
        return
    p = features
    print(
        f"warning: {100 * frozen[worst]:.1f} % of {worst}'s agents never moved (their features "
        "were zero at every step, so they predict y_0 or a replay's observed value, and the "
        "worst-agent figures are persistence's error): a ReLU random feature is zero while its "
        "input stays below its threshold; more features per agent lower the share "
        f"(--features{f', now {p}' if p else ''})",
        file=sys.stderr,
    )


def print_timing(timing, wall_s):
    print()
    for t in timing:
        runs = ", ".join(f"{r:.2f}" for r in t["run_s_per_seed"])
        if t["compile_s"] is None:  # with checkpoints: compiled on the first segment
            compiled = " on its first segment (in its first run's time)"
        elif t["trace_s"] is None:
            compiled = f" in {t['compile_s']:.1f} s (estimated)"
        elif t["read_from_cache"]:
            compiled = (
                f" in {t['compile_s']:.1f} s (tracing {t['trace_s']:.1f} s; XLA's part read "
                "from JAX's cache)"
            )
        else:
            compiled = f" in {t['compile_s']:.1f} s (tracing {t['trace_s']:.1f} s)"
        rate = t["agent_steps_per_s"]
        print(
            f"{' + '.join(t['methods'])}: compiled once{compiled}; run {runs} s per seed"
            + ("" if rate is None else f" ({rate:.3g} agent-steps/s)")
        )
    compile_total = sum(t["compile_s"] or 0.0 for t in timing)
    in_segments = any(t["compile_s"] is None for t in timing)
    print(
        "wall time {:.1f} s, of which compilation {}; peak memory (RSS) {}".format(
            wall_s,
            "in the first segments" if in_segments else f"{compile_total:.1f} s",
            format_bytes(peak_rss_bytes()),
        )
    )
