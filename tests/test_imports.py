"""The toolkit's import graph: no cycles, and the manifest schema imports no plugin package.

Read from the source with ``ast`` (imports at module level, outside ``TYPE_CHECKING``), so the
test sees the structure rather than whatever an import order happens to tolerate.
"""

from __future__ import annotations

import ast
from pathlib import Path

TOOLKIT = Path(__file__).resolve().parents[1] / "toolkit"


def _modules() -> dict[str, Path]:
    found = {}
    for path in TOOLKIT.rglob("*.py"):
        parts = path.relative_to(TOOLKIT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _runtime_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """infpop modules imported when ``path`` is imported (not inside functions or TYPE_CHECKING)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("infpop"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("infpop")}
    return out & set(known)


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _runtime_imports(path, known) - {name} for name, path in known.items()}


def _reaches(graph: dict[str, set[str]], start: str, target: str) -> bool:
    seen, todo = set(), list(graph[start])
    while todo:
        node = todo.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, ())
    return False


def test_no_module_imports_itself_back() -> None:
    graph = _graph()
    cyclic = sorted(m for m in graph if _reaches(graph, m, m))
    assert not cyclic, f"import cycles through {cyclic}"


def test_the_schema_and_the_runners_stay_apart() -> None:
    graph = _graph()
    for package in ("infpop.engines", "infpop.workloads", "infpop.scenarios"):
        assert not _reaches(graph, "infpop.manifest", package), f"infpop.manifest imports {package}"
    for runner in ("infpop.scenarios.offline", "infpop.scenarios.online", "infpop.scenarios.base"):
        assert not _reaches(graph, runner, "infpop.trial"), f"{runner} imports infpop.trial"
