"""Cluster profiles: what a PARTITION name means on a given site.

A profile maps each partition name a user types (``a100``, ``v100``, ``local``) to how jobs
reach it: the executor (submitit's local or SLURM), the SLURM partition, the GRES GPU type,
per-GPU CPUs and memory, limits, and the container image. Profiles are YAML files under
``slurm/profiles/``; without one, the embedded default has a single ``local`` partition.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infpop.errors import InputError
from infpop.gpus import nvidia_smi_names
from infpop.manifest import SAFE_NAME, format_validation_error
from infpop.plugins import EXECUTORS
from infpop.runtimes import known_runtimes


class PartitionProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Where the partition's jobs run: an executor of :data:`infpop.plugins.EXECUTORS`.
    executor: str = "slurm"
    #: Name used in result paths and tables (``a100``, ``v100``, ``cpu``); ``auto`` asks nvidia-smi.
    hardware: str = Field(pattern=r"^(auto|[a-z0-9][a-z0-9._-]*)$")
    slurm_partition: str | None = None
    #: GRES type, as in ``--gres=gpu:<gpu_type>:<n>``.
    gpu_type: str | None = None
    #: GPUs one node offers; ``None`` means no GPU accounting (CPU-only local runs).
    gpus_per_node: int | None = Field(default=None, ge=1)
    cpus_per_gpu: int = Field(default=4, ge=1)
    mem_per_gpu_gb: int | None = Field(default=None, ge=1)
    time_min: int = Field(default=240, ge=1)
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = Field(default=16, ge=1)
    #: Compute capability of the partition's GPUs, e.g. "8.0" (A100), "7.0" (V100).
    compute_capability: str | None = Field(default=None, pattern=r"^\d+\.\d+$")
    #: Image per engine (``hf``, ``vllm``); trials run bare when none is set.
    images: dict[str, str] = Field(default_factory=dict)
    #: Container runtime that builds and runs the images: a module of :mod:`infpop.runtimes`.
    runtime: str = "apptainer"

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, value: str) -> str:
        if value not in EXECUTORS.names():
            raise ValueError(f"unknown executor {value!r}; known: {', '.join(sorted(EXECUTORS.names()))}")
        return value

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        if value not in known_runtimes():
            raise ValueError(f"unknown container runtime {value!r}; known: {', '.join(sorted(known_runtimes()))}")
        return value

    @model_validator(mode="after")
    def _slurm_needs_partition(self) -> PartitionProfile:
        if self.executor == "slurm" and not self.slurm_partition:
            raise ValueError("a slurm partition needs 'slurm_partition'")
        return self

    def resolved_gpus_per_node(self) -> int | None:
        """GPUs a node offers; a local partition without a number counts this machine's GPUs."""
        if self.gpus_per_node is None and self.executor == "local":
            return len(nvidia_smi_names()) or None
        return self.gpus_per_node

    def resolved_hardware(self) -> str:
        """The hardware label for result paths; ``auto`` becomes the local GPU's short name or ``cpu``."""
        if self.hardware != "auto":
            return self.hardware
        names = nvidia_smi_names()
        if not names:
            return "cpu"
        words = [w for w in names[0].lower().replace("-", " ").split() if w not in {"nvidia", "tesla"}]
        return (words[0] if words else "gpu").replace("/", "_")


class ClusterProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=SAFE_NAME)
    description: str = ""
    partitions: dict[str, PartitionProfile] = Field(min_length=1)
    #: Paths bound into containers and visible from every node (results, models, data).
    shared_roots: list[str] = Field(default_factory=list)
    #: Where ``infpop models`` stages weights; jobs run offline against it.
    model_cache: str | None = None
    #: A lab's project space: the group may read and write every file infpop writes, and study
    #: folders are setgid so their files take the folder's group (:mod:`infpop.filemodes`).
    group_shared: bool = False

    def partition(self, name: str) -> PartitionProfile:
        try:
            return self.partitions[name]
        except KeyError:
            raise InputError(
                f"partition {name!r} is not in profile {self.name!r}; it has: {', '.join(self.partitions)}"
            ) from None


EMBEDDED_DEFAULT = ClusterProfile(
    name="embedded",
    description="No cluster: submitit's local executor on this machine.",
    partitions={"local": PartitionProfile(executor="local", hardware="auto", cpus_per_gpu=1, array_parallelism=1)},
)


def load_profile(path: str | Path | None = None) -> ClusterProfile:
    """Load ``path``, else ``$INFPOP_PROFILE``, else the embedded local-only default."""
    path = path or os.environ.get("INFPOP_PROFILE")
    if not path:
        return EMBEDDED_DEFAULT
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read profile: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from None
    try:
        profile = ClusterProfile.model_validate(data)
    except ValidationError as err:
        raise InputError(
            format_validation_error(str(path), err).replace("invalid manifest", "invalid profile")
        ) from None
    return _images_relative_to(profile, path.parent)


def _images_relative_to(profile: ClusterProfile, folder: Path) -> ClusterProfile:
    """Relative image paths are relative to the profile's folder, so a profile kept in a
    repository can name the images ``make containers`` builds inside it."""
    parts = {
        name: part.model_copy(
            update={
                "images": {
                    e: i if Path(i).is_absolute() else str((folder / i).resolve()) for e, i in part.images.items()
                }
            }
        )
        for name, part in profile.partitions.items()
    }
    return profile.model_copy(update={"partitions": parts})
