"""Speculative decoding: guess several tokens cheaply, let the model check them in one pass.

A drafter proposes up to ``draft_tokens`` next tokens; the model runs once over the last
token and the whole draft, which gives its own distribution at every drafted position.
Then, position by position:

* **greedy**: a draft token is accepted while it equals the model's own argmax; at the
  first mismatch the model's token is taken instead, and the rest of the draft is dropped
  (so the text is the one plain greedy decoding writes);
* **sampling** (Leviathan et al. 2023, arXiv 2211.17192): draft token x, drawn from the
  drafter's distribution q, is accepted with probability min(1, p(x)/q(x)), p being the
  model's distribution after the sampler chain; at the first rejection a token is drawn
  from norm(max(0, p − q)). The text then follows the model's own distribution exactly.

If every draft token is accepted, the model's distribution after the last one gives one
more token for free. Two drafters:

* :class:`PromptLookup` (``transformers``' prompt-lookup decoding): find the last n tokens
  (n = 3, then 2) earlier in the prompt and the text so far, and propose the tokens that
  followed them there. It costs nothing and shines when the output copies the input
  (rewriting, summarising, code editing); no match means an ordinary step.
* :class:`DraftModel`: a smaller model with the same tokenizer proposes tokens with the
  same settings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.generation.choose import TokenChooser, decode_text, eos_ids, token_piece
from llm_playground.generation.config import DecodingConfig
from llm_playground.generation.records import GenerationResult, StepRecord


@dataclass(frozen=True)
class Draft:
    """Proposed tokens, and the distribution each was drawn from (None: chosen for sure)."""

    tokens: list[int]
    probabilities: list[Any] | None = None  # one [vocab] tensor per token


class PromptLookup:
    """Drafts by copying: the tokens that followed the latest n-gram's earliest occurrence."""

    def __init__(self, ngram_sizes: Sequence[int] = (3, 2)):
        self.ngram_sizes = tuple(ngram_sizes)

    def propose(self, context: list[int], limit: int) -> Draft:
        for size in self.ngram_sizes:
            if len(context) <= size:
                continue
            ending = context[-size:]
            # the earliest earlier place where the same n tokens occur
            for start in range(len(context) - size):
                if context[start : start + size] == ending:
                    follow = context[start + size : start + size + limit]
                    if follow:
                        return Draft(tokens=follow)
        return Draft(tokens=[])


class DraftModel:
    """Drafts with a smaller model that shares the tokenizer, using the same settings."""

    def __init__(self, draft_loaded, config: DecodingConfig, max_length: int):
        from llm_playground.generation.runner import make_runner

        self.runner = make_runner(draft_loaded.model, max_length)
        self.chooser = TokenChooser(draft_loaded, config, seed_offset=7919)
        self.sampling = config.samples

    def propose(self, context: list[int], limit: int) -> Draft:
        runner = self.runner
        # reuse the cache for the part of the context the draft model has already read
        shared = 0
        seen = runner.tokens
        while shared < min(len(seen), len(context) - 1) and seen[shared] == context[shared]:
            shared += 1
        runner.truncate(shared)
        logits = runner.forward(context[shared:])[-1]
        tokens: list[int] = []
        probabilities = []
        for step in range(limit):
            scored = self.chooser.score(context + tokens, logits)
            token = self.chooser.pick(scored)
            tokens.append(token)
            probabilities.append(self.chooser.probabilities(scored))
            if step + 1 < limit:
                logits = runner.forward([token])[-1]
        return Draft(tokens=tokens, probabilities=probabilities if self.sampling else None)


def accept_or_resample(target, draft_probs, token: int, generator) -> tuple[bool, int]:
    """The standard acceptance rule for one drafted ``token``.

    ``target`` is the model's distribution p, ``draft_probs`` the drafter's q (None: the
    drafter chose the token for sure, q is one-hot). Accept with probability
    min(1, p(x)/q(x)); else draw from norm(max(0, p − q)). Returns (accepted, token).
    """
    import torch

    q_token = 1.0 if draft_probs is None else float(draft_probs[token])
    p_token = float(target[token])
    coin = float(torch.rand((), generator=generator))
    if q_token > 0 and coin < min(1.0, p_token / q_token):
        return True, token
    if draft_probs is None:
        residual = target.clone()
        residual[token] = 0.0
    else:
        residual = (target - draft_probs).clamp(min=0.0)
    total = float(residual.sum())
    if total <= 0:  # p == q: any draw from p is right
        residual, total = target, float(target.sum())
    return False, int(torch.multinomial(residual / total, 1, generator=generator)[0])


class _Emitter:
    """Collects the generated tokens and makes their step records."""

    def __init__(self, loaded, chooser: TokenChooser, context: list[int]):
        self.tokenizer = loaded.tokenizer
        self.chooser = chooser
        self.context = context
        self.new_ids: list[int] = []
        self.steps: list[StepRecord] = []

    def emit(self, scored, token: int, forward_pass: int, source: str, rejected=()) -> StepRecord:
        self.context.append(token)
        self.new_ids.append(token)
        record = self.chooser.record(
            scored,
            token,
            len(self.steps),
            decode_text(self.tokenizer, self.new_ids),
            forward_pass=forward_pass,
            source=source,
            rejected=tuple(token_piece(self.tokenizer, t) for t in rejected),
        )
        self.steps.append(record)
        return record


