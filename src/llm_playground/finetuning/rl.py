"""Reinforcement learning with GRPO (TRL's ``GRPOTrainer``) on a LoRA adapter, on the CPU.

One GRPO step, as the page shows it:

1. take ``prompts_per_step`` prompts (arithmetic problems, or instructions);
2. sample a *group* of ``group`` completions for each prompt from the current policy;
3. score every completion with the reward (:mod:`.rewards`: a verifier, the length rule or
   a reward model);
4. the advantage of each completion is its reward against its own group,
   ``(r − mean) / std`` (:func:`llm_playground.finetuning.rewards.group_advantages`): no
   value network, the group is the baseline;
5. raise the log-probability of the completions with a positive advantage and lower the
   others, with a KL penalty ``beta`` that keeps the policy near where it started
   (the base with the adapter switched off, so no second model sits in memory).

:func:`train_rl` is a generator of run events with a stop signal, like the SFT and DPO
runs: per step an :class:`RLStep` (mean reward ± std, KL, completion length, time) and an
:class:`RLGroup` (one prompt's completions with their rewards and advantages); every
``eval_every`` steps an :class:`RLEval` (greedy held-out accuracy for the verifiable
rewards); :class:`RLAnswers` before and after (the policy's answers to fixed prompts).

Chat models get their prompts as conversations, so TRL applies the chat template and the
completion ends with the template's end-of-turn token; a plain prompt to a chat model
rarely ends and its reward would stay at zero without any error.

The output folder holds the adapter (``generate --checkpoint DIR`` loads it),
``metrics.jsonl`` (a line a step) and ``samples.jsonl`` (a group a step), written together
through a temporary folder. A stopped run can be resumed (:func:`resume_config`): it
starts from the saved adapter and goes on counting steps; the optimiser starts afresh.
"""

from __future__ import annotations

import json
import math
import queue
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.events import Done, Metric, Progress, Started
from llm_playground.finetuning.lora import (
    LoRAConfig,
    check_adapter_dir,
    check_targets,
    count_trainable,
    read_meta,
    save_adapter,
)
from llm_playground.finetuning.outputs import replace_dir, temp_dir_beside, write_text_files
from llm_playground.finetuning.rewards import (
    Problem,
    RewardSpec,
    group_advantages,
    heldout_problems,
    reward_spec,
    training_problems,
)
from llm_playground.finetuning.trainer_events import trainer_events

