"""The stopping rule's evidence: ties on a plateau, and the roofline as a true bound (vLLM packs
prompts without padding; a mixture of experts reads only the experts its tokens use). The check
against every published throughput is in test_hpo.py, beside its data fixture."""

from __future__ import annotations

from infpop.physics import TrialShape, Workload, gpu, roofline
from infpop_analysis.hpo.landscape import Config
from infpop_analysis.hpo.stopping import Physics, plausible
from test_hpo import REPO


def test_a_fall_within_the_tolerance_is_a_tie_not_a_trend() -> None:
    """On vLLM's plateau two neighbours differ by noise; the batch beyond them may still be the best."""
    space = [Config(8, b) for b in (256, 512, 1028)]
    tie = plausible(space, {Config(8, 256): 100.0, Config(8, 512): 99.5}, slack=0.0)
    fall = plausible(space, {Config(8, 256): 100.0, Config(8, 512): 95.0}, slack=0.0)
    assert tie == [Config(8, 1028)] and fall == []


def test_roofline_without_padding_for_vllm_and_active_experts_for_a_mixture() -> None:
    from infpop.manifest import load_manifest

    models = {m.name: m.architecture for m in load_manifest(REPO / "manifests" / "paper.yaml").manifest.models}
    a100 = gpu("a100")
    # One long prompt pads a whole HF batch; vLLM pays only for its own tokens.
    uneven = Workload((10,) * 99 + (1000,), 5)
    a7 = models["Codellama-7b-hf"]
    assert roofline(TrialShape(a7, "vllm", a100, 1, 100, uneven)) > 3 * roofline(
        TrialShape(a7, "hf", a100, 1, 100, uneven)
    )
    # Mixtral at batch 1 reads 2 of its 8 experts per token: well above a dense 47B model's bound.
    mixtral = models["Mixtral-8x7b"]
    one = Workload((100,), 5)
    dense = a100.bandwidth_gbs * 1e9 * 4 / (mixtral.params * 2)
    assert roofline(TrialShape(mixtral, "vllm", a100, 4, 1, one)) > 1.5 * dense


def test_the_level_above_an_incumbent_at_the_predicted_memory_frontier_stays_open() -> None:
    """The memory model's frontier is uncertain by about a batch level: when the best trial so far
    sits right below it, the next level up may still run and be the optimum (as HF Starcoder-15b
    on one A100 does at batch 16); two levels up, and a level above a lesser trial, stay ruled out."""
    space = [Config(1, b) for b in (4, 8, 16, 32)]
    physics = Physics(oom=frozenset({Config(1, 16), Config(1, 32)}))
    at_frontier = plausible(space, {Config(1, 4): 80.0, Config(1, 8): 100.0}, slack=0.0, physics=physics)
    below_it = plausible(space, {Config(1, 4): 100.0, Config(1, 8): 90.0}, slack=0.0, physics=physics)
    assert at_frontier == [Config(1, 16)] and below_it == []


def test_each_ablation_removes_exactly_its_part_of_the_rule() -> None:
    """The benchmark's ablations leave one part out at a time; each must reopen what that part
    (and only it) ruled out."""
    space = [Config(g, b) for g in (1, 2) for b in (4, 8, 16, 32)]
    physics = Physics(oom=frozenset({Config(1, 16), Config(1, 32)}), bound={Config(2, 4): 50.0})
    seen = {Config(1, 4): 80.0, Config(1, 8): 100.0, Config(2, 8): 70.0}

    def open_(*without: str) -> set[Config]:
        return set(plausible(space, seen, slack=0.0, physics=physics, without=frozenset(without)))

    full = open_()
    assert full == {Config(1, 16)}  # the level up, by its exception
    assert open_("level_up_exception") == set()
    assert open_("predicted_oom") == {Config(1, 16), Config(1, 32)}
    # (2, 4) lies below the roofline; (2, *) far below the incumbent at its batch: the GPU-count rule.
    assert open_("gpu_count_rule") == full | {Config(2, 16), Config(2, 32)}
    assert open_("gpu_count_rule", "roofline_bound") == open_("gpu_count_rule") | {Config(2, 4)}
