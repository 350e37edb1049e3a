"""Lab 6's library: attention, the residual stream, the logit lens, head roles, ablation
and embedding maps, on tiny models built here and on SmolLM2."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llm_playground.core.errors import UserError
from llm_playground.generation.registry import LoadedModel, ModelInfo
from llm_playground.inspection import (
    Ablation,
    embedding_map,
    encode_prompt,
    first_token_scores,
    from_checkpoint,
    from_loaded,
    induction_probe,
    induction_scores,
    inspect,
    nearest_neighbours,
    open_model,
    parse_ablation,
    previous_token_scores,
    probe_ids,
    reference_sources,
    top_heads,
)
from llm_playground.inspection.capture import capture, final_logits
from llm_playground.tokenization.tokenizer import CharTokenizer
from llm_playground.training.checkpoints import (
    LoadedCheckpoint,
    hf_tokenizer,
    save_checkpoint,
    to_hf_model,
)
from llm_playground.training.config import preset
from llm_playground.training.model import GPT, CausalSelfAttention, explicit_attention

TEXT = "the quick brown fox jumps over the lazy dog. THE END! 0123456789, said Eve?"
CLASSIC = dict(n_layer=2, n_head=4, n_embd=32, block_size=64)
SPEEDRUN = dict(CLASSIC, pos="rope", qk_norm=True, mlp="relu2", tied_head=False, logit_softcap=3.0)


def tiny_gpt(seed: int = 0, **shape) -> tuple[GPT, CharTokenizer, object]:
    tok = CharTokenizer.from_text(TEXT)
    config = preset("baby-gpt", vocab_size=tok.vocab_size, **shape)
    torch.manual_seed(seed)
    model = GPT(config.model).eval()
    with (
        torch.no_grad()
    ):  # larger weights than the initialisation: sharper attention, bigger logits
        for p in model.parameters():
            p.mul_(8.0)
    return model, tok, config


def inspected_gpt(**shape):
    model, tok, config = tiny_gpt(**shape)
    ckpt = LoadedCheckpoint(model, config, tok, {"step": 7}, path=__import__("pathlib").Path("x"))
    return from_checkpoint(ckpt, label="tiny")


def loaded_hf(model, tokenizer, name="tiny", chat=False) -> LoadedModel:
    info = ModelInfo(name=name, kind="hub", description="a test model", chat=chat)
    return LoadedModel(info=info, model=model.eval(), tokenizer=tokenizer)


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = hf_tokenizer(CharTokenizer.from_text(TEXT))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention: two query heads per key/value head
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    return from_loaded(loaded_hf(LlamaForCausalLM(config), tok))


def ids_of(text: str, model) -> list[int]:
    return encode_prompt(model, text, chat_template=False)


# --- the attention written out ------------------------------------------------------------


def test_explicit_attention_equals_the_fused_kernel():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 3, 11, 8).unbind(0)  # (batch, heads, T, head size)
    output, weights = explicit_attention(q, k, v)
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(output, fused, atol=1e-6, rtol=1e-5)
    assert weights.shape == (2, 3, 11, 11)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 11))
    assert torch.all(weights.triu(1) == 0) and torch.all(weights[..., 0, 0] == 1)


@pytest.mark.parametrize("shape", [CLASSIC, SPEEDRUN], ids=["classic", "speedrun"])
def test_gpt_attention_module_explicit_path_equals_fused(shape):
    model, _, _ = tiny_gpt(**shape)
    attention: CausalSelfAttention = model.h[1].attn
    x = torch.randn(2, 20, 32)
    with torch.no_grad():
        fused = attention(x)
        explicit, weights = attention(x, return_weights=True)
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-4)
    assert weights.shape == (2, 4, 20, 20)


@pytest.mark.parametrize("shape", [CLASSIC, SPEEDRUN], ids=["classic", "speedrun"])
def test_gpt_lens_last_entry_is_the_models_own_distribution(shape):
    model = inspected_gpt(**shape)
    ids = ids_of("the lazy dog jumps over the fox", model)
    result = inspect(model, ids, top_k=4)
    with torch.no_grad():
        logits, _ = model.model(torch.tensor([ids]))
    probs = F.softmax(logits[0], dim=-1)
    expected = probs.topk(4, dim=-1)
    np.testing.assert_array_equal(result.lens_ids[-1], expected.indices.numpy())
    # the explicit attention and the fused kernel round differently: close, not equal
    np.testing.assert_allclose(result.lens_probs[-1], expected.values.numpy(), atol=1e-4)
    if shape is SPEEDRUN:  # the cap is doing something in this model
        assert logits.abs().max() > 2.5
    targets = torch.tensor(ids[1:])
    assert result.loss == pytest.approx(float(F.cross_entropy(logits[0, :-1], targets)), abs=1e-4)
    assert result.base_loss == result.loss and result.step == 7


def test_gpt_lens_entry_by_hand():
    """Entry 1 reads the residual stream after block 0, computed with the block's own forward."""
    model = inspected_gpt(**CLASSIC)
    gpt = model.model
    ids = ids_of("over the lazy dog", model)
    result = inspect(model, ids, top_k=3)
    idx = torch.tensor([ids])
    with torch.no_grad():
        x = gpt.wte(idx) + gpt.wpe(torch.arange(len(ids)))
        after_block_0 = gpt.h[0](x)  # the fused block
        probs = F.softmax(gpt.lm_head(gpt.ln_f(after_block_0))[0], dim=-1)
    position = 5
    by_hand = probs[position].topk(3)
    np.testing.assert_array_equal(result.lens_ids[1, position], by_hand.indices.numpy())
    np.testing.assert_allclose(result.lens_probs[1, position], by_hand.values.numpy(), atol=1e-5)
    np.testing.assert_allclose(result.residual[1], after_block_0[0].numpy(), atol=1e-4)
    following = ids[position + 1]
    rank = int((probs[position] > probs[position, following]).sum())
    assert result.next_rank[1, position] == rank
    assert result.next_prob[1, position] == pytest.approx(
        float(probs[position, following]), abs=1e-6
    )


