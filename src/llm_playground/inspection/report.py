"""``inspect``: one forward pass, and everything Lab 6 shows about it, as plain arrays.

:class:`Inspection` holds numpy arrays and Python lists only (the page never touches
torch); :meth:`Inspection.to_json` is the ``llm-playground inspect --json`` object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from llm_playground.core.errors import UserError
from llm_playground.inspection.ablation import Ablation, parse_ablation
from llm_playground.inspection.capture import capture, final_logits
from llm_playground.inspection.heads import (
    HeadScore,
    first_token_scores,
    induction_scores,
    previous_token_scores,
    top_heads,
)
from llm_playground.inspection.lens import (
    lens,
    lens_logits,
    mean_next_token_loss,
    no_lens,
    top_of,
)
from llm_playground.inspection.models import InspectedModel, probe_ids

MAX_TOP_K = 50
JSON_DIGITS = 8  # decimals kept in the JSON output: a row of 1,025 still sums to 1 within 1e-5


@dataclass(frozen=True)
class Probe:
    """The induction probe's input: ``prefix`` tokens (0 or 1), then N random ids twice."""

    prefix: int
    n: int
    seed: int


@dataclass(frozen=True, eq=False)
class Inspection:
    """What one forward pass showed. T is the number of input tokens; layers and heads
    count from 0. Lens entry 0 reads the embeddings, entry l the residual stream after the
    l-th block (layer l - 1), and entry ``n_layers`` is the model's own next-token
    distribution; ``residual`` is numbered the same way."""

    label: str  # the model's label
    ids: list[int]
    tokens: list[str]  # each id's text, special tokens written out
    n_layers: int
    n_heads: int  # query heads
    attention: np.ndarray  # (n_layers, n_heads, T, T) float32; row i: query i over keys 0..i
    residual: np.ndarray  # (n_layers + 1, T, d_model) float32
    lens_ids: np.ndarray  # (n_layers + 1, T, top_k) int64: top guesses for the next token
    lens_probs: np.ndarray  # (n_layers + 1, T, top_k) float32: their probabilities
    lens_tokens: list[list[list[str]]]  # [n_layers + 1][T][top_k]: their texts
    next_rank: np.ndarray  # (n_layers + 1, T - 1) int64: the actual next token's rank (0 = top)
    next_prob: np.ndarray  # (n_layers + 1, T - 1) float32: the actual next token's probability
    head_scores: dict[str, np.ndarray]  # role -> (n_layers, n_heads); induction for a probe
    loss: float | None  # mean next-token loss over the input, ablations applied (None if T = 1)
    base_loss: float | None  # the same without ablations
    ablated: tuple[str, ...] = ()  # the ablations' specs ("3.2", "3.attn", "3.mlp")
    base_top_ids: np.ndarray | None = None  # (T, top_k): the unablated model's top guesses
    base_top_probs: np.ndarray | None = None  # (T, top_k)
    base_top_tokens: list[list[str]] | None = None  # [T][top_k]: their texts
    probe: Probe | None = None
    step: int | None = None  # the training step of a Lab 2 run

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def top_k(self) -> int:
        return int(self.lens_ids.shape[-1])

    def top_heads(self, role: str, k: int = 5) -> list[HeadScore]:
        """The ``k`` heads with the highest ``role`` score, best first."""
        if role not in self.head_scores:
            raise UserError(f"no {role} scores here (induction needs the induction probe)")
        return top_heads(self.head_scores[role], role, k)

    def lens_top(self, layer: int, position: int) -> list[tuple[int, str, float]]:
        """Lens entry ``layer``'s top guesses after ``position``: (id, text, probability)."""
        return [
            (int(i), text, float(p))
            for i, text, p in zip(
                self.lens_ids[layer, position],
                self.lens_tokens[layer][position],
                self.lens_probs[layer, position],
                strict=True,
            )
        ]

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``llm-playground inspect --json``."""
        out = self._json_without_attention()
        ordered = {key: out[key] for key in ("ids", "tokens", "n_layers", "n_heads")}
        ordered["attention"] = _rounded(self.attention)
        ordered.update((key, value) for key, value in out.items() if key not in ordered)
        return ordered

    def write_json(self, stream: TextIO) -> None:
        """:meth:`to_json` written to ``stream`` as one line, the attention one layer at a
        time (a long probe's maps are far larger as Python lists than as an array)."""
        out = self._json_without_attention()
        head = {key: out.pop(key) for key in ("ids", "tokens", "n_layers", "n_heads")}
        stream.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "attention": [')
        for layer in range(self.n_layers):
            stream.write((", " if layer else "") + json.dumps(_rounded(self.attention[layer])))
        stream.write("], " + json.dumps(out, ensure_ascii=False)[1:] + "\n")

    def _json_without_attention(self) -> dict[str, Any]:
        lens = [
            [
                {
                    "top": [
                        {"id": int(i), "token": text, "p": round(float(p), JSON_DIGITS)}
                        for i, text, p in zip(ids_row, texts_row, probs_row, strict=True)
                    ]
                }
                for ids_row, texts_row, probs_row in zip(
                    self.lens_ids[layer],
                    self.lens_tokens[layer],
                    self.lens_probs[layer],
                    strict=True,
                )
            ]
            for layer in range(self.n_layers + 1)
        ]
        out: dict[str, Any] = {
            "ids": [int(i) for i in self.ids],
            "tokens": list(self.tokens),
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "lens": lens,
            "head_scores": {role: _rounded(scores) for role, scores in self.head_scores.items()},
        }
        if self.probe is not None:
            out["probe"] = {"prefix": self.probe.prefix, "n": self.probe.n}
        if self.ablated:
            out["ablated"] = list(self.ablated)
            out["loss"] = {"base": self.base_loss, "ablated": self.loss}
        return out


def _rounded(array: np.ndarray) -> list:
    """Nested lists of floats rounded to :data:`JSON_DIGITS` decimals."""
    return np.round(array.astype(np.float64), JSON_DIGITS).tolist()


def _ablations(model: InspectedModel, ablations: Sequence[Ablation | str]) -> list[Ablation]:
    parsed = []
    for item in ablations:
        if isinstance(item, str):
            item = parse_ablation(item, model.n_layers, model.n_heads)
        elif item.layer >= model.n_layers or (item.head or 0) >= model.n_heads:
            raise UserError(f"the model has no {item.describe()}")
        if item not in parsed:
            parsed.append(item)
    return parsed


def _checked_input(model: InspectedModel, ids: Sequence[int], top_k: int) -> list[int]:
    """The ids as a list, refused (UserError) when empty, longer than the model's context
    or outside its vocabulary, or when ``top_k`` is out of range."""
    ids = [int(i) for i in ids]
    if not ids:
        raise UserError("nothing to inspect: the input has no tokens")
    if len(ids) > model.context_length:
        raise UserError(
            f"the input is {len(ids)} tokens, more than the model's context of "
            f"{model.context_length}"
        )
    if not 1 <= int(top_k) <= min(MAX_TOP_K, model.vocab_size):
        raise UserError(f"top-k must be from 1 to {min(MAX_TOP_K, model.vocab_size)}, got {top_k}")
    if any(not 0 <= i < model.vocab_size for i in ids):
        raise UserError(f"token ids must be from 0 to {model.vocab_size - 1}")
    return ids


def inspect(
    model: InspectedModel,
    ids: Sequence[int],
    top_k: int = 5,
    ablations: Sequence[Ablation | str] = (),
    probe: Probe | None = None,
    with_lens: bool = True,
) -> Inspection:
    """Run ``ids`` through ``model`` once, keeping every head's attention, the residual
    stream after each block and the logit lens (top ``top_k`` guesses per layer and
    position), with the previous-token and first-token scores of every head (and the
    induction score when ``probe`` describes the input). With ``ablations`` (specs such as
    "3.2", "3.attn", "3.mlp" or :class:`Ablation` objects) everything is that of the
    ablated model, and ``base_loss``/``base_top_*`` those of the model without them.
    ``with_lens=False`` skips the logit lens, most of the cost on a large vocabulary (its
    arrays are then empty: no guesses, shapes (n_layers + 1, T, 0) and (n_layers + 1, 0))."""
    ids = _checked_input(model, ids, top_k)
    knocked_out = _ablations(model, ablations)
    # one forward pass: attention (L, H, T, T), residual (L + 1, T, d), logits (T, V)
    captured = capture(model, ids, knocked_out)
    # the logit lens on every entry of the residual stream
    read = lens(model, captured.residual, ids, top_k) if with_lens else no_lens(model, ids)
    loss = mean_next_token_loss(captured.logits, ids)
    base_loss, base_top_ids, base_top_probs = loss, None, None
    if knocked_out:  # the same input through the intact model, for comparison
        base_logits = final_logits(model, ids)
        base_loss = mean_next_token_loss(base_logits, ids)
        base_top_ids, base_top_probs = top_of(base_logits, top_k)
    attention = captured.attention.numpy()  # (L, H, T, T)
    scores = {
        "previous_token": previous_token_scores(attention),
        "first_token": first_token_scores(attention),
    }
    if probe is not None:
        scores["induction"] = induction_scores(attention, probe.n, probe.prefix)
    base_top_tokens = (
        None if base_top_ids is None else [model.token_texts(row) for row in base_top_ids]
    )
    return Inspection(
        label=model.label,
        ids=ids,
        tokens=model.token_texts(ids),
        n_layers=model.n_layers,
        n_heads=model.n_heads,
        attention=attention,
        residual=captured.residual.numpy(),
        lens_ids=read.top_ids,
        lens_probs=read.top_probs,
        lens_tokens=[[model.token_texts(row) for row in layer] for layer in read.top_ids],
        next_rank=read.next_rank,
        next_prob=read.next_prob,
        head_scores=scores,
        loss=loss,
        base_loss=base_loss,
        ablated=tuple(a.spec for a in knocked_out),
        base_top_ids=base_top_ids,
        base_top_probs=base_top_probs,
        base_top_tokens=base_top_tokens,
        probe=probe,
        step=model.step,
    )


def induction_probe(
    model: InspectedModel,
    n: int,
    seed: int = 0,
    top_k: int = 5,
    ablations: Sequence[Ablation | str] = (),
    with_lens: bool = True,
) -> Inspection:
    """:func:`inspect` on the induction probe (:func:`~llm_playground.inspection.models.probe_ids`:
    a beginning-of-text token if the tokenizer adds one, N random ordinary tokens, the same
    N again), with ``head_scores["induction"]``. N from 4 to 512. The probe depends on the
    model and the seed only; ``with_lens=False`` when only the head scores are wanted."""
    ids, prefix = probe_ids(model, n, seed)
    probe = Probe(prefix=prefix, n=int(n), seed=seed)
    return inspect(model, ids, top_k, ablations, probe=probe, with_lens=with_lens)


def reference_sources() -> dict[str, str]:
    """The textbook code behind the page, as the tests run it: the attention written out,
    the logit lens and the induction score (name -> source)."""
    import inspect as source

    from llm_playground.training.model import explicit_attention

    return {
        "explicit_attention": source.getsource(explicit_attention),
        "lens_logits": source.getsource(lens_logits),
        "induction_scores": source.getsource(induction_scores),
    }
