"""`infpop report`: one offline report.html per study, checked as text and in a real browser.

The browser tests render the page in headless Chromium (Debian's ``chromium``; .ci/run installs
it), wait for plotly to draw, and read the rendered DOM, the page's requests and a screenshot.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import chromium, render
from conftest import PUBLISHED
from infpop.cli import main
from infpop_analysis.table import conform, write_table

needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="chromium is not installed (Debian's `chromium` package; .ci/run installs it)"
)
PLOTLY_BANNER = re.compile(r"\* plotly\.js v\d")
#: Every plotly figure has drawn: a WebGL canvas for a 3-D scene, an SVG for the others.
DRAWN = (
    "[...document.querySelectorAll('.js-plotly-plot')].length > 0 && [...document.querySelectorAll('.js-plotly-plot')]"
    ".every(p => p.querySelector('.gl-container canvas, .main-svg .plot'))"
)


def _table() -> pd.DataFrame:
    """One hardware and engine, models m0 and m1 on GPUs 1, 2 x batches 1, 8, 64: batch 64 on 1 GPU
    is OOM (m1 skipped), m1 with 2 GPUs at batch 8 errored, m0 with 2 GPUs at batch 64 timed out
    without a throughput, m1 with 2 GPUs at batch 64 never ran."""
    rows = []
    for m in ("m0", "m1"):
        for g in (1, 2):
            for b in (1, 8, 64):
                status, thp, error = "ok", g * np.log2(2 * b), None
                if g == 1 and b == 64:
                    status, thp, error = (
                        ("oom", 5.0, "CUDA out of memory") if m == "m0" else ("skipped_oom", np.nan, None)
                    )
                elif (m, g, b) == ("m1", 2, 8):
                    status, thp, error = "error", np.nan, "RuntimeError: CUDA error: an illegal memory access"
                elif (m, g, b) == ("m0", 2, 64):
                    status, thp, error = "timeout", np.nan, "trial exceeded its time limit"
                elif (m, g, b) == ("m1", 2, 64):
                    continue
                rows.append(dict(study="s", hardware="a100", engine="hf", model=m, n_gpus=g, batch_size=b,
                                 max_new_tokens=5, repetition=0, status=status, throughput=thp, error=error,
                                 trial_id=f"{m}_g{g}_b{b}"))  # fmt: skip
    return conform(pd.DataFrame(rows))


def test_report_shows_every_outcome_and_carries_plotly_once(tmp_path: Path) -> None:
    table = tmp_path / "table.parquet"
    write_table(_table(), table)
    # configs.csv as `infpop stats` writes it (its schema in the helpers' contract): m0's best has an interval.
    (tmp_path / "stats").mkdir()
    pd.DataFrame(
        [dict(hardware="a100", engine="hf", model="m0", n_gpus=2, batch_size=8, n=3, mean=8.1, median=8.0, std=0.2,
              cv=0.025, ci_low=7.9, ci_high=8.3, ci_level=0.95, noisy=False),
         dict(hardware="a100", engine="hf", model="m0", n_gpus=1, batch_size=1, n=3, mean=1.0, median=1.0, std=0.2,
              cv=0.2, ci_low=0.8, ci_high=1.2, ci_level=0.95, noisy=True)]
    ).to_csv(tmp_path / "stats" / "configs.csv", index=False)  # fmt: skip
    assert main(["figures", str(table), "-o", str(tmp_path / "figures"), "--only", "gpu_scaling", "-j", "1"]) == 0
    assert main(["report", str(table), "-o", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "report.html").read_text()

    assert len(PLOTLY_BANNER.findall(page)) == 1, "plotly.js is carried once"
    import plotly.offline

    ours = page.replace(plotly.offline.get_plotlyjs(), "")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", ours), "no remote scripts, styles or images"
    for status in ("ok", "oom", "skipped_oom", "timeout", "error"):
        assert f"<th>{status}</th>" in page
    assert "RuntimeError: CUDA error: an illegal memory access" in page and "trial exceeded its time limit" in page
    for mark in ("OOM (partial throughput)", "OOM, no throughput (floor)", "failed, error or timeout (floor)",
                 "not measured (floor)"):  # fmt: skip
        assert json.dumps(mark) in page, f"landscape marks {mark}"
    assert "[7.90, 8.30]" in page, "best configuration with its interval from configs.csv"
    assert "of which 1 noisy" in page
    assert "data:image/png;base64," in page, "the gpu_scaling curve is inline"
    assert "No statistics (report.md) found; <code>infpop stats TABLE -o DIR</code>" in page
    assert "No online trials" in page and "No HPO replay, benchmark or live search found" in page


def test_report_compares_the_engines_each_at_its_best_batch(tmp_path: Path) -> None:
    rows = [
        dict(study="e", hardware="cpu", engine=e, model="tiny", n_gpus=1, batch_size=b, max_new_tokens=5,
             repetition=r, workload="w", scenario="offline", status="ok", throughput=speed * np.log2(2 * b) + r,
             kv_cache_bytes=2**28 if e == "vllm" else None, kv_cache_blocks=512 + b if e == "vllm" else None)
        for e, speed in (("hf", 10.0), ("vllm", 40.0)) for b in (1, 8, 64) for r in range(3)
    ]  # fmt: skip
    table = tmp_path / "table.parquet"
    write_table(conform(pd.DataFrame(rows)), table)
    assert main(["figures", str(table), "-o", str(tmp_path / "figures"), "--only", "engines", "-j", "1"]) == 0
    assert main(["stats", str(table), "-o", str(tmp_path / "stats")]) == 0
    assert main(["report", str(table), "-o", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "report.html").read_text()
    engines = page[page.index("<section id='engines'>") :]
    engines = engines[: engines.index("</section>")]
    assert "<td>64</td><td>281.00</td><td>64</td><td>71.00</td><td>3.96</td><td>95% CI [" in engines
    assert "<td>3/3</td>" in engines and "engines: cpu_tiny_g1" in engines, "repetitions and the engines figure"
    best = page[page.index("<section id='best'>") : page.index("<section id='engines'>")]
    assert "configs.csv" in best and "<th>kv_cache_blocks</th>" in best
    assert "<td>268,435,456</td>" in best and "<td>576.00</td>" in best, "vLLM's KV cache: asked and allocated"

    hf_only = tmp_path / "hf.parquet"
    write_table(conform(pd.DataFrame([r for r in rows if r["engine"] == "hf"])), hf_only)
    assert main(["report", str(hf_only), "-o", str(tmp_path / "hf")]) == 0
    assert "No setting has ok offline results for both vllm and hf" in (tmp_path / "hf" / "report.html").read_text()


def test_report_draws_online_latency_per_workload(tmp_path: Path) -> None:
    """Online trials: a latency curve per setting, a line per workload; invalid runs are named, not drawn."""
    rows = [
        dict(study="w", hardware="cpu", engine="hf", model="tiny", n_gpus=1, batch_size=4, max_new_tokens=8,
             repetition=0, workload=w, scenario="online", output_length="fixed", request_rate=r, status="ok",
             throughput=10.0 * r, valid=r < 4, latency_per_token_p50_s=0.01 * r * (2 if w == "alpaca" else 1))
        for w in ("alpaca", "dolly") for r in (1.0, 2.0, 4.0)
    ]  # fmt: skip
    table = tmp_path / "table.parquet"
    write_table(conform(pd.DataFrame(rows)), table)
    assert main(["report", str(table), "-o", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert 'id="online-0"' in page and '"name":"alpaca"' in page and '"name":"dolly"' in page
    assert "Invalid runs not drawn: 2" in page
    assert "<th>best/worst</th>" in page, "throughput by workload"


def _sweep_with_a_broken_model(write_manifest, tiny_model: Path, tmp_path: Path) -> Path:
    """A real local sweep of the tiny model and of a copy without weights, whose trials fail."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    shutil.copy(tiny_model / "config.json", broken / "config.json")
    models = [{"name": "tiny", "source": str(tiny_model)}, {"name": "broken", "source": str(broken)}]
    manifest = write_manifest(models=models, gpu_counts=[1, 2], batch_sizes=[1, 4], max_new_tokens=[3])
    sweep = subprocess.run(
        [sys.executable, "-m", "infpop", "sweep", str(manifest)], capture_output=True, text=True, timeout=900
    )
    assert sweep.returncode == 0, sweep.stderr
    study = tmp_path / "runs" / "t"
    table = study / "table.parquet"
    assert main(["aggregate", str(study), "-o", str(table)]) == 0
    assert main(["stats", str(table), "-o", str(study / "stats")]) == 0
    assert main(["figures", str(table), "-o", str(study / "figures"), "-j", "1"]) == 0
    return table


