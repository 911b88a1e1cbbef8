"""Checkpoints of one run's carry (`Run`, `SimCarry`): saved shard by shard, by one process
or many, and loaded to continue the run to the same bits as one uninterrupted run.

The simulation core never does file I/O; this module does, beside it (the CLI's
`memoa run --checkpoint-every` and `--resume` call it, and so can a script). A checkpoint
folder holds one folder per saved step:

    FOLDER/step-000000000040/process-0/shards.json, leaf0000-0.npy, ...   (each process)
    FOLDER/step-000000000040/manifest.json                                 (process 0, last)

Every process writes the shards of every leaf it holds (`jax.Array.addressable_shards`,
one copy of each distinct block, with its index: a process reads back only its own files)
as NumPy `.npy` files (no pickle) into a temporary folder, `fsync`s them and renames the
folder into place (atomic). After a barrier across processes, process 0 writes the
manifest (atomically: the step, the process and device counts, a fingerprint of the run,
and each leaf's path, shape, dtype and sharding), and after a second barrier the older
steps are removed. So a checkpoint is complete exactly when its manifest is there; a
process killed at any point leaves the previous complete one, and `load_checkpoint` takes
the latest complete one. Every process must see its own files, and process 0 the
manifests: one shared folder, or a folder per process at the same path.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ._loop import Run, SimCarry
from ._multihost import allgather_bytes
from .data import write_atomic

# 2: the features source's carry is one field, `state.features` (`FeatureRing`), where 1 had
# `state.z_ring` and `state.z_next`; and the servers' states, `state.server`
FORMAT = "memoa-jax checkpoint 2"
MANIFEST = "manifest.json"
SHARDS = "shards.json"
_STEP = re.compile(r"step-(\d{12})")


class CheckpointError(ValueError):
    """A folder that holds no complete checkpoint, or one that another run wrote (another
    simulation, data or key, process or device count), or damaged files."""


def save_checkpoint(folder: "str | os.PathLike[str]", run: Run, carry: SimCarry) -> Path:
    """Saves `carry` (of `run`, after `carry.t` steps) as a checkpoint in `folder`, created
    if need be, and removes the older steps of `folder` once it is complete.

    Under many processes (`jax.distributed`) every process must call it, with its own
    shards of the same carry: each writes its own files, process 0 the manifest, after a
    barrier. Saving a step that is already complete there writes nothing (the same run
    reaches the same bits at the same step).

    Args:
        folder: the checkpoint folder of this run (one run per folder).
        run: the run (`Run`) whose carry this is.
        carry: the carry to save (e.g. returned by `run.segment`); it is not consumed.

    Returns:
        The folder of the saved step, `folder/step-<t>`.

    Raises:
        OSError: the file system (no permission, a full disk); the previous complete
            checkpoint is left as it was.
    """
    folder = Path(folder)
    t = _scalar(carry.t)
    step_dir = folder / f"step-{t:012d}"
    p = jax.process_index()
    if _from_process_0(lambda: (step_dir / MANIFEST).is_file()):
        return step_dir
    problem = None
    try:
        step_dir.mkdir(parents=True, exist_ok=True)
        _remove_temporary(step_dir, p)
        tmp = Path(tempfile.mkdtemp(prefix=f".process-{p}.", suffix=".tmp", dir=step_dir))
        try:
            os.chmod(tmp, 0o777 & ~_umask())  # (mkdtemp makes it 0700 whatever the umask)
            leaves = _write_shards(tmp, carry)
            _fsync_dir(tmp)
            part = step_dir / f"process-{p}"
            if part.exists():  # an unfinished save of this step, before a kill (no manifest)
                shutil.rmtree(part)
            os.replace(tmp, part)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(step_dir)
    except OSError as e:
        problem, leaves = e, []
    _barrier(f"memoa_jax checkpoint: shards of step {t}", problem)
    if p == 0:
        manifest = dict(
            format=FORMAT,
            step=t,
            n_steps=run.n_steps,
            process_count=jax.process_count(),
            n_devices=_n_devices(run),
            run=run_fingerprint(run),
            leaves=leaves,
            jax=jax.__version__,
        )
        text = json.dumps(manifest, indent=1).encode()
        try:
            write_atomic(step_dir / MANIFEST, lambda f: f.write(text))
            _fsync_dir(step_dir)
        except OSError as e:
            problem = e
    _barrier(f"memoa_jax checkpoint: manifest of step {t}", problem)
    _remove_older(folder, t, p)
    return step_dir


def checkpoint_step(folder: "str | os.PathLike[str]") -> int | None:
    """The step of the latest complete checkpoint in `folder`, or None when there is none
    (no folder, or no step with its manifest). Under many processes: process 0's view,
    on every process (call it on every process)."""
    return _from_process_0(lambda: _latest_step(Path(folder)))


def load_checkpoint(folder: "str | os.PathLike[str]", run: Run) -> SimCarry:
    """The carry of the latest complete checkpoint in `folder`, as arrays laid out as `run`
    lays them out (its mesh, or one device): `run.segment` continues it, and the run ends
    with the same bits as one uninterrupted run.

    Under many processes every process must call it: process 0 picks the step (its
    manifest), and each process reads its own shards of it.

    Args:
        folder: a checkpoint folder that `save_checkpoint` wrote.
        run: the run to continue: the same simulation, data, key, `n_active`,
            `track_agent`, process count and device count as the saved one.

    Returns:
        A `SimCarry` at the checkpoint's step.

    Raises:
        CheckpointError: no complete checkpoint in `folder`; one of another run (named:
            the process or device count, the run's data, key or simulation, the carry's
            shapes); missing or damaged shard files. The same error on every process.
    """
    folder = Path(folder)
    found = _from_process_0(lambda: _latest_manifest(folder))
    if isinstance(found, str):
        raise CheckpointError(found)
    manifest: dict[str, Any] = found
    problem, like = _mismatch(manifest, run, folder), None
    if problem is None:
        try:
            like = _template(run, int(manifest["step"]))
            problem = _leaves_mismatch(manifest["leaves"], like, folder)
        except ValueError as e:  # a step outside the run
            problem = f"checkpoint {str(folder)!r} does not fit this run: {e}"
    _agree(problem)
    assert like is not None
    part = folder / f"step-{int(manifest['step']):012d}" / f"process-{jax.process_index()}"
    leaves, error = [], None
    try:
        leaves = _read_shards(part, manifest["leaves"], run.mesh)
    except (OSError, ValueError, KeyError, TypeError) as e:
        error = f"checkpoint {str(folder)!r}: cannot read {str(part)!r}: {e}"
    _agree(error)
    return jax.tree.unflatten(jax.tree.structure(like), leaves)


def run_fingerprint(run: Run) -> str:
    """SHA-256 of what defines a run besides its carry: the simulation (its printed form:
    N, the encoder, the methods and their settings), the data, the key, `n_active` and
    `track_agent` (their values, shapes and dtypes)."""
    h = hashlib.sha256()
    text = eqx.tree_pformat(run.sim, short_arrays=False)
    h.update(re.sub(r" at 0x[0-9a-f]+", "", text).encode())
    key = jax.random.key_data(run.key)
    for leaf in jax.tree.leaves((run.sim, run.x, run.y, key, run.n_active, run.track_agent)):
        a = np.asarray(leaf)
        h.update(f"{a.dtype.str}{a.shape}".encode() + np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# SAVING


def _scalar(a) -> int:
    """A replicated scalar array's value (any process: its own copy)."""
    if isinstance(a, jax.Array):
        a = a.addressable_data(0)
    return int(np.asarray(a))


