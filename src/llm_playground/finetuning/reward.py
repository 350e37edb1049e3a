"""A reward model: a LoRA adapter and a one-number head that score an answer to a prompt.

The model is the base's transformer with a linear ``score`` head (``num_labels=1``) on the
last token: ``r(prompt, response)`` is one real number. Training is TRL's
``RewardTrainer`` on preference pairs with the Bradley–Terry loss
(:func:`bradley_terry_loss`, ``−log σ(r⁺ − r⁻)``): the chosen answer should score higher
than the rejected one, and only the difference matters. The LoRA weights and the new head
train (the head is a ``modules_to_save`` module of the adapter, so it is saved with it);
the base stays frozen.

Data: a votes export (``prefs export``: ``prompt``, ``chosen``, ``rejected``) or the shipped
offline set (:func:`build_offline_preferences`): answers of the offline instruction set
against degraded copies of themselves. The run reports the held-out pairwise accuracy (how
often r⁺ > r⁻) and the mean margin r⁺ − r⁻.

- :class:`RewardModelConfig`, :func:`train_reward_model` (a generator of run events);
- :func:`load_reward_model`, :class:`RewardModel` ``.score(prompt, responses)``;
- :func:`evaluate_pairs` the held-out figures; :func:`model_ranking` the voted models
  ranked by their mean reward.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.core.events import Done, Metric, Progress, Started
from llm_playground.core.paths import package_data
from llm_playground.finetuning.lora import (
    check_adapter_dir,
    check_targets,
    count_trainable,
    lora_of,
    read_meta,
    save_adapter,
)
from llm_playground.finetuning.trainer_events import trainer_events

KIND = "reward-model"
MIN_PAIRS = 10
OFFLINE_FILE = ("preferences", "offline.jsonl")
OFFLINE_SEED = 1234
OFFLINE_SIZE = 600


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardModelConfig:
    """Settings of one reward-model run (LoRA on the base, a new one-number head)."""

    base: str = "smollm2-135m-instruct"
    max_steps: int = 60
    lr: float = 2e-4
    batch_size: int = 8
    max_length: int = 256
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    eval_frac: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.max_steps >= 1, "the number of steps must be at least 1"),
            (self.lr > 0 and math.isfinite(self.lr), "the learning rate must be a positive number"),
            (self.batch_size >= 1, "the batch size must be at least 1"),
            (self.max_length >= 16, "the maximum length must be at least 16 tokens"),
            (0 < self.eval_frac < 1, "the held-out fraction must be between 0 and 1"),
            (0 <= self.seed < 2**32, "the seed must be between 0 and 2**32 - 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        lora_of(self).validate()  # the adapter's own checks, as SFT and DPO make them

    def peft_config(self) -> Any:
        """LoRA for sequence classification; the ``score`` head trains and is saved too."""
        return lora_of(self).peft_config(task_type="SEQ_CLS", modules_to_save=("score",))


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RewardStarted(Started):
    base: str
    train_pairs: int
    eval_pairs: int
    trainable: int
    total_parameters: int


@dataclass(frozen=True, kw_only=True)
class RewardStep(Progress):
    """A logged step: the Bradley–Terry loss and the batch's accuracy and margin."""

    loss: float
    accuracy: float | None = None
    margin: float | None = None


@dataclass(frozen=True, kw_only=True)
class RewardEval(Metric):
    """Held-out pairwise accuracy (r⁺ > r⁻) and mean margin r⁺ − r⁻ after ``step`` steps."""

    accuracy: float
    margin: float


@dataclass(frozen=True, kw_only=True)
class RewardDone(Done):
    step: int
    train_pairs: int
    eval_pairs: int
    eval_accuracy: float
    eval_margin: float
    elapsed_s: float
    out_dir: str | None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


# --- the loss, written out ------------------------------------------------------------------


def bradley_terry_loss(chosen_rewards: Any, rejected_rewards: Any) -> Any:
    """The reward model's loss on a batch of pairs: mean of ``−log σ(r⁺ − r⁻)``.

    Bradley–Terry says P(chosen beats rejected) = σ(r⁺ − r⁻); the loss is the negative
    log-likelihood of the observed preferences. TRL's ``RewardTrainer`` computes the same
    (a test checks it).
    """
    import torch.nn.functional as F

    # (pairs,) - (pairs,) -> (pairs,): how far the chosen answer is ahead
    margins = chosen_rewards - rejected_rewards
    # log σ(x) computed stably, then the mean over the pairs
    return -F.logsigmoid(margins).mean()


