"""The tidy table: one row per trial, the schema every analysis reads.

``infpop aggregate`` builds it from result files; ``infpop import-published`` builds it from the
study's CSV. Columns not known for a source are left missing (NaN/None), never invented.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from infpop.atomic import atomic_file
from infpop.capacity import Capacity
from infpop.errors import InputError
from infpop.filemodes import file_mode
from infpop.manifest import SAFE_NAME
from infpop.results import CorruptResult, TrialResult, iter_results

#: The engine's resolved settings the table keeps (vLLM's; see ``TrialResult.resolved``).
RESOLVED: dict[str, str] = {
    "max_num_seqs": "Int64",
    "max_num_batched_tokens": "Int64",
    "chunked_prefill": "boolean",
    "enforce_eager": "boolean",
    "cudagraph_mode": "string",
    "block_size": "Int64",
    "kv_cache_dtype": "string",
    "max_model_len": "Int64",
}

#: Column order of every tidy table, with pandas dtypes.
COLUMNS: dict[str, str] = {
    "study": "string",
    "hardware": "string",
    "engine": "string",
    "model": "string",
    "n_gpus": "Int64",
    "batch_size": "Int64",
    "max_new_tokens": "Int64",
    "repetition": "Int64",
    "workload": "string",
    "status": "string",
    # Why an adaptive configuration was measured no more (``TrialResult.stop_reason``).
    "stop_reason": "string",
    "throughput": "float64",
    "generated_tokens": "Int64",
    "prompt_tokens": "Int64",
    "n_prompts": "Int64",
    "wall_s": "float64",
    "load_s": "float64",
    "warmup_s": "float64",
    "dtype": "string",
    "params_b": "float64",
    "humaneval_pass1": "float64",
    "error": "string",
    "host": "string",
    "gpu_names": "string",
    # Provenance the report shows: "pkg=version;..." of the trial's process, the manifest's hash, the image.
    "versions": "string",
    "manifest_sha256": "string",
    "container_image": "string",
    "container_sha256": "string",
    "started_at": "string",
    "finished_at": "string",
    "trial_id": "string",
    "source": "string",
    # Workload-study axes and the online scenario's measures (missing for the paper's data).
    "scenario": "string",
    "output_length": "string",
    "request_rate": "float64",
    "gpu_memory_utilization": "float64",
    # vLLM: the KV-cache size axis on CPU, the concurrency cap of continuous batching, what the
    # engine allocated and preempted; and how each trial's requests were batched.
    "kv_cache_bytes": "Int64",
    "max_num_seqs": "Int64",
    "batching": "string",
    "kv_cache_blocks": "Int64",
    "num_preemptions": "Int64",
    # vLLM's prefix cache: the axis, and the prompt tokens it served during the timed run.
    "prefix_caching": "boolean",
    "cached_prompt_tokens": "Int64",
    # The engines' deterministic mode: the axis, and what the engine read back after load.
    "deterministic": "boolean",
    "deterministic_on": "boolean",
    # The settings vLLM resolved at load (a result's ``resolved``), prefixed ``resolved_``.
    **{f"resolved_{name}": dtype for name, dtype in RESOLVED.items()},
    "valid": "boolean",
    # Energy of the timed loop (a result's ``telemetry``): missing is *not measured*, never zero.
    # ``energy_parts`` says what the per-token figures count (gpu, cpu or gpu+cpu).
    "gpu_energy_j": "float64",
    "cpu_energy_j": "float64",
    "energy_parts": "string",
    "energy_j_per_token": "float64",
    "tokens_per_s_per_w": "float64",
    "gpu_mean_power_w": "float64",
    "gpu_peak_power_w": "float64",
    "gpu_peak_memory_bytes": "Int64",
    # The configuration's physical bound (``infpop.physics.bound``), what sets it, and the
    # measured throughput's share of it.
    "bound_tokens_s": "float64",
    "bound_by": "string",
    "roofline_fraction": "float64",
    "n_requests": "Int64",
    "request_throughput": "float64",
    "goodput": "float64",
    "send_lateness_p99_s": "float64",
    # A capacity search (a result's ``capacity``): the highest rate meeting the SLO, the generated
    # tokens/s there, each per GPU, the failing rate above it, and why the search stopped.
    "capacity_rps": "float64",
    "capacity_tokens_s": "float64",
    "capacity_rps_per_gpu": "float64",
    "capacity_tokens_s_per_gpu": "float64",
    "capacity_violated_rps": "float64",
    "capacity_stopped": "string",
    **{
        f"{measure}_{p}_s": "float64"
        for measure in ("latency", "ttft", "latency_per_token", "tpot", "itl")
        for p in ("p50", "p90", "p99")
    },
    # The fingerprints of the generated tokens (a result's ``outputs``), one per workload prompt,
    # space-separated, ``-`` for a prompt not served; missing where not measured.
    "outputs": "string",
}

KEY = ["study", "hardware", "engine", "model", "n_gpus", "batch_size", "max_new_tokens", "repetition", "workload"]
#: What tells apart trials of one KEY in a workload study; missing (NA) for the paper's data.
SCENARIO_KEY = ["scenario", "output_length", "request_rate", "gpu_memory_utilization", "kv_cache_bytes", "max_num_seqs"]
#: Every column that says under what a trial measured: trials that differ in one of them measure
#: different things, and an analysis must never pool them. ``study`` (where the trials were
#: filed) and ``repetition`` are not axes; engine settings that later records carry
#: (``kv_cache_bytes``, ``max_num_seqs``, ``batching``) count where a table has them.
CONFIG_AXES = [
    "hardware", "engine", "model", "n_gpus", "batch_size", "max_new_tokens", "dtype", "workload",
    "scenario", "output_length", "request_rate", "gpu_memory_utilization",
    "kv_cache_bytes", "max_num_seqs", "batching", "prefix_caching", "deterministic",
]  # fmt: skip


def config_axes(table: pd.DataFrame) -> list[str]:
    """The configuration axes (:data:`CONFIG_AXES`) the table has a value for, in that order."""
    return [c for c in CONFIG_AXES if c in table and table[c].notna().any()]


def valid_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows that count, and how many were left out: a run marked invalid (``valid`` false:
    too short or too few requests) is never analysed as if it were valid. Rows from before the
    rule, or from the published data (``valid`` missing), count."""
    if "valid" not in table:
        return table, 0
    invalid = table["valid"].eq(False).fillna(False).astype(bool)
    return table[~invalid], int(invalid.sum())


