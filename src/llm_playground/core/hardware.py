"""The one place that decides where a model runs and in which number format.

- :func:`resolve_device`: ``auto`` takes a CUDA GPU when PyTorch sees one, else the CPU.
- :func:`decide_precision`: the one rule for float32 against bfloat16 ("auto"). A decision
  is taken on the work it is for: the caller hands in one step of that work (a few
  training steps of this model at this batch and block size, a few decoding steps, one
  perplexity window) and the step is timed in each precision, after a warm-up call of
  each, in interleaved rounds keeping each precision's fastest. bf16 is chosen only when
  it runs at least :data:`PRECISION_MIN_SPEEDUP` times as fast (a margin, so that two
  nearly equal precisions do not flip from run to run). Where bf16 is not supported (an
  x86 CPU without AVX-512 BF16 or AMX emulates it, one to two orders of magnitude slower;
  a GPU without bf16) it is float32 without measuring. Each decision is kept for the
  process by the shape of the work (:class:`WorkKey`), and, where the caller names a
  file, for the machine (CPU model, torch version and thread count in the key).
  A single big matrix product is no stand-in: on a 2-core Xeon with AMX one measured
  2.91x faster in bf16 while a 128-wide GPT's training steps ran 1.2-1.45x slower.
- :func:`pick_dtype`: ``float32`` / ``bfloat16`` as asked; ``auto`` for callers that have no
  work to time (fine-tuning) by :func:`bf16_is_fast`, a matrix-product probe
  (:func:`probe_cpu_bf16`). Training, decoding and perplexity decide on their own work.
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
import json
import math
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.textfiles import write_text_atomic

#: The proxy probe (:func:`probe_cpu_bf16`) counts bf16 as fast from this speed-up on.
BF16_MIN_SPEEDUP = 1.25
#: ``auto`` takes bf16 for a piece of work only when its timed steps run this much faster.
PRECISION_MIN_SPEEDUP = 1.1
#: Timed rounds per precision after the warm-up; each precision's fastest round counts (more
#: rounds, more chances of one undisturbed by other work on a shared machine).
PRECISION_ROUNDS = 5
#: A measured ratio within this factor of the margin is timed for twice the rounds.
PRECISION_CLOSE = 1.2
#: The two precisions ``auto`` chooses between, by their torch names.
PRECISIONS = ("float32", "bfloat16")
#: The machine cache of precision decisions, a file in the playground home.
PRECISION_CACHE_FILE = "precision.json"
#: Machine-cache entries older than this many days are measured again.
PRECISION_CACHE_DAYS = 7
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
    """The proxy rule, for work that has nothing of its own to time (fine-tuning): bf16
    where the GPU supports it, or where the CPU's matrix-product probe measures it fast."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if has_bf16_instructions() is False:
        return False  # an x86 CPU without bf16 instructions emulates it: never fast
    return probe_cpu_bf16().faster


def pick_dtype(requested: str = "auto", device: str = "cpu") -> Any:
    """``float32``/``bfloat16`` as asked, or for ``auto`` the proxy rule :func:`bf16_is_fast`
    (training, decoding and perplexity decide on their own work: :func:`decide_precision`)."""
    import torch

    if requested == "float32":
        return torch.float32
    if requested == "bfloat16":
        return torch.bfloat16
    if requested != "auto":
        raise UserError(f"unknown dtype {requested!r}; choose auto, float32 or bfloat16")
    return torch.bfloat16 if bf16_is_fast(device) else torch.float32


# --- precision decided on the work itself ------------------------------------------------


@dataclass(frozen=True)
class WorkKey:
    """The shape of a piece of work whose precision is decided: what it is (``train``,
    ``newton-schulz``, ``decode``, ``perplexity``), its shape as sorted (name, value) pairs
    (model size, batch, block...), and the device. Equal keys share one decision."""

    kind: str
    shape: tuple[tuple[str, Any], ...] = ()
    device: str = "cpu"

    @classmethod
    def of(cls, kind: str, device: str = "cpu", **shape: Any) -> WorkKey:
        return cls(kind, tuple(sorted(shape.items())), device)

    def text(self) -> str:
        shape = ", ".join(f"{name}={value}" for name, value in self.shape)
        return f"{self.kind} on {self.device}: {shape}"


