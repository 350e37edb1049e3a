"""The two models of the Training ground: a bigram table and a small GPT.

``BigramLanguageModel`` predicts the next token from the current one only: its whole
knowledge is one table of next-token scores. ``GPT`` is the decoder-only transformer of
GPT-2: token and position embeddings, a stack of pre-norm :class:`TransformerBlock`s
(causal multi-head self-attention through ``F.scaled_dot_product_attention``, or written
out step by step by :func:`explicit_attention` when its weights are wanted, and a GELU
MLP, each wrapped in a residual connection), a final LayerNorm, and an output layer that
shares its weights with the token embedding. Layer names follow GPT-2's (``c_attn``,
``c_proj``, ``c_fc``, ``ln_1``...), so a checkpoint maps one to one onto Hugging Face's
``GPT2LMHeadModel`` (see :mod:`llm_playground.training.checkpoints`).

The speedrun's switches of :class:`~llm_playground.training.config.ModelConfig` change
the GPT in place: ``pos="rope"`` drops the position table and rotates queries and keys
(:class:`Rotary`), ``qk_norm`` RMS-normalises them per head, ``mlp="relu2"`` squares a
ReLU, ``zero_init`` starts every block's output projection at zero, ``tied_head=False``
gives the output layer its own weights, and ``logit_softcap`` bounds the logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llm_playground.training.config import ModelConfig

LN_EPS = 1e-5


def _next_token_loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
    """Mean cross-entropy of the next-token predictions (in float32 under autocast), or None."""
    if targets is None:
        return None
    # every position of every row is one prediction: (B, T, vocab) -> (B*T, vocab)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))


class BigramLanguageModel(nn.Module):
    """Next-token logits read straight from a ``vocab_size x vocab_size`` table."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        # each token's row of the table is its guess at the next token: (B, T) -> (B, T, vocab)
        logits = self.token_embedding_table(idx)
        return logits, _next_token_loss(logits, targets)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return _generate(self, idx, max_new_tokens, temperature, top_k, generator, context=1)


class Rotary(nn.Module):
    """Rotary position embeddings: rotate each pair of a head's dimensions by an angle that
    grows with the position, so that a query-key product depends only on their distance."""

    def __init__(self, head_size: int, max_positions: int, base: float = 10000.0):
        super().__init__()
        half = head_size // 2
        # one frequency per pair of dimensions, from 1 down to 1/base: the first pairs turn
        # fast (nearby positions differ), the last slowly (far positions stay apart)
        frequencies = base ** (-torch.arange(half, dtype=torch.float32) / half)  # (hs/2,)
        # (positions,) outer (hs/2,) -> (positions, hs/2): the angle of every pair at every position
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float32), frequencies)
        # buffers, not parameters, and not saved: they are recomputed from the config
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Rotate ``x`` (batch, heads, T, head size) as if its first position were ``offset``."""
        T = x.size(-2)
        cos = self.cos[offset : offset + T].to(x.dtype)  # (T, hs/2), broadcast over B and nh
        sin = self.sin[offset : offset + T].to(x.dtype)
        # dimension i pairs with dimension i + hs/2 (the "rotate half" layout of Llama)
        first, second = x.chunk(2, dim=-1)  # (B, nh, T, hs) -> two of (B, nh, T, hs/2)
        # a 2-D rotation of each pair by its angle: (B, nh, T, hs/2) x 2 -> (B, nh, T, hs)
        return torch.cat((first * cos + second * sin, second * cos - first * sin), dim=-1)


def rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Scale the last dimension to a root mean square of 1 (no learned gain)."""
    return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps).to(x.dtype)


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """Causal self-attention written out, returning the output and the attention weights.

    q, k, v: (batch, heads, T, head size). The same numbers as
    ``F.scaled_dot_product_attention(q, k, v, is_causal=True)``, step by step, so that the
    weights can be looked at (Lab 6); training uses the fused call, which never stores them.
    Returns ``(output, weights)``: (batch, heads, T, head size) and (batch, heads, T, T).
    """
    T, head_size = q.size(-2), q.size(-1)
    # how well each query matches each key, scaled so the scores' spread does not grow
    # with the head size: (B, nh, T, hs) x (B, nh, hs, T) -> (B, nh, T, T)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(head_size)
    # causal mask: position i may look at positions 0..i only (-inf above the diagonal)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    scores = scores.masked_fill(future, float("-inf"))
    # softmax over the keys: each query's row of weights sums to 1 (in float32)
    weights = F.softmax(scores.float(), dim=-1).to(q.dtype)
    # each query's output is the weighted mean of the values:
    # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)
    output = weights @ v
    return output, weights


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each position sees only itself and earlier positions."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm
        # queries, keys and values of all heads in one matrix multiplication
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.rotary = (
            Rotary(config.n_embd // config.n_head, config.block_size)
            if config.pos == "rope"
            else None
        )

    def queries_keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q, k, v of every head, (batch, heads, T, head size), as attention will use them."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # (B, T, C) -> (B, heads, T, head size)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.qk_norm:  # every query and key gets the same length
            q, k = rms_norm(q), rms_norm(k)
        if self.rotary is not None:  # positions enter as rotations of q and k
            q, k = self.rotary(q), self.rotary(k)
        return q, k, v

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        """The attention output (B, T, C); with ``return_weights``, ``(output, weights)``
        where weights are (B, heads, T, T), computed by :func:`explicit_attention`."""
        B, T, C = x.shape  # batch, positions, embedding size
        q, k, v = self.queries_keys_values(x)  # each (B, nh, T, hs)
        weights = None
        if return_weights:  # the written-out path, which keeps the weights (Lab 6)
            y, weights = explicit_attention(q, k, v)
        else:  # the fused kernel training uses
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
            )
        # the heads side by side again: (B, nh, T, hs) -> (B, T, nh, hs) -> (B, T, C)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        # one projection mixes what the heads found, back into the residual stream
        y = self.resid_dropout(self.c_proj(y))
        return (y, weights) if return_weights else y


