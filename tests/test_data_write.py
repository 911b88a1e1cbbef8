"""`memoa_jax.data.write_atomic`: the one writer of every output file."""

import os
import stat
import tempfile

import pytest

from memoa_jax.data import write_atomic


def _temporaries(folder):
    return [p for p in folder.iterdir() if p.name.startswith(".")]


def test_replaces_the_target_whole_with_the_umask_mode(tmp_path):
    """The mode an ordinary new file gets: 0600 under umask 077, 0644 under 022 (issue 28:
    it was forced to 0644, readable by all, whatever the user's umask)."""
    target = tmp_path / "out.json"
    target.write_text("old")
    for umask, mode in ((0o077, 0o600), (0o022, 0o644)):
        before = os.umask(umask)
        try:
            assert write_atomic(target, lambda f: f.write(b"new content")) == target
        finally:
            os.umask(before)
        assert target.read_text() == "new content"
        assert stat.S_IMODE(target.stat().st_mode) == mode
    assert _temporaries(tmp_path) == []


def test_the_target_is_replaced_by_one_rename(tmp_path, monkeypatch):
    """Until the rename the reader sees the old file; the new one arrives in one `os.replace`."""
    target = tmp_path / "out.txt"
    target.write_text("old")
    seen, renames = [], []
    real_replace = os.replace

    def replace(src, dst):
        renames.append((os.path.dirname(src), os.path.basename(src), dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)

    def write(f):
        f.write(b"part")
        seen.append(target.read_text())  # mid-write: the old content, whole
        f.write(b" two")

    write_atomic(target, write)
    assert seen == ["old"] and target.read_text() == "part two"
    ((folder, name, dst),) = renames
    assert folder == str(tmp_path) and name.startswith(".out.txt.") and dst == target


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "fig.png"
    target.write_bytes(b"previous complete file")

    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, fail)
    assert target.read_bytes() == b"previous complete file"
    assert _temporaries(tmp_path) == []

    def interrupted(f):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, interrupted)
    assert target.read_bytes() == b"previous complete file" and _temporaries(tmp_path) == []


def test_a_planted_symlink_is_not_followed(tmp_path, monkeypatch):
    """A symlink at the temporary name the writer would pick is never written through."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    names = iter(["planted", "planted", "fresh"])  # mkstemp retries a name that exists
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    (folder / ".bench.json.planted.tmp").symlink_to(victim)
    write_atomic(folder / "bench.json", lambda f: f.write(b"{}"))
    assert victim.read_text() == "precious"
    assert (folder / "bench.json").read_text() == "{}"
    assert (folder / ".bench.json.planted.tmp").is_symlink()  # left alone, not ours


def test_missing_folder_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "no" / "x.json", lambda f: f.write(b"{}"))
    assert list(tmp_path.iterdir()) == []
