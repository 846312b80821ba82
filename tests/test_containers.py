"""Container images without apptainer: static checks of the def files and locks, the launcher a
job runs, and the plan's refusals of combinations known not to work.

apptainer cannot be installed here, so nothing is built or executed in a container; the def
files are parsed with spython (the parser of the Singularity/Apptainer project's Python client).
"""

from __future__ import annotations

import hashlib
import re
import shlex
from pathlib import Path

import pytest
import tomllib
import yaml
from infpop.container import (
    CONTAINERS_DIR,
    Runtime,
    cuda_supports,
    image_digest,
    image_lock,
    launcher_argv,
    read_lock,
    torch_build_supports,
)
from infpop.errors import InputError
from infpop.manifest import load_manifest
from infpop.plan import plan
from infpop.profile import PartitionProfile, load_profile
from spython.main.parse.parsers import SingularityParser

REPO = Path(__file__).resolve().parents[1]
UNIVERSITY = REPO / "slurm" / "profiles" / "university.yaml"
DEFS = sorted(CONTAINERS_DIR.glob("*.def"))
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s=]+)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip_installs(post: list[str]) -> list[list[str]]:
    """The arguments of every ``pip install`` line of a %post section."""
    return [shlex.split(line.split("pip install", 1)[1]) for line in post if "pip install" in line]


def test_every_def_has_a_lock_and_every_lock_a_def() -> None:
    assert DEFS, "no def files in containers/"
    assert {d.stem for d in DEFS} == {p.name.removesuffix(".lock.toml") for p in CONTAINERS_DIR.glob("*.lock.toml")}


@pytest.mark.parametrize("deffile", DEFS, ids=lambda p: p.stem)
def test_def_parses_and_installs_exactly_the_lock(deffile: Path) -> None:
    stages = SingularityParser(str(deffile)).recipe
    assert len(stages) == 1, "one build stage"
    recipe = next(iter(stages.values()))
    lock = read_lock(CONTAINERS_DIR / f"{deffile.stem}.lock.toml")
    for entry in recipe.files:
        assert (REPO / entry.split()[0]).exists(), f"%files source {entry.split()[0]} is not in the repository"
    assert recipe.fromHeader == lock.base, "From: must be the lock's base image"
    labels = dict(line.split(None, 1) for line in recipe.labels)
    assert labels["org.infpop.engine"] == lock.engine
    assert labels["org.infpop.compute_capability"] == lock.compute_capability
    assert labels["org.infpop.cuda"] == lock.cuda

    installed: dict[str, str] = {}
    for args in _pip_installs(recipe.install):
        for arg in args:
            if arg.startswith("-") or arg.startswith("/opt/infpop/src"):
                continue
            match = PIN.match(arg)
            assert match, f"{deffile.name}: {arg!r} is not pinned with =="
            name, version = _norm(match[1]), match[2]
            assert installed.setdefault(name, version) == version, f"{name} installed at two versions"
    pinned = {_norm(k): v for k, v in lock.packages.items()}
    assert installed == pinned, f"{deffile.name} must install exactly the lock's packages at the lock's versions"
    # infpop itself goes in last, without resolving anything: its dependencies are the pins.
    last = _pip_installs(recipe.install)[-1]
    assert "--no-deps" in last and "/opt/infpop/src" in last


@pytest.mark.parametrize("deffile", DEFS, ids=lambda p: p.stem)
def test_cuda_base_and_torch_build_support_the_images_architecture(deffile: Path) -> None:
    lock = read_lock(CONTAINERS_DIR / f"{deffile.stem}.lock.toml")
    tag = re.fullmatch(r"nvidia/cuda:(\d+\.\d+)\.\d+-\w+-ubuntu\d+\.\d+", lock.base)
    assert tag, f"base {lock.base!r} is not an nvidia/cuda image"
    assert tag[1] == lock.cuda == lock.torch_cuda, "base CUDA, lock cuda and torch's CUDA build must agree"
    assert cuda_supports(lock.cuda, lock.compute_capability)
    assert torch_build_supports(lock.packages["torch"], lock.torch_cuda, lock.compute_capability) is True, (
        "add torch's architecture list for this build to TORCH_BUILD_ARCHS (from PyTorch's release matrix)"
    )
    assert lock.unsupported(lock.compute_capability) is None
    assert deffile.stem.endswith("sm" + lock.compute_capability.replace(".", ""))


