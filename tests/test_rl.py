"""Lab 4 reinforcement learning: the verifier's written rules, GRPO's advantages by hand and
equal to TRL's formula, a few GRPO steps on a tiny model that write the adapter, metrics
and samples (stopped and resumed), and best-of-n keeping the maximum."""

from __future__ import annotations

import json
import math
import threading

import pytest

from llm_playground.core.errors import UserError
from llm_playground.core.events import Done, Metric, Progress, Started
from llm_playground.finetuning.best_of import best_of_n, best_so_far, check_best_of, pick_best
from llm_playground.finetuning.rewards import (
    Problem,
    arithmetic_reward,
    extract_answer,
    format_reward,
    group_advantages,
    heldout_problems,
    length_reward,
    reward_spec,
    training_problems,
)
from llm_playground.finetuning.rl import (
    METRICS_FILE,
    SAMPLES_FILE,
    RLAnswers,
    RLConfig,
    RLDone,
    RLEval,
    RLGroup,
    RLStarted,
    RLStep,
    train_rl,
)
from tiny_lm import tiny_llama

# --- the verifier ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "answer"),
    [
        ("42", 42),
        ("42.", 42),
        ("= 42", 42),
        ("The answer is 42", 42),
        ("The answer is 42.", 42),
        ("6 × 7 = 42", 42),
        ("  42 \n", 42),
        ("<answer>42</answer>", 42),
        ("I think <answer> 42. </answer> and then 7", 42),  # the tag wins over the end
        ("3 - 5 = -2", -2),
        ("3 − 5 = −2", -2),  # the minus sign of typography
        ("42 is the answer", None),  # a number in the middle does not count
        ("To solve this, we add the numbers", None),
        ("4.2", None),  # not a whole number
        ("x42", None),
        ("<answer>forty-two</answer> 42", None),  # a tag without a number: no answer
        ("", None),
    ],
)
def test_the_verifier_reads_the_final_answer_by_its_written_rules(completion, answer):
    assert extract_answer(completion) == answer


def test_problems_are_seeded_and_training_never_repeats_a_heldout_problem():
    heldout = heldout_problems()
    assert heldout == heldout_problems() and len(set(heldout)) == 200
    assert {p.op for p in heldout} == {"+", "-", "*"}
    assert all(p.answer >= 0 for p in heldout)  # differences never go below zero
    train = training_problems(500, seed=0)
    assert train == training_problems(500, seed=0) and not set(train) & set(heldout)
    assert Problem(6, "*", 7).question == "What is 6 × 7?" and Problem(6, "*", 7).answer == 42


def test_the_rewards_score_as_documented():
    problems = [Problem(2, "+", 3), Problem(9, "-", 4)]
    assert arithmetic_reward(["2 + 3 = 5", "It is 4"], problems) == [1.0, 0.0]
    assert format_reward(["<answer>5</answer>", "5"]) == [1.0, 0.0]
    assert length_reward(["x" * 50, "x" * 10, "x" * 80]) == [0.0, -40.0, -30.0]


# --- advantages -----------------------------------------------------------------------------


def test_advantages_are_reward_minus_group_mean_over_group_std_by_hand():
    # mean 0.5; std with Bessel's correction sqrt(4 * 0.25 / 3) = 0.57735
    advantages = group_advantages([1.0, 0.0, 0.0, 1.0])
    std = math.sqrt(1.0 / 3.0)
    assert advantages == pytest.approx([0.5 / std, -0.5 / std, -0.5 / std, 0.5 / std], rel=1e-3)
    assert group_advantages([2.0, 2.0, 2.0]) == [0.0, 0.0, 0.0]  # no signal in an equal group
    with pytest.raises(UserError, match="at least 2"):
        group_advantages([1.0])


def test_advantages_equal_trls_group_scaling():
    import torch
    from trl.trainer.utils import nanstd

    rewards = [-12.0, -3.0, 0.0, -40.0, -7.5]
    tensor = torch.tensor(rewards)
    # GRPOTrainer with scale_rewards="group": (r - mean) / (nanstd + 1e-4)
    expected = (tensor - tensor.mean()) / (nanstd(tensor) + 1e-4)
    assert group_advantages(rewards) == pytest.approx(expected.tolist(), rel=1e-6)


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"reward": "nonsense"}, "unknown reward 'nonsense'"),
        ({"group": 1}, "group size must be at least 2"),
        ({"steps": 0}, "number of steps"),
        ({"beta": -1.0}, "beta must be zero or positive"),
    ],
)
def test_settings_are_checked_with_messages_that_name_them(kwargs, words):
    with pytest.raises(UserError, match=words):
        RLConfig(**kwargs)


def test_a_folder_without_a_reward_model_is_not_a_reward(tmp_path):
    with pytest.raises(UserError, match="holds no reward model"):
        reward_spec(str(tmp_path))


