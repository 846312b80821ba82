"""Issue 23, the sweep's side: engine options refused at plan time (reproduction 9), one sweep
per study at a time (4), a library warning once per trial rather than per batch (10), and a
failed job's error pointing at the log that holds its cause on a full disk (6).

Everything runs for real: ``infpop`` commands in subprocesses, the OS's file locks between
processes, the tiny model through transformers, a real full filesystem (a tmpfs mounted by the
test, where mounting is permitted).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from infpop.cli import main
from infpop.engines.options import accepts
from infpop.errors import InputError
from infpop.joblogs import failure_note
from infpop.sweeplock import LOCK_NAME, STALE_AFTER_S, StudyLocked, sweep_lock
from minimal_manifest import write_manifest_file

INFPOP = [sys.executable, "-m", "infpop"]
MIB = 1 << 20
#: The CPU build the embedded default's bare runs use (``make install``); the sm70/sm80 images' pins.
CPU_VLLM, V100_VLLM, A100_VLLM = "0.32.0", "0.10.2", "0.32.0"


# ---- reproduction 9: engine options are checked when the study is planned ------------------


def _vllm_manifest(tmp_path: Path, options: dict) -> Path:
    return write_manifest_file(
        tmp_path / "m.yaml",
        engines=["vllm"],
        kv_cache_bytes=[64 * MIB],
        engine_options={"vllm": options},
        workload={"path": "w.jsonl"},
    )


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"max_model_len": -3}, "max_model_len: -3 must be a number >= -1"),  # vLLM's own bound: -1 is "auto"
        ({"max_model_len": "twelve"}, "max_model_len: 'twelve' is not of type int"),
        ({"max_modle_len": 512}, "has no option 'max_modle_len' (partition 'local'); did you mean 'max_model_len'?"),
        ({"enforce_eager": "yes"}, "enforce_eager: 'yes' is not of type bool"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization: 1.5 must be a number > 0 and <= 1"),
        ({"max_num_seqs": 0}, "max_num_seqs: 0 must be a positive number"),  # infpop's: vLLM 0.32 has none
        ({"kv_cache_dtype": "fp7"}, "kv_cache_dtype: 'fp7' is not of type"),
    ],
)
def test_a_bad_vllm_option_fails_the_plan_naming_option_value_and_version(
    tmp_path: Path, capsys: pytest.CaptureFixture, options: dict, says: str
) -> None:
    manifest = _vllm_manifest(tmp_path, options)
    assert main(["plan", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert f"{manifest}: engine_options.vllm." in err and says in err
    assert f"vLLM {CPU_VLLM}" in err, "the version checked against is the one bare runs use"


def test_the_options_the_study_and_the_demo_use_plan(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = _vllm_manifest(tmp_path, {"max_model_len": 2048, "enforce_eager": True, "dtype": "float16"})
    assert main(["plan", str(manifest)]) == 0, capsys.readouterr().err


def _profile(tmp_path: Path, image: str, cc: str) -> Path:
    part = {"hardware": "gpu", "slurm_partition": "p", "gpus_per_node": 4, "compute_capability": cc}
    path = tmp_path / f"{Path(image).stem}.yaml"
    path.write_text(yaml.safe_dump({"name": "site", "partitions": {"p": {**part, "images": {"vllm": image}}}}))
    return path


def test_options_are_checked_against_the_vllm_the_partitions_image_pins(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The images are not built here (no GPU): the plan reads their vLLM pins from the locks."""
    v100 = ["--profile", str(_profile(tmp_path, "/images/infpop-vllm-sm70.sif", "7.0")), "--partition", "p"]
    a100 = ["--profile", str(_profile(tmp_path, "/images/infpop-vllm-sm80.sif", "8.0")), "--partition", "p"]
    # A field 0.32 has and 0.10.2 lacks.
    manifest = str(_vllm_manifest(tmp_path, {"max_model_len": 2048, "enable_return_routed_experts": True}))
    assert main(["plan", manifest, *a100]) == 0, capsys.readouterr().err
    assert main(["plan", manifest, *v100]) == 2
    err = capsys.readouterr().err
    assert f"vLLM {V100_VLLM} (EngineArgs) has no option 'enable_return_routed_experts' (partition 'p')" in err
    manifest = str(_vllm_manifest(tmp_path, {"async_scheduling": 3}))
    assert main(["plan", manifest, *a100]) == 2
    err = capsys.readouterr().err
    assert "engine_options.vllm.async_scheduling: 3 is not of type" in err and f"vLLM {A100_VLLM}" in err


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (
            {"cpu_thread": 2},
            "the HF engine has no option 'cpu_thread' (partition 'local'); did you mean 'cpu_threads'?",
        ),
        ({"cpu_threads": 0}, "cpu_threads: 0 must be a positive number"),
        ({"cpu_threads": "4"}, "cpu_threads: '4' is not of type int"),
    ],
)
def test_a_bad_hf_option_fails_the_plan(tmp_path: Path, options: dict, says: str) -> None:
    from infpop.launch import LaunchOptions
    from infpop.manifest import load_manifest
    from infpop.plan import plan
    from infpop.profile import EMBEDDED_DEFAULT

    manifest = write_manifest_file(tmp_path / "m.yaml", engine_options={"hf": options}, workload={"path": "w.jsonl"})
    with pytest.raises(InputError) as err:
        plan(load_manifest(manifest), "local", EMBEDDED_DEFAULT.partitions["local"], launch=LaunchOptions())
    assert says in str(err.value)


