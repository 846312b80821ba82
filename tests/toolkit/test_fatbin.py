"""The reader of a CUDA shared object's kernel architectures (infpop.images.fatbin), its CLI
(``python -m infpop.images arches``) and the smoke test's check of an image's CUDA packages.

A stand-in for what cannot be built here: there is no nvcc (nor its ``fatbinary``), and this
venv holds no CUDA shared object (its torch and vLLM are CPU builds). So each test writes fatbin
containers itself, in the layout nvcc emits, and links them with gcc into a real shared object's
``.nv_fatbin`` section, two objects' containers concatenated by the linker as in a library built
from many ``.cu`` files. Where this venv has triton (vLLM's CPU build pulls it in), its bundled
``ptxas`` compiles real cubins for them and its ``cuobjdump`` must list the same architectures:
NVIDIA's tool checks the stand-in's layout. The real validation is on the GPU locks' wheels:
every CUDA library of torch 2.13.0/2.8.0 and vLLM 0.32.0/0.10.2 read the same as cuobjdump 13.1
lists it, and libtorch_cuda.so's architectures common to all its fatbins equal
``torch._C._cuda_getArchFlags()`` (docs/containers.md, "What the GPU images' kernels are built for").
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from infpop.errors import InputError
from infpop.images.cli import main
from infpop.images.fatbin import Code, fatbins, read_fatbins
from infpop.images.smoke import kernel_check

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="links the stand-in shared objects with gcc")

_TRITON = importlib.util.find_spec("triton")
NVIDIA_BIN = Path(_TRITON.submodule_search_locations[0]) / "backends/nvidia/bin" if _TRITON else None
HAS_NVIDIA_TOOLS = NVIDIA_BIN is not None and (NVIDIA_BIN / "ptxas").is_file() and (NVIDIA_BIN / "cuobjdump").is_file()

PTX = b".version 8.0\n.target sm_70\n.address_size 64\n.visible .entry noop() { ret; }\n\0"
ARCH_SPECIFIC = 0x100000


def _entry(kind: int, sm: int, payload: bytes, arch_specific: bool = False) -> bytes:
    """One fatbin entry as nvcc writes it: a 64-byte header for a cubin (code version 1.7), an
    80-byte one for PTX (PTX ISA 8.0, the extra 16 bytes at offset 64); 64-bit Linux flags."""
    payload += b"\0" * (-len(payload) % 8)
    extra = struct.pack("<IIQ", 0x48, 0, 0) if kind == 1 else b""
    major, minor = (8, 0) if kind == 1 else (1, 7)
    flags = 0x11 | (ARCH_SPECIFIC if arch_specific else 0)
    header = struct.pack(
        "<HHIQIIHHIIIQQQ",
        kind,
        0x101,
        64 + len(extra),
        len(payload),
        0,
        64 if extra else 0,
        minor,
        major,
        sm,
        0,
        0,
        flags,
        0,
        0,
    )
    return header + extra + payload


def _container(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body


def _link(tmp: Path, *sections: bytes, name: str = "lib_C.so") -> Path:
    """A shared object linked by gcc from a C file and one object per ``sections`` item, each
    putting its bytes into ``.nv_fatbin`` (as nvcc's host stub does for one ``.cu`` file)."""
    (tmp / "host.c").write_text("int host(void) { return 1; }\n")
    sources = [tmp / "host.c"]
    for i, data in enumerate(sections):
        (tmp / f"k{i}.bin").write_bytes(data)
        asm = f'.section .nv_fatbin,"a"\n.balign 8\n.incbin "{tmp / f"k{i}.bin"}"\n'
        asm += '.section .note.GNU-stack,"",@progbits\n'  # no executable stack
        (tmp / f"k{i}.s").write_text(asm)
        sources.append(tmp / f"k{i}.s")
    out = tmp / name
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), *map(str, sources)], check=True)
    return out


def _cubin(tmp: Path, arch: str) -> bytes:
    """A real cubin of an empty kernel, compiled by triton's ptxas for ``arch`` (sm_70, sm_90a)."""
    ptx = tmp / f"{arch}.ptx"
    ptx.write_bytes(PTX.rstrip(b"\0").replace(b"sm_70", arch.encode()))
    subprocess.run([str(NVIDIA_BIN / "ptxas"), f"-arch={arch}", str(ptx), "-o", str(tmp / f"{arch}.cubin")], check=True)
    return (tmp / f"{arch}.cubin").read_bytes()