# --- the offline preference set -------------------------------------------------------------


def _degrade(answer: str, kind: str, other: str, rng: random.Random) -> str:
    """A worse copy of ``answer``: cut off, words shuffled, or another question's answer."""
    words = answer.split()
    if kind == "truncated":
        return " ".join(words[: max(1, len(words) // 2)]).rstrip(".,;:!?")
    if kind == "shuffled":
        shuffled = words[:]
        for _ in range(10):
            rng.shuffle(shuffled)
            if shuffled != words:
                break
        return " ".join(shuffled)
    return other  # off-topic


def build_offline_preferences(n: int = OFFLINE_SIZE, seed: int = OFFLINE_SEED) -> list[dict]:
    """Preference pairs from the shipped instruction set, deterministically.

    ``chosen`` is the data set's answer; ``rejected`` is, in turn, the answer cut in half
    (no ending), its words shuffled, or the answer to another question (off topic).
    """
    from llm_playground.finetuning.instructions import load_offline

    examples = [
        ex for ex in load_offline() if not ex.input and len(ex.output.split()) >= 4 and ex.output
    ]
    rng = random.Random(seed)
    rng.shuffle(examples)
    kinds = ("truncated", "shuffled", "off-topic")
    pairs = []
    for i, ex in enumerate(examples[:n]):
        other = examples[(i + len(examples) // 2) % len(examples)].output
        rejected = _degrade(ex.output, kinds[i % 3], other, rng)
        if rejected == ex.output:
            continue
        pairs.append({"prompt": ex.instruction, "chosen": ex.output, "rejected": rejected})
    return pairs


def offline_preferences_path() -> Path:
    return package_data(*OFFLINE_FILE)


def load_pairs(source: str | Path) -> tuple[list[dict], str]:
    """Pairs from ``offline`` or a preference JSONL file, and a name for them."""
    from llm_playground.finetuning.preferences import read_preference_pairs

    if str(source) == "offline":
        path = offline_preferences_path()
        rows = read_preference_pairs(path) if path.exists() else build_offline_preferences()
        return rows, "offline"
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"preference file {path} does not exist (or use offline)")
    return read_preference_pairs(path), path.name


def split_pairs(pairs: list[dict], eval_frac: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Shuffled with ``seed``; the last ``eval_frac`` (at least one pair) held out."""
    if len(pairs) < MIN_PAIRS:
        raise UserError(
            f"{len(pairs)} preference pair(s): a reward model needs at least {MIN_PAIRS}"
        )
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_eval = min(max(1, round(len(pairs) * eval_frac)), len(pairs) - 1)
    shuffled = [pairs[i] for i in order]
    return shuffled[:-n_eval], shuffled[-n_eval:]


# --- model and tokens -----------------------------------------------------------------------


def base_source(name: str) -> tuple[str, bool]:
    """The folder (or hub id) a base model loads from, and whether it is a chat model."""
    from llm_playground.generation.registry import convert_offline_model, resolve

    info = resolve(name)
    if info.kind == "adapter":
        raise UserError(f"'{name}' is an adapter: give its base model '{info.base}' instead")
    if not info.available:
        raise UserError(f"model '{name}' cannot be loaded: {info.reason}")
    if info.kind == "offline":
        return str(convert_offline_model(info.name)), info.chat
    if info.kind == "checkpoint":
        if not (Path(info.path) / "config.json").exists():
            raise UserError(f"'{name}' has no Hugging Face export, which a reward model needs")
        return str(info.path), info.chat
    if info.reason:
        raise UserError(f"unknown model '{name}': not an offline model, a Lab 2 run or a folder")
    return info.name, info.chat


def load_classifier(name: str, dtype: Any = None) -> tuple[Any, Any, bool]:
    """The base with a fresh one-number ``score`` head, its tokenizer, and chat or not."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source, chat = base_source(name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialised" is the point here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, dtype=dtype or torch.float32
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = tokenizer.pad_token_id
    chat = chat and bool(getattr(tokenizer, "chat_template", None))
    return model, tokenizer, chat


def encode(tokenizer: Any, prompt: str, response: str, chat: bool, max_length: int) -> list[int]:
    """The token ids the reward model reads for one answer (training and scoring alike)."""
    from llm_playground.finetuning.instructions import format_prompt

    if chat:
        messages = [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": response},
        ]
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
        ids = list(ids["input_ids"] if isinstance(ids, dict) else ids)
    else:
        ids = tokenizer(format_prompt(prompt) + response, add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
    return ids[-max_length:]  # the end of the answer is what the head reads


def rewards_of(model: Any, tokenizer: Any, sequences: Sequence[list[int]]) -> list[float]:
    """One reward per token sequence (right-padded in one batch, no gradient)."""
    import torch

    width = max(len(s) for s in sequences)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits  # (batch, 1)
    return [float(x) for x in logits[:, 0]]


@dataclass
class RewardModel:
    """A loaded reward model: ``score(prompt, responses)`` gives one number per response."""

    model: Any
    tokenizer: Any
    chat: bool
    base: str
    max_length: int = 256
    batch_size: int = 8
    meta: dict[str, Any] = field(default_factory=dict)

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        if not responses:
            return []
        self.model.eval()
        seqs = [encode(self.tokenizer, prompt, r, self.chat, self.max_length) for r in responses]
        out: list[float] = []
        for start in range(0, len(seqs), self.batch_size):
            out += rewards_of(self.model, self.tokenizer, seqs[start : start + self.batch_size])
        return out

    def score_pairs(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """One score per (prompt, response), e.g. each completion of an RL step."""
        seqs = [
            encode(self.tokenizer, p, r, self.chat, self.max_length)
            for p, r in zip(prompts, responses, strict=True)
        ]
        self.model.eval()
        out: list[float] = []
        for start in range(0, len(seqs), self.batch_size):
            out += rewards_of(self.model, self.tokenizer, seqs[start : start + self.batch_size])
        return out


REWARD_FOLDER = "reward-models"


def default_reward_dir(name: str) -> Path:
    """Where the app saves a named reward model: ``<home>/reward-models/<name>``."""
    from llm_playground.finetuning.outputs import home_file

    return home_file(name, REWARD_FOLDER, what="reward model name")


def saved_reward_models() -> list[Path]:
    """The reward models saved in the playground home, by name."""
    from llm_playground.core.paths import get_paths

    root = get_paths().home / REWARD_FOLDER
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if read_meta(p).get("kind") == KIND)


def check_reward_dir(folder: str | Path) -> Path:
    """A folder that holds a reward model (``reward train`` wrote it), else a UserError."""
    folder = Path(folder).expanduser()
    meta = read_meta(folder)
    if not (folder / "adapter_config.json").exists() or meta.get("kind") != KIND:
        raise UserError(f"{folder} holds no reward model (train one with `reward train`)")
    return folder


def load_reward_model(folder: str | Path) -> RewardModel:
    """A reward model saved by :func:`train_reward_model` (its base is named inside)."""
    from peft import PeftModel

    folder = check_reward_dir(folder)
    meta = read_meta(folder)
    model, tokenizer, chat = load_classifier(meta["base"])
    model = PeftModel.from_pretrained(model, str(folder))
    model.eval()
    settings = meta.get("settings", {})
    return RewardModel(
        model, tokenizer, chat, meta["base"], int(settings.get("max_length", 256)), meta=meta
    )


# --- evaluation -----------------------------------------------------------------------------


def evaluate_pairs(rm: RewardModel, pairs: Sequence[dict]) -> tuple[float, float]:
    """Held-out pairwise accuracy (share with r⁺ > r⁻) and mean margin r⁺ − r⁻."""
    wins, margins = 0, []
    for pair in pairs:
        chosen, rejected = rm.score(pair["prompt"], [pair["chosen"], pair["rejected"]])
        margins.append(chosen - rejected)
        wins += chosen > rejected
    return wins / len(pairs), sum(margins) / len(margins)


def model_ranking(rm: RewardModel, votes: Sequence[Any]) -> list[dict]:
    """Each voted model's mean reward over the answers it gave, best first."""
    totals: dict[str, list[float]] = {}
    for vote in votes:
        answers = [(vote.model_a, vote.response_a), (vote.model_b, vote.response_b)]
        named = [(m, text) for m, text in answers if m]
        if not named:
            continue
        scores = rm.score(vote.prompt, [text for _, text in named])
        for (model, _), score in zip(named, scores, strict=True):
            totals.setdefault(model, []).append(score)
    rows = [
        {"model": m, "mean_reward": sum(s) / len(s), "answers": len(s)} for m, s in totals.items()
    ]
    rows.sort(key=lambda r: -r["mean_reward"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


# --- training -------------------------------------------------------------------------------


def _dataset(rows: Sequence[dict], tokenizer: Any, chat: bool, max_length: int) -> Any:
    """Token ids of each pair, as TRL's reward collator takes them (``chosen_ids``,
    ``rejected_ids``): tokenised here so that training and scoring read the same ids."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "chosen_ids": encode(tokenizer, r["prompt"], r["chosen"], chat, max_length),
                "rejected_ids": encode(tokenizer, r["prompt"], r["rejected"], chat, max_length),
            }
            for r in rows
        ]
    )


def _trainer(config: RewardModelConfig, model: Any, tokenizer: Any, dataset: Any) -> Any:
    import torch
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(
        output_dir=tempfile.mkdtemp(prefix="llm-playground-reward-"),
        max_steps=config.max_steps,
        learning_rate=config.lr,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=1,
        gradient_checkpointing=False,
        max_length=None,  # the ids are cut to max_length already
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        disable_tqdm=True,
        seed=config.seed,
        lr_scheduler_type="constant",
        warmup_steps=0,
        dataset_num_proc=None,
    )
    return RewardTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=config.peft_config(),
    )


def _step_event(total: int):
    def to_event(step: int, logs: dict[str, Any]) -> RewardStep | None:
        if "loss" not in logs:
            return None
        return RewardStep(
            step=step,
            total=total,
            loss=float(logs["loss"]),
            accuracy=logs.get("accuracy"),
            margin=logs.get("margin"),
        )

    return to_event


def train_reward_model(
    config: RewardModelConfig,
    pairs: list[dict],
    out_dir: str | Path | None = None,
    stop_event: threading.Event | None = None,
    data_name: str = "",
    force: bool = False,
) -> Iterator[RewardStarted | RewardStep | RewardEval | RewardDone]:
    """Train a LoRA reward model on ``pairs``; yield events; save to ``out_dir`` at the end."""
    import torch

    if out_dir is not None:
        check_adapter_dir(out_dir, force)
    stop_event = stop_event or threading.Event()
    train_rows, eval_rows = split_pairs(pairs, config.eval_frac, config.seed)
    torch.manual_seed(config.seed)  # the new head's initial weights
    model, tokenizer, chat = load_classifier(config.base)
    check_targets(model, config.target_modules)
    dataset = _dataset(train_rows, tokenizer, chat, config.max_length)
    trainer = _trainer(config, model, tokenizer, dataset)
    trainable, total = count_trainable(trainer.model)
    yield RewardStarted(
        label="reward",
        total=config.max_steps,
        base=config.base,
        train_pairs=len(train_rows),
        eval_pairs=len(eval_rows),
        trainable=trainable,
        total_parameters=total,
    )
    start = time.perf_counter()
    yield from trainer_events(trainer, stop_event, _step_event(config.max_steps), name="reward")
    steps = int(trainer.state.global_step)
    rm = RewardModel(trainer.model, tokenizer, chat, config.base, config.max_length)
    accuracy, margin = evaluate_pairs(rm, eval_rows)
    yield RewardEval(step=steps, accuracy=accuracy, margin=margin)
    meta = {
        "version": 1,
        "kind": KIND,
        "base": config.base,
        "description": f"reward model (LoRA r={config.lora_r}) on {config.base}, "
        f"{len(train_rows)} pairs of {data_name or 'preferences'}",
        "chat": chat,
        "data": data_name,
        "train_pairs": len(train_rows),
        "eval_pairs": len(eval_rows),
        "eval_accuracy": round(accuracy, 6),
        "eval_margin": round(margin, 6),
        "steps_done": steps,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "settings": {**asdict(config), "target_modules": list(config.target_modules)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    saved = None
    if out_dir is not None and steps > 0:
        saved = str(save_adapter(trainer.model, out_dir, meta, force=force))
    yield RewardDone(
        step=steps,
        train_pairs=len(train_rows),
        eval_pairs=len(eval_rows),
        eval_accuracy=accuracy,
        eval_margin=margin,
        elapsed_s=time.perf_counter() - start,
        out_dir=saved,
        stopped=stop_event.is_set() and steps < config.max_steps,
        meta=meta,
    )


def write_offline_preferences(path: Path | None = None) -> Path:
    """Write the offline preference set (deterministic) to ``path`` (the shipped file)."""
    path = path or offline_preferences_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = build_offline_preferences()
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


__all__ = [
    "KIND",
    "RewardDone",
    "RewardEval",
    "RewardModel",
    "RewardModelConfig",
    "RewardStarted",
    "RewardStep",
    "bradley_terry_loss",
    "build_offline_preferences",
    "evaluate_pairs",
    "load_pairs",
    "load_reward_model",
    "model_ranking",
    "train_reward_model",
]