KIND = "rl"
METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
#: Prompts whose answers are shown before and after a run without problems to check.
FIXED_INSTRUCTIONS = (
    "What is the capital of France?",
    "Tell me about the sea.",
    "How are you today?",
    "Name a primary colour.",
)
N_FIXED = 4


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RLConfig:
    """Settings of one GRPO run. The defaults finish within 15 minutes on 2 CPU cores
    (bench/rl.py measures it) and raise held-out arithmetic accuracy of SmolLM2-135M."""

    base: str = "smollm2-135m-instruct"
    reward: str = "arithmetic"
    adapter: str | None = None  # start from this adapter instead of a fresh one
    steps: int = 30
    group: int = 4
    prompts_per_step: int = 4
    max_completion_tokens: int = 24
    beta: float = 0.02
    lr: float = 3e-4
    temperature: float = 0.8
    seed: int = 0
    eval_every: int = 10
    eval_problems: int = 50
    lora_r: int = 8
    lora_alpha: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, "the number of steps must be at least 1"),
            (self.group >= 2, "the group size must be at least 2 (GRPO compares completions)"),
            (self.prompts_per_step >= 1, "the prompts per step must be at least 1"),
            (self.max_completion_tokens >= 1, "the completion length must be at least 1 token"),
            (self.beta >= 0 and math.isfinite(self.beta), "beta must be zero or positive"),
            (self.lr > 0 and math.isfinite(self.lr), "the learning rate must be a positive number"),
            (0 < self.temperature <= 5, "the temperature must be in (0, 5]"),
            (0 <= self.seed < 2**32, "the seed must be between 0 and 2**32 - 1"),
            (self.eval_every >= 0, "the interval between evaluations cannot be negative"),
            (1 <= self.eval_problems <= 10_000, "the held-out problems must be 1 to 10000"),
            (self.lora_r >= 1, "LoRA rank must be at least 1"),
            (len(self.target_modules) > 0, "LoRA target modules need at least one module name"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        reward_spec(self.reward)  # an unknown reward fails here, before any loading

    def settings(self) -> dict[str, Any]:
        return {**asdict(self), "target_modules": list(self.target_modules)}


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RLStarted(Started):
    base: str
    reward: str
    chat: bool
    trainable: int
    total_parameters: int
    group: int
    prompts_per_step: int
    first_step: int = 0  # steps done before (a resumed run)


@dataclass(frozen=True, kw_only=True)
class RLStep(Progress):
    """One GRPO step: the rewards of all its completions, KL to the start, lengths, time."""

    reward_mean: float
    reward_std: float
    kl: float
    completion_length: float
    elapsed_s: float
    loss: float = 0.0


@dataclass(frozen=True, kw_only=True)
class RLGroup(Metric):
    """One prompt's group at ``step``: what GRPO computes, completion by completion."""

    prompt: str
    completions: list[str]
    rewards: list[float]
    advantages: list[float]


@dataclass(frozen=True, kw_only=True)
class RLEval(Metric):
    """Greedy held-out accuracy after ``step`` steps (share of problems with full reward)."""

    accuracy: float
    n_problems: int


@dataclass(frozen=True, kw_only=True)
class RLAnswers(Metric):
    """The policy's greedy answers to the fixed prompts, ``when`` = before or after."""

    when: str
    prompts: list[str]
    answers: list[str]


@dataclass(frozen=True, kw_only=True)
class RLDone(Done):
    step: int
    accuracy_before: float | None
    accuracy_after: float | None
    elapsed_s: float
    s_per_step: float
    tokens_per_s: float
    out_dir: str | None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


RLEvent = RLStarted | RLStep | RLGroup | RLEval | RLAnswers | RLDone


# --- prompts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """The prompts of a run and how its completions are scored."""

    spec: RewardSpec
    questions: list[str]  # one per training item
    problems: list[Problem | None]
    heldout: list[Problem]
    fixed: list[str]  # questions answered before and after


def make_task(config: RLConfig, n_items: int) -> Task:
    """Training items for ``n_items`` prompts, the held-out problems and the fixed prompts."""
    spec = reward_spec(config.reward)
    if spec.uses_problems:
        problems = training_problems(n_items, config.seed)
        heldout = heldout_problems(config.eval_problems)
        questions = [spec.question(p) for p in problems]
        fixed = [spec.question(p) for p in heldout_problems(N_FIXED)]
        return Task(spec, questions, list(problems), heldout, fixed)
    from llm_playground.finetuning.instructions import load_offline

    pool = [ex.instruction for ex in load_offline() if not ex.input and len(ex.instruction) < 200]
    import random

    random.Random(config.seed).shuffle(pool)
    questions = [pool[i % len(pool)] for i in range(n_items)]
    return Task(spec, questions, [None] * n_items, [], list(FIXED_INSTRUCTIONS))


def prompt_of(question: str, chat: bool) -> Any:
    """A conversation for a chat model (TRL applies its template), else the instruction format."""
    from llm_playground.finetuning.instructions import format_prompt

    if chat:
        return [{"role": "user", "content": question}]
    return format_prompt(question)


def completion_text(completion: Any) -> str:
    """The text of a completion (a conversation's last message, or plain text)."""
    if isinstance(completion, list):
        return str(completion[-1].get("content", "")) if completion else ""
    return str(completion)


# --- greedy answers (held-out accuracy, before and after) -----------------------------------


def greedy_answers(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    chat: bool,
    max_new_tokens: int,
    batch_size: int = 50,
) -> list[str]:
    """The model's greedy answer to each question (left-padded batches, no gradient)."""
    import torch

    from llm_playground.finetuning.instructions import format_prompt

    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # new tokens follow each prompt directly
    answers: list[str] = []
    try:
        for start in range(0, len(questions), batch_size):
            batch = questions[start : start + batch_size]
            if chat:
                texts = [
                    tokenizer.apply_chat_template(
                        [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
                    )
                    for q in batch
                ]
                enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            else:
                texts = [format_prompt(q) for q in batch]
                enc = tokenizer(texts, return_tensors="pt", padding=True)
            with torch.no_grad():
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            # (batch, prompt + new) -> (batch, new)
            new = out[:, enc["input_ids"].shape[1] :]
            answers += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        if was_training:
            model.train()
    return answers


def heldout_accuracy(
    model: Any, tokenizer: Any, task: Task, chat: bool, max_new_tokens: int
) -> float | None:
    """Share of held-out problems whose greedy answer earns the full reward (None: no set)."""
    if not task.heldout:
        return None
    questions = [task.spec.question(p) for p in task.heldout]
    answers = greedy_answers(model, tokenizer, questions, chat, max_new_tokens)
    right = sum(task.spec.full_marks(a, p) for a, p in zip(answers, task.heldout, strict=True))
    return right / len(task.heldout)


# --- the reward function TRL calls ----------------------------------------------------------


class RewardFunction:
    """The reward of a run as TRL calls it: ``(prompts, completions, item=…) -> rewards``.

    It also keeps the first prompt's group of the latest call (completions, rewards and
    their advantages by :func:`group_advantages`), which the run reports each step.
    """

    def __init__(self, task: Task, group: int, reward_model: Any = None) -> None:
        from llm_playground.finetuning.rewards import builtin_scores

        self.task = task
        self.group = group
        self.reward_model = reward_model
        self.scores = None if reward_model is not None else builtin_scores(task.spec)
        self.__name__ = task.spec.name  # TRL names the reward's metrics after it
        self.last_group: dict[str, Any] | None = None
        self.generated_tokens = 0

    def __call__(self, prompts, completions, item, completion_ids=None, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in completions]
        questions = [self.task.questions[i] for i in item]
        problems = [self.task.problems[i] for i in item]
        if self.reward_model is not None:
            rewards = self.reward_model.score_pairs(questions, texts)
        else:
            rewards = self.scores(questions, texts, problems)
        if completion_ids is not None:
            self.generated_tokens += sum(len(ids) for ids in completion_ids)
        # the first prompt's group: its G completions side by side
        first = slice(0, self.group)
        self.last_group = {
            "prompt": questions[0],
            "completions": texts[first],
            "rewards": [float(r) for r in rewards[first]],
            "advantages": group_advantages(rewards[first]),
        }
        return [float(r) for r in rewards]


# --- the trainer ----------------------------------------------------------------------------


def _policy(config: RLConfig, start_adapter: str | None) -> tuple[Any, Any, bool, Any]:
    """The base (or the adapter to continue), its tokenizer, chat or not, and the LoRA
    settings TRL adds (None when an adapter is continued)."""
    import torch
    from peft import PeftModel

    from llm_playground.finetuning.sft import load_base

    if start_adapter:
        trained_on = read_meta(start_adapter).get("base")
        if trained_on and trained_on != config.base:
            raise UserError(
                f"the adapter in {start_adapter} was trained on {trained_on}, not {config.base}"
            )
    loaded = load_base(config.base, torch.float32)
    tokenizer = loaded.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    chat = bool(getattr(tokenizer, "chat_template", None)) and bool(loaded.info.chat)
    if start_adapter:
        model = PeftModel.from_pretrained(loaded.model, start_adapter, is_trainable=True)
        meta = read_meta(start_adapter)
        chat = bool(meta.get("chat", chat)) and bool(getattr(tokenizer, "chat_template", None))
        return model, tokenizer, chat, None
    check_targets(loaded.model, config.target_modules)
    lora = LoRAConfig(
        r=config.lora_r, alpha=config.lora_alpha, dropout=0.0, target_modules=config.target_modules
    ).peft_config()
    torch.manual_seed(config.seed)
    return loaded.model, tokenizer, chat, lora


def _trainer(config: RLConfig, model, tokenizer, chat, lora, task: Task, reward) -> Any:
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows = [{"prompt": prompt_of(q, chat), "item": i} for i, q in enumerate(task.questions)]
    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="llm-playground-rl-"),
        max_steps=config.steps,
        learning_rate=config.lr,
        # one step: prompts_per_step prompts x group completions, one optimiser update
        per_device_train_batch_size=config.prompts_per_step * config.group,
        gradient_accumulation_steps=1,
        num_generations=config.group,
        max_completion_length=config.max_completion_tokens,
        temperature=config.temperature,
        beta=config.beta,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        disable_tqdm=True,
        seed=config.seed,
        lr_scheduler_type="constant",
        warmup_steps=0,
        disable_dropout=True,
        log_completions=False,
        gradient_checkpointing=False,
    )
    return GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
    )