def _library(tmp: Path, cubin=lambda arch: b"\x7fELF stand-in cubin " + arch.encode()) -> Path:
    """Two .cu files' worth: one with sm_70 and sm_80 cubins and compute_80 PTX, one with an
    arch-specific sm_90a cubin and compute_70 PTX."""
    return _link(
        tmp,
        _container(_entry(2, 70, cubin("sm_70")), _entry(2, 80, cubin("sm_80")), _entry(1, 80, PTX)),
        _container(_entry(2, 90, cubin("sm_90a"), arch_specific=True), _entry(1, 70, PTX)),
    )


def test_reads_the_cubin_and_ptx_architectures_of_each_linked_fatbin(tmp_path: Path) -> None:
    found = fatbins(_library(tmp_path))
    assert found.names("cubin") == ["sm_70", "sm_80", "sm_90a"]
    assert found.names("ptx") == ["compute_70", "compute_80"]
    assert [[c.name for c in container] for container in found.containers] == [
        ["sm_70", "sm_80", "compute_80"],
        ["sm_90a", "compute_70"],
    ]
    # A V100 loads the sm_70 cubin of the first fatbin and JIT-compiles the second's compute_70 PTX;
    # a Turing GPU (7.5) runs the same code; a Pascal one (6.1) nothing.
    assert (found.loading_on("7.0"), found.loading_on("7.5"), found.loading_on("6.1")) == (2, 2, 0)


@pytest.mark.skipif(
    not HAS_NVIDIA_TOOLS, reason="needs triton's ptxas and cuobjdump (vLLM's CPU build installs triton)"
)
def test_nvidias_cuobjdump_lists_the_same_architectures(tmp_path: Path) -> None:
    so = _library(tmp_path, cubin=lambda arch: _cubin(tmp_path, arch))
    listed = {}
    for option in ("--list-elf", "--list-ptx"):
        out = subprocess.run(
            [str(NVIDIA_BIN / "cuobjdump"), option, str(so)], capture_output=True, text=True, check=True
        )
        listed[option] = sorted(set(re.findall(r"\.(sm_\d+a?)\.(?:cubin|ptx)$", out.stdout, re.M)))
    found = fatbins(so)
    assert listed["--list-elf"] == found.names("cubin") == ["sm_70", "sm_80", "sm_90a"]
    assert [n.replace("sm_", "compute_") for n in listed["--list-ptx"]] == found.names("ptx")


@pytest.mark.parametrize(
    ("code", "cc", "loads"),
    [
        (Code("cubin", 80), "8.0", True),
        (Code("cubin", 80), "8.6", True),  # a cubin runs on later minor versions of its major
        (Code("cubin", 86), "8.0", False),
        (Code("cubin", 80), "9.0", False),  # ... never on another major
        (Code("cubin", 75), "7.0", False),
        (Code("ptx", 70), "9.0", True),  # PTX is compiled by the driver for any later GPU
        (Code("ptx", 80), "7.0", False),
        (Code("cubin", 90, arch_specific=True), "9.0", True),
        (Code("cubin", 100, arch_specific=True), "10.3", False),  # sm_100a: exactly 10.0
        (Code("ptx", 90, arch_specific=True), "10.0", False),
        (Code("cubin", 120), "12.1", True),
    ],
)
def test_which_code_a_gpu_loads(code: Code, cc: str, loads: bool) -> None:
    assert code.loads_on(cc) is loads


def test_garbage_input_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a library\n")
    empty = tmp_path / "empty.so"
    empty.write_bytes(b"")
    so = _library(tmp_path)
    truncated = tmp_path / "truncated.so"
    truncated.write_bytes(so.read_bytes()[:4096])
    for path, message in [
        (text, "not an ELF file"),
        (empty, "empty file"),
        (truncated, "truncated"),
        (tmp_path / "missing.so", "cannot read"),
        (tmp_path, "cannot read"),
    ]:
        with pytest.raises(InputError, match=re.escape(str(path)) + ".*" + message):
            read_fatbins(path)


