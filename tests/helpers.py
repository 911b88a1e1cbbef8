import jax
import numpy as np


def tree_allclose(x, y, *, rtol=1e-10, atol=1e-12):
    leaves_x, tree_x = jax.tree.flatten(x)
    leaves_y, tree_y = jax.tree.flatten(y)
    if tree_x != tree_y:
        return False
    return all(np.allclose(a, b, rtol=rtol, atol=atol) for a, b in zip(leaves_x, leaves_y))


STEP_STATS = ("mse", "worst_se", "server_se", "mean_field_se", "agent_pred")


def assert_same_result(a, b, *, rtol: float, atol: float):
    """Two `SimResult`s agree on every summary field and every per-step statistic."""
    for name in a.names:
        for key, x in a.summary[name]._asdict().items():
            np.testing.assert_allclose(
                x, b.summary[name]._asdict()[key], rtol=rtol, atol=atol, err_msg=f"{name} {key}"
            )
        for key in STEP_STATS:
            np.testing.assert_allclose(
                getattr(a.steps[name], key),
                getattr(b.steps[name], key),
                rtol=rtol,
                atol=atol,
                err_msg=f"{name} {key}",
            )


def assert_same_bits(a, b) -> None:
    """Every leaf of two pytrees equal bit for bit (NaN where NaN), naming the first that
    differs by its path."""
    la, lb = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)
    assert len(la) == len(lb)
    for (path, u), v in zip(la, lb):
        assert np.array_equal(u, v, equal_nan=True), jax.tree_util.keystr(path)
