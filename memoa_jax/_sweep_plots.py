"""Figures of `memoa sweep` and `memoa bench` (matplotlib; not imported by the core)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _by_size(records, value):
    """Mean and std over seeds of `value(record)` for each N."""
    sizes = sorted({r["n_agents"] for r in records})
    vals = [[value(r) for r in records if r["n_agents"] == n] for n in sizes]
    return (
        np.array(sizes),
        np.array([np.mean(v) for v in vals]),
        np.array([np.std(v) for v in vals]),
    )


def plot_sweep(records, *, title: str) -> dict:
    """`{"metrics": fig, "throughput": fig}` from the JSON lines of a sweep."""
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
            n, mean, std = _by_size(records, lambda r: r["summary"][m][field])
            ax.errorbar(n, mean, yerr=std, marker="o", ms=4, capsize=2, label=m)
        ax.set(xscale="log", yscale="log", xlabel="agents N", title=label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig_m.suptitle(f"memoa sweep: metrics vs population size ({title})")

    fig_t, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    n, mean, std = _by_size(records, lambda r: r["agent_steps_per_s"])
    ax.errorbar(n, mean, yerr=std, marker="o", label="full online loop, all methods")
    ax.set(xscale="log", yscale="log", xlabel="agents N", ylabel="agent-steps / s")
    device = records[-1]["device"]
    ax.set_title(f"memoa sweep: throughput ({title}; {device})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return {"metrics": fig_m, "throughput": fig_t}
