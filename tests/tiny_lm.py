"""Tiny language models saved in a folder, for Lab 4's reward-model and RL tests: a
one-layer Llama with SmolLM2's tokenizer (and chat template) and a one-layer GPT-2 (whose
attention LoRA cannot target by the default module names)."""

from __future__ import annotations

from pathlib import Path

import pytest

SMOLLM_DIR = Path.home() / ".cache" / "llm-playground" / "models" / "smollm2-135m-instruct"


def tiny_llama(folder: Path, hidden: int = 16) -> Path:
    """A random one-layer Llama in ``folder`` with the offline SmolLM2 tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if not (SMOLLM_DIR / "tokenizer.json").exists():
        pytest.skip("the offline SmolLM2 tokenizer is not installed")
    tokenizer = AutoTokenizer.from_pretrained(SMOLLM_DIR)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_gpt2(folder: Path) -> Path:
    """A random one-layer GPT-2 (``c_attn``, no ``q_proj``) with the same tokenizer."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    if not (SMOLLM_DIR / "tokenizer.json").exists():
        pytest.skip("the offline SmolLM2 tokenizer is not installed")
    tokenizer = AutoTokenizer.from_pretrained(SMOLLM_DIR)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=128)
    folder.mkdir(parents=True, exist_ok=True)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
