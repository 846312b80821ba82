"""Where the report looks: the table and the folders the other commands wrote."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infpop.jobs import study_dir
from infpop.search_state import search_folder

from infpop_analysis import layout


@dataclass(frozen=True)
class Sources:
    """Where the report looks; each folder may be absent."""

    table: Path
    stats: Path
    figures: Path
    hpo: Path
    search: Path
    #: The capacity searches' probes, beside the table (:data:`infpop_analysis.layout.CAPACITY_PROBES`).
    probes: Path

    @classmethod
    def beside(cls, table: Path, **given: Path | None) -> Sources:
        """The layout `make` writes: stats/, figures/ and hpo/ beside the table, the search
        summaries in the study's .infpop folder; ``given`` folders override."""
        base = table.parent
        search = given.get("search")
        return cls(
            table=table,
            stats=given.get("stats") or base / layout.STATS_DIR,
            figures=given.get("figures") or base / layout.FIGURES_DIR,
            hpo=given.get("hpo") or base / layout.HPO_DIR,
            search=search or search_folder(study_dir(base.parent, base.name)),
            probes=base / layout.CAPACITY_PROBES,
        )
