"""Settings of a training run: the model's shape and the training loop, as frozen dataclasses.

Three named presets match the classic lessons: ``bigram`` (a lookup table of next-character
odds), ``baby-gpt`` (a 4-layer GPT that trains on two CPU cores in minutes) and
``lecture-gpt`` (the 6-layer, 384-wide GPT of the "let's build GPT" lecture, for a GPU).
A fourth, ``speedrun``, is baby-gpt's size with the modern recipe of the modded-nanogpt
speedrun: each of its ingredients is a setting of its own (:data:`TRICKS`), so that a
learner can add or remove one at a time.
:meth:`TrainConfig.validate` refuses impossible settings with a one-line
:class:`~llm_playground.core.errors.UserError` before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from llm_playground.core.errors import UserError

CONFIG_VERSION = 1
MODEL_KINDS = ("bigram", "gpt")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16")
SCHEDULES = ("cosine", "constant", "wsd")
OPTIMIZERS = ("adamw", "muon")
POSITIONS = ("learned", "rope")
MLPS = ("gelu", "relu2")
MAX_BIGRAM_VOCAB = 4096
MAX_SNAPSHOTS = 50  # training snapshots one run may keep (see training.snapshots)


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a model. ``vocab_size`` comes from the tokenizer when a run starts."""

    kind: str = "gpt"
    vocab_size: int = 65
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = True
    # --- the speedrun's architecture switches (the defaults are GPT-2's) ---
    pos: str = "learned"  # learned: a position embedding table | rope: rotary embeddings
    qk_norm: bool = False  # RMS-normalise queries and keys per head before attention
    mlp: str = "gelu"  # gelu (GPT-2) | relu2: relu(x) squared
    zero_init: bool = False  # output projections of every block start at zero
    tied_head: bool = True  # the output layer shares the token embedding's weights
    logit_softcap: float = 0.0  # 0: off; else logits become c * tanh(logits / c)

    @property
    def classic(self) -> bool:
        """GPT-2's architecture exactly (so the Hugging Face GPT-2 export applies)."""
        return (
            self.kind == "gpt"
            and self.pos == "learned"
            and not self.qk_norm
            and self.mlp == "gelu"
            and self.tied_head
            and not self.logit_softcap
        )

    def validate(self) -> ModelConfig:
        if self.kind not in MODEL_KINDS:
            raise UserError(
                f"unknown model kind {self.kind!r}; choose one of {', '.join(MODEL_KINDS)}"
            )
        _positive_int("vocabulary size", self.vocab_size)
        _positive_int("block size", self.block_size)
        if self.kind == "bigram" and self.vocab_size > MAX_BIGRAM_VOCAB:
            gb = self.vocab_size**2 * 16 / 1e9
            raise UserError(
                f"a bigram table for {self.vocab_size:,} tokens has {self.vocab_size**2:,} entries "
                f"(about {gb:,.0f} GB to train): use the char tokenizer, or a GPT for large vocabularies"
            )
        if self.kind == "gpt":
            _positive_int("number of layers", self.n_layer)
            _positive_int("number of heads", self.n_head)
            _positive_int("embedding size", self.n_embd)
            if self.n_embd % self.n_head:
                raise UserError(
                    f"embedding size {self.n_embd} is not divisible by the number of heads "
                    f"{self.n_head}: each head gets n_embd / n_head dimensions"
                )
        if not _finite(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be at least 0 and below 1, not {self.dropout}")
        _one_of("position encoding", self.pos, POSITIONS)
        _one_of("MLP activation", self.mlp, MLPS)
        if self.kind == "gpt" and self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise UserError(
                f"rotary embeddings need an even head size, not {self.n_embd // self.n_head}"
            )
        if not _finite(self.logit_softcap) or self.logit_softcap < 0:
            raise UserError(f"logit soft-cap must be 0 (off) or more, not {self.logit_softcap}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


#: The model settings a checkpoint must share with the run that resumes it: every field of
#: ModelConfig but dropout (a training-time choice) and zero_init (the first step only).
RESUMABLE_FIELDS = tuple(
    f.name for f in dataclasses.fields(ModelConfig) if f.name not in ("dropout", "zero_init")
)


@dataclass(frozen=True)
class TrainConfig:
    """One training run: model, data, tokenizer, optimiser, schedule, hardware and output."""

    model: ModelConfig = field(default_factory=ModelConfig)
    preset: str = "baby-gpt"
    data: str | None = None  # a UTF-8 text file; None means the shipped TinyShakespeare
    tokenizer: str = "char"  # char | gpt2 | path to a saved BPE JSON
    batch_size: int = 12
    lr: float = 1e-3
    min_lr: float | None = None  # end of the decay; None means lr / 10
    schedule: str = "cosine"  # cosine (after a linear warm-up) | constant | wsd
    decay_frac: float = 0.4  # wsd: the last fraction of the steps decays linearly
    optimizer: str = "adamw"  # adamw | muon (hidden matrices on Muon, the rest on AdamW)
    muon_lr: float = 0.02  # Muon's learning rate (its updates have a fixed size)
    muon_momentum: float = 0.95
    warmup_iters: int = 100
    max_iters: int = 2000
    eval_interval: int = 250
    eval_iters: int = 20
    sample_interval: int = 100
    sample_prompt: str = "\n"
    sample_tokens: int = 200
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    fused_adamw: bool = True
    out_dir: str | None = None  # where the final checkpoint goes; None: nowhere
    resume: str | None = None  # a checkpoint folder to continue from
    checkpoint_interval: int = 0  # also save every N steps (0: only at the end)
    snapshot_interval: int = 0  # keep the model every N steps in snapshots/ (0: none)
    target_val_loss: float | None = None  # stop at the first evaluation at or below this
    label: str = ""

    # -- derived ---------------------------------------------------------------------------
    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    @property
    def run_label(self) -> str:
        return self.label or f"{self.preset} lr={self.lr:g}"

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based): see :meth:`lr_factor`."""
        return self.lr * self.lr_factor(step)

    def lr_factor(self, step: int) -> float:
        """The schedule as a fraction of the peak (1.0), so that every optimiser follows it.

        ``cosine``: linear warm-up, then a cosine decay to ``final_lr``. ``wsd`` (warm-up,
        stable, decay): linear warm-up, constant, then a linear decay to ``final_lr`` over
        the last ``decay_frac`` of the steps. ``constant``: always the peak.
        """
        if self.schedule == "constant":
            return 1.0
        floor = self.final_lr / self.lr
        if self.warmup_iters and step < self.warmup_iters:
            return (step + 1) / (self.warmup_iters + 1)
        if self.schedule == "wsd":
            decay_start = self.max_iters * (1.0 - self.decay_frac)
            if step < decay_start:
                return 1.0
            progress = min(1.0, (step - decay_start) / max(1.0, self.max_iters - decay_start))
            return 1.0 - progress * (1.0 - floor)
        span = max(1, self.max_iters - self.warmup_iters)
        progress = min(1.0, (step - self.warmup_iters) / span)
        return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - floor)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed; model fields (``n_layer``, ``block_size``...) go to the model."""
        model_names = {f.name for f in dataclasses.fields(ModelConfig)}
        model_changes = {k: changes.pop(k) for k in list(changes) if k in model_names}
        model = dataclasses.replace(self.model, **model_changes) if model_changes else self.model
        return dataclasses.replace(self, model=model, **changes)

    def validate(
        self, n_train_tokens: int | None = None, n_val_tokens: int | None = None
    ) -> TrainConfig:
        """Refuse impossible settings; with token counts, also a block size the data cannot fill."""
        self.model.validate()
        self._check_lengths()
        self._check_optimiser()
        self._check_run()
        if n_train_tokens is not None and n_val_tokens is not None:
            self._check_fits(n_train_tokens, n_val_tokens)
        return self

    def _check_lengths(self) -> None:
        """Batch, steps, intervals and the seed."""
        _positive_int("batch size", self.batch_size)
        _positive_int("max iterations", self.max_iters)
        _positive_int("eval interval", self.eval_interval)
        _positive_int("eval iterations", self.eval_iters)
        _positive_int("sample interval", self.sample_interval)
        if not isinstance(self.warmup_iters, int) or self.warmup_iters < 0:
            raise UserError(f"warm-up iterations must be 0 or more, not {self.warmup_iters}")
        if (
            not isinstance(self.seed, int)
            or isinstance(self.seed, bool)
            or not 0 <= self.seed < 2**63
        ):
            raise UserError(f"seed must be a whole number from 0 to 2^63 - 1, not {self.seed!r}")

    def _check_optimiser(self) -> None:
        """Learning rates, weight decay, clipping, betas, the schedule and the optimiser."""
        for name, value in (("learning rate", self.lr), ("final learning rate", self.final_lr)):
            if not _finite(value):
                raise UserError(f"{name} must be a finite number, not {value}")
            if value <= 0 and not (name == "final learning rate" and value == 0):
                raise UserError(f"{name} must be positive, not {value}")
        if self.final_lr > self.lr:
            raise UserError(
                f"final learning rate {self.final_lr:g} is above the learning rate {self.lr:g}"
            )
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            raise UserError(f"weight decay must be 0 or more, not {self.weight_decay}")
        if not _finite(self.grad_clip) or self.grad_clip < 0:
            raise UserError(f"gradient clipping must be 0 (off) or more, not {self.grad_clip}")
        for name, beta in (("beta1", self.beta1), ("beta2", self.beta2)):
            if not _finite(beta) or not 0.0 <= beta < 1.0:
                raise UserError(f"{name} must be in [0, 1), not {beta}")
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        if not _finite(self.decay_frac) or not 0.0 < self.decay_frac <= 1.0:
            raise UserError(f"decay fraction must be above 0 and at most 1, not {self.decay_frac}")
        self._check_muon()

    def _check_muon(self) -> None:
        """Muon's learning rate and momentum, and a model it can train."""
        if not _finite(self.muon_lr) or self.muon_lr <= 0:
            raise UserError(f"Muon learning rate must be positive, not {self.muon_lr}")
        if not _finite(self.muon_momentum) or not 0.0 <= self.muon_momentum < 1.0:
            raise UserError(f"Muon momentum must be in [0, 1), not {self.muon_momentum}")
        if self.optimizer == "muon" and self.model.kind != "gpt":
            raise UserError("Muon trains the hidden matrices of a GPT: use AdamW for a bigram")

    def _check_run(self) -> None:
        """The target loss, saving, the hardware and the samples."""
        if self.target_val_loss is not None and (
            not _finite(self.target_val_loss) or self.target_val_loss <= 0
        ):
            raise UserError(
                f"target validation loss must be a positive number, not {self.target_val_loss}"
            )
        _non_negative_int("checkpoint interval", self.checkpoint_interval)
        _check_snapshots(self.snapshot_interval, self.max_iters)
        if self.device not in DEVICES:
            raise UserError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if not isinstance(self.sample_tokens, int) or self.sample_tokens < 0:
            raise UserError(f"sample length must be 0 or more, not {self.sample_tokens}")

    def _check_fits(self, n_train_tokens: int, n_val_tokens: int) -> None:
        """A block size both splits of the data can fill."""
        smallest = min(n_train_tokens, n_val_tokens)
        if self.model.block_size >= smallest:
            raise UserError(
                f"block size {self.model.block_size} is larger than the data allows: the "
                f"{'training' if n_train_tokens <= n_val_tokens else 'validation'} split has "
                f"only {smallest} tokens (use a block size below {smallest} or more text)"
            )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["model"] = self.model.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names and k != "model"}
        return cls(model=ModelConfig.from_dict(data.get("model", {})), **values)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _one_of(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _non_negative_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UserError(f"{name} must be 0 or a positive whole number, not {value!r}")


def _check_snapshots(interval: Any, max_iters: int) -> None:
    """A snapshot interval keeps at most MAX_SNAPSHOTS models over the run."""
    _non_negative_int("snapshot interval", interval)
    if interval and max_iters // interval > MAX_SNAPSHOTS:
        raise UserError(
            f"snapshot interval {interval} over {max_iters} max iterations keeps "
            f"{max_iters // interval} snapshots; at most {MAX_SNAPSHOTS} are kept: use an "
            f"interval of at least {-(-max_iters // MAX_SNAPSHOTS)}"
        )


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UserError(f"{name} must be a positive whole number, not {value!r}")


PRESETS: dict[str, TrainConfig] = {
    # Karpathy's bigram.py: a lookup table; it plateaus near loss 2.5.
    "bigram": TrainConfig(
        model=ModelConfig(kind="bigram", n_layer=0, n_head=1, n_embd=0, block_size=8),
        preset="bigram",
        batch_size=32,
        lr=1e-2,
        schedule="constant",
        warmup_iters=0,
        max_iters=3000,
        eval_interval=300,
        eval_iters=50,
        weight_decay=0.0,
    ),
    # nanoGPT's CPU config for char-level Shakespeare: val loss about 1.88 after 2000 steps.
    "baby-gpt": TrainConfig(
        model=ModelConfig(kind="gpt", n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),
        preset="baby-gpt",
        batch_size=12,
        lr=1e-3,
        warmup_iters=100,
        max_iters=2000,
        eval_interval=250,
        eval_iters=20,
    ),
    # The lecture's GPT (10.8M parameters): meant for a GPU.
    "lecture-gpt": TrainConfig(
        model=ModelConfig(kind="gpt", n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2),
        preset="lecture-gpt",
        batch_size=64,
        lr=3e-4,
        min_lr=3e-5,
        warmup_iters=100,
        max_iters=5000,
        eval_interval=500,
        eval_iters=200,
    ),
    # baby-gpt's size and data with the modern recipe (modded-nanogpt, nanochat): Muon on
    # the hidden matrices, rotary positions, QK-norm, ReLU², zero-initialised projections,
    # an untied head, no biases, a logit soft-cap, and a warm-up/stable/decay schedule.
    "speedrun": TrainConfig(
        model=ModelConfig(
            kind="gpt",
            n_layer=4,
            n_head=4,
            n_embd=128,
            block_size=64,
            dropout=0.0,
            bias=False,
            pos="rope",
            qk_norm=True,
            mlp="relu2",
            zero_init=True,
            tied_head=False,
            logit_softcap=15.0,
        ),
        preset="speedrun",
        batch_size=12,
        optimizer="muon",
        lr=6e-3,
        min_lr=6e-4,
        muon_lr=0.03,
        schedule="wsd",
        decay_frac=0.4,
        warmup_iters=20,
        max_iters=2000,
        eval_interval=250,
        eval_iters=20,
        beta1=0.8,
        beta2=0.95,
        weight_decay=0.0,
    ),
}


@dataclass(frozen=True)
class Trick:
    """One ingredient of the speedrun, described once: the setting it changes, the value that
    turns it on and off, why it helps in one line and where it comes from, and how the train
    command and the page offer it. The command's recipe switches, the page's switches and the
    race's ablations are all made from these descriptions.

    The switch takes one of ``choices`` (a flag with choices, a select box); or, with
    ``flag_values``, words that stand for values (``--head tied``); with neither, a yes/no
    switch (``--qk-norm/--no-qk-norm``) for a yes/no setting, else a number flag, and on the
    page a check box that turns the trick on."""

    setting: str  # a TrainConfig or ModelConfig field
    on: Any
    off: Any
    title: str
    why: str
    source: str
    flag: str  # the train command's switch
    help: str
    label: str  # the page's switch
    choices: tuple[str, ...] = ()
    flag_values: dict[str, Any] | None = None

    @property
    def architecture(self) -> bool:
        """Whether the trick changes the model (a GPT's), rather than how it is trained."""
        return self.setting in {f.name for f in dataclasses.fields(ModelConfig)}

    def value_in(self, config: TrainConfig) -> Any:
        """The trick's setting in ``config``."""
        return getattr(config.model if self.architecture else config, self.setting)


TRICKS: dict[str, Trick] = {
    "muon": Trick(
        setting="optimizer",
        on="muon",
        off="adamw",
        title="Muon optimizer",
        why="orthogonalised momentum updates every direction of a hidden matrix at the same "
        "rate, so it learns more per step than AdamW",
        source="https://kellerjordan.github.io/posts/muon/",
        flag="--optimizer",
        help="muon: Muon on hidden matrices",
        label="Optimizer",
        choices=OPTIMIZERS,
    ),
    "rope": Trick(
        setting="pos",
        on="rope",
        off="learned",
        title="Rotary position embeddings",
        why="rotating queries and keys by their position makes attention depend on relative "
        "distance, with nothing to learn",
        source="https://arxiv.org/abs/2104.09864",
        flag="--pos",
        help="position embedding table or rotary",
        label="Positions",
        choices=POSITIONS,
    ),
    "qk_norm": Trick(
        setting="qk_norm",
        on=True,
        off=False,
        title="QK-norm",
        why="normalised queries and keys keep attention logits bounded, which allows a "
        "higher learning rate without blow-ups",
        source="https://arxiv.org/abs/2010.04245",
        flag="--qk-norm",
        help="RMS-normalise queries and keys",
        label="QK-norm",
    ),
    "relu2": Trick(
        setting="mlp",
        on="relu2",
        off="gelu",
        title="ReLU² activation",
        why="relu(x)² is sparse and sharper than GELU and trained slightly better in the "
        "speedrun's ablations",
        source="https://arxiv.org/abs/2109.08668",
        flag="--mlp",
        help="MLP activation: GELU or ReLU squared",
        label="MLP activation",
        choices=MLPS,
    ),
    "zero_init": Trick(
        setting="zero_init",
        on=True,
        off=False,
        title="Zero-initialised projections",
        why="each block starts as the identity, so the untrained stack passes the embedding "
        "straight through and learns from there",
        source="https://github.com/KellerJordan/modded-nanogpt",
        flag="--zero-init",
        help="start every block's output projection at zero",
        label="Zero-init projections",
    ),
    "untied_head": Trick(
        setting="tied_head",
        on=False,
        off=True,
        title="Untied output head",
        why="the input embedding and the output layer solve different problems; separate "
        "weights let each do its own",
        source="https://github.com/KellerJordan/modded-nanogpt",
        flag="--head",
        help="share the output layer with the embedding",
        label="Untied head",
        flag_values={"tied": True, "untied": False},
    ),
    "softcap": Trick(
        setting="logit_softcap",
        on=15.0,
        off=0.0,
        title="Logit soft-cap",
        why="c·tanh(z/c) keeps the output logits from growing without bound early on",
        source="https://arxiv.org/abs/2408.00118",
        flag="--logit-softcap",
        help="bound logits to +-X (0: off)",
        label="Logit soft-cap",
    ),
    "wsd": Trick(
        setting="schedule",
        on="wsd",
        off="cosine",
        title="Warm-up, stable, decay schedule",
        why="holding the peak learning rate and decaying only at the end learns fast early "
        "and still settles into a low loss",
        source="https://arxiv.org/abs/2405.18392",
        flag="--schedule",
        help="cosine, constant, or wsd (warm-up/stable/decay)",
        label="Schedule",
        choices=SCHEDULES,
    ),
}


def without_trick(config: TrainConfig, trick: str) -> TrainConfig:
    """``config`` with one ingredient of :data:`TRICKS` turned off (for ablations)."""
    if trick not in TRICKS:
        raise UserError(f"unknown trick {trick!r}; choose one of {', '.join(TRICKS)}")
    entry = TRICKS[trick]
    changed = config.replace(**{entry.setting: entry.off})
    if trick == "muon":  # AdamW alone on every weight: baby-gpt's optimiser settings
        changed = changed.replace(lr=1e-3, min_lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.1)
    return changed.replace(label=f"{config.preset} without {entry.title}")


#: Settings that only a GPT has (a bigram preset ignores them): its size and every trick
#: that changes the architecture.
GPT_ONLY = ("n_layer", "n_head", "n_embd")
GPT_ONLY += tuple(trick.setting for trick in TRICKS.values() if trick.architecture)


def config_from_settings(name: str, *, interactive: bool = False, **settings: Any) -> TrainConfig:
    """The config a person asked for: a preset with the settings they changed (None: unchanged).

    The CLI and the Training ground page both build their runs here. A new peak learning
    rate moves the final one with it (same ratio as the preset) unless that is set too.
    ``interactive`` shortens evaluation for the page's live runs: about ten evaluations
    per run of at most ten batches each, and a warm-up of at most a tenth of the steps.
    """
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[name]
    settings = {k: v for k, v in settings.items() if v is not None}
    if base.model.kind == "bigram":
        settings = {k: v for k, v in settings.items() if k not in GPT_ONLY}
    lr = settings.get("lr")
    if lr is not None and "min_lr" not in settings and _finite(lr) and lr > 0:
        settings["min_lr"] = lr * (base.final_lr / base.lr)
    if interactive:
        max_iters = settings.get("max_iters", base.max_iters)
        if isinstance(max_iters, int) and max_iters > 0:
            settings.setdefault("eval_interval", min(base.eval_interval, max(20, max_iters // 10)))
            settings.setdefault("warmup_iters", min(base.warmup_iters, max_iters // 10))
        settings.setdefault("eval_iters", min(base.eval_iters, 10))
    return base.replace(**settings)


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A named preset, with fields overridden (model fields included); not validated yet."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return PRESETS[name].replace(**overrides)
