"""Lab 4 tabs beyond DPO, one module each: the reward model (``reward_tab``), best-of-n
(``best_of_tab``) and reinforcement learning with GRPO (``rl_tab``). Layout and state only:
the training, scoring and decoding come from llm_playground.finetuning."""