@dataclass(frozen=True)
class PrecisionChoice:
    """Which precision a piece of work runs in, and why.

    ``ratio`` is float32's seconds over bfloat16's on the timed steps: bf16's speed as a
    multiple of float32's (above 1: bf16 faster); None where nothing was measured.
    ``measured`` says the work was timed (in this process or earlier on this machine).
    """

    dtype: str
    ratio: float | None = None
    seconds_fp32: float | None = None
    seconds_bf16: float | None = None
    measured: bool = False
    reason: str = ""
    requested: str = "auto"

    @property
    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def summary(self) -> str:
        """One line for a CLI or a page, e.g. ``bfloat16 (auto: bf16 measured 1.32x ...)``."""
        if self.requested != "auto":
            return f"{self.dtype} (as asked)"
        if self.ratio is None:
            return f"{self.dtype} (auto: {self.reason})"
        return f"{self.dtype} (auto: bf16 ran at {self.ratio:.2f}x float32's speed {self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrecisionChoice:
        names = {name for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})


def asked_precision(requested: str) -> PrecisionChoice:
    """The choice for an explicit ``float32`` or ``bfloat16``; anything else is refused."""
    if requested not in PRECISIONS:
        raise UserError(f"unknown dtype {requested!r}; choose auto, float32 or bfloat16")
    return PrecisionChoice(dtype=requested, reason="as asked", requested=requested)


def bf16_supported(device: str = "cpu") -> tuple[bool, str]:
    """Whether bf16 is worth timing on ``device``, and if not, why (in words)."""
    import torch

    if device.startswith("cuda"):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return True, ""
        return False, "this GPU has no bf16"
    if has_bf16_instructions() is False:
        return (
            False,
            "this CPU has no native bf16 (AVX-512 BF16 or AMX); emulated bf16 is far slower",
        )
    return True, ""


#: The process cache of precision decisions, one per shape of work (see decide_precision).
_PRECISION_DECISIONS: dict[WorkKey, PrecisionChoice] = {}
_PRECISION_LOCK = threading.Lock()


def clear_precision_decisions() -> None:
    """Forget this process's precision decisions (tests; a machine whose load changed)."""
    with _PRECISION_LOCK:
        _PRECISION_DECISIONS.clear()


def precision_cache_file() -> Path:
    """The machine cache of precision decisions in the playground home."""
    from llm_playground.core.paths import home

    return home() / PRECISION_CACHE_FILE


def decide_precision(
    work: WorkKey,
    run_step: Callable[[str], Any],
    *,
    timer: Callable[[], float] = time.perf_counter,
    rounds: int = PRECISION_ROUNDS,
    supported: bool | None = None,
    cache_file: Path | None = None,
) -> PrecisionChoice:
    """float32 or bfloat16 for ``work``, by timing ``run_step`` in each (see the module doc).

    ``run_step(dtype_name)`` runs one step of the work in ``"float32"`` or ``"bfloat16"``
    and returns when it is done. The answer is kept for the process by ``work``; with a
    ``cache_file`` it is also read from and written to that file for this machine.
    ``supported`` overrides :func:`bf16_supported` (tests).
    """
    with _PRECISION_LOCK:
        known = _PRECISION_DECISIONS.get(work)
    if known is not None:
        return known
    why = ""
    if supported is None:
        supported, why = bf16_supported(work.device)
    if not supported:
        choice = PrecisionChoice(dtype="float32", reason=why or "bf16 is not supported here")
    else:
        choice = _read_machine_cache(cache_file, work) if cache_file else None
        if choice is None:
            step = _synchronised(run_step) if work.device.startswith("cuda") else run_step
            choice = _time_precisions(step, timer, rounds)
            if cache_file and choice.measured:
                _write_machine_cache(cache_file, work, choice)
    with _PRECISION_LOCK:
        return _PRECISION_DECISIONS.setdefault(work, choice)