@pytest.mark.parametrize(
    ("annotation", "good", "bad"),
    [
        ("Optional[int]", [None, 3], ["3", 2.5, True]),
        ("int | None", [None, 3], ["twelve"]),
        ("Literal['auto', 'half', 'float16']", ["half"], ["fp16", 1]),
        ("Optional[Literal[1, 8, 16]]", [None, 16], [4, True]),
        ("float", [1, 0.5], ["0.5", False]),
        ("list[int]", [[1, 2]], [[1, "2"], 3]),
        ("Union[str, Literal['auto', 'pt']]", ["anything"], [3]),
        ("Optional[Dict[str, Any]]", [None, {"a": 1}], [[1]]),
        ("CompilationConfig", [{"level": 3}, 3], []),  # a config class: what a manifest gives is passed on
    ],
)
def test_recorded_annotations_accept_and_refuse_yaml_values(annotation: str, good: list, bad: list) -> None:
    assert all(accepts(annotation, v) for v in good)
    assert not any(accepts(annotation, v) for v in bad)


# ---- reproduction 4: one sweep per study at a time ------------------------------------------


def _hold_lock(bookkeeping: Path) -> subprocess.Popen:
    """Another process holding the study's lock, as a running sweep does, until it is killed."""
    code = (
        "import sys, time; from infpop.sweeplock import sweep_lock\n"
        f"with sweep_lock({str(bookkeeping)!r}, 'a100'):\n    print('held', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_lock_refuses_a_second_sweep_naming_its_holder(tmp_path: Path) -> None:
    holder = _hold_lock(tmp_path)
    try:
        with pytest.raises(StudyLocked) as err, sweep_lock(tmp_path, "local"):
            pass
    finally:
        holder.kill()
        holder.wait()
    msg = str(err.value)
    assert f"@{socket.gethostname()} (pid {holder.pid}, since " in msg and "partition 'a100'" in msg
    assert "this sweep stops" in msg
    with sweep_lock(tmp_path, "local"):  # the holder died: its lock went with it
        record = json.loads((tmp_path / LOCK_NAME).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and record["user"]
    assert (tmp_path / LOCK_NAME).read_text() == "", "a released lock holds no record"


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_lock_left_by_a_dead_process_is_taken_over_saying_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pid = _dead_pid()
    record = {"host": socket.gethostname(), "pid": pid, "user": "ann", "since": "2026-01-01T00:00:00+00:00"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    with sweep_lock(tmp_path, "local"):
        pass
    err = capsys.readouterr().err
    assert f"taking over the sweep lock left by ann@{socket.gethostname()} (pid {pid}" in err
    assert f"process {pid} is no longer running" in err


def test_a_recent_lock_from_another_host_is_refused_an_old_one_taken_over(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A filesystem may keep locks local to each client: a free lock says nothing about a sweep on
    another host until its record is stale."""
    path = tmp_path / LOCK_NAME
    path.write_text(json.dumps({"host": "login2", "pid": 4242, "user": "bob", "since": "2026-01-01T00:00:00+00:00"}))
    with pytest.raises(StudyLocked) as err, sweep_lock(tmp_path, "local"):
        pass
    assert "bob@login2 (pid 4242" in str(err.value) and f"remove {path} and rerun" in str(err.value)
    old = time.time() - STALE_AFTER_S - 60
    os.utime(path, (old, old))
    with sweep_lock(tmp_path, "local"):
        pass
    assert "taking over the sweep lock left by bob@login2 (pid 4242" in capsys.readouterr().err


def _results(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.json") if ".infpop" not in p.parts]


def test_two_sweeps_of_one_study_run_every_trial_once(write_manifest, tmp_path: Path) -> None:
    """Two real ``infpop sweep`` processes on the local executor: the second starts while the first
    runs its job, is refused naming the first, and no trial runs twice."""
    manifest = write_manifest(batch_sizes=[1, 2])
    logs = tmp_path / "runs" / "t" / ".infpop" / "logs"
    first = subprocess.Popen([*INFPOP, "sweep", str(manifest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(logs.glob("*/*_log.err")) and time.monotonic() < deadline:  # its job has started
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    second = subprocess.run([*INFPOP, "sweep", str(manifest)], capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    assert "being swept by" in second.stderr and f"(pid {first.pid}, since" in second.stderr
    submissions = (tmp_path / "runs" / "t" / ".infpop" / "submissions.jsonl").read_text().splitlines()
    assert len(submissions) == 1, "one job ran the study's one group"
    assert len(_results(tmp_path / "runs")) == 2


# ---- reproduction 10: a library's per-batch warning, once per trial ---------------------------


def test_a_per_batch_library_warning_is_logged_once_per_trial(write_manifest, tmp_path: Path) -> None:
    """transformers warns on every ``generate`` call (``Both max_new_tokens and max_length seem
    to have been set``); with its warnings shown, 15 batches of 2 trials log each once per trial."""
    manifest = write_manifest(batch_sizes=[1, 4])  # 12 prompts: 12 + 3 batches
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "warning"}
    run = subprocess.run([*INFPOP, "sweep", str(manifest)], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr
    (log,) = (tmp_path / "runs" / "t" / ".infpop" / "logs").glob("*/*_log.err")
    warnings = [line for line in log.read_text().splitlines() if line.startswith("[transformers]")]
    assert any("max_new_tokens" in w and "max_length" in w for w in warnings), "the warning is still shown"
    assert max(warnings.count(w) for w in warnings) <= 2, log.read_text()


# ---- reproduction 6 (the sweep's part): a failed job's message names its cause and its log --------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a real tmpfs (``mount -o <options>``) under tmp_path; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        run = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True
        )
        if run.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {run.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path, by: str) -> None:
    """No space left: every block (``bytes``) or every inode (``inodes``) of the disk taken."""
    if by == "bytes":
        with open(disk / "filler", "wb") as fh, pytest.raises(OSError, match="No space left"):
            while True:
                fh.write(b"\0" * (1 << 16))
                fh.flush()
    else:
        (disk / "fill").mkdir()
        with pytest.raises(OSError, match="No space left"):
            for i in range(10**6):
                (disk / "fill" / str(i)).touch()


@pytest.mark.parametrize(
    ("options", "by", "says"),
    [
        # Results cannot be created but the logs still grow: the traceback is in one of them.
        (
            "size=64m,nr_inodes=400",
            "inodes",
            r"failed: OSError: \[Errno 28\] No space left on device: .* \(in (\S+)\)",
        ),
        # Nothing can be written, the logs neither: the message itself says so.
        (
            "size=4m",
            "bytes",
            r"failed: the filesystem of \S+ is full \(0 bytes free: No space left on device\); its logs",
        ),
    ],
)
def test_a_job_failing_on_a_full_disk_names_the_cause_and_its_log(
    write_manifest, small_disk, options: str, by: str, says: str
) -> None:
    disk = small_disk(options)
    manifest = write_manifest(output_root=str(disk / "runs"), batch_sizes=[1, 2, 3, 4])
    sweep = subprocess.Popen(
        [*INFPOP, "sweep", str(manifest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    logs = disk / "runs" / "t" / ".infpop" / "logs"
    deadline = time.monotonic() + 120
    while not list(logs.glob("*/*_log.err")) and time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()
        time.sleep(0.05)
    _fill(disk, by)  # the job is starting: its results will not fit
    out, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 1, err
    found = re.search(says, err)
    assert found, err
    if found.groups():
        assert "No space left on device" in Path(found.group(1)).read_text(), "the log named holds the cause"


def test_the_message_points_at_the_stdout_log_when_only_it_holds_the_traceback(tmp_path: Path) -> None:
    err, out = tmp_path / "5_0_log.err", tmp_path / "5_0_log.out"
    err.write_text("")
    out.write_text("submitit ERROR - x\nTraceback (most recent call last):\n  File 'a.py'\nValueError: bad value 3\n")
    assert failure_note(err) == f"ValueError: bad value 3 (in {out})"
    out.write_text("")
    assert failure_note(err) == f"no cause in its logs: see {err} and {out}"


@pytest.mark.slurm
@pytest.mark.slow
def test_two_sweeps_at_once_on_slurm_submit_each_group_once(write_manifest, slurm_conf: str, tmp_path: Path) -> None:
    """Two ``infpop sweep`` started together against the test cluster: whichever comes second is
    refused while the first submits, or finds its jobs queued; each group is submitted once."""
    from conftest import wait_finished

    profile = Path(__file__).resolve().parents[2] / "slurm" / "profiles" / "testcluster.yaml"
    manifest = write_manifest(partitions=["a100"], gpu_counts=[1, 2], batch_sizes=[1])
    argv = [*INFPOP, "sweep", str(manifest), "--partition", "a100", "--profile", str(profile)]
    sweeps = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in sweeps]
    codes = sorted(p.returncode for p in sweeps)
    log = tmp_path / "runs" / "t" / ".infpop" / "submissions.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(e["group"] for e in entries) == ["t/a100/hf/tiny/g1", "t/a100/hf/tiny/g2"], outputs
    refused = [err for (_, err), p in zip(outputs, sweeps) if p.returncode == 2]
    queued = [out for (out, _), p in zip(outputs, sweeps) if p.returncode == 0 and "not submitted again" in out]
    assert codes in ([0, 0], [0, 2]) and len(refused) + len(queued) == 1, outputs
    assert all("being swept by" in err for err in refused)
    states = wait_finished([e["job_id"] for e in entries], 300)
    assert set(states.values()) == {"COMPLETED"}, states
