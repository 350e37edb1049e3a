"""Cleaning: a real HTML parser, whitespace, NFKC, and the token diff."""

from __future__ import annotations

import pytest

from llm_playground.core.errors import UserError
from llm_playground.tokenization.cleaning import (
    clean,
    nfkc,
    normalize_whitespace,
    parse_steps,
    strip_html,
    token_diff,
)
from llm_playground.tokenization.tokenizer import get_tokenizer


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Fish &amp; chips &lt;3 &#8364;5 &euro;</p>", "Fish & chips <3 €5 €"),
        ("<script>alert('x')</script><p>kept</p><style>p { color: red }</style>", "kept"),
        ("<p>one</p><p>two</p>", "one\n\ntwo"),
        ("<ul>\n  <li>a</li>\n  <li>b</li>\n</ul>", "a\nb"),
        ("line<br>break<br/>again", "line\nbreak\nagain"),
        ("<h1>Title</h1>Body <b>bold</b> <i>it</i>alic", "Title\n\nBody bold italic"),
        ("<div>a</div><div>b</div>", "a\nb"),
        ("<pre>x = 1\n    y</pre>", "x = 1\n    y"),
        ("<table><tr><td>1</td><td>2</td></tr><tr><td>3</td><td>4</td></tr></table>", "1\t2\n3\t4"),
        ("<p>a  \n  b</p>", "a b"),
        ("<!-- a comment --><p>visible</p>", "visible"),
        (
            "<html><head><title>T</title><script>var s = '<p>no</p>';</script></head>"
            "<body><noscript>enable js</noscript><p>yes</p></body></html>",
            "T\n\nyes",
        ),
        ("plain text, no tags", "plain text, no tags"),
        ("<p>unclosed <b>tags", "unclosed tags"),
    ],
)
def test_strip_html(html, text):
    assert strip_html(html) == text


def test_nbsp_is_kept_by_html_and_removed_by_whitespace():
    assert strip_html("<p>a&nbsp;b</p>") == "a\u00a0b"
    assert clean("<p>a&nbsp;&nbsp;b</p>", "html,whitespace") == "a b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a  \t b", "a b"),
        ("  lead and trail  ", "lead and trail"),
        ("one\r\ntwo\rthree", "one\ntwo\nthree"),
        ("p1\n\n\n\n\np2", "p1\n\np2"),
        ("line   \n   next", "line\nnext"),
        ("a\u00a0\u2003b", "a b"),
    ],
)
def test_normalize_whitespace(text, expected):
    assert normalize_whitespace(text) == expected


def test_nfkc():
    assert nfkc("ﬁnance ① Ｈｅｌｌｏ x² ℌ") == "finance 1 Hello x2 H"
    assert nfkc("café") == "café"


def test_steps_are_validated_and_applied_in_a_fixed_order():
    assert parse_steps("html, whitespace,nfkc") == ["html", "whitespace", "nfkc"]
    assert parse_steps("") == [] and parse_steps(None) == []
    with pytest.raises(UserError, match="unknown cleaning step 'markdown'"):
        parse_steps("html,markdown")
    # NFKC turns the full-width space into a space that whitespace then folds.
    assert clean("<p>Ｈｉ\u3000\u3000there</p>", "whitespace,nfkc,html") == "Hi there"


def test_token_diff_after_cleaning():
    tok = get_tokenizer("gpt2")
    raw = "<p>Hello   world</p>"
    before, after = tok.encode(raw), tok.encode(clean(raw, "html,whitespace"))
    diff = token_diff(before, after)
    assert after == tok.encode("Hello world")
    assert diff.unchanged + diff.removed == len(before)
    assert diff.unchanged + diff.added == len(after)
    # <p>, </p> and the two extra spaces went; "Hello" and " world" are the same tokens.
    assert before == [27, 79, 29, 15496, 220, 220, 995, 3556, 79, 29]
    assert (diff.unchanged, diff.removed, diff.added) == (2, 8, 0)
    assert diff.changed_before() == {0, 1, 2, 4, 5, 7, 8, 9} and diff.changed_after() == set()
    nfkc_diff = token_diff(tok.encode("ﬁnal ①"), tok.encode(clean("ﬁnal ①", "nfkc")))
    assert nfkc_diff.added > 0 and nfkc_diff.removed > 0


def test_token_diff_identical_and_empty():
    assert token_diff([1, 2, 3], [1, 2, 3]).removed == 0
    diff = token_diff([1, 2, 3], [1, 9, 3])
    assert (diff.unchanged, diff.removed, diff.added) == (2, 1, 1)
    assert diff.changed_before() == {1} and diff.changed_after() == {1}
    assert token_diff([], []).opcodes == []