def _synchronised(run_step: Callable[[str], Any]) -> Callable[[str], Any]:
    """``run_step`` that returns only when the GPU has finished its work."""
    import torch

    def step(dtype: str) -> None:
        run_step(dtype)
        torch.cuda.synchronize()

    return step


def _time_precisions(
    run_step: Callable[[str], Any], timer: Callable[[], float], rounds: int
) -> PrecisionChoice:
    """Warm up each precision once, then ``rounds`` interleaved timings; fastest of each.

    Interleaving keeps a burst of load on a shared machine from landing on one side only,
    and the fastest round is the one least disturbed by it. A ratio near the margin (within
    :data:`PRECISION_CLOSE` of it either way) is timed for as many rounds again.
    """
    best = {name: math.inf for name in PRECISIONS}
    run_step("float32")  # warm-up: the first calls build kernels and caches
    try:
        run_step("bfloat16")
    except RuntimeError as exc:  # an operation of this work has no bf16 kernel here
        return PrecisionChoice(dtype="float32", reason=f"bf16 failed on this work ({exc})")
    rounds = max(1, rounds)
    for round_number in range(2 * rounds):
        for name in PRECISIONS:
            start = timer()
            run_step(name)
            best[name] = min(best[name], timer() - start)
        ratio = best["float32"] / best["bfloat16"] if best["bfloat16"] > 0 else math.inf
        close = 1 / PRECISION_CLOSE < ratio / PRECISION_MIN_SPEEDUP < PRECISION_CLOSE
        if round_number + 1 == rounds and not close:
            break
    fp32, bf16 = best["float32"], best["bfloat16"]
    faster = ratio >= PRECISION_MIN_SPEEDUP
    rule = f"on this work; bf16 is taken from {PRECISION_MIN_SPEEDUP:g}x"
    return PrecisionChoice(
        dtype="bfloat16" if faster else "float32",
        ratio=ratio,
        seconds_fp32=fp32,
        seconds_bf16=bf16,
        measured=True,
        reason=rule,
    )


def _machine_key(work: WorkKey) -> str:
    import torch

    return (
        f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
        f"{work.text()}"
    )


def _read_cache_entries(cache_file: Path) -> dict[str, Any]:
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    return entries if isinstance(entries, dict) else {}


def _read_machine_cache(cache_file: Path, work: WorkKey) -> PrecisionChoice | None:
    """A decision measured earlier on this machine for this work, unless too old or unreadable."""
    entry = _read_cache_entries(cache_file).get(_machine_key(work))
    if not isinstance(entry, dict):
        return None
    age_days = (time.time() - float(entry.get("measured_at", 0))) / 86400
    if not 0 <= age_days <= PRECISION_CACHE_DAYS:
        return None
    try:
        choice = PrecisionChoice.from_dict(entry["choice"])
    except (KeyError, TypeError):
        return None
    if choice.dtype not in PRECISIONS:
        return None
    when = time.strftime("%Y-%m-%d", time.localtime(float(entry["measured_at"])))
    reason = f"on this work, measured on this machine on {when}"
    return PrecisionChoice(**{**choice.to_dict(), "reason": reason, "measured": True})


def _write_machine_cache(cache_file: Path, work: WorkKey, choice: PrecisionChoice) -> None:
    """Add this decision to the machine cache: written to a temporary name, then renamed.
    A cache that cannot be written is left alone (the decision still holds for the process)."""
    entries = _read_cache_entries(cache_file)
    entries[_machine_key(work)] = {"measured_at": time.time(), "choice": choice.to_dict()}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": 1, "entries": entries}, indent=1)
        write_text_atomic(cache_file, text, overwrite=True)  # a temporary name per writer
    except OSError:
        pass
