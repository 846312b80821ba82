"""Import footprint: compute-node code never loads analysis libraries; the login node never loads torch."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", ["infpop.trial", "infpop.plan", "infpop.jobs", "infpop.engines.hf"])
def test_compute_node_code_does_not_import_analysis_libraries(module: str) -> None:
    loaded = _loaded_after(f"import {module}")
    assert not loaded & {"matplotlib", "plotly", "scipy", "statsmodels", "pandas", "hyperopt", "optuna"}


def test_login_node_commands_do_not_import_torch() -> None:
    loaded = _loaded_after(
        "from infpop.cli import build_parser; import infpop.sweep, infpop.plan, infpop.manifest; build_parser()"
    )
    assert "torch" not in loaded and "transformers" not in loaded
