"""Compiled simulations kept on disk, beside JAX's persistent compilation cache.

JAX keys its cache by the lowered program, so a second identical `memoa run` still traces
the Python loop and lowers it before it finds the executable: seconds, most of what that
run spent compiling. `memoa run` therefore also keeps each compiled simulation itself
(`jax.experimental.serialize_executable`), under a key computed without tracing: the
simulation's static fields (pickled), the data's shapes and dtypes, the device mesh, the
runtime-check mode, the memoa_jax source files, the versions of Python, JAX, jaxlib,
equinox and NumPy, every `jax.config` flag, the `XLA_*`/`JAX_*`/`EQX_*`/`LIBTPU_*`
environment, and the devices (and, on CPU, the processor's features). A program with host
callbacks is never kept (the loop has none: its checks come back in the result), nor one
that JAX read from its own cache (`_compile`); anything unreadable or mismatched is ignored
and compiled again. The entries (about 1 MB each, zlib) live in `<cache>/memoa-programs/`:
delete the folder to start afresh; `--no-compile-cache` neither reads nor writes them.
"""

import contextlib
import hashlib
import importlib.metadata
import os
import pickle
import platform
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

FOLDER = "memoa-programs"
_FORMAT = 1  # bump when the entry layout changes
_ENV_PREFIXES = ("XLA_", "JAX_", "EQX_", "LIBTPU_", "TPU_")


class Program(NamedTuple):
    """A compiled simulation: `run(sim, x, y, key)` returns its `SimResult`."""

    run: Callable[..., Any]
    trace_s: float  # tracing and lowering (0 when read from disk)
    from_disk: bool
    write_s: float  # writing it to disk (not compilation)


def _leaves(sim, x, y, key) -> list:
    """The arrays among the arguments: the program's inputs (its flat list)."""
    import equinox as eqx
    import jax

    return jax.tree.leaves(eqx.filter((sim, x, y, key), eqx.is_array))


def _wrap(compiled, skeleton) -> Callable[..., Any]:
    """`run(sim, x, y, key)`: the outputs put back in their places (`skeleton`: the
    `SimResult` with each array's index in the program's flat outputs)."""
    import jax

    def run(sim, x, y, key):
        outs = compiled(_leaves(sim, x, y, key))
        return jax.tree.map(lambda i: outs[i], skeleton)

    return run


def compile_simulation(
    sim, x, y, *, mesh, folder: str | None, checks: str | None, lower: Callable
) -> Program:
    """`mj.simulate(sim, x, y, key=..., mesh=mesh)` compiled once for every key. `folder`:
    the compilation cache (None: off), where the executable is read from or written to;
    give it only for a program without host callbacks. `checks`: the runtime-check mode
    that `lower(fn, *args)` compiles (it lowers `jax.jit(fn)` for `args`).

    The program takes and returns flat lists of arrays, so that what is kept on disk holds
    no tree of equinox modules (whose tree definitions do not survive pickling)."""
    import time

    import equinox as eqx
    import jax

    import memoa_jax as mj

    dynamic, static = eqx.partition((sim, x, y, jax.random.key(0)), eqx.is_array)
    leaves, in_def = jax.tree.flatten(dynamic)
    path = None
    if folder is not None and jax.process_count() == 1:
        try:
            path = Path(folder) / FOLDER / f"{_key(static, in_def, leaves, mesh, checks)}.pkl"
        except Exception:  # an unpicklable static field: compile as usual
            path = None
        if path is not None:
            loaded = _load(path)
            if loaded is not None:
                return Program(_wrap(*loaded), 0.0, True, 0.0)

    out: dict[str, Any] = {}

    def body(leaves):
        sim, x, y, key = eqx.combine(jax.tree.unflatten(in_def, leaves), static)
        # (throw=False: no host callback; the caller raises the result's status)
        res = mj.simulate(sim, x, y, key=key, mesh=mesh, throw=False)
        outs, out_def = jax.tree.flatten(res)
        out["skeleton"] = jax.tree.unflatten(out_def, list(range(len(outs))))
        return outs

    t0 = time.perf_counter()
    lowered = lower(body, leaves)
    trace_s = time.perf_counter() - t0
    compiled, fresh = _compile(lowered)
    t0 = time.perf_counter()
    if path is not None and fresh:
        _save(path, compiled, out["skeleton"])
    return Program(_wrap(compiled, out["skeleton"]), trace_s, False, time.perf_counter() - t0)


def _compile(lowered):
    """`lowered.compile()`, and whether XLA compiled it here and now. An executable that JAX
    read from its own cache is never kept: XLA:CPU serializes such an executable without
    its kernels (jaxlib 0.10.2: running it again after a second round trip fails with
    "Function ... not found"). JAX says it compiled afresh by writing the program to its
    cache (`cache_misses`; every program is written, see `enable_compile_cache`)."""
    import jax.monitoring

    seen: set[str] = set()

    def listen(event: str, **_) -> None:
        seen.add(event)

    jax.monitoring.register_event_listener(listen)
    try:
        compiled = lowered.compile()
    finally:
        jax.monitoring.unregister_event_listener(listen)
    hit, written = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"
    return compiled, written in seen and hit not in seen


_SOURCE: list[str] = []


def _source_hash() -> str:
    """The memoa_jax package's Python files (once per process)."""
    if not _SOURCE:
        import memoa_jax

        h = hashlib.sha256()
        root = Path(memoa_jax.__file__).parent
        for p in sorted(root.rglob("*.py")):
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
        _SOURCE.append(h.hexdigest())
    return _SOURCE[0]


