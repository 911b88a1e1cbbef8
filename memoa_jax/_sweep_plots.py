"""Figures of `memoa sweep` and `memoa bench` (matplotlib; not imported by the core)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _number(v) -> float:
    """A value of a sweep record as a float: NaN for a null (a diverged method's RMSE)."""
    return float("nan") if v is None else float(v)


def _by_size(records, value):
    """Mean and std over seeds of `value(record)` for each N, over the finite positive
    values only (a log axis shows nothing else); sizes without one are left out."""
    sizes = sorted({r["n_agents"] for r in records})
    n_out, mean, std = [], [], []
    for n in sizes:
        v = np.array([_number(value(r)) for r in records if r["n_agents"] == n])
        v = v[np.isfinite(v) & (v > 0)]
        if v.size:
            n_out.append(n)
            mean.append(v.mean())
            std.append(v.std())
    return np.array(n_out), np.array(mean), np.array(std)


def _per_agent(record, field):
    """`record[field]` (bytes) per agent, or None where it was not measured."""
    v = record.get(field)
    return None if v is None else v / record["n_agents"]


def _diverged_at(records, m, field):
    """The smallest N at which method `m`'s `field` is not finite (null), or None."""
    bad = [
        r["n_agents"]
        for r in records
        if not np.isfinite(_number(r["summary"].get(m, {}).get(field)))
    ]
    return min(bad) if bad else None


def plot_sweep(records, *, title: str) -> dict:
    """`{"metrics": fig, "throughput": fig}` from the JSON lines of a sweep. A diverged
    method's non-finite (null) values are left out, and its legend says from which N."""
    methods = list(records[0]["summary"])
    fig_m, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    for ax, (field, label) in zip(
        axes,
        [
            ("worst_rmse", "worst-agent RMSE"),
            ("avg_rmse", "average RMSE"),
            ("server_rmse", "server RMSE"),
        ],
    ):
        for m in methods:
            n, mean, std = _by_size(records, lambda r: r["summary"].get(m, {}).get(field))
            bad = _diverged_at(records, m, field)
            name = m if bad is None else f"{m} (diverged at N={bad:,})"
            if n.size:
                ax.errorbar(n, mean, yerr=std, marker="o", ms=4, capsize=2, label=name)
            else:
                ax.plot([], [], marker="x", ls="none", label=name)
        ax.set(xscale="log", yscale="log", xlabel="agents N", title=label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig_m.suptitle(f"memoa sweep: metrics vs population size ({title})")

    fig_t, (ax, ax_mem) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    n, mean, std = _by_size(records, lambda r: r["agent_steps_per_s"])
    ax.errorbar(n, mean, yerr=std, marker="o", label="full online loop: " + ", ".join(methods))
    ax.set(xscale="log", yscale="log", xlabel="agents N", ylabel="agent-steps / s")
    ax.set_title("throughput", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    # memory per agent: the process's peak (a running maximum, so read at the largest N so
    # far) and the compiled loop's own buffers (XLA's arguments, outputs and temporaries)
    for field, label in (
        ("peak_rss_bytes", "peak RSS of the process"),
        ("xla_bytes", "XLA buffers of the loop"),
    ):
        n, mean, _ = _by_size(records, lambda r: _per_agent(r, field))
        if n.size:
            ax_mem.plot(n, mean, marker="o", label=label)
    ax_mem.set(xscale="log", yscale="log", xlabel="agents N", ylabel="bytes per agent")
    ax_mem.set_title("memory per agent", fontsize=10)
    ax_mem.grid(True, which="both", alpha=0.3)
    if ax_mem.lines:
        ax_mem.legend(fontsize=8)
    fig_t.suptitle(f"memoa sweep ({title}; {records[-1]['device']})", fontsize=10)
    return {"metrics": fig_m, "throughput": fig_t}


def plot_bench(record: dict):
    """Throughput vs N (loop and policy step; JAX, NumPy, Python) with the roofline, and the
    fraction of the roofline reached."""
    bw = record["copy"]["bytes_per_s"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), constrained_layout=True)
    series = [
        ("loop", "agent_steps_per_s", "full loop, JAX", "C0", "-o"),
        ("loop", "numpy_agent_steps_per_s", "full loop, NumPy", "C0", "--s"),
        ("policy", "agent_steps_per_s", "policy step, JAX", "C1", "-o"),
        ("policy", "numpy_agent_steps_per_s", "policy step, NumPy", "C1", "--s"),
        ("policy", "python_agent_steps_per_s", "policy step, Python loop", "C1", ":^"),
    ]
    for part, key, label, color, style in series:
        pts = [(p["n_agents"], p[part][key]) for p in record["points"] if key in p.get(part, {})]
        if pts:
            ax.plot(*zip(*pts), style, color=color, label=label, ms=4)
    for part, key, label, color in [
        ("policy", "bytes_per_agent", "policy roofline", "C1"),
        ("loop", "carry_bytes_per_agent_step", "loop roofline (carry)", "C0"),
    ]:
        pts = [p for p in record["points"] if part in p]
        if pts:
            ax.axhline(bw / pts[0][part][key], color=color, lw=0.8, alpha=0.6, label=label)
    ax.set(xscale="log", yscale="log", xlabel="agents N", ylabel="agent-steps / s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    for part, label, color in [("policy", "policy step", "C1"), ("loop", "full loop", "C0")]:
        pts = [(p["n_agents"], p[part]["roofline_fraction"]) for p in record["points"] if part in p]
        if pts:
            ax2.plot(*zip(*pts), "-o", color=color, label=label, ms=4)
    ax2.axhline(0.5, color="k", lw=0.8, ls=":", label="50%")
    ax2.set(
        xscale="log",
        xlabel="agents N",
        ylabel="fraction of copy-bandwidth roofline",
        ylim=(0, 1.05),
    )
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(
        f"memoa bench: {record['device_kind'] or record['platform']}, {record['dtype']}, "
        f"copy bandwidth {bw / 1e9:.1f} GB/s, {record['steps']} steps",
        fontsize=10,
    )
    return fig
