"""LLM-as-a-judge: a rubric, robust parsing, an OpenAI-compatible client and a local judge.

A judge reads a question and an answer and gives a score from 1 to 10 with a reason.
Two judges speak the same small interface (``name`` and ``complete(messages)``):

* :class:`OpenAICompatibleJudge` posts to ``{base_url}/chat/completions`` of any
  OpenAI-compatible API, with retries, a deadline, a cap on the answer's size, no
  redirects and the key kept in memory only; it lives in
  :mod:`llm_playground.evaluation.judge_client` with the rules for where a key may go,
  and is importable from here.
* :class:`LocalJudge` runs a registry model in process (``smollm2-135m-instruct`` by
  default), so the lab works offline. A 135M model is a weak judge: the point is to
  see how judge scores behave, and how often they agree with people.

Answers that cannot be parsed leave the item unscored, with the judge's raw answer kept.
:func:`judge_pairs` asks the judge to decide the pairs people voted on in Lab 4, and
:func:`agreement` reports how often judge and people agree.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llm_playground.core.errors import UserError
from llm_playground.core.events import Done, Progress, Started
from llm_playground.core.jsonl import parse_jsonl as _parse_jsonl
from llm_playground.core.jsonl import read_jsonl

# The OpenAI-compatible client lives in judge_client; the names the pages, the CLI and
# the tests use are importable from here too.
from llm_playground.evaluation.judge_client import (  # noqa: F401
    MAX_RESPONSE_BYTES,
    MAX_RETRIES,
    MAX_TIMEOUT_S,
    JudgeCallFailed,
    OpenAICompatibleJudge,
    page_judge,
    resolve_api_key,
    server_base_url,
)

log = logging.getLogger(__name__)

DEFAULT_LOCAL_JUDGE = "smollm2-135m-instruct"

RUBRIC = """You are a strict, fair grader. Read the question and the answer, then grade the answer.

Score from 1 to 10:
- 10: correct, complete and clearly written;
- 7-9: correct with minor omissions or awkward wording;
- 4-6: partly correct, or correct but padded with irrelevant or doubtful content;
- 2-3: mostly wrong, evasive or off topic;
- 1: wrong, harmful or empty.

