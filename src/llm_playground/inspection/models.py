"""The model under inspection: any model the playground loads, with what Lab 6 needs of it.

:func:`open_model` takes what the command line and the page take: a registry name (an
offline model, a Lab 2 run, a LoRA adapter, a hub id) or a folder, and optionally a step
of a Lab 2 run's snapshots. Lab 2 GPTs (classic and speedrun) are loaded as the
playground's own :class:`~llm_playground.training.model.GPT`, whose attention has a
written-out path that keeps its weights; every other model is a ``transformers`` model,
whose eager attention keeps them. :func:`from_loaded` wraps a model some other lab has
loaded already (no second copy of the weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llm_playground.core.errors import UserError
from llm_playground.core.paths import Paths
from llm_playground.inspection.parts import hf_parts

#: The longest prompt Lab 6 inspects, in tokens (chat template included).
MAX_PROMPT_TOKENS = 128
#: The range of N for the induction probe (N random tokens, then the same N again).
PROBE_MIN, PROBE_MAX = 4, 512

Architecture = Literal["gpt", "hf"]


@dataclass(frozen=True, eq=False)
class InspectedModel:
    """A loaded model ready for inspection.

    ``model`` is a ``torch.nn.Module``: the playground's own GPT (``architecture="gpt"``)
    or a ``transformers`` causal LM, possibly a peft model with a LoRA adapter (``"hf"``).
    ``tokenizer`` is the run's own tokenizer for a GPT, a ``transformers`` one otherwise.
    Layers and heads count from 0; ``n_heads`` counts query heads (with grouped-query
    attention several query heads share one of ``n_kv_heads`` key/value heads, and each
    query head still has its own attention map).
    """

    label: str
    architecture: Architecture
    model: Any
    tokenizer: Any
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    vocab_size: int  # rows of the output head
    context_length: int
    chat: bool = False  # a chat model: prompts get its chat template by default
    bos_id: int | None = None  # the beginning-of-text token the tokenizer puts first, if any
    special_ids: frozenset[int] = frozenset()
    step: int | None = None  # the training step of a Lab 2 run (a snapshot's, or the last)
    meta: dict[str, Any] = field(default_factory=dict)  # a Lab 2 run's config.json (and losses)
    _texts: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def prefix(self) -> int:
        """How many tokens the tokenizer puts before any text: 1 with a beginning-of-text
        token, else 0."""
        return 0 if self.bos_id is None else 1

    def token_text(self, token_id: int) -> str:
        """The text of one token, special tokens written out (``<|im_start|>``)."""
        token_id = int(token_id)
        text = self._texts.get(token_id)
        if text is None:
            text = _decode_one(self.tokenizer, token_id)
            self._texts[token_id] = text
        return text

    def token_texts(self, ids) -> list[str]:
        return [self.token_text(i) for i in ids]

    def ordinary_ids(self) -> np.ndarray:
        """Every token id the tokenizer can produce that is not a special token."""
        count = min(self.vocab_size, _tokenizer_size(self.tokenizer))
        ids = np.arange(count)
        return ids[~np.isin(ids, sorted(self.special_ids))]


# --- opening models -------------------------------------------------------------------------


def open_model(
    name: str | None = None,
    checkpoint: str | Path | None = None,
    step: int | None = None,
    paths: Paths | None = None,
    device: str = "cpu",
) -> InspectedModel:
    """Load a model for inspection: a registry ``name`` or a ``checkpoint`` folder, and with
    ``step`` the snapshot of that step of a Lab 2 run. Raises UserError for an unknown
    model, a folder that holds none, or a step with no snapshot (naming the steps there are)."""
    from llm_playground.generation.registry import find_model, load_model

    if step is not None:
        from llm_playground.training.snapshots import load_snapshot

        run = _run_folder(name, checkpoint, paths)
        if run is None:
            raise UserError(f"a snapshot step needs a Lab 2 run; '{name or checkpoint}' is not one")
        return from_checkpoint(load_snapshot(run, step, device=device))
    info = find_model(name, checkpoint, paths)
    run = _run_of(info.path) if info.kind == "checkpoint" and info.path else None
    if run is not None:
        from llm_playground.training.checkpoints import load_checkpoint

        return from_checkpoint(load_checkpoint(run, device=device), label=run.name)
    return from_loaded(load_model(info, device=device, paths=paths))


def run_snapshot_steps(
    name: str | None = None, checkpoint: str | Path | None = None, paths: Paths | None = None
) -> list[int]:
    """The steps of the snapshots of a Lab 2 run (a registry name or a folder), in order;
    empty for a run without snapshots and for any other model."""
    from llm_playground.training.snapshots import snapshot_steps

    run = _run_folder(name, checkpoint, paths)
    return snapshot_steps(run) if run is not None else []


def _run_of(folder: Path) -> Path | None:
    """The Lab 2 run folder of a registry path (the run itself, or the run above ``hf/``)."""
    from llm_playground.training.checkpoints import CONFIG_FILE, FORMAT

    for candidate in (folder, folder.parent):
        try:
            meta = json.loads((candidate / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("format") == FORMAT:
            return candidate
    return None


def _run_folder(name: str | None, checkpoint: str | Path | None, paths: Paths | None):
    """The Lab 2 run a name or a folder points at, or None."""
    from llm_playground.core.paths import get_paths

    if checkpoint is not None:
        folder = Path(checkpoint).expanduser()
        if not folder.is_dir():
            raise UserError(f"checkpoint folder {folder} does not exist")
        return _run_of(folder)
    folder = (paths or get_paths()).runs / (name or "")
    return _run_of(folder) if name and folder.is_dir() else None


def from_checkpoint(ckpt, label: str | None = None) -> InspectedModel:
    """A Lab 2 checkpoint or snapshot (:class:`~llm_playground.training.checkpoints.LoadedCheckpoint`)."""
    from llm_playground.training.model import GPT

    if not isinstance(ckpt.model, GPT):
        raise UserError(f"{ckpt.path} holds a bigram table: it has no layers to look inside")
    config = ckpt.model.config
    step = int(ckpt.meta.get("step", 0))
    name = label or Path(ckpt.path).name
    return InspectedModel(
        label=f"{name} (step {step})",
        architecture="gpt",
        model=ckpt.model.eval(),
        tokenizer=ckpt.tokenizer,
        n_layers=config.n_layer,
        n_heads=config.n_head,
        n_kv_heads=config.n_head,
        d_model=config.n_embd,
        vocab_size=config.vocab_size,
        context_length=config.block_size,
        step=step,
        meta=dict(ckpt.meta),
    )


def from_loaded(loaded) -> InspectedModel:
    """A model the registry has loaded (:class:`~llm_playground.generation.registry.LoadedModel`),
    used as it is: a ``transformers`` model, a LoRA adapter on one, or a Lab 2 GPT in the
    causal-LM wrapper of :mod:`llm_playground.training.causal_lm`."""
    model, tokenizer = loaded.model, loaded.tokenizer
    gpt = getattr(model, "gpt", None)
    if gpt is not None:  # a Lab 2 GPT behind the causal-LM wrapper
        c = gpt.config
        return InspectedModel(
            label=loaded.info.label,
            architecture="gpt",
            model=gpt.eval(),
            tokenizer=tokenizer,
            n_layers=c.n_layer,
            n_heads=c.n_head,
            n_kv_heads=c.n_head,
            d_model=c.n_embd,
            vocab_size=c.vocab_size,
            context_length=c.block_size,
        )
    parts = hf_parts(model)
    config = parts.config
    n_heads = int(getattr(config, "num_attention_heads", None) or config.n_head)
    return InspectedModel(
        label=loaded.info.label,
        architecture="hf",
        model=model.eval(),
        tokenizer=tokenizer,
        n_layers=len(parts.layers),
        n_heads=n_heads,
        n_kv_heads=int(getattr(config, "num_key_value_heads", None) or n_heads),
        d_model=int(parts.head.weight.shape[1]),
        vocab_size=int(parts.head.weight.shape[0]),
        context_length=int(loaded.context_length),
        chat=bool(loaded.info.chat and getattr(tokenizer, "chat_template", None)),
        bos_id=_bos_id(tokenizer),
        special_ids=_special_ids(tokenizer),
    )


# --- tokens ---------------------------------------------------------------------------------


def _is_hf(tokenizer) -> bool:
    return hasattr(tokenizer, "convert_ids_to_tokens")


def _decode_one(tokenizer, token_id: int) -> str:
    if _is_hf(tokenizer):
        return tokenizer.decode([token_id], skip_special_tokens=False)
    return tokenizer.decode([token_id])


def _tokenizer_size(tokenizer) -> int:
    return len(tokenizer) if _is_hf(tokenizer) else int(tokenizer.vocab_size)


def _bos_id(tokenizer) -> int | None:
    """The beginning-of-text token, if the tokenizer puts one before the text."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    first = tokenizer("a")["input_ids"][:1]
    return int(bos) if first == [bos] else None


