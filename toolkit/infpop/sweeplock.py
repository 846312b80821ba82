"""One sweep per study at a time: a lock under the study's ``.infpop/`` that names its holder.

Two sweeps of one study that both found the same trials missing would both run them (locally)
or submit them (SLURM): every trial twice, the last writer winning. ``infpop sweep`` therefore
holds ``<root>/<study>/.infpop/sweep.lock`` while it decides what is missing and runs or submits
it. A second sweep of the study **refuses** (:class:`StudyLocked`, exit 2), naming the holder
(user, host, pid, since when, partition): a local sweep can run for hours, and once a SLURM
submission is done, a rerun skips the groups whose jobs are still queued (``infpop.sweep``), so
there is nothing to wait for.

The lock is the OS's (``flock`` on the file, which NFS clients forward to the server), so it
is released whenever its process ends, however it ends. The file also holds a holder record
(JSON), which stays when a process dies without releasing; the next sweep takes such a lock
over and says whose it was. It is careful about holders on other hosts: if a filesystem keeps
``flock`` local to each client, a lock taken there is invisible here, so a record from another
host is only taken over once it is :data:`STALE_AFTER_S` old (a local sweep refreshes it every
:data:`REFRESH_S`); until then the sweep refuses and says how to remove it.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from infpop.errors import InputError

LOCK_NAME = "sweep.lock"
#: How often a running sweep marks its lock as alive (the file's mtime).
REFRESH_S = 60.0
#: Age after which a lock left by a process on another host is taken over.
STALE_AFTER_S = 15 * 60.0


class StudyLocked(InputError):
    """Another sweep of the study holds its lock; the message names it and what to do."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    return (
        f"{holder.get('user', '?')}@{holder.get('host', '?')} (pid {holder.get('pid', '?')}, since "
        f"{holder.get('since', '?')}, partition {holder.get('partition', '?')!r})"
    )


class SweepLock:
    """The held lock of one study; :meth:`refresh` tells others the sweep is still alive."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd
        self._refreshed = time.monotonic()

    def refresh(self) -> None:
        """Mark the lock alive (at most every :data:`REFRESH_S`); a long local run calls this."""
        if time.monotonic() - self._refreshed >= REFRESH_S:
            os.utime(self.fd)
            self._refreshed = time.monotonic()


def _read(fd: int) -> dict[str, Any] | None:
    text = os.pread(fd, 1 << 16, 0).decode(errors="replace").strip()
    if not text:
        return None
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {"record": text[:200]}
    return holder if isinstance(holder, dict) else {"record": text[:200]}


def _refuse(path: Path, holder: dict[str, Any] | None, why: str) -> StudyLocked:
    who = _describe(holder) if holder else "another process"
    return StudyLocked(f"{path}: this study is being swept by {who}; {why}")


@contextmanager
def sweep_lock(study_dir: str | Path, partition: str) -> Iterator[SweepLock]:
    """Hold the study's sweep lock (``study_dir``: its ``.infpop`` folder) or raise :class:`StudyLocked`."""
    folder = Path(study_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError as exc:
        raise InputError(f"{path}: cannot open the study's sweep lock: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise _refuse(
                path, _read(fd), "this sweep stops. Rerun it when that one is done (`infpop status` shows its trials)."
            ) from None
        host = socket.gethostname()
        previous = _read(fd)
        if previous is not None:
            _take_over(path, previous, host, time.time() - os.fstat(fd).st_mtime)
        holder = {
            "host": host,
            "pid": os.getpid(),
            "user": getpass.getuser(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "partition": partition,
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(fd)
        try:
            yield SweepLock(path, fd)
        finally:
            # Emptied, not deleted: a sweep that opened the file meanwhile would lock a deleted inode.
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def _take_over(path: Path, previous: dict[str, Any], host: str, age_s: float) -> None:
    """A record with its lock released: its process ended without cleaning up. Refuse where that
    cannot be known (another host, recently alive), else say whose lock this sweep takes."""
    if previous.get("host") == host:
        pid = previous.get("pid")
        gone = "is no longer running" if isinstance(pid, int) and not _alive(pid) else "no longer holds it"
        note = f"process {pid} {gone}"
    elif age_s < STALE_AFTER_S:
        raise _refuse(
            path,
            previous,
            f"its lock was last refreshed {age_s:.0f} s ago from another host, and this filesystem may not "
            f"share locks between hosts. If that sweep is no longer running, remove {path} and rerun.",
        )
    else:
        note = f"its host has not refreshed it for {age_s / 60:.0f} min"
    print(f"infpop: taking over the sweep lock left by {_describe(previous)}: {note}", file=sys.stderr)
