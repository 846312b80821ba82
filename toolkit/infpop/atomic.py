"""Atomic writes: a reader sees a whole file or the old one, a folder whole or marked incomplete.

Every file infpop writes (results, group files, tables, statistics, figures, the report) goes
through :func:`atomic_file`: written under a unique temp name in the target folder, synced, then
renamed over the final name. Two writers never share a temp name, a failed write (a full disk,
an interrupt) leaves neither a temp file nor a truncated file under the final name.

A command that writes a folder of outputs (``infpop stats``, ``infpop figures``) runs in
:func:`output_folder`: an ``INCOMPLETE`` file in the folder says, until the command finished,
that the folder is not a whole set (and why, when it failed).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from infpop.filemodes import file_mode

#: The marker of a folder whose outputs are not a complete set.
INCOMPLETE = "INCOMPLETE"


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temp path to write ``path``'s content to; renamed onto ``path`` when the block ends.

    The temp file has a unique name in the target folder (two writers never share one, and the
    rename stays on one file system), takes the mode ``open`` would give, and is removed if the
    block fails (a full disk, an interrupt): a reader sees the old file or the whole new one,
    never a part, and nothing is left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        os.fchmod(fd, file_mode())  # mkstemp's 0600 would hide the file from the group
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as fh:  # whatever wrote it (pandas, matplotlib) may not have synced
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # pyarrow and others name no file: say which one failed
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_file`."""
    with atomic_file(path) as tmp:
        if isinstance(text, bytes):
            tmp.write_bytes(text)
        else:
            tmp.write_text(text, encoding="utf-8")


@contextmanager
def output_folder(folder: Path, command: str) -> Iterator[Path]:
    """``folder``, marked incomplete while ``command`` writes it; the mark is removed when the
    block finishes, and kept, with the reason, when it fails."""
    marker = folder / INCOMPLETE
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_atomic(marker, f"{command} started writing this folder at {since} and has not finished.\n")
    try:
        yield folder
    except BaseException as exc:
        try:
            write_atomic(marker, f"{command} failed at {datetime.now(timezone.utc).isoformat(timespec='seconds')}: "
                                 f"{type(exc).__name__}: {exc}\nFiles here may be from this run or an earlier one.\n")  # fmt: skip
        except OSError:
            pass  # the marker from the start stays, saying as much
        raise
    marker.unlink()
