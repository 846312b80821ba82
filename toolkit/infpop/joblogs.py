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

#: Lines of a log that state a cause: an exception (the last line of a traceback), or an error of
#: the container runtime or SLURM (``ch-run[12]: error: ...``, ``FATAL: ...``,
#: ``slurmstepd: error: *** ... ***``), which fail a job before any Python runs.
CAUSE = re.compile(
    r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)(?::.*)?"
    r"|\S*ch-run\[\d+\]: error: .*|FATAL: .*|slurmstepd: error: .*)$"
)
#: Exceptions that only wrap a cause printed before them: the launcher's exit status, submitit's
#: report of the task.
WRAPPERS = ("subprocess.CalledProcessError", "submitit.core.utils.FailedJobError", "UncompletedJobError")


def stdout_log(stderr_log: str | Path) -> Path:
    """submitit's stdout log next to a stderr log (``..._log.err`` -> ``..._log.out``)."""
    path = Path(stderr_log)
    return path.with_name(path.name.removesuffix(".err") + ".out")


def cause(log: str | Path, tail_bytes: int = 200_000) -> str | None:
    """The first line of why a job failed, from the end of ``log``: the last cause line
    (:data:`CAUSE`) that is not a mere wrapper, else the last wrapper; None without one."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - tail_bytes))
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    causes = [line.strip() for line in text.splitlines() if CAUSE.match(line.strip())]
    real = [c for c in causes if not c.startswith(WRAPPERS)]
    found = (real or causes or [None])[-1]
    return found[:300] if found else None


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
        found = cause(log)
        if found:
            return f"{found} (in {log})"
    disk = full_disk(err.parent)
    if disk:
        return f"{disk}; its logs could not be written ({err}, {out})"
    return f"no cause in its logs: see {err} and {out}"
