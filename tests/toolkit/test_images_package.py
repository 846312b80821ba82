"""An image for a new engine is one new lock: its recipes, their description and their smoke test
come from the lock's data, with no edit of the runtimes or the recipe code."""

from __future__ import annotations

from pathlib import Path

from infpop.images.lock import CONTAINERS_DIR, read_lock
from infpop.images.recipe import RECIPES, stale_recipes


def test_a_new_engines_lock_alone_gives_both_recipes_and_their_smoke_test(tmp_path: Path) -> None:
    lock_text = (CONTAINERS_DIR / "vllm-sm80.lock.toml").read_text()
    lock_text = lock_text.replace('engine = "vllm"', 'engine = "sglang"').replace(
        'description = "vLLM"', 'description = "SGLang server"'
    )
    lock_text = lock_text.replace(
        'imports = ["torch", "vllm", "infpop.engines.vllm"]', 'imports = ["torch", "sglang", "infpop_sglang"]'
    )
    (tmp_path / "sglang-sm80.lock.toml").write_text(lock_text)
    assert read_lock(tmp_path / "sglang-sm80.lock.toml").smoke_imports == ("torch", "sglang", "infpop_sglang")

    written = stale_recipes(write=True, containers_dir=tmp_path)

    assert sorted(p.name for p in written) == sorted(f"sglang-sm80{suffix}" for suffix in RECIPES)
    for path in written:
        text = path.read_text()
        assert text.startswith("# infpop trial image: SGLang server on A100 (compute capability 8.0).\n")
        # The smoke test reads the imports from the lock the image keeps.
        assert "/opt/infpop/venv/bin/python -m infpop.images.smoke /opt/infpop/lock.toml sglang-sm80" in text
    assert stale_recipes(write=False, containers_dir=tmp_path) == [], "a render is stable"
