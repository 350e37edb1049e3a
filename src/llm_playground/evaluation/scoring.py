"""One forward pass for every measurement of Lab 5: a :class:`Scorer` over any playground model.

Perplexity, the lm-evaluation-harness model class and the benchmarks all need the same
three things from a model: its tokenizer (text to ids, with character offsets where the
tokenizer gives them), a *prefix token* that the first real token is conditioned on
(beginning-of-text, else end-of-text, as lm-evaluation-harness does), and the log-probabilities
of the last few positions of a batch of windows. Two scorers give them:

- :class:`HFScorer` over a registry model (``transformers``: SmolLM2, Gemma 3, adapters,
  Lab 2 runs exported to Hugging Face format, hub models);
- :class:`Lab2Scorer` over a Lab 2 checkpoint read with the playground's own model code,
  so a run without a Hugging Face export is measured too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError


@dataclass
class Scorer:
    """What a measurement needs from a model (subclasses fill in the model calls)."""

    name: str
    kind: str
    context_length: int
    vocab_size: int
    prefix_id: int | None  # the token the first real token is conditioned on (None: not scored)

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
        """Token ids of ``text`` (no special tokens) and each token's character span, if known."""
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def logits(self, input_ids, n_keep: int):
        """Float32 logits of the last ``n_keep`` positions of a ``(batch, length)`` id tensor."""
        raise NotImplementedError

    @property
    def device(self):
        raise NotImplementedError

    @property
    def eos_id(self) -> int | None:
        return None

    @property
    def supports_cache(self) -> bool:
        """Whether :meth:`forward_cached` (a key/value cache across calls) is available."""
        return False


class HFScorer(Scorer):
    """A ``transformers`` causal LM with its tokenizer (a registry ``LoadedModel``)."""

    def __init__(self, loaded) -> None:
        tok = loaded.tokenizer
        prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        config = getattr(loaded.model, "config", None)
        vocab = int(getattr(config, "vocab_size", 0) or len(tok))
        super().__init__(
            name=loaded.name,
            kind=loaded.info.kind,
            context_length=int(loaded.context_length),
            vocab_size=vocab,
            prefix_id=prefix,
        )
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = tok

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
        tok = self.tokenizer
        try:
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        except (NotImplementedError, TypeError, ValueError):  # slow tokenizers have no offsets
            enc = tok(text, add_special_tokens=False, verbose=False)
            return list(enc["input_ids"]), None

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    @property
    def device(self):
        return next(self.model.parameters()).device

    def logits(self, input_ids, n_keep: int):
        model = self.model
        try:
            out = model(input_ids=input_ids, logits_to_keep=n_keep, use_cache=False)
        except TypeError:  # a model without logits_to_keep
            out = model(input_ids=input_ids, use_cache=False)
        logits = out.logits
        if logits.shape[1] != n_keep:
            logits = logits[:, -n_keep:]
        return logits.float()

    @property
    def supports_cache(self) -> bool:
        return getattr(self.model.config, "model_type", "") in ("llama", "mistral", "qwen2")

    def forward_cached(self, input_ids, cache, position_ids):
        """Logits of every position of ``input_ids`` attending to ``cache`` (updated in place)."""
        out = self.model(
            input_ids=input_ids,
            past_key_values=cache,
            position_ids=position_ids,
            use_cache=True,
        )
        return out.logits.float(), out.past_key_values


class Lab2Scorer(Scorer):
    """A Lab 2 checkpoint (the playground's GPT or bigram model) with its tokenizer."""

    def __init__(self, checkpoint, name: str) -> None:
        tok = checkpoint.tokenizer
        block = int(getattr(checkpoint.model, "config", None).block_size)
        prefix = _lab2_prefix(tok)
        super().__init__(
            name=name,
            kind="checkpoint",
            context_length=block,
            vocab_size=int(tok.vocab_size),
            prefix_id=prefix,
        )
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.tokenizer = tok

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
        ids = self.tokenizer.encode(text)
        if getattr(self.tokenizer, "kind", "") == "char":
            return ids, [(i, i + 1) for i in range(len(ids))]
        return ids, None

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids))

    @property
    def eos_id(self) -> int | None:
        return self.prefix_id

    @property
    def device(self):
        return next(self.model.parameters()).device

    def logits(self, input_ids, n_keep: int):
        out = self.model(input_ids)
        logits = out[0] if isinstance(out, tuple) else out
        return logits[:, -n_keep:].float()


def _lab2_prefix(tokenizer) -> int | None:
    """End-of-text where the tokenizer has one (GPT-2's), else the newline, else none."""
    for text in ("<|endoftext|>", "\n"):
        try:
            ids = (
                tokenizer.encode_special(text)
                if text.startswith("<|") and hasattr(tokenizer, "encode_special")
                else tokenizer.encode(text)
            )
        except Exception:  # a character the tokenizer does not have
            continue
        if len(ids) == 1:
            return int(ids[0])
    return None


def is_lab2_checkpoint(folder: Path) -> bool:
    """A Lab 2 run folder (the playground's own ``config.json``), with or without an export."""
    from llm_playground.training.checkpoints import read_meta

    try:
        read_meta(folder)
    except UserError:
        return False
    return True


def load_lab2_scorer(folder: str | Path) -> Lab2Scorer:
    """A Lab 2 run read with the playground's own model code (no Hugging Face export needed)."""
    from llm_playground.training.checkpoints import load_checkpoint

    folder = Path(folder).expanduser()
    try:
        checkpoint = load_checkpoint(folder)
    except UserError:
        raise
    except Exception as exc:  # unreadable weights
        raise UserError(f"the run in {folder} cannot be loaded: {exc}") from None
    if not hasattr(checkpoint.model, "config") or not hasattr(
        checkpoint.model.config, "block_size"
    ):
        raise UserError(f"{folder} is not a GPT run (bigram runs have no context to measure)")
    return Lab2Scorer(checkpoint, folder.name)


def scorer_for(model: Any) -> Scorer:
    """A scorer for a registry ``LoadedModel`` (or a scorer, returned as it is)."""
    if isinstance(model, Scorer):
        return model
    return HFScorer(model)
