"""What every container runtime shares: the image's contents (from its lock), the build context,
and the digest a result records.

A runtime differs only in three things (the shape of ReFrame's container platforms): the recipe
format and build command, the argv that enters an image, and how an image's digest is taken.
What an image holds is decided once, here, from ``containers/<name>.lock.toml``: both the
Apptainer def file and the Dockerfile of an image are rendered from the same install steps, so
they cannot drift (``tests/test_containers.py`` checks the committed files against the render).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from infpop.checksums import file_sha256

if TYPE_CHECKING:
    from infpop.binds import Bind
    from infpop.container import ImageLock

#: Where the image's Python environment lives; runtimes start ``VENV/bin/python``.
VENV = "/opt/infpop/venv"

#: Files of the repository an image installs infpop from (paths relative to the repository root).
SOURCES = ("pyproject.toml", "README.md", "toolkit")

#: Directories of the build context that build options fill (empty unless the option is given):
#: extra CA certificates (sites behind a TLS-inspecting proxy) and local wheels (pins not on PyPI).
CA_DIR = "ca-certificates"
WHEELS_DIR = "wheels"

#: Environment of every trial in an image: ``$HOME`` may be bound in, so packages in ~/.local
#: must not shadow the pinned ones; no progress bars in job logs.
IMAGE_ENV = {
    "PYTHONNOUSERSITE": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}

#: GPU names for the comments of a recipe (compute capability -> name).
GPU_NAMES = {"7.0": "V100", "8.0": "A100", "9.0": "H100"}

#: Modification time of the folders of a staged build context (2000-01-01).
STAGED_MTIME = 946684800


def describe(lock: ImageLock) -> str:
    """One line saying what the image is for, e.g. "transformers pipeline (HF engine) on A100 (compute capability 8.0)"."""
    engine = {"hf": "transformers pipeline (HF engine)", "vllm": "vLLM"}.get(lock.engine, f"{lock.engine} engine")
    if lock.compute_capability is None:
        return f"{engine} on CPU"
    gpu = GPU_NAMES.get(lock.compute_capability, "GPUs")
    return f"{engine} on {gpu} (compute capability {lock.compute_capability})"


def recipe_header(lock: ImageLock, build: str) -> list[str]:
    """The comment lines that open every recipe: what the image is, that the file is rendered
    from its lock (an edit by hand would be lost, and the static checks would fail), and how to
    build it (``build``: what the runtime's build needs, in a few words)."""
    return [
        f"# infpop trial image: {describe(lock)}.",
        f"# Generated from containers/{lock.name}.lock.toml by `python -m infpop.images recipes`; do not edit:",
        "# tests/test_containers.py checks that it installs exactly the lock's pins.",
        f"# Build: `make containers PROFILE=...` ({build}).",
    ]


def image_labels(lock: ImageLock) -> dict[str, str]:
    """The labels every image carries, whichever runtime built it: its lock and, on GPU images,
    what hardware and CUDA it targets."""
    labels = {"org.infpop.image": lock.name, "org.infpop.engine": lock.engine}
    if lock.compute_capability is not None:
        labels |= {"org.infpop.compute_capability": str(lock.compute_capability), "org.infpop.cuda": str(lock.cuda)}
    return labels


def install_commands(lock: ImageLock) -> list[str]:
    """The shell commands that install the lock's pins into an image, in order, for every recipe
    format (infpop itself follows: :data:`INFPOP_COMMANDS`).

    Extra CA certificates of the build context are trusted first, so pip works behind a
    TLS-inspecting proxy; pip is pointed at the system bundle because the venv's first pip
    (Debian's or Ubuntu's) still uses its own. Every package is ``name==version`` from the lock;
    the lock's ``remove`` list is uninstalled after them.
    """
    cmds = ["set -eu", "export DEBIAN_FRONTEND=noninteractive"]
    if lock.debootstrap is None:
        cmds += [
            "apt-get update",
            "apt-get install -y --no-install-recommends python3 python3-venv ca-certificates",
            "rm -rf /var/lib/apt/lists/*",
        ]
    first = ("pip", "setuptools", "wheel")
    pins = [f"{name}=={version}" for name, version in lock.packages.items() if name not in first]
    tools = [f"{name}=={lock.packages[name]}" for name in first if name in lock.packages]
    pip = f"{VENV}/bin/python -m pip install --no-cache-dir --find-links /opt/infpop/{WHEELS_DIR}"
    return [
        *cmds,
        "update-ca-certificates",
        "export PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
        f"python3 -m venv {VENV}",
        f"{pip} {' '.join(tools)}",
        f"{pip} {' '.join(pins)}",
        *([f"{VENV}/bin/python -m pip uninstall -y {' '.join(lock.remove)}"] if lock.remove else []),
        # The wheels were only needed to install; the image should not carry them twice.
        f"rm -rf /opt/infpop/{WHEELS_DIR}",
    ]


#: infpop itself goes in last, without resolving anything: its dependencies are the pins.
INFPOP_COMMANDS = [
    f"{VENV}/bin/python -m pip install --no-cache-dir --no-deps --no-build-isolation /opt/infpop/src",
    f"{VENV}/bin/python -m pip freeze > /opt/infpop/pip-freeze.txt",
]


def dependency_copies(lock: ImageLock) -> list[tuple[str, str]]:
    """(context path, image path) of what the pins' installation needs, relative to the build context."""
    return [
        (f"containers/{lock.name}.lock.toml", "/opt/infpop/lock.toml"),
        (CA_DIR, "/usr/local/share/ca-certificates/infpop"),
        (WHEELS_DIR, f"/opt/infpop/{WHEELS_DIR}"),
    ]


#: (context path, image path) of infpop's sources; copied after the pins are installed, so a
#: change of infpop's code rebuilds only the last step where a runtime caches build steps.
SOURCE_COPIES = [(src, f"/opt/infpop/src/{src}") for src in SOURCES]


def smoke_test(lock: ImageLock) -> str:
    """A command that fails unless the image's engine imports."""
    modules = {"hf": "torch, transformers, accelerate", "vllm": "torch, vllm"}.get(lock.engine, "torch")
    return (
        f"{VENV}/bin/python -c \"import {modules}, infpop.engines.{lock.engine}; print('infpop image {lock.name} ok')\""
    )


@dataclass(frozen=True)
class BuildOptions:
    """Site choices that change how an image is built, never what it holds.

    ``ca_certs``: a directory of extra CA certificates (``*.crt``) trusted during the build, for
    sites behind a TLS-inspecting proxy. ``wheels``: a directory holding wheels of pins that are
    not on PyPI (the CPU build of torch). ``cache``: where a runtime keeps what later builds reuse
    (a debootstrap base, a build cache). ``mount_points``: the profile's shared roots, for runtimes
    that can only bind onto directories that exist in a read-only image. ``log``: where the build
    commands' output goes (appended); None leaves it on this process's, as for one build at a
    time: builds that run side by side each keep their own, or their lines interleave.
    """

    ca_certs: Path | None = None
    wheels: Path | None = None
    cache: Path = Path("build/containers/cache")
    mount_points: tuple[str, ...] = ()
    log: Path | None = None


def run_step(argv: list[str], opts: BuildOptions, **kwargs: Any) -> None:
    """Run one build command (raising on failure), its output to ``opts.log`` when set."""
    if opts.log is None:
        subprocess.run(argv, check=True, **kwargs)
        return
    with opts.log.open("a") as out:
        subprocess.run(argv, check=True, stdout=out, stderr=subprocess.STDOUT, **kwargs)


def stage_context(lock: ImageLock, recipe: str, recipe_name: str, repo: Path, opts: BuildOptions, dest: Path) -> Path:
    """Write the build context of ``lock``'s image into ``dest``: the recipe, infpop's sources,
    the lock, and what the options bring (CA certificates; the wheels of pinned packages only)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / recipe_name).write_text(recipe)
    for src in SOURCES:
        if (repo / src).is_dir():
            shutil.copytree(repo / src, dest / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(repo / src, dest / src)
    (dest / "containers").mkdir()
    shutil.copy2(repo / "containers" / f"{lock.name}.lock.toml", dest / "containers" / f"{lock.name}.lock.toml")
    (dest / CA_DIR).mkdir()
    if opts.ca_certs is not None:
        for crt in sorted(Path(opts.ca_certs).glob("**/*.crt")):
            shutil.copy2(crt, dest / CA_DIR / crt.name)
    # Not copied into the image by a recipe, but part of what the image is built from.
    (dest / "mount-points").write_text("".join(f"{root}\n" for root in opts.mount_points))
    (dest / WHEELS_DIR).mkdir()
    if opts.wheels is not None:
        wanted = {(_norm(n), v) for n, v in lock.packages.items()}
        for whl in sorted(Path(opts.wheels).glob("*.whl")):
            name, version = whl.name.split("-")[:2]
            if (_norm(name), version) in wanted:
                shutil.copy2(whl, dest / WHEELS_DIR / whl.name)
    # Files keep their times (copy2); folders are new at every staging: give them one fixed time,
    # so a build cache that looks at metadata (ch-image's) sees an unchanged context as unchanged.
    for folder in [dest, *(p for p in dest.rglob("*") if p.is_dir())]:
        os.utime(folder, (STAGED_MTIME, STAGED_MTIME))
    return dest


def _norm(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def tree_digest(root: Path) -> str:
    """sha256 over the relative paths and contents of every file under ``root``: whether a build
    context changed since an image was built from it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


class ContainerRuntime:
    """One way of building and entering trial images. Subclasses set the class attributes and
    implement :meth:`recipe`, :meth:`exec_argv` and :meth:`build`; the digest is the sha256 of
    the image file unless a runtime knows better."""

    #: Name a profile partition gives as ``runtime:``.
    name: ClassVar[str]
    #: Suffix of the committed recipe next to each lock (``containers/<name><suffix>``).
    recipe_suffix: ClassVar[str]
    #: Suffix of a built image file (``infpop-<name><suffix>``).
    image_suffix: ClassVar[str]
    #: Executables a build needs on this machine.
    build_tools: ClassVar[tuple[str, ...]]
    #: Whether a bind may target a path the read-only image lacks (the runtime creates it), and
    #: whether a single file can be bound; :mod:`infpop.binds` places the binds accordingly.
    creates_mount_points: ClassVar[bool] = True
    binds_files: ClassVar[bool] = True
    #: Whether a bind can be read-only (what a job only reads is then bound so).
    read_only_binds: ClassVar[bool] = True

    def recipe(self, lock: ImageLock) -> str:
        """The recipe of ``lock``'s image, rendered from the lock (committed as ``containers/<name><suffix>``)."""
        raise NotImplementedError

    def exec_argv(self, image: str, binds: tuple[Bind, ...], env: dict[str, str]) -> list[str]:
        """The argv that runs the image's Python: ``[..., python]``; ``binds`` are the only host
        paths it sees (:mod:`infpop.binds`); ``env`` is set inside. GPUs: the devices SLURM gave the job."""
        raise NotImplementedError

    def build(self, lock: ImageLock, context: Path, image: Path, opts: BuildOptions) -> None:
        """Build ``image`` from the staged ``context`` (its recipe inside); raise on failure."""
        raise NotImplementedError

    def digest(self, image: str) -> str | None:
        """sha256 of an image: from ``IMAGE.sha256`` (written at build) when it is not older than
        the image, else computed; None when the image does not exist (a dry run)."""
        path = Path(image)
        if not path.is_file():
            return None
        sidecar = Path(f"{image}.sha256")
        if sidecar.is_file() and sidecar.stat().st_mtime >= path.stat().st_mtime:
            return sidecar.read_text().split()[0]
        return file_sha256(path)
