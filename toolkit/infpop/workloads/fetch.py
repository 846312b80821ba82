"""Get a dataset file onto local disk once, verified by sha256.

Compute nodes usually have no internet: ``make data`` runs this on the login node, and jobs
then find the file in place and only verify it.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

from infpop.atomic import atomic_file
from infpop.checksums import file_sha256
from infpop.errors import InputError


def _check(path: Path, expected: str | None) -> None:
    if expected is not None and (actual := file_sha256(path)) != expected:
        raise InputError(f"workload.sha256: {path} has sha256 {actual}, the manifest expects {expected}")


def ensure_local(path: Path | None, url: str | None, sha256: str | None) -> Path:
    """Return a verified local copy, downloading ``url`` to ``path`` if it is missing."""
    if path is not None and path.exists():
        _check(path, sha256)
        return path
    if url is None:
        raise InputError(f"workload.path: {path} does not exist and no workload.url is given to fetch it")
    if path is None:
        raise InputError(f"workload.path: needed as the place to store {url}")
    try:
        with atomic_file(path) as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
            _check(tmp, sha256)
    except OSError as exc:
        raise InputError(f"workload.url: cannot download {url}: {exc}") from None
    return path