def speculative_stream(
    loaded, prompt: list[int], config: DecodingConfig, candidates: int, stop_event, draft_loaded
) -> Iterator[StepRecord | GenerationResult]:
    """Speculative decoding: one step record per token (marked draft or model), then the
    result with the forward passes and the accepted draft tokens."""
    import torch

    from llm_playground.generation.runner import make_runner

    max_length = len(prompt) + config.max_new_tokens + config.draft_tokens + 1
    if config.speculative == "draft":
        if draft_loaded is None:
            raise UserError("speculative decoding with a draft model needs the draft model loaded")
        if draft_loaded.tokenizer.get_vocab() != loaded.tokenizer.get_vocab():
            raise UserError(
                f"the draft model '{draft_loaded.info.name}' does not share the tokenizer of "
                f"'{loaded.info.name}'"
            )
        drafter: Any = DraftModel(draft_loaded, config, max_length)
    else:
        drafter = PromptLookup()
    chooser = TokenChooser(loaded, config, candidates)
    end_of_text = set(eos_ids(loaded))
    runner = make_runner(loaded.model, max_length)
    emitter = _Emitter(loaded, chooser, list(prompt))
    passes = drafted = accepted_total = 0
    finish = "length"
    start = time.perf_counter()
    with torch.inference_mode():
        # the first pass reads the prompt and gives the first token, as in plain decoding
        logits = runner.forward(prompt)[-1]
        passes = 1
        scored = chooser.score(emitter.context, logits)
        yield emitter.emit(scored, chooser.pick(scored), passes, "model")
        pending = emitter.context[-1]  # the newest token, not yet read by the model
        while len(emitter.new_ids) < config.max_new_tokens and pending not in end_of_text:
            if stop_event is not None and stop_event.is_set():
                finish = "stopped"
                break
            # 1. the drafter proposes tokens (never more than the token limit allows)
            room = config.max_new_tokens - len(emitter.new_ids) - 1
            draft = drafter.propose(emitter.context, min(config.draft_tokens, room))
            drafted += len(draft.tokens)
            # 2. one pass reads the newest token and the draft: a distribution per position
            read_from = len(emitter.context) - 1
            rows = runner.forward([pending, *draft.tokens], all_logits=True)
            passes += 1
            # 3. check the draft position by position
            records, accepted = _verify(emitter, chooser, draft, rows, passes, end_of_text)
            accepted_total += accepted
            yield from records
            # 4. forget the cache past what was accepted; the last token is read next time
            runner.truncate(read_from + 1 + accepted)
            pending = emitter.context[-1]
    if finish != "stopped" and emitter.new_ids and emitter.new_ids[-1] in end_of_text:
        finish = "eos"
    elapsed = time.perf_counter() - start
    new_ids = emitter.new_ids
    yield GenerationResult(
        text=decode_text(loaded.tokenizer, new_ids),
        ids=new_ids,
        new_tokens=len(new_ids),
        time_s=elapsed,
        tokens_per_s=len(new_ids) / elapsed if elapsed > 0 else 0.0,
        steps=emitter.steps,
        strategy=config.effective_strategy,
        prompt_tokens=len(prompt),
        stopped=finish == "stopped",
        finish_reason=finish,
        speculative=config.speculative,
        forward_passes=passes,
        drafted_tokens=drafted,
        accepted_draft_tokens=accepted_total,
    )


def _verify(emitter: _Emitter, chooser: TokenChooser, draft: Draft, rows, forward_pass, end):
    """Accept the draft's longest agreeing head, then add the model's own next token."""
    records: list[StepRecord] = []
    accepted = 0
    for position, token in enumerate(draft.tokens):
        scored = chooser.score(emitter.context, rows[position])
        if chooser.sampling:
            draft_probs = draft.probabilities[position] if draft.probabilities else None
            ok, chosen = accept_or_resample(
                chooser.probabilities(scored), draft_probs, token, chooser.generator
            )
        else:
            chosen = chooser.pick(scored)
            ok = chosen == token
        if not ok:
            # the model disagrees: its token replaces the draft's, the rest is dropped
            rejected = draft.tokens[position:]
            records.append(emitter.emit(scored, chosen, forward_pass, "model", rejected))
            return records, accepted
        accepted += 1
        records.append(emitter.emit(scored, token, forward_pass, "draft"))
        if token in end:
            return records, accepted
    # every draft token was accepted: the last row gives one more token
    scored = chooser.score(emitter.context, rows[len(draft.tokens)])
    records.append(emitter.emit(scored, chooser.pick(scored), forward_pass, "model"))
    return records, accepted


def draft_models_for(target: str, paths=None) -> list[str]:
    """Available local models (offline models, Lab 2 runs) other than ``target`` whose
    tokenizer has the same vocabulary: the models that can draft for it."""
    from transformers import AutoTokenizer

    from llm_playground.generation.registry import convert_offline_model, list_models, resolve

    def vocabulary(info):
        folder = convert_offline_model(info.name, paths) if info.kind == "offline" else info.path
        if folder is None:
            return None
        try:
            return AutoTokenizer.from_pretrained(str(folder)).get_vocab()
        except (OSError, ValueError):
            return None

    try:
        wanted = vocabulary(resolve(target, paths))
    except UserError:
        return []
    if wanted is None:
        return []
    found = []
    for info in list_models(paths, include_hub=False):
        if info.name == target or not info.available or info.kind not in ("offline", "checkpoint"):
            continue
        if vocabulary(info) == wanted:
            found.append(info.name)
    return found
