"""Perplexity against direct computations; BLEU, chrF and ROUGE against the libraries' documented answers."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from llm_playground.core.errors import UserError
from llm_playground.core.paths import package_data
from llm_playground.evaluation import metrics

# The example of sacrebleu's README: three system segments, two reference streams.
README_REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]
README_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]

TEXT = (
    "The tower is 324 metres tall, about the same height as an 81-storey building, and the "
    "tallest structure in Paris. Its base is square, measuring 125 metres on each side. During "
    "its construction, the Eiffel Tower surpassed the Washington Monument to become the tallest "
    "man-made structure in the world, a title it held for 41 years until the Chrysler Building "
    "in New York City was finished in 1930."
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine this is several times faster than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smollm():
    from llm_playground.generation.registry import load_model

    try:
        return load_model("smollm2-135m-instruct")
    except UserError as exc:
        pytest.skip(f"offline model not installed: {exc}")


def _ids(loaded, text):
    return loaded.tokenizer(text)["input_ids"]


def _scored_sequence(loaded, text):
    """The prefix token (beginning-of-text, else end-of-text), then the text's tokens."""
    tok = loaded.tokenizer
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return [prefix, *tok(text, add_special_tokens=False)["input_ids"]]


# --- perplexity --------------------------------------------------------------------------


def test_windows_score_every_token_once():
    windows = metrics.sliding_windows(100, max_length=32, stride=8)
    scored = [i for w in windows for i in range(w.end - w.n_targets, w.end)]
    assert scored == list(range(1, 100))
    assert windows[0] == metrics.Window(0, 32, 31)
    assert all(w.length <= 32 for w in windows)


def test_windows_with_stride_equal_to_max_length_skip_each_window_start():
    windows = metrics.sliding_windows(10, max_length=4, stride=4)
    assert [(w.begin, w.end, w.n_targets) for w in windows] == [(0, 4, 3), (4, 8, 3), (8, 10, 1)]


def test_rolling_windows_score_every_token_after_the_prefix_with_full_inputs():
    windows = metrics.rolling_windows(11, max_length=4)  # the prefix, then 10 tokens
    assert [(w.begin, w.end, w.n_targets) for w in windows] == [(0, 5, 4), (4, 9, 4), (6, 11, 2)]
    scored = [i for w in windows for i in range(w.end - w.n_targets, w.end)]
    assert scored == list(range(1, 11))
    assert all(w.length == 4 for w in windows)  # the last window reaches back


@pytest.mark.parametrize("stride,max_length", [(0, 8), (9, 8)])
def test_bad_stride_is_a_user_error(stride, max_length):
    with pytest.raises(UserError, match="stride"):
        metrics.sliding_windows(50, max_length, stride)


def test_perplexity_equals_direct_mean_nll_when_stride_is_max_length(smollm):
    """Rolling windows (the harness's): each feeds L tokens and scores the next L, plain
    full-logit log-softmax; the last window reaches back for a full input."""
    L = 32
    seq = _scored_sequence(smollm, TEXT)
    nll, count, predicted = 0.0, 0, 0
    with torch.no_grad():
        while predicted < len(seq) - 1:
            n = min(L, len(seq) - 1 - predicted)
            end = 1 + predicted + n
            inputs = torch.tensor([seq[max(0, end - 1 - L) : end - 1]])
            logp = torch.log_softmax(smollm.model(inputs).logits[0, -n:].float(), dim=-1)
            nll -= logp.gather(1, torch.tensor(seq[end - n : end])[:, None]).sum().item()
            count, predicted = count + n, predicted + n
    result = metrics.perplexity(smollm, TEXT, stride=L, max_length=L, dtype="float32", batch_size=3)
    assert result.n_tokens == count == len(seq) - 1
    assert result.nll_sum == pytest.approx(nll, rel=1e-4)
    assert result.token_perplexity == pytest.approx(math.exp(nll / count), rel=1e-4)


