"""The result record: one JSON file per trial, written atomically to shared storage.

A file exists only once its trial has finished (temp file in the same directory, fsync,
rename), so a crash, OOM kill, timeout or preemption never leaves a half-written result, and
"does the file exist" is the whole resume protocol.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from infpop.atomic import write_atomic
from infpop.capacity import Capacity
from infpop.fingerprints import PATTERN
from infpop.manifest import SAFE_NAME
from infpop.plan import TrialSpec
from infpop.scenarios.metrics import OnlineMetrics

SCHEMA_VERSION = 1

Status = Literal["ok", "oom", "error", "timeout", "skipped_oom", "skipped_enough"]
#: How requests were grouped into engine work: fixed batches sent whole (``static``), batches
#: formed from the requests waiting when the engine frees up (``dynamic``), or requests joining
#: and leaving the running batch at every step (``continuous``, vLLM's scheduler).
Batching = Literal["static", "dynamic", "continuous"]
#: Statuses a rerun keeps; an ``error`` is retried, since it may have been transient.
DONE = frozenset({"ok", "oom", "timeout", "skipped_oom", "skipped_enough"})


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str
    gpus: list[str]
    versions: dict[str, str]
    manifest_sha256: str
    slurm: dict[str, str] = Field(default_factory=dict)
    container_image: str | None = None
    container_sha256: str | None = None
    started_at: str
    finished_at: str


class GpuTelemetry(BaseModel):
    """What NVML saw of one GPU during a trial's timed loop."""

    model_config = ConfigDict(extra="forbid")

    #: The GPU as the trial's allocation named it (an index or a ``GPU-``/``MIG-`` UUID) and its name.
    id: str
    name: str
    #: Joules over the timed loop, and whence: the GPU's total-energy counter (Volta and newer)
    #: or power samples integrated over time (older GPUs, or where the counter is not supported).
    energy_j: float | None
    energy_from: Literal["counter", "power samples"] | None
    mean_power_w: float | None
    peak_power_w: float | None
    peak_memory_used_bytes: int | None
    mean_sm_clock_mhz: float | None
    mean_utilization_pct: float | None
    samples: int


class TrialTelemetry(BaseModel):
    """Energy and power of a trial's timed loop (:mod:`infpop.telemetry`). ``None`` is *not
    measured* (no NVML, no readable RAPL counter), never zero; ``unmeasured`` says why."""

    model_config = ConfigDict(extra="forbid")

    gpus: list[GpuTelemetry] = Field(default_factory=list)
    #: Sum over the trial's GPUs; ``None`` unless every one of them was measured.
    gpu_energy_j: float | None = None
    #: CPU packages' energy from RAPL (powercap), summed over the packages read.
    cpu_energy_j: float | None = None
    cpu_domains: list[str] = Field(default_factory=list)
    interval_s: float
    unmeasured: dict[str, str] = Field(default_factory=dict)

    @property
    def energy_parts(self) -> str | None:
        """Which parts :attr:`energy_j` sums (``gpu+cpu``, ``gpu``, ``cpu``), ``None`` for neither:
        a per-token energy must say what it counts."""
        parts = [name for name, e in (("gpu", self.gpu_energy_j), ("cpu", self.cpu_energy_j)) if e is not None]
        return "+".join(parts) or None

    @property
    def energy_j(self) -> float | None:
        """The parts measured, summed (:attr:`energy_parts`); ``None`` where none was."""
        parts = [e for e in (self.gpu_energy_j, self.cpu_energy_j) if e is not None]
        return sum(parts) if parts else None


class TrialResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    trial: TrialSpec
    status: Status
    error: str | None = None
    #: Adaptive repetitions (:mod:`infpop.adaptive`): why its configuration was measured no more,
    #: on the results where the trial loop decided it: ``target`` on each repetition recorded
    #: ``skipped_enough``, and on the last planned one when its interval reached the target
    #: there; ``max`` on the last planned one when it did not. ``None`` elsewhere, in fixed
    #: studies and in records from before it was kept.
    stop_reason: Literal["target", "max"] | None = None
    n_prompts: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    #: Wall seconds of the inference loop only; model loading is ``load_s``.
    wall_s: float = 0.0
    load_s: float | None = None
    #: Seconds of the untimed warm-up batches before this trial's loop, and once after the model
    #: loaded (shared by the trials of that run); never part of ``wall_s`` or throughput.
    #: ``None`` where none ran (and in records from before warm-up existed).
    warmup_s: float | None = None
    group_warmup_s: float | None = None
    #: Generated tokens per second of ``wall_s``; partial for an OOM or timeout, as the study kept it.
    throughput: float | None = None
    batch_latencies_s: list[float] = Field(default_factory=list)
    #: Whether the run counts (MLPerf LoadGen's rule: finished, long and large enough); never
    #: report an invalid run as if it were valid. ``None`` in records from before the rule.
    valid: bool | None = None
    invalid_reason: str | None = None
    #: Latency percentiles, goodput and per-request timings of an online trial.
    online: OnlineMetrics | None = None
    #: A capacity search's probes and outcome (:mod:`infpop.capacity`); the record's other fields
    #: are its probe at the capacity (else the last probe that decided the search).
    capacity: Capacity | None = None
    #: The batching discipline that served the trial, or would have served one recorded without
    #: running (``skipped_*``, a failed warm-up or load): like the engine's settings below, it is
    #: the group's, so such a record has its configuration's. ``None`` in records from before it
    #: was kept, and in skipped ones from before they carried it.
    batching: Batching | None = None
    #: KV-cache blocks the engine allocated at load (vLLM), and requests it preempted during the
    #: trial for want of them; ``None`` for engines without a paged KV cache.
    kv_cache_blocks: int | None = None
    num_preemptions: int | None = None
    #: Prompt tokens the engine served from its prefix cache during the timed run (vLLM); ``None``
    #: for engines without one and in records from before it was kept.
    cached_prompt_tokens: int | None = None
    #: The settings the engine resolved at load, read from its own resolved config (vLLM:
    #: max_num_seqs, max_num_batched_tokens, chunked prefill, prefix caching, eager / CUDA-graph
    #: mode, block size, KV-cache dtype and blocks, max_model_len); ``None`` where it reports none.
    resolved: dict[str, Any] | None = None
    #: Whether the engine's deterministic mode was on, read back from the library after load (HF:
    #: ``torch.are_deterministic_algorithms_enabled()``; vLLM: ``VLLM_BATCH_INVARIANT`` as vLLM's
    #: ``envs`` reads it); ``None`` for engines without one and in records from before it was kept.
    deterministic: bool | None = None
    #: Why a counter the engine could report is ``None`` in this run, by field name.
    unmeasured: dict[str, str] = Field(default_factory=dict)
    #: Per workload prompt, in the workload's order, the fingerprint of the token ids generated for
    #: it (:mod:`infpop.fingerprints`); ``None`` for a prompt the trial did not serve. The whole
    #: list is ``None`` where the engine did not report token ids (``unmeasured`` says why) and
    #: in records from before fingerprints were kept.
    outputs: list[Annotated[str, StringConstraints(pattern=PATTERN)] | None] | None = None
    #: Energy and power during the timed loop; ``None`` in records from before it was kept.
    telemetry: TrialTelemetry | None = None
    #: The configuration's physical bound in generated tokens/s (:func:`infpop.physics.bound`)
    #: and the resource that sets it; ``None`` where the model's shape or the hardware is unknown.
    bound_tokens_s: float | None = None
    bound_by: Literal["compute", "bandwidth", "host link"] | None = None
    provenance: Provenance


class CorruptResult(Exception):
    """A result file that cannot be parsed or holds impossible values: reported by path, never
    silently dropped or used."""


