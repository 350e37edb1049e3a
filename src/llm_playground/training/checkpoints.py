"""Saved training runs: weights, settings, tokenizer, metrics, and a Hugging Face copy.

A checkpoint is a folder::

    config.json                 versioned: model and training settings, step, losses, tokenizer
    model.safetensors           the weights (tied embeddings stored once)
    tokenizer.json              a character or BPE tokenizer (a tiktoken one is named in config.json)
    metrics.jsonl               one line per evaluation: step, train_loss, val_loss, elapsed_s, tokens_per_s
    training_state.safetensors  optimiser moments, step and random-number states, for resuming
    hf/                         the same GPT as a transformers ``GPT2LMHeadModel`` with its tokenizer

Nothing here unpickles: tensors come from safetensors and everything else from JSON.
Runs saved from the page and the CLI live under ``get_paths().runs/<name>/``;
:func:`list_runs` lists them for the Generation, Fine-tuner and Evaluator labs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_file, save_model

from llm_playground.core.errors import UserError
from llm_playground.core.paths import get_paths, package_data
from llm_playground.tokenization.tokenizer import bytes_to_unicode
from llm_playground.training.config import CONFIG_VERSION, TrainConfig
from llm_playground.training.corpus import tokenizer_from_spec, tokenizer_spec
from llm_playground.training.model import GPT, build_model

FORMAT = "llm-playground-checkpoint"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.jsonl"
STATE_FILE = "training_state.safetensors"
HF_DIR = "hf"
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


@dataclass(frozen=True)
class RunState:
    """Where a run stands when it is saved: its last losses, the optimiser and random states
    that let it resume exactly, and what the config file records of the target it met and
    of how its precision was decided."""

    train_loss: float | None = None
    val_loss: float | None = None
    optimizer: torch.optim.Optimizer | None = None
    rng: dict[str, torch.Tensor] | None = None
    target: dict[str, Any] | None = None
    precision: dict[str, Any] | None = None


def save_checkpoint(
    out_dir: str | Path,
    model: torch.nn.Module,
    config: TrainConfig,
    tokenizer,
    step: int,
    state: RunState | None = None,
    export_hf: bool = True,
) -> Path:
    """Write a checkpoint folder (see the module docstring); returns its path.
    ``state``: the run's losses, and what resuming needs (see :class:`RunState`).

    Every file is written to a temporary name and renamed into place, the settings last,
    so a crash or a kill in the middle of a save leaves the previous checkpoint loadable.
    """
    state = state or RunState()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    model = _unwrap(model)
    spec = tokenizer_spec(tokenizer)
    tok_entry = {"type": spec["type"], "name": spec["name"]}
    if spec["type"] == "json":
        _write_json(out / TOKENIZER_FILE, spec["json"])
        tok_entry["file"] = TOKENIZER_FILE
    classic = isinstance(model, GPT) and model.config.classic
    meta = {
        "format": FORMAT,
        "version": CONFIG_VERSION,
        "step": int(step),
        "train_loss": state.train_loss,
        "val_loss": state.val_loss,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "model": model.config.to_dict(),
        "train": config.to_dict(),
        "tokenizer": tok_entry,
        "label": config.run_label,
        "hf_export": HF_DIR if classic and export_hf else None,
    }
    if isinstance(model, GPT) and not classic:
        meta["hf_export_note"] = NO_HF_EXPORT
    if state.target is not None:
        meta["target"] = state.target
    if state.precision is not None:
        meta["precision"] = state.precision
    write_atomically(
        out / WEIGHTS_FILE, lambda tmp: save_model(model, str(tmp), metadata={"format": FORMAT})
    )
    if state.optimizer is not None:
        write_atomically(
            out / STATE_FILE,
            lambda tmp: save_training_state(tmp, state.optimizer, step, state.rng or {}),
        )
    _write_json(out / CONFIG_FILE, meta)
    if export_hf and classic:
        _replace_folder(out / HF_DIR, lambda tmp: export_hf_model(model, tokenizer, tmp))
    return out


#: Why a GPT with any of the speedrun's architecture switches has no ``hf/`` folder.
NO_HF_EXPORT = (
    "no Hugging Face GPT-2 export: this model uses switches GPT-2 does not have (rotary "
    "positions, QK-norm, ReLU², an untied head or a logit soft-cap); the playground's "
    "own forward pass loads it in Labs 3 and 5"
)


def runs_own_forward_pass(folder: str | Path) -> bool:
    """Whether ``folder`` is a Lab 2 GPT run without a GPT-2 export (the speedrun's
    architectures): Labs 3 and 5 load it through :mod:`llm_playground.training.causal_lm`."""
    folder = Path(folder)
    if (folder / HF_DIR / CONFIG_FILE).exists():
        return False
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(meta, dict)
        and meta.get("format") == FORMAT
        and meta.get("model", {}).get("kind") == "gpt"
    )


def _temp_name(path: Path, suffix: str) -> Path:
    """A hidden name beside ``path`` that no other writer (process or thread) uses."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{suffix}")


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a temporary name beside ``path``, then rename it into place."""
    tmp = _temp_name(path, "tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _replace_folder(path: Path, write: Callable[[Path], Any]) -> None:
    """Write a folder under a temporary name, then swap it in for the old one."""
    tmp, old = _temp_name(path, "tmp"), _temp_name(path, "old")
    try:
        write(tmp)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, data: Any) -> None:
    write_atomically(
        path,
        lambda tmp: tmp.write_text(
            json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8"
        ),
    )


def read_meta(ckpt_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint, checked for format and version."""
    path = Path(ckpt_dir).expanduser() / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{Path(ckpt_dir)} is not a checkpoint folder (no {CONFIG_FILE})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is not an LLM Playground checkpoint")
    if int(meta.get("version", 0)) > CONFIG_VERSION:
        raise UserError(f"{path} was written by a newer version (format {meta.get('version')})")
    return meta


