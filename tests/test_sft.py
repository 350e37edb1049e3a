"""LoRA SFT: known parameter counts, loss parity with transformers, training lowers the loss,
saved adapters load with plain peft and give the same logits, merging keeps the logits."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from llm_playground.core.errors import UserError
from llm_playground.core.events import Done, Metric, Progress, Started
from llm_playground.finetuning.instructions import Example
from llm_playground.finetuning.lora import (
    LoRAConfig,
    add_adapter,
    check_adapter_dir,
    count_trainable,
    merge_and_save,
)
from llm_playground.finetuning.outputs import OutputExists
from llm_playground.finetuning.sft import (
    IGNORE,
    AdapterNotes,
    SFTConfig,
    SFTDone,
    SFTEval,
    SFTStarted,
    SFTStep,
    collate,
    encode_all,
    response_loss,
    train_sft,
)
from llm_playground.generation.registry import load_model

BASE = "smollm2-135m-instruct"
TINY = [
    Example("What is the capital of France?", "Paris."),
    Example("Convert the following line to uppercase.", "HELLO THERE.", input="Hello there."),
    Example("What is 2 plus 3?", "2 + 3 = 5."),
    Example("Name a primary colour.", "Red."),
]
PROBE = "### Instruction:\nWhat is the capital of France?\n\n### Response:\nParis."


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Six steps on four examples (held out = the same four, so the loss must fall)."""
    out = tmp_path_factory.mktemp("adapter") / "tiny"
    config = SFTConfig(
        base=BASE,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=("q_proj", "v_proj"),
        lr=2e-3,
        max_steps=6,
        seq_len=48,
        batch_size=2,
        warmup_steps=0,
        dtype="float32",
        seed=0,
    )
    loaded = load_model(BASE)
    notes = AdapterNotes(data_name="tiny")
    events = list(train_sft(config, TINY, TINY, out_dir=out, loaded=loaded, notes=notes))
    return config, loaded, events, out


def test_lora_r8_on_q_and_v_of_smollm2_has_460800_trainable_parameters():
    loaded = load_model(BASE)
    model = add_adapter(loaded.model, LoRAConfig(r=8, target_modules=("q_proj", "v_proj")))
    trainable, total = count_trainable(model)
    assert trainable == 460_800  # 30 layers x (q: 8*(576+576) + v: 8*(576+192))
    assert round(100 * trainable / total, 3) == 0.341


def test_unknown_target_module_is_a_user_error():
    loaded = load_model(BASE)
    with pytest.raises(UserError, match="no module named attn_x"):
        add_adapter(loaded.model, LoRAConfig(target_modules=("attn_x",)))


def test_response_only_loss_matches_transformers_and_masks_the_prompt():
    loaded = load_model(BASE)
    enc = encode_all(loaded.tokenizer, TINY, 64)
    batch = collate(enc, loaded.tokenizer.pad_token_id)
    for i, e in enumerate(enc):  # the prompt and the padding carry no loss; EOS closes the response
        assert (batch["labels"][i, : e.n_prompt] == IGNORE).all()
        assert batch["labels"][i, len(e.ids) - 1] == loaded.tokenizer.eos_token_id
        assert (batch["labels"][i, len(e.ids) :] == IGNORE).all()
    with torch.no_grad():
        total, n = response_loss(loaded.model, batch)
        ref = loaded.model(**batch).loss
    assert n == int((batch["labels"][:, 1:] != IGNORE).sum())
    assert float(total / n) == pytest.approx(float(ref), rel=1e-5)


def test_events_and_a_few_steps_lower_the_loss(trained):
    config, _, events, out = trained
    started = events[0]
    assert isinstance(started, SFTStarted) and started.trainable == 460_800
    assert started.total == config.max_steps and started.total_parameters > 134_000_000
    assert all(isinstance(e, Progress) for e in events if isinstance(e, SFTStep))
    assert all(isinstance(e, Metric) for e in events if isinstance(e, SFTEval))
    assert isinstance(started, Started) and isinstance(events[-1], Done)
    assert [e.step for e in events if isinstance(e, SFTStep)] == [1, 2, 3, 4, 5, 6]
    evals = [e for e in events if isinstance(e, SFTEval)]
    done = events[-1]
    assert isinstance(done, SFTDone) and not done.stopped and done.step == 6
    assert done.heldout_loss_before == evals[0].heldout_loss
    assert done.heldout_loss_after < done.heldout_loss_before - 0.3
    meta = json.loads((out / "playground.json").read_text())
    assert meta["base"] == BASE and meta["version"] == 1 and meta["chat"] is False
    assert meta["prompt_format"]["name"] == "alpaca-short-v1"
    assert meta["heldout_loss_after"] == pytest.approx(done.heldout_loss_after, abs=1e-5)
    assert meta["settings"]["lora_r"] == 8 and meta["settings"]["target_modules"] == [
        "q_proj",
        "v_proj",
    ]
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary folder left


