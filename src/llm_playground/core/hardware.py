"""The one place that decides where a model runs and in which number format.

- :func:`resolve_device`: ``auto`` takes a CUDA GPU when PyTorch sees one, else the CPU.
- :func:`bf16_is_fast`: the one rule for bfloat16. On a GPU, bf16 when the GPU supports
  it. On a CPU, one short measured probe (cached for the process): a matrix product in
  fp32 and in bf16; bf16 counts as fast when it runs at least :data:`BF16_MIN_SPEEDUP`
  times as fast as fp32. CPUs with AMX or AVX-512 BF16 pass easily (2-10x). An x86 CPU
  without those instructions emulates bf16 (one to two orders of magnitude slower), so
  it is never chosen there, whatever a timing on a busy machine says. The flags are a
  necessary condition, not a sufficient one: a flag says an instruction exists, not
  that PyTorch's kernels use it for these shapes, so the probe still decides.
- :func:`pick_dtype`: ``auto`` / ``float32`` / ``bfloat16`` to a ``torch.dtype`` by that rule;
  training, fine-tuning and perplexity all ask here.
- :func:`newton_schulz_dtype`: the number format of Muon's Newton-Schulz iteration
  (bf16 where it is fast, fp32 elsewhere).
- :func:`input_major_is_faster`: the weight layout for batch-1 decoding. ``nn.Linear``
  stores a weight as [out, in]; some CPU BLAS libraries multiply a single row by an
  [in, out] matrix markedly faster (the same numbers, read in another order). One short
  probe per process, on matrices larger than the caches, decides.
- :func:`split_parts`: how many pieces a one-row product is cut into. Some BLAS libraries
  run a single row times a matrix on one thread however many they have; cutting the
  inner dimension into one slice per thread and running the slices as one batched
  product (torch spreads a batch over its threads), then adding the partial sums, reads
  the weights with every core. One short probe per thread count decides.
- :func:`machine`: the CPU model, cores, the CPU flags that matter for speed (avx2,
  avx512f, avx512_bf16, amx_bf16) and the device, for benchmarks and records.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError

#: bf16 is used on a CPU only when its measured matrix product is at least this much faster.
BF16_MIN_SPEEDUP = 1.25
#: The CPU instruction-set flags that decide how fast training runs.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
#: Shape of the probe's matrix product (rows, inner, columns): a small GPT's MLP layer.
PROBE_SHAPE = (128, 256, 512)
#: A weight layout is changed for batch-1 decoding only when it measures this much faster.
LAYOUT_MIN_SPEEDUP = 1.1
#: The layout probe's weights: this many [out, in] matrices of a small model's MLP size,
#: 113 MB in all, so that each product reads its weight from memory, as decoding does.
LAYOUT_PROBE_SHAPE = (48, 1536, 384)
#: One-row products are split across threads only when that measures this much faster.
SPLIT_MIN_SPEEDUP = 1.1


@dataclass(frozen=True)
class Machine:
    """What a benchmark or a record says about the hardware it ran on."""

    cpu: str
    cores: int
    device: str
    flags: dict[str, bool] = field(default_factory=dict)

    def flags_line(self) -> str:
        return " ".join(f"{name}={'yes' if on else 'no'}" for name, on in self.flags.items())

    def describe(self) -> str:
        return f"{self.cpu}, {self.cores} cores, {self.device}"


def cpu_flags(cpuinfo: str | None = None) -> dict[str, bool]:
    """Which of :data:`SPEED_FLAGS` this CPU has (from ``/proc/cpuinfo``; all False elsewhere)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    words: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            words.update(line.split(":", 1)[-1].split())
            break
    return {name: name in words for name in SPEED_FLAGS}


