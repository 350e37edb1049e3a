"""The training loop, as one generator of events.

``run_training(config, stop_event)`` loads and tokenizes the text, builds the model, and
trains it with AdamW, yielding :mod:`llm_playground.training.events` as it goes:
``TrainStarted``, a ``TrainStep`` per optimiser step, a ``TrainEval`` every ``eval_interval``
steps, a ``Sample`` every ``sample_interval`` steps, ``Saved`` when it writes a checkpoint,
and finally ``TrainDone`` or ``Error``.

- Stop: the stop event is checked before and after every step and between evaluation
  batches, so a run ends within one step of being asked.
- Repeatable: one seed drives initialisation, batches and dropout; separate generators keep
  evaluation and sampling from disturbing the training stream.
- Resumable: a checkpoint keeps the optimiser moments, the step and every random-number
  state, so a resumed run continues the same loss curve.
- Hardware: ``device=auto`` takes a GPU when there is one; ``dtype=auto`` uses bf16 autocast
  on a GPU that supports it, and on a CPU only when a short measured probe shows bf16 is
  faster there (some CPUs run bf16 matrix products a hundred times slower than fp32).
- Distributed: launched by ``torchrun`` (``RANK``/``WORLD_SIZE`` set), every process draws the
  same global batch and trains on its own slice; gradients are averaged by
  ``DistributedDataParallel`` (gloo on CPU, NCCL on GPU); only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from llm_playground.core.errors import UserError
from llm_playground.core.events import Error, Sample, Saved
from llm_playground.training import checkpoints
from llm_playground.training.config import TrainConfig
from llm_playground.training.corpus import Corpus, get_batch, load_corpus
from llm_playground.training.events import TrainDone, TrainEval, TrainEvent, TrainStarted, TrainStep
from llm_playground.training.model import build_model, configure_optimizers, count_parameters

# --- hardware --------------------------------------------------------------------------------


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but PyTorch sees no CUDA GPU here")
    return device


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 instructions (AVX-512 BF16 or AMX tiles)."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None) or getattr(
            getattr(torch._C, "_cpu", None), probe, None
        )
        if fn is not None:
            with contextlib.suppress(Exception):
                if fn():
                    return True
    return False


@functools.lru_cache(maxsize=16)
def _probe_cpu_bf16(model_key: tuple, batch: int) -> tuple[bool, float, float]:
    """Time a few forward/backward passes of the model in fp32 and in bf16 autocast.

    Returns (bf16 is faster, fp32 seconds per pass, bf16 seconds per pass).
    """
    from llm_playground.training.config import ModelConfig

    config = ModelConfig(*model_key)
    rng = torch.get_rng_state()
    try:
        model = build_model(config)
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(config.vocab_size, (batch, config.block_size), generator=gen)

        def timed(dtype: torch.dtype) -> float:
            best = math.inf
            for i in range(4):
                t0 = time.perf_counter()
                with autocast("cpu", dtype):
                    _, loss = model(x, x)
                loss.backward()
                model.zero_grad(set_to_none=True)
                if i:  # the first pass warms up
                    best = min(best, time.perf_counter() - t0)
            return best

        fp32 = timed(torch.float32)
        bf16 = timed(torch.bfloat16)
        return bf16 < 0.85 * fp32, fp32, bf16
    finally:
        torch.set_rng_state(rng)


def resolve_dtype(dtype: str, device: str, config: TrainConfig | None = None) -> torch.dtype:
    """The compute dtype: float32 or bfloat16 (autocast). ``auto`` decides by the hardware."""
    if dtype == "float32":
        return torch.float32
    if dtype == "bfloat16":
        return torch.bfloat16
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if not cpu_has_bf16() or config is None:
        return torch.float32
    m = config.model
    key = (m.kind, m.vocab_size, m.n_layer, m.n_head, m.n_embd, m.block_size, 0.0, m.bias)
    faster, _, _ = _probe_cpu_bf16(key, max(1, min(config.batch_size, 8)))
    return torch.bfloat16 if faster else torch.float32


def autocast(device: str, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


# --- distributed -----------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owned: bool = False  # this run created the process group and must destroy it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the process group ``torchrun`` describes in the environment (or stay single)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    owned = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
        owned = True
    if device == "cuda":
        torch.cuda.set_device(local)
    return Dist(rank=rank, world_size=world, local_rank=local, owned=owned)


def _all_mean(value: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        import torch.distributed as dist

        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= d.world_size
    return value


# --- the loop --------------------------------------------------------------------------------


def _rng_state(train_gen: torch.Generator, device: str) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "train": train_gen.get_state()}
    if device == "cuda":
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _encode_prompt(tokenizer, prompt: str) -> list[int]:
    try:
        ids = list(tokenizer.encode(prompt))
    except (UserError, KeyError, ValueError):
        ids = []
    return ids or [0]


def run_training(
    config: TrainConfig, stop_event: threading.Event | None = None, corpus: Corpus | None = None
) -> Iterator[TrainEvent]:
    """Train as ``config`` says, yielding events; never raises for bad settings (yields ``Error``)."""
    stop_event = stop_event or threading.Event()
    holder: list[Dist] = []
    try:
        yield from _train(config, stop_event, corpus, holder)
    except UserError as exc:
        yield Error(str(exc))
    except (torch.OutOfMemoryError, MemoryError):
        yield Error("out of memory: lower the batch size, the block size or the model size")
    finally:
        dist_state = holder[0] if holder else None
        if dist_state is not None and dist_state.owned:
            import torch.distributed as dist

            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def _train(
    config: TrainConfig, stop: threading.Event, corpus: Corpus | None, holder: list
) -> Iterator[TrainEvent]:
    t_start = time.perf_counter()
    config.validate()
    resume_meta = checkpoints.read_meta(config.resume) if config.resume else None
    corpus = corpus or load_corpus(config.data, config.tokenizer)
    config = config.replace(vocab_size=corpus.vocab_size)
    config.validate(len(corpus.train), len(corpus.val))
    if resume_meta is not None:
        saved_model = resume_meta["model"]
        ours = config.model.to_dict()
        differs = [
            k
            for k in ("kind", "vocab_size", "n_layer", "n_head", "n_embd", "block_size", "bias")
            if saved_model.get(k) != ours.get(k)
        ]
        if differs:
            raise UserError(
                f"cannot resume {config.resume}: its model differs in {', '.join(differs)}"
            )

    device = resolve_device(config.device)
    d = setup_distributed(device)
    holder.append(d)
    if d.enabled and device == "cuda":
        device = f"cuda:{d.local_rank}"
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if config.batch_size % d.world_size:
        raise UserError(
            f"batch size {config.batch_size} does not split evenly over {d.world_size} processes"
        )
    dtype = resolve_dtype(config.dtype, device_type, config)

    torch.manual_seed(config.seed)
    train_gen = torch.Generator().manual_seed(config.seed)
    model = build_model(config.model).to(device)
    n_params = count_parameters(model)
    optimizer = configure_optimizers(
        model,
        config.weight_decay,
        config.lr,
        (config.beta1, config.beta2),
        device_type,
        fused=config.fused_adamw,
    )
    start_step = 0
    metrics: list[dict] = []
    if config.resume:
        from safetensors.torch import load_model

        ckpt = Path(config.resume).expanduser()
        load_model(model, str(ckpt / checkpoints.WEIGHTS_FILE), strict=False, device=str(device))
        opt_state, start_step, rng = checkpoints.load_training_state(ckpt / checkpoints.STATE_FILE)
        optimizer.load_state_dict(opt_state)
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "train" in rng:
            train_gen.set_state(rng["train"])
        if "cuda" in rng and device_type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"])
        metrics = [m for m in checkpoints.read_metrics(ckpt) if m.get("step", 0) <= start_step]
    if start_step >= config.max_iters:
        raise UserError(
            f"the checkpoint is already at step {start_step}; raise max iterations above it"
        )

    out_dir = Path(config.out_dir).expanduser() if config.out_dir and d.main else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_metrics(out_dir, metrics)

    train_model = model
    if config.compile:
        train_model = torch.compile(model)
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(train_model, device_ids=[d.local_rank] if device_type == "cuda" else None)

    B, T = config.batch_size, config.model.block_size
    share = B // d.world_size
    rows = slice(d.rank * share, (d.rank + 1) * share) if d.enabled else None
    tokens_per_step = B * T
    prompt_ids = _encode_prompt(corpus.tokenizer, config.sample_prompt)
    yield TrainStarted(
        label=config.run_label,
        device=device,
        dtype=str(dtype).replace("torch.", ""),
        parameters=n_params,
        vocab_size=config.model.vocab_size,
        max_iters=config.max_iters,
        total=config.max_iters,
        start_step=start_step,
        world_size=d.world_size,
        tokens_per_step=tokens_per_step,
    )

    def evaluate(step: int) -> tuple[float, float] | None:
        model.eval()
        out = []
        with torch.no_grad():
            for split in (corpus.train, corpus.val):
                gen = torch.Generator().manual_seed(config.seed + 7919 * (step + 1))
                total = torch.zeros((), device=device)
                for _ in range(config.eval_iters):
                    if stop.is_set():
                        model.train()
                        return None
                    x, y = get_batch(split, T, B, gen, device, rows)
                    with autocast(device_type, dtype):
                        _, loss = model(x, y)
                    total += loss.float()
                out.append(_all_mean(total / config.eval_iters, d).item())
        model.train()
        return out[0], out[1]

    def sample(step: int) -> Sample:
        gen = torch.Generator(device=device).manual_seed(config.seed + step)
        idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        with autocast(device_type, dtype):
            out = model.generate(idx, config.sample_tokens, temperature=1.0, generator=gen)
        text = corpus.tokenizer.decode(out[0, len(prompt_ids) :].tolist())
        return Sample(step=step, text=text, prompt=config.sample_prompt)

    train_time = 0.0
    tokens_since_eval = 0
    time_since_eval = 0.0
    last_train = last_val = None
    if metrics:
        last_train, last_val = metrics[-1].get("train_loss"), metrics[-1].get("val_loss")
    ema_tps = 0.0
    step = start_step
    stopped = False

    def do_eval(step: int) -> Iterator[TrainEvent]:
        nonlocal last_train, last_val, tokens_since_eval, time_since_eval
        result = evaluate(step)
        if result is None:
            return
        last_train, last_val = result
        tps = tokens_since_eval / time_since_eval if time_since_eval > 0 else 0.0
        ev = TrainEval(
            step=step,
            train_loss=last_train,
            val_loss=last_val,
            elapsed_s=time.perf_counter() - t_start,
            tokens_per_s=tps,
            train_time_s=train_time,
        )
        tokens_since_eval, time_since_eval = 0, 0.0
        metrics.append(ev.metrics())
        if out_dir:
            with open(out_dir / checkpoints.METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(ev.metrics()) + "\n")
        yield ev

    def save(step: int) -> Iterator[TrainEvent]:
        if out_dir is None:
            return
        path = checkpoints.save_checkpoint(
            out_dir,
            model,
            config,
            corpus.tokenizer,
            step,
            last_train,
            last_val,
            optimizer,
            _rng_state(train_gen, device_type),
        )
        yield Saved(step=step, path=str(path))

    model.train()
    while step < config.max_iters:
        if stop.is_set():
            stopped = True
            break
        if step % config.eval_interval == 0 and not (metrics and metrics[-1].get("step") == step):
            yield from do_eval(step)
        if step % config.sample_interval == 0 and config.sample_tokens and d.main:
            yield sample(step)
        if stop.is_set():
            stopped = True
            break

        t0 = time.perf_counter()
        lr = config.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(corpus.train, T, B, train_gen, device, rows)
        with autocast(device_type, dtype):
            _, loss = train_model(x, y)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = _all_mean(loss.detach().float(), d).item()
        dt = time.perf_counter() - t0
        step += 1
        if not math.isfinite(loss_value):
            yield Error(
                f"the loss became {loss_value} at step {step}: training diverged; "
                f"lower the learning rate (now {config.lr:g})",
                step=step,
            )
            return
        train_time += dt
        tokens_since_eval += tokens_per_step
        time_since_eval += dt
        tps = tokens_per_step / dt if dt > 0 else 0.0
        ema_tps = tps if ema_tps == 0 else 0.9 * ema_tps + 0.1 * tps
        yield TrainStep(step=step, loss=loss_value, lr=lr, tokens_per_s=ema_tps)
        if (
            config.checkpoint_interval
            and step % config.checkpoint_interval == 0
            and step < config.max_iters
        ):
            yield from save(step)

    if not stopped and not (metrics and metrics[-1].get("step") == step):
        yield from do_eval(step)
        if config.sample_tokens and d.main and step % config.sample_interval == 0:
            yield sample(step)
    yield from save(step)
    yield TrainDone(
        step=step,
        train_loss=last_train,
        val_loss=last_val,
        elapsed_s=time.perf_counter() - t_start,
        stopped=stopped,
    )


def _write_metrics(out_dir: Path, metrics: list[dict]) -> None:
    with open(out_dir / checkpoints.METRICS_FILE, "w", encoding="utf-8") as f:
        for m in metrics:
            f.write(json.dumps(m) + "\n")