class ReLUSquared(nn.Module):
    """relu(x)², the speedrun's activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


class MLP(nn.Module):
    """Position-wise feed-forward network: widen 4x, GELU (tanh form, as GPT-2) or ReLU²,
    narrow back."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        # no parameters, so no state_dict key: the name can say what it is for either choice
        self.activation = ReLUSquared() if config.mlp == "relu2" else nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # widen: (B, T, C) -> (B, T, 4C); the non-linearity is where each position computes
        hidden = self.activation(self.c_fc(x))
        # narrow back into the residual stream: (B, T, 4C) -> (B, T, C)
        return self.dropout(self.c_proj(hidden))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=LN_EPS, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=LN_EPS, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # each sub-layer adds to the residual stream (B, T, C) rather than replacing it, so the
        # gradient reaches early layers unchanged; norms come first (pre-norm: stabler deep)
        x = x + self.attn(self.ln_1(x))  # positions exchange information
        return x + self.mlp(self.ln_2(x))  # each position thinks on its own


class GPT(nn.Module):
    """A GPT-2-shaped decoder-only transformer (tied input and output embeddings by default)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        # with rotary embeddings, positions live inside attention: no table here
        self.wpe = (
            nn.Embedding(config.block_size, config.n_embd) if config.pos == "learned" else None
        )
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=LN_EPS, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tied_head:
            self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                if config.zero_init:  # every block starts as the identity
                    nn.init.zeros_(p)
                else:  # GPT-2: scale the residual projections by 1/sqrt(2 * layers)
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(
                f"sequence of {T} tokens is longer than the block size {self.config.block_size}"
            )
        x = self.wte(idx)  # token embeddings: (B, T) -> (B, T, C)
        if self.wpe is not None:
            # position embeddings (T, C), broadcast over the batch: the model knows where
            x = x + self.wpe(torch.arange(T, dtype=torch.long, device=idx.device))
        x = self.drop(x)
        for block in self.h:
            x = block(x)  # (B, T, C) -> (B, T, C)
        # a score for every token of the vocabulary at every position: (B, T, C) -> (B, T, vocab)
        logits = self.lm_head(self.ln_f(x))
        if self.config.logit_softcap:
            # tanh bounds the logits to (-cap, cap): early training cannot blow them up
            cap = self.config.logit_softcap
            logits = cap * torch.tanh(logits / cap)
        return logits, _next_token_loss(logits, targets)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return _generate(
            self, idx, max_new_tokens, temperature, top_k, generator, context=self.config.block_size
        )


def _generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None,
    context: int,
) -> torch.Tensor:
    """Sample ``max_new_tokens`` tokens one at a time, feeding the last ``context`` tokens back."""
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            # the model sees at most its block size: crop the context from the left
            logits, _ = model(idx[:, -context:])
            logits = logits[:, -1, :].float()  # the last position's: (B, T, vocab) -> (B, vocab)
            if temperature <= 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits, dim=-1)
                next_id = torch.multinomial(probs, 1, generator=generator)
            idx = torch.cat((idx, next_id), dim=1)  # (B, T) -> (B, T + 1)
    finally:
        model.train(was_training)
    return idx


def build_model(config: ModelConfig) -> nn.Module:
    """The model a config describes, freshly initialised."""
    config.validate()
    return BigramLanguageModel(config) if config.kind == "bigram" else GPT(config)


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (a tied weight counts once)."""
    return sum(p.numel() for p in model.parameters())


