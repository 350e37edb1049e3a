"""Decoding: the project's own loop from a prompt to new text, one step at a time.

At each step the model gives logits for the next token; the penalties (repetition,
presence, frequency, DRY, no-repeat n-gram) lower or remove tokens; when sampling, the
sampler chain (:mod:`.samplers`, in the order the settings give) shapes the distribution;
then a token is picked: the most likely one (greedy) or a draw (sampling), by
:class:`~.choose.TokenChooser`. Beam search lives in :mod:`.beam`, speculative decoding in
:mod:`.speculative`; the records all three yield in :mod:`.records`.

:func:`stream` yields one :class:`StepRecord` per generated token (the chosen token, its
probability, the top candidates with what each stage did to them) and finally one
:class:`GenerationResult`; :func:`generate` collects it. Greedy and beam search follow
``transformers`` ``generate`` token for token; temperature 0 means greedy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

from llm_playground.core.errors import UserError
from llm_playground.generation.choose import TokenChooser, decode_text, eos_ids
from llm_playground.generation.config import (
    COMPARED_STRATEGIES,
    MAX_PROMPT_CHARS,
    DecodingConfig,
    penalty_processors,
    sampler_stages,
)
from llm_playground.generation.records import GenerationResult, StepRecord, shown_token

# The records live in .records; Lab 6's pages read shown_token from here too.
__all__ = [
    "DecodingConfig",
    "GenerationResult",
    "StepRecord",
    "compare_strategies",
    "decode_simple",
    "generate",
    "has_chat_template",
    "iter_strategies",
    "prepare",
    "prompt_ids",
    "shown_token",
    "stream",
]


# --- prompts ----------------------------------------------------------------------------


def has_chat_template(loaded) -> bool:
    return bool(getattr(loaded.tokenizer, "chat_template", None)) and bool(
        getattr(loaded.info, "chat", False)
    )


def prompt_ids(loaded, prompt: str, chat_template: bool | None = None) -> list[int]:
    """Token ids of the prompt: wrapped in the chat template (with the assistant's turn opened)
    when asked, or by default when the model is a chat model with a template; raw text otherwise."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UserError(
            f"the prompt is {len(prompt):,} characters long: the limit is {MAX_PROMPT_CHARS:,}"
        )
    tok = loaded.tokenizer
    use_chat = has_chat_template(loaded) if chat_template is None else bool(chat_template)
    if use_chat:
        if not getattr(tok, "chat_template", None):
            raise UserError(
                f"model '{loaded.info.name}' has no chat template: feed the prompt as raw text"
            )
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return list(tok(text, add_special_tokens=False)["input_ids"])
    return list(tok(prompt)["input_ids"])


def check_length(loaded, n_prompt: int, config: DecodingConfig) -> None:
    limit = loaded.context_length
    if n_prompt + config.max_new_tokens > limit:
        raise UserError(
            f"the prompt ({n_prompt} tokens) plus {config.max_new_tokens} new tokens is more "
            f"than the model's context of {limit} tokens: ask for at most "
            f"{max(limit - n_prompt, 0)} new tokens"
        )


def prepare(
    loaded, prompt: str, config: DecodingConfig, chat_template: bool | None = None
) -> list[int]:
    """The prompt's token ids, after checking that the request fits (raises :class:`UserError`)."""
    ids = prompt_ids(loaded, prompt, chat_template)
    check_length(loaded, len(ids), config)
    return ids


# --- the loop ---------------------------------------------------------------------------


def stream(
    loaded,
    prompt: str,
    config: DecodingConfig,
    chat_template: bool | None = None,
    candidates: int = 0,
    stop_event=None,
    *,
    use_cache: bool = True,
    draft=None,
) -> Iterator[StepRecord | GenerationResult]:
    """Generate step by step: yields one :class:`StepRecord` per step, then the
    :class:`GenerationResult`. ``candidates`` K > 0 records the K most likely tokens of each
    step. ``stop_event`` (a ``threading.Event``) is checked between steps. ``use_cache=False``
    recomputes the whole prefix each step (same tokens, slower: for comparison). ``draft``:
    the loaded draft model for ``speculative="draft"``."""
    if not isinstance(config, DecodingConfig):
        raise UserError("the decoding settings must be a DecodingConfig")
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 0:
        raise UserError(f"candidates must be a whole number, 0 or more, got {candidates!r}")
    ids = prepare(loaded, prompt, config, chat_template)
    if config.effective_strategy == "beam":
        from llm_playground.generation.beam import beam_stream

        yield from beam_stream(loaded, ids, config, candidates, stop_event, use_cache)
    elif config.speculative:
        from llm_playground.generation.speculative import speculative_stream

        yield from speculative_stream(loaded, ids, config, candidates, stop_event, draft)
    else:
        yield from _single_stream(loaded, ids, config, candidates, stop_event, use_cache)