def test_sliding_window_matches_the_guides_loop(smollm):
    """The transformers guide's loop (labels with -100, loss times the scored-token count)."""
    max_length, stride = 48, 16
    enc = torch.tensor([_scored_sequence(smollm, TEXT)])
    seq_len = enc.size(1)
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, seq_len, stride):
        end = min(begin + max_length, seq_len)
        trg_len = end - prev_end
        input_ids = enc[:, begin:end]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = smollm.model(input_ids, labels=target_ids).loss
        n_valid = int((target_ids[:, 1:] != -100).sum())  # labels are shifted inside the model
        nll_sum += loss.item() * n_valid
        n_tokens += n_valid
        prev_end = end
        if end == seq_len:
            break
    result = metrics.perplexity(smollm, TEXT, stride=stride, max_length=max_length, dtype="float32")
    assert result.n_tokens == n_tokens == seq_len - 1
    assert result.nll_sum == pytest.approx(nll_sum, rel=1e-4)
    assert result.token_perplexity == pytest.approx(math.exp(nll_sum / n_tokens), rel=1e-4)


def test_batched_windows_equal_one_window_at_a_time(smollm):
    kwargs = dict(stride=16, max_length=48, dtype="float32")
    one = metrics.perplexity(smollm, TEXT, batch_size=1, **kwargs)
    many = metrics.perplexity(smollm, TEXT, batch_size=8, **kwargs)
    assert many.nll_sum == pytest.approx(one.nll_sum, rel=1e-4)
    assert many.n_tokens == one.n_tokens


def test_word_perplexity_and_bits_per_byte_identities(smollm):
    text = "The cat sat on the mat."
    r = metrics.perplexity(smollm, text, dtype="float32")
    # Every token is scored (the first after the prefix token): the harness's counts.
    assert r.n_tokens == len(_scored_sequence(smollm, text)) - 1
    assert r.n_words == 6 == len(__import__("re").split(r"\s+", text))
    assert r.n_bytes == len(text.encode("utf-8"))
    assert r.token_perplexity == pytest.approx(math.exp(r.nll_sum / r.n_tokens))
    assert r.word_perplexity == pytest.approx(math.exp(r.nll_sum / r.n_words))
    assert r.bits_per_byte == pytest.approx(r.nll_sum / math.log(2) / r.n_bytes)
    # One relation ties the three: bits per byte from word perplexity.
    assert r.bits_per_byte == pytest.approx(math.log2(r.word_perplexity) * r.n_words / r.n_bytes)


def test_bytes_count_non_ascii_text_in_utf8(smollm):
    text = "Café crème brûlée, s'il vous plaît."
    r = metrics.perplexity(smollm, text, dtype="float32")
    assert r.n_bytes == len(text.encode("utf-8"))
    assert r.n_bytes > len(text)


def test_max_tokens_caps_the_run_and_progress_reaches_the_end(smollm):
    events = list(
        metrics.perplexity_events(
            smollm,
            metrics.load_eval_text("wikitext-2").text,
            stride=16,
            max_length=32,
            max_tokens=64,
            dtype="float32",
        )
    )
    assert isinstance(events[0], metrics.PerplexityStarted) and events[0].total == 64
    assert isinstance(events[-1], metrics.PerplexityDone)
    result = events[-1].result
    progress = [e for e in events if isinstance(e, metrics.PerplexityProgress)]
    assert isinstance(result, metrics.PerplexityResult)
    assert result.capped and result.n_tokens == 64
    assert [p.tokens_done for p in progress] == sorted(p.tokens_done for p in progress)
    assert progress[-1].tokens_done == progress[-1].tokens_total == 64
    assert progress[-1].fraction == 1.0


def test_perplexity_caps_name_their_limits(smollm):
    with pytest.raises(UserError, match=f"{metrics.MAX_PERPLEXITY_TOKENS:,}"):
        metrics.perplexity(smollm, TEXT, max_tokens=metrics.MAX_PERPLEXITY_TOKENS + 1)
    with pytest.raises(UserError, match=f"{metrics.MAX_TEXT_CHARS:,}"):
        metrics.pasted_text("a" * (metrics.MAX_TEXT_CHARS + 1))


