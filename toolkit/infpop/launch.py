"""How a job of a plan starts: in its partition's image or bare, with which binds and environment.

Each partition of a profile names one image per engine (``images``) and the container runtime
that runs them (``runtime``, :mod:`infpop.runtimes`: Apptainer by default, or Charliecloud). A
job starts e.g. ``apptainer exec --nv --bind <binds> IMAGE python -m infpop trial GROUP_FILE``
(what it binds: :mod:`infpop.binds`) so CUDA, torch and the engine are the versions of that
image's lock (:mod:`infpop.images`), and the result records the image path and sha256. Models
come from the profile's ``model_cache``, read offline (``HF_HUB_OFFLINE=1``); tokens are removed
from the job's environment, so nothing secret enters the container.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from infpop.binds import Need, group_binds, image_path
from infpop.runtimes import get_runtime

if TYPE_CHECKING:
    from collections.abc import Sequence

    from infpop.profile import ClusterProfile, PartitionProfile
    from infpop.runtimes.base import Bind

#: Token variables removed from a job's environment: jobs read staged models offline.
TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


@cache
def image_digest(image: str, runtime: str = "apptainer") -> str | None:
    """sha256 of an image as its runtime takes it (cached: images are large); None when the image
    does not exist (a dry run)."""
    return get_runtime(runtime).digest(image)


def job_env(model_cache: str | None) -> dict[str, str]:
    """Environment of a job that reads models from the staged cache, offline. Never a token."""
    if model_cache is None:
        return {}
    return {"HF_HOME": model_cache, "HF_HUB_CACHE": str(Path(model_cache) / "hub"), "HF_HUB_OFFLINE": "1"}


def launcher_argv(
    part: PartitionProfile,
    engine: str,
    binds: Sequence[Bind],
    *,
    containers: bool = True,
    digest: str | None = None,
    model_cache: str | None = None,
    python: str = sys.executable,
) -> list[str] | None:
    """The argv prefix that starts ``python -m infpop`` for a job of ``engine`` on ``part``.

    With the partition's image for the engine: its runtime's argv, e.g. ``apptainer exec --nv
    --bind ROOTS --env ... IMAGE python -m infpop`` (``digest`` is the image's sha256, recorded in
    every result; ``binds`` are the only host paths it sees, and ``model_cache`` is the cache's
    path inside the image); without one
    (or ``containers=False``) but with a model cache: this interpreter under ``env`` with the
    cache variables; otherwise None, and the job runs in-process. Tokens are unset in both forms.
    """
    image = part.images.get(engine) if containers else None
    env = job_env(model_cache)
    unset = [arg for var in TOKEN_VARS for arg in ("-u", var)]
    if image is None:
        if not env:
            return None
        return ["env", *unset, *(f"{k}={v}" for k, v in env.items()), python, "-m", "infpop"]
    env = {**env, "INFPOP_CONTAINER_IMAGE": image}
    if digest is not None:
        env["INFPOP_CONTAINER_SHA256"] = digest
    # A GPU partition's job needs the host's driver inside the image (apptainer --nv, ch-fromhost --nvidia).
    argv = get_runtime(part.runtime).exec_argv(image, tuple(binds), env, gpus=part.compute_capability is not None)
    return ["env", *unset, *argv, "-m", "infpop"]


@dataclass(frozen=True)
class LaunchOptions:
    """How the jobs of a plan start: what the profile shares and whether images are used.

    ``strict`` also refuses what a job would fail on later (image not built, model not staged);
    plans for a real submission are strict, dry runs are not (they run on any machine).
    """

    shared_roots: tuple[str, ...] = ()
    model_cache: str | None = None
    containers: bool = True
    strict: bool = False

    @classmethod
    def from_profile(cls, profile: ClusterProfile, *, containers: bool = True, strict: bool = False) -> LaunchOptions:
        return cls(tuple(profile.shared_roots), profile.model_cache, containers, strict)

    def image(self, part: PartitionProfile, engine: str) -> str | None:
        return part.images.get(engine) if self.containers else None

    def binds(self, part: PartitionProfile, engine: str, needs: Sequence[Need]) -> tuple[Bind, ...]:
        """The binds of a job of ``engine`` that needs ``needs`` (none when it runs bare)."""
        if self.image(part, engine) is None:
            return ()
        return group_binds(needs, self.shared_roots, part.runtime)

    def launcher(self, part: PartitionProfile, engine: str, binds: Sequence[Bind]) -> list[str] | None:
        image = self.image(part, engine)
        cache = self.model_cache
        if image is not None and cache is not None:
            cache = image_path(cache, binds) or cache
        return launcher_argv(
            part,
            engine,
            binds,
            containers=self.containers,
            digest=image_digest(image, part.runtime) if image else None,
            model_cache=cache,
        )
