"""File modes on shared storage: a lab group can read the studies its members run.

Everything infpop writes takes the process umask, as ``open`` does: with the usual 022, group
and others can read results, group files, logs and tables. Writes that go through a temporary
file (results, group files, downloads) create it with :func:`tempfile.mkstemp`, which is 0600
whatever the umask, so they set the umask's mode themselves before the rename.

A profile with ``group_shared: true`` (a project space shared by a lab) goes further: the group
bits of the umask are cleared, so the group can also write (and fix or rerun a member's study),
and the study folder is setgid, so every file and folder below it takes the folder's group
rather than the writer's primary group.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: The umask bits that keep the group out.
GROUP_BITS = 0o070


def current_umask() -> int:
    """The process umask; read from /proc on Linux, so no other thread ever sees it changed."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open`` would give a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def share_with_group() -> None:
    """Let the group read and write what this process and its children create from now on."""
    os.umask(current_umask() & ~GROUP_BITS)


def make_group_dir(path: str | Path) -> Path:
    """Create ``path`` (and its parents) and, where this user owns it, make it group-writable and
    setgid, so what is created below takes its group. A folder someone else owns is left as is."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid == os.getuid():
        path.chmod(stat.S_IMODE(st.st_mode) | stat.S_IRWXG | stat.S_ISGID)
    return path


def share_study_with_group(study: str | Path) -> Path:
    """What a ``group_shared`` profile asks of a command that writes a study (a sweep, a search):
    group-writable files from now on (its jobs inherit the umask), in a setgid study folder."""
    share_with_group()
    return make_group_dir(study)
