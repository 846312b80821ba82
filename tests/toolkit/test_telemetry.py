"""Energy, power and the roofline bound of each trial (infpop.telemetry, infpop.bounds).

No GPU here: NVML is a stand-in object (:class:`StandInNVML`) that answers pynvml's calls for
GPUs of the test's making; RAPL is a fake powercap tree in tmp_path. The trials themselves run
on the real tiny model with the real HF engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from infpop import physics, telemetry
from infpop.bounds import architecture
from infpop.engines.hf import HFPipelineEngine
from infpop.manifest import ModelSpec, load_manifest
from infpop.plan import GroupSpec, plan
from infpop.profile import EMBEDDED_DEFAULT
from infpop.results import CorruptResult, TrialTelemetry, read_result
from infpop.telemetry import NVML_ENERGY_WRAP, Sampler, counter_delta, integrate, rapl_packages, visible_gpus
from infpop.trial import run_group


@dataclass
class FakeGpu:
    """One GPU as the stand-in NVML reports it; ``energy_mj`` None: a GPU without the counter."""

    name: str = "NVIDIA H200"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    energy_mj: int | None = 1_000
    #: Millijoules the counter advances on each read (a GPU drawing power between reads).
    energy_step_mj: int = 50_000
    power_mw: int = 200_000
    memory_used: int = 10 << 30
    sm_clock_mhz: int = 1980
    utilization: int = 87
    sampled_at: list[float] = field(default_factory=list)


class StandInNVML:
    """A stand-in for the ``pynvml`` module (there is no GPU here): the functions and error
    class :mod:`infpop.telemetry` calls, answering for :class:`FakeGpu` objects by index and UUID."""

    NVML_CLOCK_SM = 1

    class NVMLError(Exception):
        pass

    def __init__(self, *gpus: FakeGpu):
        self.gpus = list(gpus)
        self.running = False
        self.lock = threading.Lock()

    def nvmlInit(self) -> None:
        self.running = True

    def nvmlShutdown(self) -> None:
        self.running = False

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        return self.gpus[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        return next(g for g in self.gpus if g.uuid == uuid)

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> bytes:
        return gpu.name.encode()  # older pynvml releases return bytes

    def nvmlDeviceGetTotalEnergyConsumption(self, gpu: FakeGpu) -> int:
        if gpu.energy_mj is None:
            raise self.NVMLError("Not Supported")
        value = gpu.energy_mj
        gpu.energy_mj = (gpu.energy_mj + gpu.energy_step_mj) % NVML_ENERGY_WRAP
        return value

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        with self.lock:
            gpu.sampled_at.append(time.monotonic())
        return gpu.power_mw

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu):
        return type("Memory", (), {"used": gpu.memory_used})()

    def nvmlDeviceGetClockInfo(self, gpu: FakeGpu, clock: int) -> int:
        assert clock == self.NVML_CLOCK_SM
        return gpu.sm_clock_mhz

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu):
        return type("Utilization", (), {"gpu": gpu.utilization})()


def _sampled(nvml: StandInNVML, gpus: list[str], powercap: Path, seconds: float = 0.05) -> TrialTelemetry:
    with Sampler(nvml=nvml, gpus=gpus, powercap=powercap, interval_s=0.01) as sampler:
        time.sleep(seconds)
    assert not nvml.running, "NVML is shut down after the loop"
    assert sampler.record is not None
    return sampler.record


def test_energy_counter_difference_in_joules_per_gpu_and_summed(tmp_path: Path) -> None:
    a, b = FakeGpu(energy_step_mj=40_000), FakeGpu(uuid="GPU-b", energy_step_mj=60_000)
    record = _sampled(StandInNVML(a, b), ["0", "GPU-b"], tmp_path)
    assert [g.energy_j for g in record.gpus] == [40.0, 60.0]  # one step between the two reads
    assert [g.energy_from for g in record.gpus] == ["counter", "counter"]
    assert record.gpu_energy_j == 100.0 and record.energy_parts == "gpu" and record.energy_j == 100.0
    first = record.gpus[0]
    assert first.name == "NVIDIA H200" and first.id == "0" and first.samples >= 2
    assert first.peak_power_w == 200.0 and first.peak_memory_used_bytes == 10 << 30
    assert first.mean_sm_clock_mhz == 1980 and first.mean_utilization_pct == 87


def test_energy_counter_wrapping_around_64_bits(tmp_path: Path) -> None:
    assert counter_delta(NVML_ENERGY_WRAP - 500, 700, NVML_ENERGY_WRAP) == 1200
    gpu = FakeGpu(energy_mj=NVML_ENERGY_WRAP - 10_000, energy_step_mj=30_000)
    (read,) = _sampled(StandInNVML(gpu), ["0"], tmp_path).gpus
    assert gpu.energy_mj == 20_000 + 30_000, "the counter wrapped between the two reads"
    assert read.energy_j == 30.0


def test_gpu_without_energy_counter_integrates_power_samples(tmp_path: Path) -> None:
    assert integrate([(0.0, 100.0), (1.0, 300.0), (3.0, 300.0)]) == 200.0 + 600.0
    gpu = FakeGpu(energy_mj=None, power_mw=250_000)
    (read,) = _sampled(StandInNVML(gpu), ["0"], tmp_path, seconds=0.1).gpus
    span = gpu.sampled_at[-1] - gpu.sampled_at[0]
    assert read.energy_from == "power samples"
    # Constant power over the sampled span (the sampler's clock reads microseconds from the stand-in's).
    assert read.energy_j == pytest.approx(250.0 * span, rel=1e-3)
    assert read.peak_power_w == 250.0


def test_without_nvml_or_rapl_nothing_is_measured_and_nothing_is_zero(tmp_path: Path, monkeypatch) -> None:
    """This machine's case: no pynvml (it is not installed here), no powercap zone."""
    monkeypatch.setattr(telemetry, "_pynvml", lambda: None)
    with Sampler(powercap=tmp_path / "no-powercap") as sampler:
        pass
    record = sampler.record
    assert record.gpus == [] and record.gpu_energy_j is None and record.cpu_energy_j is None
    assert record.energy_j is None and record.energy_parts is None
    assert record.unmeasured["gpu"] == "nvidia-ml-py is not installed"
    assert "no RAPL zone" in record.unmeasured["cpu"]


