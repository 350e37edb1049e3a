"""Running a model one step at a time: a fast path for Llama-family models, and any model.

A runner holds a model's KV cache for one sequence and answers ``forward(new_ids)`` with the
logits of the new positions; ``truncate(length)`` forgets positions past ``length`` (what
speculative decoding does after a rejected draft).

* :class:`StaticLlamaRunner` runs ``LlamaForCausalLM`` models (SmolLM2) with its own short
  forward pass: a KV cache allocated once for the whole generation, rotary tables computed
  once, and the same tensor operations as ``transformers``' Llama in the same order, so the
  logits, and therefore greedy tokens, are the same; it saves the Python work that
  ``generate`` and the general model code do around them at every token. It fuses each
  layer's query/key/value and gate/up projections into one matrix each, in place (the
  parameters become views into them), and where the CPU probe of
  :mod:`llm_playground.core.hardware` measures one-row products faster with weights stored
  [in, out], it stores them so (same values, so the same tokens).
* :class:`ModelRunner` runs any ``transformers`` causal LM (GPT-2 exports of Lab 2, Gemma,
  LoRA adapters) with its ``DynamicCache``, or without a cache (the whole prefix again at
  every step).

:func:`int8_model` makes the int8 weight-only copy behind ``precision="int8"`` (int8
weights with a float32 scale per output channel, float32 activations).
"""

from __future__ import annotations

from typing import Any

PRECISIONS: tuple[str, ...] = ("fp32", "int8")
# Up to this many rows an int8 linear layer runs the fused int8 kernel; a longer input (a
# prompt, a perplexity window) widens the weights once and runs a float32 matmul, which is
# far faster there on CPUs without AVX-512 (the fused kernel has no AVX2 fast path).
FUSED_INT8_ROWS = 4


class ModelRunner:
    """Any ``transformers`` causal LM, with its own cache (or none)."""

    def __init__(self, model, use_cache: bool = True):
        import inspect

        self.model = model
        self.use_cache = use_cache
        self.cache = None
        self.tokens: list[int] = []  # every position seen so far
        self.device = next(model.parameters()).device
        try:
            self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            self.keeps_logits = False

    @property
    def length(self) -> int:
        return len(self.tokens)

    def forward(self, new_ids: list[int], all_logits: bool = False):
        """Logits [n, vocab] (float32) of the new positions, or [1, vocab] for the last only."""
        import torch

        keep = len(new_ids) if all_logits else 1
        kwargs: dict[str, Any] = {"logits_to_keep": keep} if self.keeps_logits else {}
        self.tokens.extend(new_ids)
        if self.use_cache:
            ids = torch.tensor([new_ids], dtype=torch.long, device=self.device)
            out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True, **kwargs)
            self.cache = out.past_key_values
        else:
            ids = torch.tensor([self.tokens], dtype=torch.long, device=self.device)
            out = self.model(input_ids=ids, use_cache=False, **kwargs)
        return out.logits[0, -keep:, :].float()

    def truncate(self, length: int) -> None:
        removed = len(self.tokens) - length
        del self.tokens[length:]
        if self.cache is not None and removed > 0:
            self.cache.crop(-removed)  # transformers 5: a negative count of positions to drop


def fast_path_supported(model) -> bool:
    """Whether :class:`StaticLlamaRunner` can run this model exactly like ``transformers``."""
    import torch

    if type(model).__name__ != "LlamaForCausalLM":
        return False
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    return (
        getattr(cfg, "hidden_act", "") == "silu"
        and not getattr(cfg, "attention_bias", False)
        and not getattr(cfg, "mlp_bias", False)
        and rope.get("rope_type", "default") == "default"
        and getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager")
        and next(model.parameters()).device.type == "cpu"
        and isinstance(model.model.layers[0].self_attn.q_proj, torch.nn.Linear)  # not int8
    )


def _stored(weight, input_major: bool):
    """``weight`` ([out, in]) with its numbers laid out [in, out] in memory when
    ``input_major`` (the transpose of a contiguous matrix), else contiguous [out, in]."""
    return weight.t().contiguous().t() if input_major else weight.contiguous()