# --- summary ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SummaryRow:
    module: str
    kind: str
    shape: str
    parameters: int


@dataclass(frozen=True)
class ModelSummary:
    """What a learner sees before training: where the parameters are and what training costs."""

    rows: list[SummaryRow]
    total_parameters: int
    flops_per_token: float  # training FLOPs (forward + backward) per token
    memory_bytes: int  # weights + gradients + AdamW state + activations
    memory_breakdown: dict[str, int]

    def table(self) -> list[dict[str, object]]:
        return [
            {"module": r.module, "type": r.kind, "shape": r.shape, "parameters": r.parameters}
            for r in self.rows
        ]


def flops_per_token(config: ModelConfig, n_params: int) -> float:
    """Training FLOPs per token: 6 per weight (forward 2, backward 4) plus attention's score work.

    The attention term is ``12 * layers * block size * n_embd`` (PaLM appendix B). Position
    embeddings are lookups, not multiplications, so they are not counted.
    """
    if config.kind == "bigram":
        return 6.0 * config.vocab_size  # one row read, one softmax over the vocabulary
    lookups = config.block_size * config.n_embd if config.pos == "learned" else 0
    if not config.tied_head:  # the input embedding is a lookup; the untied head multiplies
        lookups += config.vocab_size * config.n_embd
    matmul_params = n_params - lookups
    return 6.0 * matmul_params + 12.0 * config.n_layer * config.block_size * config.n_embd


def training_memory(
    config: ModelConfig, n_params: int, batch_size: int, bytes_per_value: int = 4
) -> dict[str, int]:
    """A rough estimate of the memory training needs, in bytes, by what it holds.

    Weights, gradients and AdamW's two moments are four fp32 copies of the parameters.
    Activations kept for the backward pass follow Korthikanti et al. (2022): per layer about
    ``34 * B*T*C + 5 * heads * B*T*T`` values at 2 bytes, scaled here to ``bytes_per_value``;
    the output logits and their gradient add ``3 * B*T*vocab`` values.
    """
    B, T, C, V = batch_size, config.block_size, max(config.n_embd, 1), config.vocab_size
    out = {"weights": 4 * n_params, "gradients": 4 * n_params, "optimizer": 8 * n_params}
    if config.kind == "bigram":
        act = 3 * B * T * V * 4
    else:
        per_layer = (34 * B * T * C + 5 * config.n_head * B * T * T) * bytes_per_value // 2
        act = config.n_layer * per_layer + 3 * B * T * V * 4 + 2 * B * T * C * bytes_per_value
    out["activations"] = int(act)
    return out


def summarize(model: nn.Module, batch_size: int = 12) -> ModelSummary:
    """A table of the model's modules with parameter counts, the total, FLOPs and memory."""
    config: ModelConfig = model.config
    rows: list[SummaryRow] = []
    seen: set[int] = set()

    def add(name: str, module: nn.Module) -> None:
        params = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        shape = ""
        if hasattr(module, "weight") and isinstance(module.weight, torch.Tensor):
            shape = " x ".join(str(s) for s in module.weight.shape)
        kind = type(module).__name__
        if name == "lm_head" and not params:
            kind += " (tied to wte)"
        rows.append(SummaryRow(name, kind, shape, sum(p.numel() for p in params)))

    if isinstance(model, BigramLanguageModel):
        add("token_embedding_table", model.token_embedding_table)
    else:
        add("wte", model.wte)
        if model.wpe is not None:
            add("wpe", model.wpe)
        for i, block in enumerate(model.h):
            for part in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
                add(f"h.{i}.{part}", block.get_submodule(part))
        add("ln_f", model.ln_f)
        add("lm_head", model.lm_head)
    total = count_parameters(model)
    memory = training_memory(config, total, batch_size)
    return ModelSummary(rows, total, flops_per_token(config, total), sum(memory.values()), memory)


def model_summary(config: ModelConfig, batch_size: int = 12) -> ModelSummary:
    """The summary of the model ``config`` describes, built without allocating its weights."""
    with torch.device("meta"):
        model = build_model(config)
    return summarize(model, batch_size)