def test_gpt_inspection_equals_that_of_its_gpt2_export_under_transformers():
    """The explicit path against transformers' eager attention, and the whole inspection
    (residual stream, lens) of the same weights as a transformers GPT-2 model."""
    model = inspected_gpt(**CLASSIC)
    ids = ids_of("the quick brown fox", model)
    ours = inspect(model, ids, top_k=3, ablations=["1.2"])
    exported = from_loaded(loaded_hf(to_hf_model(model.model), hf_tokenizer(model.tokenizer)))
    assert (exported.architecture, exported.n_layers, exported.n_heads) == ("hf", 2, 4)
    theirs = inspect(exported, ids, top_k=3, ablations=["1.2"])
    np.testing.assert_allclose(ours.attention, theirs.attention, atol=1e-5)
    np.testing.assert_allclose(ours.residual, theirs.residual, atol=1e-4)
    np.testing.assert_array_equal(ours.lens_ids, theirs.lens_ids)
    np.testing.assert_allclose(ours.lens_probs, theirs.lens_probs, atol=1e-4)
    assert ours.loss == pytest.approx(theirs.loss, abs=1e-4) and ours.loss != ours.base_loss
    assert ours.tokens == theirs.tokens == list("the quick brown fox")


def test_json_written_in_pieces_equals_the_object():
    import io

    result = induction_probe(inspected_gpt(**CLASSIC), 5, seed=2, ablations=["0.mlp"])
    stream = io.StringIO()
    result.write_json(stream)
    assert json.loads(stream.getvalue()) == result.to_json()
    assert list(result.to_json()) == [
        "ids", "tokens", "n_layers", "n_heads", "attention", "lens", "head_scores", "probe",
        "ablated", "loss",
    ]  # fmt: skip


# --- transformers models ------------------------------------------------------------------


def test_llama_grouped_query_heads_each_get_a_map_and_the_lens_ends_at_the_logits():
    model = tiny_llama()
    assert (model.n_layers, model.n_heads, model.n_kv_heads) == (3, 4, 2)
    ids = ids_of("jumps over the lazy dog", model)
    result = inspect(model, ids)
    assert result.attention.shape == (3, 4, len(ids), len(ids))
    assert result.residual.shape == (4, len(ids), 32)
    # query heads sharing a key/value head still attend differently
    assert not np.allclose(result.attention[0, 0], result.attention[0, 1])
    logits = final_logits(model, ids)
    np.testing.assert_allclose(
        result.lens_probs[-1], F.softmax(logits, -1).topk(5).values.numpy(), atol=1e-5
    )
    # the model runs with its own attention implementation again afterwards
    assert model.model.config._attn_implementation == "sdpa"