def _nonwhite_share(png: Path) -> float:
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    return float((pixels.min(axis=2) < 0.9).mean())


@needs_chromium
def test_demo_report_renders_in_chromium(write_manifest, tiny_model: Path, tmp_path: Path) -> None:
    table = _sweep_with_a_broken_model(write_manifest, tiny_model, tmp_path)
    assert main(["report", str(table), "-o", str(tmp_path / "out")]) == 0
    page = tmp_path / "out" / "report.html"
    assert "No statistics" not in page.read_text(), "the stats beside the table are found"

    shot = tmp_path / "landscape.png"
    seen = render(
        page,
        ready=DRAWN,
        expressions={
            "landscape_traces": "document.getElementById('landscape-cpu-hf').data.map(t => t.name)",
            "canvases": "document.querySelectorAll('#landscape-cpu-hf .gl-container canvas').length",
            "images": "[...document.images].map(i => i.complete && i.naturalWidth > 0)",
            "outcomes": "document.querySelector('#outcomes').innerText",
            "menu": "document.querySelector('#landscape-cpu-hf .updatemenu-container') !== null",
            "equivalence": "document.querySelector('#equivalence').innerText",
            "efficiency": "document.querySelector('#efficiency').innerText",
        },
        screenshots={shot: "#landscape-cpu-hf"},
    )
    assert seen.values["canvases"] >= 1, "the 3-D landscape drew"
    assert "failed, error or timeout (floor)" in seen.values["landscape_traces"], "the broken model's cells are failed"
    assert seen.values["menu"], "the model selector is there"
    assert seen.values["images"] and all(seen.values["images"]), "every inline figure decoded"
    assert "error" in seen.values["outcomes"] and "ok" in seen.values["outcomes"]
    assert "identical_head" in seen.values["equivalence"], "the outputs' equivalence is shown beside throughput"
    assert "roofline_fraction" in seen.values["efficiency"], "every ok trial's distance to its bound is shown"
    assert all(url.split(":", 1)[0] in ("file", "data") for url in seen.requests), seen.requests
    assert not seen.exceptions, seen.exceptions
    assert _nonwhite_share(shot) > 0.05, "the screenshot of the landscape is not blank"


