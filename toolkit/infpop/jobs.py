"""Jobs: a trial group as something an executor can run, and its files on shared storage.

Each group is written as a JSON file under ``<root>/<study>/.infpop/groups/``; a job carries
only that path. The same file drives ``infpop trial GROUP_FILE``, so a bare run, a local job,
a SLURM array task and a container all execute the identical group. A container that sees the
host's folders elsewhere (:mod:`infpop.binds`) reads the same group with its paths moved, from
``.infpop/image-groups/``.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import submitit

from infpop.atomic import write_atomic
from infpop.binds import image_path
from infpop.plan import GroupSpec


def study_dir(root: str | Path, study: str) -> Path:
    """Bookkeeping of a study (group files, submitit logs, submissions): hidden from result scans."""
    return Path(root) / study / ".infpop"


def group_file(group: GroupSpec) -> Path:
    name = group.group_id.split("/", 1)[1].replace("/", "__") + ".json"
    return study_dir(group.output_root, group.first.study) / "groups" / name


def write_group(group: GroupSpec) -> Path:
    path = group_file(group)
    write_atomic(path, group.model_dump_json(indent=1))
    return path


def _image_view_file(path: Path) -> Path:
    return path.parent.parent / "image-groups" / path.name


def job_group_path(group: GroupSpec, path: Path | None = None) -> str:
    """The group file its job passes to ``infpop trial`` (``path``, default :func:`group_file`),
    as the job sees it: the host's file, or (where the image sees the host's folders elsewhere)
    its image view's path in the image."""
    path = path or group_file(group)
    if group.image_view() is None:
        return str(path)
    return image_path(str(_image_view_file(path)), group.binds) or str(_image_view_file(path))


def write_job_group(group: GroupSpec, path: Path | None = None) -> str:
    """Write the group file (which status and reruns read; ``path``, default :func:`group_file`)
    and the image view its job reads, if it has one (in ``image-groups/`` beside the file's
    folder); return :func:`job_group_path`."""
    path = path or group_file(group)
    write_atomic(path, group.model_dump_json(indent=1))
    view = group.image_view()
    if view is not None:
        write_atomic(_image_view_file(path), view.model_dump_json(indent=1))
    return job_group_path(group, path)


def read_group(path: str | Path) -> GroupSpec:
    return GroupSpec.model_validate_json(Path(path).read_text())


class GroupJob(submitit.helpers.Checkpointable):
    """Runs one group file. On timeout or preemption submitit requeues it (``checkpoint``),
    and the rerun skips trials whose results are already on disk."""

    def __init__(self, group_path: str, launcher: list[str] | None = None, cpu_threads: int | None = None):
        self.group_path = group_path
        #: argv prefix that starts ``python -m infpop`` elsewhere (a container); in-process when None.
        self.launcher = launcher
        self.cpu_threads = cpu_threads

    def __call__(self) -> dict[str, int]:
        if self.cpu_threads:
            os.environ["OMP_NUM_THREADS"] = str(self.cpu_threads)
        if self.launcher:
            subprocess.run([*self.launcher, "trial", self.group_path], check=True)
            return {}
        from infpop.trial import run_group

        return dict(Counter(r.status for r in run_group(read_group(self.group_path))))


def group_job(group: GroupSpec, cpu_threads: int | None = None, path: Path | None = None) -> GroupJob:
    """The one place a group becomes a job (its file written at ``path``, default
    :func:`group_file`), so every executor runs it alike, a sweep's and a search's."""
    return GroupJob(write_job_group(group, path), launcher=group.launcher, cpu_threads=cpu_threads)


def job_argv(group: GroupSpec) -> list[str]:
    """The command a job of ``group`` runs (``--dry-run`` shows it): its launcher, then ``trial``."""
    return [*(group.launcher or ["python", "-m", "infpop"]), "trial", job_group_path(group)]
