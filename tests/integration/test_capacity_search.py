"""A live search of capacity per GPU: ``infpop hpo search`` on a manifest whose scenario has an SLO,
the tiny model served by HF on CPU through the local executor, each trial a real capacity search
(short windows and few probes, as the capacity tests run them: this checks what the search records,
not how much the tiny model serves)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from capacity_checks import LOW_RATE, WINDOW_S
from infpop.cli import main
from infpop.results import iter_results
from infpop.status import status_report

pytestmark = pytest.mark.slow

#: The capacity tests' windows and lowest rate (three requests), at most three probes (the ends
#: and one bisection) per configuration; the SLO is loose, so the lowest rate meets it however
#: busy the machine, and a probe whose queue outlasts ``trial_timeout_s`` failed it.
SCENARIO = {
    "kind": "online",
    "duration_s": WINDOW_S,
    "min_duration_s": 0,
    "min_requests": 0,
    "slo": {"e2e_p99_s": 20.0},
    "capacity": {"min_rate": LOW_RATE, "max_rate": 64, "tolerance": 1, "max_probes": 3},
}


def test_a_capacity_search_records_capacity_per_gpu_and_picks_by_it(write_manifest, tmp_path: Path, capsys) -> None:
    manifest = write_manifest(
        scenario=SCENARIO, trial_timeout_s=WINDOW_S + 4, batch_sizes=[1, 4], engine_options={"hf": {"cpu_threads": 1}}
    )
    assert main(["hpo", "search", str(manifest), "--partition", "local"]) == 0, "capacity: inferred from the slo"
    root = tmp_path / "runs"
    results = {r.trial.trial_id: r for r in iter_results(root)}
    (path,) = (root / "t" / ".infpop" / "search").glob("*.json")
    state = json.loads(path.read_text())
    assert (state["objective"], state["unit"]) == ("capacity per GPU", "requests/s per GPU at the SLO")
    assert state["stop_reason"] and len(state["trials"]) == len(results) >= 1
    for trial in state["trials"]:
        found = results[trial["trial_id"]].capacity
        print(trial["config"], found.stopped, [(p.rate, p.met) for p in found.probes])
        # One GPU: capacity per GPU is the capacity; a search that met the SLO nowhere is 0.
        expected = found.capacity_rps if found.capacity_rps is not None else 0.0
        assert found.stopped != "probe_failed" and trial["value"] == expected
    best = max(state["trials"], key=lambda t: t["value"])
    assert best["value"] >= LOW_RATE, "the lowest rate meets the loose SLO"
    assert state["pick"]["config"] == best["config"] and state["pick"]["value"] == best["value"]
    out = capsys.readouterr().out
    assert f"pick {best['config']} {best['value']:.4g} requests/s per GPU at the SLO" in out
    assert "(ours, capacity per GPU)" in status_report([root / "t"])
