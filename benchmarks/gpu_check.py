"""The GPU check's body (run it through ``benchmarks/gpu_check.sh``): build Llama-shaped models
with random weights offline, sweep batch sizes with the HF engine on one GPU through the trial
runner (telemetry on), and print each trial measured against predicted: the OOM frontier
(:func:`infpop.physics.predicts_oom`) and peak memory, throughput against the physical bound
(the roofline fraction and what bounds it), and joules per generated token.

On a GPU: the stacks of Llama-3.2-1B and Llama-3-8B in bfloat16 (:data:`infpop.tinymodel.SHAPES`),
1024 synthetic prompts of 1024 words, 16 new tokens each, batch sizes 16, 128 and 1024 (the
last is past the 8B model's frontier on an 80 GB or 141 GB GPU by the memory model); sized, not
yet timed, for 8 minutes on an H200 (each trial is capped at 150 s).
``--cpu``: the same path with the tiny model on the CPU, in well under a minute.

Exit status 1 when the check fails: a trial ended in ``error``, an ``ok`` trial has no bound,
or (on a GPU) no energy; the table is printed either way and written to ``<work>/gpu_check.txt``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml
from infpop import physics
from infpop.bounds import DTYPE_BYTES, architecture
from infpop.gpus import nvidia_smi_names
from infpop.manifest import load_manifest
from infpop.plan import GroupSpec, plan
from infpop.profile import PartitionProfile
from infpop.results import TrialResult
from infpop.tinymodel import build_llama
from infpop.trial import run_group
from infpop.workloads import load_prompts

GiB = 1 << 30


def settings(cpu: bool) -> dict:
    """Models, dtype and workload of each mode."""
    if cpu:
        return {"models": ["tiny"], "dtype": "float32", "prompts": 32, "words": 64, "tokens": 8, "batches": [1, 4, 16]}
    return {"models": ["1b", "8b"], "dtype": "bfloat16", "prompts": 1024, "words": 1024, "tokens": 16,
            "batches": [16, 128, 1024]}  # fmt: skip


def hardware_label(cpu: bool, given: str | None) -> str:
    """The physics catalog's label of this machine: ``cpu``, the one given, or nvidia-smi's first
    GPU matched against the catalog's names (``NVIDIA H200`` -> ``h200``)."""
    if cpu or given:
        return "cpu" if cpu else given
    names = nvidia_smi_names()
    if not names:
        sys.exit("gpu_check: nvidia-smi sees no GPU (use --cpu for the CPU path)")
    found = [key for key, gpu in physics.GPUS.items() if key != "cpu" and key.split("-")[0] in names[0].lower()]
    memory = [key for key in found if key.split("-")[-1].rstrip("gb") in names[0].lower()]
    if not (memory or found):
        sys.exit(f"gpu_check: {names[0]} is not in infpop.physics.GPUS; name its entry with --hardware")
    return (memory or found)[0]


