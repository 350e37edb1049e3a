"""Instruction data: the shipped offline set is reproducible and correct, JSONL round trips,
malformed lines are named, the held-out slice is fixed and disjoint, Alpaca needs a network."""

from __future__ import annotations

import json
import re

import pytest

from llm_playground.core.errors import UserError
from llm_playground.finetuning.instructions import (
    PROMPT_FORMAT,
    Example,
    build_offline_set,
    chatterbot_examples,
    derived_examples,
    format_prompt,
    load_alpaca,
    load_examples,
    load_offline,
    offline_path,
    parse_instructions,
    prompt_for_model,
    read_instructions,
    save_jsonl,
    split_heldout,
)


def test_shipped_offline_set_is_exactly_what_the_builder_makes():
    shipped = load_offline()
    assert shipped == build_offline_set()
    assert len(shipped) == 2136
    sources = {e.source.split("/")[0] for e in shipped}
    assert sources == {"chatterbot", "derived"}
    assert offline_path().with_name("README.md").exists()  # the data card


def test_chatterbot_pairs_come_from_the_corpus():
    pairs = {(e.instruction, e.output) for e in chatterbot_examples()}
    assert ("Who was the 37th President of the United States?", "Richard Nixon") in pairs
    assert (
        "What is AI?",
        "Artificial Intelligence is the branch of engineering and science devoted "
        "to constructing machines that think.",
    ) in pairs
    assert len(pairs) == 1176


def test_derived_answers_are_correct():
    seen = set()
    for ex in derived_examples():
        task = ex.source.split("/")[1]
        seen.add(task)
        line = ex.input
        if task == "uppercase":
            assert ex.output == line.upper()
        elif task == "lowercase":
            assert ex.output == line.lower()
        elif task == "count":
            assert ex.output == f"The line has {len(line.split())} words."
        elif task == "reverse":
            assert ex.output.split()[::-1] == [
                w.strip(".,;:!?'\"()[]-") for w in line.split() if w.strip(".,;:!?'\"()[]-")
            ]
        elif task == "sort":
            words = line.split(", ")
            assert ex.output.split(", ") == sorted(words, key=str.lower)
        elif task in ("addition", "subtraction"):
            a, op, b = re.match(r"What is (\d+) (plus|minus) (\d+)\?", ex.instruction).groups()
            value = int(a) + int(b) if op == "plus" else int(a) - int(b)
            assert ex.output == f"{a} {'+' if op == 'plus' else '-'} {b} = {value}."
        elif task in ("first-word", "last-word"):
            word = re.match(r'The (first|last) word is "(.+)"\.', ex.output).group(2)
            assert word in line
    assert seen == {
        "uppercase",
        "lowercase",
        "count",
        "first-word",
        "last-word",
        "reverse",
        "sort",
        "addition",
        "subtraction",
    }


def test_prompt_format_known_answer():
    assert format_prompt("Say hi.") == "### Instruction:\nSay hi.\n\n### Response:\n"
    assert (
        format_prompt(" Upper. ", "abc")
        == "### Instruction:\nUpper.\n\n### Input:\nabc\n\n### Response:\n"
    )
    assert Example("Say hi.", "Hi!").prompt == format_prompt("Say hi.")
    assert PROMPT_FORMAT == "alpaca-short-v1"


def test_jsonl_round_trip(tmp_path):
    examples = [
        Example("Say hi.", "Hi!"),
        Example("Upper.", "ABC", input="abc", source="mine"),
        Example("Ünïcode ✓", "ok\nline two"),
    ]
    path = tmp_path / "data.jsonl"
    assert save_jsonl(examples, path) == 3
    assert read_instructions(path) == examples
    assert parse_instructions(path.read_text(), "upload.jsonl") == examples
    assert load_examples(str(path)) == examples


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"instruction": "a", "output": "b"}', "{not json"], "line 2: not valid JSON"),
        (
            ['{"instruction": "a", "output": "b"}', "", '["a", "b"]'],
            "line 3: expected a JSON object",
        ),
        (['{"instruction": "a"}'], "line 1: missing or empty text field(s) 'output'"),
        (['{"instruction": "a", "output": "b", "input": 5}'], "line 1: 'input' must be text"),
        ([""], "holds no examples"),
    ],
)
def test_malformed_lines_are_named(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as err:
        read_instructions(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError) as err:  # the same text uploaded in the page
        parse_instructions(path.read_text(), "upload.jsonl")
    assert message in str(err.value) and "upload.jsonl" in str(err.value)


def test_one_prompt_format_for_every_kind_of_model():
    trained = {"prompt_format": {"name": PROMPT_FORMAT}}
    wrapped = format_prompt("Upper.", "abc")
    # an adapter trained on the playground's format always gets it, chat template or not
    assert prompt_for_model("Upper.", "abc", adapter_meta=trained, chat=True) == (wrapped, False)
    # a base model: the format when wrapping, the raw text otherwise
    assert prompt_for_model("Upper.", "abc", wrap=True) == (wrapped, False)
    assert prompt_for_model("Upper.", "abc", wrap=False) == ("Upper.\nabc", False)
    assert prompt_for_model("Say hi.", "", wrap=False) == ("Say hi.", False)
    # a chat model: its own template on the plain instruction
    assert prompt_for_model("Upper.", "abc", chat=True) == ("Upper.\n\nabc", True)


def test_unknown_data_and_missing_file_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown data"):
        load_examples("wikipedia")
    with pytest.raises(UserError, match="data file not found"):
        load_examples(str(tmp_path / "missing.jsonl"))


def test_alpaca_without_network_says_so():
    with pytest.raises(UserError, match="needs network"):
        load_alpaca()


def test_heldout_slice_is_fixed_disjoint_and_order_independent():
    examples = load_offline()
    train, held = split_heldout(examples)
    assert len(held) == 101 and len(train) + len(held) == len(examples)
    key = lambda e: (e.instruction.strip().lower(), e.input.strip().lower())  # noqa: E731
    assert not {key(e) for e in train} & {key(e) for e in held}
    train2, held2 = split_heldout(list(reversed(examples)))
    assert sorted(map(json.dumps, [e.to_json() for e in held2])) == sorted(
        map(json.dumps, [e.to_json() for e in held])
    )
    with pytest.raises(UserError, match="at least two"):
        split_heldout([Example("same", "a"), Example("Same ", "b")])
