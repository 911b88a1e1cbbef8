"""Figures (the only module that imports matplotlib). Functions take NumPy arrays and return
a `Figure`; callers save it."""

import numpy as np


def _rolling_rms(se: np.ndarray, width: int) -> np.ndarray:
    kernel = np.ones(width) / width
    return np.sqrt(np.convolve(se, kernel, mode="valid"))


def diverged_at(se: np.ndarray, limit: float) -> int | None:
    """The first step whose RMSE `sqrt(se)` is not finite or exceeds `limit`, or None."""
    with np.errstate(all="ignore"):
        bad = ~(np.sqrt(np.asarray(se, dtype=float)) <= limit)
    return int(np.argmax(bad)) if bad.any() else None


def plot_run(
    steps: dict[str, dict[str, np.ndarray]],
    *,
    title: str,
    credit: str = "",
    limit: float = np.inf,
    persistence: np.ndarray | None = None,
    decades: float = 3.0,
):
    """Per-step error of every method: average agent, worst agent at each step, server.

    A method whose per-step RMSE exceeds `limit` (or is not finite) is diverged: its curves
    are drawn clipped at the top of the axes, which the other methods set, and labelled
    "diverged at step t", so that one overflowing method cannot flatten the others.

    Args:
        steps: method name -> {"mse", "worst_se", "server_se"} per-step arrays (seed means),
            in the order to draw them.
        title: figure title.
        credit: data attribution printed under the plot.
        limit: the RMSE above which a method counts as diverged (e.g. 10⁶ × the lag-1
            persistence RMSE, `memoa_jax.DIVERGED_FACTOR`).
        persistence: the lag-1 persistence forecast's squared error per step (`(y_{t+1} −
            y_t)²`), drawn as a grey line in both panels: the yardstick a forecast must beat.
        decades: the axes span at most this many decades below the curves' median and one
            above their largest value (a stuck sensor's near-zero errors would otherwise
            stretch a log axis over 16 decades); values below are drawn at the bottom edge,
            and the panel says how many were clipped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(next(iter(steps.values()))["mse"])
    width = max(1, n // 50)
    t = np.arange(width - 1, n)  # the step t whose window of `width` steps ends there
    panels = (("mse", 0, "-"), ("worst_se", 0, "--"), ("server_se", 1, "-"))
    with np.errstate(all="ignore"):
        curves = {
            name: {k: _rolling_rms(np.asarray(st[k], dtype=float), width) for k, _, _ in panels}
            for name, st in steps.items()
        }
    diverged = {}
    for name, st in steps.items():
        at = [diverged_at(st[k], limit) for k, _, _ in panels]
        at = [a for a in at if a is not None]
        diverged[name] = min(at) if at else None
    # the axes are set by the methods that did not diverge (all of them if every one did)
    sane = [n for n, a in diverged.items() if a is None] or list(steps)
    base = None
    if persistence is not None:
        with np.errstate(all="ignore"):
            base = _rolling_rms(np.asarray(persistence, dtype=float), width)
    ranges = []
    for ax_index in (0, 1):
        parts = [curves[n][k] for n in sane for k, i, _ in panels if i == ax_index]
        vals = np.concatenate(parts + ([] if base is None else [base]))
        vals = vals[np.isfinite(vals) & (vals > 0) & (vals <= limit)]
        lo, hi = (vals.min(), vals.max()) if vals.size else (1e-3, 1.0)
        if vals.size:  # robust: a few decades under the median, never the tiniest outlier
            lo = max(lo, float(np.median(vals)) * 10.0**-decades)
        ranges.append((lo / 1.5, hi * 3.0))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if base is not None:
        for ax in axes:
            ax.plot(t, base, color="0.55", lw=1.4, label="persistence (lag 1)", zorder=1)
    for j, (name, cv) in enumerate(curves.items()):
        c = colours[j % len(colours)]
        lw = 2.2 if name == "memoa" else 1.2
        at = diverged[name]
        for k, i, ls in panels:
            top = ranges[i][1]
            y = cv[k]
            if at is not None:  # clipped at the top of the axes: inf and NaN drawn at the top
                y = np.where(np.isfinite(y), np.minimum(y, top), top)
            label = {"mse": f"{name} (avg)", "worst_se": f"{name} (worst)"}.get(k, name)
            if at is not None and k != "worst_se":
                label = f"{name}: diverged at step {at} (clipped)"
            axes[i].plot(t, y, color=c, lw=lw, ls=ls, label=label)
            if at is not None and k in ("mse", "server_se"):
                axes[i].plot([max(at, t[0])], [top], "x", color=c, ms=7, mew=2)
                axes[i].text(
                    0.01,
                    0.02 + 0.06 * len([n for n in list(curves)[:j] if diverged[n] is not None]),
                    f"{name} diverged at step {at} (drawn clipped at the top)",
                    transform=axes[i].transAxes,
                    fontsize=7.5,
                    color=c,
                )
    axes[0].set_title("clients: average agent (solid) vs worst agent at each step (dashed)")
    axes[1].set_title("server mixture")
    for ax, (lo, hi) in zip(axes, ranges):
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        clipped = 0
        for line in ax.get_lines():  # draw what lies below the axis at its bottom edge
            yd = np.asarray(line.get_ydata(), dtype=float)
            low = np.isfinite(yd) & (yd < lo)
            if low.any():
                clipped += int(low.sum())
                line.set_ydata(np.where(low, lo, yd))
        if clipped:
            ax.text(
                0.99,
                0.02,
                f"{clipped} value(s) below {lo:.1e} drawn at the bottom edge",
                transform=ax.transAxes,
                ha="right",
                fontsize=7.5,
                color="0.35",
            )
        ax.set_xlabel("step t (target yₜ₊₁)")
        ax.set_ylabel(f"RMSE, rolling over {width} step(s)")
        ax.grid(alpha=0.3, which="both")
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
    # a non-finite value (a diverged step) is left out, and the legend says so
    finite = lambda v: np.where(np.isfinite(np.asarray(v, float)), np.asarray(v, float), np.nan)
    ax.plot(steps, finite(losses), lw=1.8, label="training span")
    for key, color in (("default", "grey"), ("tuned", "C3")):
        value = held[key]
        if value is not None and np.isfinite(value):
            ax.axhline(value, color=color, ls="--", lw=1, label=f"held-out, {key}")
        else:
            ax.plot([], [], color=color, ls="--", lw=1, label=f"held-out, {key}: diverged")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(objective)
    ax.legend(fontsize=8)
    for ax, n in zip(axes[1:], names):
        path = finite([h[n] for h in history])
        ax.plot(steps, path, lw=1.5)
        ax.set_xlabel("optimiser step")
        ax.set_title(n)
        if n != "lam" and np.isfinite(path).any() and np.nanmin(path) > 0:
            ax.set_yscale("log")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
