"""Trials inside real images: the CPU images (containers/hf-cpu.lock.toml, vllm-cpu.lock.toml)
built with Charliecloud, run by SLURM array jobs of the test cluster's ``charliecloud`` partition
through ``ch-run``.

The image comes from ``make containers PROFILE=slurm/profiles/testcluster.yaml`` (.ci/run builds it
once per run, before the tests), and the jobs use that profile as shipped: no shared_roots, so
each job binds what its group reads and writes (:mod:`infpop.binds`). Without Charliecloud installed the tests skip; with it installed
but no image built, they fail and say how to build it, so CI cannot pass without running them.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import humaneval_head, wait_finished
from infpop.binds import image_path
from infpop.checksums import file_sha256
from infpop.cli import main
from infpop.images.lock import CONTAINERS_DIR, read_lock
from infpop.launch import LaunchOptions
from infpop.manifest import load_manifest
from infpop.plan import plan
from infpop.profile import load_profile
from infpop.results import ResultStore
from infpop.runtimes import get_runtime
from infpop.runtimes.base import Bind

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "slurm" / "profiles" / "testcluster.yaml"
TOOLS = ("ch-run", "ch-image", "ch-convert", "mksquashfs", "debootstrap")
TOKEN = "hf_FAKEtokenForTheCharliecloudTest012345"

pytestmark = [pytest.mark.slow]


def _built_image(engine: str) -> Path:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"Charliecloud is not installed ({', '.join(missing)} missing); .ci/run installs it")
    image = Path(load_profile(PROFILE).partition("charliecloud").images[engine])
    if not image.is_file():
        pytest.fail(
            f"{image} is not built: run `make containers PROFILE=slurm/profiles/testcluster.yaml` (with CA_CERTS=DIR "
            "WHEELS=DIR where needed, see README); .ci/run builds it before the tests"
        )
    return image


@pytest.fixture(scope="module")
def cpu_image() -> Path:
    return _built_image("hf")


@pytest.fixture(scope="module")
def vllm_image() -> Path:
    return _built_image("vllm")


def _user_env() -> dict[str, str]:
    """This environment with ``$USER`` set: ch-run refuses to start without it."""
    return {**os.environ, "USER": os.environ.get("USER") or getpass.getuser()}


@pytest.fixture(scope="module")
def image_tiny_model(cpu_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, built inside the image: saved by the image's transformers, so its files
    are the format that version reads (the host venv's newer one writes a tokenizer class the
    pinned one does not know, as a site's staged models must match their image too)."""
    out = tmp_path_factory.mktemp("image-model")
    argv = get_runtime("charliecloud").exec_argv(str(cpu_image), (Bind(str(out), str(out), True),), {})
    subprocess.run([*argv, "-m", "infpop", "make-tiny-model", str(out / "tiny")], env=_user_env(), check=True)
    return out / "tiny"


