"""The CLI package's layering, read from the source with `ast` (lazy imports included): the
shared modules (`_errors`, `_options`, `_outputs`, ...) import no command, and no command
imports another."""

import ast
from pathlib import Path

import memoa_jax.cli

CLI = Path(memoa_jax.cli.__file__).parent
COMMANDS = {"run", "sweep", "bench", "verify", "reproduce", "tune"}


def _imported_cli_modules(path: Path) -> set[str]:
    """The modules of `memoa_jax.cli` that `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                base = node.module.split(".")[0] if node.module else None
            elif node.level == 0 and (node.module or "").startswith("memoa_jax.cli"):
                rest = node.module[len("memoa_jax.cli") :].lstrip(".")
                base = rest.split(".")[0] if rest else None
            else:
                continue
            if base is not None:
                found.add(base)
            else:  # from . import a, b / from memoa_jax.cli import a, b
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("memoa_jax.cli."):
                    found.add(alias.name.split(".")[2])
    return found


def test_every_command_has_its_module():
    assert {p.stem for p in CLI.glob("*.py")} >= COMMANDS | {"__init__"}


def test_shared_modules_import_no_command():
    shared = [p for p in CLI.glob("_*.py") if p.name != "__init__.py"]
    assert {p.stem for p in shared} >= {"_errors", "_options", "_outputs", "_build"}
    for path in shared:
        assert _imported_cli_modules(path) & COMMANDS == set(), path.name


def test_no_command_imports_another():
    for name in COMMANDS:
        others = _imported_cli_modules(CLI / f"{name}.py") & (COMMANDS - {name})
        assert not others, f"cli/{name}.py imports {others}"


def test_the_checker_sees_imports(tmp_path):
    """The reader itself: relative, absolute and lazy imports are all found."""
    src = tmp_path / "m.py"
    src.write_text(
        "from . import run\nfrom .sweep import x\nimport memoa_jax.cli.bench\n"
        "def f():\n    from memoa_jax.cli import tune\n    from memoa_jax.cli.verify import y\n"
    )
    assert _imported_cli_modules(src) == {"run", "sweep", "bench", "tune", "verify"}


def test_experiments_do_not_import_the_cli():
    experiments = Path(__file__).resolve().parents[1] / "experiments"
    for path in experiments.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            assert not any(n.startswith("memoa_jax.cli") for n in names), path
