"""Figures: every kind is drawn, missing and OOM cells are never drawn as zero."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from infpop.errors import InputError
from infpop_analysis.figures import cell_table, draw_all, landscape_grid
from infpop_analysis.table import conform


def _table() -> pd.DataFrame:
    """2 hardware x 2 engines x 2 models on GPUs 1, 2 x batches 1, 8, 64: batch 64 on 1 GPU is OOM
    (partial throughput for m0, none for m1); m1 never ran with 2 GPUs at batch 8."""
    rows = []
    for hw, speed in (("a100", 2.0), ("v100", 1.0)):
        for engine in ("hf", "vllm"):
            for m in ("m0", "m1"):
                for g in (1, 2):
                    for b in (1, 8, 64):
                        if m == "m1" and g == 2 and b == 8:
                            continue
                        oom = g == 1 and b == 64
                        thp = (5.0 if m == "m0" else np.nan) if oom else speed * g * np.log2(2 * b)
                        rows.append(dict(study="s", hardware=hw, engine=engine, model=m, n_gpus=g, batch_size=b,
                                         max_new_tokens=5, repetition=0, status="oom" if oom else "ok", throughput=thp))  # fmt: skip
    return conform(pd.DataFrame(rows))


def test_grid_keeps_missing_and_oom_apart() -> None:
    c = cell_table(_table(), 5)
    thp, oom = landscape_grid(c[(c["hardware"] == "a100") & (c["engine"] == "hf") & (c["model"] == "m1")])
    assert np.isnan(thp.loc[2, 8]) and not oom.loc[2, 8], "never ran: a gap, not OOM"
    assert np.isnan(thp.loc[1, 64]) and oom.loc[1, 64], "OOM without throughput: flagged, no value"
    assert (thp.fillna(-1) != 0).all().all(), "nothing is zero"
    thp0, oom0 = landscape_grid(c[(c["hardware"] == "a100") & (c["engine"] == "hf") & (c["model"] == "m0")])
    assert thp0.loc[1, 64] == 5.0 and oom0.loc[1, 64], "OOM with a partial throughput keeps it"


def test_every_kind_is_drawn(tmp_path) -> None:
    paths = draw_all(_table(), tmp_path)
    names = {p.relative_to(tmp_path).as_posix() for p in paths}
    assert {"landscapes/a100_hf_m0.png", "landscapes/a100_hf.pdf", "interactive/v100_vllm.html",
            "gpu_scaling/a100_vllm.png", "batch_size/v100_hf_g2.png", "hardware/hf.png",
            "engines/a100_m0_g1.png"} <= names  # fmt: skip
    assert all(p.stat().st_size > 5_000 for p in paths)
    html = (tmp_path / "interactive" / "a100_hf.html").read_text()
    assert '<script src="http' not in html and '<script charset="utf-8" src="plotly.min.js">' in html, "offline"
    assert len(html) < 100_000, "plotly.js is not embedded in every file"
    assert (tmp_path / "interactive" / "plotly.min.js").stat().st_size > 1_000_000, "plotly.js, once, beside them"
    assert '"m1"' in html and '"OOM, no throughput (floor)"' in html and '"not measured (floor)"' in html


def test_only_some_kinds_and_unknown_kinds(tmp_path) -> None:
    paths = draw_all(_table(), tmp_path, kinds=["gpu_scaling"])
    assert {p.parent.name for p in paths} == {"gpu_scaling"}
    with pytest.raises(InputError, match="unknown figure kind 'surface'"):
        draw_all(_table(), tmp_path, kinds=["surface"])


def test_engine_ratio_takes_each_engine_at_its_best_batch_size() -> None:
    from infpop_analysis.engine_ratio import engine_ratios

    rows = [
        dict(study="s", hardware="cpu", engine=e, model="m", n_gpus=1, batch_size=b, max_new_tokens=5,
             repetition=r, status=status, throughput=thp, workload="w", scenario="offline")
        for e, b, r, status, thp in [
            ("hf", 1, 0, "ok", 10.0), ("hf", 8, 0, "ok", 40.0), ("hf", 8, 1, "ok", 20.0), ("hf", 64, 0, "oom", 99.0),
            ("vllm", 1, 0, "ok", 30.0), ("vllm", 64, 0, "ok", 120.0),
        ]
    ]  # fmt: skip
    (r,) = engine_ratios(conform(pd.DataFrame(rows))).itertuples()
    # hf: batch 8 (median 30 over its repetitions; the OOM run's partial throughput never counts)
    assert (r.batch_size_vllm, r.batch_size_hf, r.ratio) == (64, 8, 4.0)
    assert (r.n_vllm, r.n_hf) == (1, 2) and np.isnan(r.ratio_ci_low), "one vLLM repetition: no interval"


def test_engine_ratio_interval_resamples_each_engines_repetitions() -> None:
    from infpop_analysis.engine_ratio import engine_ratios, interval_text

    rows = [
        dict(study="s", hardware="cpu", engine=e, model="m", n_gpus=1, batch_size=8, max_new_tokens=5,
             repetition=r, status="ok", throughput=thp, workload="w", scenario="offline")
        for e, values in (("vllm", [100.0, 110.0, 120.0, 105.0, 115.0]), ("hf", [20.0, 25.0, 30.0, 22.0, 28.0]))
        for r, thp in enumerate(values)
    ]  # fmt: skip
    (r,) = engine_ratios(conform(pd.DataFrame(rows))).itertuples()
    assert r.ratio == 110 / 25
    # every resampled ratio of medians lies between min(vllm)/max(hf) and max(vllm)/min(hf)
    assert 100 / 30 <= r.ratio_ci_low < r.ratio < r.ratio_ci_high <= 120 / 20
    assert interval_text(r).startswith("95% CI [")
