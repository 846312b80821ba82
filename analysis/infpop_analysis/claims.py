"""The published paper's numeric statements, each checked against the data it was drawn from.

Only the paper's *text* is quoted here (as strings, to show what it says); every compared
value, and every verdict, is computed from the analysis: where the text and the data disagree
in a recognisable way (mean and median swapped, a p-value printed without its exponent, a
column shifted by a row) the verdict names it only when the numbers show it. ``report.md`` of
the published study ends with this list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from infpop_analysis.formatting import markdown_table
from infpop_analysis.stats import Analysis, grid

#: The study name `infpop import-published` gives the published data.
PAPER_STUDY = "infpop-paper"

#: Verdicts besides agreement, each established by a function below.
SWAPPED = "mean and median swapped"
NO_EXPONENT = "printed without its exponent"
SHIFTED = "shifted one row"
ROUNDED = "ratio of the rounded throughputs"


@dataclass(frozen=True)
class Claim:
    where: str
    statement: str
    paper: str
    data: str
    agrees: bool
    #: What the disagreement is, when the data show it (one of the constants above).
    finding: str | None = None

    @property
    def verdict(self) -> str:
        return "yes" if self.agrees else f"no: {self.finding}" if self.finding else "no"


def printed_p(printed: str, p: float) -> tuple[bool, str | None]:
    """Whether a printed p-value agrees with ``p`` at its printed precision, else whether it is
    ``p``'s mantissa (rounded or truncated to the printed digits) with the exponent left off."""
    decimals = len(printed.partition(".")[2])
    value, unit = float(printed), 10.0**-decimals
    if abs(value - p) <= unit / 2:
        return True, None
    if p <= 0 or not math.isfinite(p):
        return False, None
    mantissa = p / 10.0 ** math.floor(math.log10(p))
    candidates = (round(mantissa, decimals), math.floor(mantissa / unit + 1e-9) * unit)
    return False, NO_EXPONENT if any(abs(c - value) < unit / 100 for c in candidates) else None


def mean_median(paper: tuple[float, float], data: Sequence[tuple[float, float]], tol: float) -> tuple[bool, str | None]:
    """Whether a printed (mean, median) matches any computed (mean, median) pair in ``data``,
    else whether it matches one with the two swapped."""
    close = lambda a, b: all(_close(x, y, tol) for x, y in zip(a, b))  # noqa: E731
    if any(close(paper, d) for d in data):
        return True, None
    return False, SWAPPED if any(close(paper, d[::-1]) for d in data) else None


def shifted_rows(
    said: Mapping[str, object], got: Mapping[str, object], order: Sequence[str]
) -> tuple[bool, str | None]:
    """Whether the printed values per row are the computed ones, else whether each is the value of
    the row above it in ``order`` (a column shifted down by one)."""
    if all(got.get(m) == v for m, v in said.items()):
        return True, None
    above = {m: order[order.index(m) - 1] for m in said if m in order and order.index(m) > 0}
    shifted = len(above) == len(said) and all(got.get(above[m]) == v for m, v in said.items())
    return False, SHIFTED if shifted else None


def _t(a: Analysis, **where) -> pd.DataFrame:
    t = a.tests
    for k, v in where.items():
        t = t[t[k].isna()] if v is None else t[t[k] == v]
    return t


def _close(x: float, y: float, tol: float) -> bool:
    return abs(x - y) <= tol


def _anova(a: Analysis, hw: str, engine: str, groups: str = "1,2,4,8") -> pd.Series:
    return _t(a, analysis="gpu_scaling", hardware=hw, engine=engine, test="anova", group1=groups).iloc[0]


