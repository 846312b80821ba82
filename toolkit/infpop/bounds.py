"""The physical bound of a trial as it ran: :func:`infpop.physics.bound` on the compute node.

Computed at trial time, not in the table, because that is where its inputs are exact: the
model's ``config.json`` sits in the model directory or the staged hub cache the job loads from
(the login node has only what a manifest may spell out), and the engine's own tokenizer gives
every prompt's length in tokens (the login node could only estimate them from characters).
The table then divides the measured throughput by the stored bound (the roofline fraction).
"""

from __future__ import annotations

import json
from pathlib import Path

from infpop import physics
from infpop.manifest import ModelSpec
from infpop.plan import TrialSpec

#: Bytes per weight of each dtype; ``auto`` takes the checkpoint's, 16-bit for these models.
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "auto": 2}


def config_json(model: ModelSpec, model_path: str) -> Path | None:
    """The model's ``config.json``: in its directory, or in the hub cache a job loads from."""
    if model.is_local:
        path = Path(model_path) / "config.json"
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model.source, "config.json", revision=model.revision)
    return Path(found) if isinstance(found, str) else None


def architecture(model: ModelSpec, model_path: str) -> physics.Architecture | str:
    """The model's shape, from the manifest where it gives one, else from its ``config.json``;
    or why there is none (a config that does not describe a decoder physics knows)."""
    if model.architecture is not None:
        return model.architecture
    path = config_json(model, model_path)
    if path is None:
        return f"no config.json for {model.source}"
    try:
        return physics.architecture_from_config(json.loads(path.read_text()), f"config.json of {model.source}")
    except (OSError, ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        return f"{path}: not a decoder's shape: {str(exc).splitlines()[0]}"


def trial_bound(
    trial: TrialSpec, arch: physics.Architecture, prompt_tokens: list[int]
) -> tuple[float, physics.Resource] | str:
    """Tokens/s the trial cannot beat with its prompts of ``prompt_tokens`` tokens, and the
    resource that bounds it; or why there is no bound (hardware physics has no datasheet for)."""
    device = physics.gpu(trial.hardware)
    if device is None:
        return f"hardware {trial.hardware!r} has no datasheet entry in infpop.physics"
    shape = physics.TrialShape(
        arch,
        trial.engine,
        device,
        trial.n_gpus,
        trial.batch_size,
        physics.Workload(tuple(prompt_tokens), trial.max_new_tokens),
        DTYPE_BYTES[trial.dtype],
    )
    return physics.bound(shape), physics.bound_by(shape)