def _zone(root: Path, name: str, label: str, energy: int, max_range: int) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return zone


def test_rapl_sums_packages_across_a_wrap_and_skips_subzones(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(telemetry, "_pynvml", lambda: None)
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 999_000_000, 999_999_999)
    p1 = _zone(tmp_path, "intel-rapl:1", "package-1", 5_000_000, 999_999_999)
    _zone(tmp_path, "intel-rapl:0:0", "core", 0, 999_999_999)  # counted in package-0 already
    assert rapl_packages(tmp_path) == [p0, p1]
    with Sampler(powercap=tmp_path) as sampler:
        (p0 / "energy_uj").write_text("2000000\n")  # wrapped: 1_000_000 to the top, 2_000_000 after
        (p1 / "energy_uj").write_text("12000000\n")
        (tmp_path / "intel-rapl:0:0" / "energy_uj").write_text("555000000\n")
    record = sampler.record
    assert record.cpu_energy_j == pytest.approx(3.0 + 7.0)
    assert record.cpu_domains == ["package-0", "package-1"] and record.energy_parts == "cpu"


def test_unreadable_rapl_counter_is_not_measured(tmp_path: Path, monkeypatch) -> None:
    """Since the 2020 Platypus fix only root reads energy_uj: the counter's file is there but unreadable
    (a directory in its place stands for that here, since the tests may run as root)."""
    monkeypatch.setattr(telemetry, "_pynvml", lambda: None)
    zone = _zone(tmp_path, "intel-rapl:0", "package-0", 0, 999)
    (zone / "energy_uj").unlink()
    (zone / "energy_uj").mkdir()
    with Sampler(powercap=tmp_path) as sampler:
        pass
    assert sampler.record.cpu_energy_j is None
    assert "not readable" in sampler.record.unmeasured["cpu"]


def test_visible_gpus_from_cuda_or_slurm() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"}) == ["GPU-a", "GPU-b"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "", "SLURM_JOB_GPUS": "3"}) == []
    assert visible_gpus({"SLURM_STEP_GPUS": "2,3", "SLURM_JOB_GPUS": "0,1,2,3"}) == ["2", "3"]
    assert visible_gpus({}) is None


class RecordingHF(HFPipelineEngine):
    """The real HF engine, noting when each batch starts and ends (timed or warm-up)."""

    calls: list[tuple[float, float]] = []

    def generate(self, prompts, batch_size, max_new_tokens):
        start = time.monotonic()
        out = super().generate(prompts, batch_size, max_new_tokens)
        RecordingHF.calls.append((start, time.monotonic()))
        return out


