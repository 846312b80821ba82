"""``equivalence.csv``: does a configuration generate what its reference generates?

Each trial's ``outputs`` column holds one fingerprint per workload prompt
(:mod:`infpop.fingerprints`: a digest of all generated token ids and the first ``HEAD`` ids).
Configurations are compared within a *family*: the same hardware, model, dtype, workload,
max_new_tokens and output_length, so the same prompts asked for the same tokens, and the same
deterministic mode (which changes the arithmetic itself: a mode's batch invariance is measured
against its own reference, not against a reference without it). Within a
family, each engine's reference is its configuration with the fewest GPUs, then the smallest
batch (then the other axes in order: offline before online); every configuration of the engine
is compared with the first repetition of that reference, the reference's own later repetitions
included (run-to-run nondeterminism). Across engines, each engine's reference is compared with
the reference of the family's first engine by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd
from infpop.errors import InputError
from infpop.fingerprints import HEAD, PATTERN

from infpop_analysis.table import config_axes

#: What the outputs of two configurations can only be compared under: the same prompts, asked for
#: the same tokens of the same weights, under the same deterministic mode.
FAMILY = ["hardware", "model", "dtype", "workload", "max_new_tokens", "output_length", "deterministic"]
#: The reference of a family's engine: the first configuration in this order.
REFERENCE_ORDER = ["n_gpus", "batch_size"]

COLUMNS = [
    "against",
    "reference_trial",
    "reference_engine",
    "reference_n_gpus",
    "reference_batch_size",
    "trials",
    "prompts",
    "identical",
    "identical_head",
    "head",
    "first_divergence_mean",
    "diverged_after_head",
]

FINGERPRINT = re.compile(PATTERN)

#: One prompt's fingerprint: the digest of all its ids, and its first ``HEAD`` ids.
Print = tuple[str, tuple[int, ...]]


def parse(cell: str) -> list[Print | None]:
    """The fingerprints of a table's ``outputs`` cell (``-``: a prompt the trial did not serve)."""
    return prints(None if item == "-" else item for item in cell.split())


def prints(outputs: Iterable[str | None]) -> list[Print | None]:
    """The fingerprints of a result's ``outputs`` (``None``: a prompt the trial did not serve)."""
    out: list[Print | None] = []
    for item in outputs:
        if item is None:
            out.append(None)
            continue
        digest, head = item.split(":")
        out.append((digest, tuple(int(t) for t in head.split(",")) if head else ()))
    return out


def first_divergence(a: Print, b: Print) -> int | None:
    """Index of the first generated token that differs (0: the first), where the heads tell it;
    ``None`` for identical outputs and for ones that differ only after the head."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a[1], b[1])) if x != y), None)


def compare(trials: list[list[Print | None]], reference: list[Print | None]) -> dict[str, object]:
    """The equivalence measures of ``trials`` against ``reference``, over every prompt both served."""
    pairs = [(a, b) for t in trials for a, b in zip(t, reference) if a is not None and b is not None]
    divergences = [first_divergence(a, b) for a, b in pairs]
    located = [d for d in divergences if d is not None]
    n = len(pairs)
    return {
        "trials": len(trials),
        "prompts": n,
        "identical": sum(a == b for a, b in pairs) / n if n else None,
        "identical_head": sum(a[1] == b[1] for a, b in pairs) / n if n else None,
        "head": HEAD,
        "first_divergence_mean": sum(located) / len(located) if located else None,
        "diverged_after_head": sum(a != b and a[1] == b[1] for a, b in pairs),
    }


def _reference(configs: pd.DataFrame, axes: list[str]) -> pd.Series:
    """The reference row of one engine's configurations that recorded outputs."""
    order = REFERENCE_ORDER + [a for a in axes if a not in REFERENCE_ORDER]
    return configs.sort_values(order, na_position="first", kind="stable").iloc[0]


def equivalence(table: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (and one per engine other than the family's first): its
    outputs against its reference. A configuration without fingerprints (an engine that
    reports no token ids, records from before they were kept) has ``prompts`` 0 and no shares,
    never a value; an engine with none in a family has no reference, and no rows."""
    axes = config_axes(table)
    # Trials that served at least one prompt: a failed one with none served is no reference.
    trials = table[table["outputs"].str.contains(":", na=False)] if "outputs" in table else table.iloc[:0]
    for where, cell in zip(trials.get("trial_id", trials.index), trials.get("outputs", [])):
        bad = next((item for item in cell.split() if item != "-" and not FINGERPRINT.match(item)), None)
        if bad is not None:
            raise InputError(f"outputs of trial {where}: {bad[:80]!r} is not a fingerprint ('<16 hex>:<ids>' or '-')")
    rows: list[dict[str, object]] = []
    if trials.empty:
        return pd.DataFrame(columns=axes + COLUMNS)
    trials = trials.sort_values([*axes, "repetition"], na_position="first", kind="stable")
    configs = trials.groupby(axes, dropna=False, sort=False).head(1)
    family = [a for a in FAMILY if a in axes]  # hardware and model at least: every table has them
    all_configs = table.groupby(axes, dropna=False, sort=False).size().reset_index()[axes]
    for _, members in configs.groupby(family, dropna=False, sort=True):
        references: dict[str, pd.Series] = {}
        for engine, own in members.groupby("engine", sort=True):
            references[engine] = ref = _reference(own, axes)
            ref_prints = parse(ref["outputs"])
            for _, config in _configs_of(all_configs, ref, family + ["engine"]).iterrows():
                prints = [parse(c) for c in _trials_of(trials, config, axes)["outputs"]]
                if _same(config, ref, axes):
                    prints = prints[1:]  # the reference trial itself is what the others are compared with
                rows.append(_row(config, axes, "same engine", ref) | compare(prints, ref_prints))
        first, *others = references.values()
        for ref in others:
            prints = [parse(c) for c in _trials_of(trials, ref, axes)["outputs"]][:1]
            rows.append(_row(ref, axes, "first engine", first) | compare(prints, parse(first["outputs"])))
    shares = dict.fromkeys(["identical", "identical_head", "first_divergence_mean"], "float64")
    return pd.DataFrame(rows, columns=axes + COLUMNS).astype(shares)


def _same(a: pd.Series, b: pd.Series, axes: list[str]) -> bool:
    """Equal on every axis, a missing value (HF's prefix caching, a nullable boolean's NA) equal
    only to a missing one: ``False == pd.NA`` is NA, which no ``if`` may see."""
    for x in axes:
        missing_a, missing_b = pd.isna(a[x]), pd.isna(b[x])
        if missing_a or missing_b:
            if not (missing_a and missing_b):
                return False
        elif a[x] != b[x]:
            return False
    return True


def _trials_of(trials: pd.DataFrame, config: pd.Series, axes: list[str]) -> pd.DataFrame:
    return trials[[_same(r, config, axes) for _, r in trials[axes].iterrows()]]


def _configs_of(configs: pd.DataFrame, ref: pd.Series, keys: list[str]) -> pd.DataFrame:
    return configs[[_same(r, ref, keys) for _, r in configs[keys].iterrows()]]


def _row(config: pd.Series, axes: list[str], against: str, ref: pd.Series) -> dict[str, object]:
    return {a: config[a] for a in axes} | {
        "against": against,
        "reference_trial": ref["trial_id"],
        "reference_engine": ref["engine"],
        "reference_n_gpus": ref["n_gpus"],
        "reference_batch_size": ref["batch_size"],
    }
