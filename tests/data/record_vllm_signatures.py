"""Record the vLLM signatures infpop's adapter relies on, from a released wheel, without importing it.

vLLM is CUDA-only, so CI cannot install it; tests/test_vllm_engine.py reads the JSON this writes.
Re-run when the vllm pin of containers/vllm-*.lock.toml changes:

    pip download --no-deps --only-binary :all: --platform manylinux1_x86_64 vllm==X -d /tmp/w
    python tests/data/record_vllm_signatures.py /tmp/w/vllm-X-*.whl > tests/data/vllm_X_signatures.json
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import zipfile
from pathlib import Path

FILES = ("vllm/entrypoints/llm.py", "vllm/sampling_params.py", "vllm/engine/arg_utils.py", "vllm/outputs.py")


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


def method(tree: ast.Module, cls: str, name: str) -> ast.FunctionDef:
    """The implementation, not an ``@overload`` stub."""
    return next(
        n for n in find_class(tree, cls).body
        if isinstance(n, ast.FunctionDef) and n.name == name
        and not any(isinstance(d, ast.Name) and d.id == "overload" for d in n.decorator_list)
    )  # fmt: skip


def fields(tree: ast.Module, cls: str) -> list[dict]:
    """Annotated class attributes: a dataclass's or msgspec Struct's fields."""
    return [
        {"name": n.target.id, "default": n.value and ast.unparse(n.value)}
        for n in find_class(tree, cls).body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    ]


def record(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as zf:
        src = {f: ast.parse(zf.read(f).decode()) for f in FILES}
        version = next(line.split(":", 1)[1].strip() for line in zf.read(
            next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode().splitlines()
            if line.startswith("Version:"))  # fmt: skip
    llm, sp, ea, out = (src[f] for f in FILES)
    return {
        "what": "Call signatures of vLLM that infpop's vLLM adapter uses, parsed with ast from the released "
        "wheel's source. tests/test_vllm_engine.py checks the adapter's arguments against this copy when vllm "
        "is not importable (it is CUDA-only and cannot be installed on CI).",
        "vllm_version": version,
        "source": {
            "wheel": wheel.name,
            "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "url": f"https://pypi.org/project/vllm/{version}/",
            "files": list(FILES),
        },  # fmt: skip
        "LLM.__init__": params(method(llm, "LLM", "__init__")),
        "LLM.generate": params(method(llm, "LLM", "generate")),
        "SamplingParams": fields(sp, "SamplingParams"),
        "EngineArgs": [f["name"] for f in fields(ea, "EngineArgs")],
        "CompletionOutput": fields(out, "CompletionOutput"),
        "RequestOutput.__init__": params(method(out, "RequestOutput", "__init__")),
    }


if __name__ == "__main__":
    print(json.dumps(record(Path(sys.argv[1])), indent=1))
