"""Speculative decoding and the fast runner: the same tokens as plain greedy decoding."""

from __future__ import annotations

import pytest
import torch

from llm_playground.core.errors import UserError
from llm_playground.generation.decoding import DecodingConfig, generate
from llm_playground.generation.registry import LoadedModel, ModelInfo
from llm_playground.generation.runner import (
    StaticLlamaRunner,
    at_precision,
    weight_bytes_per_token,
)
from llm_playground.generation.speculative import PromptLookup, accept_or_resample

PARAGRAPH = (
    "The old lighthouse stood on the rocky cliff above the harbour. Every night its keeper "
    "climbed the spiral stairs, lit the great lamp and watched the ships pass safely through "
    "the narrow channel."
)
REWRITE = (
    "Rewrite this paragraph with the word 'old' changed to 'ancient', keeping everything "
    "else the same:\n\n" + PARAGRAPH
)


@pytest.fixture(scope="module")
def smollm():
    from llm_playground.generation.registry import load_model

    return load_model("smollm2-135m-instruct")


def tiny_gpt2(tokenizer, seed: int, layers: int = 2) -> LoadedModel:
    """A test-only GPT-2 with random weights on SmolLM2's tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=layers, n_head=2
    )
    model = GPT2LMHeadModel(config).eval()
    info = ModelInfo(name=f"tiny-{seed}", kind="checkpoint", description="test model")
    return LoadedModel(info=info, model=model, tokenizer=tokenizer)


def test_prompt_lookup_finds_the_earliest_match_and_falls_back():
    lookup = PromptLookup()
    assert lookup.propose([1, 2, 3, 4, 5, 9, 2, 3], 2).tokens == [4, 5]
    assert lookup.propose([1, 2, 3, 4, 5, 9, 2, 3], 10).tokens == [4, 5, 9, 2, 3]
    assert lookup.propose([1, 2, 3, 4], 5).tokens == []  # no repeated n-gram
    assert lookup.propose([7], 5).tokens == []


def test_acceptance_rule_keeps_the_target_distribution():
    """Draft from q, accept by min(1, p/q), else draw from norm(max(0, p - q)): the tokens
    follow p (checked over many draws)."""
    generator = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.2, 0.6])
    counts = torch.zeros(3)
    draws = 20_000
    for _ in range(draws):
        drafted = int(torch.multinomial(q, 1, generator=generator))
        _, token = accept_or_resample(p, q, drafted, generator)
        counts[token] += 1
    assert torch.allclose(counts / draws, p, atol=0.015)
    # a certain draft (prompt lookup): accepted with probability p(x)
    counts = torch.zeros(3)
    for _ in range(5000):
        counts[accept_or_resample(p, None, 2, generator)[1]] += 1
    assert torch.allclose(counts / 5000, p, atol=0.02)


@pytest.mark.slow
def test_static_runner_gives_transformers_tokens(smollm):
    ids = smollm.tokenizer("The printing press was invented by")["input_ids"]
    with torch.inference_mode():
        reference = smollm.model.generate(
            torch.tensor([ids]), max_new_tokens=12, do_sample=False, min_new_tokens=12
        )[0, len(ids) :].tolist()
        runner = StaticLlamaRunner(smollm.model, len(ids) + 13)
        logits = runner.forward(ids)[-1]
        ours = []
        for _ in range(12):
            ours.append(int(logits.argmax()))
            logits = runner.forward([ours[-1]])[-1]
        # reading several tokens at once gives the logits of one-at-a-time reading
        runner.truncate(len(ids))
        rows = runner.forward(ours[:4], all_logits=True)
        assert rows.argmax(-1).tolist()[:3] == ours[1:4]
    assert ours == reference


def test_prompt_lookup_gives_the_greedy_tokens(smollm):
    plain = generate(smollm, REWRITE, DecodingConfig("greedy", max_new_tokens=32))
    fast = generate(
        smollm, REWRITE, DecodingConfig("greedy", max_new_tokens=32, speculative="prompt-lookup")
    )
    assert fast.ids == plain.ids
    assert fast.accepted_draft_tokens > 10
    assert fast.forward_passes < plain.forward_passes
    # each pass gives its accepted drafts and one token of its own (an accepted end of text
    # ends the run without that one)
    assert fast.forward_passes + fast.accepted_draft_tokens - fast.new_tokens in (0, 1)
    sources = [s.source for s in fast.steps]
    assert sources.count("draft") == fast.accepted_draft_tokens
    assert any(s.rejected for s in fast.steps) or fast.drafted_tokens == fast.accepted_draft_tokens
    out = fast.to_dict()
    assert out["forward_passes"] == fast.forward_passes
    assert out["accepted_draft_tokens"] == fast.accepted_draft_tokens


def test_prompt_lookup_without_repeats_falls_back_to_plain_steps(smollm):
    config = DecodingConfig("greedy", max_new_tokens=6, speculative="prompt-lookup")
    plain = generate(smollm, "Hi", DecodingConfig("greedy", max_new_tokens=6), chat_template=False)
    fast = generate(smollm, "Hi", config, chat_template=False)
    assert fast.ids == plain.ids and fast.forward_passes >= 1


def test_speculative_sampling_runs_with_the_chain(smollm):
    config = DecodingConfig(
        "sample",
        top_k=None,
        top_p=None,
        min_p=0.1,
        max_new_tokens=8,
        seed=3,
        speculative="prompt-lookup",
    )
    first = generate(smollm, REWRITE, config, candidates=3)
    again = generate(smollm, REWRITE, config, candidates=3)
    assert first.ids == again.ids  # a seed reproduces it
    assert first.new_tokens == len(first.steps) <= 8
    for step in first.steps:
        assert step.stages == ("min_p",)
        assert all(c.removed_by in (None, "min_p") for c in step.candidates)


def test_draft_model_gives_the_greedy_tokens(smollm):
    """A test-only pair on one tokenizer: the same weights (all drafts accepted) and a
    different model (most drafts rejected) both give the target's greedy tokens."""
    target = tiny_gpt2(smollm.tokenizer, seed=1)
    same = LoadedModel(info=target.info, model=target.model, tokenizer=target.tokenizer)
    other = tiny_gpt2(smollm.tokenizer, seed=2, layers=1)
    config = DecodingConfig("greedy", max_new_tokens=20, speculative="draft", draft_model="x")
    plain = generate(target, "Hello there", DecodingConfig("greedy", max_new_tokens=20))
    for draft in (same, other):
        result = generate(target, "Hello there", config, draft=draft)
        assert result.ids == plain.ids
    all_accepted = generate(target, "Hello there", config, draft=same)
    assert all_accepted.accepted_draft_tokens == all_accepted.drafted_tokens > 0
    sampled = DecodingConfig(
        "top-k", top_k=20, max_new_tokens=12, speculative="draft", draft_model="x", seed=1
    )
    assert generate(target, "Hello", sampled, draft=other).new_tokens == 12
    with pytest.raises(UserError, match="draft model"):
        generate(target, "Hello", config, draft=None)


@pytest.mark.slow
def test_int8_copy_and_bytes_per_token(smollm):
    fp32_bytes = weight_bytes_per_token(smollm.model)
    assert 500e6 < fp32_bytes < 560e6  # 134.5M parameters in float32, embedding read as head
    int8 = at_precision(smollm, "int8")
    assert int8.model is not smollm.model
    assert weight_bytes_per_token(int8.model) < fp32_bytes / 3
    config = DecodingConfig(max_new_tokens=6)
    result = generate(int8, "What is the capital of France?", config)
    assert "Paris" in result.text
    # weight-only int8 (float32 activations) keeps the logits close to float32's (about
    # 6 % relative error here; activation quantization was far off)
    assert result.ids == generate(smollm, "What is the capital of France?", config).ids
    ids = torch.tensor([smollm.tokenizer("The printing press was invented by")["input_ids"]])
    with torch.inference_mode():
        exact = smollm.model(ids).logits[0]
        rounded = int8.model(ids).logits[0]
    assert ((rounded - exact).norm(dim=-1) / exact.norm(dim=-1)).max() < 0.1
    assert rounded.argmax(-1).tolist() == exact.argmax(-1).tolist()
    with pytest.raises(UserError, match="precision"):
        at_precision(smollm, "fp8")
