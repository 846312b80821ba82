"""The smoke test every image build runs inside the image: what its lock promises, read back.

``python -m infpop.images.smoke /opt/infpop/lock.toml NAME`` imports the lock's ``[smoke_test]``
modules and checks, without a GPU: every pinned package is installed at the lock's version; on a
GPU image, torch is the lock's CUDA build and holds code for the lock's architecture, and so do
the CUDA shared objects of the imported packages (vLLM's ``_C``, ``_moe_C``, flash-attention's,
read by :mod:`infpop.images.fatbin`); on a vLLM GPU image, Triton builds kernels for that
architecture (:mod:`infpop.images.triton_probe`); the image holds no CUDA driver library (the
host's is bound in at run time, ``--nv`` or ``ch-fromhost --nvidia``; one in the image would
shadow it) and no Hugging Face token. A failed check exits 1 and fails the build, so a wrong image
never reaches a queue. Its report (versions, CUDA, architectures) is what docs/containers.md
records per image.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from pathlib import Path

from infpop.errors import InputError
from infpop.images.fatbin import read_fatbins
from infpop.images.lock import ImageLock, read_lock

#: The CUDA driver library: provided by the host, never by an image.
DRIVER_LIBRARY = "libcuda.so"

#: Where huggingface_hub keeps a token (``huggingface-cli login``), under any home.
TOKEN_FILES = (".cache/huggingface/token", ".huggingface/token")


def torch_arch_flags() -> list[str]:
    """The architectures torch was compiled for (``sm_80``, ...). ``torch.cuda.get_arch_list()``
    answers [] without a GPU; the compiled-in flags it reads are there anyway."""
    import torch

    return torch._C._cuda_getArchFlags().split() if torch.version.cuda else []


def driver_libraries(root: Path = Path("/")) -> list[str]:
    """Files named ``libcuda.so*`` in the image (host file systems excluded)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d not in ("proc", "sys", "dev", "tmp", "mnt")]
        found += [os.path.join(dirpath, f) for f in filenames if f.startswith(DRIVER_LIBRARY)]
    return found


def kernel_check(packages: dict[str, Path], cc: str) -> tuple[list[str], list[str]]:
    """(report lines, failures) of the CUDA shared objects under each package's folder, read for
    compute capability ``cc``.

    Each object is reported with its cubin and PTX architectures and how many of its fatbins (about
    one per compiled ``.cu`` file) hold code that loads on ``cc``. A package fails when none of its
    objects holds any: its kernels would stop with "no kernel image is available" on the first GPU
    call. One object without the architecture is no failure: vLLM ships kernels that serve only
    some GPUs (FlashAttention 3 and FlashMLA are Hopper-only, FlashAttention 2 starts at sm_80) and
    loads them only there. A package without CUDA objects (pure Python) is not reported.
    """
    report, failures = [], []
    for name, folder in packages.items():
        loading = found = 0
        for path in sorted(folder.rglob("*.so")):
            try:
                fatbins = read_fatbins(path)
            except InputError as err:
                failures.append(str(err))
                continue
            if fatbins is None:
                continue
            found += 1
            n = fatbins.loading_on(cc)
            loading += n > 0
            rel = path.relative_to(folder.parent)
            report.append(f"{rel}: {fatbins.summary()}; {n} of {len(fatbins.containers)} load on {cc}")
        if found and not loading:
            failures.append(
                f"{name} holds no kernels that load on compute capability {cc} (no cubin of its major "
                f"version at or below it, no PTX at or below it) in its {found} CUDA shared objects"
            )
    return report, failures


def check(lock: ImageLock, root: Path = Path("/")) -> tuple[list[str], list[str]]:
    """(report lines, failures) of ``lock``'s image, checked from the Python running this."""
    report, failures = [], []
    for module in lock.smoke_imports:
        importlib.import_module(module)
    for name, version in lock.packages.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        report.append(f"{name} {installed}")
        if installed != version:
            failures.append(f"{name} is {installed}, the lock pins {version}")
    if lock.cuda is not None:
        import torch

        archs = torch_arch_flags()
        want = f"sm_{lock.compute_capability.replace('.', '')}"
        report += [f"torch.version.cuda {torch.version.cuda}", f"architectures {' '.join(archs)}"]
        if torch.version.cuda != lock.cuda:
            failures.append(f"torch is the CUDA {torch.version.cuda} build, the lock says CUDA {lock.cuda}")
        if want not in archs:
            failures.append(f"torch holds no {want} code (it has {' '.join(archs) or 'none'})")
        tops = dict.fromkeys(m.split(".")[0] for m in lock.smoke_imports if not m.startswith("infpop"))
        folders = {top: Path(importlib.import_module(top).__file__).parent for top in tops}
        kernels, kernel_failures = kernel_check(folders, lock.compute_capability)
        report += kernels
        failures += kernel_failures
        if lock.engine == "vllm":
            # vLLM compiles kernels with Triton at run time (the HF engine does not); Triton is
            # imported here only, as the CPU images lack it.
            from infpop.images.triton_probe import triton_check

            built, build_failures = triton_check(lock.compute_capability)
            report += built
            failures += build_failures
    drivers = driver_libraries(root)
    if drivers:
        failures.append(f"the image holds CUDA driver libraries, which would shadow the host's: {', '.join(drivers)}")
    homes = [root / "root", *(root / "home").glob("*")]
    tokens = [str(h / f) for h in homes for f in TOKEN_FILES if (h / f).is_file()]
    tokens += [var for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if os.environ.get(var)]
    if tokens:
        failures.append(f"the image holds a token: {', '.join(tokens)}")
    return report, failures


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # The image keeps its lock as /opt/infpop/lock.toml: its name comes as the second argument.
    lock = read_lock(Path(args[0]))
    name = args[1] if len(args) > 1 else lock.name
    report, failures = check(lock)
    for line in report:
        print(f"  {line}")
    for failure in failures:
        print(f"error: image {name}: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"infpop image {name} ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
