"""Where commands write, and how: default output folders under `runs/`, checked before the
work and created only when written to (`make_out_dir`), every file written atomically
(`write_text`, `write_json`, `save_figure`), strict JSON, the table printer and the command
line recorded in the results.
"""

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..data import write_atomic
from ._errors import Failure, UsageError, cause, check

RUNS = Path("runs")  # every command's default output goes under here (git-ignored)


# OUTPUTS


def stamp() -> str:
    """The local time, for output folders that must not collide: `20261203-184016`."""
    return time.strftime("%Y%m%d-%H%M%S")


def default_out(command: str, *parts) -> Path:
    """`runs/<command>-<part>-<part>...`: where a command writes when `--out` is not given."""
    return RUNS / "-".join([command, *(str(p) for p in parts)])


def check_out_dir(out: Path, option: str = "--out") -> None:
    """Refuses (exit 2) an output folder that names a file, or lies under one; nothing is
    created. Commands call it before their work, so that a bad `--out` costs no run; a
    folder that cannot be written (permission, read-only mount) is a failure (exit 1), found
    as early."""
    import os

    for folder in (out, *out.parents):
        if folder.is_symlink() and not folder.exists():
            raise UsageError(
                f"{option} {str(out)!r}: {str(folder)!r} is a symbolic link to "
                f"{os.readlink(folder)!r}, which does not exist; nothing was run"
            )
        if folder.exists():
            check(
                folder.is_dir(),
                f"{option} {str(out)!r} is a file, not a folder"
                if folder == out
                else f"{option} {str(out)!r}: {str(folder)!r} is a file, not a folder, so "
                "nothing can be created under it",
            )
            if not os.access(folder, os.W_OK | os.X_OK):  # (read-only mount, permission)
                cause = "read-only file system" if _read_only(folder) else "permission denied"
                raise Failure(
                    f"{option} {str(out)!r}: {str(folder)!r} cannot be written ({cause}); "
                    "nothing was run"
                )
            return


def _read_only(folder: Path) -> bool:
    import os

    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


# The folders `make_out_dir` created in this command, deepest first: `remove_empty_outputs`
# takes away those a failure or an interrupt left empty.
CREATED: list[Path] = []


def make_out_dir(out: Path, option: str = "--out") -> Path:
    """Creates the output folder `out` (and its parents). A file in the way is bad input
    (exit 2); a folder that cannot be created (permission, read-only file system, full
    disk) is a failure (exit 1). Either way one line naming the path and the cause. The
    folders it creates are noted in `CREATED`."""
    check_out_dir(out, option)
    missing = [f for f in (out, *out.parents) if not f.exists()]
    # noted before they exist: a Ctrl-C between the two steps must not leave one behind
    # (`remove_empty_outputs` passes over a folder that is not there)
    CREATED.extend(missing)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Failure(f"{option} {str(out)!r}: cannot create the folder ({cause(e)})") from None
    return out


def remove_empty_outputs() -> None:
    """After a failure or an interrupt: removes the folders `make_out_dir` created that are
    still empty (deepest first), so that a run that wrote nothing leaves nothing."""
    for folder in sorted(CREATED, key=lambda f: len(f.absolute().parts), reverse=True):
        try:
            folder.rmdir()  # only an empty folder
        except OSError:
            pass
    CREATED.clear()


def write_atomic_or_fail(path: Path, write) -> Path:
    """`memoa_jax.data.write_atomic(path, write)`, with a failure of the file system (no
    permission, read-only, full disk) as one line naming `path` (`Failure`, exit 1). The
    temporary file is gone and `path` is as it was: the previous complete file, or none."""
    try:
        return write_atomic(path, write)
    except OSError as e:
        raise Failure(
            f"cannot write {path}: {cause(e)} (no partial file is left; a previous "
            f"{path.name}, if any, is unchanged)"
        ) from None


def write_text(path: Path, text: str) -> Path:
    """`text` (UTF-8) to `path`, atomically (`memoa_jax.data.write_atomic`)."""
    data = text.encode()
    return write_atomic_or_fail(path, lambda f: f.write(data))


def write_json(path: Path, record) -> Path:
    """`record` as strict JSON (`strict_json`: a non-finite number is `null` with a reason)."""
    return write_text(path, strict_json(record))


def save_figure(path: Path, fig, dpi: int = 110) -> Path:
    """A matplotlib figure to `path` as PNG, atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    try:
        write_atomic_or_fail(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
    return path


def _null_reason(v) -> str:
    return f"{v} is not a JSON number: the value overflowed (the method diverged)"


def strict_clean(record: Any) -> Any:
    """`record` (dicts, lists, numbers) with every non-finite float replaced by None; the
    dict that held it gains `<key>_null_reason` saying why (a diverged method's overflow)."""

    def clean(v):
        """(cleaned value, reason or None)"""
        if isinstance(v, dict):
            return walk(v), None
        if isinstance(v, (list, tuple)):
            items = [clean(e) for e in v]
            bad = [r for _, r in items if r is not None]
            why = None
            if bad:
                why = f"{len(bad)} of {len(items)} entries are not finite (null): {bad[0]}"
            return [e for e, _ in items], why
        if isinstance(v, float) and not math.isfinite(v):
            return None, _null_reason(v)
        return v, None

    def walk(d: dict) -> dict:
        out = {}
        for k, v in d.items():
            out[k], why = clean(v)
            if why is not None:
                out[f"{k}_null_reason"] = why
        return out

    return clean(record)[0]


def strict_json(record, indent: int | None = 1) -> str:
    """`record` as strict JSON (never NaN or Infinity; see `strict_clean`), one line when
    `indent` is None, else indented and ending in a newline."""
    text = json.dumps(strict_clean(record), indent=indent, allow_nan=False)
    return text if indent is None else text + "\n"


def print_table(cols, rows, *, left: int = 0, title: str | None = None):
    """Prints `rows` (lists of strings) under the headers `cols`, a rule between them; the
    first `left` columns are left-aligned, the others right-aligned."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    if title is not None:
        print(title)
    for r in [cols, ["-" * w for w in widths], *rows]:
        cells = (v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
        print("  ".join(cells))


def command_line(args=None) -> str:
    """The command as typed (`args.argv`, set by `main`; else `sys.argv`), for the records
    the commands write and the command that resumes an interrupted one."""
    import shlex

    argv = getattr(args, "argv", None)
    return "memoa " + shlex.join(sys.argv[1:] if argv is None else argv)
