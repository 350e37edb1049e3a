"""Benchmarks of our own, built from texts the playground ships, for lm-evaluation-harness.

They make the harness path work offline and show the two answer formats side by side:

- ``playground_next_line`` (multiple choice): two lines of a speech from the
  TinyShakespeare *validation* split (the last 10 %, which Lab 2 never trains on);
  which of four lines comes next? Three distractors are lines of other speeches of
  similar length. Chance is 25 %. Metrics ``acc`` and ``acc_norm``.
- ``playground_last_word`` (cloze): a sentence of the shipped WikiText-2 test split
  without its last word; does the model's greedy continuation give that word? Metric
  ``acc`` (the harness's greedy match) and ``perplexity`` of the word.
- ``playground_wikitext2`` (rolling log-likelihood): every article of the shipped
  WikiText-2 test split; the harness's ``word_perplexity``, ``byte_perplexity`` and
  ``bits_per_byte``, which Lab 5's perplexity reproduces.
- ``playground_arithmetic`` (generate_until): the 200 held-out problems of Lab 4's
  reinforcement learning (a+b, a−b, a×b from :mod:`llm_playground.finetuning.rewards`,
  seed 1234); greedy decoding until a new line, the number the answer ends with, exact
  match with the true value. Metric ``exact_match``.

The JSONL files of the first two are built by :func:`build_task_files` (deterministic:
a fixed seed) and shipped under ``data/benchmarks/``; a test rebuilds them and checks
they are unchanged. The YAML task definitions are written at run time into a
temporary folder given to the harness as its ``include_path``.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from llm_playground.core.paths import package_data

TASKS_FOLDER = "benchmarks"
NEXT_LINE = "playground_next_line"
LAST_WORD = "playground_last_word"
WIKITEXT = "playground_wikitext2"
ARITHMETIC = "playground_arithmetic"
LOCAL_TASKS = (NEXT_LINE, LAST_WORD, WIKITEXT, ARITHMETIC)
LOCAL_TASK_INFO = {
    NEXT_LINE: "multiple choice, 4 options: the next line of a TinyShakespeare speech",
    LAST_WORD: "cloze: the last word of a WikiText-2 sentence (greedy match)",
    WIKITEXT: "rolling log-likelihood over the shipped WikiText-2 test articles",
    ARITHMETIC: "generate until a new line: a+b, a−b, a×b, exact match of the final number",
}
SEED = 1234
N_TRAIN = 16  # few-shot examples, kept apart from the test items


# --- building the data --------------------------------------------------------------------


def _speeches(text: str) -> list[tuple[str, list[str]]]:
    """(speaker, lines) of each speech: blocks separated by blank lines, ``NAME:`` first."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.strip().split("\n") if line.strip()]
        if len(lines) >= 2 and lines[0].endswith(":") and len(lines[0]) < 40:
            out.append((lines[0], lines[1:]))
    return out