def _n_devices(run: Run) -> int:
    return 1 if run.mesh is None else int(run.mesh.size)


def _block(index: Any, shape: tuple) -> list[list[int]]:
    """A shard's index (slices) as `[[start, stop], ...]`, one pair per axis."""
    return [list(s.indices(n)[:2]) for s, n in zip(index, shape)]


def _spec(sharding) -> dict | None:
    """A leaf's `PartitionSpec` and its mesh's axis names and types, as JSON (None: one
    device, no mesh)."""
    if not isinstance(sharding, jax.sharding.NamedSharding):
        return None
    mesh = sharding.mesh
    return dict(
        spec=[list(e) if isinstance(e, tuple) else e for e in sharding.spec],
        axes=list(mesh.axis_names),
        types=[t.name for t in mesh.axis_types],
    )


def _sharding(spec: dict | None, mesh: jax.sharding.Mesh | None):
    """The sharding `_spec` recorded, on `mesh` (None: the first device)."""
    if mesh is None or spec is None:
        return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    if list(mesh.axis_names) != spec["axes"]:
        raise ValueError(f"the mesh's axes are {spec['axes']}, this run's {mesh.axis_names}")
    types = tuple(jax.sharding.AxisType[t] for t in spec["types"])
    mesh = jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=types)
    parts = [tuple(e) if isinstance(e, list) else e for e in spec["spec"]]
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*parts))


