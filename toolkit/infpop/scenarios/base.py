"""What every scenario runner shares: its call signature and how it records a trial.

A runner gets the loaded engine, the trial, the workload's prompts and a :class:`Recorder`,
and returns the trial's result. The trial runner (:mod:`infpop.trial`) owns loading,
resuming and OOM pruning; the scenario owns how requests reach the engine and what is timed.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from infpop import provenance
from infpop.bounds import trial_bound
from infpop.engines.base import Engine
from infpop.physics import Architecture
from infpop.plan import GroupSpec, TrialSpec
from infpop.plugins import SCENARIOS
from infpop.results import Batching, Provenance, TrialResult, TrialTelemetry, utcnow
from infpop.scenarios.metrics import validity
from infpop.telemetry import Sampler
from infpop.workloads import Prompt

#: Why a result has no output fingerprints.
NO_IDS = "the engine did not report the generated token ids"


def error_text(exc: BaseException) -> str:
    """The exception and the innermost frames: enough to act on, bounded in size."""
    tail = traceback.format_exception(exc)[-4:]
    return "".join(tail)[-4000:]


def preempted_since(engine: Engine, before: int | None) -> int | None:
    """Requests the engine preempted since its count was ``before``; ``None`` where it does not tell."""
    after = engine.preemptions()
    return None if before is None or after is None else after - before


def batching(engine: Engine) -> Batching:
    """How the engine's group has its requests grouped into engine work: offline in static
    batches; online continuously where the engine serves requests as they come
    (``continuous_batching``), else in the dynamic batches the online scenario forms. Known
    before any trial runs, so a trial recorded without running (pruned, or a repetition not
    needed) records it as its configuration's runs do."""
    if engine.scenario == "offline":
        return "static"
    return "continuous" if engine.capabilities.continuous_batching else "dynamic"


