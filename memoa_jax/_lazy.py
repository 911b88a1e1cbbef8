"""Re-exports imported on first use (PEP 562), for `memoa_jax/__init__.py`.

A package lists its public API as `from .mod import Name as Name` lines under
`if TYPE_CHECKING:` (what pyright and a reader see); `lazy_exports` reads that block from the
package's source and returns the module's `__getattr__` and `__dir__`: the first access to
any listed name imports every one of them (the whole API at once, as a plain import would),
so that merely importing the package, or one of its light subpackages (`memoa_jax.data`,
`memoa_jax.cli` for `--help`), does not import JAX.
"""

import ast
import importlib
import sys
from collections.abc import Callable


def _listed(path: str) -> list[tuple[str, str, str]]:
    """`(module, name, alias)` of each `from module import name as alias` under the
    `if TYPE_CHECKING:` of the file `path` (`module` relative, with its leading dots)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    out = []
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    module = "." * stmt.level + (stmt.module or "")
                    out += [(module, a.name, a.asname or a.name) for a in stmt.names]
    return out


def lazy_exports(
    package: str, path: str
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of the package `package` whose `__init__` is `path`."""
    listed = _listed(path)
    names = {alias for _, _, alias in listed}

    def load() -> None:
        namespace = vars(sys.modules[package])
        for module, name, alias in listed:
            if module.strip(".") == "":  # `from . import nash as nash`
                value = importlib.import_module(f".{name}", package)
            else:
                value = getattr(importlib.import_module(module, package), name)
            namespace[alias] = value

    def __getattr__(name: str) -> object:
        if name in names:
            load()  # sets every listed name, so this runs once
            return vars(sys.modules[package])[name]
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | names)

    return __getattr__, __dir__
