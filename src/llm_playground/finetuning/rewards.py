"""Rewards for reinforcement learning (Lab 4): what a completion earns, as a number.

Verifiable rewards need no model: a program checks the answer.

- ``arithmetic``: 1.0 when the completion's final answer is the exact value of a generated
  a+b, a−b or a×b problem, else 0.0 (:func:`arithmetic_reward`);
- ``format``: 1.0 when the completion puts its answer inside ``<answer>…</answer>``
  (:func:`format_reward`);
- ``length``: −|50 − number of characters| (the Hugging Face course's example), the
  reward-hacking demonstration: it pays for length, whatever the words say
  (:func:`length_reward`);
- a reward-model folder (:mod:`.reward`): RLHF, the learnt score of the completion.

**What counts as the answer** (:func:`extract_answer`), in this order:

1. the text inside the first ``<answer>…</answer>``, when it is a whole number (spaces
   around it and a trailing full stop allowed): ``<answer>42</answer>`` → 42;
2. otherwise the number the completion *ends* with, after removing spaces and one
   trailing full stop: ``"42"``, ``"42."``, ``"= 42"``, ``"6 × 7 = 42"``,
   ``"The answer is 42"`` → 42. A number in the middle of a longer text does not count
   (``"42 is a nice number"`` → none), so a rambling answer that never finishes earns 0;
3. a number is an optional minus sign (``-`` or ``−``) and digits; ``"4.2"`` is not a whole
   number and gives none.

Problems come from :func:`make_problems` with a seed; the held-out set is the first
:data:`HELDOUT_SIZE` problems of :data:`HELDOUT_SEED`, and training problems never repeat a
held-out one.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llm_playground.core.errors import UserError

#: The seed of the held-out problems (and of the shipped lm-eval task).
HELDOUT_SEED = 1234
HELDOUT_SIZE = 200
#: The ideal length of the ``length`` reward, in characters.
IDEAL_LENGTH = 50
OPERATIONS = ("+", "-", "*")
#: How the operations are written in a question.
SYMBOLS = {"+": "+", "-": "-", "*": "×"}
VERIFIABLE = ("arithmetic", "format")
BUILT_IN = ("arithmetic", "format", "length")
FORMAT_HINT = "Put the final answer inside <answer></answer>."


# --- problems -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One arithmetic problem: ``a op b`` and its exact value."""

    a: int
    op: str
    b: int

    @property
    def answer(self) -> int:
        return {"+": self.a + self.b, "-": self.a - self.b, "*": self.a * self.b}[self.op]

    @property
    def question(self) -> str:
        return f"What is {self.a} {SYMBOLS[self.op]} {self.b}?"


def random_problem(rng: random.Random) -> Problem:
    """Sums and differences of numbers up to 20 (never below zero), products of 2..9."""
    op = rng.choice(OPERATIONS)
    if op == "*":
        return Problem(rng.randint(2, 9), op, rng.randint(2, 9))
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    if op == "-" and b > a:
        a, b = b, a  # the difference stays a whole number of zero or more
    return Problem(a, op, b)


def make_problems(n: int, seed: int, exclude: Sequence[Problem] = ()) -> list[Problem]:
    """``n`` problems drawn with ``seed`` (repeats allowed), none of them in ``exclude``."""
    rng = random.Random(seed)
    banned = set(exclude)
    problems: list[Problem] = []
    while len(problems) < n:
        problem = random_problem(rng)
        if problem not in banned:
            problems.append(problem)
    return problems


def heldout_problems(n: int = HELDOUT_SIZE) -> list[Problem]:
    """The fixed held-out problems: the first ``n`` of seed :data:`HELDOUT_SEED`, unique."""
    rng = random.Random(HELDOUT_SEED)
    seen: dict[Problem, None] = {}
    while len(seen) < n:
        seen.setdefault(random_problem(rng), None)
    return list(seen)


def training_problems(n: int, seed: int) -> list[Problem]:
    """``n`` training problems, none of which is among the held-out ones."""
    return make_problems(n, seed + 1, exclude=heldout_problems())


# --- the verifier ---------------------------------------------------------------------------

_NUMBER = r"[-−]?\d+"
_TAGGED = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_WHOLE = re.compile(rf"\s*({_NUMBER})\s*\.?\s*")
_AT_END = re.compile(rf"(?:^|[^\d.,\w])({_NUMBER})\s*\.?\s*$")


def _to_int(text: str) -> int:
    return int(text.replace("−", "-"))


def extract_answer(completion: str) -> int | None:
    """The completion's final answer by the rules of the module docstring, or None."""
    # 1. an explicit <answer>…</answer> wins
    tagged = _TAGGED.search(completion)
    if tagged is not None:
        whole = _WHOLE.fullmatch(tagged.group(1))
        return _to_int(whole.group(1)) if whole else None
    # 2. else the number the text ends with (one full stop after it allowed)
    at_end = _AT_END.search(completion.strip())
    return _to_int(at_end.group(1)) if at_end else None


