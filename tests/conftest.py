import jax
import jax.random as jr
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def getkey():
    """A fresh, never reused PRNG key per call (equinox's test idiom)."""
    keys = iter(jr.split(jr.key(5678), 1000))
    return lambda: next(keys)
