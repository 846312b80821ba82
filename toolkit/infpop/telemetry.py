"""Energy and power of a trial's timed loop: NVIDIA GPUs through NVML, CPUs through RAPL.

:class:`Sampler` is a context manager around the timed loop alone (the scenarios enter it after
the untimed warm-up and leave it when the loop's clock stops), so model loading and warm-up
never count. A background thread samples each GPU every ``interval_s`` (power, memory used, SM
clock, utilisation; 0.25 s by default: NVML's power reading is a one-second average on GPUs
after the A100, so sampling faster adds no detail); energy comes from the GPU's total-energy counter (Volta and newer), read at
entry and exit, and from the power samples integrated over time where the counter is missing.
CPU packages' energy comes from RAPL's powercap counters, read at entry and exit.

Whatever cannot be read is *not measured* (``None``, with the reason in ``unmeasured``),
never zero: a GPU node without ``nvidia-ml-py``, a CPU whose RAPL counters only root may read
(the default since the 2020 Platypus fix), a laptop without powercap. ``pynvml`` is imported only when a
sampler starts, so the login node and CPU jobs need not have it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from infpop.results import GpuTelemetry, TrialTelemetry

#: NVML's total-energy counter is an unsigned 64-bit count of millijoules.
NVML_ENERGY_WRAP = 2**64
POWERCAP = Path("/sys/class/powercap")


def counter_delta(start: int, end: int, wrap: int) -> int:
    """What a counter that wraps to zero at ``wrap`` advanced from ``start`` to ``end`` (at most
    one wrap-around: RAPL's package counter wraps after minutes at full power, and the timed
    loop reads it at both ends only; NVML's 64-bit counter never wraps in practice)."""
    return end - start if end >= start else end + wrap - start


def integrate(samples: list[tuple[float, float]]) -> float:
    """Joules of (seconds, watts) samples, trapezoids between consecutive ones."""
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(samples, samples[1:]))


def visible_gpus(environ: Mapping[str, str] = os.environ) -> list[str] | None:
    """The GPUs the trial uses, as its allocation names them: ``CUDA_VISIBLE_DEVICES`` (indices,
    or ``GPU-``/``MIG-`` UUIDs), else SLURM's ``SLURM_STEP_GPUS``/``SLURM_JOB_GPUS`` (indices);
    ``None`` where nothing restricts them (every GPU NVML sees). Indices are NVML's, the order
    nvidia-smi and SLURM's gres plugin number GPUs in."""
    for name in ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        value = environ.get(name)
        if value is not None:
            return [d.strip() for d in value.split(",") if d.strip()]
    return None


def _pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


class _Gpu:
    """One GPU's readings over the timed loop."""

    def __init__(self, nvml: Any, gpu_id: str):
        self.nvml, self.id = nvml, gpu_id
        by_uuid = gpu_id.startswith(("GPU-", "MIG-"))
        self.handle = (
            nvml.nvmlDeviceGetHandleByUUID(gpu_id) if by_uuid else nvml.nvmlDeviceGetHandleByIndex(int(gpu_id))
        )
        name = nvml.nvmlDeviceGetName(self.handle)
        self.name = name.decode() if isinstance(name, bytes) else name
        self.energy_start = self._energy()
        self.power: list[tuple[float, float]] = []
        self.memory: list[int] = []
        self.clock: list[float] = []
        self.util: list[float] = []

    def _energy(self) -> int | None:
        try:
            return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except self.nvml.NVMLError:  # NVML_ERROR_NOT_SUPPORTED before Volta
            return None

    def _read(self, query: str, *args: Any) -> Any:
        try:
            return getattr(self.nvml, query)(self.handle, *args)
        except self.nvml.NVMLError:
            return None

    def sample(self) -> None:
        now = time.monotonic()
        milliwatts = self._read("nvmlDeviceGetPowerUsage")
        if milliwatts is not None:
            self.power.append((now, milliwatts / 1000))
        memory = self._read("nvmlDeviceGetMemoryInfo")
        if memory is not None:
            self.memory.append(memory.used)
        clock = self._read("nvmlDeviceGetClockInfo", self.nvml.NVML_CLOCK_SM)
        if clock is not None:
            self.clock.append(clock)
        util = self._read("nvmlDeviceGetUtilizationRates")
        if util is not None:
            self.util.append(util.gpu)

    def record(self, wall_s: float) -> GpuTelemetry:
        end = self._energy() if self.energy_start is not None else None
        if end is not None:
            energy: float | None = counter_delta(self.energy_start, end, NVML_ENERGY_WRAP) / 1000
            source = "counter"
        elif len(self.power) > 1:
            energy, source = integrate(self.power), "power samples"
        else:
            energy, source = None, None
        watts = [w for _, w in self.power]
        return GpuTelemetry(
            id=self.id,
            name=self.name,
            energy_j=energy,
            energy_from=source,
            mean_power_w=energy / wall_s if energy is not None and wall_s > 0 else _mean(watts),
            peak_power_w=max(watts, default=None),
            peak_memory_used_bytes=max(self.memory, default=None),
            mean_sm_clock_mhz=_mean(self.clock),
            mean_utilization_pct=_mean(self.util),
            samples=len(self.power),
        )


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def rapl_packages(root: Path = POWERCAP) -> list[Path]:
    """The CPU packages' RAPL zones (``intel-rapl:N``, not their ``intel-rapl:N:M`` subzones,
    which the package already counts)."""
    return sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)


