"""Whether the image's Triton builds a matrix-product kernel for the lock's GPU, checked without one.

On a GPU older than vLLM's precompiled attention (FlashAttention starts at compute capability 8.0),
vLLM's attention is a kernel Triton compiles at first use: vLLM 0.10.2 on a V100 runs FlexAttention
through ``torch.compile`` (docs/containers.md, "The attention vLLM 0.10.2 runs on a V100"). A
Triton whose ptxas no longer targets the GPU (CUDA 13's ptxas dropped sm_70) would fail there, on
the cluster, after the queue; compiling for a named target needs no GPU, so the build finds out.
The report also says whether ``tl.dot`` got tensor-core instructions or, as Triton does below 8.0,
the FMA path, which is what attention speed on that GPU rests on.

Imported only for GPU images: Triton comes with torch's CUDA wheels, not with the CPU images.
"""

from __future__ import annotations

import tempfile

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.errors import TritonError

#: Tile side of the probe's product: tl.dot needs at least 16.
TILE = 32


@triton.jit
def _dot(a_ptr, b_ptr, c_ptr, n: tl.constexpr):
    """c = a @ b for one n x n tile of fp16 (fp32 accumulation), the core of an attention kernel."""
    r = tl.arange(0, n)
    a = tl.load(a_ptr + r[:, None] * n + r[None, :])
    b = tl.load(b_ptr + r[:, None] * n + r[None, :])
    tl.store(c_ptr + r[:, None] * n + r[None, :], tl.dot(a, b))


def triton_check(cc: str) -> tuple[list[str], list[str]]:
    """(report lines, failures) of compiling the probe for compute capability ``cc`` ("7.0")."""
    target = GPUTarget("cuda", int(cc.replace(".", "")), 32)
    src = ASTSource(
        _dot, signature={"a_ptr": "*fp16", "b_ptr": "*fp16", "c_ptr": "*fp32", "n": "constexpr"}, constexprs={"n": TILE}
    )
    # A cache of its own, removed after: the build's smoke test leaves nothing in the image.
    with triton.knobs.cache.scope(), tempfile.TemporaryDirectory() as cache:
        triton.knobs.cache.dir = cache
        try:
            kernel = triton.compile(src, target=target)
        except (TritonError, RuntimeError) as err:  # ptxas's (PTXASError), LLVM's or a CUDA version's
            lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
            # ptxas's own verdict ("fatal : Value 'sm_70' is not defined ...") says why.
            why = " ".join(dict.fromkeys([lines[0], *(line for line in lines if "fatal" in line)]))
            return [], [f"triton {triton.__version__} cannot build kernels for compute capability {cc}: {why}"]
    # mma.sync (8.x), wgmma (9.0), tcgen05.mma (10.x): every tensor-core instruction names mma.
    path = "tensor cores (mma)" if "mma" in kernel.asm["ptx"] else "the FMA path (no tensor cores)"
    return [f"triton {triton.__version__} builds for {cc}: tl.dot on {path}"], []
