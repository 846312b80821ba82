"""The import graph of both packages: no cycles, and the manifest schema imports no plugin package.

Read from the source with ``ast``, every import statement wherever it stands: at module level,
inside functions and under ``TYPE_CHECKING``. A cycle hidden in a function or a type-only import
still ties two modules together (neither can be understood, moved or tested without the other),
so the test sees those too. Importing ``a.b.c`` runs ``a`` and ``a.b`` first, so those count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"infpop": REPO / "toolkit" / "infpop", "infpop_analysis": REPO / "analysis" / "infpop_analysis"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = (package, *path.relative_to(root).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(name: str, path: Path, known: dict[str, Path], module_level_only: bool) -> set[str]:
    """Modules of ours that ``name`` (at ``path``) imports, with the packages that run first."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    if module_level_only:
        nodes = [n for n in nodes if not (isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            out.add(module)
            out |= {f"{module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
    with_parents = set()
    for module in out & set(known):
        parts = module.split(".")
        with_parents |= {".".join(parts[:k]) for k in range(1, len(parts) + 1)}
    # A module's own enclosing packages are already running when it is imported.
    return {m for m in with_parents & set(known) if not (name == m or name.startswith(m + "."))}


def _graph(module_level_only: bool = False) -> dict[str, set[str]]:
    known = _modules()
    return {name: _imported(name, path, known, module_level_only) for name, path in known.items()}


def _reaches(graph: dict[str, set[str]], start: str, target: str) -> list[str] | None:
    """A path of imports from ``start`` to ``target`` (for the failure message), or ``None``."""
    came_from: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop()
        for nxt in sorted(graph.get(node, ())):
            if nxt == target:
                path = [node, nxt]
                while path[0] != start:
                    path.insert(0, came_from[path[0]])
                return path
            if nxt not in came_from:
                came_from[nxt] = node
                todo.append(nxt)
    return None


def test_the_checker_sees_imports_inside_functions_and_type_checking(tmp_path: Path) -> None:
    """The blind spot of the previous checker: both kinds of hidden import count."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n    return g\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    known = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py"}
    graph = {name: _imported(name, path, known, module_level_only=False) for name, path in known.items()}
    assert _reaches(graph, "pkg.a", "pkg.a") == ["pkg.a", "pkg.b", "pkg.a"]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_imports_itself_back(package: str) -> None:
    graph = _graph()
    cycles = {m: _reaches(graph, m, m) for m in graph if m.split(".")[0] == package}
    found = {m: " -> ".join(path) for m, path in cycles.items() if path}
    assert not found, "import cycles:\n" + "\n".join(sorted(found.values()))


def test_the_schema_and_the_runners_stay_apart() -> None:
    """The manifest schema never loads a plugin package; a scenario runner never loads the trial."""
    graph = _graph(module_level_only=True)
    for package in ("infpop.engines", "infpop.workloads", "infpop.scenarios"):
        assert not _reaches(graph, "infpop.manifest", package), f"infpop.manifest imports {package}"
    for runner in ("infpop.scenarios.offline", "infpop.scenarios.online", "infpop.scenarios.base"):
        assert not _reaches(graph, runner, "infpop.trial"), f"{runner} imports infpop.trial"
