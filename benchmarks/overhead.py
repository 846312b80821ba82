"""Toolkit overhead: a toolkit trial against a bare loop over the same engine call, per engine.

Both sides send the same prompts in the same batches through the same loaded engine: the HF
pipeline, and vLLM's ``LLM`` (its CPU build here). The bare side calls it in a plain ``for``
loop and times it (``pipe(...)``; ``llm.generate(...)``), the toolkit side runs the trial runner
(token counting, per-batch timing, result record). Rounds interleave the two and alternate
which goes first, so drift and a busy neighbour hit both alike. Prints the median of the
per-pair throughput ratios toolkit/bare per engine (target >= 0.97).

``--telemetry`` compares instead the toolkit's trial with its telemetry sampler on against the
same trial with it off (:mod:`infpop.telemetry`; target >= 0.98). What the sampler reads is
printed first: on a machine without NVML and readable RAPL the comparison measures only the
sampler's setup, not its sampling thread.

Run it on an idle machine: vLLM's CPU build pins its compute thread to one core, and a job
beside it (even at the lowest priority) makes single batches take several times longer at
random, which swamps a difference of a few percent.

    python benchmarks/overhead.py [--engines hf vllm] [--rounds 7] [--prompts 96] [--batch-sizes 1 4 16] [--telemetry]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from infpop.engines.base import Engine
from infpop.engines.hf import HFPipelineEngine
from infpop.engines.vllm import VLLMEngine
from infpop.manifest import load_manifest
from infpop.plan import GroupSpec, plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.telemetry import Sampler
from infpop.tinymodel import build_tiny_model
from infpop.trial import run_group
from infpop.workloads import load_prompts

REPO = Path(__file__).resolve().parents[1]
SHARED_PROMPTS = REPO.parent / "shared/data/humaneval-infilling/HumanEval-SingleLineInfilling.jsonl.gz"


class PreloadedHF(HFPipelineEngine):
    """The engine loaded once for the whole benchmark; the toolkit's load/close become no-ops."""

    def load(self) -> None:
        if not hasattr(self, "pipe") or self.pipe is None:
            super().load()

    def close(self) -> None:
        pass


class PreloadedVLLM(VLLMEngine):
    """vLLM loaded once for the whole benchmark; the toolkit's load/close become no-ops."""

    def load(self) -> None:
        if self.llm is None:
            super().load()

    def close(self) -> None:
        pass

    def shutdown(self) -> None:
        super().close()


#: Engine options of each side: one CPU thread for HF (as the study's tests), and for vLLM its
#: KV cache sized explicitly (its default takes 90% of the machine's memory).
OPTIONS = {
    "hf": {"cpu_threads": 1},
    "vllm": {"max_model_len": 2048, "enforce_eager": True, "kv_cache_memory_bytes": 256 << 20},
}