def test_vllm_images_pin_the_engine_with_the_torch_it_requires() -> None:
    """Each vLLM wheel requires one torch (its METADATA: 0.10.2 torch==2.8.0, 0.32.0 torch==2.13.0);
    the two must move together."""
    requires = {"0.10.2": "2.8.0", "0.32.0": "2.13.0"}
    for path in CONTAINERS_DIR.glob("vllm-*.lock.toml"):
        packages = tomllib.loads(path.read_text())["packages"]
        assert requires.get(packages["vllm"]) == packages["torch"], path.name


def test_architecture_tables_say_what_upstream_dropped() -> None:
    assert cuda_supports("12.8", "7.0") and not cuda_supports("13.0", "7.0"), "CUDA 13 dropped Volta"
    assert cuda_supports("12.8", "8.0") and not cuda_supports("12.6", "10.0")
    assert torch_build_supports("2.8.0", "12.8", "7.0") is True
    assert torch_build_supports("2.11.0", "12.8", "7.0") is False, "torch 2.11 dropped Volta from cu128"
    assert torch_build_supports("2.11.0", "12.6", "7.0") is True
    assert torch_build_supports("2.8.0", "12.8", "8.6") is True, "sm_80 code runs on 8.6"
    assert torch_build_supports("1.0.0", "12.8", "8.0") is None


def test_profile_images_resolve_to_locks_of_their_engine_and_arch() -> None:
    profile = load_profile(UNIVERSITY)
    for name in ("a100", "v100"):
        part = profile.partition(name)
        for engine, image in part.images.items():
            lock = image_lock(image)
            assert lock is not None and lock.engine == engine and lock.compute_capability == part.compute_capability


# ---- the launcher -----------------------------------------------------------------------

V100 = PartitionProfile(
    hardware="v100",
    slurm_partition="gpu-v100",
    compute_capability="7.0",
    images={"hf": "/img/infpop-hf-sm70.sif", "vllm": "/img/infpop-vllm-sm70.sif"},
)


def test_launcher_runs_the_partitions_image_for_the_engine() -> None:
    argv = launcher_argv(V100, "vllm", ["/shared/a", "/shared/b"], digest="ab" * 32, model_cache="/shared/models")
    assert argv[:5] == ["env", "-u", "HF_TOKEN", "-u", "HUGGING_FACE_HUB_TOKEN"]
    i = argv.index("apptainer")
    assert argv[i : i + 3] == ["apptainer", "exec", "--nv"]
    assert argv[argv.index("--bind") + 1] == "/shared/a,/shared/b"
    envs = [argv[k + 1] for k, a in enumerate(argv) if a == "--env"]
    assert envs == [
        "HF_HOME=/shared/models",
        "HF_HUB_CACHE=/shared/models/hub",
        "HF_HUB_OFFLINE=1",
        "INFPOP_CONTAINER_IMAGE=/img/infpop-vllm-sm70.sif",
        "INFPOP_CONTAINER_SHA256=" + "ab" * 32,
    ]
    assert argv[-4:] == ["/img/infpop-vllm-sm70.sif", "python", "-m", "infpop"]
    assert not any("TOKEN=" in a for a in argv)


def test_no_container_runs_bare_with_the_cache_env_or_in_process() -> None:
    bare = launcher_argv(V100, "hf", ["/shared"], containers=False, model_cache="/c", python="/venv/bin/python")
    assert bare == [
        "env", "-u", "HF_TOKEN", "-u", "HUGGING_FACE_HUB_TOKEN",
        "HF_HOME=/c", "HF_HUB_CACHE=/c/hub", "HF_HUB_OFFLINE=1", "/venv/bin/python", "-m", "infpop",
    ]  # fmt: skip
    assert launcher_argv(V100, "hf", ["/shared"], containers=False) is None
    assert launcher_argv(PartitionProfile(executor="local", hardware="cpu"), "hf", []) is None


def test_image_digest_comes_from_the_sidecar_or_the_file(tmp_path: Path) -> None:
    digest = image_digest.__wrapped__  # uncached: the test changes the files between calls
    image = tmp_path / "infpop-hf-sm80.sif"
    image.write_bytes(b"sif")
    assert digest(str(image)) == hashlib.sha256(b"sif").hexdigest()
    Path(f"{image}.sha256").write_text("f" * 64 + "  infpop-hf-sm80.sif\n")
    assert digest(str(image)) == "f" * 64, "make containers writes the sidecar; it saves hashing GBs"
    assert digest(str(tmp_path / "missing.sif")) is None


# ---- plan-time refusals -----------------------------------------------------------------


