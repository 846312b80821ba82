"""Import the study's published measurements (``allData.csv``) into the tidy table.

The published CSV has no hardware and no max-new-tokens column: both are encoded by row order
(see docs/study.md). Decoding is a pure function of the rows, so the same rules are tested on
the real file and on small hand-made frames:

- rows come in contiguous (model, engine) blocks;
- inside a block, a *GPU group* is a run of rows with one GPU count and non-decreasing batch size;
- a GPU group identical to the one before it is a copy (the study's CSV repeats one) and is dropped;
- a new hardware part starts where the GPU count stops increasing from one group to the next:
  the first part is A100, the second V100;
- inside a group, the consecutive rows of one batch size are max_new_tokens 5, 10, 20 in that
  order (a killed run leaves a prefix), except the groups listed in :data:`TOKEN_EXCEPTIONS`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from infpop.errors import InputError

from infpop_analysis.table import conform

STUDY = "infpop-paper"
WORKLOAD = "humaneval-infilling"
#: Hardware parts of a block, in row order.
HARDWARE = ("a100", "v100")
#: max_new_tokens of the 1st, 2nd, 3rd row of a (GPU count, batch size) run.
TOKENS = (5, 10, 20)
#: Runs whose rows are not a prefix of TOKENS, keyed by (model, engine, hardware, n_gpus, batch_size).
#: Codestral's 10-token run at this point was lost; the surviving rows are its 5 and 20 tokens.
TOKEN_EXCEPTIONS: dict[tuple[str, str, str, int, int], tuple[int, ...]] = {
    ("Codestral-22b", "vllm", "a100", 8, 32): (5, 20),
}
ENGINES = {"autohf": "hf", "vllm": "vllm"}
#: The published error labels, as tidy-table statuses.
STATUSES = {"ok": "ok", "CUDA out of memory": "oom", "CUDA error": "error", "killed-noInfo": "error"}
RAW_COLUMNS = ("model", "engine", "nrGPUs", "batchSize", "throughput", "errors_l")


def _runs(changed: pd.Series) -> pd.Series:
    """Run number of each row, given where a new run starts."""
    return changed.cumsum()


def decode(raw: pd.DataFrame, source: str = "allData.csv") -> pd.DataFrame:
    """The published rows in the tidy schema, hardware and max_new_tokens recovered from row order."""
    missing = [c for c in RAW_COLUMNS if c not in raw]
    if missing:
        raise InputError(f"{source}: not the published allData.csv: column {missing[0]!r} is missing")
    df = raw.loc[:, list(RAW_COLUMNS)].reset_index(drop=True)
    df["engine"] = df["engine"].str.lower()
    unknown = sorted(set(df["engine"]) - set(ENGINES))
    if unknown:
        raise InputError(f"{source}: column 'engine': unknown engine {unknown[0]!r}; known: autohf, vLLM")
    bad_status = sorted(set(df["errors_l"].dropna()) - set(STATUSES))
    if bad_status or df["errors_l"].isna().any():
        raise InputError(f"{source}: column 'errors_l': unknown label {(bad_status or [None])[0]!r}")
    df["engine"] = df["engine"].map(ENGINES)

    new_block = (df[["model", "engine"]] != df[["model", "engine"]].shift()).any(axis=1)
    df["_block"] = _runs(new_block)
    new_group = new_block | (df["nrGPUs"] != df["nrGPUs"].shift()) | (df["batchSize"] < df["batchSize"].shift())
    df["_group"] = _runs(new_group)
    df = _drop_repeated_groups(df).reset_index(drop=True)

    heads = df.drop_duplicates("_group")
    first_of_block = heads["_block"] != heads["_block"].shift()
    not_increasing = (heads["nrGPUs"] <= heads["nrGPUs"].shift()) & ~first_of_block
    part = not_increasing.astype(int).groupby(heads["_block"]).cumsum()
    if (part >= len(HARDWARE)).any():
        where = heads[part >= len(HARDWARE)].iloc[0]
        raise InputError(
            f"{source}: block ({where['model']}, {where['engine']}) has more than {len(HARDWARE)} hardware "
            f"parts (GPU count stops increasing a {len(HARDWARE)}th time at {where['nrGPUs']} GPUs)"
        )
    df["hardware"] = df["_group"].map(dict(zip(heads["_group"], part))).map(dict(enumerate(HARDWARE)))

    new_run = (df["_group"] != df["_group"].shift()) | (df["batchSize"] != df["batchSize"].shift())
    run = _runs(new_run)
    size, pos = run.groupby(run).transform("size"), run.groupby(run).cumcount()
    keys = zip(df["model"], df["engine"], df["hardware"], df["nrGPUs"], df["batchSize"])
    df["max_new_tokens"] = [_tokens(source, key, n, i) for key, n, i in zip(keys, size, pos)]

    out = pd.DataFrame(
        {
            "study": STUDY,
            "hardware": df["hardware"],
            "engine": df["engine"],
            "model": df["model"],
            "n_gpus": df["nrGPUs"],
            "batch_size": df["batchSize"],
            "max_new_tokens": df["max_new_tokens"],
            "repetition": 0,
            "workload": WORKLOAD,
            "status": df["errors_l"].map(STATUSES),
            "throughput": df["throughput"],
            "dtype": "float16",
            "error": df["errors_l"].where(df["errors_l"] != "ok"),
            "source": "published",
        }
    )
    return conform(out)


def _tokens(source: str, key: tuple[str, str, str, int, int], size: int, pos: int) -> int:
    """max_new_tokens of the ``pos``-th of ``size`` rows of one (model, engine, hardware, GPUs, batch) run."""
    order = TOKEN_EXCEPTIONS.get(key, TOKENS)
    if size > len(order):
        model, engine, hw, n, b = key
        raise InputError(
            f"{source}: ({model}, {engine}, {hw}, {n} GPUs, batch {b}) has {size} rows; at most {len(order)} expected"
        )
    return order[pos]


def _drop_repeated_groups(df: pd.DataFrame) -> pd.DataFrame:
    """Drop a GPU group whose rows repeat the group just before it, value for value."""
    content = ["nrGPUs", "batchSize", "throughput", "errors_l"]
    groups = [g for _, g in df.groupby("_group", sort=True)]
    keep = [groups[0]]
    for prev, cur in zip(groups, groups[1:]):
        same_block = prev["_block"].iat[0] == cur["_block"].iat[0]
        if same_block and prev[content].reset_index(drop=True).equals(cur[content].reset_index(drop=True)):
            continue
        keep.append(cur)
    return pd.concat(keep)


def with_catalog(df: pd.DataFrame, manifest: str | Path) -> pd.DataFrame:
    """Fill params_b and humaneval_pass1 from a manifest's model list, joined on model name."""
    from infpop.manifest import load_manifest

    models = load_manifest(manifest).manifest.models
    params = {m.name: m.params_b for m in models}
    pass1 = {m.name: m.humaneval_pass1 for m in models}
    unknown = sorted(set(df["model"]) - set(params))
    if unknown:
        raise InputError(f"{manifest}: models: no entry named {unknown[0]!r} (a model of the table)")
    out = df.copy()
    out["params_b"] = out["model"].map(params).astype("float64")
    out["humaneval_pass1"] = out["model"].map(pass1).astype("float64")
    return out


def import_published(path: str | Path, catalog: str | Path | None = None) -> pd.DataFrame:
    """Read the published ``allData.csv`` as a tidy table (source "published", study "infpop-paper").

    ``catalog`` is a manifest (e.g. manifests/paper.yaml) whose models supply params_b and
    humaneval_pass1; without it those columns stay missing.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, index_col=0)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read published data: {exc}") from None
    df = decode(raw, str(path))
    return with_catalog(df, catalog) if catalog is not None else df
