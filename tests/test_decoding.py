"""Decoding: processors against Hugging Face's, and the project's loop against HF generate."""

from __future__ import annotations

import math
import threading
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from llm_playground.core.errors import UserError
from llm_playground.generation.decoding import (
    DecodingConfig,
    GenerationResult,
    StepRecord,
    compare_strategies,
    generate,
    prompt_ids,
    stream,
)
from llm_playground.generation.penalties import NoRepeatNGram, RepetitionPenalty
from llm_playground.generation.samplers import ProcessorList, Temperature, TopK, TopP

MODEL = "smollm2-135m-instruct"
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Give three tips for learning to cook.",
]


# --- configuration and processors -------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"top_p": 0.0},
        {"top_p": 1.01},
        {"top_p": -0.1},
        {"top_k": 0},
        {"top_k": -3},
        {"temperature": -0.5},
        {"num_beams": 0},
        {"max_new_tokens": 0},
        {"temperature": float("nan")},
        {"top_p": float("nan")},
        {"strategy": "typical"},
        {"repetition_penalty": 0.0},
        {"no_repeat_ngram_size": -1},
        {"seed": -1},
        {"length_penalty": float("inf")},
    ],
)
def test_bad_settings_raise_user_error(kwargs):
    with pytest.raises(UserError):
        DecodingConfig(**kwargs)


def test_config_is_frozen_and_temperature_zero_is_greedy():
    cfg = DecodingConfig(strategy="top-p", temperature=0)
    assert cfg.effective_strategy == "greedy" and not cfg.samples
    with pytest.raises(AttributeError):
        cfg.top_k = 3  # type: ignore[misc]
    assert DecodingConfig(top_p=1.0).top_p == 1.0  # 1 is allowed (no filtering)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Temperature(0),
        lambda: Temperature(-1),
        lambda: Temperature(float("nan")),
        lambda: TopK(0),
        lambda: TopK(2.5),
        lambda: TopP(0),
        lambda: TopP(1.2),
        lambda: TopP(float("nan")),
        lambda: RepetitionPenalty(0),
        lambda: NoRepeatNGram(0),
        lambda: TopK(3, min_tokens_to_keep=0),
    ],
)
def test_processors_validate_on_construction(make):
    with pytest.raises(UserError):
        make()


logit_rows = st.lists(st.floats(-20, 20, allow_nan=False, width=32), min_size=6, max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(logit_rows, min_size=1, max_size=3).filter(
        lambda r: len({len(x) for x in r}) == 1
    ),
    temperature=st.floats(0.05, 3.0),
    top_k=st.integers(1, 50),
    top_p=st.floats(0.01, 1.0),
)
def test_filters_match_hugging_face_warpers(rows, temperature, top_k, top_p):
    scores = torch.tensor(rows, dtype=torch.float32)
    ids = torch.zeros((scores.shape[0], 1), dtype=torch.long)
    ours = ProcessorList([Temperature(temperature), TopK(top_k), TopP(top_p)])(ids, scores)
    theirs = LogitsProcessorList(
        [TemperatureLogitsWarper(temperature), TopKLogitsWarper(top_k), TopPLogitsWarper(top_p)]
    )(ids, scores.clone())
    assert torch.equal(ours, theirs)
    for mine, ref in (
        (TopK(top_k), TopKLogitsWarper(top_k)),
        (TopP(top_p), TopPLogitsWarper(top_p)),
    ):
        assert torch.equal(mine(ids, scores), ref(ids, scores.clone()))


@settings(max_examples=40, deadline=None)
@given(
    seq=st.lists(st.integers(0, 7), min_size=1, max_size=25),
    n=st.integers(1, 4),
    penalty=st.floats(0.5, 3.0),
)
def test_penalties_match_hugging_face(seq, n, penalty):
    ids = torch.tensor([seq])
    scores = torch.linspace(-3, 3, 8).view(1, 8)
    assert torch.equal(
        RepetitionPenalty(penalty)(ids, scores),
        RepetitionPenaltyLogitsProcessor(penalty)(ids, scores.clone()),
    )
    assert torch.equal(
        NoRepeatNGram(n)(ids, scores), NoRepeatNGramLogitsProcessor(n)(ids, scores.clone())
    )


def test_order_temperature_then_top_k_then_top_p_matters():
    # probabilities 0.5, 0.3, 0.2 at T=1: top-p 0.75 keeps two tokens; at T=0.25 the first
    # token alone carries more than 0.75 of the mass, so temperature must come first.
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    ids = torch.zeros((1, 1), dtype=torch.long)
    assert torch.isfinite(TopP(0.75)(ids, scores)).sum() == 2
    warped = ProcessorList([Temperature(0.25), TopK(2), TopP(0.75)])(ids, scores)
    assert torch.isfinite(warped).tolist() == [[True, False, False]]
    # top-k before top-p: top-p then only sees the k survivors
    assert torch.isfinite(ProcessorList([TopK(1), TopP(1.0)])(ids, scores)).sum() == 1