# --- a few GRPO steps on a tiny model -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def test_grpo_steps_write_adapter_metrics_and_samples_and_resume_after_a_stop(tiny, tmp_path):
    from llm_playground.generation.registry import info_for_dir, load_model

    out = tmp_path / "rl-run"
    config = RLConfig(
        base=str(tiny),
        steps=4,
        group=3,
        prompts_per_step=2,
        max_completion_tokens=4,
        eval_every=1,
        eval_problems=3,
        lr=1e-3,
    )
    stop = threading.Event()
    events = []
    for event in train_rl(config, out_dir=out, stop_event=stop):
        events.append(event)
        if isinstance(event, RLStep):
            stop.set()  # as the Stop button does, after the first step
    assert isinstance(events[0], RLStarted) and isinstance(events[0], Started)
    assert events[0].total == 4 and events[0].group == 3
    steps = [e for e in events if isinstance(e, RLStep)]
    # the trainer ends after the step in progress when the signal comes
    done_steps = len(steps)
    assert 1 <= done_steps < 4 and [s.step for s in steps] == list(range(1, done_steps + 1))
    assert all(isinstance(s, Progress) for s in steps)
    groups = [e for e in events if isinstance(e, RLGroup)]
    assert len(groups) == done_steps and isinstance(groups[0], Metric)
    group = groups[0]
    assert len(group.completions) == len(group.rewards) == len(group.advantages) == 3
    assert group.advantages == pytest.approx(group_advantages(group.rewards))
    answers = [e for e in events if isinstance(e, RLAnswers)]
    assert [a.when for a in answers] == ["before", "after"] and len(answers[0].answers) == 4
    done = events[-1]
    assert isinstance(done, RLDone) and isinstance(done, Done)
    assert done.stopped and done.step == done_steps and done.out_dir == str(out.resolve())
    assert done.accuracy_before is not None and 0.0 <= done.accuracy_before <= 1.0

    # resume: the run goes on from its adapter to the steps it had left
    resumed = list(train_rl(config, out_dir=out, resume=True))
    assert [e.step for e in resumed if isinstance(e, RLStep)] == list(range(done_steps + 1, 5))
    assert isinstance(resumed[-1], RLDone) and resumed[-1].step == 4 and not resumed[-1].stopped
    metrics = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    for line in metrics:
        assert {"step", "reward_mean", "reward_std", "kl", "completion_length", "elapsed_s"} <= set(
            line
        )
    assert "accuracy" in metrics[-1]  # measured at the end of the run
    samples = [json.loads(line) for line in (out / SAMPLES_FILE).read_text().splitlines()]
    assert [s["step"] for s in samples] == [1, 2, 3, 4]
    assert all({"prompt", "completions", "rewards", "advantages"} <= set(s) for s in samples)
    meta = json.loads((out / "playground.json").read_text())
    assert meta["kind"] == "rl" and meta["steps_done"] == 4 and meta["settings"]["steps"] == 4
    # the adapter loads as a model, as `generate --checkpoint DIR` loads it
    loaded = load_model(info_for_dir(out))
    assert loaded.model.peft_config["default"].r == 8


@pytest.mark.slow
def test_rl_evaluations_come_every_k_steps(tiny):
    config = RLConfig(
        base=str(tiny),
        steps=2,
        group=2,
        prompts_per_step=1,
        max_completion_tokens=3,
        eval_every=1,
        eval_problems=2,
    )
    events = list(train_rl(config))
    evals = [e.step for e in events if isinstance(e, RLEval)]
    assert evals == [0, 1, 2]  # before, every step, after
    assert events[-1].out_dir is None  # no folder given: nothing written


# --- best-of-n ------------------------------------------------------------------------------


def test_best_of_helpers_keep_the_maximum():
    assert pick_best([0.1, 0.7, -2.0, 0.7]) == 1  # the first of equal bests
    assert best_so_far([0.1, -1.0, 0.5, 0.3, 0.9]) == [0.1, 0.1, 0.5, 0.5, 0.9]
    with pytest.raises(UserError, match="needs sampling"):
        check_best_of(3, "greedy")


class LengthScorer:
    """A stand-in reward model: longer answers score higher."""

    def score(self, prompt, responses):
        return [float(len(r)) for r in responses]


def test_best_of_n_scores_every_sample_and_keeps_the_best(tiny):
    from llm_playground.generation.config import DecodingConfig
    from llm_playground.generation.registry import info_for_dir, load_model

    loaded = load_model(info_for_dir(tiny))
    config = DecodingConfig(strategy="top-k", top_k=50, max_new_tokens=4, seed=3)
    outcome = best_of_n(loaded, "Say something.", 4, LengthScorer(), config)
    scores = [c.score for c in outcome.candidates]
    assert len(scores) == 4 and [c.seed for c in outcome.candidates] == [3, 4, 5, 6]
    assert scores == [float(len(r.text)) for r in outcome.results]
    assert (
        outcome.best.score == max(scores)
        and outcome.best.text == outcome.results[outcome.best_index].text
    )
