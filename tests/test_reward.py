"""Lab 4 reward model: the Bradley–Terry loss by hand, a tiny model that learns to prefer one
fixed pattern (held-out accuracy 1.0) and scores the same after saving and loading, the
offline preference set rebuilt byte for byte, and the ranking of voted models."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from llm_playground.core.errors import UserError
from llm_playground.finetuning.reward import (
    RewardDone,
    RewardEval,
    RewardModelConfig,
    RewardStarted,
    RewardStep,
    bradley_terry_loss,
    build_offline_preferences,
    evaluate_pairs,
    load_reward_model,
    model_ranking,
    offline_preferences_path,
    split_pairs,
    train_reward_model,
)
from tiny_lm import tiny_llama


def test_the_loss_is_minus_log_sigmoid_of_the_margin_by_hand():
    import torch

    chosen = torch.tensor([2.0, -1.0, 0.5])
    rejected = torch.tensor([0.0, 1.0, 0.5])
    by_hand = [-math.log(1 / (1 + math.exp(-(c - r)))) for c, r in [(2, 0), (-1, 1), (0.5, 0.5)]]
    assert float(bradley_terry_loss(chosen, rejected)) == pytest.approx(sum(by_hand) / 3, rel=1e-6)
    assert by_hand[2] == pytest.approx(math.log(2))  # equal rewards: log 2


def test_the_shipped_offline_set_is_rebuilt_identically():
    shipped = [json.loads(line) for line in offline_preferences_path().read_text().splitlines()]
    assert shipped == build_offline_preferences()
    assert len(shipped) >= 500 and all(r["chosen"] != r["rejected"] for r in shipped)


def test_too_few_pairs_and_bad_settings_are_refused():
    pairs = [{"prompt": "p", "chosen": "a", "rejected": "b"}] * 9
    with pytest.raises(UserError, match="at least 10"):
        split_pairs(pairs, 0.2, 0)
    train, held = split_pairs(pairs + pairs[:1], 0.2, 0)
    assert len(train) + len(held) == 10 and len(held) == 2
    with pytest.raises(UserError, match="held-out fraction"):
        RewardModelConfig(eval_frac=1.0)


PATTERN = [
    {"prompt": f"Question {i}?", "chosen": f"Yes, the answer is {i}.", "rejected": f"zzz qqq {i}"}
    for i in range(20)
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-layer Llama reward model taught to prefer 'Yes, the answer is N.'"""
    base = tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")
    out = tmp_path_factory.mktemp("rm") / "reward"
    config = RewardModelConfig(base=str(base), max_steps=12, lr=1e-2, batch_size=8, seed=0)
    events = list(train_reward_model(config, PATTERN, out_dir=out, data_name="pattern"))
    return events, out


def test_a_tiny_reward_model_learns_a_fixed_pattern(trained):
    events, out = trained
    started = events[0]
    assert isinstance(started, RewardStarted)
    assert started.train_pairs + started.eval_pairs == len(PATTERN) and started.eval_pairs == 4
    steps = [e for e in events if isinstance(e, RewardStep)]
    assert [s.step for s in steps] == list(range(1, 13))
    assert steps[-1].loss < steps[0].loss
    evaluation = next(e for e in events if isinstance(e, RewardEval))
    done = events[-1]
    assert isinstance(done, RewardDone) and done.eval_accuracy == 1.0 == evaluation.accuracy
    assert done.eval_margin > 0 and done.out_dir == str(out.resolve())
    meta = json.loads((out / "playground.json").read_text())
    assert meta["kind"] == "reward-model" and meta["eval_accuracy"] == 1.0
    # the score head is saved with the adapter
    config = json.loads((out / "adapter_config.json").read_text())
    assert "score" in config["modules_to_save"] and config["task_type"] == "SEQ_CLS"


def test_a_saved_reward_model_scores_like_the_trained_one(trained, playground_home):
    import shutil

    from llm_playground.generation.registry import list_models

    events, out = trained
    done = events[-1]
    rm = load_reward_model(out)
    _, held = split_pairs(PATTERN, 0.2, 0)
    accuracy, margin = evaluate_pairs(rm, held)
    assert accuracy == 1.0 and margin == pytest.approx(done.eval_margin, rel=1e-4)
    good, bad = rm.score("Question 99?", ["Yes, the answer is 99.", "zzz qqq 99"])
    assert good > bad
    # a reward model in the adapters folder is not offered as a language model
    shutil.copytree(out, playground_home / "adapters" / "a-reward-model")
    assert "a-reward-model" not in {i.name for i in list_models(include_hub=False)}


def test_voted_models_are_ranked_by_mean_reward():
    class Scorer:
        def score(self, prompt, responses):
            return [float(len(r)) for r in responses]

    def vote(a, b, ma, mb):
        return SimpleNamespace(prompt="p", response_a=a, response_b=b, model_a=ma, model_b=mb)

    votes = [vote("long answer", "x", "big", "small"), vote("yy", "longer still", "small", "big")]
    rows = model_ranking(Scorer(), votes)
    assert [r["model"] for r in rows] == ["big", "small"] and [r["rank"] for r in rows] == [1, 2]
    assert rows[0]["mean_reward"] == pytest.approx((11 + 12) / 2) and rows[0]["answers"] == 2
