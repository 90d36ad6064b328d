"""The package's shape: imports run one way, no cycles, public APIs only, small modules.

Read from the source with :mod:`ast` (nothing is imported), so a violation names the file
and line instead of surfacing later as an import-time cycle.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "schemas": "cellsift.schemas",
    "catalog": "cellsift.catalog",
    "pipeline": "cellsift.pipeline",
    "cli": "cellsift.cli",
}

#: Layers, lowest first: a module may import its own layer's units and lower layers only.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cellsift.schemas",),
    ("cellsift.catalog",),
    ("cellsift.pipeline._util",),
    ("cellsift.pipeline.provenance", "cellsift.pipeline.executor"),
    ("cellsift.pipeline.sim", "cellsift.pipeline.readers"),
    ("cellsift.pipeline.ingest",),
    ("cellsift.pipeline.stages",),
    ("cellsift.pipeline.classify", "cellsift.pipeline.analysis"),
    ("cellsift.pipeline.export", "cellsift.pipeline.review"),
    ("cellsift.pipeline",),  # the package's own lazy __init__
    ("cellsift.cli",),
)
#: Units whose public API is their ``__init__``: other units import only from it.
UNITS = [u for layer in LAYERS for u in layer if u != "cellsift.pipeline"]
MAX_MODULE_LINES = 520  # "about 500"
MAX_FUNCTION_LINES = 120


@dataclass(frozen=True)
class Import:
    module: str  # importing module
    target: str  # imported module (absolute)
    names: tuple[str, ...]
    file: str
    line: int


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if rel.parts[:2] == ("schemas", "_root"):
        return "cellsift"
    parts = [FOLDERS[rel.parts[0]], *rel.parts[1:]]
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    out = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            out[_module_name(path)] = path
    return out


SOURCES = _sources()


def _imports() -> list[Import]:
    found = []
    for module, path in SOURCES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("cellsift"):
                    names = tuple(a.name for a in node.names)
                    found.append(Import(module, node.module, names, str(path.relative_to(ROOT)), node.lineno))
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                found.append(
                    Import(
                        module,
                        "." * node.level + (node.module or ""),
                        (),
                        str(path.relative_to(ROOT)),
                        node.lineno,
                    )
                )
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("cellsift"):
                        found.append(Import(module, alias.name, (), str(path.relative_to(ROOT)), node.lineno))
    return found


IMPORTS = _imports()


def _unit(module: str) -> str:
    best = ""
    for unit in [*UNITS, "cellsift.pipeline", "cellsift"]:
        if (module == unit or module.startswith(unit + ".")) and len(unit) > len(best):
            best = unit
    return best


def _layer(unit: str) -> int:
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    return len(LAYERS)


def test_sources_were_found():
    assert len(SOURCES) > 50 and "cellsift.pipeline.stages.run" in SOURCES
    assert len(IMPORTS) > 200


def test_no_relative_imports():
    bad = [f"{i.file}:{i.line}" for i in IMPORTS if i.target.startswith(".")]
    assert not bad, bad


def test_imports_run_one_way():
    bad = []
    for imp in IMPORTS:
        src, dst = _unit(imp.module), _unit(imp.target)
        if src == "cellsift" or dst == "cellsift" or src == dst:
            continue
        if _layer(dst) >= _layer(src) and not (dst == "cellsift.pipeline" and src == "cellsift.cli"):
            bad.append(f"{imp.file}:{imp.line} {imp.module} -> {imp.target}")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_other_units_are_used_through_their_public_api():
    bad = []
    for imp in IMPORTS:
        src, dst = _unit(imp.module), _unit(imp.target)
        if src != dst and dst in UNITS and imp.target != dst:
            bad.append(f"{imp.file}:{imp.line} {imp.target}")
    assert not bad, "import these from the unit's __init__ instead:\n" + "\n".join(bad)


def test_no_private_name_crosses_a_module_border():
    bad = []
    for imp in IMPORTS:
        private = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
        if private and imp.target != imp.module:
            bad.append(f"{imp.file}:{imp.line} {imp.target}: {private}")
    assert not bad, bad


def test_no_import_cycles():
    graph: dict[str, set[str]] = {m: set() for m in SOURCES}
    for imp in IMPORTS:
        if imp.target in SOURCES and imp.target != imp.module:
            graph[imp.module].add(imp.target)
        for name in imp.names:  # "from cellsift.pipeline.stages import graph" imports a module
            if f"{imp.target}.{name}" in SOURCES:
                graph[imp.module].add(f"{imp.target}.{name}")
    # a package's __init__ re-exporting its own modules is not a cycle of behaviour
    for module in graph:
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_module_and_function_sizes(module):
    path = SOURCES[module]
    text = path.read_text()
    n_lines = len(text.splitlines())
    assert n_lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)} has {n_lines} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.relative_to(ROOT)}: {long}"


def test_every_unit_has_a_curated_public_api():
    for unit in UNITS:
        if unit.endswith(("_util", "provenance", "executor")):
            continue
        path = SOURCES[unit]
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path}: no module docstring"
        names = [
            t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
        ]
        assert "__all__" in names, f"{path}: no __all__"
