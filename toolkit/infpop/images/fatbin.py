"""Which GPU architectures a CUDA shared object holds kernels for, read from its fatbins.

torch reports the architectures it was built for (``torch._C._cuda_getArchFlags()``); vLLM's and
flash-attention's compiled extensions (``vllm/_C.abi3.so``, ``_moe_C``, ``_vllm_fa2_C``, ...)
report nothing. What they hold is in their ``.nv_fatbin`` ELF section, where nvcc puts each
compiled ``.cu`` file's device code and the linker concatenates them: one *fatbin container*
per file, each a list of entries, a cubin (SASS, for one ``sm_XY``) or PTX (for ``compute_XY``,
which the driver can compile at load time). Every entry's header names its kind and
architecture uncompressed, so reading the headers is enough, and takes a fraction of a second
on a 1 GB library. ``cuobjdump --list-elf`` answers the same, but it is part of the CUDA
toolkit, which the images do not hold (triton's wheel carries a copy, not a dependency to
rely on); this reader needs only the standard library, so a site checks a ``.so`` on a login
node (``python -m infpop.images arches FILE``) and the smoke test checks an image without a GPU.

The layout (little-endian), as NVIDIA's ``fatbinary.h`` (the container header) and public
fatbin parsers (the entry header: e.g. n-eiling/cuda-fatbin-decompression) describe it, and as
checked against cuobjdump 13.1 on every CUDA library of the GPU locks' torch and vLLM wheels
(docs/containers.md):

- container header, 16 bytes: magic ``0xBA55ED50`` (u32), version 1 (u16), header size
  (u16, 16), size of the entries that follow (u64);
- entry header, at least 64 bytes: kind (u16 at 0: 1 PTX, 2 cubin), header size (u32 at 4),
  payload size (u64 at 8, padded), architecture (u32 at 28: 80 for sm_80), flags (u64 at 40:
  ``0x100000`` an arch-specific build such as ``sm_90a``; compression bits, irrelevant here);
  the payload follows the header, and the next entry the payload.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from infpop.errors import InputError
from infpop.images.arch import version_tuple

SECTION = ".nv_fatbin"
MAGIC = 0xBA55ED50
KIND_PTX = 1
KIND_CUBIN = 2
#: Entry flag of code built for one exact GPU (``sm_90a``, ``compute_90a``): it runs on that
#: compute capability only. cuobjdump names these entries ``sm_90a`` (checked: docs/containers.md).
FLAG_ARCH_SPECIFIC = 0x100000

_CONTAINER = struct.Struct("<IHHQ")  # magic, version, header size, size of the entries
_ENTRY = struct.Struct("<HHIQ12xI8xQ")  # kind, -, header size, payload size, arch, flags
_ENTRY_HEADER_MIN = 64
_SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")  # ELF64 Elf64_Shdr


@dataclass(frozen=True)
class Code:
    """One entry of a fatbin: a cubin or PTX for architecture ``sm`` (80 for sm_80)."""

    kind: str  # "cubin" or "ptx"
    sm: int
    arch_specific: bool = False

    @property
    def name(self) -> str:
        """cuobjdump's and nvcc's name: ``sm_80``, ``sm_90a`` for a cubin, ``compute_80`` for PTX."""
        return f"{'sm' if self.kind == 'cubin' else 'compute'}_{self.sm}{'a' if self.arch_specific else ''}"

    def loads_on(self, cc: str) -> bool:
        """Whether a GPU of compute capability ``cc`` ("8.6") can run this code.

        A cubin for sm_XY runs on X.Z with Z >= Y (binary compatibility within a major version);
        PTX for compute_XY is compiled by the driver at load time for any X.Y or later (PTX is
        forward compatible), which costs that time at the first launch. Arch-specific code
        (``sm_90a``) runs on its own compute capability only. Source: CUDA C++ Programming Guide,
        "Binary Compatibility" and "PTX Compatibility".
        """
        own, target = divmod(self.sm, 10), version_tuple(cc)
        if self.arch_specific:
            return own == target
        if self.kind == "cubin":
            return own[0] == target[0] and own[1] <= target[1]
        return own <= target


@dataclass(frozen=True)
class Fatbins:
    """What one shared object's ``.nv_fatbin`` section holds: one tuple of codes per container
    (about one per compiled ``.cu`` file)."""

    path: Path
    containers: tuple[tuple[Code, ...], ...]

    def names(self, kind: str) -> list[str]:
        """The architectures with code of ``kind`` ("cubin", "ptx"), in ascending order."""
        codes = {c for container in self.containers for c in container if c.kind == kind}
        return [c.name for c in sorted(codes, key=lambda c: (c.sm, c.arch_specific))]

    def loading_on(self, cc: str) -> int:
        """How many containers hold code (a cubin, or PTX to compile) that runs on ``cc``."""
        return sum(any(c.loads_on(cc) for c in container) for container in self.containers)

    def summary(self) -> str:
        """One line: the cubin and PTX architectures, the way cuobjdump names them."""
        return (
            f"{len(self.containers)} fatbins; cubins {' '.join(self.names('cubin')) or 'none'}; "
            f"PTX {' '.join(self.names('ptx')) or 'none'}"
        )


def _section(data: mmap.mmap | bytes, path: Path, name: str) -> tuple[int, int] | None:
    """(file offset, size) of section ``name`` of the ELF64 little-endian ``data``, None without one."""
    size = len(data)
    if data[:4] != b"\x7fELF":
        raise InputError(f"{path}: not an ELF file (a shared object such as vllm/_C.abi3.so)")
    if size < 64:
        raise InputError(f"{path}: truncated ELF file ({size} bytes, shorter than its header)")
    if data[4:6] != b"\x02\x01":
        raise InputError(f"{path}: not a 64-bit little-endian ELF file (the only kind CUDA libraries on x86_64 are)")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shoff == 0:
        return None
    if shentsize != _SECTION_HEADER.size or shoff + _SECTION_HEADER.size > size:
        raise InputError(f"{path}: truncated or corrupt ELF file (section headers at {shoff}, file {size} bytes)")
    first = _SECTION_HEADER.unpack_from(data, shoff)
    # More than 0xff00 sections: the count and the names' index live in section 0 (ELF spec).
    shnum = shnum or first[5]
    shstrndx = first[6] if shstrndx == 0xFFFF else shstrndx
    if shoff + shnum * shentsize > size or shstrndx >= shnum:
        raise InputError(
            f"{path}: truncated or corrupt ELF file ({shnum} section headers at {shoff}, file {size} bytes)"
        )
    headers = [_SECTION_HEADER.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    names_at, want = headers[shstrndx][4], name.encode() + b"\0"
    for sh_name, sh_type, _, _, offset, length, *_ in headers:
        if data[names_at + sh_name : names_at + sh_name + len(want)] == want:
            if sh_type == 8 or offset + length > size:  # SHT_NOBITS: a stripped debug file
                raise InputError(f"{path}: section {name} runs past the end of the file (truncated?)")
            return offset, length
    return None


def _containers(data: mmap.mmap | bytes, path: Path, start: int, length: int) -> tuple[tuple[Code, ...], ...]:
    """The containers of the section at ``start``: headers only, payloads skipped unread."""
    found, pos, end = [], start, start + length
    while pos < end:
        if data[pos : min(pos + 8, end)].strip(b"\0") == b"":
            pos += 8  # the linker's padding between the containers of two objects
            continue
        where = f"{path}: {SECTION} at byte {pos - start}"
        if pos + _CONTAINER.size > end:
            raise InputError(f"{where}: truncated fatbin container header")
        magic, _, header_size, entries_size = _CONTAINER.unpack_from(data, pos)
        if magic != MAGIC:
            raise InputError(f"{where}: not a fatbin container (magic {magic:#010x}, expected {MAGIC:#010x})")
        entry, stop = pos + header_size, pos + header_size + entries_size
        if stop > end:
            raise InputError(f"{where}: fatbin container of {entries_size} bytes runs past the section's end")
        codes = []
        while entry < stop:
            if entry + _ENTRY_HEADER_MIN > stop:
                raise InputError(f"{path}: {SECTION} at byte {entry - start}: truncated fatbin entry header")
            kind, _, entry_header, payload, sm, flags = _ENTRY.unpack_from(data, entry)
            if entry_header < _ENTRY_HEADER_MIN or entry + entry_header + payload > stop:
                raise InputError(
                    f"{path}: {SECTION} at byte {entry - start}: corrupt fatbin entry (sizes past its container)"
                )
            if kind in (KIND_PTX, KIND_CUBIN):
                codes.append(Code("ptx" if kind == KIND_PTX else "cubin", sm, bool(flags & FLAG_ARCH_SPECIFIC)))
            entry += entry_header + payload
        found.append(tuple(codes))
        pos = stop
    return tuple(found)


def read_fatbins(path: Path) -> Fatbins | None:
    """The fatbins of the shared object ``path``; None when it has no ``.nv_fatbin`` section (no
    GPU code). InputError, naming the file, when it is not an ELF file or is truncated or corrupt."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            if path.stat().st_size == 0:
                raise InputError(f"{path}: empty file, not an ELF file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                section = _section(data, path, SECTION)
                return None if section is None else Fatbins(path, _containers(data, path, *section))
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror}") from err


def fatbins(path: Path) -> Fatbins:
    """The fatbins of ``path``; InputError when it holds none (a file a user named as CUDA code)."""
    found = read_fatbins(path)
    if found is None:
        raise InputError(f"{path}: no {SECTION} section: it holds no GPU kernels")
    return found