def build_next_line(text: str, n_items: int, seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    speeches = [(s, lines) for s, lines in _speeches(text) if len(lines) >= 3]
    pool = [line for _, lines in speeches for line in lines if len(line) >= 12]
    rng.shuffle(speeches)
    items = []
    for speaker, lines in speeches:
        answer = lines[2]
        if len(answer) < 12:
            continue
        similar = [
            line
            for line in rng.sample(pool, min(400, len(pool)))
            if 0.67 * len(answer) <= len(line) <= 1.5 * len(answer) and line not in lines
        ]
        if len(similar) < 3:
            continue
        choices = [answer, *similar[:3]]
        rng.shuffle(choices)
        context = f"{speaker}\n{lines[0]}\n{lines[1]}"
        items.append({"context": context, "choices": choices, "label": choices.index(answer)})
        if len(items) == n_items:
            break
    return items


def build_last_word(text: str, n_items: int, seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    sentences = []
    for line in text.split("\n"):
        line = line.strip()
        if not line or line.startswith("="):
            continue
        for sentence in re.split(r"(?<= \.) ", line):
            words = sentence.split()
            if (
                12 <= len(words) <= 40
                and words[-1] == "."
                and "<unk>" not in sentence
                and "@" not in sentence
                and words[-2].isalpha()
                and len(words[-2]) >= 4
            ):
                sentences.append(words[:-1])  # the full stop is dropped: the word ends it
    rng.shuffle(sentences)
    return [{"context": " ".join(words[:-1]), "target": words[-1]} for words in sentences[:n_items]]


def build_arithmetic(n_train: int = N_TRAIN) -> list[dict]:
    """Few-shot problems (never held out) then Lab 4's held-out problems, with answers."""
    from llm_playground.finetuning.rewards import HELDOUT_SEED, heldout_problems, make_problems

    heldout = heldout_problems()
    shots = make_problems(n_train, HELDOUT_SEED + 7, exclude=heldout)
    return [{"question": p.question, "answer": str(p.answer)} for p in shots + heldout]


def build_task_files(folder: Path) -> list[Path]:
    """Write the JSONL files of the two built tasks into ``folder`` (deterministic)."""
    from llm_playground.training.corpus import tinyshakespeare_validation

    folder.mkdir(parents=True, exist_ok=True)
    wikitext = package_data("wikitext-2", "test.txt").read_text(encoding="utf-8")
    made = {
        ARITHMETIC: build_arithmetic(),
        NEXT_LINE: build_next_line(tinyshakespeare_validation(), 200 + N_TRAIN),
        LAST_WORD: build_last_word(wikitext, 200 + N_TRAIN),
    }
    written = []
    for name, items in made.items():
        for split, rows in (("train", items[:N_TRAIN]), ("test", items[N_TRAIN:])):
            path = folder / f"{name}.{split}.jsonl"
            path.write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
            )
            written.append(path)
    return written


def wikitext_articles(text: str) -> list[str]:
    """The articles of a WikiText file: a `` = Title = `` line starts each one."""
    articles: list[list[str]] = []
    for line in text.split("\n"):
        if re.fullmatch(r" = [^=].* = ", line):
            articles.append([])
        if articles:
            articles[-1].append(line)
    return ["\n".join(a).strip("\n") for a in articles if "".join(a).strip()]


# --- task definitions ---------------------------------------------------------------------


def _data_file(name: str, split: str) -> str:
    return str(package_data(TASKS_FOLDER, f"{name}.{split}.jsonl"))


def _yaml(name: str, body: str, data_files: dict[str, str]) -> str:
    files = "\n".join(f"    {split}: {json.dumps(path)}" for split, path in data_files.items())
    return (
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n{files}\n"
        + body
        + "metadata:\n  version: 1.0\n"
    )


def write_task_yamls(folder: Path) -> Path:
    """Write the three local tasks' YAML files into ``folder`` (an ``include_path``)."""
    folder.mkdir(parents=True, exist_ok=True)
    next_line = _yaml(
        NEXT_LINE,
        "training_split: train\nfewshot_split: train\ntest_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{context}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{label}}"\n'
        'target_delimiter: "\\n"\n'
        'fewshot_delimiter: "\\n\\n"\n'
        "metric_list:\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n",
        {"train": _data_file(NEXT_LINE, "train"), "test": _data_file(NEXT_LINE, "test")},
    )
    last_word = _yaml(
        LAST_WORD,
        "training_split: train\nfewshot_split: train\ntest_split: test\n"
        "output_type: loglikelihood\n"
        'doc_to_text: "{{context}}"\n'
        # the space before the word belongs to the continuation (as in the harness's LAMBADA)
        "doc_to_target: \"{{' ' + target}}\"\n"
        "metric_list:\n"
        "  - metric: perplexity\n    aggregation: perplexity\n    higher_is_better: false\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n",
        {"train": _data_file(LAST_WORD, "train"), "test": _data_file(LAST_WORD, "test")},
    )
    articles = folder / "wikitext2_articles.jsonl"
    text = package_data("wikitext-2", "test.txt").read_text(encoding="utf-8")
    articles.write_text(
        "".join(json.dumps({"page": a}) + "\n" for a in wikitext_articles(text)),
        encoding="utf-8",
    )
    wikitext = _yaml(
        WIKITEXT,
        "test_split: test\noutput_type: loglikelihood_rolling\n"
        'doc_to_text: ""\n'
        'doc_to_target: "{{page}}"\n'
        "metric_list:\n"
        "  - metric: word_perplexity\n    aggregation: weighted_perplexity\n"
        "    higher_is_better: false\n"
        "  - metric: byte_perplexity\n    aggregation: weighted_perplexity\n"
        "    higher_is_better: false\n"
        "  - metric: bits_per_byte\n    aggregation: bits_per_byte\n    higher_is_better: false\n",
        {"test": str(articles)},
    )
    arithmetic = _yaml(
        ARITHMETIC,
        "training_split: train\nfewshot_split: train\ntest_split: test\n"
        "output_type: generate_until\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
        'doc_to_target: "{{answer}}"\n'
        'target_delimiter: " "\n'
        'fewshot_delimiter: "\\n\\n"\n'
        "generation_kwargs:\n"
        '  until: ["\\n"]\n'
        "  max_gen_toks: 24\n"
        "  do_sample: false\n"
        # the answer is the number the reply ends with (Lab 4's verifier reads it the same way)
        "filter_list:\n"
        "  - name: final-number\n"
        "    filter:\n"
        "      - function: regex\n"
        "        regex_pattern: '(-?\\d+)\\s*\\.?\\s*$'\n"
        "      - function: take_first\n"
        "metric_list:\n"
        "  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n",
        {"train": _data_file(ARITHMETIC, "train"), "test": _data_file(ARITHMETIC, "test")},
    )
    tasks = ((NEXT_LINE, next_line), (LAST_WORD, last_word), (WIKITEXT, wikitext))
    for name, body in (*tasks, (ARITHMETIC, arithmetic)):
        (folder / f"{name}.yaml").write_text(body, encoding="utf-8")
    return folder
