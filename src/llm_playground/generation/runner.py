"""Running a model one step at a time: a fast path for Llama-family models, and any model.

A runner holds a model's KV cache for one sequence and answers ``forward(new_ids)`` with the
logits of the new positions; ``truncate(length)`` forgets positions past ``length`` (what
speculative decoding does after a rejected draft).

* :class:`StaticLlamaRunner` runs ``LlamaForCausalLM`` models (SmolLM2) with its own short
  forward pass: a KV cache allocated once for the whole generation, rotary tables computed
  once, and the same tensor operations as ``transformers``' Llama in the same order, so the
  logits, and therefore greedy tokens, are the same; it saves the Python work that
  ``generate`` and the general model code do around them at every token. A token reads
  every weight once, so the rest is about reading them fast: each layer's query/key/value
  and gate/up projections are fused into one matrix each, all of them in one buffer in
  reading order backed by 2 MB pages, in place (the parameters become views into it); and
  two probes of :mod:`llm_playground.core.hardware` decide the layout ([in, out] where
  one-row products measure faster so) and whether a one-row product is cut into one
  slice per thread (where torch's own product leaves the other cores idle). Same values,
  so the same tokens.
* :class:`ModelRunner` runs any ``transformers`` causal LM (GPT-2 exports of Lab 2, Gemma,
  LoRA adapters) with its ``DynamicCache``, or without a cache (the whole prefix again at
  every step).

:func:`int8_model` makes the int8 weight-only copy behind ``precision="int8"`` (int8
weights with a float32 scale per output channel, float32 activations); ``precision="bf16"``
a copy with bfloat16 weights; ``precision="auto"`` times a few decoding steps of this model
in float32 and in bfloat16 (:func:`decoding_precision`, through
:func:`llm_playground.core.hardware.decide_precision`) and takes the faster: a one-row
product reads every weight once, and whether bf16's halved reads beat float32's kernels
depends on the CPU, so it is measured, not assumed.
"""

from __future__ import annotations

import threading
from typing import Any

PRECISIONS: tuple[str, ...] = ("fp32", "int8", "bf16", "auto")
# With precision "auto": a prompt of DECIDE_PROMPT tokens and DECIDE_TOKENS one-token steps
# are timed in each precision, with the runner generate would pick for the model.
DECIDE_TOKENS = 4
DECIDE_PROMPT = 16
# Up to this many rows an int8 linear layer runs the fused int8 kernel; a longer input (a
# prompt, a perplexity window) widens the weights once and runs a float32 matmul, which is
# far faster there on CPUs without AVX-512 (the fused kernel has no AVX2 fast path).
FUSED_INT8_ROWS = 4
# Products of up to this many rows (a decoding step, a speculative check) may be split
# across threads (see Projection); a prompt's product is left to the BLAS library whole.
SPLIT_MAX_ROWS = 16
# The size of a large page (x86-64 and most arm64 Linux kernels): see _page_backed.
LARGE_PAGE = 2 << 20
# Held while a model's weights are rearranged in place (see fused_projections); a lock on
# the model itself would stop it from being copied (int8_model copies it).
_FUSING = threading.Lock()


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
        next(model.parameters()).dtype == torch.float32  # its RMS norm is float32's
        and getattr(cfg, "hidden_act", "") == "silu"
        and not getattr(cfg, "attention_bias", False)
        and not getattr(cfg, "mlp_bias", False)
        and rope.get("rope_type", "default") == "default"
        and getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager")
        and next(model.parameters()).device.type == "cpu"
        and isinstance(model.model.layers[0].self_attn.q_proj, torch.nn.Linear)  # not int8
    )


def _page_backed(numel: int, dtype):
    """An uninitialised flat buffer of ``numel`` numbers that Linux is asked to back with
    2 MB pages (transparent huge pages on request, ``madvise``) where the system offers
    them, else an ordinary tensor. Decoding reads every weight once per token in one long
    sweep; with 2 MB pages the sweep crosses 512 times fewer page boundaries, and the
    CPU's prefetcher, which stops at each one, runs on (5-7 % faster reads measured on a
    2-core AVX2 EPYC)."""
    import mmap

    import torch

    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is None or numel == 0:
        return torch.empty(numel, dtype=dtype)
    # anonymous and private (a shared mapping would be shared memory, with rules of its
    # own), one large page longer than asked, so that the buffer can start on a boundary
    memory = mmap.mmap(
        -1, numel * dtype.itemsize + LARGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    )
    try:
        memory.madvise(advice)
    except OSError:  # transparent huge pages are off: ordinary pages then
        pass
    whole = torch.frombuffer(memory, dtype=torch.uint8)  # the tensor keeps the mapping alive
    skip = -whole.data_ptr() % LARGE_PAGE
    return whole[skip : skip + numel * dtype.itemsize].view(dtype)