def test_saved_adapter_loads_with_plain_peft_and_gives_identical_logits(trained):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llm_playground.generation.registry import offline_model_dir

    _, loaded, _, out = trained
    ids = loaded.tokenizer(PROBE, return_tensors="pt")["input_ids"]
    trained_model = loaded.model  # the PeftModel train_sft built in place
    trained_model.eval()
    fresh = AutoModelForCausalLM.from_pretrained(str(offline_model_dir(BASE)), dtype=torch.float32)
    plain = PeftModel.from_pretrained(fresh, str(out)).eval()
    with torch.no_grad():
        a = trained_model(input_ids=ids).logits
        b = plain(input_ids=ids).logits
        with plain.disable_adapter():
            c = plain(input_ids=ids).logits
    assert torch.equal(a, b)
    assert not torch.allclose(b, c, atol=1e-3)  # the adapter changes the model


def test_merged_model_gives_the_same_logits_as_the_adapter(trained, tmp_path):
    from transformers import AutoModelForCausalLM

    _, loaded, _, out = trained
    merged_dir = merge_and_save(out, tmp_path / "merged")
    assert (merged_dir / "model.safetensors").exists() and (
        merged_dir / "tokenizer_config.json"
    ).exists()
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
    ids = loaded.tokenizer(PROBE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a = loaded.model(input_ids=ids).logits
        b = merged(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-4)


def test_adapter_is_listed_by_the_registry_at_once(trained):
    import shutil

    from llm_playground.core.paths import get_paths
    from llm_playground.generation.registry import list_models

    _, _, _, out = trained
    shutil.copytree(out, get_paths().ensure().adapters / "tiny-sft")
    infos = {i.name: i for i in list_models(include_hub=False)}
    assert infos["tiny-sft"].kind == "adapter" and infos["tiny-sft"].base == BASE
    reloaded = load_model("tiny-sft")
    assert reloaded.model.peft_config["default"].r == 8


def test_a_stop_before_the_first_step_saves_nothing(tmp_path):
    stop = threading.Event()
    stop.set()
    config = SFTConfig(base=BASE, max_steps=3, seq_len=32, batch_size=2, dtype="float32")
    events = list(
        train_sft(
            config, TINY, TINY[:1], out_dir=tmp_path / "x", stop_event=stop, loaded=load_model(BASE)
        )
    )
    done = events[-1]
    assert isinstance(done, SFTDone) and done.stopped and done.step == 0 and done.out_dir is None
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lora_r": 0}, "LoRA rank must be at least 1"),
        ({"lr": -1.0}, "learning rate"),
        ({"lr": float("nan")}, "learning rate"),
        ({"max_steps": 0}, "number of steps"),
        ({"seq_len": 2}, "sequence length"),
        ({"lora_dropout": 1.5}, "LoRA dropout"),
        ({"target_modules": ()}, "target modules"),
        ({"seed": -1}, "seed"),
        ({"dtype": "fp8"}, "dtype"),
    ],
)
def test_bad_settings_are_user_errors_in_words_not_flags(kwargs, message):
    with pytest.raises(UserError, match=message) as info:
        SFTConfig(**kwargs).validate()
    assert "--" not in str(info.value)  # the library speaks of settings, the CLI of flags


def test_an_existing_adapter_is_replaced_only_when_allowed(trained, tmp_path):
    _, _, _, out = trained
    with pytest.raises(OutputExists):
        check_adapter_dir(out)
    assert check_adapter_dir(out, force=True) == out
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "a.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="holds no adapter"):
        check_adapter_dir(foreign, force=True)
    with pytest.raises(OutputExists):  # refused before any model is loaded or trained
        next(train_sft(SFTConfig(), TINY, TINY, out_dir=out))