def fused_projections(model, input_major: bool) -> list[tuple[Any, Any, Any, Any]]:
    """Per decoder layer: one matrix for the query, key and value projections, one for the
    gate and up projections, and the output and down projections, in the layout asked for.

    Built once per model, in place: each projection's parameter becomes a view into its
    fused matrix (same values, same [out, in] shape), so the model keeps one copy of its
    weights and every other caller still sees an ordinary model. Fusing turns five matrix
    products per layer into three, with fewer, larger reads of the weights."""
    import torch

    key = "_fused_projections"
    cached = model.__dict__.get(key)
    first = model.model.layers[0].self_attn.q_proj.weight
    if cached and cached[0] == input_major and cached[1][0][0].data_ptr() == first.data_ptr():
        return cached[1]
    fused = []
    with torch.no_grad():
        for layer in model.model.layers:
            attention, mlp = layer.self_attn, layer.mlp
            groups = (
                (attention.q_proj, attention.k_proj, attention.v_proj),
                (mlp.gate_proj, mlp.up_proj),
            )
            matrices = []
            for linears in groups:
                matrix = _stored(torch.cat([linear.weight for linear in linears]), input_major)
                row = 0
                for linear in linears:  # each parameter now views its rows of the fused matrix
                    rows = linear.weight.shape[0]
                    linear.weight.data = matrix[row : row + rows]
                    row += rows
                matrices.append(matrix)
            for linear in (attention.o_proj, mlp.down_proj):
                linear.weight.data = _stored(linear.weight.data, input_major)
            fused.append((matrices[0], attention.o_proj.weight, matrices[1], mlp.down_proj.weight))
    model.__dict__[key] = (input_major, fused)
    return fused


def output_head(model, input_major: bool):
    """The output head's weight in the layout asked for; a head tied to the embedding table
    gets a copy kept on the model (the table's rows are what a lookup reads), rebuilt if the
    table changes."""
    head = model.lm_head.weight
    if head is not model.get_input_embeddings().weight:
        if input_major and head.is_contiguous():
            head.data = _stored(head.data, True)
        return head
    if not input_major:
        return head
    cached = model.__dict__.get("_input_major_head")
    if cached is None or cached[0] != head._version:
        cached = (head._version, _stored(head.detach(), True))
        model.__dict__["_input_major_head"] = cached
    return cached[1]


def _rms_norm(hidden, norm):
    """``LlamaRMSNorm`` in its own order of operations (float32 models), without the module
    call; torch's fused ``rms_norm`` measured slower than these few operations on one row."""
    import torch

    variance = hidden.pow(2).mean(-1, keepdim=True)
    return norm.weight * (hidden * torch.rsqrt(variance + norm.variance_epsilon))


