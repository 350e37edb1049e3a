"""The readable references that the labs show in "How it works in code", each tested equal to
the fast path or the field's library on small inputs: the training step and Muon's
Newton-Schulz iteration (Lab 2), the decoding loop (Lab 3), LoRA, the DPO loss and the
Bradley-Terry fit (Lab 4), the perplexity window loop and BLEU (Lab 5). Lab 1's train_simple
is tested in test_bpe.py, explicit attention in test_model.py."""

from __future__ import annotations

import copy
import math
import threading
import types
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_playground.core.errors import UserError
from llm_playground.evaluation.overlap import bleu_chrf, bleu_simple
from llm_playground.finetuning.dpo import dpo_loss
from llm_playground.finetuning.lora import LoRALinear
from llm_playground.finetuning.preferences.ratings import bradley_terry_simple, fit_bradley_terry
from llm_playground.training.config import preset
from llm_playground.training.corpus import get_batch
from llm_playground.training.engine import Dist, Trainer, prepare, training_step
from llm_playground.training.optim import (
    build_optimizer,
    newton_schulz,
    newton_schulz_reference,
    set_lr_factor,
)

# --- Lab 2: the training step and Newton-Schulz ------------------------------------------


def _tiny(optimizer: str):
    return preset(
        "baby-gpt",
        n_layer=1,
        n_head=2,
        n_embd=32,
        block_size=16,
        batch_size=4,
        max_iters=3,
        warmup_iters=0,
        dtype="float32",
        device="cpu",
        optimizer=optimizer,
    )


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_training_step_equals_the_trainers_step(optimizer):
    config, corpus = prepare(_tiny(optimizer))
    trainer = Trainer(config, corpus, Dist(), threading.Event())
    # the same starting weights and optimiser, and the batch the trainer will draw first
    model = copy.deepcopy(trainer.model)
    reference_optimizer = build_optimizer(model, config)
    set_lr_factor(reference_optimizer, config.lr_factor(0))
    generator = torch.Generator().manual_seed(config.seed)
    block, batch = config.model.block_size, config.batch_size
    inputs, targets = get_batch(corpus.train, block, batch, generator, "cpu", None)
    before = [p.detach().clone() for p in model.parameters()]

    for _ in range(2):  # the second step also uses the optimiser's moments
        loss = training_step(model, reference_optimizer, inputs, targets, config.grad_clip)
        trainer_loss, _, _ = trainer.train_step()
        assert loss == pytest.approx(trainer_loss, rel=1e-6)
        inputs, targets = get_batch(corpus.train, block, batch, generator, "cpu", None)
    pairs = list(zip(model.named_parameters(), trainer.model.parameters(), strict=True))
    for (name, ours), theirs in pairs:
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=name)
    assert all(not torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize("shape", [(8, 8), (6, 10), (12, 5)])
def test_newton_schulz_reference_equals_the_optimisers_iteration(shape):
    gradient = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ours = newton_schulz_reference(gradient, 5)
    torch.testing.assert_close(ours, newton_schulz(gradient), rtol=1e-5, atol=1e-6)
    batched = newton_schulz(torch.stack([gradient, 2 * gradient]))  # the optimiser stacks them
    torch.testing.assert_close(ours, batched[1], rtol=1e-4, atol=1e-5)
    # the point of it: every singular value lands near 1 (about 0.7 to 1.2 after five steps)
    singular_values = torch.linalg.svdvals(ours)
    assert singular_values.min() > 0.6 and singular_values.max() < 1.25


def test_newton_schulz_reference_equals_torch_muon_up_to_bfloat16():
    from torch.optim._muon import _zeropower_via_newtonschulz

    gradient = torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
    theirs = _zeropower_via_newtonschulz(gradient, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    torch.testing.assert_close(
        newton_schulz_reference(gradient, 5), theirs.float(), atol=0.05, rtol=0
    )


# --- Lab 4: LoRA, DPO, Bradley-Terry -----------------------------------------------------


class _TwoLayers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(12, 10)
        self.out = torch.nn.Linear(10, 4)

    def forward(self, x):
        return self.out(torch.relu(self.q_proj(x)))


def test_lora_linear_equals_peft_with_the_same_weights():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = _TwoLayers()
    base = copy.deepcopy(model.q_proj)
    peft_model = get_peft_model(
        model, LoraConfig(r=3, lora_alpha=6, lora_dropout=0.0, target_modules=["q_proj"])
    )
    ours = LoRALinear(base, r=3, alpha=6)
    x = torch.randn(5, 12)
    torch.testing.assert_close(ours(x), base(x))  # B starts at zero: the base layer itself
    assert ours.lora_A.shape == (3, 12) and ours.lora_B.shape == (10, 3)
    # give B non-zero values, copy A and B into peft's layer, compare the outputs
    with torch.no_grad():
        ours.lora_B.normal_()
        layer = peft_model.base_model.model.q_proj
        layer.lora_A["default"].weight.copy_(ours.lora_A)
        layer.lora_B["default"].weight.copy_(ours.lora_B)
    torch.testing.assert_close(ours(x), layer(x))
    assert not torch.allclose(ours(x), base(x))
    assert [n for n, p in ours.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]


def test_lora_linear_names_a_bad_rank():
    with pytest.raises(UserError, match="LoRA rank must be at least 1"):
        LoRALinear(torch.nn.Linear(4, 4), r=0, alpha=8)


def _trl_sigmoid_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """TRL 1.16's DPOTrainer._compute_loss on given log-probabilities: a stand-in model
    returns them as one scored token per answer, the reference ones come precomputed."""
    from trl import DPOTrainer

    pairs = len(policy_chosen)
    log_probs = torch.cat([policy_chosen, policy_rejected])[:, None]  # (2 * pairs, 1)
    outputs = types.SimpleNamespace(
        log_probs=log_probs,
        entropy=torch.zeros_like(log_probs),
        mean_logits=torch.zeros_like(log_probs),
        is_top1=torch.zeros_like(log_probs, dtype=torch.bool),
    )
    accelerator = types.SimpleNamespace(
        device=torch.device("cpu"), gather_for_metrics=lambda t: t, gather=lambda t: t
    )
    trainer = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True),
        accelerator=accelerator,
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=["sigmoid"],
        loss_weights=[1.0],
        beta=beta,
        use_weighting=False,
        _metrics={"train": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.zeros(2 * pairs, 2, dtype=torch.long),
        "attention_mask": torch.ones(2 * pairs, 2, dtype=torch.long),
        "completion_mask": torch.ones(2 * pairs, 2, dtype=torch.long),
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    loss = DPOTrainer._compute_loss(trainer, lambda **_: outputs, inputs, return_outputs=False)
    return loss, trainer._metrics["train"]


def test_dpo_loss_equals_trls_on_the_same_log_probabilities():
    generator = torch.Generator().manual_seed(0)
    logps = [-20 * torch.rand(5, generator=generator) for _ in range(4)]
    beta = 0.1
    ours = dpo_loss(*logps, beta=beta)
    theirs, logged = _trl_sigmoid_loss(*logps, beta=beta)
    assert ours.shape == (5,)
    assert float(ours.mean()) == pytest.approx(float(theirs), rel=1e-6)
    margins = beta * ((logps[0] - logps[2]) - (logps[1] - logps[3]))
    assert logged["rewards/margins"] == [pytest.approx(float(margins.mean()), abs=1e-6)]
    # level answers cost log 2; a clear win for the chosen answer costs almost nothing
    level = dpo_loss(*(torch.tensor([-5.0]),) * 4, beta=beta)
    assert float(level) == pytest.approx(math.log(2))
    won = dpo_loss(torch.tensor([0.0]), torch.tensor([-500.0]), *(torch.tensor([-5.0]),) * 2, beta)
    assert float(won) < 1e-6


@settings(max_examples=25, deadline=None)
@given(
    wins=st.lists(st.integers(1, 9), min_size=6, max_size=12).map(
        lambda counts: counts + [1] * (12 - len(counts))
    )
)
def test_bradley_terry_simple_equals_the_newton_fit(wins):
    # four models, every pair played both ways: the plain maximum-likelihood fit exists
    matrix = np.zeros((4, 4))
    off_diagonal = [(i, j) for i in range(4) for j in range(4) if i != j]
    for (i, j), count in zip(off_diagonal, wins, strict=True):
        matrix[i, j] = count
    fit = fit_bradley_terry(matrix)
    assert fit.prior == 0.0
    np.testing.assert_allclose(bradley_terry_simple(matrix), fit.theta, atol=1e-6)


def test_bradley_terry_simple_known_answer():
    # two models, 3 wins to 1: P(a beats b) = 3/4, so θa − θb = ln 3
    theta = bradley_terry_simple(np.array([[0.0, 3.0], [1.0, 0.0]]))
    assert theta[0] - theta[1] == pytest.approx(math.log(3))
    assert theta.sum() == pytest.approx(0.0, abs=1e-12)


# --- Lab 5: BLEU -------------------------------------------------------------------------

README_REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]
README_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]


