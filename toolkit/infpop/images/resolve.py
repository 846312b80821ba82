"""Whether a lock installs, without installing it: pip's resolver against PyPI, for the image.

A GPU image is never built here (tens of GB) and is built by a user only on a cluster; a lock
whose pins cannot install together would fail there, after the queue. ``pip install --dry-run
--report`` resolves the lock's whole dependency set for the image's Python (``--python-version``)
and platform (the manylinux tags of its Debian's glibc), wheels only, as the image's build would,
reading only the index pages and each wheel's METADATA, never a whole wheel: the index this
machine reaches does not advertise PEP 658 metadata files, and without them pip downloads every
wheel (4 GB for one torch lock), so ``--use-feature=fast-deps`` has pip read METADATA with HTTP
range requests (an index that advertises the files is read those instead). The check
passes when pip finds one set holding every pin at exactly its version; the set is returned, so a
caller also sees what the pins pull in (torch's CUDA runtime wheels, ``nvidia-*``).

``python -m infpop.images resolve`` runs it for every GPU lock (``cli``); tests/toolkit's
test_lock_resolution.py runs it in CI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from infpop.errors import InputError
from infpop.images.lock import ImageLock

#: The index every image's build installs from.
INDEX = "https://pypi.org/simple"

#: glibc minor version (2.N) of each Debian suite a lock may bootstrap: the newest manylinux tag
#: its Python can install.
SUITE_GLIBC = {"bookworm": 36}

#: pip settings of this machine that must not reach the check: it asks PyPI, as the image's build.
SITE_PIP_VARS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX")


def platforms(lock: ImageLock) -> list[str]:
    """The platform tags the image's pip accepts, newest first. pip takes ``--platform`` literally
    (``manylinux_2_36`` does not admit a ``manylinux_2_28`` wheel), so every older one is named."""
    suite = (lock.debootstrap or {}).get("suite")
    if suite not in SUITE_GLIBC:
        raise InputError(
            f"containers/{lock.name}.lock.toml: the resolver check knows the glibc of Debian suites "
            f"{', '.join(sorted(SUITE_GLIBC))} only; this lock's base is {lock.base!r}"
        )
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(SUITE_GLIBC[suite], 4, -1)]
    return [*tags, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def resolve_argv(lock: ImageLock, target: Path, report: Path) -> list[str]:
    """pip's dry run of installing the lock's pins into the image's Python, its report to ``report``."""
    nodot = lock.python.replace(".", "")
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--quiet",
        "--ignore-installed",
        "--use-feature=fast-deps",
    ]
    argv += ["--report", str(report), "--index-url", INDEX, "--only-binary=:all:", "--target", str(target)]
    argv += ["--python-version", lock.python, "--implementation", "cp", "--abi", f"cp{nodot}"]
    for tag in platforms(lock):
        argv += ["--platform", tag]
    return argv + [f"{name}=={version}" for name, version in lock.packages.items()]


def resolve(lock: ImageLock) -> dict[str, str]:
    """The whole set pip installs for ``lock`` (name -> version), every pin at exactly its
    version; InputError naming the lock and pip's reason when the pins do not resolve."""
    env = {k: v for k, v in os.environ.items() if k not in SITE_PIP_VARS}
    env["PIP_CONFIG_FILE"] = os.devnull  # no site index or local wheel folder: PyPI only
    with tempfile.TemporaryDirectory(prefix="infpop-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        done = subprocess.run(resolve_argv(lock, Path(tmp) / "target", report), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            reason = "\n".join(line for line in done.stderr.splitlines() if line.strip()) or done.stdout
            raise InputError(f"containers/{lock.name}.lock.toml: its pins do not resolve on {INDEX}:\n{reason}")
        installs = json.loads(report.read_text())["install"]
    resolved = {_norm(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}
    for name, version in lock.packages.items():
        got = resolved.get(_norm(name))
        if got != version:
            raise InputError(f"containers/{lock.name}.lock.toml: {name} resolves to {got}, the lock pins {version}")
    return resolved


def _norm(name: str) -> str:
    """A distribution name as PEP 503 compares them (``PyYAML`` = ``pyyaml``, ``huggingface_hub`` = ``huggingface-hub``)."""
    return re.sub(r"[-_.]+", "-", name).lower()