# --- the run --------------------------------------------------------------------------------


@dataclass
class _Run:
    """The state of one run between TRL's log calls: what to report, what to write."""

    config: RLConfig
    task: Task
    reward: RewardFunction
    tokenizer: Any
    chat: bool
    first_step: int
    start: float = field(default_factory=time.perf_counter)
    extra: queue.Queue = field(default_factory=queue.Queue)
    metrics: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    trainer: Any = None

    def to_event(self, step: int, logs: dict[str, Any]) -> RLStep | None:
        """TRL's log of a step -> an RLStep; the step's group and any evaluation go on
        ``extra`` (this runs in the trainer's thread)."""
        if "reward" not in logs:  # the summary at the end of training
            return None
        total_step = self.first_step + step
        event = RLStep(
            step=total_step,
            total=self.first_step + self.config.steps,
            reward_mean=float(logs["reward"]),
            reward_std=float(logs.get("reward_std") or 0.0),
            kl=float(logs.get("kl") or 0.0),
            completion_length=float(logs.get("completions/mean_length") or 0.0),
            elapsed_s=time.perf_counter() - self.start,
            loss=float(logs.get("loss") or 0.0),
        )
        record = {
            k: getattr(event, k)
            for k in ("step", "reward_mean", "reward_std", "kl", "completion_length", "elapsed_s")
        }
        group = self.reward.last_group
        if group is not None:
            self.samples.append({"step": total_step, **group})
            self.extra.put(RLGroup(step=total_step, **group))
        every = self.config.eval_every
        if self.task.heldout and every and step % every == 0 and step < self.config.steps:
            accuracy = self.accuracy()
            record["accuracy"] = accuracy
            self.extra.put(
                RLEval(step=total_step, accuracy=accuracy, n_problems=len(self.task.heldout))
            )
        self.metrics.append(record)
        return event

    def accuracy(self) -> float | None:
        return heldout_accuracy(
            self.trainer.model,
            self.tokenizer,
            self.task,
            self.chat,
            self.config.max_completion_tokens,
        )

    def answers(self, when: str, step: int) -> RLAnswers:
        texts = greedy_answers(
            self.trainer.model,
            self.tokenizer,
            self.task.fixed,
            self.chat,
            self.config.max_completion_tokens,
        )
        return RLAnswers(step=step, when=when, prompts=list(self.task.fixed), answers=texts)

    def drain(self) -> Iterator[Any]:
        while not self.extra.empty():
            yield self.extra.get()