def test_bleu_simple_gives_sacrebleus_readme_answers():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    split_13a = Tokenizer13a()
    assert bleu_simple(README_SYS, README_REFS) == pytest.approx(49.1919566, abs=1e-6)
    assert bleu_simple(
        README_SYS, README_REFS, lambda text: split_13a(text).split()
    ) == pytest.approx(48.530827, abs=1e-6)
    assert bleu_simple(README_SYS, README_REFS) == pytest.approx(
        bleu_chrf(README_SYS, README_REFS, tokenize="none").bleu, abs=1e-9
    )


_WORDS = st.lists(st.sampled_from("a b c d e".split()), min_size=0, max_size=9).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(segments=st.lists(st.tuples(_WORDS, _WORDS, _WORDS), min_size=1, max_size=4))
def test_bleu_simple_equals_sacrebleu(segments):
    from sacrebleu.metrics import BLEU

    hypotheses = [h for h, _, _ in segments]
    references = [[r for _, r, _ in segments], [r for _, _, r in segments]]
    expected = BLEU(tokenize="none").corpus_score(hypotheses, references).score
    assert bleu_simple(hypotheses, references) == pytest.approx(expected, abs=1e-9)


# --- Lab 3 and Lab 5: the decoding loop and the perplexity windows on a tiny Llama -------


