"""Figures of `memoa verify` (matplotlib; not imported by the core). Each function takes the
JSON record the command writes and returns a `Figure`."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_SERIES = [
    ("gain_gap", "max gain gap ‖(Kᴺ, Lᴺ, hᴺ) − (K, L, g)‖∞", "C0"),
    ("eps", "ε_N (best deviation of one agent)", "C1"),
    ("cost_gap", "|J¹(MF) − J¹(FNE)|", "C2"),
]


def _fit_line(ax, s, color):
    if s is None:
        return ""
    x = np.geomspace(s["n_min"], s["n_max"], 50)
    ax.plot(x, 10 ** s["intercept"] * x ** s["slope"], "-", color=color, lw=1, alpha=0.8)
    return f"  slope {s['slope']:+.3f} ± {s['se']:.3f}"


def plot_convergence(rec: dict):
    """Exact gaps vs N with fitted slopes and an O(1/N) guide; Monte Carlo checks beside."""
    mc = rec["monte_carlo"]
    ncols = 3 if mc else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.2 * ncols, 4.6), constrained_layout=True)
    axes = np.atleast_1d(axes)
    ax = axes[0]
    n = np.array([r["n_agents"] for r in rec["rows"]], float)
    for key, label, color in _SERIES:
        v = np.abs(np.array([r[key] for r in rec["rows"]], float))
        keep = v > (rec["cost_gap_floor"] if key == "cost_gap" else 0.0)
        lab = label + _fit_line(ax, rec["slopes"].get(key), color)
        ax.plot(n[keep], v[keep], "o", ms=3.5, color=color, label=lab)
        if key == "cost_gap" and (~keep).any():
            ax.plot(
                n[~keep],
                np.full((~keep).sum(), rec["cost_gap_floor"]),
                "v",
                ms=3,
                color=color,
                alpha=0.5,
                label="cost gap below float64 resolution",
            )
    g = np.array([r["gain_gap"] for r in rec["rows"]])
    guide = 3 * g[0] * n[0] / n
    ax.plot(n, guide, "k--", lw=1, alpha=0.6, label="O(1/N) guide (×3)")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="agents N",
        ylabel="gap between the two policies (absolute)",
        title="exact gaps: mean-field vs N-player Nash",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="lower left")
    if mc:
        m = np.array([r["n_agents"] for r in mc], float)
        ax = axes[1]
        for key, label, color, shift in [
            ("ybar_gap_mf", "MF policy", "C0", 0.97),
            ("ybar_gap_fne", "N-player Nash policy", "C3", 1.03),
        ]:
            mean = np.array([r[key]["mean"] for r in mc])
            lo = mean - np.array([r[key]["ci95"][0] for r in mc])
            hi = np.array([r[key]["ci95"][1] for r in mc]) - mean
            ax.errorbar(
                m * shift,
                mean,
                yerr=[lo, hi],
                fmt="o",
                ms=4,
                capsize=3,
                color=color,
                label=f"{label}: E maxₛ ‖ȳₛ − mₛ‖∞ (95% CI)",
            )
        s = rec["slopes"].get("mc_ybar_gap_mf")
        if s:
            ax.plot([], [], " ", label=f"MF fitted slope {s['slope']:+.3f} ± {s['se']:.3f}")
        first = mc[0]["ybar_gap_mf"]["mean"]
        ax.plot(m, first * np.sqrt(m[0] / m), "k--", lw=1, alpha=0.6, label="O(1/√N) guide")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="agents N",
            ylabel="E maxₛ ‖ȳₛ − mₛ‖∞ (empirical mean − flow)",
            title=f"Monte Carlo: empirical mean vs flow ({mc[0]['reps']} reps)",
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5)
        ax = axes[2]
        for key, exact, label, color, shift in [
            ("cost_mf", "J_mf", "MF policy", "C0", 0.95),
            ("cost_fne", "J_fne", "N-player Nash", "C3", 1.0),
        ]:
            ex = np.array([r[exact] for r in mc])
            mean = np.array([r[key]["mean"] for r in mc]) - ex
            half = np.array([r[key]["ci95"][1] - r[key]["mean"] for r in mc])
            ax.errorbar(
                m * shift,
                mean / half,
                yerr=1.0,
                fmt="o",
                ms=4,
                capsize=3,
                color=color,
                label=f"{label}: (realized − exact J¹) / CI half-width",
            )
        diff = np.array([r["cost_diff"]["mean"] - (r["J_mf"] - r["J_fne"]) for r in mc])
        half = np.array([r["cost_diff"]["ci95"][1] - r["cost_diff"]["mean"] for r in mc])
        ax.errorbar(
            m * 1.05,
            diff / half,
            yerr=1.0,
            fmt="s",
            ms=4,
            capsize=3,
            color="C2",
            label="paired MF − Nash cost difference, same draws",
        )
        ax.axhspan(-1, 1, color="0.9", zorder=0)
        ax.axhline(0, color="k", lw=0.8)
        ax.set(
            xscale="log",
            xlabel="agents N",
            ylabel="in units of the 95% CI half-width",
            title="Monte Carlo: realized costs vs exact expectations",
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5)
    c = rec["cost"]
    fig.suptitle(
        f"memoa verify: {rec['instance']} instance, T={rec['window']}, d={rec['d']}, p={rec['p']}, "
        f"q={c['q']}, λ={c['lam']}, γ={c['gamma']}, α={c['alpha']}, q_T={rec['q_T']}, "
        f"λ_T={rec['lam_T']}; MF with {rec['mean_field']} ȳ",
        fontsize=10,
    )
    return fig


def plot_cost(rec: dict):
    """Solve time vs N: the dense N-player Nash recursion against the mean-field solve."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6), constrained_layout=True)
    n = np.array([r["n_agents"] for r in rec["rows"]], float)
    red = np.array([r["reduced_s"] for r in rec["rows"]])
    tm = rec["timing"]
    if rec["dense"]:
        dn = np.array([r["n_agents"] for r in rec["dense"]], float)
        dt = np.array([r["run_s"] for r in rec["dense"]])
        ax.plot(dn, dt, "o-", color="C3", ms=4, label="dense N-player Nash (stacked Nd × Nd)")
        x = np.geomspace(dn[-1], max(n.max(), 1e9), 50)
        ax.plot(x, dt[-1] * (x / dn[-1]) ** 4, ":", color="C3", lw=1, label="O(N⁴) extrapolation")
    ax.plot(n, red, "s-", color="C1", ms=3, label="reduced N-player Nash (5 blocks, exact)")
    ax.axhline(
        tm["mf_solve_s"],
        color="C0",
        lw=1.5,
        label=f"mean-field solve ({tm['mf_solve_s'] * 1e3:.2g} ms, any N)",
    )
    ax.plot(
        [1e9],
        [tm["reduced_solve_1e9_s"]],
        "*",
        color="C1",
        ms=10,
        label=f"reduced at N = 10⁹: {tm['reduced_solve_1e9_s'] * 1e3:.2g} ms",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="agents N",
        ylabel="solve time of one window [s]",
        title="cost of the Nash policy vs the mean-field policy",
        xlim=(1, 2e9),
    )
    top = max(ax.get_ylim()[1], 1.0)
    ax.set_ylim(top=min(top, 1e6))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