def resume_config(folder: str | Path) -> tuple[RLConfig, int]:
    """The settings and steps done of a stopped run saved in ``folder``."""
    meta = read_meta(folder)
    if meta.get("kind") != KIND:
        raise UserError(f"{folder} holds no reinforcement-learning run to resume")
    settings = dict(meta.get("settings", {}))
    settings["target_modules"] = tuple(settings.get("target_modules", ("q_proj", "v_proj")))
    known = set(RLConfig.__dataclass_fields__)
    config = RLConfig(**{k: v for k, v in settings.items() if k in known})
    return config, int(meta.get("steps_done", 0))


def _read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def train_rl(
    config: RLConfig,
    out_dir: str | Path | None = None,
    stop_event: threading.Event | None = None,
    *,
    force: bool = False,
    resume: bool = False,
) -> Iterator[RLEvent]:
    """Run GRPO; yield events; write the adapter, metrics.jsonl and samples.jsonl to
    ``out_dir`` at the end (also when stopped, if any step ran).

    ``resume``: ``out_dir`` holds a stopped run of the same settings; training goes on from
    its adapter for the steps it had left, and its files are extended.
    """
    stop_event = stop_event or threading.Event()
    first_step, start_adapter, earlier = 0, config.adapter, ([], [])
    if resume:
        if out_dir is None:
            raise UserError("resuming needs the folder of the stopped run")
        saved, first_step = resume_config(out_dir)
        config = replace(saved, steps=max(saved.steps - first_step, 0))
        if config.steps == 0:
            raise UserError(f"the run in {out_dir} has done all its {first_step} steps already")
        start_adapter = str(out_dir)
        earlier = (
            _read_lines(Path(out_dir) / METRICS_FILE),
            _read_lines(Path(out_dir) / SAMPLES_FILE),
        )
        force = True
    elif out_dir is not None:
        check_adapter_dir(out_dir, force)
    reward_model = None
    spec = reward_spec(config.reward)
    if spec.folder:
        from llm_playground.finetuning.reward import load_reward_model

        reward_model = load_reward_model(spec.folder)
    model, tokenizer, chat, lora = _policy(config, start_adapter)
    task = make_task(config, config.steps * config.prompts_per_step)
    reward = RewardFunction(task, config.group, reward_model)
    trainer = _trainer(config, model, tokenizer, chat, lora, task, reward)
    run = _Run(config, task, reward, tokenizer, chat, first_step, trainer=trainer)
    trainable, total = count_trainable(trainer.model)
    yield RLStarted(
        label="rl",
        total=first_step + config.steps,
        base=config.base,
        reward=spec.name,
        chat=chat,
        trainable=trainable,
        total_parameters=total,
        group=config.group,
        prompts_per_step=config.prompts_per_step,
        first_step=first_step,
    )
    yield from _train_and_finish(run, stop_event, out_dir, force, earlier)