def _manifest(tmp_path: Path, **fields) -> Path:
    data = {
        "study": "c",
        "output_root": str(tmp_path / "runs"),
        "models": [{"name": "m", "source": "org/m"}],
        "engines": ["hf", "vllm"],
        "gpu_counts": [1],
        "batch_sizes": [1],
        "max_new_tokens": [5],
        "dtype": "float16",
        "workload": {"path": "p.jsonl"},
    }
    data.update(fields)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_plan_refuses_bf16_on_v100_naming_the_field(tmp_path: Path) -> None:
    loaded = load_manifest(_manifest(tmp_path, dtype="bfloat16"))
    with pytest.raises(InputError, match=r"m\.yaml: dtype: 'bfloat16' needs compute capability 8\.0.*'v100' has 7\.0"):
        plan(loaded, "v100", V100)
    a100 = V100.model_copy(update={"compute_capability": "8.0", "images": {}})
    assert plan(loaded, "a100", a100)


def test_plan_refuses_an_image_whose_cuda_lacks_the_gpu(tmp_path: Path) -> None:
    loaded = load_manifest(_manifest(tmp_path))
    thor = V100.model_copy(update={"compute_capability": "11.0", "hardware": "thor"})
    with pytest.raises(
        InputError,
        match=r"images\.hf: /img/infpop-hf-sm70\.sif cannot run on this partition "
        r"\(compute_capability 11\.0\): its torch 2\.8\.0 \(CUDA 12\.8 build\) has no code",
    ):
        plan(loaded, "thor", thor)
    kepler = V100.model_copy(update={"compute_capability": "3.7"})
    with pytest.raises(InputError, match=r"its CUDA 12\.8 does not support compute capability 3\.7"):
        plan(loaded, "k80", kepler)


def test_plan_refuses_an_image_of_the_other_engine(tmp_path: Path) -> None:
    swapped = V100.model_copy(update={"images": {"hf": "/img/infpop-vllm-sm70.sif"}})
    with pytest.raises(InputError, match=r"images\.hf: /img/infpop-vllm-sm70\.sif is the 'vllm' image"):
        plan(load_manifest(_manifest(tmp_path)), "v100", swapped)


def test_strict_plan_refuses_unbuilt_images_but_a_dry_run_does_not(tmp_path: Path) -> None:
    loaded = load_manifest(_manifest(tmp_path))
    assert plan(loaded, "v100", V100, runtime=Runtime(strict=False))
    with pytest.raises(InputError, match=r"/img/infpop-hf-sm70\.sif does not exist; build it with `make containers`"):
        plan(loaded, "v100", V100, runtime=Runtime(strict=True))
    groups = plan(loaded, "v100", V100, runtime=Runtime(containers=False, strict=True))
    assert all(g.launcher is None for g in groups)


def test_groups_carry_the_launcher_of_their_engine(tmp_path: Path) -> None:
    groups = plan(load_manifest(_manifest(tmp_path)), "v100", V100, runtime=Runtime(shared_roots=("/shared",)))
    images = {g.first.engine: g.launcher[-4] for g in groups}
    assert images == {"hf": "/img/infpop-hf-sm70.sif", "vllm": "/img/infpop-vllm-sm70.sif"}


def test_paper_dry_run_runs_the_right_image_per_partition_and_engine(capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's demonstration: every array task's command runs its partition's image for its engine."""
    from infpop.cli import main

    paper = REPO / "manifests" / "paper.yaml"
    for partition, arch in (("a100", "sm80"), ("v100", "sm70")):
        assert main(["sweep", str(paper), "--partition", partition, "--profile", str(UNIVERSITY), "--dry-run"]) == 0
        out = capsys.readouterr().out
        tasks = re.findall(r"# task \d+: \S+?/(hf|vllm)/\S+ .*\n#   runs: (.*)", out)
        assert tasks, out[:2000]
        for engine, command in tasks:
            argv = shlex.split(command)
            image = f"/shared/infpop/containers/infpop-{engine}-{arch}.sif"
            assert argv[argv.index("apptainer") : argv.index("apptainer") + 3] == ["apptainer", "exec", "--nv"]
            assert argv[argv.index("python") - 1] == image and argv[argv.index("python") :][:4] == [
                "python", "-m", "infpop", "trial",
            ]  # fmt: skip
            assert "HF_HUB_OFFLINE=1" in argv and "--bind" in argv
        assert {e for e, _ in tasks} == {"hf", "vllm"}
        assert "--no-container" not in out


def test_no_container_flag_reaches_the_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    from infpop.cli import main

    paper = REPO / "manifests" / "paper.yaml"
    args = ["sweep", str(paper), "--partition", "a100", "--profile", str(UNIVERSITY), "--dry-run", "--no-container"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "apptainer" not in out and "HF_HUB_OFFLINE=1" in out