def manifest(work: Path, model: str, model_dir: Path, s: dict) -> Path:
    path = work / f"{model}.yaml"
    workload = {"name": "synthetic", "synthetic": {"n_prompts": s["prompts"], "input_tokens": {"kind": "fixed", "tokens": s["words"]},
                "output_tokens": {"kind": "fixed", "tokens": s["tokens"]}}}  # fmt: skip
    data = {
        "study": "gpu-check",
        "output_root": str(work / "runs"),
        "models": [{"name": model, "source": str(model_dir)}],
        "engines": ["hf"],
        "gpu_counts": [1],
        "batch_sizes": s["batches"],
        "max_new_tokens": [s["tokens"]],
        "dtype": s["dtype"],
        "workload": workload,
        "trial_timeout_s": 150,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def predicted(group: GroupSpec, result: TrialResult, tokens: list[int]) -> tuple[bool, float] | None:
    """(predicted OOM, predicted peak GiB) of the result's trial, where physics knows the shape."""
    t = result.trial
    arch, device = architecture(t.model, group.model_path), physics.gpu(t.hardware)
    if isinstance(arch, str) or device is None:
        return None
    shape = physics.TrialShape(
        arch,
        t.engine,
        device,
        t.n_gpus,
        t.batch_size,
        physics.Workload(tuple(tokens), t.max_new_tokens),
        DTYPE_BYTES[t.dtype],
    )
    return physics.predicts_oom(shape), physics.peak_memory(shape) / GiB


def _num(value: float | None, fmt: str) -> str:
    return "not measured" if value is None else format(value, fmt)


def line(result: TrialResult, pred: tuple[bool, float] | None) -> str:
    tel = result.telemetry
    energy = tel.energy_j if tel is not None else None
    per_token = energy / result.generated_tokens if energy is not None and result.generated_tokens else None
    fraction = result.throughput / result.bound_tokens_s if result.throughput and result.bound_tokens_s else None
    memory = max((g.peak_memory_used_bytes or 0 for g in tel.gpus), default=None) if tel and tel.gpus else None
    cols = [
        f"{result.trial.model.name:>5}",
        f"{result.trial.batch_size:>5}",
        f"{result.status:>11}",
        f"{'oom' if pred and pred[0] else 'fits' if pred else '?':>9}",
        f"{_num(memory / GiB if memory else None, '.1f'):>12}",
        f"{_num(pred[1] if pred else None, '.1f'):>10}",
        f"{_num(result.throughput, '.1f'):>10}",
        f"{_num(result.bound_tokens_s, '.0f'):>10}",
        f"{result.bound_by or '-':>9}",
        f"{_num(fraction, '.3f'):>8}",
        f"{_num(per_token, '.4f'):>12}",
        f"{tel.energy_parts or '-' if tel else '-':>7}",
    ]
    return " ".join(cols)


HEADER = (
    f"{'model':>5} {'batch':>5} {'status':>11} {'predicted':>9} {'peak GiB':>12} {'pred GiB':>10} "
    f"{'tok/s':>10} {'bound':>10} {'bound by':>9} {'fraction':>8} {'J/token':>12} {'energy':>7}"
)


def failures(results: list[TrialResult], cpu: bool) -> list[str]:
    """What makes the check fail (see the module docstring)."""
    out = [
        f"{r.trial.trial_id}: error: {(r.error or '').strip().splitlines()[-1:]}"
        for r in results
        if r.status == "error"
    ]
    for r in (r for r in results if r.status == "ok"):
        if r.bound_tokens_s is None:
            out.append(f"{r.trial.trial_id}: no bound: {r.unmeasured.get('bound_tokens_s')}")
        if not cpu and (r.telemetry is None or r.telemetry.gpu_energy_j is None):
            out.append(
                f"{r.trial.trial_id}: no GPU energy: {r.telemetry.unmeasured if r.telemetry else 'no telemetry'}"
            )
    if not any(r.status == "ok" for r in results):
        out.append("no trial ran ok")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="the tiny model on the CPU (CI)")
    ap.add_argument("--work", type=Path, required=True, help="folder for the models, results and the table")
    ap.add_argument("--hardware", help="infpop.physics.GPUS key of this GPU (default: from nvidia-smi)")
    ap.add_argument("--models", nargs="+", choices=["tiny", "1b", "8b"], help="override the mode's models")
    ap.add_argument("--batch-sizes", type=int, nargs="+", help="override the mode's batch sizes")
    args = ap.parse_args()
    start = time.monotonic()
    s = settings(args.cpu)
    s["models"] = args.models or s["models"]
    s["batches"] = args.batch_sizes or s["batches"]
    label = hardware_label(args.cpu, args.hardware)
    part = PartitionProfile(executor="local", hardware=label, cpus_per_gpu=1, array_parallelism=1)
    device = "cpu" if args.cpu else "cuda"
    lines, results = [f"infpop GPU check on {label} ({', '.join(nvidia_smi_names()) or 'no GPU'})", HEADER], []
    print(*lines, sep="\n", flush=True)
    for model in s["models"]:
        model_dir = args.work / "models" / model
        if not (model_dir / "config.json").exists():
            build_llama(model_dir, model, dtype=s["dtype"], device=device)
            if device == "cuda":
                import torch

                torch.cuda.empty_cache()
        (group,) = plan(load_manifest(manifest(args.work, model, model_dir, s)), "local", part)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        prompts = load_prompts(group.first.workload, None)
        tokens = [len(ids) for ids in tokenizer([p.text for p in prompts])["input_ids"]]
        for result in run_group(group):
            results.append(result)
            lines.append(line(result, predicted(group, result, tokens)))
            print(lines[-1], flush=True)
    failed = failures(results, args.cpu)
    lines += [f"FAILED {why}" for why in failed] or [f"ok: {len(results)} trials in {time.monotonic() - start:.0f} s"]
    print(*lines[2 + len(results) :], sep="\n")
    (args.work / "gpu_check.txt").write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