@dataclass
class LoadedCheckpoint:
    model: torch.nn.Module
    config: TrainConfig
    tokenizer: Any
    meta: dict[str, Any]
    path: Path

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))


def load_tokenizer_of(ckpt_dir: str | Path, meta: dict[str, Any] | None = None):
    ckpt = Path(ckpt_dir).expanduser()
    entry = (meta or read_meta(ckpt))["tokenizer"]
    if entry["type"] == "json":
        data = json.loads((ckpt / entry.get("file", TOKENIZER_FILE)).read_text(encoding="utf-8"))
        return tokenizer_from_spec({"type": "json", "json": data, "name": entry.get("name")})
    return tokenizer_from_spec({"type": "name", "name": entry["name"]})


def load_checkpoint(ckpt_dir: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """The model (in eval mode), settings and tokenizer of a checkpoint folder."""
    ckpt = Path(ckpt_dir).expanduser()
    meta = read_meta(ckpt)
    config = TrainConfig.from_dict(meta["train"])
    model_config = type(config.model).from_dict(meta["model"])
    config = config.replace(**model_config.to_dict())
    model = build_model(model_config)
    load_weights(model, ckpt / WEIGHTS_FILE)
    model.to(device).eval()
    return LoadedCheckpoint(model, config, load_tokenizer_of(ckpt, meta), meta, ckpt)


def unreadable(path: Path, exc: BaseException) -> UserError:
    """The one-line error for a weights or state file that cannot be read."""
    if isinstance(exc, FileNotFoundError):
        return UserError(f"{path} is missing: the checkpoint folder is incomplete")
    reason = " ".join(str(exc).split())[:160]
    return UserError(
        f"{path} cannot be read ({reason}): the file is damaged or truncated, or not a "
        "safetensors file; train again or use another checkpoint"
    )


def load_weights(model: torch.nn.Module, path: str | Path, device: str = "cpu") -> None:
    """Load ``model.safetensors`` into ``model``; a damaged, truncated or mismatched file
    is one :class:`UserError` naming the file (never a safetensors or torch traceback)."""
    path = Path(path)
    try:
        missing, unexpected = load_model(model, str(path), strict=False, device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise unreadable(path, exc) from None
    except RuntimeError as exc:  # tensors of other shapes than the config's model
        raise UserError(
            f"{path} does not match its {CONFIG_FILE}: {str(exc).splitlines()[-1].strip()[:200]}"
        ) from None
    if unexpected or [m for m in missing if m != "lm_head.weight"]:
        raise UserError(
            f"{path} does not match its {CONFIG_FILE} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


# --- optimiser and random-number state (for resuming) ----------------------------------------


def save_training_state(
    path: Path, optimizer: torch.optim.Optimizer, step: int, rng: dict[str, torch.Tensor]
) -> None:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{key}"] = value.detach().to("cpu").contiguous()
    for key, value in rng.items():
        tensors[f"rng.{key}"] = value.detach().to("cpu").contiguous()
    metadata = {
        "format": FORMAT,
        "step": str(int(step)),
        "param_groups": json.dumps(sd["param_groups"]),
    }
    save_file(tensors, str(path), metadata=metadata)


def load_training_state(path: Path) -> tuple[dict[str, Any], int, dict[str, torch.Tensor]]:
    """The optimiser state dict, the step and the random-number states saved by :func:`save_training_state`."""
    if not path.is_file():
        raise UserError(f"{path.parent} has no {STATE_FILE}: it cannot be resumed")
    state: dict[int, dict[str, torch.Tensor]] = {}
    rng: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                kind, _, rest = key.partition(".")
                if kind == "optimizer":
                    pid, _, name = rest.partition(".")
                    state.setdefault(int(pid), {})[name] = f.get_tensor(key)
                elif kind == "rng":
                    rng[rest] = f.get_tensor(key)
        groups = json.loads(metadata["param_groups"])
        step = int(metadata["step"])
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise unreadable(path, exc) from None
    return {"state": state, "param_groups": groups}, step, rng


# --- Hugging Face export -------------------------------------------------------------------


def hf_config(model: GPT):
    from transformers import GPT2Config

    c = model.config
    return GPT2Config(
        vocab_size=c.vocab_size,
        n_positions=c.block_size,
        n_embd=c.n_embd,
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_inner=4 * c.n_embd,
        activation_function="gelu_new",
        resid_pdrop=c.dropout,
        embd_pdrop=c.dropout,
        attn_pdrop=c.dropout,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
        scale_attn_weights=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The GPT's weights under GPT-2's names. ``Conv1D`` keeps ``(in, out)`` matrices, so
    every linear weight is transposed; missing biases (``bias=False``) become zeros."""
    c = model.config
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    out = {"transformer.wte.weight": sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"]}

    def norm(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.weight"]
        out[f"{dst}.bias"] = sd.get(f"{src}.bias", torch.zeros(c.n_embd))

    def linear(src: str, dst: str) -> None:
        w = sd[f"{src}.weight"]
        out[f"{dst}.weight"] = w.t().contiguous()
        out[f"{dst}.bias"] = sd.get(f"{src}.bias", torch.zeros(w.shape[0]))

    for i in range(c.n_layer):
        p, q = f"h.{i}", f"transformer.h.{i}"
        norm(f"{p}.ln_1", f"{q}.ln_1")
        linear(f"{p}.attn.c_attn", f"{q}.attn.c_attn")
        linear(f"{p}.attn.c_proj", f"{q}.attn.c_proj")
        norm(f"{p}.ln_2", f"{q}.ln_2")
        linear(f"{p}.mlp.c_fc", f"{q}.mlp.c_fc")
        linear(f"{p}.mlp.c_proj", f"{q}.mlp.c_proj")
    norm("ln_f", "transformer.ln_f")
    out["lm_head.weight"] = sd["wte.weight"]
    return out


def to_hf_model(model: GPT):
    """A ``transformers.GPT2LMHeadModel`` with this GPT's weights (eval mode, fp32)."""
    from transformers import GPT2LMHeadModel

    model = _unwrap(model)
    hf = GPT2LMHeadModel(hf_config(model))
    missing, unexpected = hf.load_state_dict(hf_state_dict(model), strict=False)
    missing = [m for m in missing if not m.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing or unexpected:
        raise RuntimeError(f"GPT-2 export mismatch: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    return hf.eval()


def export_hf_model(model: GPT, tokenizer, out_dir: str | Path) -> Path:
    """Save the GPT as a Hugging Face GPT-2 model folder with a matching tokenizer."""
    from transformers.utils import logging as hf_logging

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar under the CLI's own
    try:
        to_hf_model(model).save_pretrained(str(out))
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    hf_tok = hf_tokenizer(tokenizer)
    if hf_tok is not None:
        hf_tok.save_pretrained(str(out))
    return out


def hf_tokenizer(tokenizer):
    """A transformers tokenizer that gives the same ids as ``tokenizer``, or None when unknown.

    Character and BPE tokenizers become a ``PreTrainedTokenizerFast`` built with the
    ``tokenizers`` library; GPT-2's comes from the vocabulary files shipped in the package.
    """
    from transformers import GPT2TokenizerFast, PreTrainedTokenizerFast

    kind = getattr(tokenizer, "kind", "")
    if kind == "char":
        return PreTrainedTokenizerFast(
            tokenizer_object=_char_tokenizer_object(list(tokenizer.chars)),
            clean_up_tokenization_spaces=False,
        )
    if kind == "bpe":
        return PreTrainedTokenizerFast(
            tokenizer_object=_bpe_tokenizer_object(tokenizer.bpe),
            clean_up_tokenization_spaces=False,
        )
    if getattr(tokenizer, "name", "") == "gpt2":
        import tempfile

        # GPT2TokenizerFast(vocab_file=..., merges_file=...) builds an empty vocabulary in
        # transformers 5; from_pretrained on a folder with vocab.json and merges.txt does not.
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(package_data("gpt2", "encoder.json"), Path(tmp) / "vocab.json")
            shutil.copy(package_data("gpt2", "vocab.bpe"), Path(tmp) / "merges.txt")
            return GPT2TokenizerFast.from_pretrained(tmp)
    return None


def _char_tokenizer_object(chars: list[str]):
    """A ``tokenizers`` pipeline that maps each character to its id and joins them back."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab={c: i for i, c in enumerate(chars)}, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return tok


def _bpe_tokenizer_object(bpe):
    """The playground's byte-level BPE (ids 0-255 bytes, merge i -> 256+i) as a ``tokenizers`` BPE."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    from llm_playground.tokenization.bpe import SPLIT_PATTERNS

    alphabet = ByteLevel.alphabet()  # GPT-2's printable stand-ins for the 256 bytes
    byte_char = bytes_to_unicode()
    assert set(byte_char.values()) == set(alphabet)
    names = ["".join(byte_char[b] for b in token) for token in bpe.vocab]
    vocab = {name: i for i, name in enumerate(names)}
    merges = [(names[a], names[b]) for a, b in bpe.merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=False))
    pattern = SPLIT_PATTERNS.get(bpe.pattern, bpe.pattern) if bpe.pattern is not None else None
    steps = []
    if pattern:
        steps.append(pre_tokenizers.Split(Regex(pattern), behavior="isolated"))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    return tok


# --- runs for the other labs ---------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    kind: str
    summary: str
    step: int
    val_loss: float | None
    label: str
    hf_path: Path | None
    saved_at: str


def read_metrics(ckpt_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(ckpt_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def describe(meta: dict[str, Any]) -> str:
    m = meta["model"]
    tok = meta["tokenizer"]["name"]
    shape = (
        "bigram table"
        if m["kind"] == "bigram"
        else f"GPT {m['n_layer']} layers x {m['n_head']} heads x {m['n_embd']} dims, block {m['block_size']}"
    )
    return f"{meta['train'].get('preset', '')}: {shape}, {tok} tokenizer ({m['vocab_size']} tokens)"


def list_runs(root: str | Path | None = None) -> list[RunInfo]:
    """Saved runs under ``get_paths().runs`` (newest first), for Labs 3 to 5."""
    base = Path(root) if root else get_paths().runs
    if not base.is_dir():
        return []
    runs = []
    for folder in base.iterdir():
        if folder.name.startswith(".") or not (folder / CONFIG_FILE).is_file():
            continue
        try:
            meta = read_meta(folder)
        except UserError:
            continue
        metrics = read_metrics(folder)
        val = metrics[-1]["val_loss"] if metrics else meta.get("val_loss")
        hf = folder / HF_DIR
        runs.append(
            RunInfo(
                name=folder.name,
                path=folder,
                kind=meta["model"]["kind"],
                summary=describe(meta),
                step=int(meta.get("step", 0)),
                val_loss=None if val is None else float(val),
                label=meta.get("label", ""),
                hf_path=hf if (hf / "config.json").is_file() else None,
                saved_at=meta.get("saved_at", ""),
            )
        )
    return sorted(runs, key=lambda r: r.saved_at, reverse=True)


def check_run_name(name: str) -> str:
    name = (name or "").strip()
    if not RUN_NAME.match(name):
        raise UserError(
            "a run name is 1 to 64 letters, digits, dots, dashes or underscores, "
            "starting with a letter or digit"
        )
    return name


class OutputExists(UserError):
    """The output folder of a run holds something already."""


def prepare_output(out_dir: str | Path, replace: bool = False) -> None:
    """Make sure a new run may write to ``out_dir``.

    An absent or empty folder is fine. A folder holding a run is refused unless
    ``replace`` (then the old run is removed); anything else is never deleted.
    """
    out = Path(out_dir).expanduser()
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out_dir} is a file, not a folder: choose another output folder")
    if not any(out.iterdir()):
        return
    if not (out / CONFIG_FILE).is_file() and not (out / METRICS_FILE).is_file():
        raise UserError(
            f"{out_dir} is not empty and holds no training run: choose another output folder"
        )
    if not replace:
        raise OutputExists(f"{out_dir} already holds a training run")
    shutil.rmtree(out)


def save_run_as(src_dir: str | Path, name: str, overwrite: bool = False) -> Path:
    """Copy a finished run folder to ``runs/<name>/`` so the other labs list it.

    The copy is made under a hidden temporary name and renamed into place, so the other
    labs never list a half-copied run, and two people saving under one name at once never
    mix their files: without ``overwrite`` the second is refused."""
    name = check_run_name(name)
    dest = get_paths().ensure().runs / name
    if dest.exists() and not overwrite:
        raise UserError(f"a run named {name!r} already exists: pick another name")
    tmp, old = _temp_name(dest, "tmp"), _temp_name(dest, "old")
    try:
        shutil.copytree(Path(src_dir), tmp, ignore=shutil.ignore_patterns("*.tmp", "*.old"))
        if overwrite and dest.exists():
            os.replace(dest, old)
        try:
            os.rename(tmp, dest)  # fails when another save created ``dest`` meanwhile
        except OSError:
            raise UserError(f"a run named {name!r} already exists: pick another name") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return dest