def split_axes(table: pd.DataFrame, within: list[str]) -> list[str]:
    """The configuration axes beyond ``within`` (what an analysis compares) on which the table's
    rows differ: an analysis runs once per combination of their values (missing is a value)."""
    return [c for c in config_axes(table) if c not in within and table[c].nunique(dropna=False) > 1]


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Add missing columns, order and type them: the one shape every producer hands on."""
    out = df.copy()
    for col, dtype in COLUMNS.items():
        if col not in out:
            out[col] = pd.Series(float("nan") if dtype == "float64" else pd.NA, index=out.index, dtype=dtype)
    extra = [c for c in out.columns if c not in COLUMNS]
    out = out[list(COLUMNS) + extra]
    return out.astype(COLUMNS).reset_index(drop=True)


def row(result: TrialResult) -> dict:
    t = result.trial
    return {
        "study": t.study,
        "hardware": t.hardware,
        "engine": t.engine,
        "model": t.model.name,
        "n_gpus": t.n_gpus,
        "batch_size": t.batch_size,
        "max_new_tokens": t.max_new_tokens,
        "repetition": t.repetition,
        "workload": t.workload.id,
        "status": result.status,
        "stop_reason": result.stop_reason,
        "throughput": result.throughput,
        "generated_tokens": result.generated_tokens,
        "prompt_tokens": result.prompt_tokens,
        "n_prompts": result.n_prompts,
        "wall_s": result.wall_s,
        "load_s": result.load_s,
        "warmup_s": result.warmup_s,
        "dtype": t.dtype,
        "params_b": t.model.params_b,
        "humaneval_pass1": t.model.humaneval_pass1,
        "error": (result.error or "").strip().splitlines()[-1] if result.error else None,
        "host": result.provenance.host,
        "gpu_names": ";".join(result.provenance.gpus),
        "versions": ";".join(f"{k}={v}" for k, v in sorted(result.provenance.versions.items())),
        "manifest_sha256": result.provenance.manifest_sha256,
        "container_image": result.provenance.container_image,
        "container_sha256": result.provenance.container_sha256,
        "started_at": result.provenance.started_at,
        "finished_at": result.provenance.finished_at,
        "trial_id": t.trial_id,
        "source": "sweep",
        **_scenario_columns(result),
        **_energy_columns(result),
    }


def _energy_columns(result: TrialResult) -> dict:
    """Energy per generated token and tokens/s per watt (= tokens per joule) from the parts
    measured; a roofline fraction where the trial ran ok and has a bound."""
    tel, tokens = result.telemetry, result.generated_tokens
    energy = tel.energy_j if tel is not None else None
    gpus = tel.gpus if tel is not None else []
    powers = [g.mean_power_w for g in gpus]
    peaks = [g.peak_power_w for g in gpus]
    memory = [g.peak_memory_used_bytes for g in gpus]
    has_fraction = result.status == "ok" and result.throughput is not None and bool(result.bound_tokens_s)
    return {
        "gpu_energy_j": tel.gpu_energy_j if tel is not None else None,
        "cpu_energy_j": tel.cpu_energy_j if tel is not None else None,
        "energy_parts": tel.energy_parts if tel is not None else None,
        "energy_j_per_token": energy / tokens if energy is not None and tokens else None,
        "tokens_per_s_per_w": tokens / energy if energy and tokens else None,
        "gpu_mean_power_w": sum(powers) if gpus and None not in powers else None,
        "gpu_peak_power_w": max(peaks) if gpus and None not in peaks else None,
        "gpu_peak_memory_bytes": max(memory) if gpus and None not in memory else None,
        "bound_tokens_s": result.bound_tokens_s,
        "bound_by": result.bound_by,
        "roofline_fraction": result.throughput / result.bound_tokens_s if has_fraction else None,
    }


def _scenario_columns(result: TrialResult) -> dict:
    t, online = result.trial, result.online
    out = {
        "scenario": t.scenario.kind,
        "output_length": t.output_length,
        "request_rate": t.request_rate,
        # From the engine's options, so a fixed setting is recorded as well as a swept one.
        "gpu_memory_utilization": t.engine_options.get("gpu_memory_utilization"),
        "kv_cache_bytes": t.engine_options.get("kv_cache_memory_bytes"),
        "max_num_seqs": t.engine_options.get("max_num_seqs"),
        "batching": result.batching,
        "kv_cache_blocks": result.kv_cache_blocks,
        "num_preemptions": result.num_preemptions,
        "prefix_caching": t.prefix_caching,
        "cached_prompt_tokens": result.cached_prompt_tokens,
        "deterministic": t.deterministic,
        "deterministic_on": result.deterministic,
        **{f"resolved_{name}": (result.resolved or {}).get(name) for name in RESOLVED},
        "valid": result.valid,
        "outputs": None if result.outputs is None else " ".join(f or "-" for f in result.outputs),
    }
    if result.capacity is not None:
        out.update(_capacity_columns(result.capacity, t.n_gpus))
    if online is not None:
        out.update(n_requests=online.n_requests, request_throughput=online.request_throughput, goodput=online.goodput)
        out["send_lateness_p99_s"] = online.send_lateness_s.p99 if online.send_lateness_s is not None else None
        for measure in ("latency", "ttft", "latency_per_token", "tpot", "itl"):
            pct = getattr(online, f"{measure}_s")
            for p in ("p50", "p90", "p99"):
                out[f"{measure}_{p}_s"] = getattr(pct, p) if pct is not None else None
    return out


def _capacity_columns(found: Capacity, n_gpus: int) -> dict:
    """The search's outcome, per GPU too: what tells which configuration serves most per GPU."""
    return {
        "capacity_rps": found.capacity_rps,
        "capacity_tokens_s": found.capacity_tokens_s,
        "capacity_rps_per_gpu": found.rps_per_gpu(n_gpus),
        "capacity_tokens_s_per_gpu": found.tokens_s_per_gpu(n_gpus),
        "capacity_violated_rps": found.violated_rps,
        "capacity_stopped": found.stopped,
    }


