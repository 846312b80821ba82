"""Record the vLLM signatures infpop's adapter relies on, from a released wheel or an installed
package, without importing it.

tests/toolkit/test_vllm_engine.py checks the adapter's arguments against every recorded version: the GPU
images' pins (containers/vllm-*.lock.toml), which CI cannot install, and the CPU build it runs.
``infpop plan`` checks a manifest's ``engine_options.vllm`` against the recorded ``EngineArgs``
fields and their types (:mod:`infpop.engines.options`), so the recordings ship with the toolkit.
Re-run when a pin changes:

    pip download --no-deps --only-binary :all: --platform manylinux1_x86_64 vllm==X -d /tmp/w
    python tests/data/record_vllm_signatures.py /tmp/w/vllm-X-*.whl > toolkit/infpop/engines/signatures/vllm_X_signatures.json
    # the CPU build, from the install (`make install`):
    python tests/data/record_vllm_signatures.py .venv/lib/python3.*/site-packages > toolkit/infpop/engines/signatures/vllm_X_signatures.json
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

FILES = (
    "vllm/entrypoints/llm.py",
    "vllm/sampling_params.py",
    "vllm/engine/arg_utils.py",
    "vllm/outputs.py",
    "vllm/v1/engine/async_llm.py",
    "vllm/v1/metrics/stats.py",
)


def params(fn: ast.FunctionDef) -> list[dict]:
    a = fn.args
    pos = a.posonlyargs + a.args
    defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    out = [
        {"name": p.arg, "kind": "POSITIONAL_OR_KEYWORD", "default": d and ast.unparse(d)} for p, d in zip(pos, defaults)
    ]
    if a.vararg:
        out.append({"name": a.vararg.arg, "kind": "VAR_POSITIONAL"})
    out += [
        {"name": p.arg, "kind": "KEYWORD_ONLY", "default": d and ast.unparse(d)}
        for p, d in zip(a.kwonlyargs, a.kw_defaults)
    ]
    if a.kwarg:
        out.append({"name": a.kwarg.arg, "kind": "VAR_KEYWORD"})
    return out


def find_class(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def method(tree: ast.Module, cls: str, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    """The implementation, not an ``@overload`` stub."""
    return next(
        n for n in find_class(tree, cls).body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name
        and not any(isinstance(d, ast.Name) and d.id == "overload" for d in n.decorator_list)
    )  # fmt: skip


def fields(tree: ast.Module, cls: str) -> list[dict]:
    """Annotated class attributes: a dataclass's or msgspec Struct's fields."""
    return [
        {"name": n.target.id, "default": n.value and ast.unparse(n.value)}
        for n in find_class(tree, cls).body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    ]


def typed_fields(tree: ast.Module, cls: str, aliases: dict[str, str], configs: dict[str, ast.ClassDef]) -> list[dict]:
    """A dataclass's fields with their annotations, type aliases (``ModelDType``, ``BlockSize``)
    written out, so a reader that cannot import vLLM can check a value's type, and the bounds
    (``ge``, ``gt``, ``le``, ``lt``) of the config field a default comes from."""
    out = []
    for n in find_class(tree, cls).body:
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            field = {"name": n.target.id, "type": resolve_aliases(n.annotation, aliases)}
            field["default"] = n.value and ast.unparse(n.value)
            if bounds := config_bounds(n.value, configs):
                field["bounds"] = bounds
            out.append(field)
    return out


BOUND_NAMES = ("ge", "gt", "le", "lt")


def config_bounds(default: ast.expr | None, configs: dict[str, ast.ClassDef]) -> dict[str, float]:
    """``EngineArgs.x = SomeConfig.y`` where ``SomeConfig.y = Field(..., ge=...)``: its numeric bounds."""
    if not (isinstance(default, ast.Attribute) and isinstance(default.value, ast.Name)):
        return {}
    cls = configs.get(default.value.id)
    field = next(
        (
            n.value
            for n in (cls.body if cls else [])
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.target.id == default.attr
        ),
        None,
    )
    if not (isinstance(field, ast.Call) and ast.unparse(field.func) in ("Field", "pydantic.Field")):
        return {}
    out = {}
    for kw in field.keywords:
        if kw.arg in BOUND_NAMES:
            try:
                out[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                continue
    return out


def config_classes(sources: dict[str, str]) -> dict[str, ast.ClassDef]:
    """The classes of ``vllm/config`` (``ModelConfig``, ``CacheConfig``...), where the bounds are."""
    return {
        n.name: n
        for path, text in sources.items()
        if path.startswith("vllm/config")
        for n in ast.parse(text).body
        if isinstance(n, ast.ClassDef)
    }


class _Aliases(ast.NodeTransformer):
    def __init__(self, aliases: dict[str, str]):
        self.aliases = aliases

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.aliases:
            return self.visit(ast.parse(self.aliases[node.id], mode="eval").body)
        return node


def resolve_aliases(annotation: ast.expr, aliases: dict[str, str]) -> str:
    """The annotation's text with known aliases substituted (recursively); ``Annotated[T, ...]``
    becomes ``T``, the metadata being vLLM's CLI help, not a type."""
    node = _Aliases(aliases).visit(ast.parse(ast.unparse(annotation), mode="eval").body)
    while isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("Annotated", "typing.Annotated"):
        node = node.slice.elts[0] if isinstance(node.slice, ast.Tuple) else node.slice
    return ast.unparse(node)


