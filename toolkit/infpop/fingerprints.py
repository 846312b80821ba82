"""Fingerprints of what a trial generated: does a faster configuration still say the same thing?

Batch size, GPU count and engine change the arithmetic of a forward pass (padding, reduction
order, kernels), and at reduced precision a greedy decode can then pick another token. Every
trial records, per workload prompt, a fingerprint of the token ids it generated: a 64-bit
BLAKE2b digest of all of them (equal outputs, equal digests; any changed id, another digest)
and the first :data:`HEAD` ids in clear, which locate a divergence within them. One string per
prompt, ``"<16 hex digits>:<id>,<id>,..."``, keeps the result file small (docs/
measurement-and-statistics.md gives the size) and is compared as text by the analysis.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence

#: Leading token ids each fingerprint keeps in clear.
HEAD = 16
#: What a fingerprint string looks like (checked when a result is read).
PATTERN = r"^[0-9a-f]{16}:(\d+(,\d+)*)?$"


def fingerprint(ids: Sequence[int]) -> str:
    """``"<digest>:<first HEAD ids>"`` of one prompt's generated token ids. The digest hashes the
    ids as 64-bit integers, so it does not depend on how a list of them happens to be printed."""
    digest = hashlib.blake2b(array("q", ids).tobytes(), digest_size=8).hexdigest()
    return f"{digest}:{','.join(map(str, ids[:HEAD]))}"


def by_prompt(n_prompts: int, served: Sequence[tuple[int, Sequence[int]]]) -> list[str | None]:
    """One fingerprint per workload prompt, in the workload's order, from ``(prompt index, ids)``
    pairs in request order: where a prompt was sent several times (online: request i sends prompt
    i mod n) its first request counts; a prompt never served is ``None``."""
    out: list[str | None] = [None] * n_prompts
    for index, ids in served:
        if out[index] is None:
            out[index] = fingerprint(ids)
    return out
