"""Files on shared storage are readable by the user's group: a local sweep, then the table and
figures of ``make demo``, run through the real command line under a given umask, and every file
and folder they leave under the output root checked.

Costs two one-trial sweeps, a one-trial search on the tiny model and one figures run (~40 s on 2
idle cores).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

INFPOP = [sys.executable, "-m", "infpop"]


def _run(umask: int, *args: str) -> None:
    proc = subprocess.run(
        [*INFPOP, *args], capture_output=True, text=True, timeout=600, preexec_fn=lambda: os.umask(umask)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _modes(root: Path) -> dict[str, tuple[bool, int]]:
    """Relative path -> (is a folder, mode bits) of everything below ``root``, ``root`` included."""
    return {str(p.relative_to(root.parent)): (p.is_dir(), p.stat().st_mode) for p in [root, *sorted(root.rglob("*"))]}


def _one_trial(write_manifest) -> Path:
    return write_manifest(batch_sizes=[4])


def test_with_umask_022_everything_a_demo_writes_is_readable_by_group_and_others(
    write_manifest, tmp_path: Path
) -> None:
    manifest = _one_trial(write_manifest)
    study = tmp_path / "runs" / "t"
    _run(0o022, "sweep", str(manifest))
    _run(0o022, "aggregate", str(study), "-o", str(study / "table.parquet"))
    _run(0o022, "figures", str(study / "table.parquet"), "-o", str(study / "figures"))

    modes = _modes(study)
    kinds = {Path(p).suffix for p, (is_dir, _) in modes.items() if not is_dir}
    assert {".json", ".parquet", ".csv", ".png", ".pkl", ".out", ".err"} <= kinds, kinds
    private = {
        p: oct(stat.S_IMODE(m)) for p, (d, m) in modes.items() if m & (0o055 if d else 0o044) != (0o055 if d else 0o044)
    }
    assert not private, f"not readable by group and others: {private}"


@pytest.mark.parametrize("command", [["sweep"], ["hpo", "search", "--budget", "1"]], ids=["sweep", "hpo-search"])
def test_a_group_shared_profile_lets_the_group_write_and_keeps_the_group(
    write_manifest, tmp_path: Path, command: list[str]
) -> None:
    profile = tmp_path / "lab.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "name": "lab",
                "group_shared": True,
                "partitions": {"local": {"executor": "local", "hardware": "cpu", "array_parallelism": 1}},
            }
        )
    )
    study = tmp_path / "runs" / "t"
    _run(0o077, *command, str(_one_trial(write_manifest)), "--profile", str(profile))

    modes = _modes(study)
    if command[0] == "hpo":
        assert any("/.infpop/search/" in p and p.endswith(".json") for p in modes), "the search's state is checked"
    (result,) = [p for p in modes if p.endswith(".json") and ".infpop" not in p]
    assert stat.S_IMODE(modes[result][1]) & 0o060 == 0o060, "a member's umask 077 still lets the group write"
    for path, (is_dir, mode) in modes.items():
        want = stat.S_IRWXG | stat.S_ISGID if is_dir else stat.S_IRGRP | stat.S_IWGRP
        assert mode & want == want, f"{path}: {oct(stat.S_IMODE(mode))}"
    assert {p.stat().st_gid for p in study.rglob("*")} == {study.stat().st_gid}
    assert stat.S_IMODE(modes[result][1]) & 0o007 == 0, "others stay out: only the group bits were opened"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_writes_take_the_umask_not_mkstemps_0600(tmp_path: Path, umask: int) -> None:
    from infpop.atomic import write_atomic

    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o666 & ~umask