def test_no_repeat_ngram_known_answer():
    # the bigram (5, 6) occurred: after another 5, token 6 is banned, nothing else
    ids = torch.tensor([[5, 6, 7, 5]])
    out = NoRepeatNGram(2)(ids, torch.zeros((1, 10)))
    assert torch.isinf(out[0]).nonzero().flatten().tolist() == [6]


# --- the loop on SmolLM2 ----------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded():
    from llm_playground.generation.registry import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared; one thread each runs steadier
    yield load_model(MODEL)
    torch.set_num_threads(threads)


def _hf(loaded, prompt, max_new_tokens, **kwargs):
    ids = prompt_ids(loaded, prompt)
    with torch.inference_mode():
        out = loaded.model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            **kwargs,
        )
    return out[0, len(ids) :].tolist()


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_greedy_equals_hf_generate(loaded, prompt):
    result = generate(loaded, prompt, DecodingConfig("greedy", max_new_tokens=12))
    assert result.ids == _hf(loaded, prompt, 12, do_sample=False)
    assert result.new_tokens == len(result.ids) == len(result.steps)
    assert result.text == loaded.tokenizer.decode(result.ids, skip_special_tokens=True)


def test_greedy_with_repetition_penalty_equals_hf(loaded):
    cfg = DecodingConfig("greedy", max_new_tokens=10, repetition_penalty=1.4)
    assert generate(loaded, PROMPTS[2], cfg).ids == _hf(
        loaded, PROMPTS[2], 10, do_sample=False, repetition_penalty=1.4
    )


@pytest.mark.parametrize(
    ("prompt", "beams", "ngram", "penalty"),
    [
        (PROMPTS[0], 3, 0, 1.0),
        (PROMPTS[1], 3, 2, 0.5),
    ],
)
def test_beam_search_equals_hf_generate(loaded, prompt, beams, ngram, penalty):
    cfg = DecodingConfig(
        "beam",
        num_beams=beams,
        no_repeat_ngram_size=ngram,
        length_penalty=penalty,
        max_new_tokens=10,
    )
    result = generate(loaded, prompt, cfg)
    assert result.ids == _hf(
        loaded,
        prompt,
        10,
        do_sample=False,
        num_beams=beams,
        no_repeat_ngram_size=ngram,
        length_penalty=penalty,
    )
    assert result.beams and list(result.beams[0].ids) == result.ids  # the winner comes first
    assert result.beam_steps and all(len(b) <= beams for b in result.beam_steps)


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize(("beams", "ngram", "penalty"), [(4, 0, 1.0), (2, 3, 2.0), (4, 2, 0.0)])
def test_beam_search_equals_hf_generate_more(loaded, prompt, beams, ngram, penalty):
    cfg = DecodingConfig(
        "beam",
        num_beams=beams,
        no_repeat_ngram_size=ngram,
        length_penalty=penalty,
        max_new_tokens=40,
    )
    assert generate(loaded, prompt, cfg).ids == _hf(
        loaded,
        prompt,
        40,
        do_sample=False,
        num_beams=beams,
        no_repeat_ngram_size=ngram,
        length_penalty=penalty,
    )


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_hf_generate_long(loaded, prompt):
    cfg = DecodingConfig("greedy", max_new_tokens=64, no_repeat_ngram_size=3)
    assert generate(loaded, prompt, cfg).ids == _hf(
        loaded, prompt, 64, do_sample=False, no_repeat_ngram_size=3
    )


@pytest.mark.parametrize(
    ("strategy", "extra"), [("top-k", {"top_k": 20}), ("top-p", {"top_p": 0.8})]
)
def test_sampling_kept_sets_equal_hf_warpers_at_each_step(loaded, strategy, extra):
    """Each step's kept set equals the one HF's own warpers give on the same logits."""
    cfg = DecodingConfig(strategy, temperature=0.7, max_new_tokens=5, seed=3, **extra)
    k = 60
    # use_cache=False forwards the whole prefix each step, so the logits below are the same bits
    records = [
        r
        for r in stream(loaded, PROMPTS[2], cfg, candidates=k, use_cache=False)
        if isinstance(r, StepRecord)
    ]
    warpers = LogitsProcessorList(
        [TemperatureLogitsWarper(0.7)]
        + ([TopKLogitsWarper(20)] if strategy == "top-k" else [TopPLogitsWarper(0.8)])
    )
    ids = prompt_ids(loaded, PROMPTS[2])
    with torch.inference_mode():
        for record in records:
            x = torch.tensor([ids])
            logits = (
                loaded.model(input_ids=x, use_cache=False, logits_to_keep=1)
                .logits[:, -1, :]
                .float()
            )
            kept = torch.isfinite(warpers(x, logits))[0]
            assert record.kept_count == int(kept.sum())
            assert [c.kept for c in record.candidates] == [
                bool(kept[c.id]) for c in record.candidates
            ]
            assert kept[record.token_id]
            ref_probs = torch.softmax(logits / 0.7, dim=-1)[0]
            assert [round(c.prob, 5) for c in record.candidates] == [
                round(float(ref_probs[c.id]), 5) for c in record.candidates
            ]
            ids.append(record.token_id)