class ResultStore:
    """The result tree under an output root: ``<root>/<trial_id>.json``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, trial: TrialSpec) -> Path:
        return self.root / trial.relpath

    def write(self, result: TrialResult) -> Path:
        path = self.path(result.trial)
        write_atomic(path, result.model_dump_json(indent=1))
        return path

    def read(self, trial: TrialSpec) -> TrialResult | None:
        path = self.path(trial)
        return read_result(path) if path.exists() else None

    def done(self, trial: TrialSpec, *, prune_oom: bool = True) -> TrialResult | None:
        """The trial's result if it needs no rerun; a corrupt file counts as missing, and so does
        a ``skipped_oom`` when pruning is off: a rerun without pruning runs what pruning skipped."""
        try:
            result = self.read(trial)
        except CorruptResult:
            return None
        if result is None or result.status not in DONE:
            return None
        return None if result.status == "skipped_oom" and not prune_oom else result


#: Counts a result may hold: non-negative and within a 64-bit integer, the table's ``Int64``.
MAX_COUNT = 2**63 - 1
_COUNTS = ("n_gpus", "batch_size", "max_new_tokens", "repetition", "kv_cache_bytes", "max_num_seqs")
_RESULT_COUNTS = ("n_prompts", "prompt_tokens", "generated_tokens", "kv_cache_blocks", "num_preemptions")
_SECONDS = ("throughput", "wall_s", "load_s", "warmup_s", "group_warmup_s", "bound_tokens_s")


def implausible(result: TrialResult) -> str | None:
    """What makes a parsed result impossible, or ``None``: a name that is not a manifest name
    (it becomes a path and HTML), a count out of range, a throughput or duration that is not a
    finite non-negative number. Checked on read, so one hand-edited or damaged file is left out
    by name instead of aborting an aggregate or reaching a table as ``ok``."""
    t = result.trial
    names = {"study": t.study, "hardware": t.hardware, "engine": t.engine}
    names |= {"model.name": t.model.name, "workload": t.workload.id}
    for field, value in names.items():
        if not re.match(SAFE_NAME, value):
            return f"trial.{field} {value!r} is not a name (letters, digits, '._+-')"
    counts = {f"trial.{f}": getattr(t, f) for f in _COUNTS} | {f: getattr(result, f) for f in _RESULT_COUNTS}
    for field, value in counts.items():
        if value is not None and not 0 <= value <= MAX_COUNT:
            return f"{field} {value} is out of range (0 to {MAX_COUNT})"
    for field in _SECONDS:
        value = getattr(result, field)
        if value is not None and not (math.isfinite(value) and value >= 0):
            return f"{field} {value} is not a finite non-negative number"
    tel = result.telemetry
    if tel is not None:
        for field in ("gpu_energy_j", "cpu_energy_j"):
            value = getattr(tel, field)
            if value is not None and not (math.isfinite(value) and value >= 0):
                return f"telemetry.{field} {value} is not a finite non-negative number"
    if result.status == "ok" and not result.throughput and result.generated_tokens:
        return "status ok with generated tokens but no throughput"
    return None


def read_result(path: Path) -> TrialResult:
    """The result in ``path``; :class:`CorruptResult` naming the file when it cannot be parsed or
    holds impossible values (:func:`implausible`)."""
    try:
        result = TrialResult.model_validate(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
        raise CorruptResult(f"{path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    why = implausible(result)
    if why is not None:
        raise CorruptResult(f"{path}: impossible value: {why}")
    return result


def iter_results(root: str | Path) -> Iterator[TrialResult | CorruptResult]:
    """Every result file below ``root``, each once (a symlink to a file already read, or a
    second link to it, is the same result); unreadable ones come back as :class:`CorruptResult`."""
    seen: set[tuple[int, int]] = set()
    for path in sorted(Path(root).rglob("*.json")):
        if path.name.startswith(".") or any(part.startswith(".") for part in path.relative_to(root).parts[:-1]):
            continue
        try:
            st = path.stat()
        except OSError:
            st = None  # a dangling link: read_result names it
        if st is not None:
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
        try:
            yield read_result(path)
        except CorruptResult as exc:
            yield exc
