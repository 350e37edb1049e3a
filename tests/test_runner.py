"""The fast Llama runner's weight layout: same numbers, same logits, another memory order."""

import pytest
import torch

from llm_playground.core.hardware import LAYOUT_MIN_SPEEDUP, Probe, input_major_is_faster
from llm_playground.generation.runner import (
    StaticLlamaRunner,
    fused_projections,
    output_head,
)


@pytest.fixture
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("input_major", [False, True])
def test_fusing_keeps_values_shapes_and_logits_and_shares_the_storage(tiny_llama, input_major):
    ids = torch.tensor([[5, 17, 3, 88, 42, 9]])
    with torch.no_grad():
        before = tiny_llama(ids).logits
    linears = [m for m in tiny_llama.modules() if isinstance(m, torch.nn.Linear)]
    values = {id(m): m.weight.detach().clone() for m in linears}
    fused = fused_projections(tiny_llama, input_major)
    assert len(fused) == len(tiny_llama.model.layers)
    for layer, (qkv, out, gate_up, down) in zip(tiny_llama.model.layers, fused, strict=True):
        attention, mlp = layer.self_attn, layer.mlp
        assert qkv.shape == (32 + 16 + 16, 32) and gate_up.shape == (128, 32)
        # the parameters are views into the fused matrices: one copy of the weights
        assert attention.q_proj.weight.data_ptr() == qkv.data_ptr()
        assert mlp.gate_proj.weight.data_ptr() == gate_up.data_ptr()
        assert out is attention.o_proj.weight and down is mlp.down_proj.weight
        for matrix in (qkv, gate_up, out, down):
            assert matrix.t().is_contiguous() if input_major else matrix.is_contiguous()
    for module in linears:
        assert torch.equal(module.weight, values[id(module)])
    with torch.no_grad():
        after = tiny_llama(ids).logits
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert fused_projections(tiny_llama, input_major) is fused  # built once per model


def test_a_tied_head_gets_one_input_major_copy_renewed_when_the_table_changes(tiny_llama):
    embedding = tiny_llama.get_input_embeddings().weight
    assert output_head(tiny_llama, input_major=False) is embedding
    head = output_head(tiny_llama, input_major=True)
    assert head is not embedding and torch.equal(head, embedding) and head.t().is_contiguous()
    assert embedding.is_contiguous()  # the table keeps its rows for lookups
    assert output_head(tiny_llama, input_major=True) is head  # kept, not rebuilt
    with torch.no_grad():
        embedding[0, 0] += 1.0
    renewed = output_head(tiny_llama, input_major=True)
    assert renewed is not head and torch.equal(renewed, embedding)


def test_the_runner_gives_the_models_logits_in_either_layout(tiny_llama, monkeypatch):
    import llm_playground.core.hardware as hardware

    ids = [5, 17, 3, 88, 42, 9, 60]
    with torch.no_grad():
        expected = tiny_llama(torch.tensor([ids])).logits[0]
    for faster in (False, True):
        monkeypatch.setattr(hardware, "input_major_is_faster", lambda device="cpu", f=faster: f)
        runner = StaticLlamaRunner(tiny_llama, max_length=16)
        with torch.no_grad():
            prompt = runner.forward(ids[:4], all_logits=True)
            steps = [runner.forward([token]) for token in ids[4:]]
        torch.testing.assert_close(prompt, expected[:4], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.cat(steps), expected[4:], rtol=1e-5, atol=1e-5)


def test_the_layout_rule_needs_a_measured_gain_and_a_cpu():
    def layout(out_major_s, input_major_s):
        return Probe(out_major_s, input_major_s, min_speedup=LAYOUT_MIN_SPEEDUP)

    assert layout(0.012, 0.008).faster
    assert not layout(0.0104, 0.010).faster  # 1.04x
    assert not layout(0.008, 0.012).faster
    assert input_major_is_faster("cuda") is False