class StaticLlamaRunner:
    """A Llama forward pass over a KV cache allocated once (``max_length`` positions).

    Same computation as ``transformers``' ``LlamaModel`` (RMS norm, rotary embedding,
    grouped-query attention with scaled dot-product attention, SiLU-gated MLP), with the
    per-call work moved out of the loop: cache tensors, rotary tables and fused projection
    matrices are built once, and each layer is a dozen tensor operations.
    """

    def __init__(self, model, max_length: int):
        import torch

        from llm_playground.core.hardware import input_major_is_faster

        self.model = model
        cfg = model.config
        inner = model.model
        input_major = input_major_is_faster()
        self.embed = inner.embed_tokens
        self.norm = inner.norm
        self.head_weight = output_head(model, input_major)
        self.layers = [
            (layer.input_layernorm, layer.post_attention_layernorm, *projections)
            for layer, projections in zip(
                inner.layers, fused_projections(model, input_major), strict=True
            )
        ]
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.scaling = self.head_dim**-0.5
        self.max_length = max_length
        self.tokens: list[int] = []
        dtype = self.embed.weight.dtype
        shape = (1, self.kv_heads, max_length, self.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype) for _ in self.layers]
        self.values = [torch.zeros(shape, dtype=dtype) for _ in self.layers]
        # rotary tables for every position, computed as LlamaRotaryEmbedding computes them
        rotary = inner.rotary_emb
        positions = torch.arange(max_length)[None, :, None].float()
        freqs = positions * rotary.inv_freq.float()
        angles = torch.cat((freqs, freqs), dim=-1)
        self.cos = (angles.cos() * rotary.attention_scaling).to(dtype)[0]
        self.sin = (angles.sin() * rotary.attention_scaling).to(dtype)[0]

    @property
    def length(self) -> int:
        return len(self.tokens)

    def truncate(self, length: int) -> None:
        del self.tokens[length:]  # later positions are simply overwritten

    def forward(self, new_ids: list[int], all_logits: bool = False):
        """Logits [n, vocab] of the new positions (or [1, vocab] of the last one)."""
        import torch
        import torch.nn.functional as F

        start, count = len(self.tokens), len(new_ids)
        end = start + count
        if end > self.max_length:
            raise ValueError(f"the cache holds {self.max_length} positions, asked for {end}")
        self.tokens.extend(new_ids)
        hidden = self.embed(torch.tensor([new_ids], dtype=torch.long))
        cos = self.cos[start:end][None, None]
        sin = self.sin[start:end][None, None]
        half, heads, kv_heads = self.head_dim // 2, self.heads, self.kv_heads
        width = (heads + kv_heads) * self.head_dim  # queries and keys, side by side
        # a query attends to every cached position up to its own
        mask, causal = None, count > 1 and start == 0
        if count > 1 and start > 0:
            mask = torch.arange(end)[None, :] <= torch.arange(start, end)[:, None]
        layers = zip(self.layers, self.keys, self.values, strict=True)
        for (norm1, norm2, qkv, out, gate_up, down), keys, values in layers:
            # attention block: norm, project to queries|keys|values in one product
            normed = _rms_norm(hidden, norm1)
            projected = F.linear(normed, qkv)
            # rotate queries and keys together (the same rotation for every head)
            rotated = projected[..., :width].view(1, count, heads + kv_heads, self.head_dim)
            rotated = rotated.transpose(1, 2)
            rotated = (
                rotated * cos + torch.cat((-rotated[..., half:], rotated[..., :half]), -1) * sin
            )
            # write this step's keys and values into the cache, attend over the cache
            keys[:, :, start:end] = rotated[:, heads:]
            value = projected[..., width:].view(1, count, kv_heads, self.head_dim)
            values[:, :, start:end] = value.transpose(1, 2)
            attended = F.scaled_dot_product_attention(
                rotated[:, :heads],
                keys[:, :, :end],
                values[:, :, :end],
                attn_mask=mask,
                is_causal=causal,
                scale=self.scaling,
                enable_gqa=kv_heads != heads,
            )
            hidden = hidden + F.linear(attended.transpose(1, 2).reshape(1, count, -1), out)
            # feed-forward block: norm, gate and up in one product, gated SiLU, project back
            normed = _rms_norm(hidden, norm2)
            gate, up = F.linear(normed, gate_up).chunk(2, dim=-1)
            hidden = hidden + F.linear(F.silu(gate) * up, down)
        hidden = self.norm(hidden if all_logits else hidden[:, -1:])
        return F.linear(hidden, self.head_weight)[0].float()


def make_runner(model, max_length: int, use_cache: bool = True, fast: bool = True):
    """The fastest runner that gives ``transformers``' logits for this model."""
    if use_cache and fast and fast_path_supported(model):
        return StaticLlamaRunner(model, max_length)
    return ModelRunner(model, use_cache)