def _cpu_features() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features", "model name")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _key(static, in_def, leaves, mesh, checks) -> str:
    """What determines the compiled program, hashed (see the module's docstring)."""
    import jax

    import memoa_jax

    h = hashlib.sha256()

    def add(tag: str, value) -> None:
        data = value if isinstance(value, bytes) else repr(value).encode()
        h.update(tag.encode() + b"\0" + data + b"\0")

    add("format", _FORMAT)
    add("static", pickle.dumps(static, protocol=4))
    add("tree", str(in_def))
    add("avals", [(str(jax.typeof(a)), str(getattr(a, "sharding", None))) for a in leaves])
    add("mesh", None if mesh is None else (repr(mesh), [d.id for d in mesh.devices.flat]))
    add("checks", checks)
    add("source", _source_hash())
    versions: list[str | None] = [sys.version, memoa_jax.__version__]
    for dist in ("jax", "jaxlib", "equinox", "numpy"):
        try:
            versions.append(importlib.metadata.version(dist))
        except importlib.metadata.PackageNotFoundError:
            versions.append(None)
    add("versions", versions)
    add("config", sorted((k, repr(v)) for k, v in jax.config.values.items()))
    add("env", sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)))
    devices = jax.devices()
    add("backend", (devices[0].client.platform, devices[0].client.platform_version))
    add("devices", [(d.platform, d.device_kind, d.id, d.process_index) for d in devices])
    add("processes", (jax.process_count(), jax.process_index()))
    if devices[0].platform == "cpu":
        add("cpu", (platform.machine(), _cpu_features()))
    return h.hexdigest()


def _custom_calls(compiled) -> list[str] | None:
    """The custom calls of the compiled program, or None when one of them needs what this
    module cannot provide in a process that has not lowered it (a host callback, a
    handler registered while lowering)."""
    import re

    targets = sorted(set(re.findall(r'custom_call_target="([^"]+)"', compiled.as_text())))
    # XLA's own ("__cublas$gemm", "__onednn$matmul"), and jaxlib's LAPACK kernels on CPU,
    # whose function pointers `_prepare` fills (JAX does that while lowering)
    if all(t.startswith(("__", "lapack_")) for t in targets):
        return targets
    return None


def _prepare(custom_calls: list[str]) -> bool:
    """What lowering would have done before the program runs: on CPU, jaxlib's LAPACK
    kernels are bound to SciPy's LAPACK when JAX first lowers a linear-algebra call; an
    executable read from disk would call null pointers. False: cannot (do not load)."""
    if any(t.startswith("lapack_") for t in custom_calls):
        try:
            from jax._src.lax import linalg

            linalg.initialize_lapack()
        except Exception:  # another JAX: compile as usual
            return False
    return True


def _load(path: Path):
    """(compiled, skeleton) from `path`, or None (absent, unreadable, another format)."""
    from jax.experimental import serialize_executable

    try:
        entry = pickle.loads(zlib.decompress(path.read_bytes()))
        if entry.get("format") != _FORMAT or not _prepare(entry["custom_calls"]):
            return None
        compiled = serialize_executable.deserialize_and_load(
            entry["executable"], entry["in_tree"], entry["out_tree"]
        )
        return compiled, entry["skeleton"]
    except Exception:  # a missing, partial or stale entry: compile as usual
        return None


def _save(path: Path, compiled, skeleton) -> None:
    """Writes the entry atomically; a program that cannot be kept is simply not kept."""
    from jax.experimental import serialize_executable

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        custom_calls = _custom_calls(compiled)
        if custom_calls is None or not _prepare(custom_calls):
            return
        executable, in_tree, out_tree = serialize_executable.serialize(compiled)
        entry = dict(
            format=_FORMAT,
            executable=executable,
            in_tree=in_tree,
            out_tree=out_tree,
            skeleton=skeleton,
            custom_calls=custom_calls,
        )
        data = zlib.compress(pickle.dumps(entry, protocol=4), 1)  # 8 MB to 1 MB, in 0.05 s
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except Exception:  # a closed-over constant, a read-only or full disk: not kept
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


@contextlib.contextmanager
def runtime_checks(mode):
    """Compile equinox's runtime checks (`eqx.error_if`: "R̃ singular at step s", ...) as
    `mode` ("nan"; None: as configured, "raise" by default).

    In "raise" mode a check is a host callback, and JAX never writes a program with host
    callbacks to its persistent compilation cache. With the cache on, `memoa run` compiles
    the checks as "nan" (a failed check turns the result into NaN) and, only when a result
    is not finite, compiles that simulation again in "raise" mode to report the check's own
    message. Under `--distributed` (`memoa run`, `memoa sweep`) they always compile as
    "nan": a check that raises stops one process inside the program, and the others wait
    for it at the next collective. equinox reads the mode when tracing, from
    `equinox._errors.EQX_ON_ERROR`.
    """
    import importlib

    try:  # (a private module: imported by name, its attribute read as any other)
        errors = importlib.import_module("equinox._errors")
        old = errors.EQX_ON_ERROR
    except (ImportError, AttributeError):  # another equinox: checks as configured
        yield
        return
    if mode is None:
        yield
        return
    import jax

    # JAX caches traces by shapes, not by equinox's mode: clear them on both sides, so that
    # no trace of the other mode is reused (here, or by a later `simulate` in this process)
    jax.clear_caches()
    setattr(errors, "EQX_ON_ERROR", mode)  # noqa: B010 (a module's setting, by name)
    try:
        yield
    finally:
        setattr(errors, "EQX_ON_ERROR", old)  # noqa: B010
        jax.clear_caches()