def cpu_model(cpuinfo: str | None = None) -> str:
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[-1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def resolve_device(device: str) -> str:
    """``auto``: a CUDA GPU when PyTorch sees one, else ``cpu``; ``cuda`` without a GPU is refused."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("a CUDA device was asked for, but PyTorch sees no CUDA GPU here")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return device


def machine(device: str = "auto") -> Machine:
    """The CPU model, core count, speed flags and the device ``device`` resolves to."""
    resolved = resolve_device(device)
    if resolved.startswith("cuda"):
        import torch

        resolved = f"cuda ({torch.cuda.get_device_name(0)})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Machine(cpu=cpu_model(), cores=cores or 1, device=resolved, flags=cpu_flags())


@dataclass(frozen=True)
class Probe:
    """One measurement of an alternative way to compute the same thing: seconds the usual
    way and the alternative way; the alternative is taken when it is at least
    ``min_speedup`` times as fast."""

    usual_s: float
    alternative_s: float
    min_speedup: float

    @property
    def speedup(self) -> float:
        return self.usual_s / self.alternative_s if self.alternative_s > 0 else 0.0

    @property
    def faster(self) -> bool:
        return self.speedup >= self.min_speedup


@functools.lru_cache(maxsize=1)
def probe_cpu_bf16() -> Probe:
    """Time :data:`PROBE_SHAPE` matrix products in fp32 and bf16 on the CPU (once per process).

    The two are timed in turns, five rounds, keeping each one's fastest: a busy machine
    slows single timings, and taking the best of interleaved rounds keeps a burst of
    load on one side from deciding the answer.
    """
    import torch

    rows, inner, cols = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=generator)
    b = torch.randn(inner, cols, generator=generator)
    pairs = {"fp32": (a, b), "bf16": (a.bfloat16(), b.bfloat16())}
    best = {name: float("inf") for name in pairs}
    try:
        for x, y in pairs.values():
            x @ y  # warm up
        for _ in range(5):
            for name, (x, y) in pairs.items():
                start = time.perf_counter()
                x @ y
                best[name] = min(best[name], time.perf_counter() - start)
    except RuntimeError:  # no bf16 kernels at all
        best["bf16"] = float("inf")
    return Probe(usual_s=best["fp32"], alternative_s=best["bf16"], min_speedup=BF16_MIN_SPEEDUP)


@functools.lru_cache(maxsize=1)
def probe_cpu_layout() -> Probe:
    """Time one row times each of :data:`LAYOUT_PROBE_SHAPE`'s matrices stored [out, in]
    (``nn.Linear``'s layout, the usual way) and [in, out] (once per process, three
    interleaved rounds, each layout's fastest kept)."""
    import torch
    import torch.nn.functional as F

    count, out_features, in_features = LAYOUT_PROBE_SHAPE
    weights = torch.full((count, out_features, in_features), 0.5)
    # the same numbers stored [in, out]: a linear layer's weight viewed as its transpose
    input_major = weights.transpose(1, 2).contiguous().transpose(1, 2)
    row = torch.full((1, in_features), 0.25)
    best = {"out": float("inf"), "in": float("inf")}
    for _ in range(3):
        for name, stored in (("out", weights), ("in", input_major)):
            start = time.perf_counter()
            for weight in stored:
                F.linear(row, weight)
            best[name] = min(best[name], time.perf_counter() - start)
    return Probe(usual_s=best["out"], alternative_s=best["in"], min_speedup=LAYOUT_MIN_SPEEDUP)


def input_major_is_faster(device: str = "cpu") -> bool:
    """Whether batch-1 decoding should store linear weights [in, out] on this machine (CPU
    only, by measurement; a GPU keeps ``nn.Linear``'s own layout)."""
    return device == "cpu" and probe_cpu_layout().faster


@functools.lru_cache(maxsize=8)
def probe_cpu_split(threads: int) -> Probe:
    """Time one row times each of :data:`LAYOUT_PROBE_SHAPE`'s matrices (stored [in, out],
    1536 x 384) as one product each (the usual way) and cut into ``threads`` slices of the
    inner dimension, run as one batched product whose partial sums are then added (three
    interleaved rounds, each way's fastest kept). Call it with torch set to ``threads``."""
    import torch

    count, inner, outer = LAYOUT_PROBE_SHAPE
    weights = torch.full((count, inner, outer), 0.5)
    row = torch.full((1, inner), 0.25)
    if threads < 2 or inner % threads:
        return Probe(usual_s=1.0, alternative_s=float("inf"), min_speedup=SPLIT_MIN_SPEEDUP)
    pieces = row.view(1, threads, inner // threads).transpose(0, 1)
    sliced = weights.unflatten(1, (threads, inner // threads))
    best = {"whole": float("inf"), "split": float("inf")}
    for _ in range(3):
        start = time.perf_counter()
        for weight in weights:
            row @ weight
        best["whole"] = min(best["whole"], time.perf_counter() - start)
        start = time.perf_counter()
        for weight in sliced:
            torch.bmm(pieces, weight).sum(0)
        best["split"] = min(best["split"], time.perf_counter() - start)
    return Probe(usual_s=best["whole"], alternative_s=best["split"], min_speedup=SPLIT_MIN_SPEEDUP)


def split_parts(device: str = "cpu") -> int:
    """Into how many slices batch-1 decoding cuts a one-row product: torch's thread count
    where the probe measures the split faster on this CPU, else 1 (no split; a GPU never)."""
    import torch

    threads = torch.get_num_threads()
    if device != "cpu" or threads < 2:
        return 1
    return threads if probe_cpu_split(threads).faster else 1


def has_bf16_instructions(flags: dict[str, bool] | None = None) -> bool | None:
    """On x86: whether the CPU has native bf16 (AVX-512 BF16 or AMX); None elsewhere."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return None
    flags = flags if flags is not None else cpu_flags()
    return flags["avx512_bf16"] or flags["amx_bf16"]


def bf16_is_fast(device: str = "cpu") -> bool:
    """The one rule: bf16 where the GPU supports it, or where the CPU probe measures it fast."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if has_bf16_instructions() is False:
        return False  # an x86 CPU without bf16 instructions emulates it: never fast
    return probe_cpu_bf16().faster


def pick_dtype(requested: str = "auto", device: str = "cpu") -> Any:
    """``float32``/``bfloat16`` as asked, or for ``auto`` bf16 exactly where it is fast."""
    import torch

    if requested == "float32":
        return torch.float32
    if requested == "bfloat16":
        return torch.bfloat16
    if requested != "auto":
        raise UserError(f"unknown dtype {requested!r}; choose auto, float32 or bfloat16")
    return torch.bfloat16 if bf16_is_fast(device) else torch.float32


def newton_schulz_dtype(device: str = "cpu") -> Any:
    """Muon's orthogonalisation runs in bf16 where bf16 is fast, else in fp32."""
    return pick_dtype("auto", device)