def _special_ids(tokenizer) -> frozenset[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(token_id))
    return frozenset(int(i) for i in ids)


def encode_text(model: InspectedModel, text: str) -> list[int]:
    """Token ids of raw text, with any beginning-of-text token the tokenizer adds."""
    if _is_hf(model.tokenizer):
        return list(model.tokenizer(text)["input_ids"])
    return list(model.tokenizer.encode(text))


def encode_prompt(model: InspectedModel, text: str, chat_template: bool | None = None) -> list[int]:
    """The prompt's token ids as the model sees it: in the chat template (the assistant's
    turn opened) for a chat model unless ``chat_template`` is False, else raw text with
    any beginning-of-text token. Raises UserError for an empty prompt or one longer than
    :data:`MAX_PROMPT_TOKENS` tokens."""
    if not isinstance(text, str) or not text.strip():
        raise UserError("the prompt is empty")
    if len(text) > 64 * MAX_PROMPT_TOKENS:  # far more than fits; do not tokenize megabytes
        raise UserError(f"the prompt is too long: the limit is {MAX_PROMPT_TOKENS} tokens")
    use_chat = model.chat if chat_template is None else bool(chat_template)
    tok = model.tokenizer
    if use_chat:
        if not getattr(tok, "chat_template", None):
            raise UserError(f"model '{model.label}' has no chat template: feed the raw text")
        wrapped = tok.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        ids = list(tok(wrapped, add_special_tokens=False)["input_ids"])
    else:
        ids = encode_text(model, text)
    if len(ids) > MAX_PROMPT_TOKENS:
        where = " with the chat template" if use_chat else ""
        raise UserError(
            f"the prompt is {len(ids)} tokens{where}: the limit is {MAX_PROMPT_TOKENS} tokens"
        )
    return ids