def _group(manifest: Path) -> GroupSpec:
    (group,) = plan(load_manifest(manifest), "local", EMBEDDED_DEFAULT.partitions["local"])
    return group


def test_samples_only_inside_the_timed_loop_and_bound_in_every_result(write_manifest, monkeypatch, tmp_path) -> None:
    """One warm-up batch, then a timed loop of 3 batches: the stand-in GPU is sampled only
    after the warm-up, and every sample is in the result (none after the trial)."""
    gpu = FakeGpu()
    nvml = StandInNVML(gpu)
    monkeypatch.setattr(telemetry, "_pynvml", lambda: nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    group = _group(write_manifest(batch_sizes=[4], warmup={"trial_batches": 1}))
    RecordingHF.calls = []
    t = group.first
    (result,) = run_group(
        group, lambda g: RecordingHF(t.model, model_path=g.model_path, n_gpus=1, dtype=t.dtype, options={})
    )
    assert result.status == "ok"
    warm, *timed = RecordingHF.calls
    assert len(timed) == 3
    assert gpu.sampled_at and all(s > warm[1] for s in gpu.sampled_at), "nothing sampled before the timed loop"
    assert len(gpu.sampled_at) == result.telemetry.gpus[0].samples, "nothing sampled after it"
    assert result.telemetry.gpus[0].energy_from == "counter" and result.telemetry.gpu_energy_j == 50.0
    # The tiny model's config.json gives the shape; the hardware label "cpu" the nominal socket.
    assert result.bound_tokens_s > 0 and result.bound_by in ("compute", "bandwidth")
    # A damaged energy value is named on read, like every other impossible value.
    bad = result.model_copy(update={"telemetry": result.telemetry.model_copy(update={"gpu_energy_j": -1.0})})
    (tmp_path / "bad.json").write_text(bad.model_dump_json())
    with pytest.raises(CorruptResult, match="telemetry.gpu_energy_j -1.0"):
        read_result(tmp_path / "bad.json")


def test_architecture_from_a_models_config_json(tiny_model: Path) -> None:
    arch = architecture(ModelSpec(name="tiny", source=str(tiny_model)), str(tiny_model))
    config = json.loads((tiny_model / "config.json").read_text())
    assert isinstance(arch, physics.Architecture)
    assert (arch.layers, arch.hidden_size, arch.kv_heads, arch.vocab_size) == (4, 128, 4, config["vocab_size"])
    assert arch.gated_mlp and not arch.tied_embeddings
    missing = architecture(ModelSpec(name="x", source=str(tiny_model.parent)), str(tiny_model.parent))
    assert missing.startswith("no config.json")


def test_decode_bound_by_bandwidth_prefill_by_compute() -> None:
    """A 7B model at batch 1 generating 256 tokens waits on HBM; 2048-token prompts generating
    one token each at batch 64 wait on FLOP/s; weights beyond the GPU's memory wait on PCIe."""
    arch = physics.architecture_from_config(
        {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "intermediate_size": 11008,
         "vocab_size": 32000, "hidden_act": "silu", "tie_word_embeddings": False}, "llama-7b-like",
    )  # fmt: skip
    a100 = physics.gpu("a100")
    decode = physics.TrialShape(arch, "hf", a100, 1, 1, physics.Workload((100,) * 8, 256))
    prefill = physics.TrialShape(arch, "hf", a100, 1, 64, physics.Workload((2048,) * 64, 1))
    assert physics.bound_by(decode) == "bandwidth" and physics.bound_by(prefill) == "compute"
    # Twice the layers (27 GB of weights) on one 16 GB V100: hf offloads, and PCIe dominates.
    offloaded = physics.TrialShape(
        arch.model_copy(update={"layers": 64}), "hf", physics.gpu("v100-16gb"), 1, 1, physics.Workload((100,) * 8, 16)
    )
    assert physics.bound_by(offloaded) == "host link"


def test_telemetry_import_loads_neither_nvml_nor_analysis_libraries() -> None:
    probe = "import sys, infpop.telemetry, infpop.bounds; print(' '.join(sys.modules))"
    loaded = set(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    )
    assert not loaded & {"pynvml", "pandas", "scipy", "torch"}