def bare_vllm(engine: VLLMEngine, texts: list[str], batch: int, tokens: int) -> float:
    """What a user would write by hand: ``LLM.generate`` over chunks of ``batch``; tokens/s."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=0.0)
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        engine.llm.generate(texts[i : i + batch], params, use_tqdm=False)
    return len(texts) * tokens / (time.perf_counter() - start)


def bare_hf(engine: HFPipelineEngine, texts: list[str], batch: int, tokens: int) -> float:
    """What a user would write by hand: the pipeline over chunks of ``batch``; tokens/s."""
    model = engine.pipe.model
    counting = model.__dict__.pop("generate")  # the bare loop runs without the toolkit's token counter
    try:
        start = time.perf_counter()
        for i in range(0, len(texts), batch):
            engine.pipe(
                texts[i : i + batch],
                batch_size=batch,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                return_full_text=False,
            )
        elapsed = time.perf_counter() - start
    finally:
        model.generate = counting
    return len(texts) * tokens / elapsed


def measure(engine_name: str, group: GroupSpec, model_dir: Path, tmp: Path, args: argparse.Namespace) -> dict:
    """Per batch size, the toolkit/bare (or telemetry on/off) throughput ratio of each interleaved pair."""
    texts = [p.text for p in load_prompts(group.first.workload, Path(group.workload_path))]
    cls, bare = {"hf": (PreloadedHF, bare_hf), "vllm": (PreloadedVLLM, bare_vllm)}[engine_name]
    engine = cls(group.first.model, model_path=str(model_dir), n_gpus=1, dtype="float32", options=OPTIONS[engine_name])
    engine.load()
    bare(engine, texts, 4, args.tokens)  # warm-up
    if args.telemetry:
        runs = iter(range(1 << 30))

        def bare(engine: Engine, texts: list[str], b: int, tokens: int) -> float:
            """The toolkit's trial at batch ``b`` with telemetry off (into a fresh output root)."""
            trial = next(t for t in group.trials if t.batch_size == b)
            one = GroupSpec(**{**group.model_dump(), "trials": [trial], "output_root": str(tmp / f"off_{next(runs)}")})
            (off,) = run_group(one, lambda g: engine, telemetry=False)
            return off.throughput

    ratios: dict[int, list[float]] = {b: [] for b in args.batch_sizes}
    for rnd in range(args.rounds):
        for trial in group.trials:
            b = trial.batch_size
            out = str(tmp / f"runs_{engine_name}_{rnd}_{b}")
            one = GroupSpec(**{**group.model_dump(), "trials": [trial], "output_root": out})
            toolkit_first = (rnd + b) % 2 == 0
            if toolkit_first:
                (res,) = run_group(one, lambda g: engine)
            bare_tps = bare(engine, texts, b, args.tokens)
            if not toolkit_first:
                (res,) = run_group(one, lambda g: engine)
            assert res.status == "ok", res.error
            ratios[b].append(res.throughput / bare_tps)
    if engine_name == "vllm":
        engine.shutdown()
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--prompts", type=int, default=96)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--tokens", type=int, default=5)
    ap.add_argument(
        "--telemetry", action="store_true", help="telemetry on against off, instead of toolkit against bare"
    )
    args = ap.parse_args()
    if args.telemetry:
        with Sampler() as sampler:
            pass
        print(f"telemetry reads: {len(sampler.record.gpus)} GPU(s), CPU packages {sampler.record.cpu_domains or 'none'}; "
              f"not measured: {sampler.record.unmeasured or 'nothing'}")  # fmt: skip
    what, target = ("telemetry on/off", 0.98) if args.telemetry else ("toolkit/bare", 0.97)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_tiny_model(tmp / "model")
        prompts_path = SHARED_PROMPTS if SHARED_PROMPTS.exists() else None
        if prompts_path is None:
            import sys

            sys.path.insert(0, str(REPO / "tests"))
            from conftest import write_humaneval_like

            prompts_path = write_humaneval_like(tmp / "prompts.jsonl.gz", n=args.prompts)
        for engine_name in args.engines:
            manifest = tmp / f"bench_{engine_name}.yaml"
            manifest.write_text(
                yaml.safe_dump(
                    {
                        "study": "overhead",
                        "output_root": str(tmp / "runs"),
                        "models": [{"name": "tiny", "source": str(model_dir)}],
                        "engines": [engine_name],
                        "gpu_counts": [1],
                        "batch_sizes": args.batch_sizes,
                        "max_new_tokens": [args.tokens],
                        "dtype": "float32",
                        "workload": {"path": str(prompts_path), "limit": args.prompts},
                        "engine_options": {engine_name: OPTIONS[engine_name]},
                    }
                )
            )
            (group,) = plan(load_manifest(manifest), "local", EMBEDDED_DEFAULT.partitions["local"])
            ratios = measure(engine_name, group, model_dir, tmp, args)
            for b, rs in ratios.items():
                print(f"{engine_name} batch {b:>3}: median {what} throughput ratio {statistics.median(rs):.3f} "
                      f"over {len(rs)} pairs")  # fmt: skip
            overall = statistics.median(r for rs in ratios.values() for r in rs)
            print(f"{engine_name}: overall median {what} throughput ratio {overall:.3f} (target >= {target})")


if __name__ == "__main__":
    main()
