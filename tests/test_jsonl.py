"""The shared JSONL reader: every malformed line is named by file and number."""

import pytest

from llm_playground.core.errors import UserError
from llm_playground.core.jsonl import parse_jsonl, read_jsonl


def test_rows_come_with_their_line_numbers_and_blank_lines_are_skipped():
    rows = parse_jsonl('{"a": "x"}\n\n  \n{"a": "y", "n": 2}\n', "t.jsonl", text_fields=("a",))
    assert rows == [(1, {"a": "x"}), (4, {"a": "y", "n": 2})]


@pytest.mark.parametrize(
    "text, checks, message",
    [
        ('{"a": "x"}\n{oops', {}, "t.jsonl line 2: not valid JSON"),
        ('["a"]', {"text_fields": ("a",)}, "t.jsonl line 1: expected a JSON object with 'a'"),
        ('{"b": 1}', {"keys": ("id",)}, "t.jsonl line 1: missing field(s) 'id'"),
        ('{"a": 5}', {"text_fields": ("a",)}, "t.jsonl line 1: missing text field(s) 'a'"),
        (
            '{"a": "  "}',
            {"text_fields": ("a",), "nonblank": True},
            "t.jsonl line 1: missing or empty text field(s) 'a'",
        ),
    ],
)
def test_malformed_lines_are_named(text, checks, message):
    with pytest.raises(UserError) as err:
        parse_jsonl(text, "t.jsonl", **checks)
    assert str(err.value).startswith(message)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(UserError, match="data file not found"):
        read_jsonl(tmp_path / "nope.jsonl", "data file")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(UserError, match="not UTF-8"):
        read_jsonl(bad)
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": 1, "a": "é"}\n', encoding="utf-8")
    assert read_jsonl(good, keys=("id",)) == [(1, {"id": 1, "a": "é"})]
