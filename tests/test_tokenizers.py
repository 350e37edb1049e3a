"""Tokenizers: known answers, round trips, pieces shown honestly, names and files, speed."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_playground.core.errors import UserError
from llm_playground.core.paths import get_paths, package_data
from llm_playground.tokenization import assets
from llm_playground.tokenization.bpe import train
from llm_playground.tokenization.tokenizer import (
    CharTokenizer,
    available_tokenizers,
    get_tokenizer,
    load_tokenizer_file,
    save_bpe,
    tokenize_with_pieces,
)

TIKTOKEN = ["gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base"]
SHAKESPEARE = package_data("tinyshakespeare.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module", autouse=True)
def tiktoken_assets():
    """The encodings' files in the shared cache (a no-op after `llm-playground assets install`)."""
    assets.install_tiktoken_assets()


@pytest.fixture(scope="module")
def small_bpe():
    return train(SHAKESPEARE[:50_000], 300, name="small")


def test_gpt2_known_answer():
    assert get_tokenizer("gpt2").encode("Hello world, To be or not to be!") == [
        15496,
        995,
        11,
        1675,
        307,
        393,
        407,
        284,
        307,
        0,
    ]


@pytest.mark.parametrize(
    ("name", "text", "ids"),
    [
        # tiktoken's own tests (tests/test_encoding.py)
        ("gpt2", "hello world", [31373, 995]),
        ("r50k_base", "hello world", [31373, 995]),
        ("p50k_base", "hello world", [31373, 995]),
        ("cl100k_base", "hello world", [15339, 1917]),
        ("cl100k_base", " \x850", [220, 126, 227, 15]),
        ("cl100k_base", "👍", [9468, 239, 235]),
        ("cl100k_base", "today\n \n", [31213, 27907]),
        ("gpt2", "00000000000000000", [8269, 10535, 830]),
        ("o200k_base", "hello world", [24912, 2375]),
        # p50k_base adds one token per run of 2..25 spaces after r50k's 50,257
        ("p50k_base", "    ", [50259]),
        ("r50k_base", "    ", [220, 220, 220, 220]),
    ],
)
def test_tiktoken_known_answers(name, text, ids):
    assert get_tokenizer(name).encode(text) == ids


def test_vocabulary_sizes():
    sizes = {n: get_tokenizer(n).vocab_size for n in TIKTOKEN}
    assert sizes == {
        "gpt2": 50257,
        "r50k_base": 50257,
        "p50k_base": 50281,
        "cl100k_base": 100277,
        "o200k_base": 200019,
    }
    assert get_tokenizer("char").vocab_size == 65  # TinyShakespeare's characters


@pytest.mark.parametrize("name", TIKTOKEN)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text())
def test_tiktoken_round_trip(name, text):
    tok = get_tokenizer(name)
    assert tok.decode(tok.encode(text)) == text


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text())
def test_own_bpe_round_trip(small_bpe, text):
    tok = get_tokenizer(str(save_bpe(small_bpe, "roundtrip", overwrite=True)))
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1))
def test_char_round_trip(text):
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text


# SmolLM2's vocabulary has no token for a few control bytes and for the UTF-8 lead bytes
# of planes 4-16 (0xF1-0xF4), so those characters cannot survive its round trip.
SMOLLM2_MISSING = "\x04\x06\x13\x14\x16\x1d"
HF_TEXT = {
    "smollm2-135m-instruct": st.text(
        st.characters(
            max_codepoint=0x3FFFF, exclude_characters=SMOLLM2_MISSING, exclude_categories=("Cs",)
        )
    ),
    "gemma3-270m": st.text(),
}


@pytest.mark.parametrize("name", list(HF_TEXT))
def test_hf_round_trip(name):
    if name not in available_tokenizers():
        pytest.skip(f"{name} is not installed (llm-playground assets install)")
    tok = get_tokenizer(name)

    @settings(max_examples=60, deadline=None)
    @given(text=HF_TEXT[name])
    def round_trip(text):
        assert tok.decode(tok.encode(text)) == text
        assert b"".join(tok.token_bytes(i) for i in tok.encode(text)) == text.encode("utf-8")

    round_trip()


