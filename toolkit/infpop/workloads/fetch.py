"""Get a dataset file onto local disk once, verified by sha256.

Compute nodes usually have no internet: ``make data`` runs this on the login node, and jobs
then find the file in place and only verify it.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from pathlib import Path

from infpop.checksums import file_sha256
from infpop.errors import InputError
from infpop.filemodes import file_mode


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, file_mode())  # mkstemp's 0600 would hide the data from the group
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        _check(Path(tmp), sha256)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"workload.url: cannot download {url}: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