def aggregate(root: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Tidy table of every result under ``root``, and the corrupt files that were left out."""
    rows, corrupt = [], []
    for item in iter_results(root):
        if isinstance(item, CorruptResult):
            corrupt.append(str(item))
        else:
            rows.append(row(item))
    df = _batching_of_old_skipped(conform(pd.DataFrame(rows, columns=list(COLUMNS))))
    return df.sort_values(KEY + SCENARIO_KEY, ignore_index=True), corrupt


def _batching_of_old_skipped(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with each skipped record written before skipped records carried their job's engine
    settings given the ``batching`` its configuration ran with: without it such a record (a
    repetition not needed, a batch above an OOM) would form a configuration of its own. Records
    written since hold it; a configuration with no ran record keeps it missing."""
    old = df["status"].isin(("skipped_enough", "skipped_oom")).fillna(False) & df["batching"].isna()
    if not old.any():
        return df
    others = [a for a in CONFIG_AXES if a != "batching" and a in df]
    ran = df[~old].dropna(subset=["batching"]).drop_duplicates(others)[[*others, "batching"]]
    filled = df[old].drop(columns="batching").merge(ran, on=others, how="left")
    out = pd.concat([df[~old], filled.set_axis(df.index[old])[df.columns]]).sort_index()
    return out.astype(COLUMNS | {c: out[c].dtype for c in out.columns if c not in COLUMNS})


def write_table(df: pd.DataFrame, out: str | Path) -> list[Path]:
    """Write ``out`` (.parquet) and its .csv twin, each atomically (:func:`atomic_file`), under a
    lock on the pair: two aggregates into one folder each write their own temp files, and the
    renames of one pair never interleave with the other's, so the parquet and the csv always
    come from the same run."""
    out = Path(out)
    pairs = ((out.with_suffix(".parquet"), df.to_parquet), (out.with_suffix(".csv"), df.to_csv))
    with ExitStack() as stack:
        stack.enter_context(_locked(out.with_name(f".{out.stem}.lock")))
        for path, writer in pairs:
            writer(stack.enter_context(atomic_file(path)), index=False)
    return [path for path, _ in pairs]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive POSIX lock on ``path`` (created, never removed: removing a lock file races)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def path_name(name: str, what: str = "file name") -> str:
    """``name`` when it may become a file name: table values joined into output paths (hardware,
    engine, model, workload) must be names as the manifest allows them, so that none can climb out
    of the output folder (``../``) or hide a file; an :class:`InputError` naming it otherwise."""
    if not re.match(SAFE_NAME, name):
        raise InputError(
            f"{what} {name!r} cannot be part of a file name: use letters, digits and '._+-', starting with a letter or digit"
        )
    return name


#: Columns a table must have to be read as an infpop table.
REQUIRED = ("hardware", "engine", "model", "n_gpus", "batch_size", "throughput")
NUMERIC = [c for c, dtype in COLUMNS.items() if dtype in ("Int64", "float64")]


def read_csv(path: str | Path, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` for a file a user handed in or another command wrote: every way it can
    fail is an :class:`InputError` naming the file."""
    try:
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty (no columns)") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, ValueError) as exc:  # ParserError is a ValueError
        raise InputError(f"{path}: cannot read as CSV: {str(exc).strip().splitlines()[0]}") from None


def read_table(path: str | Path) -> pd.DataFrame:
    """The tidy table at ``path`` (.parquet or .csv), checked: the one reader of every command
    that takes a table, so a bad file is named with its column and value, never a traceback."""
    path = Path(path)
    if path.suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (OSError, ValueError) as exc:  # pyarrow's errors are both
            raise InputError(f"{path}: cannot read table: {str(exc).strip().splitlines()[0]}") from None
    else:
        df = read_csv(path)
    missing = [c for c in REQUIRED if c not in df]
    if missing:
        raise InputError(f"{path}: not an infpop table: column {missing[0]!r} is missing")
    for col in (c for c in NUMERIC if c in df):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna() & df[col].astype(str).str.strip().ne("")
        if bad.any():
            i = int(bad.to_numpy().argmax())
            raise InputError(f"{path}: column {col!r}, row {i + 1}: {df[col].iloc[i]!r} is not a number")
        fraction = values.notna() & (values % 1 != 0)
        if COLUMNS[col] == "Int64" and fraction.any():
            i = int(fraction.to_numpy().argmax())
            raise InputError(f"{path}: column {col!r}, row {i + 1}: {df[col].iloc[i]!r} is not a whole number")
        df[col] = values
    thp = df["throughput"]
    bad = thp.notna() & ~(np.isfinite(thp) & (thp >= 0))
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise InputError(
            f"{path}: column 'throughput', row {i + 1}: {thp.iloc[i]!r} is not a finite non-negative number"
        )
    try:
        return conform(df)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: {str(exc).strip().splitlines()[0]}") from None