@pytest.fixture(scope="module")
def tiny_llama():
    """A small random Llama with SmolLM2's tokenizer, as the registry would load a model."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llm_playground.generation.registry import LoadedModel, ModelInfo, convert_offline_model

    tokenizer = AutoTokenizer.from_pretrained(convert_offline_model("smollm2-135m-instruct"))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    return LoadedModel(ModelInfo("tiny-llama", "offline", "random weights"), model, tokenizer)


@pytest.mark.parametrize(
    "settings",
    [
        dict(strategy="greedy", repetition_penalty=1.3),
        dict(strategy="top-p", temperature=0.8, top_k=20, top_p=0.9, min_p=0.05, seed=3),
        dict(strategy="top-k", temperature=1.2, top_k=8, presence_penalty=0.5, seed=11),
    ],
)
def test_decode_simple_gives_the_fast_paths_tokens(tiny_llama, settings):
    from llm_playground.generation.decoding import (
        DecodingConfig,
        decode_simple,
        generate,
        prompt_ids,
    )

    prompt = "The capital of France is"
    config = DecodingConfig(max_new_tokens=8, **settings)
    fast = generate(tiny_llama, prompt, config, chat_template=False)
    ids = prompt_ids(tiny_llama, prompt, False)
    ours = decode_simple(tiny_llama.model, ids, config, steps=8)
    assert len(fast.ids) >= 4  # stopped at most at an end-of-text token
    assert ours[: len(fast.ids)] == fast.ids
    if config.samples:  # the draw matters: another seed gives other tokens
        reseeded = replace(config, seed=config.seed + 1)
        assert decode_simple(tiny_llama.model, ids, reseeded, steps=8) != ours


def test_perplexity_simple_equals_the_fast_path(tiny_llama):
    from llm_playground.evaluation.perplexity import perplexity, perplexity_simple

    text = (
        "The tower is 324 metres tall, about the same height as an 81-storey building, and "
        "the tallest structure in Paris. Its base is square, measuring 125 metres on each side."
    )
    tokenizer = tiny_llama.tokenizer
    prefix = (
        tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    )
    ids = [prefix, *tokenizer(text, add_special_tokens=False)["input_ids"]]
    fast = perplexity(tiny_llama, text, stride=8, max_length=24, dtype="float32", batch_size=4)
    assert fast.n_tokens == len(ids) - 1 > 24  # several windows
    ours = perplexity_simple(tiny_llama.model, ids, max_length=24, stride=8)
    assert ours == pytest.approx(fast.token_perplexity, rel=1e-4)
