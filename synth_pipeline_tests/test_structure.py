"""The package's shape: no import cycles between its modules, no module too long to read.

Imports are read with :mod:`ast`, not by importing: every ``import`` and ``from ... import``
counts, at the top of a module or inside a function (a lazy import that closes a cycle is still a
cycle). Relative imports are resolved; a package's ``__init__`` stands for the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import synth_pipeline

ROOT = Path(synth_pipeline.__file__).parent
MAX_LINES = 500


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names one import statement reads (``from a import b`` reads ``a`` and, when it
    is a module, ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        here = module.split(".") if is_package else module.split(".")[:-1]
        base = here[: len(here) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    return [source] + [f"{source}.{alias.name}" for alias in node.names]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at any depth of its code."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                is_package = path.name == "__init__.py"
                targets |= {t for t in _imported(node, name, is_package) if t in modules}
        graph[name] = targets - {name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or round a loop (strongly
    connected components of more than one module), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups, key=lambda g: (-len(g), g))


def cycle_report(groups: list[list[str]], graph: dict[str, set[str]]) -> str:
    lines = []
    for group in groups:
        members = set(group)
        edges = [f"{a} -> {b}" for a in group for b in sorted(graph[a] & members)]
        lines.append(f"{' <-> '.join(group)}: {'; '.join(edges)}")
    return "\n".join(lines)


def long_modules(root: Path, limit: int = MAX_LINES) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > limit:
            out.append(f"{path.relative_to(root.parent)}: {n} lines")
    return out


def test_no_import_cycles():
    graph = import_graph(ROOT, "synth_pipeline")
    groups = import_cycles(graph)
    assert not groups, "modules that import each other:\n" + cycle_report(groups, graph)


def test_no_module_over_500_lines():
    found = long_modules(ROOT)
    assert not found, f"modules over {MAX_LINES} lines (split along their seams):\n" + "\n".join(
        found
    )


# --- the checks themselves, on a small package written for the purpose -----------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "fake"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_cycle_through_a_lazy_relative_import_is_found(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/a.py": "from . import b\n",
            "core/b.py": "def f():\n    from .c import thing\n",
            "core/c.py": "import fake.core.a\n",
            "core/d.py": "from .a import x\n",  # imports into the cycle, is not part of it
        },
    )
    graph = import_graph(root, "fake")
    assert import_cycles(graph) == [["fake.core.a", "fake.core.b", "fake.core.c"]]
    assert "fake.core.b -> fake.core.c" in cycle_report(import_cycles(graph), graph)


def test_a_package_init_counts_as_the_package(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "sub/__init__.py": "from .leaf import x\n",
            "sub/leaf.py": "from .. import sub\n",  # reads the package, whose __init__ reads it
            "top.py": "from .sub import leaf\n",
        },
    )
    graph = import_graph(root, "fake")
    assert graph["fake.top"] == {"fake.sub", "fake.sub.leaf"}
    assert import_cycles(graph) == [["fake.sub", "fake.sub.leaf"]]


def test_no_cycle_when_imports_only_go_one_way(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from .b import y\nimport os\n",
            "b.py": "from .c import z\nimport fake.c\n",
            "c.py": "",
        },
    )
    assert import_cycles(import_graph(root, "fake")) == []


def test_a_long_module_is_found(tmp_path):
    root = _package(tmp_path, {"__init__.py": "", "short.py": "x = 1\n" * 500})
    assert long_modules(root) == []
    (root / "long.py").write_text("x = 1\n" * 501, encoding="utf-8")
    assert long_modules(root) == ["fake/long.py: 501 lines"]