def rq2(a: Analysis) -> list[Claim]:
    out = []
    v = _anova(a, "a100", "vllm")
    out.append(Claim("RQ2, vLLM", "ANOVA across GPU counts at batch 1 (A100)", "F = 5.44, p = 0.002",
                     f"F = {v.statistic:.4f}, p = {v.p_value:.5f}",
                     _close(v.statistic, 5.44, 0.01) and _close(v.p_value, 0.002, 0.0005)))  # fmt: skip
    v2 = _anova(a, "v100", "vllm")
    out.append(Claim("RQ2, vLLM", "the difference holds for both A100 and V100", "significant on both",
                     f"V100: F = {v2.statistic:.4f}, p = {v2.p_value:.5f}", bool(v.reject and v2.reject)))  # fmt: skip
    w = _anova(a, "a100", "vllm", "2,4,8")
    out.append(Claim("RQ2, vLLM", "ANOVA on 2, 4 and 8 GPUs only", "fails to reject H0",
                     f"F = {w.statistic:.4f}, p = {w.p_value:.4f}", not w.reject))  # fmt: skip
    tk = _t(a, analysis="gpu_scaling", hardware="a100", engine="vllm", test="tukey")
    sig = sorted(f"{r.group1}-{r.group2}" for r in tk[tk["reject"].astype(bool)].itertuples())
    out.append(Claim("RQ2, vLLM", "Tukey HSD: significant pairs", "1-2, 1-4, 1-8 (none among 2, 4, 8)",
                     ", ".join(sig) or "none", sig == ["1-2", "1-4", "1-8"]))  # fmt: skip
    h = _anova(a, "a100", "hf")
    out.append(Claim("RQ2, HF", "ANOVA across GPU counts at batch 1 (A100)", "F = 0.37, p = 0.77",
                     f"F = {h.statistic:.4f}, p = {h.p_value:.4f}",
                     _close(h.statistic, 0.37, 0.01) and _close(h.p_value, 0.77, 0.01)))  # fmt: skip
    one = a.tables["gpu_scaling_a100_vllm"][1].dropna()
    out.append(Claim("RQ2, vLLM", "throughput with one GPU ranges", "32.5 to 171.5 t/s",
                     f"{one.min():.1f} to {one.max():.1f} t/s",
                     _close(one.min(), 32.5, 0.05) and _close(one.max(), 171.5, 0.05)))  # fmt: skip
    t = a.tables["gpu_scaling_a100_vllm"]
    at_one = t.index[t.idxmax(axis=1) == 1]
    small = [m for m in at_one if a.catalog is not None and m in a.catalog.index and a.catalog.loc[m, "params_b"] <= 3]
    out.append(Claim("RQ2, vLLM", "models with <= 3 billion parameters that peak on a single GPU", "8 models",
                     f"{len(at_one)} models peak on one GPU, {len(small)} of them with <= 3B parameters "
                     f"(the others: {', '.join(sorted(set(at_one) - set(small))) or 'none'})", len(small) == 8))  # fmt: skip
    return out


def table_ii(a: Analysis) -> list[Claim]:
    s = a.tables["table2_a100_summary"].set_index("comparison")
    t2 = a.tables["table2_a100"]
    shown = t2.round({"hf_thp": 1, "vllm_same_thp": 1, "vllm_best_thp": 1})
    paper_same = (shown["vllm_same_thp"] / shown["hf_thp"]).round(1)
    paper_best = (shown["vllm_best_thp"] / shown["hf_thp"]).round(1)
    same, best = s.loc["same_gpus"], s.loc["best_gpus"]
    differ = t2[t2["vllm_best_gpus"] != t2["hf_gpus"]]
    more = int((differ["vllm_best_gpus"] > differ["hf_gpus"]).sum())
    wizard = t2["model"] == "Wizardcoder-33b"
    exact, shown_ratio = t2.loc[wizard, "speedup_same"].iloc[0], paper_same[wizard].iloc[0]
    ratio_ok = round(exact, 1) == 23.0
    return [
        Claim("RQ2, Table II", "vLLM (same #GPUs) speed-up: mean (median)", "4.3X (6.47X)",
              f"{same['mean']:.2f}X ({same['median']:.2f}X); from the table's rounded cells "
              f"{paper_same.mean():.2f}X ({paper_same.median():.2f}X)",
              *mean_median((4.3, 6.47), [(same["mean"], same["median"]), (paper_same.mean(), paper_same.median())], 0.05)),
        Claim("RQ2, Table II", "vLLM (best #GPUs) speed-up: mean (median)", "7.26X (4.80X)",
              f"{best['mean']:.2f}X ({best['median']:.2f}X); from the rounded cells "
              f"{paper_best.mean():.2f}X ({paper_best.median():.2f}X)",
              *mean_median((7.26, 4.80), [(best["mean"], best["median"])], 0.02)),
        Claim("RQ2, Table II", "models where vLLM peaks at another GPU count", "12 (9 more GPUs, 3 fewer)",
              f"{len(differ)} ({more} more GPUs, {len(differ) - more} fewer)",
              len(differ) == 12 and more == 9),
        Claim("RQ2, Table II", "speed-ups are ratios of the throughputs", "e.g. Wizardcoder-33b 23.0X",
              f"{exact:.2f}X; from the table's 0.1-rounded throughputs {shown_ratio:.1f}X",
              ratio_ok, ROUNDED if not ratio_ok and round(shown_ratio, 1) == 23.0 else None),
        *_appendix_v100(a),
        Claim("Answer to RQ2", "average vLLM/HF ratio on the same hardware", "6.47 times",
              f"{same['mean']:.2f} (mean, same #GPUs)", _close(same["mean"], 6.47, 0.02)),
    ]  # fmt: skip


