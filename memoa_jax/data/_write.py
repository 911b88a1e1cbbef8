"""The one way every output file of the package is written (CLI and `experiments/`).

It lives in the data layer, the lowest one, so that the CLI and the experiment scripts share
it without the scripts importing the CLI.
"""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Writes a file so that it is either complete or not there at all.

    `write(f)` writes the content into `f`, a binary file open on a new temporary file beside
    `path` (unique name from `tempfile.mkstemp`, created exclusively: a symlink planted at a
    likely name is never followed). The file is flushed and `fsync`ed, given the mode an ordinary
    new file gets under the user's umask (`0o666 & ~umask`: 0644 under the usual 022, 0600
    under 077) and moved onto `path` with one `os.replace`, so a
    reader sees the old file or the new one, never a mixture. On any failure, including
    `KeyboardInterrupt`, the temporary file is removed and `path` is left as it was.

    Args:
        path: the file to write; its folder must exist.
        write: called once with the open binary file, e.g.
            `lambda f: f.write(text.encode())` or `lambda f: fig.savefig(f, format="png")`.

    Returns:
        `path`, as a `Path`.

    Raises:
        OSError: the folder does not exist or cannot be written, the disk is full, ...
        Whatever `write` raises.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600 whatever the umask
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _umask() -> int:
    """The process's umask (read by setting it and putting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