Reply with one JSON object and nothing else, of the form
{"score": <integer 1-10>, "reason": "<one sentence>"}"""

PAIRWISE_RUBRIC = """You compare two answers to the same question and decide which one is better: \
more correct, more helpful, clearer. Reply with one JSON object and nothing else, of the form
{"winner": "A" | "B" | "tie", "reason": "<one sentence>"}"""


class Judge(Protocol):
    name: str

    def complete(self, messages: list[dict[str, str]], max_tokens: int = 200) -> str: ...


# --- prompts and parsing ------------------------------------------------------------------


def rubric_messages(question: str, answer: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": RUBRIC},
        {
            "role": "user",
            "content": f"Question:\n{question}\n\nAnswer:\n{answer}\n\n"
            "Grade the answer. Reply with the JSON object only.",
        },
    ]


def pairwise_messages(question: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": PAIRWISE_RUBRIC},
        {
            "role": "user",
            "content": f"Question:\n{question}\n\nAnswer A:\n{answer_a}\n\n"
            f"Answer B:\n{answer_b}\n\nWhich answer is better? "
            "Reply with the JSON object only.",
        },
    ]


_JSON_OBJECT = re.compile(r"\{.*?\}", re.S)
_SCORE_PATTERNS = (
    re.compile(r"\bscore\b\W{0,3}(?:of\s+|is\s+|=\s*)?(\d{1,2}(?:\.\d+)?)(?!\d)", re.I),
    re.compile(r"\brating\b\W{0,3}(?:of\s+|is\s+)?(\d{1,2}(?:\.\d+)?)(?!\d)", re.I),
    re.compile(r"(?<![\d.])(\d{1,2}(?:\.\d+)?)\s*(?:/|out\s+of)\s*10\b", re.I),
)


def _as_score(value: Any) -> int | None:
    try:
        number = float(str(value).strip().strip('"'))
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number != int(number) or not 1 <= number <= 10:
        return None
    return int(number)


def _json_objects(raw: str) -> Iterator[dict]:
    fence = re.sub(r"```(?:json)?", "", raw)
    for candidate in [fence.strip(), *(_JSON_OBJECT.findall(fence))]:
        try:
            data = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(data, dict):
            yield data


def parse_judgement(raw: str) -> tuple[int | None, str]:
    """The score (an integer 1-10, or None) and the reason in a judge's answer.

    Reads a JSON object ``{"score": 7, "reason": ...}`` (also inside a code fence or
    surrounded by text), then "Score: 7", "score of 7", "Rating: 7", "7/10" or
    "7 out of 10". Anything else, or a number outside 1-10, is unscored.
    """
    raw = raw or ""
    for data in _json_objects(raw):
        lowered = {str(k).lower(): v for k, v in data.items()}
        for key in ("score", "rating", "grade"):
            if key in lowered:
                score = _as_score(lowered[key])
                if score is not None:
                    reason = (
                        lowered.get("reason")
                        or lowered.get("explanation")
                        or lowered.get("justification")
                        or ""
                    )
                    return score, str(reason).strip()
    for pattern in _SCORE_PATTERNS:
        match = pattern.search(raw)
        if match:
            score = _as_score(match.group(1))
            if score is not None:
                reason = re.sub(r"\s+", " ", raw.replace(match.group(0), " ")).strip(" .:-\n")
                return score, reason[:500]
    return None, ""


def parse_preference(raw: str) -> tuple[str | None, str]:
    """'a', 'b' or 'tie' from a pairwise answer (JSON ``winner``, or "A"/"B"/"tie" in text)."""
    raw = raw or ""
    if re.search(r'"?A"?\s*\|\s*"?B"?', raw):  # the answer template copied back, not a verdict
        return None, ""
    for data in _json_objects(raw):
        lowered = {str(k).lower(): v for k, v in data.items()}
        winner = str(lowered.get("winner", lowered.get("better", ""))).strip().lower()
        if winner in ("a", "b", "tie"):
            return winner, str(lowered.get("reason", "")).strip()
    text = raw.strip().lower()
    match = re.search(
        r"\b(?:winner|better answer|answer)\b\W{0,5}(?:is\s+)?(?:answer\s+)?\b([ab])\b", text
    )
    if match:
        return match.group(1), raw.strip()[:500]
    if re.search(r"\btie\b|\bequal(?:ly)?\b", text):
        return "tie", raw.strip()[:500]
    match = re.fullmatch(r"\W*([ab])\W*", text)
    if match:
        return match.group(1), ""
    return None, ""


# --- the local judge ----------------------------------------------------------------------


class LocalJudge:
    """A registry model judging in process, greedy.

    The answer is started with ``{"score":`` so that a small model continues the JSON
    form; the raw answer kept includes that start.
    """

    def __init__(self, loaded, max_new_tokens: int = 60):
        self.loaded = loaded
        self.max_new_tokens = max_new_tokens
        self.name = f"{loaded.info.name} (local)"
        self._lock = threading.Lock()

    def _prompt(self, messages: list[dict[str, str]], prefix: str) -> str:
        tok = self.loaded.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = "\n\n".join(m["content"] for m in messages) + "\n\n"
        return text + prefix

    def complete(self, messages: list[dict[str, str]], max_tokens: int = 200) -> str:
        import torch

        system = messages[0]["content"] if messages else ""
        pairwise = "winner" in system
        prefix = '{"winner": "' if pairwise else '{"score": '
        tok = self.loaded.tokenizer
        text = self._prompt(messages, prefix)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        if pairwise:
            return prefix + self._choose(ids, ("A", "B", "tie")) + '"}'
        eos = [i for i in {tok.eos_token_id, tok.convert_tokens_to_ids("}")} if isinstance(i, int)]
        with self._lock, torch.inference_mode():
            out = self.loaded.model.generate(
                **ids,
                max_new_tokens=min(max_tokens, self.max_new_tokens),
                do_sample=False,
                eos_token_id=eos or None,
                pad_token_id=tok.pad_token_id or tok.eos_token_id,
            )
        new = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        return prefix + new

    def _choose(self, ids, options: tuple[str, ...]) -> str:
        """The option whose first token the model finds most likely next (a constrained choice)."""
        import torch

        tok = self.loaded.tokenizer
        firsts = [tok(o, add_special_tokens=False)["input_ids"][0] for o in options]
        with self._lock, torch.inference_mode():
            logits = self.loaded.model(**ids).logits[0, -1]
        best = max(range(len(options)), key=lambda i: float(logits[firsts[i]]))
        return options[best]


# --- judging answers ----------------------------------------------------------------------


@dataclass(frozen=True)
class JudgedItem:
    id: str
    score: int | None
    reason: str
    raw: str
    question: str = ""
    answer: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"id": self.id, "score": self.score, "reason": self.reason, "raw": self.raw}
        if self.error:
            data["error"] = self.error
        return data


@dataclass(frozen=True)
class JudgeResult:
    items: tuple[JudgedItem, ...]
    judge: str
    mean_score: float | None
    ci: tuple[float, float] | None
    stopped: bool = False

    @property
    def n_scored(self) -> int:
        return sum(1 for i in self.items if i.score is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [i.to_json() for i in self.items],
            "mean_score": self.mean_score,
            "ci95": list(self.ci) if self.ci else None,
            "n_scored": self.n_scored,
            "n_items": len(self.items),
            "judge": self.judge,
        }


@dataclass(frozen=True, kw_only=True)
class JudgeProgress(Progress):
    """``step`` of ``total`` answers judged; the last one."""

    item: JudgedItem

    @property
    def done(self) -> int:
        return self.step


@dataclass(frozen=True, kw_only=True)
class JudgeDone(Done):
    result: JudgeResult


# Two-sided 95 % quantiles of Student's t by degrees of freedom (then the normal 1.96).
_T95 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    21: 2.080,
    22: 2.074,
    23: 2.069,
    24: 2.064,
    25: 2.060,
    26: 2.056,
    27: 2.052,
    28: 2.048,
    29: 2.045,
    30: 2.042,
    40: 2.021,
    60: 2.000,
    120: 1.980,
}


def t95(df: int) -> float:
    if df in _T95:
        return _T95[df]
    for bound in (40, 60, 120):
        if df < bound:
            return _T95[bound]  # the next tabulated df up: a slightly narrower interval than exact
    return 1.960


def mean_ci(scores: Sequence[float]) -> tuple[float | None, tuple[float, float] | None]:
    """Mean and 95 % t confidence interval (None when fewer than two scores)."""
    values = [float(s) for s in scores if s is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    half = t95(len(values) - 1) * math.sqrt(var / len(values))
    return mean, (mean - half, mean + half)


def read_rows(path: str | Path, required: Sequence[str], what: str) -> list[dict[str, Any]]:
    """Rows of a JSONL file, each with the ``required`` keys; a one-line error otherwise."""
    rows = [row for _, row in read_jsonl(path, f"{what} file", keys=required)]
    if not rows:
        raise UserError(f"{what} file {path} is empty")
    return rows


def parse_rows(text: str, required: Sequence[str], what: str) -> list[dict[str, Any]]:
    """Rows of pasted JSONL text, each with the ``required`` keys."""
    rows = [row for _, row in _parse_jsonl(text, what, keys=required)]
    if not rows:
        raise UserError(f"{what} is empty")
    return rows


def pair_questions(
    questions: Sequence[dict], answers: Sequence[dict]
) -> list[tuple[str, str, str]]:
    """(id, question, answer) for each answer, matched to its question by id."""
    by_id = {}
    for q in questions:
        qid = str(q["id"])
        if qid in by_id:
            raise UserError(f"question id '{qid}' appears twice")
        by_id[qid] = str(q["question"])
    pairs = []
    for a in answers:
        aid = str(a["id"])
        if aid not in by_id:
            raise UserError(f"answer id '{aid}' has no question with that id")
        pairs.append((aid, by_id[aid], str(a["answer"])))
    return pairs


def judge_events(
    judge: Judge, pairs: Sequence[tuple[str, str, str]], stop_event: threading.Event | None = None
) -> Iterator[Started | JudgeProgress | JudgeDone]:
    """Score each (id, question, answer); yields one progress event per item, then the result.

    A refused key stops the run (:class:`UserError`); a call that fails after its
    retries, or an answer that cannot be parsed, leaves that item unscored.
    """
    items: list[JudgedItem] = []
    stopped = False
    yield Started(label=f"judging with {judge.name}", total=len(pairs), unit="answer")
    for i, (item_id, question, answer) in enumerate(pairs):
        if stop_event is not None and stop_event.is_set():
            stopped = True
            break
        try:
            raw = judge.complete(rubric_messages(question, answer))
        except JudgeCallFailed as exc:
            item = JudgedItem(item_id, None, "", exc.raw, question, answer, error=str(exc))
        else:
            score, reason = parse_judgement(raw)
            item = JudgedItem(
                item_id,
                score,
                reason,
                raw,
                question,
                answer,
                error=None if score is not None else "the judge's answer holds no score 1-10",
            )
        items.append(item)
        yield JudgeProgress(step=i + 1, total=len(pairs), item=item)
    mean, ci = mean_ci([i.score for i in items if i.score is not None])
    yield JudgeDone(
        result=JudgeResult(tuple(items), judge.name, mean, ci, stopped), stopped=stopped
    )


def judge_answers(judge: Judge, pairs: Sequence[tuple[str, str, str]]) -> JudgeResult:
    for event in judge_events(judge, pairs):
        if isinstance(event, JudgeDone):
            return event.result
    raise AssertionError("a judge run ends with its result")


# --- judge against people (Lab 4 votes) ---------------------------------------------------


HUMAN_TO_PAIRWISE = {"a": "a", "b": "b", "tie": "tie", "both-bad": "tie"}


@dataclass(frozen=True)
class PairDecision:
    prompt: str
    human: str  # a | b | tie (Lab 4's "both-bad" counts as a tie)
    judge: str | None  # a | b | tie, or None when the answer could not be read
    raw: str
    model_a: str = ""
    model_b: str = ""
    consistent: bool | None = None  # with swapped positions: did the verdict survive the swap?

    @property
    def agrees(self) -> bool:
        return self.judge is not None and self.judge == self.human


@dataclass(frozen=True)
class Agreement:
    n_pairs: int
    n_decided: int  # pairs the judge gave a readable verdict on
    n_agree: int
    decisions: tuple[PairDecision, ...] = ()

    @property
    def rate(self) -> float | None:
        return self.n_agree / self.n_decided if self.n_decided else None


def _vote_field(vote: Any, name: str) -> Any:
    return vote[name] if isinstance(vote, dict) else getattr(vote, name)


def _ask_pairwise(judge: Judge, prompt: str, first: str, second: str) -> tuple[str | None, str]:
    """The judge's verdict (a | b | tie | None) on answers shown as A=first, B=second, and its raw answer."""
    try:
        raw = judge.complete(pairwise_messages(prompt, first, second), max_tokens=120)
        return parse_preference(raw)[0], raw
    except JudgeCallFailed as exc:
        return None, exc.raw or str(exc)


SWAPPED = {"a": "b", "b": "a", "tie": "tie"}


def judge_pairs(
    judge: Judge,
    votes: Sequence[Any],
    stop_event: threading.Event | None = None,
    swap: bool = False,
) -> Iterator[Started | PairJudged | AgreementDone]:
    """The judge decides each voted pair (A, B or tie); yields each decision, then the agreement.

    LLM judges favour a position (often the first answer). With ``swap`` the judge also sees
    each pair with A and B exchanged; a verdict that flips with the order counts as a tie,
    and the decision records that it was inconsistent.
    """
    decisions: list[PairDecision] = []
    stopped = False
    yield Started(label=f"judge vs people with {judge.name}", total=len(votes), unit="pair")
    for vote in votes:
        if stop_event is not None and stop_event.is_set():
            stopped = True
            break
        human = HUMAN_TO_PAIRWISE.get(str(_vote_field(vote, "choice")).lower())
        if human is None:
            continue
        prompt = _vote_field(vote, "prompt")
        answer_a, answer_b = _vote_field(vote, "response_a"), _vote_field(vote, "response_b")
        verdict, raw = _ask_pairwise(judge, prompt, answer_a, answer_b)
        consistent = None
        if swap and verdict is not None:
            swapped, raw_swapped = _ask_pairwise(judge, prompt, answer_b, answer_a)
            raw = f"{raw}\n--- with A and B swapped ---\n{raw_swapped}"
            if swapped is not None:
                consistent = SWAPPED[swapped] == verdict
                verdict = verdict if consistent else "tie"
        decision = PairDecision(
            str(prompt),
            human,
            verdict,
            raw,
            str(_vote_field(vote, "model_a")),
            str(_vote_field(vote, "model_b")),
            consistent,
        )
        decisions.append(decision)
        yield PairJudged(step=len(decisions), total=len(votes), decision=decision)
    yield AgreementDone(agreement=agreement(decisions), stopped=stopped)


@dataclass(frozen=True, kw_only=True)
class PairJudged(Progress):
    """``step`` of ``total`` voted pairs decided; the last decision."""

    decision: PairDecision


@dataclass(frozen=True, kw_only=True)
class AgreementDone(Done):
    agreement: Agreement


def agreement(decisions: Sequence[PairDecision]) -> Agreement:
    decided = [d for d in decisions if d.judge is not None]
    return Agreement(
        n_pairs=len(decisions),
        n_decided=len(decided),
        n_agree=sum(1 for d in decided if d.agrees),
        decisions=tuple(decisions),
    )
