"""The stopping rule's evidence: the roofline as a true bound, ties on a plateau, and the
efficiency envelope learned from other landscapes (synthetic landscapes; the roofline against the
published data is in test_hpo.py, beside its fixture)."""

from __future__ import annotations

import math

from infpop.physics import Workload, gpu, roofline
from infpop_analysis.hpo.envelope import NEAR, Envelope
from infpop_analysis.hpo.landscape import Config, Landscape
from infpop_analysis.hpo.stopping import TOLERANCE, plausible
from test_hpo import GPUS, synthetic


def test_a_fall_within_the_tolerance_is_a_tie_not_a_trend() -> None:
    """On vLLM's plateau two neighbours differ by noise; the batch beyond them may still be the best."""
    space = [Config(8, b) for b in (256, 512, 1028)]
    tie = plausible(space, {Config(8, 256): 100.0, Config(8, 512): 99.5}, slack=0.0)
    fall = plausible(space, {Config(8, 256): 100.0, Config(8, 512): 95.0}, slack=0.0)
    assert tie == [Config(8, 1028)] and fall == []


def _shifted(peaks: dict[int, int], top: float, seed: int) -> Landscape:
    """A synthetic landscape whose per-GPU peaks move with ``seed`` (landscapes a learner has not seen)."""
    return synthetic({g: (peaks[g], top * (1 + 0.1 * ((g + seed) % 3))) for g in GPUS}, {1: 512}, model=f"m{seed}")


def test_the_envelope_never_rules_out_what_its_training_landscapes_show_can_beat_the_incumbent() -> None:
    """At level 1.0 the envelope is the largest gain any training landscape shows from a near-optimal
    configuration: on those landscapes it must keep every configuration that beats such an incumbent."""
    train = [_shifted({1: 16, 2: 32, 4: 32, 8: 64}, 50.0, s) for s in range(3)]
    train += [_shifted({1: 8, 2: 8, 4: 16, 8: 16}, 20.0, s) for s in range(3, 6)]
    learned = Envelope.learn(train, "hf", 1.0, lambda _: {})
    assert learned.bounds
    for land in train:
        optimum = land.optimum()
        ok = {c: v for c in land.points if (v := land.score(c)) is not None}
        for a, va in ok.items():
            if va < NEAR * optimum:
                continue
            for c, vc in ok.items():
                if vc > va * (1 + TOLERANCE):
                    assert not learned.rules_out(c, {a: va}, va * (1 + TOLERANCE)), (land.model, a, c)
    # And it rules out what none of them shows: a gain 4 levels below a near-optimal incumbent.
    assert learned.rules_out(Config(1, 1), {Config(1, 16): 100.0}, 101.0)


def test_the_envelope_scales_with_the_roofline_ratio() -> None:
    """The envelope bounds the efficiency ratio: a configuration whose roofline is far above the
    incumbent's stays open even where the measured ratios of training landscapes are low."""
    train = [_shifted({1: 16, 2: 16, 4: 16, 8: 16}, 30.0, s) for s in range(4)]
    learned = Envelope.learn(train, "hf", 0.99, lambda _: {})
    incumbent, far = Config(1, 16), Config(1, 1)
    assert learned.rules_out(far, {incumbent: 30.0}, 30.3)
    roof = {incumbent: 100.0, far: 1000.0}
    assert not learned.at(roof).rules_out(far, {incumbent: 30.0}, 30.3)


def test_roofline_without_padding_for_vllm_and_active_experts_for_a_mixture() -> None:
    from infpop.manifest import load_manifest
    from test_hpo import REPO

    models = {m.name: m.architecture for m in load_manifest(REPO / "manifests" / "paper.yaml").manifest.models}
    a100 = gpu("a100")
    uneven = Workload((10,) * 99 + (1000,), 5)
    # One long prompt pads a whole HF batch; vLLM pays only for its own tokens.
    a7 = models["Codellama-7b-hf"]
    assert roofline(a7, "vllm", a100, 1, 100, uneven) > 3 * roofline(a7, "hf", a100, 1, 100, uneven)
    # Mixtral at batch 1 reads 2 of its 8 experts per token: well above a dense 47B model's bound.
    mixtral = models["Mixtral-8x7b"]
    one = Workload((100,), 5)
    dense_equivalent = a100.bandwidth_gbs * 1e9 * 4 / (mixtral.params * 2)
    assert roofline(mixtral, "vllm", a100, 4, 1, one) > 1.5 * dense_equivalent
    assert math.isfinite(roofline(mixtral, "hf", a100, 1, 1, one))