def test_a_lora_adapter_is_inspected_with_its_adapter_active():
    from peft import LoraConfig, get_peft_model

    base = tiny_llama()
    ids = ids_of("the lazy dog", base)
    plain = inspect(base, ids)
    config = LoraConfig(r=4, target_modules=["q_proj", "o_proj"], init_lora_weights=False)
    adapted = from_loaded(loaded_hf(get_peft_model(base.model, config), base.tokenizer))
    assert (adapted.n_layers, adapted.n_heads) == (3, 4)
    result = inspect(adapted, ids, ablations=["2.1"])
    with torch.no_grad():
        logits = adapted.model(input_ids=torch.tensor([ids])).logits[0]
    assert not np.allclose(result.attention, plain.attention)  # the adapter changes q
    assert result.base_loss == pytest.approx(
        float(F.cross_entropy(logits[:-1], torch.tensor(ids[1:]))), abs=1e-5
    )
    assert result.loss != pytest.approx(result.base_loss, abs=1e-5)
    assert adapted.model.get_base_model().config._attn_implementation == "sdpa"


def test_gemma_soft_cap_applies_to_the_lens():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tok = hf_tokenizer(CharTokenizer.from_text(TEXT))
    config = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        final_logit_softcapping=0.5,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    model = from_loaded(loaded_hf(Gemma3ForCausalLM(config), tok))
    ids = ids_of("the lazy dog", model)
    result = inspect(model, ids, top_k=3)
    logits = final_logits(model, ids)
    assert logits.abs().max() <= 0.5
    np.testing.assert_allclose(
        result.lens_probs[-1], F.softmax(logits, -1).topk(3).values.numpy(), atol=1e-6
    )
    assert result.attention.shape == (2, 4, len(ids), len(ids))


# --- head roles -------------------------------------------------------------------------------


def test_previous_and_first_token_scores_known_answers():
    T = 6
    previous = np.zeros((T, T), dtype=np.float32)
    previous[0, 0] = 1
    previous[np.arange(1, T), np.arange(T - 1)] = 1  # each query on the token before it
    first = np.zeros((T, T), dtype=np.float32)
    first[:, 0] = 1  # every query on the first token
    uniform = np.tril(np.ones((T, T), dtype=np.float32))
    uniform /= uniform.sum(-1, keepdims=True)
    attention = np.stack([np.stack([previous, first, uniform])])  # (1 layer, 3 heads, T, T)
    prev = previous_token_scores(attention)
    assert prev.shape == (1, 3)
    # uniform: A[i][i-1] = 1/(i+1) for i = 1..5
    expected_uniform = np.mean([1 / (i + 1) for i in range(1, T)])
    np.testing.assert_allclose(prev[0], [1.0, 1 / (T - 1), expected_uniform], rtol=1e-6)
    np.testing.assert_allclose(
        first_token_scores(attention)[0], [1 / (T - 1), 1.0, expected_uniform], rtol=1e-6
    )
    assert (
        top_heads(prev, "previous_token", 1)[0].describe() == "layer 0, head 0: previous-token 1.00"
    )


def test_induction_score_on_a_hand_built_attention_tensor():
    b, n = 1, 4
    T = b + 2 * n
    attention = np.zeros((2, 2, T, T), dtype=np.float32)
    attention[..., 0] = 1.0  # by default every query looks at the first token
    for i in range(b + n, b + 2 * n):
        attention[1, 0, i, :] = 0
        attention[1, 0, i, i - n + 1] = 1.0  # the token after the earlier occurrence
        attention[0, 1, i, :] = 0
        attention[0, 1, i, [0, i - n + 1]] = 0.5
    scores = induction_scores(attention, n, b)
    np.testing.assert_allclose(scores, [[0.0, 0.5], [1.0, 0.0]])
    with pytest.raises(ValueError):
        induction_scores(attention, 5, b)


def test_probe_ids_are_a_seeded_random_sequence_repeated():
    model = tiny_llama()
    ids, prefix = probe_ids(model, 16, seed=3)
    assert prefix == 0 and len(ids) == 32 and ids[:16] == ids[16:]
    assert ids == probe_ids(model, 16, seed=3)[0] != probe_ids(model, 16, seed=4)[0]
    assert not set(ids) & model.special_ids and max(ids) < model.vocab_size
    for n in (3, 513):
        with pytest.raises(UserError, match="from 4 to 512"):
            probe_ids(model, n)
    with pytest.raises(UserError, match="context of 128"):
        probe_ids(model, 100)
    with pytest.raises(UserError, match="seed must be 0 or more"):
        probe_ids(model, 8, seed=-1)
    result = induction_probe(model, 8, seed=1)
    assert result.head_scores["induction"].shape == (3, 4)
    assert result.probe.prefix == 0 and result.probe.n == 8
    expected = induction_scores(result.attention, 8, 0)
    np.testing.assert_array_equal(result.head_scores["induction"], expected)
    quick = induction_probe(model, 8, seed=1, with_lens=False)
    np.testing.assert_array_equal(quick.head_scores["induction"], expected)
    assert quick.lens_ids.shape == (4, 16, 0) and quick.next_rank.shape == (4, 0)


