"""Malformed manifests: each error names the file, the field path and the value; exit 2; nothing written."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from infpop.cli import main
from infpop.errors import InputError
from infpop.manifest import load_manifest, parse_manifest

VALID = {
    "study": "s",
    "output_root": "runs",
    "models": [{"name": "m", "source": "./model", "params_b": 1.3, "humaneval_pass1": 30.0}],
    "engines": ["hf"],
    "partitions": ["local"],
    "gpu_counts": [1, 2],
    "batch_sizes": [1, 8],
    "max_new_tokens": [5],
    "dtype": "float16",
    "workload": {"path": "prompts.jsonl.gz", "limit": 10},
    "repetitions": 1,
}


def _set(path: str, value):
    """A mutation that sets a dotted path (``models.0.name``) in a copy of VALID."""

    def mutate(d: dict) -> dict:
        d = copy.deepcopy(d)
        *parents, last = path.split(".")
        node = d
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
        return d

    return mutate


_DELETE = object()

# (case id, mutation, field path the message must name, value it must show or None)
CASES = [
    ("missing study", _set("study", _DELETE), "study", None),
    ("study with slash", _set("study", "a/b"), "study", "'a/b'"),
    ("study empty", _set("study", ""), "study", "''"),
    ("study not a string", _set("study", 12), "study", "12"),
    ("models empty", _set("models", []), "models", "[]"),
    ("models missing", _set("models", _DELETE), "models", None),
    ("model name missing", _set("models.0.name", _DELETE), "models[0].name", None),
    ("model name with space", _set("models.0.name", "my model"), "models[0].name", "'my model'"),
    ("model source missing", _set("models.0.source", _DELETE), "models[0].source", None),
    ("model source empty", _set("models.0.source", ""), "models[0].source", "''"),
    ("params negative", _set("models.0.params_b", -7), "models[0].params_b", "-7"),
    ("pass@1 above 100", _set("models.0.humaneval_pass1", 130), "models[0].humaneval_pass1", "130"),
    ("unknown model field", _set("models.0.revison", "main"), "models[0].revison", "'main'"),
    (
        "trust_remote_code not bool",
        _set("models.0.trust_remote_code", "maybe"),
        "models[0].trust_remote_code",
        "'maybe'",
    ),
    (
        "duplicate model names",
        _set("models", [{"name": "m", "source": "a"}, {"name": "m", "source": "b"}]),
        "models",
        "'m'",
    ),
    ("unknown engine", _set("engines", ["hf", "tgi"]), "engines", "'tgi'"),
    ("engines empty", _set("engines", []), "engines", "[]"),
    ("duplicate engine", _set("engines", ["hf", "hf"]), "engines", "['hf', 'hf']"),
    ("gpu count zero", _set("gpu_counts", [0, 1]), "gpu_counts", "[0]"),
    ("gpu count not int", _set("gpu_counts", ["two"]), "gpu_counts[0]", "'two'"),
    ("gpu counts duplicated", _set("gpu_counts", [2, 2]), "gpu_counts", "[2, 2]"),
    ("batch sizes empty", _set("batch_sizes", []), "batch_sizes", "[]"),
    ("batch size negative", _set("batch_sizes", [1, -4]), "batch_sizes", "[-4]"),
    ("batch size float", _set("batch_sizes", [1.5]), "batch_sizes[0]", "1.5"),
    ("max_new_tokens zero", _set("max_new_tokens", [0]), "max_new_tokens", "[0]"),
    ("max_new_tokens not a list", _set("max_new_tokens", "five"), "max_new_tokens", "'five'"),
    ("dtype unknown", _set("dtype", "fp8"), "dtype", "'fp8'"),
    ("workload missing", _set("workload", _DELETE), "workload", None),
    ("workload without path or url", _set("workload", {"limit": 3}), "workload", "{'limit': 3}"),
    ("workload limit zero", _set("workload.limit", 0), "workload.limit", "0"),
    ("workload order unknown", _set("workload.order", "shortest"), "workload.order", "'shortest'"),
    ("workload sha256 malformed", _set("workload.sha256", "abc"), "workload.sha256", "'abc'"),
    ("repetitions zero", _set("repetitions", 0), "repetitions", "0"),
    ("unknown top-level field", _set("batchsizes", [1]), "batchsizes", "[1]"),
    ("trial timeout negative", _set("trial_timeout_s", -1), "trial_timeout_s", "-1"),
    ("engine options for unlisted engine", _set("engine_options", {"vllm": {"seed": 1}}), "engine_options", "'vllm'"),
    ("partitions empty", _set("partitions", []), "partitions", "[]"),
    ("prune_oom not bool", _set("prune_oom", "sometimes"), "prune_oom", "'sometimes'"),
    ("params NaN", _set("models.0.params_b", float("nan")), "models[0].params_b", "nan"),
    ("trial timeout infinite", _set("trial_timeout_s", float("inf")), "trial_timeout_s", "inf"),
]


@pytest.mark.parametrize("case,mutate,field,value", CASES, ids=[c[0] for c in CASES])
def test_malformed_manifest_names_field_and_value(tmp_path: Path, capsys, case, mutate, field, value) -> None:
    data = mutate(VALID)
    data["output_root"] = str(tmp_path / "out")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))

    code = main(["sweep", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    assert str(path) in err
    assert f"  {field}:" in err, err
    if value is not None:
        assert value in err, err
    assert not (tmp_path / "out").exists(), "nothing may be written for an invalid manifest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_at_least_thirty_malformed_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    "text,where",
    [("study: [unclosed\n", ":1:"), ("- a\n- b\n", "(top level)"), ("", "(top level)")],
    ids=["yaml syntax", "a list", "empty file"],
)
def test_unparseable_manifest(text: str, where: str) -> None:
    with pytest.raises(InputError, match="m.yaml") as info:
        parse_manifest(text, "m.yaml")
    assert where in str(info.value)


def test_missing_manifest_file(tmp_path: Path, capsys) -> None:
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: cannot read manifest" in capsys.readouterr().err


def test_all_errors_reported_at_once(tmp_path: Path) -> None:
    data = _set("dtype", "fp8")(_set("repetitions", 0)(VALID))
    with pytest.raises(InputError) as info:
        parse_manifest(yaml.safe_dump(data), "x.yaml")
    assert "2 errors" in str(info.value) and "dtype" in str(info.value) and "repetitions" in str(info.value)


def test_valid_manifest_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "m.yaml"
    path.write_text(yaml.safe_dump(VALID))
    loaded = load_manifest(path)
    assert loaded.output_root == tmp_path / "sub" / "runs"
    assert loaded.resolve(loaded.manifest.models[0].source) == tmp_path / "sub" / "model"
    assert loaded.manifest.models[0].is_local
    assert len(loaded.sha256) == 64


def test_shipped_manifests_are_valid() -> None:
    for path in sorted((Path(__file__).resolve().parents[2] / "manifests").glob("*.yaml")):
        load_manifest(path)