@pytest.mark.parametrize("name", TIKTOKEN + ["char"])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text())
def test_pieces_cover_the_text_bytes(name, text):
    tok = get_tokenizer(name)
    if name == "char":
        text = "".join(c for c in text if c in tok.stoi)
    result = tokenize_with_pieces(tok, text)
    assert len(result.ids) == len(result.pieces) == len(result.offsets) - 1
    data = text.encode("utf-8")
    assert b"".join(tok.token_bytes(i) for i in result.ids) == data
    assert result.offsets[-1] == len(data)
    for (start, end), tid in zip(result.spans, result.ids, strict=True):
        assert data[start:end] == tok.token_bytes(tid)
    assert "\ufffd" not in "".join(result.pieces) or "\ufffd" in text


def test_split_characters_are_shown_as_bytes_not_replacement_characters():
    result = tokenize_with_pieces("gpt2", "你好")
    assert result.pieces == ["\\xe4\\xbd", "\\xa0", "\\xe5\\xa5", "\\xbd"]
    assert "\ufffd" not in "".join(result.pieces)
    whole = tokenize_with_pieces("cl100k_base", "你好")
    assert whole.pieces == ["你", "好"]


def test_counts():
    result = tokenize_with_pieces("gpt2", "Hello world, To be or not to be!")
    assert (result.n_tokens, result.n_chars) == (10, 32)
    assert result.chars_per_token == pytest.approx(3.2)
    assert result.pieces[:2] == ["Hello", " world"]
    empty = tokenize_with_pieces("gpt2", "")
    assert (empty.ids, empty.pieces, empty.offsets.tolist(), empty.chars_per_token) == (
        [],
        [],
        [0],
        0.0,
    )


def test_char_tokenizer_unseen_character_is_a_clear_error():
    tok = get_tokenizer("char")
    assert tok.decode(tok.encode("To be, or not to be")) == "To be, or not to be"
    with pytest.raises(UserError, match=r"character '€' \(U\+20AC\) at position 3 is not in"):
        tok.encode("abc€")


def test_char_tokenizer_json(tmp_path):
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == sorted(set("hello world"))
    loaded = load_tokenizer_file(tok.save(tmp_path / "c.json"))
    assert isinstance(loaded, CharTokenizer) and loaded.chars == tok.chars
    (tmp_path / "bad.json").write_text(
        '{"format": "llm-playground/char-tokenizer", "version": 1, "chars": ["ab"]}'
    )
    with pytest.raises(UserError, match="damaged"):
        load_tokenizer_file(tmp_path / "bad.json")


def test_names_and_saved_tokenizers(small_bpe):
    names = available_tokenizers()
    assert names[:6] == TIKTOKEN + ["char"]
    assert "bpe:mine" not in names
    path = save_bpe(small_bpe, "mine")
    assert path == get_paths().tokenizers / "mine.json"
    assert "bpe:mine" in available_tokenizers()
    by_name, by_path = get_tokenizer("bpe:mine"), get_tokenizer(str(path))
    assert by_name.encode("To be") == by_path.encode("To be") == small_bpe.encode("To be")
    with pytest.raises(UserError, match="unknown tokenizer 'nope'"):
        get_tokenizer("nope")
    with pytest.raises(UserError, match="no saved tokenizer"):
        get_tokenizer("bpe:absent")
    with pytest.raises(UserError, match="must be letters"):
        save_bpe(small_bpe, "../escape")
    with pytest.raises(UserError, match="must be letters"):
        save_bpe(small_bpe, "/etc/passwd")
    with pytest.raises(UserError, match="already saved"):
        save_bpe(small_bpe, "mine")
    assert save_bpe(small_bpe, "mine", overwrite=True) == path
    assert [p.name for p in path.parent.iterdir()] == ["mine.json"]  # no temporary file left


def test_configure_tiktoken_respects_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    assert assets.configure_tiktoken() == get_paths().tiktoken_cache
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(get_paths().tiktoken_cache)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert assets.configure_tiktoken() == tmp_path


def test_one_megabyte_with_pieces_matches_plain_encoding():
    """Pieces of a 1 MB text agree with plain encoding (speed is measured in bench/tokenization.py)."""
    tok = get_tokenizer("cl100k_base")
    text = SHAKESPEARE[:1_000_000]
    result = tokenize_with_pieces(tok, text)
    assert result.ids == tok.encode(text)
    assert result.n_tokens > 200_000
    assert "".join(result.pieces) == text