def _laid_out(matrix, input_major: bool, block):
    """``matrix`` ([out, in]) copied into the flat buffer ``block``, its numbers in [in, out]
    order when ``input_major`` (the transpose of a contiguous matrix), else [out, in];
    returned as an [out, in] view of ``block``."""
    rows, columns = matrix.shape
    if input_major:
        view = block.view(columns, rows).t()
    else:
        view = block.view(rows, columns)
    return view.copy_(matrix)


def _stored(weight, input_major: bool):
    """``weight`` ([out, in]) in a buffer of its own (:func:`_page_backed`), laid out [in, out]
    when ``input_major``."""
    return _laid_out(weight, input_major, _page_backed(weight.numel(), weight.dtype))


def fused_projections(model, input_major: bool) -> list[tuple[Any, Any, Any, Any]]:
    """Per decoder layer: one matrix for the query, key and value projections, the output
    projection, one matrix for the gate and up projections, and the down projection, in
    the layout asked for.

    Built once per model, in place: all of them live in one buffer (:func:`_page_backed`),
    in the order a decoding step reads them, and each projection's parameter becomes a
    view into its matrix (same values, same [out, in] shape), so the model keeps one copy
    of its weights and every other caller still sees an ordinary model. Fusing turns five
    matrix products per layer into three, with fewer, longer reads of the weights."""
    # two generations may start at once on one shared model (the app's jobs are threads):
    # one of them fuses, the other waits for it and finds the model fused
    with _FUSING:
        return _fuse(model, input_major)


def _contiguous_state(module, state_dict, prefix, local_metadata) -> None:
    """A state-dict hook: weights stored input-major (a transposed view) are handed out as
    ordinary contiguous [out, in] copies, so that ``save_pretrained`` and safetensors,
    which need contiguous tensors, save a fused model as they save any other."""
    for name, tensor in state_dict.items():
        if not tensor.is_contiguous():
            state_dict[name] = tensor.contiguous()


def _fuse(model, input_major: bool) -> list[tuple[Any, Any, Any, Any]]:
    """:func:`fused_projections`' work, under its lock."""
    import torch

    key = "_fused_projections"
    cached = model.__dict__.get(key)
    first = model.model.layers[0].self_attn.q_proj.weight
    if cached and cached[0] == input_major and cached[1][0][0].data_ptr() == first.data_ptr():
        return cached[1]
    # per layer, in reading order: [q|k|v], [o], [gate|up], [down]
    groups = [
        (
            (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj),
            (layer.self_attn.o_proj,),
            (layer.mlp.gate_proj, layer.mlp.up_proj),
            (layer.mlp.down_proj,),
        )
        for layer in model.model.layers
    ]
    sizes = [[sum(lin.weight.numel() for lin in group) for group in layer] for layer in groups]
    buffer = _page_backed(sum(map(sum, sizes)), first.dtype)
    fused, offset = [], 0
    with torch.no_grad():
        for layer, layer_sizes in zip(groups, sizes, strict=True):
            matrices = []
            for linears, size in zip(layer, layer_sizes, strict=True):
                rows = torch.cat([linear.weight for linear in linears])
                matrix = _laid_out(rows, input_major, buffer[offset : offset + size])
                offset += size
                row = 0
                for linear in linears:  # each parameter now views its rows of the matrix
                    count = linear.weight.shape[0]
                    linear.weight.data = matrix[row : row + count]
                    row += count
                matrices.append(matrix)
            fused.append(tuple(matrices))
    model.__dict__[key] = (input_major, fused)
    if input_major and not model.__dict__.get("_saves_contiguous"):
        model.register_state_dict_post_hook(_contiguous_state)
        model.__dict__["_saves_contiguous"] = True
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
    """``LlamaRMSNorm`` (float32 models) with its rounding, in fewer allocations: the mean of
    the squares as torch's CPU ``mean`` computes it (a sum, then a division), and the
    scaling and the gain applied in place (a product does not depend on its order)."""
    import torch

    variance = hidden.pow(2).sum(-1, keepdim=True).div_(hidden.shape[-1])
    scale = torch.rsqrt(variance.add_(norm.variance_epsilon))
    return (hidden * scale).mul_(norm.weight)