def _read_uj(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


class Sampler:
    """Telemetry of one timed loop: ``with Sampler() as s: <loop>``, then :attr:`record`.

    ``nvml`` is the ``pynvml`` module (imported lazily when not given; a test passes a
    stand-in), ``gpus`` the GPUs to read (:func:`visible_gpus` when not given), ``powercap``
    the powercap tree's root."""

    def __init__(
        self,
        *,
        nvml: Any = None,
        gpus: list[str] | None = None,
        powercap: Path = POWERCAP,
        interval_s: float = 0.25,
    ):
        self._nvml, self._gpu_ids, self.powercap, self.interval_s = nvml, gpus, powercap, interval_s
        self._nvml_started = False
        self.record: TrialTelemetry | None = None
        self._gpus: list[_Gpu] = []
        self._unmeasured: dict[str, str] = {}
        self._stop, self._ready = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._start_gpus()
        self._rapl = {p: _read_uj(p / "energy_uj") for p in rapl_packages(self.powercap)}
        self._t0 = time.monotonic()
        if self._gpus:
            # Started, and its first sample taken, before the loop: a thread's start-up would
            # otherwise compete with the loop's first batch for the interpreter.
            self._thread = threading.Thread(target=self._run, name="infpop-telemetry", daemon=True)
            self._thread.start()
            self._ready.wait()
        return self

    def _start_gpus(self) -> None:
        nvml = self._nvml if self._nvml is not None else _pynvml()
        if nvml is None:
            self._unmeasured["gpu"] = "nvidia-ml-py is not installed"
            return
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:  # no driver: a CPU node
            self._unmeasured["gpu"] = f"NVML did not start: {exc}"
            return
        self._nvml, self._nvml_started = nvml, True
        ids = self._gpu_ids if self._gpu_ids is not None else visible_gpus()
        if ids is None:
            ids = [str(i) for i in range(nvml.nvmlDeviceGetCount())]
        try:
            self._gpus = [_Gpu(nvml, i) for i in ids]
        except (nvml.NVMLError, ValueError) as exc:
            self._gpus = []
            self._unmeasured["gpu"] = f"NVML cannot open the trial's GPUs {ids}: {exc}"
        if not ids:
            self._unmeasured["gpu"] = "no GPU is visible to the trial"

    def _sample_all(self) -> None:
        for gpu in self._gpus:
            gpu.sample()

    def _run(self) -> None:
        self._sample_all()
        self._ready.set()
        while not self._stop.wait(self.interval_s):
            self._sample_all()

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._t0
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._sample_all()  # the loop's last moment, so integration spans all of it
        gpus = [g.record(wall) for g in self._gpus]
        energies = [g.energy_j for g in gpus]
        if gpus and None in energies:
            self._unmeasured["gpu"] = "NVML gave neither an energy counter nor power samples for some GPU"
        self.record = TrialTelemetry(
            gpus=gpus,
            gpu_energy_j=sum(energies) if gpus and None not in energies else None,
            cpu_energy_j=self._cpu_energy(),
            cpu_domains=[_read_name(p) for p in self._rapl],
            interval_s=self.interval_s,
            unmeasured=self._unmeasured,
        )
        if self._nvml_started:
            self._nvml.nvmlShutdown()

    def _cpu_energy(self) -> float | None:
        if not self._rapl:
            self._unmeasured["cpu"] = f"no RAPL zone under {self.powercap}"
            return None
        total = 0
        for zone, start in self._rapl.items():
            end, wrap = _read_uj(zone / "energy_uj"), _read_uj(zone / "max_energy_range_uj")
            if start is None or end is None or wrap is None:
                self._unmeasured["cpu"] = f"{zone}/energy_uj is not readable (root only on this kernel)"
                return None
            total += counter_delta(start, end, wrap + 1)
        return total / 1e6


def _read_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip()
    except OSError:
        return zone.name
