"""The fast Llama runner's weight layout: same numbers, same logits, another memory order."""

import pytest
import torch

from llm_playground.core.hardware import (
    LAYOUT_MIN_SPEEDUP,
    SPLIT_MIN_SPEEDUP,
    Probe,
    input_major_is_faster,
    split_parts,
)
from llm_playground.generation.runner import (
    SPLIT_MAX_ROWS,
    Projection,
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
        assert attention.o_proj.weight.data_ptr() == out.data_ptr()
        assert mlp.down_proj.weight.data_ptr() == down.data_ptr()
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


def test_all_projections_live_in_one_buffer_in_the_order_a_step_reads_them(tiny_llama):
    fused = fused_projections(tiny_llama, input_major=True)
    matrices = [matrix for layer in fused for matrix in layer]
    storage = matrices[0].untyped_storage().data_ptr()
    assert all(m.untyped_storage().data_ptr() == storage for m in matrices)
    starts = [m.data_ptr() for m in matrices]
    assert starts == sorted(starts)  # qkv, out, gate_up, down, then the next layer
    ends = [m.data_ptr() + m.numel() * m.element_size() for m in matrices]
    assert all(end == start for end, start in zip(ends, starts[1:], strict=False))  # no gaps


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("rows", [1, 5, SPLIT_MAX_ROWS + 4])
def test_a_split_product_equals_the_whole_one(parts, rows):
    torch.manual_seed(0)
    weight = torch.randn(40, 48)  # [out, in]
    inputs = torch.randn(rows, 48)
    split = Projection(weight, parts)
    assert split.sliced is not None and split.sliced.shape == (parts, 48 // parts, 40)
    torch.testing.assert_close(split(inputs), inputs @ weight.t(), rtol=1e-5, atol=1e-5)
    assert Projection(weight, 5).sliced is None  # 48 inner features do not cut into 5


def test_the_rotation_matrix_is_llamas_rotary_embedding(tiny_llama):
    from transformers.models.llama.modeling_llama import rotate_half

    runner = StaticLlamaRunner(tiny_llama, max_length=16)
    x = torch.randn(3, 4, runner.head_dim)  # [positions, heads, head_dim]
    cos, sin = runner.cos[5:8, None], runner.sin[5:8, None]
    expected = x * cos + rotate_half(x) * sin
    torch.testing.assert_close(x.bmm(runner.rotation(5, 8)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("parts", [1, 2])
def test_the_runner_gives_the_models_logits_in_either_layout(tiny_llama, monkeypatch, parts):
    import llm_playground.core.hardware as hardware

    ids = [5, 17, 3, 88, 42, 9, 60]
    with torch.no_grad():
        expected = tiny_llama(torch.tensor([ids])).logits[0]
    monkeypatch.setattr(hardware, "split_parts", lambda device="cpu": parts)
    for faster in (False, True):
        monkeypatch.setattr(hardware, "input_major_is_faster", lambda device="cpu", f=faster: f)
        runner = StaticLlamaRunner(tiny_llama, max_length=16)
        assert (runner.head.sliced is not None) == (parts > 1)
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


def test_the_split_rule_needs_a_measured_gain_threads_and_a_cpu(monkeypatch):
    assert Probe(0.015, 0.010, min_speedup=SPLIT_MIN_SPEEDUP).faster
    assert not Probe(0.0105, 0.010, min_speedup=SPLIT_MIN_SPEEDUP).faster
    assert split_parts("cuda") == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert split_parts("cpu") == 1


def test_the_split_probe_measures_both_ways_and_refuses_an_uneven_cut():
    from llm_playground.core.hardware import probe_cpu_split

    probe = probe_cpu_split(2)
    assert probe.usual_s > 0 and 0 < probe.alternative_s < float("inf")  # both ways ran
    uneven = probe_cpu_split(7)  # 1536 inner features do not cut into 7: nothing is timed
    assert uneven.alternative_s == float("inf") and not uneven.faster


def test_two_runners_started_at_once_fuse_the_model_once(tiny_llama):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: fused_projections(tiny_llama, True), range(4)))
    assert all(result is results[0] for result in results)
    q_proj = tiny_llama.model.layers[0].self_attn.q_proj.weight
    assert q_proj.data_ptr() == results[0][0][0].data_ptr()


def test_a_fused_model_can_still_be_copied_for_int8(tiny_llama):
    from llm_playground.generation.runner import int8_model

    fused_projections(tiny_llama, True)
    ids = torch.tensor([[5, 17, 3]])
    quantized = int8_model(tiny_llama)
    with torch.no_grad():
        torch.testing.assert_close(
            quantized(ids).logits, tiny_llama(ids).logits, rtol=0.1, atol=0.1
        )


@pytest.mark.parametrize("input_major", [False, True])
def test_a_fused_model_saves_and_loads_back_the_same(tiny_llama, input_major, tmp_path):
    from transformers import LlamaForCausalLM

    ids = torch.tensor([[5, 17, 3, 88]])
    with torch.no_grad():
        expected = tiny_llama(ids).logits
    fused_projections(tiny_llama, input_major)
    output_head(tiny_llama, input_major)
    tiny_llama.save_pretrained(tmp_path)
    reloaded = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, expected, rtol=1e-5, atol=1e-5)
