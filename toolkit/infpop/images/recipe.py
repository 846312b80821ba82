"""An image's recipes, rendered from its lock: the Apptainer def file and the Dockerfile.

What an image holds is decided once, here, from ``containers/<name>.lock.toml``: both recipe
formats are rendered from the same install steps, so they cannot drift, and both are committed
next to the lock (``tests/toolkit/test_containers.py`` checks the committed files against the render).
A runtime builds from the format its ``recipe_suffix`` names (:data:`RECIPES`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from infpop.images.lock import CONTAINERS_DIR, ImageLock, locks

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

#: Tag of an imported debootstrap base: ``FROM infpop-base:<suite>`` in a Dockerfile.
BASE_REPO = "infpop-base"


def describe(lock: ImageLock) -> str:
    """One line saying what the image is for, e.g. "transformers pipeline (HF engine) on A100 (compute capability 8.0)"."""
    if lock.compute_capability is None:
        return f"{lock.description} on CPU"
    gpu = GPU_NAMES.get(lock.compute_capability, "GPUs")
    return f"{lock.description} on {gpu} (compute capability {lock.compute_capability})"


def recipe_header(lock: ImageLock, build: str) -> list[str]:
    """The comment lines that open every recipe: what the image is, that the file is rendered
    from its lock (an edit by hand would be lost, and the static checks would fail), and how to
    build it (``build``: what the runtime's build needs, in a few words)."""
    return [
        f"# infpop trial image: {describe(lock)}.",
        f"# Generated from containers/{lock.name}.lock.toml by `python -m infpop.images recipes`; do not edit:",
        "# tests/toolkit/test_containers.py checks that it installs exactly the lock's pins.",
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
    """The command that fails the build unless the image holds what its lock says
    (:mod:`infpop.images.smoke`: the ``[smoke_test]`` imports, the pins' versions, torch's CUDA
    build and architectures, no driver library, no token)."""
    return f"{VENV}/bin/python -m infpop.images.smoke /opt/infpop/lock.toml {lock.name}"


def apptainer_def(lock: ImageLock) -> str:
    """The Apptainer def file: ``%files`` are paths of the staged build context."""
    lines = recipe_header(lock, "stages the build context and runs apptainer build in it")
    if lock.debootstrap is not None:
        deb = lock.debootstrap
        lines += [
            "Bootstrap: debootstrap",
            f"OSVersion: {deb['suite']}",
            f"MirrorURL: {deb['mirror']}",
            f"Include: {' '.join(deb['include'])}",
        ]
    else:
        lines += ["Bootstrap: docker", f"From: {lock.base}"]
    lines += ["", "%labels", *(f"    {key} {value}" for key, value in image_labels(lock).items())]
    lines += [
        "",
        "%help",
        f"    Runs `python -m infpop trial GROUP_FILE` with the {describe(lock)}:",
        "        apptainer exec --nv --bind /shared IMAGE python -m infpop trial GROUP_FILE",
        "    /opt/infpop/pip-freeze.txt lists every installed package with its version.",
        "",
        "%files",
        *(f"    {src} {dst}" for src, dst in [*dependency_copies(lock), *SOURCE_COPIES]),
        "",
        "%environment",
        f"    export PATH={VENV}/bin:$PATH",
        *(f"    export {key}={value}" for key, value in IMAGE_ENV.items()),
        "",
        "%post",
        *(f"    {cmd}" for cmd in [*install_commands(lock), *INFPOP_COMMANDS]),
        "",
        "%test",
        f"    {smoke_test(lock)}",
    ]
    return "\n".join(lines) + "\n"


def dockerfile(lock: ImageLock) -> str:
    """The Dockerfile: a debootstrap base is ``FROM infpop-base:<suite>``, imported by the build
    (its tarball's sha256 passed in as ``BASE_SHA256`` and kept in the image)."""
    base = f"{BASE_REPO}:{lock.debootstrap['suite']}" if lock.debootstrap is not None else lock.base
    lines = recipe_header(lock, "a profile partition with runtime: charliecloud")
    if lock.debootstrap is not None:
        deb = lock.debootstrap
        lines += [
            f"# {base} is `debootstrap --variant={deb['variant']} --include={','.join(deb['include'])} "
            f"{deb['suite']} ROOTFS {deb['mirror']}`,",
            "# imported with ch-image; its tarball's sha256 is passed in as BASE_SHA256 and kept in the image.",
        ]
    lines += [f"FROM {base}", "ARG BASE_SHA256=none"]
    lines.append("LABEL " + " ".join(f"{key}={value}" for key, value in image_labels(lock).items()))
    lines += [f"COPY {src} {dst}" for src, dst in dependency_copies(lock)]
    lines.append(_run([*install_commands(lock), "echo $BASE_SHA256 > /opt/infpop/base.sha256"]))
    lines += [f"COPY {src} {dst}" for src, dst in SOURCE_COPIES]
    lines.append(_run([*INFPOP_COMMANDS, smoke_test(lock)]))
    env = {"PATH": f"{VENV}/bin:$PATH", **IMAGE_ENV}
    lines.append("ENV " + " ".join(f"{k}={v}" for k, v in env.items()))
    return "\n".join(lines) + "\n"


def _run(commands: list[str]) -> str:
    """One Dockerfile RUN of shell commands (one shell, so ``set`` and ``export`` carry over)."""
    return "RUN " + " \\\n && ".join(commands)


#: Every recipe format, by the suffix of its committed file (``containers/<name><suffix>``).
RECIPES: dict[str, Callable[[ImageLock], str]] = {".def": apptainer_def, ".Dockerfile": dockerfile}


def render(lock: ImageLock, suffix: str) -> str:
    """The recipe of ``lock``'s image in the format of ``suffix`` (a runtime's ``recipe_suffix``)."""
    return RECIPES[suffix](lock)


def stale_recipes(write: bool, containers_dir: Path = CONTAINERS_DIR) -> list[Path]:
    """Committed recipes that differ from their render (rewritten when ``write``)."""
    stale = []
    for lock in locks(containers_dir):
        for suffix, render_format in RECIPES.items():
            path = containers_dir / f"{lock.name}{suffix}"
            text = render_format(lock)
            if not path.is_file() or path.read_text() != text:
                stale.append(path)
                if write:
                    path.write_text(text)
    return stale