def test_cached_mode_equals_a_direct_stride_1_computation_on_a_short_text(smollm):
    """Every token sees the whole text before it: one forward pass over the text."""
    seq = _scored_sequence(smollm, TEXT)
    with torch.no_grad():
        logits = smollm.model(torch.tensor([seq[:-1]])).logits[0].float()
    direct = torch.nn.functional.cross_entropy(logits, torch.tensor(seq[1:]), reduction="sum")
    cached = metrics.perplexity(
        smollm, TEXT, stride=8, max_length=len(seq) + 8, dtype="float32", mode="cached"
    )
    assert cached.mode == "cached" and cached.n_tokens == len(seq) - 1
    assert cached.nll_sum == pytest.approx(float(direct), rel=1e-4)
    windows = metrics.perplexity(smollm, TEXT, stride=8, max_length=24, dtype="float32")
    longer = metrics.perplexity(
        smollm, TEXT, stride=8, max_length=24, dtype="float32", mode="cached"
    )
    assert longer.nll_sum == pytest.approx(windows.nll_sum, rel=0.5)  # close, not the same


def test_bfloat16_stays_close_to_float32(smollm):
    fp32 = metrics.perplexity(smollm, TEXT, stride=32, max_length=64, dtype="float32")
    bf16 = metrics.perplexity(smollm, TEXT, stride=32, max_length=64, dtype="bfloat16")
    assert bf16.dtype == "bfloat16"
    assert bf16.token_perplexity == pytest.approx(fp32.token_perplexity, rel=0.03)


def test_stop_before_start_and_bad_input(smollm):
    stop = threading.Event()
    stop.set()
    with pytest.raises(UserError, match="stopped"):
        metrics.perplexity(smollm, TEXT, stop_event=stop, dtype="float32")
    with pytest.raises(UserError, match="empty"):
        metrics.perplexity(smollm, "   ")
    with pytest.raises(UserError, match="dtype"):
        metrics.perplexity(smollm, TEXT, dtype="float16")
    with pytest.raises(UserError, match="mode"):
        metrics.perplexity(smollm, TEXT, mode="fast")
    assert metrics.perplexity(smollm, "Hi", dtype="float32").n_tokens == 1  # after the prefix


def test_eval_texts(tmp_path):
    wiki = metrics.load_eval_text("wikitext-2")
    assert wiki.text.lstrip().startswith("= Robert <unk> =") and "CC BY-SA" in wiki.description
    full = package_data("tinyshakespeare.txt").read_text()
    val = metrics.load_eval_text("tinyshakespeare-val").text
    assert full.endswith(val) and len(val) == len(full) - int(0.9 * len(full))
    f = tmp_path / "mine.txt"
    f.write_text("Some text of mine.\n")
    assert metrics.load_eval_text(str(f)).text == "Some text of mine.\n"
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(UserError, match="empty"):
        metrics.load_eval_text(str(tmp_path / "empty.txt"))
    with pytest.raises(UserError, match="unknown data set"):
        metrics.load_eval_text("wikitext-103")
    with pytest.raises(UserError, match="empty"):
        metrics.pasted_text("  ")


# --- BLEU and chrF -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "tokenize,expected", [("13a", 48.530827), ("none", 49.1919566), ("intl", 43.91623493)]
)
def test_sacrebleu_readme_known_answers(tokenize, expected):
    result = metrics.bleu_chrf(README_SYS, README_REFS, tokenize=tokenize)
    assert result.bleu == pytest.approx(expected, abs=1e-6)
    assert result.signature.startswith(f"nrefs:2|case:mixed|eff:no|tok:{tokenize}|smooth:exp")
    assert result.chrf_signature.startswith("nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no")


def test_corpus_bleu_is_not_the_mean_of_sentence_bleu():
    from sacrebleu.metrics import BLEU, CHRF

    result = metrics.bleu_chrf(README_SYS, README_REFS)
    sbleu = BLEU(effective_order=True)
    expected = [
        sbleu.sentence_score(h, [r[i] for r in README_REFS]).score for i, h in enumerate(README_SYS)
    ]
    assert [s.bleu for s in result.sentences] == pytest.approx(expected)
    assert [s.chrf for s in result.sentences] == pytest.approx(
        [
            CHRF().sentence_score(h, [r[i] for r in README_REFS]).score
            for i, h in enumerate(README_SYS)
        ]
    )
    assert result.sentences[0].bleu == pytest.approx(100.0)
    # Corpus BLEU pools the n-gram counts of all segments before the geometric mean.
    plain = BLEU()
    stats = [plain.sentence_score(h, [r[i] for r in README_REFS]) for i, h in enumerate(README_SYS)]
    pooled = BLEU.compute_bleu(
        correct=[sum(s.counts[n] for s in stats) for n in range(4)],
        total=[sum(s.totals[n] for s in stats) for n in range(4)],
        sys_len=sum(s.sys_len for s in stats),
        ref_len=sum(s.ref_len for s in stats),
    )
    assert result.bleu == pytest.approx(pooled.score)
    assert result.bleu != pytest.approx(sum(expected) / len(expected), abs=0.1)