@needs_chromium
@pytest.mark.skipif(not PUBLISHED.exists(), reason="the published data (../shared/data/infpop-appendix) is absent")
def test_paper_report_renders_in_chromium(tmp_path: Path) -> None:
    """The `make paper` path on the published data: import, stats, curves, an HPO replay (one model,
    one repetition, to stay short; `make paper` replays all), then the report."""
    table = tmp_path / "table.parquet"
    catalog = Path(__file__).resolve().parents[2] / "manifests" / "paper.yaml"
    assert main(["import-published", str(PUBLISHED / "allData.csv"), "-o", str(table), "--catalog", str(catalog)]) == 0
    assert main(["stats", str(table), "-o", str(tmp_path / "stats")]) == 0
    # The report draws the landscapes itself; their PNG/PDF pages are not needed for it.
    kinds = "gpu_scaling,batch_size,hardware"
    assert main(["figures", str(table), "-o", str(tmp_path / "figures"), "--only", kinds]) == 0
    replay = [
        "hpo",
        "replay",
        str(table),
        "-o",
        str(tmp_path / "hpo"),
        "--model",
        "Phi-1",
        "--repetitions",
        "1",
        "--evaluations",
        "20",
    ]
    assert main(replay) == 0
    assert main(["report", str(table), "-o", str(tmp_path)]) == 0
    page = tmp_path / "report.html"
    size = page.stat().st_size
    assert size < 20e6, f"report.html is {size / 1e6:.1f} MB"
    text = page.read_text()
    assert len(PLOTLY_BANNER.findall(text)) == 1
    assert "HPO replay" in text and "Table II" in text

    shot = tmp_path / "landscape.png"
    seen = render(
        page,
        ready=DRAWN,
        expressions={
            "landscapes": "document.querySelectorAll('[id^=landscape-] .gl-container canvas').length",
            "models": "document.getElementById('landscape-a100-hf').data.filter(t => t.type === 'surface').length",
            "images": "[...document.images].map(i => i.complete && i.naturalWidth > 0)",
        },
        screenshots={shot: "#landscape-a100-hf"},
    )
    assert seen.values["landscapes"] == 4, "a landscape per (hardware, engine)"
    assert seen.values["models"] >= 20
    assert len(seen.values["images"]) >= 20 and all(seen.values["images"])
    assert all(url.split(":", 1)[0] in ("file", "data") for url in seen.requests), seen.requests
    assert not seen.exceptions, seen.exceptions
    assert _nonwhite_share(shot) > 0.05


@needs_chromium
def test_the_study_table_counts_repetitions_and_no_table_widens_the_page(tmp_path: Path) -> None:
    """Three repetitions of every trial (and a fourth left out by adaptive repetitions), in a
    window narrower than the study's facts: the summary says "3 per configuration" (not the
    indices 0, 1, 2, 3) and every table scrolls inside its wrapper, the page never sideways.
    A report of the hand-written table and one browser start (about 10 s)."""
    # a fourth, adaptive repetition recorded as not needed is no measurement
    skipped = _table().assign(repetition=3, status="skipped_enough", throughput=np.nan)
    reps = pd.concat([*(_table().assign(repetition=r) for r in range(3)), skipped])
    table = tmp_path / "a-rather-long-folder-name-as-shared-storage-paths-are" / "table.parquet"
    write_table(conform(reps), table)
    assert main(["report", str(table), "-o", str(tmp_path / "out")]) == 0
    seen = render(
        tmp_path / "out" / "report.html",
        ready=DRAWN,
        expressions={
            "summary": "document.querySelector('#summary table.facts').innerText",
            "page_width": "[document.documentElement.scrollWidth, window.innerWidth]",
        },
        screenshots={},
        width=600,
    )
    assert re.search(r"repetitions\s+3 per configuration", seen.values["summary"]), seen.values["summary"]
    scroll_width, window_width = seen.values["page_width"]
    assert scroll_width <= window_width, f"the page scrolls sideways: {scroll_width} px in a {window_width} px window"
