"""Two people's runs never share a name from the clock: the default names Lab 4 offers
for a reward model and a GRPO adapter differ for two people who open the page in the
same minute (the name is also the folder the run is saved to)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

PAGE = Path(__file__).resolve().parents[1] / "src/llm_playground/ui/labs/finetuner.py"


def test_two_people_in_one_minute_get_different_default_names():
    names = []
    for _ in range(2):  # two browser sessions, well within one minute
        at = AppTest.from_file(str(PAGE), default_timeout=300).run()
        assert not at.exception, at.exception
        names.append((at.text_input(key="ft_rm_name").value, at.text_input(key="ft_rl_name").value))
    (reward_a, grpo_a), (reward_b, grpo_b) = names
    assert reward_a.startswith("reward-") and grpo_a.startswith("grpo-")
    assert reward_a != reward_b and grpo_a != grpo_b
