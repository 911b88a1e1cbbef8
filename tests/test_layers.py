"""Dependencies inside `memoa_jax` run one way, and there is no import cycle.

Layers, lowest first: data → core (encoders, moments, policy, methods, mixture, metrics, loop,
sweep) → `nash/`, FedMOE's game, `tune` and the NumPy reference → the benchmarks (`bench/`)
→ plots → the public API (`memoa_jax`'s `__init__`) → CLI. A module may import its own layer
or a lower one. Every import is read with `ast`, those inside functions (lazy ones) included.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "memoa_jax"

LAYERS = (
    ("memoa_jax._custom_types", "memoa_jax._lazy", "memoa_jax.data"),
    (
        "memoa_jax._status",
        "memoa_jax._progress",
        "memoa_jax._random",
        "memoa_jax._agents",
        "memoa_jax._moments",
        "memoa_jax._encoders",
        "memoa_jax._mean_field",
        "memoa_jax._methods",
        "memoa_jax._mixture",
        "memoa_jax._metrics",
        "memoa_jax._kernels",
        "memoa_jax._features",
        "memoa_jax._multihost",
        "memoa_jax._simulation",
        "memoa_jax._sharding",
        "memoa_jax._scan",
        "memoa_jax._loop",
        "memoa_jax._counts",
        "memoa_jax._sweep",
    ),
    ("memoa_jax.nash", "memoa_jax._fedmoe_game", "memoa_jax._tune", "memoa_jax.reference"),
    ("memoa_jax.bench",),
    ("memoa_jax.plots", "memoa_jax._sweep_plots", "memoa_jax._nash_plots"),
    ("memoa_jax",),
    ("memoa_jax.cli", "memoa_jax.__main__"),
)


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if f.name == "__init__.py" else parts)] = f
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    """The module `name` refers to (an attribute such as `memoa_jax.__version__` is its
    package's)."""
    while name not in MODULES:
        name = name.rsplit(".", 1)[0]
    return name


def imports(module: str) -> set[str]:
    """The `memoa_jax` modules `module` imports, anywhere in its code."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            stem = ".".join(base + ([node.module] if node.module else []))
            names = [f"{stem}.{a.name}" for a in node.names] if node.module is None else [stem]
            found.update(_resolve(n) for n in names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("memoa_jax"):
            found.add(_resolve(node.module))
        elif isinstance(node, ast.Import):
            found.update(_resolve(a.name) for a in node.names if a.name.startswith("memoa_jax"))
    found.discard(module)
    return found


def layer(module: str) -> int:
    """The layer of `module`: that of the longest layer entry it is or lies under."""
    best = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                if best is None or len(name) > best[1]:
                    best = (i, len(name))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    upward = {m for m in imports(module) if layer(m) > layer(module)}
    assert not upward, f"{module} (layer {layer(module)}) imports from above: {sorted(upward)}"


def test_no_import_cycle():
    graph = {m: imports(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n) :] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_checker_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The reader finds an import inside a function, relative or absolute."""
    fake = tmp_path / "memoa_jax"
    (fake / "nash").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "_loop.py").write_text("def f():\n    from .nash import x\n")
    (fake / "nash" / "__init__.py").write_text("import memoa_jax._loop\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    mods = _modules()
    monkeypatch.setattr(__import__(__name__), "MODULES", mods)
    assert imports("memoa_jax._loop") == {"memoa_jax.nash"}
    assert imports("memoa_jax.nash") == {"memoa_jax._loop"}
    assert layer("memoa_jax.nash") > layer("memoa_jax._loop")  # so the first is upward