def is_correct(completion: str, problem: Problem) -> bool:
    """Whether the completion's final answer is the problem's exact value."""
    return extract_answer(completion) == problem.answer


def has_answer_format(completion: str) -> bool:
    """Whether the completion puts a whole number inside ``<answer>…</answer>``."""
    tagged = _TAGGED.search(completion)
    return tagged is not None and _WHOLE.fullmatch(tagged.group(1)) is not None


# --- rewards --------------------------------------------------------------------------------


def arithmetic_reward(completions: Sequence[str], problems: Sequence[Problem]) -> list[float]:
    """1.0 for each completion whose final answer is right, else 0.0."""
    return [float(is_correct(c, p)) for c, p in zip(completions, problems, strict=True)]


def format_reward(completions: Sequence[str]) -> list[float]:
    """1.0 for each completion with its answer inside ``<answer>…</answer>``, else 0.0."""
    return [float(has_answer_format(c)) for c in completions]


def length_reward(completions: Sequence[str], ideal: int = IDEAL_LENGTH) -> list[float]:
    """−|ideal − characters|: the closer to ``ideal`` characters, the higher (0 at best)."""
    return [-float(abs(ideal - len(c))) for c in completions]


def group_advantages(rewards: Sequence[float], eps: float = 1e-4) -> list[float]:
    """GRPO's advantage of each completion in one prompt's group: ``(r − mean) / std``.

    The group's own mean is the baseline (no value network); dividing by the group's
    standard deviation (with Bessel's correction, plus ``eps`` so that a group of equal
    rewards gives zeros) puts easy and hard prompts on one scale. TRL's ``GRPOTrainer``
    computes the same (``scale_rewards="group"``; a test checks it).
    """
    n = len(rewards)
    if n < 2:
        raise UserError("a group needs at least 2 completions")
    # 1. the baseline: the mean reward of the group
    mean = sum(rewards) / n
    # 2. the spread: the standard deviation with Bessel's correction (n − 1)
    std = (sum((r - mean) ** 2 for r in rewards) / (n - 1)) ** 0.5
    # 3. better than the group's mean is positive, worse is negative, in units of std
    return [(r - mean) / (std + eps) for r in rewards]


# --- the reward named on the command line ---------------------------------------------------

#: ``scores(prompts, completions, problems)`` → one reward per completion.
Scorer = Callable[[Sequence[str], Sequence[str], Sequence[Problem | None]], list[float]]


@dataclass(frozen=True)
class RewardSpec:
    """A reward by name: built in (``arithmetic``, ``format``, ``length``) or a folder."""

    name: str
    folder: str | None = None  # a reward model's folder

    @property
    def verifiable(self) -> bool:
        """Whether it has a right answer, so that held-out accuracy means something."""
        return self.name in VERIFIABLE

    @property
    def uses_problems(self) -> bool:
        """Whether its prompts are arithmetic problems (else instructions)."""
        return self.name in VERIFIABLE

    def question(self, problem: Problem) -> str:
        """The prompt of a problem under this reward."""
        if self.name == "format":
            return f"{problem.question} {FORMAT_HINT}"
        return problem.question

    def full_marks(self, completion: str, problem: Problem) -> bool:
        """Whether a completion earns the full reward (what held-out accuracy counts)."""
        if self.name == "format":
            return has_answer_format(completion)
        return is_correct(completion, problem)


def reward_spec(text: str) -> RewardSpec:
    """``arithmetic``, ``format``, ``length`` or a reward model's folder; else a UserError."""
    from pathlib import Path

    name = (text or "").strip()
    if name in BUILT_IN:
        return RewardSpec(name)
    folder = Path(name).expanduser()
    if name and folder.is_dir():
        from llm_playground.finetuning.reward import check_reward_dir

        check_reward_dir(folder)
        return RewardSpec("reward-model", folder=str(folder.resolve()))
    raise UserError(
        f"unknown reward '{name}': use arithmetic, format, length, or the folder of a reward "
        "model (`reward train` writes one)"
    )


def builtin_scores(spec: RewardSpec) -> Scorer:
    """The scoring function of a built-in reward."""
    if spec.name == "arithmetic":
        return lambda prompts, completions, problems: arithmetic_reward(completions, problems)  # type: ignore[arg-type]
    if spec.name == "format":
        return lambda prompts, completions, problems: format_reward(completions)
    if spec.name == "length":
        return lambda prompts, completions, problems: length_reward(completions)
    raise UserError(f"'{spec.name}' is not a built-in reward")


__all__ = [
    "BUILT_IN",
    "HELDOUT_SEED",
    "Problem",
    "RewardSpec",
    "arithmetic_reward",
    "builtin_scores",
    "extract_answer",
    "format_reward",
    "group_advantages",
    "heldout_problems",
    "length_reward",
    "make_problems",
    "reward_spec",
    "training_problems",
]