class Recorder:
    """Builds the result records of one group run. Provenance and the engine's settings (how it
    batches, and what it reports after load: load time, KV-cache blocks, resolved settings,
    deterministic mode) go on every record, those of trials recorded without running too, so a
    pruned trial or a repetition not needed has the settings its configuration's runs have.
    The model's shape and the prompts' lengths in tokens that each trial's physical bound needs
    are shared too (:mod:`infpop.bounds`; a string says why there is none). With ``telemetry`` on, each timed
    loop (:meth:`timed_loop`) is sampled for energy and power (:mod:`infpop.telemetry`)."""

    def __init__(
        self,
        group: GroupSpec,
        gpus: list[str],
        load_s: float | None,
        kv_cache_blocks: int | None = None,
        resolved: dict[str, Any] | None = None,
        unmeasured: dict[str, str] | None = None,
        *,
        batching: Batching | None = None,
        deterministic: bool | None = None,
        arch: Architecture | str = "not known",
        prompt_tokens: list[int] | str = "not known",
        telemetry: bool = True,
    ):
        self.group = group
        self.gpus = gpus
        self.load_s = load_s
        self.kv_cache_blocks = kv_cache_blocks
        self.resolved = resolved
        self.unmeasured = unmeasured or {}
        #: How the engine batches the group's requests (:func:`batching`).
        self.batching = batching
        #: Whether the loaded engine's deterministic mode is on, as it read it back.
        self.deterministic = deterministic
        self.arch, self.prompt_tokens, self.telemetry = arch, prompt_tokens, telemetry
        self._sampled: TrialTelemetry | None = None
        #: Seconds of the group's warm-up after the model loaded (:func:`infpop.warmup.warm_up_group`).
        self.group_warmup_s: float | None = None
        self.versions = provenance.library_versions()
        self.image, self.image_sha = provenance.container()

    def result(self, trial: TrialSpec, started_at: str, **fields: Any) -> TrialResult:
        prov = Provenance(
            host=provenance.host(),
            gpus=self.gpus,
            versions=self.versions,
            manifest_sha256=self.group.manifest_sha256,
            slurm=provenance.slurm_ids(),
            container_image=self.image,
            container_sha256=self.image_sha,
            started_at=started_at,
            finished_at=utcnow(),
        )
        return TrialResult(
            trial=trial,
            provenance=prov,
            load_s=self.load_s,
            group_warmup_s=self.group_warmup_s,
            batching=self.batching,
            kv_cache_blocks=self.kv_cache_blocks,
            resolved=self.resolved,
            deterministic=self.deterministic,
            **fields,
        )

    @contextmanager
    def timed_loop(self) -> Iterator[None]:
        """Around a scenario's timed loop, and nothing else: telemetry sampled while it runs
        goes into the next :meth:`measured` record."""
        if not self.telemetry:
            yield
            return
        with Sampler() as sampler:
            yield
        self._sampled = sampler.record

    def _bound(self, trial: TrialSpec) -> dict[str, Any]:
        """The trial's bound fields, or its reason in ``unmeasured``."""
        if isinstance(self.arch, str) or isinstance(self.prompt_tokens, str):
            why = self.arch if isinstance(self.arch, str) else self.prompt_tokens
        else:
            found = trial_bound(trial, self.arch, self.prompt_tokens)
            if not isinstance(found, str):
                return {"bound_tokens_s": found[0], "bound_by": found[1], "unmeasured": self.unmeasured}
            why = found
        return {"unmeasured": {**self.unmeasured, "bound_tokens_s": why}}

    def measured(
        self,
        trial: TrialSpec,
        started_at: str,
        *,
        status: str,
        n_prompts: int,
        generated_tokens: int,
        wall_s: float,
        outputs: list[str | None] | None,
        **fields: Any,
    ) -> TrialResult:
        """The result of a trial that ran, in any scenario: throughput and validity are decided
        here once. A trial that generated nothing has no throughput (never a zero). A trial run
        with the prefix cache off whose engine served prompt tokens from a cache did not run the
        configuration it names: an ``error``, with the reason; so is one whose engine read back a
        deterministic mode other than the trial's (an engine release without the mode reads back
        ``None``: off). ``outputs`` (the fingerprints) is
        ``None`` where the engine did not report token ids: recorded as not measured."""
        cached = fields.get("cached_prompt_tokens")
        if trial.prefix_caching is False and cached and status == "ok":
            status = "error"
            fields["error"] = f"prefix caching is off, yet the engine served {cached} prompt tokens from its cache"
        wrong = self.deterministic is not True if trial.deterministic else self.deterministic is True
        if trial.deterministic is not None and wrong and status == "ok":
            status = "error"
            fields["error"] = (
                f"deterministic is {str(trial.deterministic).lower()}, yet the engine reads its mode back as "
                f"{'not known' if self.deterministic is None else str(self.deterministic).lower()}"
            )
        valid, why = validity(trial.scenario, status, wall_s, n_prompts, fields.get("online"), trial.request_rate)
        sampled, self._sampled = self._sampled, None
        bound = self._bound(trial)
        if outputs is None:
            bound["unmeasured"] = bound["unmeasured"] | {"outputs": NO_IDS}
        return self.result(
            trial,
            started_at,
            status=status,
            n_prompts=n_prompts,
            generated_tokens=generated_tokens,
            wall_s=wall_s,
            throughput=generated_tokens / wall_s if generated_tokens else None,
            valid=valid,
            invalid_reason=why,
            outputs=outputs,
            telemetry=sampled,
            **bound,
            **fields,
        )


#: ``runner(engine, trial, prompts, recorder, trial_timeout_s) -> result``: one per scenario kind.
Runner = Callable[[Engine, TrialSpec, list[Prompt], Recorder, "float | None"], TrialResult]


def runner(kind: str) -> Runner:
    """The runner of scenario ``kind``, imported now."""
    return SCENARIOS.load(kind)
