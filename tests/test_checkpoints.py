"""Checkpoints: round trips, resumable state, the Hugging Face export and the list of runs."""

import json

import pytest
import torch

from llm_playground.core.errors import UserError
from llm_playground.core.paths import get_paths
from llm_playground.tokenization.tokenizer import CharTokenizer
from llm_playground.training.checkpoints import (
    RunState,
    check_run_name,
    export_hf_model,
    hf_tokenizer,
    list_runs,
    load_checkpoint,
    load_training_state,
    read_meta,
    save_checkpoint,
    save_run_as,
    save_training_state,
)
from llm_playground.training.config import ModelConfig, preset
from llm_playground.training.corpus import load_corpus, load_tokenizer
from llm_playground.training.model import GPT, build_model
from llm_playground.training.optim import configure_optimizers

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


def trained_gpt(bias=True, vocab=65, n_layer=2):
    torch.manual_seed(0)
    model = GPT(
        ModelConfig(
            kind="gpt",
            vocab_size=vocab,
            n_layer=n_layer,
            n_head=4,
            n_embd=32,
            block_size=24,
            bias=bias,
        )
    )
    with torch.no_grad():  # move every weight off its initial value, biases and norms included
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.mark.parametrize("bias", [True, False])
def test_hugging_face_export_gives_the_same_logits(tmp_path, bias):
    from transformers import GPT2LMHeadModel

    model = trained_gpt(bias=bias)
    tok = CharTokenizer.from_text(load_corpus().text)
    export_hf_model(model, tok, tmp_path / "hf")
    hf = GPT2LMHeadModel.from_pretrained(str(tmp_path / "hf")).eval()
    assert hf.config.model_type == "gpt2" and hf.config.n_positions == 24
    x = torch.randint(65, (3, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, _ = model(x)
        theirs = hf(x).logits
    assert (ours - theirs).abs().max().item() < 1e-4
    # tied embeddings survive the round trip
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()


def test_hf_char_tokenizer_gives_the_same_ids_and_text(tmp_path):
    from transformers import AutoTokenizer

    tok = CharTokenizer.from_text(load_corpus().text)
    hf_tokenizer(tok).save_pretrained(str(tmp_path))
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    ids = tok.encode(TEXT)
    assert hf(TEXT)["input_ids"] == ids
    assert hf.decode(ids) == TEXT


def test_hf_gpt2_tokenizer_has_the_real_vocabulary(tmp_path):
    from transformers import AutoTokenizer

    tok = load_tokenizer("gpt2")
    hf_tokenizer(tok).save_pretrained(str(tmp_path))
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    text = "Hello world, To be or not to be!"
    assert hf(text)["input_ids"] == [15496, 995, 11, 1675, 307, 393, 407, 284, 307, 0]
    assert list(tok.encode(text)) == hf(text)["input_ids"] and len(hf) == 50257


def test_checkpoint_round_trip(tmp_path):
    model = trained_gpt()
    tok = CharTokenizer.from_text(load_corpus().text)
    config = preset("baby-gpt", n_layer=2, n_head=4, n_embd=32, block_size=24)
    state = RunState(train_loss=2.0, val_loss=2.1)
    save_checkpoint(tmp_path, model, config, tok, step=42, state=state)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["version"] == 1 and meta["step"] == 42 and meta["tokenizer"]["type"] == "json"
    loaded = load_checkpoint(tmp_path)
    x = torch.randint(65, (2, 24))
    with torch.no_grad():
        assert torch.equal(loaded.model(x)[0], model(x)[0])
    assert loaded.tokenizer.encode(TEXT) == tok.encode(TEXT)
    assert loaded.step == 42 and loaded.config.model.n_embd == 32
    assert (tmp_path / "hf" / "config.json").is_file()
    # no pickle anywhere
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt"))


def test_bigram_checkpoint_has_no_hf_export(tmp_path):
    model = build_model(ModelConfig(kind="bigram", vocab_size=65, block_size=8))
    tok = CharTokenizer.from_text(load_corpus().text)
    save_checkpoint(tmp_path, model, preset("bigram"), tok, step=1)
    assert not (tmp_path / "hf").exists()
    assert load_checkpoint(tmp_path).model.config.kind == "bigram"


def test_gpt2_tokenizer_is_recorded_by_name(tmp_path):
    model = trained_gpt(vocab=50257, n_layer=1)
    save_checkpoint(
        tmp_path,
        model,
        preset("baby-gpt", tokenizer="gpt2"),
        load_tokenizer("gpt2"),
        1,
        export_hf=False,
    )
    assert read_meta(tmp_path)["tokenizer"] == {"type": "name", "name": "gpt2"}
    assert not (tmp_path / "tokenizer.json").exists()
    assert load_checkpoint(tmp_path).tokenizer.encode("Hello world") == [15496, 995]


def test_training_state_round_trip(tmp_path):
    model = trained_gpt()
    opt = configure_optimizers(model, 0.1, 1e-3)
    x = torch.randint(65, (2, 24))
    model(x, x)[1].backward()
    opt.step()
    rng = {"torch": torch.get_rng_state(), "train": torch.Generator().manual_seed(5).get_state()}
    save_training_state(tmp_path / "s.safetensors", opt, 17, rng)
    state, step, rng2 = load_training_state(tmp_path / "s.safetensors")
    assert step == 17 and torch.equal(rng2["train"], rng["train"])
    fresh = configure_optimizers(model, 0.1, 1e-3)
    fresh.load_state_dict(state)
    for p in model.parameters():
        a, b = opt.state[p], fresh.state[p]
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(
            a["exp_avg_sq"], b["exp_avg_sq"]
        )


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(UserError, match="not a checkpoint folder"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match="not an LLM Playground checkpoint"):
        read_meta(tmp_path)


def test_saved_runs_are_listed_for_the_other_labs(tmp_path):
    model = trained_gpt()
    tok = CharTokenizer.from_text(load_corpus().text)
    scratch = get_paths().ensure().runs / ".scratch" / "job-1"
    save_checkpoint(
        scratch,
        model,
        preset("baby-gpt", n_layer=2, n_embd=32, block_size=24),
        tok,
        5,
        RunState(train_loss=1.9, val_loss=2.05),
    )
    (scratch / "metrics.jsonl").write_text(
        json.dumps({"step": 5, "train_loss": 1.9, "val_loss": 2.0}) + "\n"
    )
    assert list_runs() == []  # unsaved runs are not listed
    save_run_as(scratch, "my-first-gpt")
    runs = list_runs()
    assert [r.name for r in runs] == ["my-first-gpt"]
    run = runs[0]
    assert run.val_loss == 2.0 and run.step == 5 and run.kind == "gpt"
    assert run.hf_path is not None and "2 layers" in run.summary and "char" in run.summary
    with pytest.raises(UserError, match="already exists"):
        save_run_as(scratch, "my-first-gpt")
    for bad in ("", "../escape", "a b", ".hidden"):
        with pytest.raises(UserError, match="run name"):
            check_run_name(bad)


@pytest.mark.parametrize("pattern", ["gpt4", "gpt2", None])
def test_hf_tokenizer_of_a_bpe_from_lab_1_gives_the_same_ids(tmp_path, pattern):
    from transformers import AutoTokenizer

    from llm_playground.tokenization.bpe import train
    from llm_playground.tokenization.tokenizer import BPEAdapter

    text = load_corpus().text[:20_000]
    tok = BPEAdapter(train(text, 300, pattern=pattern, name="mini"))
    hf_tokenizer(tok).save_pretrained(str(tmp_path))
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    sample = TEXT + "Thou'rt 123 cafés  —  ünïcode!\n"
    assert hf(sample)["input_ids"] == tok.encode(sample)
    assert hf.decode(tok.encode(sample)) == sample


def test_bpe_checkpoint_stores_its_merges(tmp_path):
    from llm_playground.tokenization.bpe import train
    from llm_playground.tokenization.tokenizer import BPEAdapter

    tok = BPEAdapter(train(load_corpus().text[:5000], 280, name="mini"))
    model = trained_gpt(vocab=tok.vocab_size, n_layer=1)
    save_checkpoint(tmp_path, model, preset("baby-gpt"), tok, 1)
    assert load_checkpoint(tmp_path).tokenizer.encode(TEXT) == tok.encode(TEXT)


KILLED_MID_SAVE = r"""
import sys, time
import torch
from llm_playground.training import checkpoints
from llm_playground.training.config import ModelConfig, preset
from llm_playground.training.corpus import load_tokenizer
from llm_playground.training.model import build_model

out = sys.argv[1]
config = preset("baby-gpt", n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=65)
torch.manual_seed(0)
model = build_model(config.model)
tok = load_tokenizer("char")
checkpoints.save_checkpoint(out, model, config, tok, step=1, export_hf=False)

real = checkpoints.save_model
def slow_save(model, path, metadata=None):
    with open(path, "wb") as f:  # half a file, then hang: the kill comes now
        f.write(b"\0" * 1000)
        f.flush()
    print("MID-SAVE", flush=True)
    time.sleep(120)
checkpoints.save_model = slow_save
with torch.no_grad():
    for p in model.parameters():
        p.add_(1.0)
checkpoints.save_checkpoint(out, model, config, tok, step=2, export_hf=False)
"""


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "ck"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_SAVE, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "MID-SAVE", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list(out.glob("*.tmp")) or (out / "model.safetensors").stat().st_size > 1000
    loaded = load_checkpoint(out)  # the step-1 checkpoint, whole
    assert loaded.step == 1
    torch.manual_seed(0)
    first = build_model(loaded.config.model)
    for saved, original in zip(loaded.model.parameters(), first.parameters(), strict=True):
        assert torch.equal(saved, original)