def _single_stream(
    loaded, prompt: list[int], config: DecodingConfig, candidates: int, stop_event, use_cache: bool
) -> Iterator[StepRecord | GenerationResult]:
    """Greedy or sampling: one forward pass, one token, per step."""
    import torch

    from llm_playground.generation.runner import make_runner

    tokenizer = loaded.tokenizer
    chooser = TokenChooser(loaded, config, candidates)
    end_of_text = set(eos_ids(loaded))
    runner = make_runner(loaded.model, len(prompt) + config.max_new_tokens, use_cache)
    context = list(prompt)  # the prompt and every token generated so far
    new_ids: list[int] = []
    steps: list[StepRecord] = []
    finish = "length"
    start = time.perf_counter()
    with torch.inference_mode():
        # the first forward pass reads the whole prompt and fills the cache; only its last
        # position predicts the next token: (prompt length, vocab) -> (vocab,)
        logits = runner.forward(prompt)[-1]
        for index in range(config.max_new_tokens):
            if stop_event is not None and stop_event.is_set():
                finish = "stopped"
                break
            # score the next position, pick a token, record what happened
            scored = chooser.score(context, logits)
            next_id = chooser.pick(scored)
            context.append(next_id)
            new_ids.append(next_id)
            record = chooser.record(scored, next_id, index, decode_text(tokenizer, new_ids))
            steps.append(record)
            yield record
            if next_id in end_of_text:
                finish = "eos"
                break
            # feed the new token alone: the cache holds every earlier key and value, so a
            # step costs one position, not the whole text. (1, vocab) -> (vocab,)
            if index + 1 < config.max_new_tokens:
                logits = runner.forward([next_id])[-1]
    elapsed = time.perf_counter() - start
    yield GenerationResult(
        text=decode_text(tokenizer, new_ids),
        ids=new_ids,
        new_tokens=len(new_ids),
        time_s=elapsed,
        tokens_per_s=len(new_ids) / elapsed if elapsed > 0 else 0.0,
        steps=steps,
        strategy=config.effective_strategy,
        prompt_tokens=len(prompt),
        stopped=finish == "stopped",
        finish_reason=finish,
        forward_passes=len(new_ids),
    )


def generate(
    loaded,
    prompt: str,
    config: DecodingConfig,
    chat_template: bool | None = None,
    candidates: int = 0,
    stop_event=None,
    *,
    use_cache: bool = True,
    draft=None,
) -> GenerationResult:
    """Generate with the project's loop; the result holds the new text only."""
    result = None
    for item in stream(
        loaded,
        prompt,
        config,
        chat_template,
        candidates,
        stop_event,
        use_cache=use_cache,
        draft=draft,
    ):
        if isinstance(item, GenerationResult):
            result = item
    assert result is not None
    return result


def iter_strategies(
    loaded,
    prompt: str,
    base_config: DecodingConfig,
    chat_template: bool | None = None,
    stop_event=None,
) -> Iterator[GenerationResult]:
    """Each strategy (greedy, beam, top-k, top-p) in turn with the user's other settings,
    yielding each result as soon as it is done; a set ``stop_event`` ends it between steps."""
    for strategy in COMPARED_STRATEGIES:
        if stop_event is not None and stop_event.is_set():
            return
        settings = replace(
            base_config,
            strategy=strategy,
            top_k=base_config.top_k or 50,
            top_p=base_config.top_p or 0.9,
            speculative=None,
        )
        yield generate(loaded, prompt, settings, chat_template, stop_event=stop_event)


def compare_strategies(
    loaded,
    prompt: str,
    base_config: DecodingConfig,
    chat_template: bool | None = None,
    stop_event=None,
) -> list[GenerationResult]:
    """One result per strategy (greedy, beam, top-k, top-p) with the user's other settings."""
    return list(iter_strategies(loaded, prompt, base_config, chat_template, stop_event))


# --- the loop as a learner reads it -----------------------------------------------------


def decode_simple(model, ids: list[int], config: DecodingConfig, steps: int) -> list[int]:
    """Lab 3's decoding loop top to bottom: logits, penalties, temperature, filters, sample,
    append. Returns the `steps` new token ids after the prompt `ids`.

    `model` is a `transformers` causal LM. The tokens equal generate()'s (tested,
    greedy and seeded sampling) with the samplers in their default order, temperature first.
    The fast path keeps the keys and values of earlier tokens (a KV cache) instead of
    reading the whole text again at every step, stops at the end-of-text token, lets the
    samplers' order change, and records what every stage did for the step-by-step view.
    """
    import torch

    penalties = penalty_processors(config)  # repetition, presence/frequency, no-repeat n-gram
    # the draw and XTC's coin come from generators seeded as the fast path seeds them
    generator = torch.Generator().manual_seed(config.seed or 0)
    xtc_coin = torch.Generator().manual_seed((config.seed or 0) + 1_000_003)
    filters = [s for s in sampler_stages(config, xtc_coin) if s.name != "temperature"]
    context = torch.tensor([ids])  # (1, T)
    for _ in range(steps):
        # 1. logits: the model's score for every token of the vocabulary, at the next position
        with torch.no_grad():
            logits = model(context).logits[:, -1, :].float()  # (1, T, vocab) -> (1, vocab)
        # 2. penalties lower (or remove) tokens that the text has already used
        logits = penalties(context, logits)
        if config.samples:
            # 3. temperature: below 1 sharpens the distribution, above 1 flattens it
            logits = logits / config.temperature
            # 4. filters set the scores of the tokens they cut to -inf (top-k, top-p, min-p...)
            for stage in filters:
                logits = stage(context, logits)
            # 5. sample: draw a token from the softmax of what is left
            next_id = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)  # (1, 1)
        else:
            next_id = logits.argmax(dim=-1, keepdim=True)  # greedy: the most likely token
        # 6. append it to the text: the next step reads it too
        context = torch.cat([context, next_id], dim=1)  # (1, T) -> (1, T + 1)
    return context[0, len(ids) :].tolist()