def _write_shards(tmp: Path, carry: Any) -> list[dict]:
    """This process's shards of every leaf of `carry` (a pytree of arrays) into `tmp`, and
    the leaves' records (path, shape, dtype, sharding; for a PRNG key, its impl: its
    `key_data` is saved)."""
    records, files = [], []
    for i, (path, leaf) in enumerate(jax.tree_util.tree_flatten_with_path(carry)[0]):
        impl = None
        if jax.numpy.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            impl = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        records.append(
            dict(
                path=jax.tree_util.keystr(path),
                shape=list(leaf.shape),
                dtype=leaf.dtype.str,
                spec=_spec(leaf.sharding),
                key=impl,
            )
        )
        seen = set()
        for shard in leaf.addressable_shards:
            block = _block(shard.index, leaf.shape)
            if str(block) in seen:  # (a replicated block: one copy per process)
                continue
            seen.add(str(block))
            name = f"leaf{i:04d}-{len(seen) - 1}.npy"
            _write_file(tmp / name, lambda f, d=shard.data: np.save(f, np.asarray(d)))
            files.append(dict(leaf=i, file=name, block=block))
    text = json.dumps(dict(format=FORMAT, shards=files)).encode()
    _write_file(tmp / SHARDS, lambda f: f.write(text))
    return records