class Projection:
    """One weight as the runner multiplies by it: ``rows @ matrix`` with the matrix viewed
    [in, out] (no copy). Where :func:`~llm_playground.core.hardware.split_parts` says so,
    a product of up to :data:`SPLIT_MAX_ROWS` rows is cut into ``parts`` slices of the
    inner dimension, run as one batched product (torch spreads the batch over its
    threads, so every core reads its share of the weight), and the partial sums added."""

    __slots__ = ("matrix", "sliced")

    def __init__(self, weight, parts: int = 1):
        self.matrix = weight.t()  # [in, out]
        inner = self.matrix.shape[0]
        self.sliced = None
        if parts > 1 and inner % parts == 0:
            self.sliced = self.matrix.unflatten(0, (parts, inner // parts))

    def __call__(self, rows):
        if self.sliced is None or rows.shape[0] > SPLIT_MAX_ROWS:
            return rows @ self.matrix
        count, parts = rows.shape[0], self.sliced.shape[0]
        pieces = rows.reshape(count, parts, -1).transpose(0, 1)  # [parts, count, in/parts]
        return pieces.bmm(self.sliced).sum(0)


class StaticLlamaRunner:
    """A Llama forward pass over a KV cache allocated once (``max_length`` positions).

    Same computation as ``transformers``' ``LlamaModel`` (RMS norm, rotary embedding,
    grouped-query attention with scaled dot-product attention, SiLU-gated MLP), with the
    per-call work moved out of the loop: cache tensors, rotary tables and fused projection
    matrices are built once, the rotation of a step is one small matrix shared by every
    layer, and each layer is about twenty tensor operations on [positions, features] rows.
    """

    def __init__(self, model, max_length: int):
        import torch

        from llm_playground.core.hardware import input_major_is_faster, split_parts

        self.model = model
        cfg = model.config
        inner = model.model
        input_major, parts = input_major_is_faster(), split_parts()
        self.embed = inner.embed_tokens
        self.norm = inner.norm
        self.head = Projection(output_head(model, input_major), parts)
        self.layers = [
            (
                layer.input_layernorm,
                layer.post_attention_layernorm,
                *(Projection(weight, parts) for weight in weights),
            )
            for layer, weights in zip(
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
        shape = (self.kv_heads, max_length, self.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype) for _ in self.layers]
        self.values = [torch.zeros(shape, dtype=dtype) for _ in self.layers]
        # rotary tables for every position, computed as LlamaRotaryEmbedding computes them
        rotary = inner.rotary_emb
        positions = torch.arange(max_length)[:, None].float()
        freqs = positions * rotary.inv_freq.float()
        angles = torch.cat((freqs, freqs), dim=-1)
        self.cos = (angles.cos() * rotary.attention_scaling).to(dtype)
        self.sin = (angles.sin() * rotary.attention_scaling).to(dtype)
        # rotate_half(x) == x @ swap: the second half negated to the front, the first behind
        identity = torch.eye(self.head_dim, dtype=dtype)
        half = self.head_dim // 2
        self.swap = torch.cat((-identity[:, half:], identity[:, :half]), dim=-1)

    @property
    def length(self) -> int:
        return len(self.tokens)

    def truncate(self, length: int) -> None:
        del self.tokens[length:]  # later positions are simply overwritten

    def rotation(self, start: int, end: int):
        """Per position, the matrix R with ``x @ R == x * cos + rotate_half(x) * sin``:
        Llama's rotary embedding as one product, [positions, head_dim, head_dim]."""
        import torch

        cos, sin = self.cos[start:end], self.sin[start:end]
        return torch.diag_embed(cos) + self.swap * sin[:, None, :]

    def forward(self, new_ids: list[int], all_logits: bool = False):
        """Logits [n, vocab] of the new positions (or [1, vocab] of the last one)."""
        import torch
        import torch.nn.functional as F

        start, count = len(self.tokens), len(new_ids)
        end = start + count
        if end > self.max_length:
            raise ValueError(f"the cache holds {self.max_length} positions, asked for {end}")
        self.tokens.extend(new_ids)
        # [count, hidden], a tensor of its own: the residual sums below add into it in place
        hidden = self.embed(torch.tensor(new_ids, dtype=torch.long))
        rotation = self.rotation(start, end)
        heads, kv_heads, head_dim = self.heads, self.kv_heads, self.head_dim
        width = (heads + kv_heads) * head_dim  # queries and keys, side by side
        # a query attends to every cached position up to its own
        mask, causal = None, count > 1 and start == 0
        if count > 1 and start > 0:
            mask = torch.arange(end)[None, :] <= torch.arange(start, end)[:, None]
        layers = zip(self.layers, self.keys, self.values, strict=True)
        for (norm1, norm2, qkv, out, gate_up, down), keys, values in layers:
            # attention block: norm, project to queries|keys|values in one product
            projected = qkv(_rms_norm(hidden, norm1))
            # rotate queries and keys together: one small product per position
            rotated = projected[:, :width].view(count, heads + kv_heads, head_dim)
            rotated = rotated.bmm(rotation).transpose(0, 1)  # [heads + kv_heads, count, dim]
            # write this step's keys and values into the cache, attend over the cache
            keys[:, start:end] = rotated[heads:]
            values[:, start:end] = projected[:, width:].view(count, kv_heads, -1).transpose(0, 1)
            attended = F.scaled_dot_product_attention(  # (a batch of one: torch's fused kernel)
                rotated[None, :heads],
                keys[None, :, :end],
                values[None, :, :end],
                attn_mask=mask,
                is_causal=causal,
                scale=self.scaling,
                enable_gqa=kv_heads != heads,
            )
            hidden.add_(out(attended[0].transpose(0, 1).reshape(count, -1)))
            # feed-forward block: norm, gate and up in one product, gated SiLU, project back
            gate, up = gate_up(_rms_norm(hidden, norm2)).chunk(2, dim=-1)
            hidden.add_(down(F.silu(gate).mul_(up)))
        hidden = self.norm(hidden if all_logits else hidden[-1:])
        return self.head(hidden).float()


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


def bf16_model(model):
    """A copy of ``model`` with bfloat16 weights, without the fast path's float32 caches."""
    import copy

    import torch

    copied = copy.deepcopy(model)
    for cache in ("_fused_projections", "_input_major_head"):
        copied.__dict__.pop(cache, None)
    return copied.to(torch.bfloat16)


def decoding_precision(loaded):
    """float32 or bfloat16 for decoding with ``loaded`` (a float32 model), timed on a short
    prompt and :data:`DECIDE_TOKENS` one-token steps, with the runner ``generate`` would use;
    one measurement per model and thread count per process (and per machine, in the
    playground home). A ``core.hardware.PrecisionChoice``."""
    import torch

    from llm_playground.core import hardware

    model = loaded.model
    device = next(model.parameters()).device
    copies: dict[str, Any] = {"float32": model}

    def run_step(dtype: str) -> None:
        if dtype not in copies:  # the warm-up call makes the copy
            copies[dtype] = bf16_model(model)
        # a short prompt, then one token at a time, as a generation runs
        runner = make_runner(copies[dtype], DECIDE_PROMPT + DECIDE_TOKENS)
        with torch.inference_mode():
            runner.forward(list(range(1, DECIDE_PROMPT + 1)))
            for token in range(DECIDE_TOKENS):
                runner.forward([token + 1])

    work = hardware.WorkKey.of(
        "decode",
        device=str(device),
        model=loaded.info.name,
        parameters=sum(p.numel() for p in model.parameters()),
        threads=torch.get_num_threads(),
    )
    cache = hardware.precision_cache_file()
    choice = hardware.decide_precision(work, run_step, rounds=3, cache_file=cache)
    copies.clear()
    return choice


def at_precision(loaded, precision: str):
    """``loaded`` as it is ("fp32"), a copy with int8 weights ("int8") or bfloat16 weights
    ("bf16"), or for "auto" the faster of float32 and bfloat16 on this model's decoding
    steps (:func:`decoding_precision`)."""
    from dataclasses import replace

    from llm_playground.core.errors import UserError

    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}': pick one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = "bf16" if decoding_precision(loaded).dtype == "bfloat16" else "fp32"
    if precision == "fp32":
        return loaded
    if precision == "bf16":
        return replace(loaded, model=bf16_model(loaded.model))
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
