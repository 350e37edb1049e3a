"""Knocking parts of a model out: one attention head, a layer's whole attention, or its MLP.

Layers and heads count from 0, as in the attention and head-score arrays. A spec names the
part: ``"3.2"`` is head 2 of layer 3 (its output is zeroed before the layer's output
projection, so the other heads of the layer still contribute), ``"3.attn"`` the whole
attention of layer 3 (its output, bias included, is zero) and ``"3.mlp"`` its MLP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from llm_playground.core.errors import UserError

Part = Literal["head", "attn", "mlp"]
_SPEC = re.compile(r"^\s*(\d+)\s*\.\s*(\d+|attn|mlp)\s*$")


@dataclass(frozen=True)
class Ablation:
    """One part of one layer knocked out: a head (``part="head"``), the attention or the MLP."""

    layer: int
    part: Part
    head: int | None = None

    def __post_init__(self) -> None:
        if self.layer < 0:
            raise UserError(f"ablation layer must be 0 or more, got {self.layer}")
        if self.part not in ("head", "attn", "mlp"):
            raise UserError(f"ablation part must be head, attn or mlp, got {self.part!r}")
        if (self.part == "head") != (self.head is not None):
            raise UserError("an ablation names a head exactly when its part is 'head'")
        if self.head is not None and self.head < 0:
            raise UserError(f"ablation head must be 0 or more, got {self.head}")

    @property
    def spec(self) -> str:
        """The ablation as written on the command line: ``"3.2"``, ``"3.attn"``, ``"3.mlp"``."""
        return f"{self.layer}.{self.head if self.part == 'head' else self.part}"

    def describe(self) -> str:
        """In words: "layer 3, head 2", "layer 3's attention", "layer 3's MLP"."""
        if self.part == "head":
            return f"layer {self.layer}, head {self.head}"
        return f"layer {self.layer}'s {'attention' if self.part == 'attn' else 'MLP'}"


def parse_ablation(spec: str, n_layers: int, n_heads: int) -> Ablation:
    """The :class:`Ablation` a spec names (``"L.H"``, ``"L.attn"``, ``"L.mlp"``), checked
    against a model of ``n_layers`` layers with ``n_heads`` query heads each."""
    match = _SPEC.match(spec or "")
    if not match:
        raise UserError(
            f"ablation {spec!r} is not LAYER.HEAD, LAYER.attn or LAYER.mlp (e.g. 3.2, 3.attn)"
        )
    layer, what = int(match.group(1)), match.group(2)
    if layer >= n_layers:
        raise UserError(
            f"ablation {spec!r}: the model has no layer {layer} (layers 0 to {n_layers - 1})"
        )
    if what in ("attn", "mlp"):
        return Ablation(layer=layer, part=what)  # type: ignore[arg-type]
    head = int(what)
    if head >= n_heads:
        raise UserError(
            f"ablation {spec!r}: layer {layer} has no head {head} (heads 0 to {n_heads - 1})"
        )
    return Ablation(layer=layer, part="head", head=head)