def test_an_elf_file_without_kernels_has_no_fatbin_section(tmp_path: Path) -> None:
    plain = _link(tmp_path)
    assert read_fatbins(plain) is None
    with pytest.raises(InputError, match=r"no \.nv_fatbin section: it holds no GPU kernels"):
        fatbins(plain)


def test_a_corrupt_fatbin_is_an_error_naming_the_byte(tmp_path: Path) -> None:
    good = _container(_entry(2, 80, b"cubin"))
    at = len(good)  # the corrupt container follows a good one in the section
    bad_magic = b"\x01" + good[1:]
    too_long = good[:8] + struct.pack("<Q", len(good)) + good[16:]  # more entries than the section holds
    bad_entry = good[:24] + struct.pack("<Q", 1 << 40) + good[32:]  # a payload past its container
    for i, (data, message) in enumerate(
        [
            (bad_magic, f"at byte {at}: not a fatbin container (magic 0xba55ed01, expected 0xba55ed50)"),
            (too_long, f"at byte {at}: fatbin container of {len(good)} bytes runs past the section's end"),
            (bad_entry, f"at byte {at + 16}: corrupt fatbin entry"),
        ]
    ):
        (tmp_path / str(i)).mkdir()
        so = _link(tmp_path / str(i), good, data)
        with pytest.raises(InputError, match=re.escape(f"{so}: .nv_fatbin {message}")):
            fatbins(so)


def test_arches_cli_lists_a_library_and_exits_1_when_nothing_loads_on_the_gpu(tmp_path: Path, capsys) -> None:
    so = _library(tmp_path)
    assert main(["arches", str(so), "--cc", "7.0"]) == 0
    assert capsys.readouterr().out == (
        f"{so}: 2 fatbins; cubins sm_70 sm_80 sm_90a; PTX compute_70 compute_80; "
        "2 of 2 load on compute capability 7.0\n"
    )
    assert main(["arches", str(so), "--cc", "6.1"]) == 1
    assert "0 of 2 load on compute capability 6.1" in capsys.readouterr().out


@pytest.mark.parametrize("cc", ["nan", "inf", "8", "../", "<b>8.0</b>", ""])
def test_arches_cli_refuses_a_compute_capability_that_is_not_one(tmp_path: Path, cc: str, capsys) -> None:
    assert main(["arches", str(_library(tmp_path)), "--cc", cc]) == 2
    captured = capsys.readouterr()
    assert f"--cc {cc!r} is not a compute capability" in captured.err
    assert captured.out == ""


def test_arches_cli_prints_nothing_when_one_file_is_not_a_library(tmp_path: Path, capsys) -> None:
    (tmp_path / "x.so").write_text("garbage")
    assert main(["arches", str(_library(tmp_path)), str(tmp_path / "x.so")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{tmp_path / 'x.so'}: not an ELF file" in captured.err


def test_smoke_fails_a_package_none_of_whose_kernels_load_on_the_partitions_gpu(tmp_path: Path) -> None:
    """vLLM 0.32 on a V100: every fatbin starts at sm_75 (cubin) or compute_80 (PTX)."""
    package = tmp_path / "vllm"
    (package / "vllm_flash_attn").mkdir(parents=True)
    _link(package, _container(_entry(2, 75, b"c"), _entry(2, 80, b"c"), _entry(1, 80, PTX)), name="_C.abi3.so")
    _link(package / "vllm_flash_attn", _container(_entry(2, 90, b"c", arch_specific=True)), name="_fa3_C.abi3.so")
    (package / "cumem_allocator.abi3.so").write_bytes(_link(tmp_path).read_bytes())  # no kernels: not reported
    report, failures = kernel_check({"vllm": package}, "7.0")
    assert report == [
        "vllm/_C.abi3.so: 1 fatbins; cubins sm_75 sm_80; PTX compute_80; 0 of 1 load on 7.0",
        "vllm/vllm_flash_attn/_fa3_C.abi3.so: 1 fatbins; cubins sm_90a; PTX none; 0 of 1 load on 7.0",
    ]
    assert failures == [
        "vllm holds no kernels that load on compute capability 7.0 (no cubin of its major version at or "
        "below it, no PTX at or below it) in its 2 CUDA shared objects"
    ]
    # On an A100 the sm_80 cubins load; FlashAttention 3, Hopper-only, is no failure there.
    assert kernel_check({"vllm": package}, "8.0")[1] == []
