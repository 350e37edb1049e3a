"""A Lab 2 GPT of any architecture, shaped like a ``transformers`` causal language model.

Classic GPTs are exported as Hugging Face GPT-2 folders (``hf/``) and the other labs load
those. A GPT with any of the speedrun's switches (rotary positions, QK-norm, ReLU², an
untied head, a logit soft-cap) has no GPT-2 equivalent, so Labs 3 and 5 load it here
instead and run the playground's own forward pass behind the calls they make:
``model(input_ids=..., past_key_values=..., use_cache=..., logits_to_keep=...)`` returning
``.logits`` and ``.past_key_values``, ``model.config`` with ``n_positions``, and a
``transformers`` tokenizer built from the run's own tokenizer.

The "cache" recomputes the whole prefix at every step (it keeps the token ids, not keys
and values): slower than a real KV cache, exactly the same numbers, and these models
are small.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn


class PrefixCache:
    """The token ids seen so far, one row per sequence (stands in for a KV cache)."""

    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        self.ids = self.ids.index_select(0, beam_idx.to(self.ids.device))

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.ids.shape[1])


@dataclass
class CausalLMOutput:
    logits: torch.Tensor
    past_key_values: PrefixCache | None = None


#: The context length a bigram table reports (it looks at the last token only).
BIGRAM_POSITIONS = 1 << 20


class PlaygroundCausalLM(nn.Module):
    """Wraps a :class:`~llm_playground.training.model.GPT` in the causal-LM call convention."""

    def __init__(self, gpt: nn.Module) -> None:
        super().__init__()
        self.gpt = gpt
        c = gpt.config
        self.config = SimpleNamespace(
            # a bigram table reads one token only: any prompt and answer length fits
            n_positions=c.block_size if c.kind == "gpt" else BIGRAM_POSITIONS,
            vocab_size=c.vocab_size,
            model_type="llm-playground-gpt",
            architecture=c.to_dict(),
        )
        self.generation_config = None

    def forward(
        self,
        input_ids: torch.Tensor,
        past_key_values: PrefixCache | None = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
        attention_mask: Any = None,
        **_: Any,
    ) -> CausalLMOutput:
        new = input_ids.shape[1]
        ids = (
            input_ids if past_key_values is None else torch.cat((past_key_values.ids, input_ids), 1)
        )
        window = ids[:, -self.gpt.config.block_size :] if self.gpt.config.kind == "gpt" else ids
        logits, _ = self.gpt(window)
        logits = logits[:, -new:]
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return CausalLMOutput(
            logits=logits, past_key_values=PrefixCache(ids) if use_cache else None
        )


def load_causal_lm(
    folder: str | Path,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    *,
    allow_bigram: bool = False,
) -> tuple[PlaygroundCausalLM, Any]:
    """The model and a ``transformers`` tokenizer of a Lab 2 checkpoint folder.

    A bigram table is refused unless ``allow_bigram`` (``generate --checkpoint`` decodes
    with it; the other labs list GPTs only)."""
    from llm_playground.core.errors import UserError
    from llm_playground.training.checkpoints import hf_tokenizer, load_checkpoint

    ckpt = load_checkpoint(folder, device=device)
    if ckpt.config.model.kind != "gpt" and not allow_bigram:
        raise UserError(f"{folder} holds a bigram table, which the other labs cannot use")
    tokenizer = hf_tokenizer(ckpt.tokenizer)
    if tokenizer is None:
        raise UserError(f"{folder}: its tokenizer has no transformers equivalent")
    model = PlaygroundCausalLM(ckpt.model)
    if dtype is not None:
        model.to(dtype)
    return model.eval(), tokenizer