def _train_and_finish(run: _Run, stop_event, out_dir, force: bool, earlier) -> Iterator[RLEvent]:
    """Measure before, train (yielding each step's events), measure after, save."""
    config = run.config
    # before: held-out accuracy and the fixed prompts' answers of the starting policy
    before = run.accuracy()
    if before is not None:
        yield RLEval(step=run.first_step, accuracy=before, n_problems=len(run.task.heldout))
    yield run.answers("before", run.first_step)
    run.start = time.perf_counter()
    for event in trainer_events(run.trainer, stop_event, run.to_event, name="rl"):
        yield event
        yield from run.drain()
    yield from run.drain()
    elapsed = time.perf_counter() - run.start
    steps = int(run.trainer.state.global_step)
    # after: the same measurements on the trained policy
    after = run.accuracy() if steps else before
    if after is not None and steps:
        yield RLEval(step=run.first_step + steps, accuracy=after, n_problems=len(run.task.heldout))
        if run.metrics:
            run.metrics[-1]["accuracy"] = after
    yield run.answers("after", run.first_step + steps)
    meta = _meta(run, steps, before, after, elapsed)
    saved = None
    if out_dir is not None and steps > 0:
        saved = str(
            _save(run, out_dir, meta, force, earlier[0] + run.metrics, earlier[1] + run.samples)
        )
    yield RLDone(
        step=run.first_step + steps,
        accuracy_before=before,
        accuracy_after=after,
        elapsed_s=elapsed,
        s_per_step=elapsed / steps if steps else 0.0,
        tokens_per_s=run.reward.generated_tokens / elapsed if elapsed > 0 else 0.0,
        out_dir=saved,
        stopped=stop_event.is_set() and steps < config.steps,
        meta=meta,
    )


def _meta(run: _Run, steps: int, before, after, elapsed: float) -> dict[str, Any]:
    config = run.config
    settings = config.settings()
    settings["steps"] = run.first_step + config.steps  # a resumed run keeps its full length
    return {
        "version": 1,
        "kind": KIND,
        "base": config.base,
        "description": f"GRPO LoRA adapter on {config.base}, reward {run.task.spec.name}",
        "chat": run.chat,
        "reward": run.task.spec.name,
        "reward_model": run.task.spec.folder,
        "accuracy_before": before,
        "accuracy_after": after,
        "eval_problems": len(run.task.heldout),
        "steps_done": run.first_step + steps,
        "elapsed_s": round(elapsed, 2),
        "heldout_loss_before": None,
        "heldout_loss_after": None,
        "settings": settings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _save(run: _Run, out_dir, meta, force: bool, metrics: list[dict], samples: list[dict]) -> Path:
    """The adapter and the two JSONL files, built in a temporary folder renamed into place."""
    out = Path(out_dir).expanduser().resolve()
    check_adapter_dir(out, force)
    tmp = temp_dir_beside(out)
    try:
        folder = save_adapter(run.trainer.model, tmp / "adapter", meta)
        write_text_files(
            [(folder / METRICS_FILE, _jsonl(metrics)), (folder / SAMPLES_FILE, _jsonl(samples))]
        )
        folder.rename(tmp / "ready")
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ready = tmp / "ready"
    result = replace_dir(ready, out)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return result


__all__ = [
    "KIND",
    "METRICS_FILE",
    "SAMPLES_FILE",
    "RLAnswers",
    "RLConfig",
    "RLDone",
    "RLEval",
    "RLGroup",
    "RLStarted",
    "RLStep",
    "greedy_answers",
    "heldout_accuracy",
    "resume_config",
    "train_rl",
]
