"""The study manifest: one YAML file that says what to measure.

The schema is defined once here and imported by the planner, the trial runner and the
analysis. Validation errors name the file, the field path and the offending value, so a
user can fix a 200-line manifest without reading a traceback.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from infpop.errors import InputError
from infpop.physics import Architecture
from infpop.plugins import ENGINES, SYNTHETIC, WORKLOADS

#: Names that become directory names in the result tree.
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"

Dtype = Literal["float16", "bfloat16", "float32", "auto"]
InputOrder = Literal["natural", "random", "length-ascending"]
#: ``fixed``: every prompt generates exactly ``max_new_tokens`` (the InfPop study);
#: ``reference``: each prompt generates its dataset reference's length in tokens, capped at
#: ``max_new_tokens`` (the workload study).
OutputLength = Literal["fixed", "reference"]

#: The study's workload; trial ids name the workload only when it is another one.
DEFAULT_WORKLOAD = "humaneval-infilling"


class _Strict(BaseModel):
    #: No manifest number is ever infinite or NaN: ``.inf`` as a rate bound or ``.nan`` as a size
    #: would pass every ``gt``/``ge`` check and only fail (or hang) on the cluster.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(_Strict):
    """A model to measure. ``source`` is a hub id or, when it starts with ``/``, ``./``,
    ``../`` or ``~``, a local directory (resolved against the manifest's folder)."""

    name: str = Field(pattern=SAFE_NAME, description="display name; also the directory name in results")
    source: str = Field(min_length=1)
    revision: str | None = None
    params_b: float | None = Field(default=None, gt=0, description="parameter count in billions")
    humaneval_pass1: float | None = Field(default=None, ge=0, le=100, description="HumanEval pass@1 in %")
    trust_remote_code: bool = False
    #: The model's shape (from its config.json), for the HPO search's memory and roofline model.
    architecture: Architecture | None = None

    @property
    def is_local(self) -> bool:
        return self.source.startswith(("/", "./", "../", "~"))


class FixedLength(_Strict):
    kind: Literal["fixed"]
    tokens: int = Field(gt=0)


class UniformLength(_Strict):
    """Integers drawn uniformly from ``[min, max]``."""

    kind: Literal["uniform"]
    min: int = Field(gt=0)
    max: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> UniformLength:
        if self.max < self.min:
            raise ValueError(f"max {self.max} is below min {self.min}")
        return self


class NormalLength(_Strict):
    """Normal around ``mean``, rounded and clipped to ``[min, max]``."""

    kind: Literal["normal"]
    mean: float = Field(gt=0)
    std: float = Field(ge=0)
    min: int = Field(default=1, gt=0)
    max: int | None = Field(default=None, gt=0)


class LognormalLength(_Strict):
    """Log-normal with the given ``median`` and log-space ``sigma`` (long-tailed, like chat
    answers), rounded and clipped to ``[min, max]``."""

    kind: Literal["lognormal"]
    median: float = Field(gt=0)
    sigma: float = Field(ge=0)
    min: int = Field(default=1, gt=0)
    max: int | None = Field(default=None, gt=0)


#: A token-length distribution of the synthetic workload.
LengthSpec = Annotated[FixedLength | UniformLength | NormalLength | LognormalLength, Field(discriminator="kind")]


class SyntheticSpec(_Strict):
    """Prompts generated from length distributions, seeded by the workload's ``seed``."""

    n_prompts: int = Field(gt=0)
    input_tokens: LengthSpec
    output_tokens: LengthSpec


class WorkloadSpec(_Strict):
    """The prompts a trial sends. ``limit`` keeps the first N records in file order, before
    ordering, so a small demo still sees the dataset's spread of prompt lengths.

    A dataset workload reads ``path`` (fetched from ``url`` once, sha256-checked); the
    ``synthetic`` workload is generated from its ``synthetic`` section and reads no file.
    ``label`` tells two workloads of one manifest apart (e.g. two synthetic shapes)."""

    name: str = Field(default=DEFAULT_WORKLOAD, pattern=SAFE_NAME)
    label: str | None = Field(default=None, pattern=SAFE_NAME)
    path: str | None = None
    url: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    limit: int | None = Field(default=None, gt=0)
    order: InputOrder = "length-ascending"
    seed: int = 0
    synthetic: SyntheticSpec | None = None

    @field_validator("name")
    @classmethod
    def _known_workload(cls, name: str) -> str:
        known = WORKLOADS.names() | {SYNTHETIC}
        if name not in known:
            raise ValueError(f"unknown workload {name!r}; known: {', '.join(sorted(known))}")
        return name

    @model_validator(mode="after")
    def _needs_a_source(self) -> WorkloadSpec:
        if self.name == SYNTHETIC:
            if self.synthetic is None:
                raise ValueError(
                    "the synthetic workload needs a 'synthetic' section (n_prompts, input_tokens, output_tokens)"
                )
            if self.path is not None or self.url is not None:
                raise ValueError("the synthetic workload reads no file: drop 'path' and 'url'")
        elif self.synthetic is not None:
            raise ValueError(f"a 'synthetic' section belongs to name {SYNTHETIC!r}, not {self.name!r}")
        elif self.path is None and self.url is None:
            raise ValueError("give a 'path' or a 'url' (or both: the url fills the path once)")
        return self

    @property
    def id(self) -> str:
        """What trial ids and tables call this workload: the label, else the name."""
        return self.label or self.name


class _Validity(_Strict):
    """MLPerf LoadGen's rule: a run shorter than this, or with fewer requests, is marked invalid."""

    min_duration_s: float = Field(default=0.0, ge=0)
    min_requests: int = Field(default=0, ge=0)


class OfflineScenario(_Validity):
    """All prompts, sent in batches of the trial's batch size (the study's protocol)."""

    kind: Literal["offline"] = "offline"


class GoodputTargets(_Strict):
    """Latency targets a request must all meet to count towards goodput (``vllm bench serve
    --goodput e2el:.. ttft:.. tpot:..``, in seconds here; docs/metrics.md states the differences)."""

    latency_s: float | None = Field(default=None, gt=0, description="end-to-end, from arrival")
    ttft_s: float | None = Field(default=None, gt=0, description="time to first token, from arrival")
    tpot_s: float | None = Field(default=None, gt=0, description="time per output token after the first")
    latency_per_token_s: float | None = Field(default=None, gt=0, description="end-to-end over output tokens")

    @model_validator(mode="after")
    def _some_target(self) -> GoodputTargets:
        if all(v is None for v in (self.latency_s, self.ttft_s, self.tpot_s, self.latency_per_token_s)):
            raise ValueError("give at least one of latency_s, ttft_s, tpot_s, latency_per_token_s")
        return self


class Slo(_Strict):
    """A latency service-level objective: p99s, in seconds, each measured as the online scenario
    measures it (from arrival; :mod:`infpop.scenarios.metrics`); a rate meets it when every p99
    given is at or below its target."""

    ttft_p99_s: float | None = Field(default=None, gt=0, description="p99 time to first token")
    tpot_p99_s: float | None = Field(default=None, gt=0, description="p99 time per output token after the first")
    e2e_p99_s: float | None = Field(default=None, gt=0, description="p99 end-to-end latency")

    @model_validator(mode="after")
    def _some_target(self) -> Slo:
        if self.ttft_p99_s is None and self.tpot_p99_s is None and self.e2e_p99_s is None:
            raise ValueError("give at least one of ttft_p99_s, tpot_p99_s, e2e_p99_s")
        return self


class CapacitySearch(_Strict):
    """The search for the highest request rate that meets the SLO (:mod:`infpop.capacity`):
    probe ``min_rate`` and ``max_rate``, then bisect the bracket until it is narrower than
    ``tolerance`` (requests/s), or until ``max_probes`` probes ran."""

    min_rate: float = Field(gt=0, description="requests/s; the search stops if the SLO fails here")
    max_rate: float = Field(gt=0, description="requests/s; the search stops if the SLO holds here")
    tolerance: float = Field(gt=0, description="requests/s: the bracket's width at which the search stops")
    max_probes: int = Field(default=12, ge=2, description="a bound on the search's time")

    @model_validator(mode="after")
    def _a_bracket(self) -> CapacitySearch:
        if self.max_rate <= self.min_rate:
            raise ValueError(f"max_rate {self.max_rate:g} is not above min_rate {self.min_rate:g}")
        if self.tolerance >= self.max_rate - self.min_rate:
            raise ValueError(
                f"tolerance {self.tolerance:g} is not below max_rate - min_rate ({self.max_rate - self.min_rate:g}): "
                "there is nothing to search"
            )
        return self


class OnlineScenario(_Validity):
    """Requests arrive as a seeded Poisson process at each rate for ``duration_s``, and the
    engine serves them as they come. Each rate is one trial; the arrival times depend only on
    (rate, duration_s, seed), so a rerun replays the same load. With ``capacity`` (and ``slo``)
    instead of ``request_rates``, each configuration is one trial that searches the rate
    (:mod:`infpop.capacity`), every probe measured as a trial at one rate is."""

    kind: Literal["online"]
    request_rates: list[float] | None = Field(
        default=None, min_length=1, description="requests per second, one trial each"
    )
    slo: Slo | None = None
    capacity: CapacitySearch | None = None
    duration_s: float = Field(gt=0, description="requests arrive during this window; every one is served")
    seed: int = 0
    goodput: GoodputTargets | None = None
    min_duration_s: float = Field(default=60.0, ge=0)
    min_requests: int = Field(default=100, ge=0)

    @field_validator("request_rates")
    @classmethod
    def _positive_rates(cls, values: list[float] | None) -> list[float] | None:
        if values is None:
            return None
        bad = [v for v in values if v <= 0]
        if bad:
            raise ValueError(f"must be positive, got {bad}")
        if len({f"{v:g}" for v in values}) != len(values):
            raise ValueError(f"has duplicates: {values}")
        return sorted(values)

    @field_validator("duration_s")
    @classmethod
    def _can_be_valid(cls, value: float, info: ValidationInfo) -> float:
        minimum = info.data.get("min_duration_s")
        if minimum is not None and value < minimum:
            raise ValueError(f"is below min_duration_s {minimum:g}: every run would be invalid")
        return value

    @model_validator(mode="after")
    def _rates_or_search(self) -> OnlineScenario:
        if (self.request_rates is None) == (self.capacity is None):
            raise ValueError("give request_rates (one trial per rate) or capacity (a search of the rate), one of them")
        if (self.capacity is None) != (self.slo is None):
            raise ValueError("capacity and slo go together: the search looks for the highest rate that meets the slo")
        return self


Scenario = Annotated[OfflineScenario | OnlineScenario, Field(discriminator="kind")]


class Warmup(_Strict):
    """Untimed batches before measuring: the first batches after a model load, or at a new
    batch shape, pay for kernel selection, allocator growth and caches, which a long-running
    server pays once. Their time is recorded (``warmup_s``) and never counted in throughput.
    The published study warmed nothing: ``{trial_batches: 0}`` repeats its protocol."""

    group_batches: int = Field(default=0, ge=0, description="once per job after the model loads")
    trial_batches: int = Field(default=1, ge=0, description="before each trial's timed loop, at its batch size")


def _unique_positive(values: list[int]) -> list[int]:
    if not values:
        raise ValueError("must not be empty")
    if len(set(values)) != len(values):
        raise ValueError(f"has duplicates: {values}")
    return sorted(values)


def _first_repeat(names: list[str]) -> str | None:
    """The first name, in sorted order, that occurs more than once (the one an error names), or None."""
    return min((n for n in set(names) if names.count(n) > 1), default=None)


def _applies(capability: str, info: ValidationInfo) -> None:
    """Refuse a field that only engines with ``capability`` read when no listed engine has it."""
    if not ENGINES.having(capability, info.data.get("engines", [])):
        raise ValueError(f"applies to {ENGINES.having(capability)}, none of which is in engines")


class AdaptiveRepetitions(_Strict):
    """``repetitions: {min, max, target_rel_halfwidth}``: at least ``min`` and at most ``max``
    repetitions per configuration, stopping once the 95% interval of its mean throughput is
    within ``target_rel_halfwidth`` of the mean (:mod:`infpop.adaptive`)."""

    min: int = Field(ge=2, description="an interval needs two values")
    max: int
    target_rel_halfwidth: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _max_not_below_min(self) -> AdaptiveRepetitions:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


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
    output_length: OutputLength = "fixed"
    dtype: Dtype = "float16"
    #: Several workloads are an axis (each gets its own jobs and a suffix in trial ids).
    workloads: list[WorkloadSpec] | None = Field(default=None, min_length=1)
    workload: WorkloadSpec | None = Field(default=None, validate_default=True)
    scenario: Scenario = OfflineScenario()
    #: A number of repetitions, or adaptive ones (:class:`AdaptiveRepetitions`).
    repetitions: int | AdaptiveRepetitions = 1
    warmup: Warmup = Warmup()
    prune_oom: bool = Field(default=True, description="after an OOM at batch b, skip larger batches")
    trial_timeout_s: float | None = Field(default=None, gt=0)
    engine_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: A memory-sized engine's (vLLM's) share of GPU memory, and so its KV-cache size, swept like
    #: batch size.
    gpu_memory_utilization: list[float] | None = None
    #: A memory-sized engine's KV-cache size in bytes, swept like batch size: the memory axis on
    #: CPU, where vLLM's default would take 90% of the machine's memory.
    kv_cache_bytes: list[int] | None = None
    #: The prefix cache of engines that have one (vLLM's automatic prefix caching), swept like
    #: batch size. Off by default: the study's vLLM had none and HF caches nothing, and this
    #: protocol resends the same prompts (warm-up, repetitions, batch sizes, online request i
    #: sends prompt i mod n), which a cache would serve.
    prefix_caching: list[bool] = Field(default=[False], min_length=1, validate_default=True)
    #: The engines' deterministic modes (vLLM's batch invariance, HF's deterministic algorithms),
    #: swept like batch size; off by default, as the study ran. Where a mode cannot run is refused
    #: at plan time (:mod:`infpop.determinism`).
    deterministic: list[StrictBool] = Field(default=[False], min_length=1)

    @field_validator("gpu_counts", "batch_sizes", "max_new_tokens")
    @classmethod
    def _positive_sorted(cls, values: list[int]) -> list[int]:
        bad = [v for v in values if v <= 0]
        if bad:
            raise ValueError(f"must be positive integers, got {bad}")
        return _unique_positive(values)

    @field_validator("repetitions")
    @classmethod
    def _at_least_one(cls, value: int | AdaptiveRepetitions) -> int | AdaptiveRepetitions:
        # here, not as a constraint of the int: a union's failed constraint would report both members
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1, or {min, max, target_rel_halfwidth}")
        return value

    @field_validator("engines")
    @classmethod
    def _known_engines(cls, values: list[str]) -> list[str]:
        known = ENGINES.names()
        unknown = [v for v in values if v not in known]
        if unknown:
            raise ValueError(f"unknown engine {unknown[0]!r}; known: {', '.join(sorted(known))}")
        if len(set(values)) != len(values):
            raise ValueError(f"has duplicates: {values}")
        for engine in values:  # a plugin's declaration is read here, so that a bad one is named here
            ENGINES.entry(engine)
        return values

    @field_validator("scenario")
    @classmethod
    def _served_by_every_engine(cls, scenario: OfflineScenario | OnlineScenario, info: ValidationInfo) -> Scenario:
        for engine in info.data.get("engines", []):
            serves = ENGINES.entry(engine).capabilities.scenarios
            if scenario.kind not in serves:
                raise ValueError(
                    f"engines: {engine!r} does not serve the {scenario.kind} scenario "
                    f"(its plugin declares scenarios: {', '.join(sorted(serves))})"
                )
        return scenario

    @field_validator("models")
    @classmethod
    def _unique_model_names(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        if (repeat := _first_repeat([m.name for m in models])) is not None:
            raise ValueError(f"model names must be unique, {repeat!r} repeats")
        return models

    @field_validator("engine_options")
    @classmethod
    def _options_for_listed_engines(cls, options: dict[str, dict[str, Any]], info: ValidationInfo) -> dict:
        engines = info.data.get("engines", [])
        extra = sorted(set(options) - set(engines))
        if extra:
            raise ValueError(f"options for {extra[0]!r}, which is not in engines {engines}")
        return options

    @field_validator("workloads")
    @classmethod
    def _unique_workloads(cls, workloads: list[WorkloadSpec] | None) -> list[WorkloadSpec] | None:
        if (repeat := _first_repeat([w.id for w in workloads or []])) is not None:
            raise ValueError(f"workloads must differ by name or label, {repeat!r} repeats")
        return workloads

    @field_validator("workload")
    @classmethod
    def _one_or_several(cls, workload: WorkloadSpec | None, info: ValidationInfo) -> WorkloadSpec | None:
        if "workloads" not in info.data:  # 'workloads' itself failed and is reported
            return workload
        several = info.data["workloads"]
        if workload is None and several is None:
            raise ValueError("give 'workload' (one) or 'workloads' (several)")
        if workload is not None and several is not None:
            raise ValueError("give 'workload' or 'workloads', not both")
        return workload

    @field_validator("gpu_memory_utilization")
    @classmethod
    def _memory_fractions(cls, values: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if values is None:
            return None
        bad = [v for v in values if not 0 < v <= 1]
        if bad or not values:
            raise ValueError(f"must be fractions in (0, 1], got {bad or values}")
        if len({f"{v:g}" for v in values}) != len(values):
            raise ValueError(f"has duplicates: {values}")
        _applies("memory_sized", info)
        for engine in ENGINES.having("memory_sized", info.data.get("engine_options", {})):
            if "gpu_memory_utilization" in info.data["engine_options"][engine]:
                raise ValueError(f"engine_options.{engine} sets it too; keep one")
        return sorted(values)

    @field_validator("kv_cache_bytes")
    @classmethod
    def _cache_sizes(cls, values: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if values is None:
            return None
        bad = [v for v in values if v <= 0]
        if bad or not values:
            raise ValueError(f"must be positive byte counts, got {bad or values}")
        if len(set(values)) != len(values):
            raise ValueError(f"has duplicates: {values}")
        _applies("memory_sized", info)
        if info.data.get("gpu_memory_utilization"):
            raise ValueError("gpu_memory_utilization is swept too; give one memory axis")
        for engine in ENGINES.having("memory_sized", info.data.get("engine_options", {})):
            if "kv_cache_memory_bytes" in info.data["engine_options"][engine]:
                raise ValueError(f"engine_options.{engine} sets kv_cache_memory_bytes too; keep one")
        return sorted(values)

    @field_validator("prefix_caching")
    @classmethod
    def _caching_axis(cls, values: list[bool], info: ValidationInfo) -> list[bool]:
        if len(set(values)) != len(values):
            raise ValueError(f"has duplicates: {values}")
        if values != [False]:
            _applies("prefix_cache", info)
        for engine in ENGINES.having("prefix_cache", info.data.get("engine_options", {})):
            if "enable_prefix_caching" in info.data["engine_options"][engine]:
                raise ValueError(f"engine_options.{engine} sets enable_prefix_caching too; keep one")
        return sorted(values)

    @field_validator("deterministic")
    @classmethod
    def _determinism_axis(cls, values: list[bool], info: ValidationInfo) -> list[bool]:
        if len(set(values)) != len(values):
            raise ValueError(f"has duplicates: {values}")
        lacking = [e for e in info.data.get("engines", []) if not ENGINES.entry(e).capabilities.determinism]
        if True in values and lacking:
            raise ValueError(f"true: engine {lacking[0]!r} has no deterministic mode (its plugin declares none)")
        return sorted(values)

    @property
    def all_workloads(self) -> list[WorkloadSpec]:
        """The workload axis: the one ``workload`` or every entry of ``workloads``."""
        return self.workloads if self.workloads is not None else [self.workload]

    @property
    def max_repetitions(self) -> int:
        """The repetitions planned per configuration: all of them, or adaptive ones' ``max``."""
        return self.repetitions.max if isinstance(self.repetitions, AdaptiveRepetitions) else self.repetitions


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
