import jax
import jax.random as jr
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def getkey():
    """A fresh, never reused PRNG key per call (equinox's test idiom)."""
    keys = iter(jr.split(jr.key(5678), 1000))
    return lambda: next(keys)


@pytest.fixture(autouse=True, scope="session")
def _compile_cache(tmp_path_factory):
    """The CLI's persistent compilation cache goes to a temporary folder, not the home's."""
    import os

    old = os.environ.get("MEMOA_JAX_CACHE")
    os.environ["MEMOA_JAX_CACHE"] = str(tmp_path_factory.mktemp("jax-cache"))
    yield
    if old is None:
        del os.environ["MEMOA_JAX_CACHE"]
    else:
        os.environ["MEMOA_JAX_CACHE"] = old