@pytest.fixture
def site(
    tmp_path: Path, image_tiny_model: Path, humaneval_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    """Results, data and models in folders of their own; the shipped profile, unmodified, binds
    each job exactly those (its results writable)."""
    monkeypatch.setenv("USER", _user_env()["USER"])
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", TOKEN)
    infpop, models = tmp_path / "shared" / "infpop", tmp_path / "shared" / "models"
    shutil.copytree(image_tiny_model, models / "tiny")
    data = humaneval_head(humaneval_path, infpop / "data" / "humaneval.jsonl.gz", 16)
    manifest = {
        "study": "ch",
        "output_root": str(infpop / "runs"),
        "models": [{"name": f"tiny-{x}", "source": str(models / "tiny")} for x in "ab"],
        "engines": ["hf"],
        "gpu_counts": [1],
        "batch_sizes": [1, 2],
        "max_new_tokens": [2],
        "dtype": "float32",
        "workload": {"path": str(data), "limit": 8},
        "partitions": ["charliecloud"],
    }
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    (tmp_path / "outside").mkdir()
    return {"profile": PROFILE, "manifest": tmp_path / "manifest.yaml", "root": infpop / "runs"}


@pytest.mark.slurm
def test_slurm_array_runs_trials_inside_the_cpu_image(
    site: dict[str, Path], cpu_image: Path, slurm_conf: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--partition", "charliecloud", "--profile", str(site["profile"])]
    assert main(["sweep", str(site["manifest"]), *args]) == 0
    assert "submitted 4 trials in 2 jobs" in capsys.readouterr().out
    log = [json.loads(line) for line in (site["root"] / "ch/.infpop/submissions.jsonl").read_text().splitlines()]
    states = wait_finished([e["job_id"] for e in log], 600)
    assert set(states.values()) == {"COMPLETED"}, (states, [Path(e["log"]).read_text()[-2000:] for e in log])
    assert len({e["job_id"].split("_")[0] for e in log}) == 1, "one array job"

    groups = plan(
        load_manifest(site["manifest"]), "charliecloud", load_profile(site["profile"]).partition("charliecloud")
    )
    store = ResultStore(site["root"])
    results = [store.read(t) for g in groups for t in g.trials]
    assert len(results) == 4 and {r.status for r in results} == {"ok"}, [r and r.error for r in results]
    lock = read_lock(CONTAINERS_DIR / "hf-cpu.lock.toml")
    digest = file_sha256(cpu_image)
    assert Path(f"{cpu_image}.sha256").read_text().split()[0] == digest
    for r in results:
        prov = r.provenance
        assert prov.container_image == str(cpu_image) and prov.container_sha256 == digest
        assert prov.slurm["job_partition"] == "charliecloud" and "array_task_id" in prov.slurm
        # Proof the trial ran on the image's Python: its libraries are the lock's, not this venv's.
        for pkg in ("transformers", "tokenizers", "accelerate", "pydantic"):
            assert prov.versions[pkg] == lock.packages[pkg] != importlib.metadata.version(pkg), pkg
    assert {r.provenance.slurm["array_task_id"] for r in results} == {"0", "1"}
    leaks = [p for p in site["root"].rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert not leaks, f"token in {leaks}"


@pytest.mark.slurm
def test_slurm_array_runs_vllm_offline_and_online_inside_the_vllm_cpu_image(
    site: dict[str, Path], vllm_image: Path, slurm_conf: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """vLLM's CPU build in its image: the offline engine (``LLM``) and the online one (``AsyncLLM``,
    whose core is a process of its own) each serve one trial in a SLURM job through ch-run."""
    base = yaml.safe_load(site["manifest"].read_text())
    vllm = {
        "models": base["models"][:1],
        "engines": ["vllm"],
        "engine_options": {"vllm": {"max_model_len": 512, "enforce_eager": True}},
        "kv_cache_bytes": [64 << 20],
        "batch_sizes": [2],
    }
    online = {"kind": "online", "request_rates": [4], "duration_s": 2.0, "seed": 1, "min_duration_s": 0}
    args = ["--partition", "charliecloud", "--profile", str(site["profile"])]
    manifests = {}
    for study, scenario in (("ch-vllm-offline", None), ("ch-vllm-online", online)):
        path = site["manifest"].with_name(f"{study}.yaml")
        path.write_text(
            yaml.safe_dump({**base, **vllm, "study": study, **({"scenario": scenario} if scenario else {})})
        )
        assert main(["sweep", str(path), *args]) == 0
        manifests[study] = path
    capsys.readouterr()
    log = [
        json.loads(line)
        for study in manifests
        for line in (site["root"] / study / ".infpop/submissions.jsonl").read_text().splitlines()
    ]
    states = wait_finished([e["job_id"] for e in log], 600)
    assert set(states.values()) == {"COMPLETED"}, (states, [Path(e["log"]).read_text()[-3000:] for e in log])

    lock = read_lock(CONTAINERS_DIR / "vllm-cpu.lock.toml")
    digest = file_sha256(vllm_image)
    store = ResultStore(site["root"])
    part = load_profile(site["profile"]).partition("charliecloud")
    for study, path in manifests.items():
        (result,) = [store.read(t) for g in plan(load_manifest(path), "charliecloud", part) for t in g.trials]
        assert result is not None and result.status == "ok", result and result.error
        assert result.generated_tokens > 0 and result.kv_cache_blocks > 0
        assert result.batching == ("continuous" if study.endswith("online") else "static")
        prov = result.provenance
        assert prov.container_image == str(vllm_image) and prov.container_sha256 == digest
        assert prov.slurm["job_partition"] == "charliecloud"
        # The image's Python ran it: the lock's vLLM CPU build, and no accelerate (this venv has it).
        assert prov.versions["vllm-cpu"] == lock.packages["vllm-cpu"] and "accelerate" not in prov.versions
        if study.endswith("online"):
            assert result.online.completed == result.online.n_requests > 0


PROBE = """
import json, os, sys
tried = {}
for path in sys.argv[1:]:
    try:
        with open(path, "w") as fh:
            fh.write("x")
        tried[path] = "written"
    except OSError as err:
        tried[path] = err.strerror
env = {k: v for k, v in os.environ.items() if "TOKEN" in k or k.startswith(("HF_", "INFPOP_"))}
print(json.dumps({"tried": tried, "env": env, "prefix": sys.prefix}))
"""


def test_trial_in_the_image_writes_only_its_bound_roots_and_sees_no_token(
    site: dict[str, Path], cpu_image: Path, tmp_path: Path
) -> None:
    """The argv a job runs, with a probe instead of ``-m infpop trial``: the token is set in the
    caller's environment, and the probe tries to write inside and outside the bound folders."""
    part = load_profile(site["profile"]).partition("charliecloud")
    groups = plan(
        load_manifest(site["manifest"]),
        "charliecloud",
        part,
        launch=LaunchOptions.from_profile(load_profile(site["profile"])),
    )
    launcher = groups[0].launcher
    assert launcher[-2:] == ["-m", "infpop"] and "ch-run" in launcher
    site["root"].mkdir(parents=True)  # the output root, as a sweep creates it
    inside = site["root"] / "probe.txt"
    seen_at = image_path(str(inside), groups[0].binds)  # where the job sees the output root
    outside = [
        tmp_path / "outside" / "probe.txt",  # a host folder next to the bound ones, not bound
        REPO / "probe-from-trial.txt",  # the checkout
        Path("/var/tmp") / f"probe-{os.getpid()}.txt",  # host scratch space
        Path("/opt/infpop/probe.txt"),  # the image itself
    ]
    out = subprocess.run(
        [*launcher[:-2], "-c", PROBE, seen_at, *map(str, outside)], capture_output=True, text=True, check=True
    ).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe["tried"][seen_at] == "written" and inside.read_text() == "x"
    for path in outside:
        assert probe["tried"][str(path)] in ("Read-only file system", "No such file or directory"), probe["tried"]
        assert not (path.exists() and path.read_text() == "x"), f"{path} was written from the container"
    assert probe["prefix"] == "/opt/infpop/venv", "the image's Python, not the host's"
    # A token variable (HF_TOKEN, HUGGING_FACE_HUB_TOKEN, ...); TOKENIZERS_PARALLELISM, which vLLM
    # sets in the process that imported it, is no secret.
    assert not [k for k in probe["env"] if re.search(r"(^|_)TOKEN(_|$)", k)], probe["env"]
    assert probe["env"]["HF_HUB_OFFLINE"] == "1" and probe["env"]["INFPOP_CONTAINER_IMAGE"] == str(cpu_image)


def test_image_holds_no_token_and_records_its_debootstrap_base(cpu_image: Path) -> None:
    script = "cat /opt/infpop/base.sha256; cat /ch/environment; find / -xdev -name token -path '*huggingface*'"
    clean = ["env", "-i", f"USER={_user_env()['USER']}", "PATH=/usr/bin:/bin"]
    out = subprocess.run(
        [*clean, "ch-run", str(cpu_image), "--", "sh", "-c", script], capture_output=True, text=True, check=True
    ).stdout
    base_sha, *rest = out.splitlines()
    kept = [p.read_text().split()[0] for p in (REPO / "build/containers/cache/debootstrap").glob("*.tar.sha256")]
    assert base_sha in kept, "the image names the kept debootstrap base it was built on"
    assert "TOKEN" not in out and "huggingface/token" not in out, rest


def test_gpu_partition_job_runs_an_unpacked_copy_with_the_hosts_driver_injected(
    cpu_image: Path, tmp_path: Path
) -> None:
    """A GPU partition's argv (infpop.runtimes.charliecloud.GPU_SCRIPT), run for real with the real
    ch-convert and ch-run on the CPU image. ``ch-fromhost --nvidia`` needs an NVIDIA driver and
    nvidia-container-cli, which this machine lacks: a stand-in on PATH records its arguments and
    writes a file where the real one puts the driver's libraries, which the trial's Python must
    see; the unpacked copy is gone when the job ends."""
    bin_dir, node_tmp, out = tmp_path / "bin", tmp_path / "node-tmp", tmp_path / "out"
    for folder in (bin_dir, node_tmp, out):
        folder.mkdir()
    fromhost = bin_dir / "ch-fromhost"
    fromhost.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/fromhost.args\ntouch "$2/usr/lib/libcuda.so.1"\n')
    fromhost.chmod(0o755)
    argv = get_runtime("charliecloud").exec_argv(str(cpu_image), (Bind(str(out), str(out), True),), {}, gpus=True)
    probe = f"import os; open('{out}/seen', 'w').write(str(os.path.exists('/usr/lib/libcuda.so.1')))"
    env = {**_user_env(), "PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(node_tmp)}

    subprocess.run([*argv, "-c", probe], env=env, check=True, timeout=600)

    assert (out / "seen").read_text() == "True", "the trial sees what ch-fromhost injected"
    flag, unpacked = (tmp_path / "fromhost.args").read_text().split()
    assert flag == "--nvidia" and unpacked.startswith(f"{node_tmp}/infpop-image.")
    assert list(node_tmp.iterdir()) == [], "the unpacked copy is removed when the job ends"