#: A module-level type alias: ``Name = Literal[...]`` (or Union/Optional), or ``Name: TypeAlias = ...``.
ALIAS = re.compile(r"^([A-Z]\w*)\s*(?::\s*TypeAlias\s*)?=\s*(Literal|Union|Optional)\[", re.M)


def type_aliases(sources: dict[str, str], names: set[str]) -> dict[str, str]:
    """Literal/Union aliases named ``names`` defined at module level anywhere in the package; a
    name defined differently in two modules stays unresolved (its values go unchecked)."""
    found: dict[str, set[str]] = {}
    for text in sources.values():
        if not any(m.group(1) in names for m in ALIAS.finditer(text)):
            continue
        for node in ast.parse(text).body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
            target = node.target if isinstance(node, ast.AnnAssign) else target
            if isinstance(target, ast.Name) and target.id in names and node.value is not None:
                found.setdefault(target.id, set()).add(ast.unparse(node.value))
    return {name: next(iter(values)) for name, values in found.items() if len(values) == 1}


def package_sources(where: Path) -> dict[str, str]:
    """Every module of the vllm package, by path (for its type aliases)."""
    if where.is_dir():
        return {str(p.relative_to(where)): p.read_text() for p in (where / "vllm").rglob("*.py")}
    with zipfile.ZipFile(where) as zf:
        return {n: zf.read(n).decode() for n in zf.namelist() if n.startswith("vllm/") and n.endswith(".py")}


def engine_args(where: Path, tree: ast.Module) -> list[dict]:
    """``EngineArgs``' fields with resolved types and bounds: the options a manifest may give vLLM."""
    names = {
        n.id
        for f in find_class(tree, "EngineArgs").body
        if isinstance(f, ast.AnnAssign)
        for n in ast.walk(f.annotation)
        if isinstance(n, ast.Name)
    }
    sources = package_sources(where)
    return typed_fields(tree, "EngineArgs", type_aliases(sources, names), config_classes(sources))


def read_files(where: Path) -> tuple[dict[str, str], str, dict]:
    """The source files, the METADATA text and where they came from: a wheel or site-packages."""
    if where.is_dir():
        meta = next(
            d / "METADATA"
            for d in sorted(where.glob("vllm*.dist-info"))
            if "vllm/__init__.py" in (d / "RECORD").read_text()
        )
        files = {f: (where / f).read_text() for f in FILES}
        return files, meta.read_text(), {"installed": meta.parent.name}
    with zipfile.ZipFile(where) as zf:
        files = {f: zf.read(f).decode() for f in FILES}
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    return files, meta, {"wheel": where.name, "sha256": hashlib.sha256(where.read_bytes()).hexdigest()}


def record(where: Path) -> dict:
    files, meta, origin = read_files(where)
    src = {f: ast.parse(text) for f, text in files.items()}
    fields_of = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in meta.splitlines() if ": " in line}
    version, dist = fields_of["Version"], fields_of["Name"]
    llm, sp, ea, out, async_llm, stats = (src[f] for f in FILES)
    return {
        "what": "Call signatures of vLLM that infpop's vLLM adapter uses, parsed with ast from the released "
        "package's source. tests/toolkit/test_vllm_engine.py checks the adapter's arguments against every recorded "
        "version, and a recording against the installed vllm where one is installed.",
        "vllm_version": version,
        "source": {
            **origin,
            "distribution": dist,
            "url": f"https://pypi.org/project/{dist}/{version}/",
            "files": list(FILES),
        },  # fmt: skip
        "LLM.__init__": params(method(llm, "LLM", "__init__")),
        "LLM.generate": params(method(llm, "LLM", "generate")),
        "SamplingParams": fields(sp, "SamplingParams"),
        "EngineArgs": engine_args(where, ea),
        "CompletionOutput": fields(out, "CompletionOutput"),
        "RequestOutput.__init__": params(method(out, "RequestOutput", "__init__")),
        "AsyncLLM.generate": params(method(async_llm, "AsyncLLM", "generate")),
        "AsyncLLM.from_engine_args": params(method(async_llm, "AsyncLLM", "from_engine_args")),
        "RequestStateStats": fields(stats, "RequestStateStats"),
    }


if __name__ == "__main__":
    print(json.dumps(record(Path(sys.argv[1])), indent=1))
