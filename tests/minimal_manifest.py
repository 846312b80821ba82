"""The smallest valid manifest, for tests of parsing and planning that run no model (tests that
run the tiny model write theirs with conftest's ``write_manifest`` fixture)."""

from __future__ import annotations

from pathlib import Path

import yaml

#: Every field a manifest needs but its workload: a test gives ``workload`` or ``workloads``.
MINIMAL = {
    "study": "s",
    "models": [{"name": "m", "source": "o/m"}],
    "engines": ["hf"],
    "gpu_counts": [1],
    "batch_sizes": [1],
    "max_new_tokens": [5],
}


def manifest_text(**fields: object) -> str:
    """YAML of :data:`MINIMAL` with ``fields`` added or replaced."""
    return yaml.safe_dump({**MINIMAL, **fields})


def write_manifest_file(path: Path, **fields: object) -> Path:
    """:func:`manifest_text` written to ``path``."""
    path.write_text(manifest_text(**fields))
    return path
