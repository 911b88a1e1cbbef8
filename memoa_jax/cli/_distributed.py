"""Many processes (`--distributed`): start-up, agreement at the start, process 0's decisions.

Every process of a `--distributed` command runs the same compiled program on its share of
the agents, and XLA's collectives wait for every process at every reduction. A process that
takes another path (other options or data, another to-do list, an error the others did not
have) leaves the others waiting until gloo's deadline. So:

* `start(args)` initialises `jax.distributed` before anything else is read or checked;
* `agree(args, prepare, data)` runs the command's checks and set-up on every process,
  then exchanges a digest of the options, the data and the versions (and any error the
  set-up raised): a difference, or an error on any process, is reported by every process
  as the same one line, exit 2 (1 for a `Failure`), before anything ran;
* `on_process_0(args, fn)`: only process 0 reads and writes outputs and decides (what a
  resumed sweep still has to run); its result, or its error, reaches every process.

One process (no `--distributed`): each is the plain call. The exchanges are all-gathers of
a few bytes (`jax.experimental.multihost_utils.process_allgather`).
"""

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from .._multihost import allgather_bytes
from ._build import data_fingerprint
from ._errors import Failure, UsageError
from ._options import check_device_options

T = TypeVar("T")

# per-process settings, allowed to differ: where this process is, where it would write,
# how it reports; a path to data is compared by the data's content (`data_fingerprint`)
LOCAL = {"process_id", "coordinator", "out", "no_progress", "debug", "argv", "func"}
LOCAL |= {"data_dir", "csv", "params", "sweep_config", "size_option"}
# the compilation cache: the same program either way
LOCAL |= {"compile_cache_dir", "no_compile_cache"}
# `memoa run --resume`: each process its own checkpoint folder (its own shards)
LOCAL |= {"resume"}
SHOWN = 60  # characters of a value shown in a message


def start(args) -> None:
    """`jax.distributed.initialize` for `--distributed` (once per process; the options the
    user gave: the coordinator's host:port, the number of processes, this one's index)."""
    import jax

    check_device_options(args)
    if not getattr(args, "distributed", False) or jax.distributed.is_initialized():
        return
    given = dict(
        coordinator_address=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
    )
    try:
        jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None})
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"--distributed: {e}") from None


def agent_mesh(args):
    """The device mesh for `simulate(..., mesh=)` over every process's devices, or None for
    one device (without `--shard` or `--distributed`). Call `start` first."""
    import jax

    if not (args.shard or args.distributed):
        return None
    return jax.make_mesh((jax.device_count(),), ("agents",))


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: " + (str(e).strip().split("\n") or [""])[0][:200]


def _error(record) -> Exception:
    kind, text = record
    return Failure(text) if kind == "Failure" else UsageError(text)


