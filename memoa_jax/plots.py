"""Figures (the only module that imports matplotlib). Functions take NumPy arrays and return
a `Figure`; callers save it."""

import numpy as np


def _rolling_rms(se: np.ndarray, width: int) -> np.ndarray:
    kernel = np.ones(width) / width
    return np.sqrt(np.convolve(se, kernel, mode="valid"))


def plot_run(steps: dict[str, dict[str, np.ndarray]], *, title: str, credit: str = ""):
    """Per-step error of every method: average agent, worst agent at each step, server.

    Args:
        steps: method name -> {"mse", "worst_se", "server_se"} per-step arrays (seed means).
        title: figure title.
        credit: data attribution printed under the plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(next(iter(steps.values()))["mse"])
    width = max(1, n // 50)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, (name, st) in zip(colours, steps.items()):
        lw = 2.2 if name == "memoa" else 1.2
        t = np.arange(width - 1, n) + 1
        axes[0].plot(t, _rolling_rms(st["mse"], width), color=c, lw=lw, label=f"{name} (avg)")
        axes[0].plot(
            t, _rolling_rms(st["worst_se"], width), color=c, lw=lw, ls="--", label=f"{name} (worst)"
        )
        axes[1].plot(t, _rolling_rms(st["server_se"], width), color=c, lw=lw, label=name)
    axes[0].set_title("clients: average agent (solid) vs worst agent at each step (dashed)")
    axes[1].set_title("server mixture")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("step t (target y_{t+1})")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"RMSE, rolling over {width} step(s)")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    if credit:
        fig.text(0.01, 0.005, credit, fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def plot_tune(losses, history, *, title: str, objective: str, held: dict):
    """Training objective per step and each hyper-parameter's path; held-out marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(history[0])
    fig, axes = plt.subplots(1, 1 + len(names), figsize=(4.2 * (1 + len(names)), 3.6))
    steps = np.arange(len(losses))
    ax = axes[0]
    ax.plot(steps, losses, lw=1.8, label="training span")
    ax.axhline(held["default"], color="grey", ls="--", lw=1, label="held-out, default")
    ax.axhline(held["tuned"], color="C3", ls="--", lw=1, label="held-out, tuned")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(objective)
    ax.legend(fontsize=8)
    for ax, n in zip(axes[1:], names):
        ax.plot(steps, [h[n] for h in history], lw=1.5)
        ax.set_xlabel("optimiser step")
        ax.set_title(n)
        if n != "lam" and min(h[n] for h in history) > 0:
            ax.set_yscale("log")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
