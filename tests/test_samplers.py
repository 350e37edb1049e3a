"""The sampler chain: parity with transformers' warpers, known answers, order and attribution."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    MinPLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from llm_playground.core.errors import UserError
from llm_playground.generation.config import DecodingConfig, sampler_stages
from llm_playground.generation.penalties import DRY, PENALTY_SETTINGS, PresenceFrequencyPenalty
from llm_playground.generation.samplers import (
    CHAIN_SETTINGS,
    LLAMA_CPP_ORDER,
    SAMPLER_CLASSES,
    SAMPLER_STAGES,
    TRANSFORMERS_ORDER,
    XTC,
    Epsilon,
    Eta,
    MinP,
    ProcessorList,
    Temperature,
    TopK,
    TopNSigma,
    TopP,
    TypicalP,
    attribute,
    parse_order,
)

IDS = torch.zeros((1, 1), dtype=torch.long)
logit_rows = st.lists(st.floats(-15, 15, allow_nan=False, width=32), min_size=2, max_size=60)


def kept(scores) -> list[bool]:
    return torch.isfinite(scores).flatten().tolist()


@settings(max_examples=150, deadline=None)
@given(
    row=logit_rows,
    min_p=st.floats(0.0, 1.0),
    mass=st.floats(0.01, 0.99),
    epsilon=st.floats(1e-4, 0.9),
    temperature=st.floats(0.1, 3.0),
)
def test_kept_sets_equal_transformers_warpers(row, min_p, mass, epsilon, temperature):
    """Over many random distributions (and after a temperature), the same tokens survive."""
    for scores in (torch.tensor([row]), torch.tensor([row]) / temperature):
        pairs = [
            (MinP(min_p), MinPLogitsWarper(min_p)),
            (TypicalP(mass), TypicalLogitsWarper(mass)),
            (Epsilon(epsilon), EpsilonLogitsWarper(epsilon)),
            (Eta(epsilon), EtaLogitsWarper(epsilon)),
        ]
        for ours, theirs in pairs:
            assert kept(ours(IDS, scores)) == kept(theirs(IDS, scores.clone())), ours


def test_kept_sets_on_ties_and_single_candidates():
    equal = torch.zeros((1, 8))
    one = torch.tensor([[3.0]])
    for scores in (equal, one):
        for ours, theirs in (
            (MinP(0.5), MinPLogitsWarper(0.5)),
            (TypicalP(0.3), TypicalLogitsWarper(0.3)),
            (Epsilon(0.5), EpsilonLogitsWarper(0.5)),
            (Eta(0.5), EtaLogitsWarper(0.5)),
        ):
            assert kept(ours(IDS, scores)) == kept(theirs(IDS, scores.clone()))
    # all equal: min-p keeps everything (every p equals p_max)
    assert all(kept(MinP(0.9)(IDS, equal)))


@pytest.mark.parametrize(
    "make",
    [
        lambda: MinP(-0.1),
        lambda: MinP(1.5),
        lambda: TypicalP(0),
        lambda: TypicalP(float("nan")),
        lambda: Epsilon(0),
        lambda: Eta(1.0 + 1e-9),
        lambda: TopNSigma(-1),
        lambda: XTC(1.5, 0.1),
        lambda: XTC(0.5, -0.1),
        lambda: DRY(-1),
        lambda: DRY(1, base=0.5),
        lambda: DRY(1, allowed_length=0),
        lambda: PresenceFrequencyPenalty(presence=3),
        lambda: PresenceFrequencyPenalty(frequency=float("inf")),
    ],
)
def test_stages_validate_on_construction(make):
    with pytest.raises(UserError):
        make()


def test_every_described_setting_is_a_config_field_with_the_off_default():
    """A stage's settings name DecodingConfig fields whose defaults are the stage's own (its
    first setting's default leaves it out), so a new stage cannot forget its field."""
    defaults = DecodingConfig()
    settings = (*CHAIN_SETTINGS, *PENALTY_SETTINGS)
    assert len({s.flag for s in settings}) == len(settings)
    for setting in settings:
        assert getattr(defaults, setting.field) == setting.default, setting.field
    assert defaults.active_samplers() == ()  # greedy: no stage
    sampled = DecodingConfig(strategy="sample", top_k=None, top_p=None)
    assert sampled.active_samplers() == ()  # every further stage off by default
    assert set(TRANSFORMERS_ORDER) == set(LLAMA_CPP_ORDER) == set(SAMPLER_STAGES)
    assert all(stage.summary for stage in SAMPLER_CLASSES)


@pytest.mark.parametrize("setting", CHAIN_SETTINGS + PENALTY_SETTINGS, ids=lambda s: s.field)
def test_each_setting_checks_its_range_in_the_config(setting):
    """Out of range by the description: the config refuses it with the setting's name."""
    bad = setting.low if setting.open_low else setting.low - 1
    with pytest.raises(UserError, match=setting.name):
        DecodingConfig(strategy="sample", **{setting.field: bad})
    if setting.high is not None:
        with pytest.raises(UserError, match=setting.name):
            DecodingConfig(strategy="sample", **{setting.field: setting.high + 1})
    stage = DecodingConfig(strategy="sample", **{setting.field: setting.default})
    assert getattr(stage, setting.field) == setting.default


def test_stage_messages_name_the_setting():
    with pytest.raises(UserError, match="min-p"):
        MinP(2)
    with pytest.raises(UserError, match="DRY base"):
        DRY(1, base=0.2)
    with pytest.raises(UserError, match="unknown sampler stage 'topk'"):
        parse_order("topk,top_p")
    with pytest.raises(UserError, match="more than once"):
        parse_order("top_k,top_k")


def test_top_n_sigma_known_answers():
    # logits 4, 3, 0, -inf: mean 7/3 and population σ of (4, 3, 0) = 1.6997...
    scores = torch.tensor([[4.0, 3.0, 0.0, float("-inf")]])
    sigma = math.sqrt(((4 - 7 / 3) ** 2 + (3 - 7 / 3) ** 2 + (0 - 7 / 3) ** 2) / 3)
    assert 4 - 1.0 * sigma < 3  # n = 1 keeps 4 and 3
    assert kept(TopNSigma(1.0)(IDS, scores)) == [True, True, False, False]
    assert kept(TopNSigma(0.5)(IDS, scores)) == [True, False, False, False]
    assert kept(TopNSigma(3.0)(IDS, scores)) == [True, True, True, False]
    # edge cases: all equal (σ 0) keeps all; one candidate; 0 is off; the input is untouched
    assert all(kept(TopNSigma(1.0)(IDS, torch.zeros((1, 5)))))
    assert kept(TopNSigma(1.0)(IDS, torch.tensor([[2.0]]))) == [True]
    assert torch.equal(TopNSigma(0)(IDS, scores), scores)
    before = scores.clone()
    TopNSigma(1.0)(IDS, scores)
    assert torch.equal(before, scores)


def test_xtc_known_answers():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    scores = probs.log()
    # threshold 0.1: 0.5, 0.3 and 0.15 reach it; all but the least likely of them go
    assert kept(XTC(1.0, 0.1)(IDS, scores)) == [False, False, True, True]
    # threshold 0.35: only one token reaches it, nothing happens
    assert kept(XTC(1.0, 0.35)(IDS, scores)) == [True] * 4
    # threshold above 0.5: a no-op by definition; probability 0: a no-op
    assert torch.equal(XTC(1.0, 0.6)(IDS, scores), scores)
    assert torch.equal(XTC(0.0, 0.1)(IDS, scores), scores)
    # all equal at 0.25 each (>= 0.2): only one (the "least likely" among ties) survives
    assert sum(kept(XTC(1.0, 0.2)(IDS, torch.zeros((1, 4))))) == 1
    # one candidate: nothing to exclude
    assert kept(XTC(1.0, 0.1)(IDS, torch.tensor([[1.0]]))) == [True]
    # -inf logits are never brought back
    cut = torch.tensor([[0.0, 0.0, float("-inf")]])
    survivors = kept(XTC(1.0, 0.1)(IDS, cut))
    assert sum(survivors) == 1 and not survivors[2]
    # the coin: probability 0.5 with a seeded generator acts on some steps, not all
    generator = torch.Generator().manual_seed(0)
    stage = XTC(0.5, 0.1, generator)
    acted = [not torch.equal(stage(IDS, scores), scores) for _ in range(200)]
    assert 60 < sum(acted) < 140


def test_dry_known_answers():
    # ... 1 2 3 | 9 | 1 2 3: the text ends with "1 2 3", which was followed by 9 before
    tokens = [1, 2, 3, 9, 1, 2, 3]
    dry = DRY(multiplier=0.8, base=1.75, allowed_length=2)
    assert dry.match_lengths(tokens) == {9: 3}
    out = dry(torch.tensor([tokens]), torch.zeros((1, 12)))
    expected = torch.zeros(12)
    expected[9] = -0.8 * 1.75 ** (3 - 2)
    assert torch.allclose(out[0], expected)
    # a match shorter than the allowed length is not penalised
    assert torch.equal(
        DRY(0.8, allowed_length=4)(torch.tensor([tokens]), torch.zeros((1, 12))),
        torch.zeros((1, 12)),
    )
    # a sequence breaker (token 2) cuts the match: "3" alone matches, length 1 < 2
    broken = DRY(0.8, allowed_length=2, breakers=[2])
    assert broken.match_lengths(tokens) == {9: 1}
    assert torch.equal(broken(torch.tensor([tokens]), torch.zeros((1, 12))), torch.zeros((1, 12)))
    # the longest match per token counts; multiplier 0 is off; one token has no history
    assert DRY(1.0).match_lengths([5, 6, 7, 5, 6, 8, 5, 6]) == {7: 2, 8: 2}
    assert DRY(1.0).match_lengths([4, 4, 4]) == {4: 2}
    assert torch.equal(DRY(0.0)(torch.tensor([tokens]), torch.zeros((1, 12))), torch.zeros((1, 12)))
    assert DRY(1.0).match_lengths([7]) == {}
    # -inf logits stay -inf
    minus = torch.full((1, 12), float("-inf"))
    assert torch.isinf(dry(torch.tensor([tokens]), minus)).all()


def test_presence_and_frequency_penalties_known_answer():
    ids = torch.tensor([[3, 3, 3, 1]])
    out = PresenceFrequencyPenalty(presence=0.5, frequency=0.25)(ids, torch.zeros((1, 5)))
    assert out[0].tolist() == [0.0, -0.75, 0.0, -1.25, 0.0]
    # only the last n tokens count
    assert PresenceFrequencyPenalty(presence=1.0, last_n=1)(ids, torch.zeros((1, 5)))[
        0
    ].tolist() == [
        0.0,
        -1.0,
        0.0,
        0.0,
        0.0,
    ]


def test_temperature_zero_is_greedy_and_stages_refuse_it():
    assert DecodingConfig("sample", temperature=0, min_p=0.1).effective_strategy == "greedy"
    with pytest.raises(UserError, match="temperature"):
        Temperature(0)


def test_order_changes_the_result_and_attribution_names_the_stage():
    # probabilities 0.4, 0.35, 0.25: top-p 0.5 keeps two; top-k 1 keeps one.
    scores = torch.tensor([[0.4, 0.35, 0.25]]).log()
    # top-p then top-k: top-p cuts the third, then top-k the second
    first = attribute([TopP(0.5), TopK(1)], IDS, scores)
    assert first.removed_by == {2: "top_p", 1: "top_k"}
    # a case where the order changes what survives: temperature before or after top-p
    sharp = [Temperature(0.2), TopP(0.6)]
    flat = [TopP(0.6), Temperature(0.2)]
    assert kept(ProcessorList(sharp)(IDS, scores)) == [True, False, False]
    assert kept(ProcessorList(flat)(IDS, scores)) == [True, True, False]
    # top-k then top-p differs from top-p then top-k when top-p renormalises over survivors
    scores = torch.tensor([[0.3, 0.3, 0.2, 0.2]]).log()
    k_then_p = ProcessorList([TopK(2), TopP(0.4)])(IDS, scores)  # p sees 0.5, 0.5: keeps one
    p_then_k = ProcessorList([TopP(0.4), TopK(2)])(IDS, scores)  # p keeps 0.3+0.3; k keeps both
    assert kept(k_then_p) != kept(p_then_k)
    attribution = attribute([TopK(2), TopP(0.4)], IDS, scores)
    assert attribution.removed_by[2] == "top_k" and attribution.removed_by[3] == "top_k"
    assert sum(attribution.removed_by.get(i) == "top_p" for i in (0, 1)) == 1
    assert attribution.kept == (2, 1)
    # the distribution after each stage sums to one over the survivors
    for probs in attribution.probs:
        assert math.isclose(float(probs.sum()), 1.0, rel_tol=1e-6)


def test_attribution_reports_penalties_as_lowering():
    ids = torch.tensor([[1, 2, 1, 2, 1]])
    attribution = attribute(
        [DRY(1.0, allowed_length=1), MinP(0.5)], ids, torch.tensor([[0.0, 0.5, 0.4, 0.0]])
    )
    assert attribution.lowered_by[2] == ("dry",)
    assert attribution.removed_by[2] == "min_p"


def test_config_builds_the_chain_in_its_order():
    cfg = DecodingConfig("sample", temperature=0.7, top_k=40, top_p=0.95, min_p=0.05)
    assert [s.name for s in sampler_stages(cfg)] == ["temperature", "top_k", "top_p", "min_p"]
    cfg = DecodingConfig(
        "sample", temperature=0.7, top_k=40, top_p=0.95, min_p=0.05, sampler_order=LLAMA_CPP_ORDER
    )
    assert [s.name for s in sampler_stages(cfg)] == ["top_k", "top_p", "min_p", "temperature"]
    # "sample" runs only what is set; the classic strategies keep their one filter
    assert DecodingConfig("sample", top_k=None, top_p=None, min_p=0.1).active_samplers() == (
        "min_p",
    )
    assert DecodingConfig("top-k", top_k=5).active_samplers() == ("top_k",)
    assert parse_order("temperature") == ("temperature",) + tuple(
        n for n in TRANSFORMERS_ORDER if n != "temperature"
    )
    with pytest.raises(UserError, match="max new tokens must be at most"):
        DecodingConfig(max_new_tokens=10**6)


@pytest.fixture(scope="module")
def smollm():
    from llm_playground.generation.registry import load_model

    return load_model("smollm2-135m-instruct")


@pytest.mark.slow
def test_kept_sets_equal_transformers_on_smollm2_steps(smollm):
    """On real next-token distributions of SmolLM2 over many steps, the same tokens survive."""
    from llm_playground.generation.decoding import prompt_ids

    ids = prompt_ids(smollm, "Tell me a short story about a robot who learns to paint.")
    with torch.inference_mode():
        out = smollm.model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False)
        logits = smollm.model(out).logits[0, len(ids) - 1 :].float()
    for row in logits:
        scores = row[None] / 0.8
        for ours, theirs in (
            (MinP(0.05), MinPLogitsWarper(0.05)),
            (TypicalP(0.9), TypicalLogitsWarper(0.9)),
            (Epsilon(3e-4), EpsilonLogitsWarper(3e-4)),
            (Eta(3e-4), EtaLogitsWarper(3e-4)),
            (TopK(40), TopKLogitsWarper(40)),
            (TopP(0.95), TopPLogitsWarper(0.95)),
        ):
            assert kept(ours(IDS, scores)) == kept(theirs(IDS, scores.clone()))