def _versions() -> dict[str, str]:
    import importlib.metadata
    import sys

    items = {"memoa_jax's source files": source_hash(), "Python": sys.version}
    for dist in ("jax", "jaxlib", "equinox", "numpy"):
        try:
            items[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            items[dist] = "none"
    return items


def digest_items(args, data) -> dict[str, str]:
    """What every process must share, by name, in a fixed order: the versions, the command
    and its options (but the per-process ones, `LOCAL`), the data's fingerprint (the values
    actually used), and the runtime-check mode."""
    import os

    items = _versions()
    items["the command"] = str(getattr(args, "command", None))
    for k, v in vars(args).items():
        if k not in LOCAL and not callable(v):
            items[f"--{k.replace('_', '-')}"] = repr(v)
    items["the data (SHA-256 of x and y)"] = (
        "none" if data is None else json.dumps(data_fingerprint(data), sort_keys=True)
    )
    items["EQX_ON_ERROR"] = os.environ.get("EQX_ON_ERROR", "unset")
    return items


def _hashed(items: dict[str, str]) -> dict[str, list[str]]:
    """Each item as [SHA-256 prefix of the whole value, its first characters]."""
    cut = lambda v: v[:SHOWN] + ("…" if len(v) > SHOWN else "")  # noqa: E731
    return {k: [hashlib.sha256(v.encode()).hexdigest()[:16], cut(v)] for k, v in items.items()}


def first_difference(first: dict, other: dict, p: int) -> str | None:
    """The first item (in `first`'s order, then `other`'s) whose digest differs between
    process 0 (`first`) and process `p` (`other`), with both values as shown; None when
    all agree."""
    for k in [*first, *(k for k in other if k not in first)]:
        a, b = first.get(k), other.get(k)
        if a is None or b is None or a[0] != b[0]:
            show = lambda v: "(absent)" if v is None else v[1]  # noqa: E731
            return f"{k}: {show(b)} on process {p}, {show(a)} on process 0"
    return None


def agree(args, prepare: Callable[[], T], data: Callable[[T], Any]) -> T:
    """`prepare()` (the command's checks and set-up: `build`, ...) on every process, then
    the same outcome everywhere: its value, or on every process the same error (exit 2 for
    bad input, 1 for a `Failure`) when any process raised one or when the processes differ
    in their versions, options or data (`digest_items`, the first difference named).
    `data(value)`: the `Dataset` to fingerprint."""
    if not getattr(args, "distributed", False):
        return prepare()
    import jax

    value: list[T] = []  # (filled when prepare() succeeded)
    own: Exception | None = None
    try:
        value.append(prepare())
        mine = dict(items=_hashed(digest_items(args, data(value[0]))), error=None)
    except Exception as e:  # (a bug, the file system: raised here as it is, after the others know)
        own = e
        known = isinstance(e, (UsageError, Failure))
        kind, text = (type(e).__name__, str(e)) if known else ("Failure", _first_line(e))
        mine = dict(items=_hashed(digest_items(args, None)), error=[kind, text])
    every = [json.loads(b) for b in allgather_bytes(json.dumps(mine).encode())]
    failed = [(p, r["error"]) for p, r in enumerate(every) if r["error"] is not None]
    if own is not None and not isinstance(own, (UsageError, Failure)):
        raise own
    if failed:
        p, record = failed[0]
        same = all(r["error"] == record for r in every)
        kind, text = record
        raise _error([kind, text if same else f"--distributed: process {p}: {text}"])
    for p, r in enumerate(every[1:], 1):
        diff = first_difference(every[0]["items"], r["items"], p)
        if diff is not None:
            raise UsageError(
                f"--distributed: the processes differ in {diff} (every process "
                f"must run the same command on the same data and versions; nothing was run; "
                f"this is process {jax.process_index()})"
            )
    return value[0]


def on_process_0(args, fn: Callable[[], T]) -> T:
    """`fn()` on process 0 only (reading or writing outputs, deciding what to run); its
    value (JSON) or its error (`UsageError`, `Failure`: the same one on every process)
    given to every process. Without `--distributed`: `fn()`."""
    import jax

    if not getattr(args, "distributed", False) or jax.process_count() == 1:
        return fn()
    if jax.process_index() == 0:
        try:
            out = dict(value=fn())
        except (UsageError, Failure) as e:
            allgather_bytes(json.dumps(dict(error=[type(e).__name__, str(e)])).encode())
            raise
        except BaseException as e:  # a bug, Ctrl-C: the others stop too, then it is raised
            text = f"process 0 stopped: {_first_line(e)}"
            allgather_bytes(json.dumps(dict(error=["Failure", text])).encode())
            raise
        allgather_bytes(json.dumps(out).encode())
        return out["value"]
    got = json.loads(allgather_bytes(b"null")[0])
    if "error" in got:
        raise _error(got["error"])
    return got["value"]


def source_hash() -> str:
    """SHA-256 of the memoa_jax package's Python files: processes that run different code
    must not agree."""
    import hashlib
    from pathlib import Path

    import memoa_jax

    h = hashlib.sha256()
    root = Path(memoa_jax.__file__).parent
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()