# --- ablation -----------------------------------------------------------------------------


def test_parse_ablation():
    assert parse_ablation("3.2", 4, 4) == Ablation(3, "head", 2)
    assert parse_ablation("0.attn", 4, 4).describe() == "layer 0's attention"
    assert parse_ablation(" 1.mlp ", 4, 4).spec == "1.mlp"
    for bad, words in (
        ("4.1", "no layer 4"),
        ("1.4", "no head 4"),
        ("x", "LAYER.HEAD"),
        ("1", "3.attn"),
    ):
        with pytest.raises(UserError, match=words):
            parse_ablation(bad, 4, 4)


def test_ablating_a_head_equals_zeroing_its_output_by_hand():
    model = tiny_llama()
    ids = ids_of("the quick brown fox jumps", model)
    before = final_logits(model, ids)
    result = inspect(model, ids, top_k=3, ablations=["1.3"])
    # by hand: a copy whose output projection ignores head 3's slice
    by_hand = copy.deepcopy(model.model)
    head_size = 32 // 4
    with torch.no_grad():
        by_hand.model.layers[1].self_attn.o_proj.weight[:, 3 * head_size :] = 0
        logits = by_hand(torch.tensor([ids])).logits[0]
    loss = float(F.cross_entropy(logits[:-1], torch.tensor(ids[1:])))
    assert result.loss == pytest.approx(loss, abs=1e-5)
    assert result.base_loss == pytest.approx(
        float(F.cross_entropy(before[:-1], torch.tensor(ids[1:]))), abs=1e-5
    )
    assert result.loss != pytest.approx(result.base_loss, abs=1e-4)
    np.testing.assert_allclose(
        result.lens_probs[-1], F.softmax(logits, -1).topk(3).values.numpy(), atol=1e-5
    )
    assert result.ablated == ("1.3",) and result.base_top_ids.shape == (len(ids), 3)
    assert result.base_top_tokens[2] == model.token_texts(result.base_top_ids[2])
    # the hooks are gone: the model answers as before
    torch.testing.assert_close(final_logits(model, ids), before)
    # while they are on, another thread (another page sharing the model) sees no ablation
    import threading

    from llm_playground.inspection.capture import ablated

    seen = []
    with ablated(model, [Ablation(1, "head", 3)]):
        other = threading.Thread(target=lambda: seen.append(final_logits(model, ids)))
        other.start()
        other.join()
        here = final_logits(model, ids)
    torch.testing.assert_close(seen[0], before)
    torch.testing.assert_close(here, logits, atol=1e-5, rtol=1e-5)


def test_ablating_attention_and_mlp_equals_zeroing_them_by_hand():
    model = inspected_gpt(**CLASSIC)
    ids = ids_of("the lazy dog jumps", model)
    result = inspect(model, ids, ablations=["0.attn", "1.mlp"])
    by_hand = copy.deepcopy(model.model)
    with torch.no_grad():
        for linear in (by_hand.h[0].attn.c_proj, by_hand.h[1].mlp.c_proj):
            linear.weight.zero_()
            linear.bias.zero_()
        logits, _ = by_hand(torch.tensor([ids]))
    loss = float(F.cross_entropy(logits[0, :-1], torch.tensor(ids[1:])))
    assert result.loss == pytest.approx(loss, abs=1e-5)
    assert result.ablated == ("0.attn", "1.mlp")
    # the first layer's attention is unchanged by zeroing its output; the second's is not
    intact = capture(model, ids)
    np.testing.assert_allclose(result.attention[0], intact.attention[0].numpy(), atol=1e-6)
    assert not np.allclose(result.attention[1], intact.attention[1].numpy())


# --- inputs ---------------------------------------------------------------------------------


def test_prompt_limit_and_bad_inputs():
    model = inspected_gpt(**CLASSIC)
    with pytest.raises(UserError, match="limit is 128 tokens"):
        encode_prompt(model, "a" * 129, chat_template=False)
    assert len(encode_prompt(model, "a" * 128, chat_template=False)) == 128
    with pytest.raises(UserError, match="empty"):
        encode_prompt(model, "  ")
    with pytest.raises(UserError, match="no chat template"):
        encode_prompt(model, "hi", chat_template=True)
    with pytest.raises(UserError, match="context of 64"):
        inspect(model, [1] * 65)
    with pytest.raises(UserError, match="top-k"):
        inspect(model, [1, 2], top_k=0)
    with pytest.raises(UserError, match="no layer 2"):
        inspect(model, [1, 2], ablations=["2.0"])