def test_kv_cache_loop_equals_recompute_loop(loaded):
    for cfg in (
        DecodingConfig("greedy", max_new_tokens=12),
        DecodingConfig("beam", num_beams=2, max_new_tokens=5),
    ):
        cached = generate(loaded, PROMPTS[1], cfg)
        recomputed = generate(loaded, PROMPTS[1], cfg, use_cache=False)
        assert cached.ids == recomputed.ids, cfg.strategy


def test_seed_reproduces_and_temperature_zero_is_greedy(loaded):
    cfg = DecodingConfig("top-k", temperature=1.2, top_k=40, max_new_tokens=6, seed=7)
    assert generate(loaded, PROMPTS[0], cfg).ids == generate(loaded, PROMPTS[0], cfg).ids
    greedy = generate(loaded, PROMPTS[0], DecodingConfig("greedy", max_new_tokens=6))
    cold = generate(loaded, PROMPTS[0], replace(cfg, temperature=0.0))
    assert cold.ids == greedy.ids and cold.strategy == "greedy"


def test_step_records_and_candidates(loaded):
    items = list(
        stream(loaded, PROMPTS[0], DecodingConfig("greedy", max_new_tokens=6), candidates=4)
    )
    result = items[-1]
    assert isinstance(result, GenerationResult)
    steps = items[:-1]
    assert [s.token_id for s in steps] == result.ids
    for s in steps:
        assert len(s.candidates) == 4
        assert s.candidates[0].id == s.token_id and s.candidates[0].kept
        assert [c.kept for c in s.candidates[1:]] == [False] * 3
        probs = [c.prob for c in s.candidates]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5
        assert math.isclose(s.prob, s.candidates[0].prob, rel_tol=1e-5)
    assert steps[-1].text == result.text


def test_stop_event_is_honoured_between_steps(loaded):
    stop = threading.Event()
    seen = []
    for item in stream(
        loaded, PROMPTS[1], DecodingConfig("greedy", max_new_tokens=40), stop_event=stop
    ):
        if isinstance(item, StepRecord):
            seen.append(item)
            if len(seen) == 3:
                stop.set()
        else:
            result = item
    assert result.stopped and result.finish_reason == "stopped" and result.new_tokens == 3


def test_chat_template_and_raw_text(loaded):
    chat = prompt_ids(loaded, "Hello")
    raw = prompt_ids(loaded, "Hello", chat_template=False)
    text = loaded.tokenizer.decode(chat)
    assert "<|im_start|>assistant" in text and len(raw) < len(chat)
    assert loaded.tokenizer.decode(raw).strip().endswith("Hello")
    as_base = replace(loaded, info=replace(loaded.info, chat=False))
    assert prompt_ids(as_base, "Hello") == raw  # no chat model: raw text by default
    no_template = replace(loaded, tokenizer=_NoTemplate(loaded.tokenizer))
    with pytest.raises(UserError, match="no chat template"):
        prompt_ids(no_template, "Hello", chat_template=True)


class _NoTemplate:
    chat_template = None

    def __init__(self, tok):
        self._tok = tok

    def __call__(self, *a, **k):
        return self._tok(*a, **k)


def test_too_many_new_tokens_and_empty_prompt(loaded):
    with pytest.raises(UserError, match="context"):
        generate(loaded, "Hi", DecodingConfig(max_new_tokens=loaded.context_length))
    with pytest.raises(UserError, match="empty"):
        generate(loaded, "  ", DecodingConfig())


def test_compare_strategies_gives_one_result_per_strategy(loaded):
    results = compare_strategies(loaded, PROMPTS[0], DecodingConfig(max_new_tokens=4, num_beams=2))
    assert [r.strategy for r in results] == ["greedy", "beam", "top-k", "top-p"]
    assert all(0 < r.new_tokens <= 4 and r.time_s > 0 for r in results)


def test_one_beam_is_greedy(loaded):
    one = generate(loaded, PROMPTS[0], DecodingConfig("beam", num_beams=1, max_new_tokens=5))
    greedy = generate(loaded, PROMPTS[0], DecodingConfig("greedy", max_new_tokens=5))
    assert one.ids == greedy.ids and one.strategy == "greedy" and not one.beams
