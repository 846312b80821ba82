"""Why a job failed, from its two logs: the cause and the log that holds it.

submitit writes a job's stdout and stderr to two files (``<job>_log.out``, ``<job>_log.err``).
A job's own traceback lands in stderr, submitit's notes about it (``Could not dump error``) in
stdout, and on a full disk neither may have been written. A failure message that just says
"see the .err log" may thus point at a file without the cause; :func:`failure_note` names the
cause and the log that holds it, or says that the disk the logs are on is full.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: The last line of a Python traceback: ``OSError: [Errno 28] No space left on device: '...'``.
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(:.*)?$")


def stdout_log(stderr_log: str | Path) -> Path:
    """submitit's stdout log next to a stderr log (``..._log.err`` -> ``..._log.out``)."""
    path = Path(stderr_log)
    return path.with_name(path.name.removesuffix(".err") + ".out")


def _cause(log: Path) -> str | None:
    """The exception line of the last traceback in ``log``, or None."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if not starts:
        return None
    found = [line for line in lines[starts[-1] :] if EXCEPTION_LINE.match(line)]
    return found[-1] if found else None


def full_disk(folder: str | Path) -> str | None:
    """ "no space left" wording when the filesystem of ``folder`` has no free blocks or inodes."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_bavail == 0:
        return f"the filesystem of {folder} is full (0 bytes free: No space left on device)"
    if st.f_files and st.f_favail == 0:
        return f"the filesystem of {folder} has no free inodes (No space left on device)"
    return None


def failure_note(stderr_log: str | Path) -> str:
    """The cause of a failed job and where its traceback is, for the user to read next."""
    err = Path(stderr_log)
    out = stdout_log(err)
    for log in (err, out):
        cause = _cause(log)
        if cause:
            return f"{cause} (traceback in {log})"
    disk = full_disk(err.parent)
    if disk:
        return f"{disk}; its logs could not be written ({err}, {out})"
    return f"no traceback in its logs: see {err} and {out}"