def probe_ids(model: InspectedModel, n: int, seed: int = 0) -> tuple[list[int], int]:
    """The induction probe's input and its prefix length b: the beginning-of-text token if
    the tokenizer adds one (b = 1, else b = 0), then ``n`` ids drawn uniformly with
    ``seed`` from the ordinary (not special) tokens, then the same ``n`` ids again."""
    if not PROBE_MIN <= int(n) <= PROBE_MAX:
        raise UserError(f"the induction probe's N must be from {PROBE_MIN} to {PROBE_MAX}, got {n}")
    if int(seed) < 0:
        raise UserError(f"the induction probe's seed must be 0 or more, got {seed}")
    n = int(n)
    total = model.prefix + 2 * n
    if total > model.context_length:
        raise UserError(
            f"an induction probe of N={n} is {total} tokens, more than the model's context "
            f"of {model.context_length}: N can be at most {(model.context_length - model.prefix) // 2}"
        )
    ordinary = model.ordinary_ids()
    rng = np.random.default_rng(seed)
    # r: n ids, each drawn uniformly (with replacement) from the ordinary tokens
    sequence = ordinary[rng.integers(0, len(ordinary), size=n)].tolist()
    prefix = [model.bos_id] if model.bos_id is not None else []
    return prefix + sequence + sequence, len(prefix)