def _appendix_v100(a: Analysis) -> list[Claim]:
    """The appendix's V100 comparison table: its vLLM-best columns from Phi-1_5 down."""
    said = {"Phi-1_5": (1, 120.7), "Phi-2": (1, 110.9), "Starcoder-15b": (1, 70.3), "Wizardcoder-33b": (8, 36.8)}
    # Every model vLLM ran on V100, in the table's (alphabetical) order, with the HF-only rows too.
    fast = grid(a.cells, "model", "n_gpus", hardware="v100", engine="vllm", batch_size=1).dropna(how="all")
    got = {m: (int(r.idxmax()), round(float(r.max()), 1)) for m, r in fast.iterrows()}
    order = sorted(got)
    ok, finding = shifted_rows(said, got, order)
    data = "; ".join(f"{m} {got[m][0]}, {got[m][1]}" for m in said)
    if finding:
        data += "; each printed value is the row above's: " + ", ".join(
            f"{m} ← {order[order.index(m) - 1]}" for m in said
        )
    return [
        Claim("Appendix, V100 comparison table", "vLLM at its best GPU count (GPUs, t/s)",
              "; ".join(f"{m} {g}, {v}" for m, (g, v) in said.items()), data, ok, finding),
    ]  # fmt: skip


def rq3(a: Analysis) -> list[Claim]:
    out = []
    an = _t(a, analysis="batch_size", test="anova")
    for engine, paper, expect in (("hf", "rejects for 1, 2, 4 GPUs, not for 8 (A100 and V100)", {1, 2, 4}),
                                  ("vllm", "rejects for every GPU count (A100 and V100)", {1, 2, 4, 8})):  # fmt: skip
        part = an[an["engine"] == engine]
        got = {
            hw: sorted(int(g) for g in p.loc[p["reject"].astype(bool), "n_gpus"]) for hw, p in part.groupby("hardware")
        }
        out.append(Claim(f"RQ3, {engine}", "ANOVA across batch sizes", paper,
                         "; ".join(f"{hw}: rejects for {g}" for hw, g in got.items()),
                         all(set(g) == expect for g in got.values())))  # fmt: skip
    w = _t(a, analysis="engines", test="wilcoxon")
    d = _t(a, analysis="engines", test="cliffs_delta")
    out.append(Claim("RQ3, vLLM vs HF", "Wilcoxon rejects for every hardware and GPU count", "all reject",
                     f"{int(w['reject'].astype(bool).sum())} of {len(w)} reject (largest p = {w['p_value'].max():.2e})",
                     bool(w["reject"].astype(bool).all())))  # fmt: skip
    out.append(Claim("RQ3, vLLM vs HF", "mean Cliff's delta over GPU configurations", "0.8762",
                     f"{d['effect'].mean():.4f} over {len(d)} configurations", _close(d["effect"].mean(), 0.8762, 5e-4)))  # fmt: skip
    return out


def rq4(a: Analysis) -> list[Claim]:
    s = a.tables["hardware_improvement"].set_index(["engine", "model"])
    out = []
    for engine, mean, median, delta, p in (("vllm", 0.835, 0.776, 0.406, "2.01"), ("hf", 0.47, 0.233, 0.1333, "3.88")):
        r = s.loc[(engine, "all")]
        out.append(Claim(f"RQ4, {engine}", "A100 over V100 improvement: mean (median)", f"{mean:.1%} ({median:.1%})",
                         f"{r.mean_improvement:.1%} ({r.median_improvement:.1%})",
                         _close(r.mean_improvement, mean, 5e-4) and _close(r.median_improvement, median, 5e-4)))  # fmt: skip
        out.append(Claim(f"RQ4, {engine}", "Cliff's delta A100 vs V100", str(delta), f"{r.cliffs_delta:.4f}",
                         _close(r.cliffs_delta, delta, 5e-4)))  # fmt: skip
        out.append(Claim(f"RQ4, {engine}", "Wilcoxon p-value", p, f"{r.wilcoxon_p:.4g}", *printed_p(p, r.wilcoxon_p)))
    top = sorted(m for (e, m), r in s.iterrows() if e == "vllm" and m != "all" and r.mean_improvement >= 1)
    said = ["Codellama-13b-hf", "Codellama-34b-hf", "Codellama-70b-hf", "Gemma-7b", "Wizardcoder-15b"]
    out.append(
        Claim("RQ4, vllm", "models with 100% or greater improvement", ", ".join(said), ", ".join(top), top == said)
    )
    for model, paper in (("Wizardcoder-33b", 5.356), ("Codellama-70b-hf", 2.76), ("Gemma-2b", 0.019), ("Phi-2", 0.218)):
        got = s.loc[("hf", model), "mean_improvement"]
        out.append(
            Claim("RQ4, hf", f"{model} mean improvement", f"{paper:.1%}", f"{got:.1%}", _close(got, paper, 5e-4))
        )
    return out