def test_open_model_for_a_run_and_its_bad_step(tmp_path):
    model, tok, config = tiny_gpt(**SPEEDRUN)
    save_checkpoint(tmp_path / "run", model, config, tok, step=3, export_hf=False)
    opened = open_model(checkpoint=tmp_path / "run")
    assert opened.architecture == "gpt" and opened.step == 3 and opened.n_heads == 4
    ids = ids_of("the dog", opened)
    np.testing.assert_allclose(
        inspect(opened, ids).attention, inspect(inspected_gpt(**SPEEDRUN), ids).attention, atol=1e-6
    )
    with pytest.raises(UserError, match="no snapshots"):
        open_model(checkpoint=tmp_path / "run", step=10)
    with pytest.raises(UserError, match="not one"):
        open_model(checkpoint=tmp_path, step=10)
    # a classic run's GPT-2 export leads back to the run: the playground's own GPT
    model, tok, config = tiny_gpt(**CLASSIC)
    save_checkpoint(tmp_path / "classic", model, config, tok, step=5)
    classic = open_model(checkpoint=tmp_path / "classic" / "hf")
    assert (classic.architecture, classic.label) == ("gpt", "classic (step 5)")


# --- embeddings -------------------------------------------------------------------------------


def test_embedding_map_of_a_character_model_and_nearest_neighbours():
    model = inspected_gpt(**CLASSIC)
    with torch.no_grad():  # make 'b' point the same way as 'a', twice as long
        wte = model.model.wte.weight
        a, b = model.tokenizer.encode("ab")
        wte[b] = 2 * wte[a]
    mapped = embedding_map(model)
    assert mapped.labels == [model.token_text(i) for i in range(model.vocab_size)]
    assert mapped.points.shape == (model.vocab_size, 2)
    assert mapped.groups[mapped.labels.index("e")] == "vowel"
    assert mapped.groups[mapped.labels.index("7")] == "digit"
    assert mapped.groups[mapped.labels.index("!")] == "punctuation"
    assert 0 < mapped.explained[1] <= mapped.explained[0] < 1
    # the PCA coordinates: centred embeddings on the two leading directions
    matrix = model.model.wte.weight.detach().numpy()
    centred = matrix - matrix.mean(0)
    np.testing.assert_allclose(
        np.abs(mapped.points), np.abs(centred @ np.linalg.svd(centred)[2][:2].T), atol=1e-4
    )
    nearest = nearest_neighbours(model, "a", k=3)
    assert nearest[0].token == "b" and nearest[0].cosine == pytest.approx(1.0, abs=1e-5)
    assert "a" not in [n.token for n in nearest]


def test_embedding_map_of_words():
    model = tiny_llama()
    with pytest.raises(UserError, match="at least 3"):
        embedding_map(model, ["a", "b"])
    mapped = embedding_map(model, ["the", "fox", "dog", "fox"])
    assert mapped.labels == ["the", "fox", "dog"] and mapped.points.shape == (3, 2)
    assert all(len(ids) == 3 for ids in mapped.token_ids)  # a character tokenizer: 3 tokens each


def test_reference_sources_are_the_code_that_runs():
    sources = reference_sources()
    assert "def explicit_attention" in sources["explicit_attention"]
    assert "softmax" in sources["explicit_attention"]
    assert "def induction_scores" in sources["induction_scores"]


# --- SmolLM2 --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    return open_model("smollm2-135m-instruct")


def test_smollm2_attention_equals_transformers_eager_attention(smollm2):
    from transformers import AutoModelForCausalLM

    from llm_playground.generation.registry import offline_model_dir

    ids = encode_prompt(smollm2, "The cat sat on the mat.", chat_template=False)
    result = inspect(smollm2, ids)
    assert (result.n_layers, result.n_heads, smollm2.n_kv_heads) == (30, 9, 3)
    assert result.attention.shape == (30, 9, len(ids), len(ids))
    eager = AutoModelForCausalLM.from_pretrained(
        offline_model_dir("smollm2-135m-instruct"), attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        out = eager(torch.tensor([ids]), output_attentions=True)
    np.testing.assert_allclose(result.attention, torch.stack(out.attentions)[:, 0], atol=1e-4)
    np.testing.assert_allclose(
        result.lens_probs[-1], F.softmax(out.logits[0], -1).topk(5).values.numpy(), atol=1e-5
    )
    assert smollm2.model.config._attn_implementation != "eager"