def _write_file(path: Path, write) -> None:
    with open(path, "xb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """The folder's entries (a rename into it) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # (not every file system syncs a folder)
        pass
    finally:
        os.close(fd)


def _remove_temporary(step_dir: Path, p: int) -> None:
    """This process's temporary folders left in `step_dir` by a save that was killed."""
    for tmp in step_dir.glob(f".process-{p}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


def _steps(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(_STEP.fullmatch(d.name), d) for d in folder.iterdir()]
    return sorted((int(m.group(1)), d) for m, d in found if m is not None and d.is_dir())


def _remove_older(folder: Path, t: int, p: int) -> None:
    """The steps before `t`: their manifest first (process 0: never chosen again), then
    this process's files, then the step's folder once empty.

    Best effort, and never an error: the step `t` is complete by now, and the other
    processes remove their own files and the same folders at the same moment (a folder
    listed here can be gone an instant later: `Path.glob` then raises FileNotFoundError).
    What cannot be removed stays, unused: a step without its manifest is never loaded."""
    for s, d in _steps(folder):
        if s >= t:
            continue
        try:
            if p == 0:
                (d / MANIFEST).unlink(missing_ok=True)
            shutil.rmtree(d / f"process-{p}", ignore_errors=True)
            _remove_temporary(d, p)
            d.rmdir()
        except OSError:  # gone already, or another process's files not yet removed
            pass


# LOADING


def _latest_step(folder: Path) -> int | None:
    complete = [s for s, d in _steps(folder) if (d / MANIFEST).is_file()]
    return max(complete) if complete else None


def _latest_manifest(folder: Path) -> "dict | str":
    """The latest complete checkpoint's manifest, or why there is none (a message)."""
    where = f"checkpoint folder {str(folder)!r}"
    if not folder.exists():
        return f"{where} does not exist"
    if not folder.is_dir():
        return f"{where} is a file, not a folder"
    t = _latest_step(folder)
    if t is None:
        return f"{where} holds no complete checkpoint (no step-*/{MANIFEST})"
    path = folder / f"step-{t:012d}" / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return f"cannot read {str(path)!r}: {e}"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"{str(path)!r} is not a memoa_jax checkpoint manifest ({FORMAT!r})"
    return manifest


def _mismatch(manifest: dict, run: Run, folder: Path) -> str | None:
    """Why the checkpoint cannot continue `run`, or None."""
    where = f"checkpoint {str(folder)!r} (step {manifest['step']})"
    counts = [
        ("process(es)", manifest["process_count"], jax.process_count()),
        ("device(s)", manifest["n_devices"], _n_devices(run)),
    ]
    for what, saved, here in counts:
        if saved != here:
            return f"{where} was written by {saved} {what}; this run has {here}"
    if manifest["n_steps"] != run.n_steps:
        return f"{where} is of a run of {manifest['n_steps']} steps; this one has {run.n_steps}"
    if manifest["run"] != run_fingerprint(run):
        return (
            f"{where} is of another run: its simulation, data or key differ from this "
            "one's (`run_fingerprint`)"
        )
    return None


def _template(run: Run, t: int):
    """The carry's structure, shapes and dtypes after `t` steps (nothing runs): a lean run
    drops some rings after its warm-up."""
    if t == 0:
        return jax.eval_shape(run.init)
    return jax.eval_shape(lambda: run.segment(run.init(), t))


def _leaves_mismatch(records: list[dict], like, folder: Path) -> str | None:
    paths = jax.tree_util.tree_flatten_with_path(like)[0]
    if len(paths) != len(records):
        return (
            f"checkpoint {str(folder)!r} holds {len(records)} arrays; this run's carry "
            f"has {len(paths)}"
        )
    for (path, leaf), rec in zip(paths, records):
        if jax.numpy.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.eval_shape(jax.random.key_data, leaf)  # (saved as its key data)
        got = (jax.tree_util.keystr(path), list(leaf.shape), np.dtype(leaf.dtype).str)
        if got != (rec["path"], rec["shape"], rec["dtype"]):
            return (
                f"checkpoint {str(folder)!r} holds {rec['path']} of shape {rec['shape']} "
                f"and dtype {rec['dtype']}; this run's carry has {got[0]} of shape "
                f"{got[1]} and dtype {got[2]}"
            )
    return None


def _read_shards(part: Path, records: list[dict], mesh: jax.sharding.Mesh | None) -> list:
    """Every leaf, a global array laid out on `mesh` as it was saved (None: on the first
    device), from this process's files in `part`."""
    listing = json.loads((part / SHARDS).read_text())
    blocks: dict[tuple[int, str], str] = {}
    for entry in listing["shards"]:
        blocks[(int(entry["leaf"]), str(entry["block"]))] = entry["file"]
    leaves = []
    for i, rec in enumerate(records):
        shape, dtype = tuple(rec["shape"]), np.dtype(rec["dtype"])
        sharding = _sharding(rec["spec"], mesh)
        arrays = []
        for device, index in sharding.addressable_devices_indices_map(shape).items():
            block = _block(index, shape)
            name = blocks.get((i, str(block)))
            if name is None:
                raise ValueError(f"no block {block} of {rec['path']} (another layout?)")
            a = np.load(part / name, allow_pickle=False)
            if a.dtype != dtype and a.dtype.itemsize == dtype.itemsize:
                a = a.view(dtype)  # (a dtype NumPy stores as raw bytes, e.g. bfloat16)
            if a.dtype != dtype or list(a.shape) != [b - a_ for a_, b in block]:
                raise ValueError(f"{name} is not {rec['path']}'s block {block}")
            arrays.append(jax.device_put(a, device))
        leaf = jax.make_array_from_single_device_arrays(shape, sharding, arrays)
        if rec["key"] is not None:
            leaf = jax.random.wrap_key_data(leaf, impl=rec["key"])
        leaves.append(leaf)
    return leaves


# MANY PROCESSES


def _barrier(name: str, problem: OSError | None = None) -> None:
    """Waits until every process is here. When any process brings a `problem` (a failed
    write), every process raises it (as `OSError`, the first process's, named), so that
    none is left waiting alone at the next collective; processes that reach different
    barriers (out of step) raise `CheckpointError` instead of going on."""
    if problem is not None and jax.process_count() == 1:
        raise problem
    _agree(None if problem is None else str(problem), OSError, name)


def _from_process_0(fn):
    """`fn()` on process 0 (JSON), its value given to every process (all must call)."""
    if jax.process_count() == 1:
        return fn()
    mine = fn() if jax.process_index() == 0 else None
    return json.loads(allgather_bytes(json.dumps(mine).encode())[0])


def _agree(problem: str | None, error: type[Exception] = CheckpointError, name: str = "") -> None:
    """Raises `error` on every process when any process has a problem (the first
    process's, named), so that none goes on alone; processes that reached this point
    under different `name`s (out of step) raise `CheckpointError`."""
    every = [json.loads(b) for b in allgather_bytes(json.dumps([name, problem]).encode())]
    names = {n for n, _ in every}
    if len(names) > 1:
        raise CheckpointError(f"processes out of step at a checkpoint: {sorted(names)}")
    first = next(((p, e) for p, (_, e) in enumerate(every) if e is not None), None)
    if first is not None:
        p, text = first
        raise error(text if jax.process_count() == 1 else f"process {p}: {text}")
