"""Where each analysis command writes its files, set once here: the commands that write them and
``infpop report``, which reads them all, take their paths from this module, so the two cannot
drift apart.

``make`` puts every folder beside the study's table (``stats/``, ``figures/``, ``hpo/``) and a live
search keeps its states in the study's bookkeeping folder (:func:`infpop.search_state.search_folder`).
"""

from __future__ import annotations

from pathlib import Path

#: The folders beside the table, named by the command that writes each.
STATS_DIR, FIGURES_DIR, HPO_DIR = "stats", "figures", "hpo"
#: ``infpop stats``: the per-configuration summaries, the tests, report.md and the tables folder.
CONFIGS, TESTS, STATS_REPORT, TABLES_DIR = "configs.csv", "tests.csv", "report.md", "tables"
#: ``infpop stats``: each configuration's outputs against its reference (output equivalence).
EQUIVALENCE = "equivalence.csv"
#: ``infpop hpo replay`` and ``infpop hpo benchmark``.
HPO_SUMMARY, HPO_BENCHMARK = "hpo_summary.json", "hpo_benchmark.json"
#: ``infpop aggregate``, beside the table: one row per rate a capacity search tried.
CAPACITY_PROBES = "capacity_probes.csv"
#: ``infpop report``.
REPORT = "report.html"


def stats_table(stats: Path, name: str, suffix: str) -> Path:
    """A statistics table ``name`` as ``infpop stats`` writes it (``suffix``: ".csv" or ".md")."""
    return stats / TABLES_DIR / f"{name}{suffix}"
