"""Models, presets and settings validation of the Training ground."""

import math

import pytest
import torch

from llm_playground.core.errors import UserError
from llm_playground.training.config import PRESETS, ModelConfig, TrainConfig, preset
from llm_playground.training.model import (
    GPT,
    BigramLanguageModel,
    build_model,
    count_parameters,
    flops_per_token,
    summarize,
)
from llm_playground.training.optim import configure_optimizers

TINY = ModelConfig(kind="gpt", vocab_size=65, n_layer=2, n_head=2, n_embd=32, block_size=16)


def test_presets_match_the_lessons():
    baby = PRESETS["baby-gpt"]
    assert (baby.model.n_layer, baby.model.n_head, baby.model.n_embd) == (4, 4, 128)
    assert (baby.model.block_size, baby.batch_size, baby.model.dropout) == (64, 12, 0.0)
    lecture = PRESETS["lecture-gpt"]
    assert (lecture.model.n_layer, lecture.model.n_head, lecture.model.n_embd) == (6, 6, 384)
    assert (lecture.model.block_size, lecture.batch_size, lecture.model.dropout) == (256, 64, 0.2)
    assert PRESETS["bigram"].model.kind == "bigram"
    for config in PRESETS.values():
        config.validate()
    # frozen: a preset cannot be changed by accident
    with pytest.raises(AttributeError):
        baby.lr = 1.0


def test_baby_gpt_has_the_known_parameter_count():
    model = build_model(PRESETS["baby-gpt"].model)  # vocabulary 65, as TinyShakespeare's characters
    # nanoGPT reports 0.80M for this config, without the 64x128 position embeddings
    assert count_parameters(model) == 809_856
    assert count_parameters(model) - 64 * 128 == pytest.approx(0.80e6, rel=0.01)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n_embd": 130, "n_head": 4}, "not divisible by the number of heads"),
        ({"lr": float("nan")}, "learning rate must be a finite number"),
        ({"lr": float("inf")}, "learning rate must be a finite number"),
        ({"lr": 0.0}, "learning rate must be positive"),
        ({"lr": -1e-3}, "learning rate must be positive"),
        ({"n_layer": 0}, "number of layers must be a positive whole number"),
        ({"batch_size": 0}, "batch size must be a positive whole number"),
        ({"dropout": 1.0}, "dropout must be at least 0 and below 1"),
        ({"max_iters": -5}, "max iterations must be a positive whole number"),
        ({"device": "tpu"}, "unknown device"),
        ({"dtype": "float16"}, "unknown dtype"),
    ],
)
def test_impossible_settings_are_refused_with_a_message(changes, message):
    with pytest.raises(UserError, match=message):
        preset("baby-gpt", **changes).validate()


def test_block_size_above_what_the_data_allows_is_refused():
    config = preset("baby-gpt", block_size=64)
    config.validate(n_train_tokens=1000, n_val_tokens=100)
    with pytest.raises(
        UserError,
        match="block size 128 is larger than the data allows.*validation split has only 100",
    ):
        config.replace(block_size=128).validate(n_train_tokens=1000, n_val_tokens=100)


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown preset 'huge'"):
        preset("huge")


def test_learning_rate_schedule_warms_up_then_decays_to_the_floor():
    c = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=10, max_iters=110)
    lrs = [c.lr_at(s) for s in range(111)]
    assert lrs[0] < lrs[5] < lrs[9] < c.lr
    assert lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[110] == pytest.approx(1e-4)
    assert TrainConfig(schedule="constant").lr_at(7) == TrainConfig().lr


def test_gpt_starts_near_uniform_loss_and_ties_embeddings():
    torch.manual_seed(0)
    model = GPT(TINY)
    assert model.lm_head.weight is model.wte.weight
    x, y = torch.randint(65, (4, 16)), torch.randint(65, (4, 16))
    logits, loss = model(x, y)
    assert logits.shape == (4, 16, 65)
    assert loss.item() == pytest.approx(math.log(65), abs=0.15)


def test_attention_is_causal():
    torch.manual_seed(0)
    model = GPT(TINY).eval()
    x = torch.randint(65, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 65  # change only the future after position 9
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(y)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_longer_input_than_block_size_is_refused():
    with pytest.raises(ValueError, match="longer than the block size"):
        GPT(TINY)(torch.zeros(1, 17, dtype=torch.long))


def test_bigram_model_reads_one_row_per_token():
    model = BigramLanguageModel(ModelConfig(kind="bigram", vocab_size=10, block_size=8))
    x = torch.tensor([[3, 3, 7]])
    logits, _ = model(x)
    assert torch.equal(logits[0, 0], model.token_embedding_table.weight[3])
    assert torch.equal(logits[0, 0], logits[0, 1])
    out = model.generate(x, 5, generator=torch.Generator().manual_seed(1))
    assert out.shape == (1, 8) and torch.equal(out[:, :3], x)


def test_generate_is_repeatable_with_a_generator_and_respects_block_size():
    model = GPT(TINY)
    x = torch.zeros(1, 1, dtype=torch.long)
    a = model.generate(x, 40, generator=torch.Generator().manual_seed(3))
    b = model.generate(x, 40, generator=torch.Generator().manual_seed(3))
    assert a.shape == (1, 41) and torch.equal(a, b)
    greedy = model.generate(x, 5, temperature=0)
    assert torch.equal(greedy, model.generate(x, 5, temperature=0))


def test_optimizer_decays_matrices_but_not_biases_or_norms():
    model = GPT(TINY)
    opt = configure_optimizers(model, weight_decay=0.1, lr=1e-3)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == count_parameters(model)


def test_summary_counts_every_parameter_once_and_estimates_cost():
    model = GPT(TINY)
    s = summarize(model, batch_size=4)
    assert sum(r.parameters for r in s.rows) == s.total_parameters == count_parameters(model)
    head = next(r for r in s.rows if r.module == "lm_head")
    assert head.parameters == 0 and "tied" in head.kind
    c_attn = next(r for r in s.rows if r.module == "h.0.attn.c_attn")
    assert c_attn.parameters == 32 * 96 + 96
    # 6 FLOPs per matmul weight plus the attention term
    expected = 6 * (s.total_parameters - 16 * 32) + 12 * 2 * 16 * 32
    assert s.flops_per_token == expected == flops_per_token(TINY, s.total_parameters)
    assert s.memory_breakdown["optimizer"] == 8 * s.total_parameters
    assert s.memory_bytes == sum(s.memory_breakdown.values()) > 16 * s.total_parameters
    assert {"module", "type", "shape", "parameters"} <= set(s.table()[0])