def test_single_segment_corpus_equals_sentence_level():
    from sacrebleu.metrics import BLEU

    hyp, ref = (
        "the quick brown fox jumps over the dog",
        "the quick brown fox jumps over the lazy dog",
    )
    result = metrics.bleu_chrf([hyp], [[ref]])
    assert result.bleu == pytest.approx(BLEU().sentence_score(hyp, [ref]).score)


def test_short_string_sentence_bleu_zero_but_chrf_not():
    score = metrics.sentence_bleu_chrf("colour", ["color"])  # no word in common, most characters
    assert score.bleu == 0.0 and score.bleu_zero_on_short
    assert score.chrf > 0.0


def test_line_count_mismatch_is_a_user_error():
    with pytest.raises(UserError, match="reference set 1 has 2 lines but the hypotheses have 3"):
        metrics.bleu_chrf(README_SYS, [["a", "b"]])
    with pytest.raises(UserError, match="2 lines"):
        metrics.rouge(["a", "b", "c"], ["a", "b"])


# --- ROUGE -------------------------------------------------------------------------------


def test_rouge_known_answers_target_first():
    # rouge-score's documented example: target "testing one two", prediction "testing one".
    scores = metrics.rouge(["testing one"], ["testing one two"])
    assert scores["rouge2"]["fmeasure"] == pytest.approx(2 / 3)
    assert scores["rougeL"]["fmeasure"] == pytest.approx(4 / 5)
    assert scores["rouge1"]["precision"] == pytest.approx(1.0)
    assert scores["rouge1"]["recall"] == pytest.approx(2 / 3)


def test_rouge_is_averaged_over_lines():
    one = metrics.rouge(["testing one"], ["testing one two"])
    same = metrics.rouge(["a b c"], ["a b c"])
    both = metrics.rouge(["testing one", "a b c"], ["testing one two", "a b c"])
    for t in metrics.ROUGE_TYPES:
        assert both[t]["fmeasure"] == pytest.approx((one[t]["fmeasure"] + same[t]["fmeasure"]) / 2)


def test_rouge_lsum_splits_sentences_on_newlines():
    assert (
        metrics.split_sentences("The cat sat. The dog ran!  Why?")
        == "The cat sat.\nThe dog ran!\nWhy?"
    )
    scores = metrics.rouge(["the dog ran. the cat sat."], ["the cat sat. the dog ran."])
    assert scores["rougeLsum"]["fmeasure"] == pytest.approx(1.0)
    assert scores["rougeL"]["fmeasure"] < 1.0


# --- the reference set -------------------------------------------------------------------


def test_reference_set_ships_with_unique_ids():
    items = metrics.load_reference_set()
    assert 20 <= len(items) <= 30
    assert len({i.id for i in items}) == len(items)
    assert all(i.prompt.strip() and i.reference.strip() for i in items)


def test_reference_set_scoring_generates_and_scores(smollm):
    from llm_playground.generation.config import DecodingConfig

    events = list(
        metrics.reference_set_events(
            smollm, DecodingConfig(strategy="greedy", max_new_tokens=12), limit=2
        )
    )
    assert isinstance(events[-1], metrics.ReferenceDone)
    result = events[-1].result
    assert isinstance(result, metrics.ReferenceResult)
    assert [e.done for e in events[1:-1]] == [1, 2]
    assert len(result.answers) == 2 and all(result.answers)
    direct = metrics.bleu_chrf(list(result.answers), [[i.reference for i in result.items]])
    assert result.bleu.bleu == pytest.approx(direct.bleu)
    assert result.settings["decoding"]["max_new_tokens"] == 12
