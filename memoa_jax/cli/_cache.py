"""JAX's persistent compilation cache, where the CLI keeps it and how it turns it on."""

import sys
from pathlib import Path

from ._errors import cause


def compile_cache_dir() -> Path:
    """Where the CLI keeps JAX's persistent compilation cache: `$MEMOA_JAX_CACHE`, else
    `$XDG_CACHE_HOME/memoa-jax/jax`, else `~/.cache/memoa-jax/jax`."""
    import os

    if os.environ.get("MEMOA_JAX_CACHE"):
        return Path(os.environ["MEMOA_JAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "memoa-jax" / "jax"


def enable_compile_cache(args) -> None:
    """Turns on JAX's persistent compilation cache (unless `--no-compile-cache`), so that a
    second identical run reads its compiled programs from disk. Sets
    `args.compile_cache_dir` (None when off)."""
    import jax

    args.compile_cache_dir = None
    if getattr(args, "no_compile_cache", False):
        return
    folder = compile_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        import tempfile

        with tempfile.TemporaryFile(dir=folder):  # JAX would warn at every entry it writes
            pass
    except OSError as e:  # an unwritable home or cache: run without the cache, and say so once
        print(
            f"memoa: compilation cache off ({folder}: {cause(e)}; --no-compile-cache "
            "silences this)",
            file=sys.stderr,
        )
        return
    # (a flag the type stubs of jax.config do not list: read by name)
    if getattr(jax.config, "jax_compilation_cache_dir") != str(folder):
        jax.config.update("jax_compilation_cache_dir", str(folder))
        try:  # a cache already used in this process (tests) keeps its folder unless reset
            from jax._src import compilation_cache

            compilation_cache.reset_cache()
        except (ImportError, AttributeError):
            pass
    # every compilation is worth keeping: the loop's take seconds, but the threshold is 1 s
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    args.compile_cache_dir = str(folder)
