"""Record the vLLM signatures infpop's adapter relies on, from a released wheel or an installed
package, without importing it.

tests/test_vllm_engine.py checks the adapter's arguments against every recorded version: the GPU
images' pins (containers/vllm-*.lock.toml), which CI cannot install, and the CPU build it runs.
Re-run when a pin changes:

    pip download --no-deps --only-binary :all: --platform manylinux1_x86_64 vllm==X -d /tmp/w
    python tests/data/record_vllm_signatures.py /tmp/w/vllm-X-*.whl > tests/data/vllm_X_signatures.json
    # the CPU build, from the install (`make install`):
    python tests/data/record_vllm_signatures.py .venv/lib/python3.*/site-packages > tests/data/vllm_X_signatures.json
"""

from __future__ import annotations

import ast
import hashlib
import json
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
        "package's source. tests/test_vllm_engine.py checks the adapter's arguments against every recorded "
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
        "EngineArgs": [f["name"] for f in fields(ea, "EngineArgs")],
        "CompletionOutput": fields(out, "CompletionOutput"),
        "RequestOutput.__init__": params(method(out, "RequestOutput", "__init__")),
        "AsyncLLM.generate": params(method(async_llm, "AsyncLLM", "generate")),
        "AsyncLLM.from_engine_args": params(method(async_llm, "AsyncLLM", "from_engine_args")),
        "RequestStateStats": fields(stats, "RequestStateStats"),
    }


if __name__ == "__main__":
    print(json.dumps(record(Path(sys.argv[1])), indent=1))