def _int8_linear_class():
    """The weight-only int8 linear layer, built on first use so that importing this module
    does not import torch."""
    import torch

    class Int8Linear(torch.nn.Module):
        """``y = x W^T + b`` with W stored as int8 and one float32 scale per output channel
        (row): W ~= scale[:, None] * W_int8. Activations stay float32; the product runs in
        ``torch._weight_int8pack_mm`` (int8 weights widened inside the kernel) for a few
        rows, and by widening the weights first for more rows or where that kernel is
        missing."""

        def __init__(self, linear: torch.nn.Linear):
            super().__init__()
            weight = linear.weight.detach().float()
            # symmetric per-row scale: the largest magnitude of a row maps to 127
            scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
            quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
            self.register_buffer("weight_int8", quantized.contiguous())
            self.register_buffer("scale", scale.contiguous())
            bias = linear.bias
            self.register_buffer("bias", None if bias is None else bias.detach().float())
            self.in_features, self.out_features = linear.in_features, linear.out_features
            self.fused = hasattr(torch, "_weight_int8pack_mm")

        def forward(self, x):
            flat = x.reshape(-1, self.in_features).float().contiguous()
            if self.fused and flat.shape[0] <= FUSED_INT8_ROWS:
                out = torch._weight_int8pack_mm(flat, self.weight_int8, self.scale)
            else:  # many rows (a prompt): widen the weights once, then a float32 matmul
                out = flat @ torch.mul(self.weight_int8, self.scale[:, None]).T
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*x.shape[:-1], self.out_features)

    return Int8Linear


def int8_model(model):
    """A copy of ``model`` whose linear layers (the output head included) keep int8 weights
    with one float32 scale per output channel; activations, embeddings and norms stay
    float32 (weight-only quantization: only the weights are rounded)."""
    import copy

    import torch

    layer_class = _int8_linear_class()
    quantized = copy.deepcopy(model)
    head = getattr(quantized, "lm_head", None)
    if head is not None and head.weight is quantized.get_input_embeddings().weight:
        # untie first, so that the embedding table stays float32
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
    linears = [
        (name, module)
        for name, module in quantized.named_modules()
        if isinstance(module, torch.nn.Linear)
    ]
    for name, module in linears:
        parent_name, _, child = name.rpartition(".")
        parent = quantized.get_submodule(parent_name) if parent_name else quantized
        setattr(parent, child, layer_class(module))
    return quantized


def weight_bytes_per_token(model) -> int:
    """Bytes of weights a forward pass reads per token at batch 1: every matrix once, one
    row of the embedding table (a tied output head reads the whole table)."""
    embedding = model.get_input_embeddings().weight
    total = embedding.shape[1] * embedding.element_size()  # the one embedding row
    seen = {id(embedding)}
    for module in model.modules():
        int8_weight = getattr(module, "weight_int8", None)
        if int8_weight is not None:  # int8 weights and one float32 scale per row
            total += int8_weight.numel() + module.scale.numel() * 4
        for param in module.parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                total += param.numel() * param.element_size()
    head = getattr(model, "lm_head", None)
    if head is not None and getattr(head, "weight", None) is embedding:
        total += embedding.numel() * embedding.element_size()
    return total


def at_precision(loaded, precision: str):
    """``loaded`` as it is ("fp32"), or a copy with int8 weights ("int8")."""
    from dataclasses import replace

    from llm_playground.core.errors import UserError

    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}': pick one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return loaded
    if next(loaded.model.parameters()).device.type != "cpu":
        raise UserError("int8 weights run on the CPU only")
    return replace(loaded, model=int8_model(loaded.model))


def memory_bandwidth(megabytes: int = 256, repeats: int = 3) -> float:
    """The machine's memory read+write bandwidth in bytes per second: the best of a few
    copies of a buffer far larger than the caches (one thread's view, like batch-1
    decoding)."""
    import time

    import torch

    source = torch.ones(megabytes * (1 << 20) // 4, dtype=torch.float32)
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        target.copy_(source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.numel() * 4 / best  # every byte is read once and written once


def bandwidth_limit(model, bandwidth: float) -> float:
    """Tokens per second if a forward pass did nothing but read its weights at ``bandwidth``."""
    return bandwidth / weight_bytes_per_token(model)
