"""Stretches of a target that bend every method's error figures: a stuck sensor (the same value
for many rows, where every forecast's error falls to round-off) and isolated outliers (one
row far from both neighbours). Pure NumPy (the data layer never imports JAX)."""

import numpy as np


def constant_stretches(y: np.ndarray, min_rows: int = 12) -> list[tuple[int, int]]:
    """The stretches of rows `[start, stop)` (at least `min_rows` long) over which every
    column of `y` (shape `(n_rows, d)`) keeps exactly one value.

    Example:
        >>> constant_stretches(np.array([[1.0], [2.0], [2.0], [2.0], [3.0]]), min_rows=3)
        [(1, 4)]
    """
    y = np.asarray(y, dtype=np.float64)
    same = np.all(y[1:] == y[:-1], axis=1)  # row t + 1 repeats row t
    out, start = [], None
    for t, s in enumerate(np.append(same, False)):
        if s and start is None:
            start = t
        elif not s and start is not None:
            if t + 1 - start >= min_rows:
                out.append((start, t + 1))
            start = None
    return out


def outlier_rows(y: np.ndarray, factor: float = 20.0) -> list[int]:
    """Rows whose value jumps away from both neighbours by more than `factor` times the
    series' median absolute step (in some column), and back: a spike, not a level shift.

    Example:
        >>> outlier_rows(np.array([[0.0], [0.1], [0.2], [9.0], [0.3], [0.4]]))
        [3]
    """
    y = np.asarray(y, dtype=np.float64)
    if y.shape[0] < 3:
        return []
    step = np.abs(np.diff(y, axis=0))
    scale = np.median(step, axis=0)
    scale = np.where(scale > 0, scale, np.max(step, axis=0) / 1e3 + 1e-300)
    up, down = step[:-1] > factor * scale, step[1:] > factor * scale
    # away from the row before and from the row after, in opposite directions
    sign = np.sign(np.diff(y, axis=0))
    spike = up & down & (sign[:-1] == -sign[1:])
    return [int(t) + 1 for t in np.flatnonzero(np.any(spike, axis=1))]


def describe_stretches(y: np.ndarray, *, min_rows: int = 12, factor: float = 20.0) -> list[str]:
    """One line for the constant stretches and one for the outliers of `y`, when there are
    any: what the CLI prints before a run."""
    lines = []
    flat = constant_stretches(y, min_rows)
    if flat:
        longest = max(flat, key=lambda r: r[1] - r[0])
        more = f" and {len(flat) - 1} more" if len(flat) > 1 else ""
        lines.append(
            f"the target is constant over rows {longest[0]}-{longest[1] - 1} "
            f"({longest[1] - longest[0]} rows{more}): a stuck sensor? every forecast's error "
            "falls to round-off there"
        )
    spikes = outlier_rows(y, factor)
    if spikes:
        shown = ", ".join(str(t) for t in spikes[:5]) + (", ..." if len(spikes) > 5 else "")
        lines.append(
            f"the target has {len(spikes)} outlier row(s) (a spike of more than {factor:g}× the "
            f"median step, and back): {shown}"
        )
    return lines
