"""The study manifest: one YAML file that says what to measure.

The schema is defined once here and imported by the planner, the trial runner and the
analysis. Validation errors name the file, the field path and the offending value, so a
user can fix a 200-line manifest without reading a traceback.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from infpop.engines import known_engines
from infpop.errors import InputError

#: Names that become directory names in the result tree.
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"

Dtype = Literal["float16", "bfloat16", "float32", "auto"]
InputOrder = Literal["natural", "random", "length-ascending"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """A model to measure. ``source`` is a hub id or, when it starts with ``/``, ``./``,
    ``../`` or ``~``, a local directory (resolved against the manifest's folder)."""

    name: str = Field(pattern=SAFE_NAME, description="display name; also the directory name in results")
    source: str = Field(min_length=1)
    revision: str | None = None
    params_b: float | None = Field(default=None, gt=0, description="parameter count in billions")
    humaneval_pass1: float | None = Field(default=None, ge=0, le=100, description="HumanEval pass@1 in %")
    trust_remote_code: bool = False

    @property
    def is_local(self) -> bool:
        return self.source.startswith(("/", "./", "../", "~"))


class WorkloadSpec(_Strict):
    """The prompts a trial sends. ``limit`` keeps the first N records in file order, before
    ordering, so a small demo still sees the dataset's spread of prompt lengths."""

    name: str = "humaneval-infilling"
    path: str | None = None
    url: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    limit: int | None = Field(default=None, gt=0)
    order: InputOrder = "length-ascending"
    seed: int = 0

    @model_validator(mode="after")
    def _needs_a_source(self) -> WorkloadSpec:
        if self.path is None and self.url is None:
            raise ValueError("give a 'path' or a 'url' (or both: the url fills the path once)")
        return self


def _unique_positive(values: list[int]) -> list[int]:
    if not values:
        raise ValueError("must not be empty")
    if len(set(values)) != len(values):
        raise ValueError(f"has duplicates: {values}")
    return sorted(values)


class Manifest(_Strict):
    study: str = Field(pattern=SAFE_NAME)
    description: str = ""
    output_root: str = "runs"
    models: list[ModelSpec] = Field(min_length=1)
    engines: list[str] = Field(min_length=1)
    partitions: list[str] = Field(default=["local"], min_length=1)
    gpu_counts: list[int] = Field(min_length=1)
    batch_sizes: list[int] = Field(min_length=1)
    max_new_tokens: list[int] = Field(min_length=1)
    dtype: Dtype = "float16"
    workload: WorkloadSpec
    repetitions: int = Field(default=1, ge=1)
    prune_oom: bool = Field(default=True, description="after an OOM at batch b, skip larger batches")
    trial_timeout_s: float | None = Field(default=None, gt=0)
    engine_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("gpu_counts", "batch_sizes", "max_new_tokens")
    @classmethod
    def _positive_sorted(cls, values: list[int]) -> list[int]:
        bad = [v for v in values if v <= 0]
        if bad:
            raise ValueError(f"must be positive integers, got {bad}")
        return _unique_positive(values)

    @field_validator("engines")
    @classmethod
    def _known_engines(cls, values: list[str]) -> list[str]:
        known = known_engines()
        unknown = [v for v in values if v not in known]
        if unknown:
            raise ValueError(f"unknown engine {unknown[0]!r}; known: {', '.join(sorted(known))}")
        if len(set(values)) != len(values):
            raise ValueError(f"has duplicates: {values}")
        return values

    @field_validator("models")
    @classmethod
    def _unique_model_names(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique, {dupes[0]!r} repeats")
        return models

    @field_validator("engine_options")
    @classmethod
    def _options_for_listed_engines(cls, options: dict[str, dict[str, Any]], info: ValidationInfo) -> dict:
        engines = info.data.get("engines", [])
        extra = sorted(set(options) - set(engines))
        if extra:
            raise ValueError(f"options for {extra[0]!r}, which is not in engines {engines}")
        return options


class LoadedManifest(BaseModel):
    """A validated manifest plus where it came from: relative paths resolve against its folder."""

    model_config = ConfigDict(frozen=True)

    manifest: Manifest
    path: Path
    sha256: str

    def resolve(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    @property
    def output_root(self) -> Path:
        return self.resolve(self.manifest.output_root)


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid manifest ({err.error_count()} error{'s' if err.error_count() > 1 else ''})"]
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        got = "" if e["type"] == "missing" else f" (got {_short(e['input'])})"
        lines.append(f"  {_field_path(e['loc'])}: {msg}{got}")
    return "\n".join(lines)


def parse_manifest(text: str, source: str = "<manifest>") -> Manifest:
    """Validate manifest text; raise :class:`InputError` with a readable message."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise InputError(f"{source}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: (top level): expected a mapping of fields, got {type(data).__name__} {data!r}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        raise InputError(format_validation_error(source, err)) from None


def load_manifest(path: str | Path) -> LoadedManifest:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read manifest: {exc.strerror}") from None
    manifest = parse_manifest(raw.decode("utf-8", errors="replace"), str(path))
    return LoadedManifest(manifest=manifest, path=path.resolve(), sha256=hashlib.sha256(raw).hexdigest())