def discussion(a: Analysis) -> list[Claim]:
    out = []
    a100 = a.tables["gpu_scaling_a100_hf"].loc["Codellama-70b-hf", 8]
    v100 = a.tables["gpu_scaling_v100_hf"].loc["Codellama-70b-hf", 8]
    out.append(Claim("Discussion A", "Codellama-70b, HF, 8 GPUs: A100 vs V100", "1.79 vs 0.21",
                     f"{a100:.2f} vs {v100:.2f}", _close(a100, 1.79, 0.005) and _close(v100, 0.21, 0.005)))  # fmt: skip
    c = _t(a, analysis="correlation", hardware="a100", group1="params_b")
    rs = {r.group2: (r.statistic, r.p_value) for r in c.itertuples()}
    text = ", ".join(f"{k}: r = {r:.3f} (p = {p:.4f})" for k, (r, p) in rs.items())
    out.append(Claim("Discussion B", "Pearson, parameters vs Table II throughputs", "r between -0.623 and -0.67, p 0.001 to 0.003",
                     text, all(-0.675 <= r <= -0.6225 and 0.0005 <= p <= 0.0035 for r, p in rs.values())))  # fmt: skip
    pe = _t(a, analysis="correlation", group1="params_b", group2="humaneval_pass1").iloc[0]
    out.append(Claim("Discussion B", "Pearson, HumanEval vs parameters (Table I)", "0.527 (p = 0.017)",
                     f"{pe.statistic:.3f} (p = {pe.p_value:.3f})", _close(pe.statistic, 0.527, 5e-4)))  # fmt: skip
    for col, paper_r, paper_p in (("hf_thp", -0.58, 0.0072), ("vllm_best_thp", -0.35, 0.122)):
        r = _t(a, analysis="correlation", hardware="a100", group1="humaneval_pass1", group2=col).iloc[0]
        out.append(Claim("Discussion B", f"Pearson, HumanEval vs {col}", f"{paper_r} (p = {paper_p})",
                         f"{r.statistic:.3f} (p = {r.p_value:.4f})",
                         _close(r.statistic, paper_r, 0.01) and _close(r.p_value, paper_p, 0.001)))  # fmt: skip
    return out


def rq1(a: Analysis) -> list[Claim]:
    c = a.cells
    bloom = grid(c, "n_gpus", "batch_size", hardware="a100", engine="hf", model="Bloom-1b7")
    gemma = grid(c, "n_gpus", "batch_size", hardware="a100", engine="vllm", model="Gemma-2b")
    g, b = gemma.stack().idxmax()
    sizes = sorted(c["batch_size"].unique())
    return [
        Claim("RQ1", "Bloom-1b7 (HF) peaks at batch 64 with 1 and with 8 GPUs", "≈ 94.5 t/s",
              f"{bloom.loc[1, 64]:.1f} and {bloom.loc[8, 64]:.1f} t/s", _close(bloom.loc[8, 64], 94.5, 0.05)),
        Claim("RQ1", "Gemma-2b (vLLM) is highest at batch size", "258", f"{b} (with {g} GPUs)", b == 258),
        Claim("Protocol", "batch sizes", "1, 2, 4, ..., 256, 1028 (and 1024 elsewhere)",
              ", ".join(map(str, sizes)), sizes == [2**k for k in range(9)] + [1028]),
    ]  # fmt: skip


CHECKS: tuple[Callable[[Analysis], list[Claim]], ...] = (rq1, rq2, table_ii, rq3, rq4, discussion)


def check(a: Analysis) -> list[Claim]:
    """Every claim the analysis has the data for; a check whose tables are missing is skipped."""
    out = []
    for fn in CHECKS:
        try:
            out += fn(a)
        except (KeyError, IndexError):
            continue
    return out


def claims_section(a: Analysis, study: str) -> list[str]:
    """The report section comparing the paper's text with the data; empty for other studies."""
    if PAPER_STUDY not in study:
        return []
    claims = check(a)
    rows = pd.DataFrame(
        [
            {
                "where": c.where,
                "statement": c.statement,
                "paper says": c.paper,
                "data give": c.data,
                "agree": c.verdict if c.agrees else f"**{c.verdict}**",
            }
            for c in claims
        ]  # fmt: skip
    )
    n_no = sum(not c.agrees for c in claims)
    return [
        "## The paper's text against the data\n",
        f"{len(claims)} numeric statements of the paper checked against the published data; {n_no} disagree. "
        "Where they disagree, both numbers are given.\n",
        markdown_table(rows),
    ]
