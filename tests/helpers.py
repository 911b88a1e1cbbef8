import jax
import numpy as np


def tree_allclose(x, y, *, rtol=1e-10, atol=1e-12):
    leaves_x, tree_x = jax.tree.flatten(x)
    leaves_y, tree_y = jax.tree.flatten(y)
    if tree_x != tree_y:
        return False
    return all(np.allclose(a, b, rtol=rtol, atol=atol) for a, b in zip(leaves_x, leaves_y))
