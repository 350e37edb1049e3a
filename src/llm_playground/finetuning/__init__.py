"""Lab 4: LoRA fine-tuning and human preferences.

- :mod:`.instructions`    instruction data (offline set, Alpaca, user JSONL) and the one
                          prompt format (``format_prompt``, ``prompt_for_model``)
- :mod:`.lora`            LoRA adapters for SFT and DPO: ``LoRAConfig``, ``add_adapter``,
                          ``count_trainable``, ``save_adapter``, ``merge_and_save``
- :mod:`.sft`             supervised fine-tuning of a LoRA adapter (``SFTConfig``, ``train_sft``)
- :mod:`.dpo`             direct preference optimisation with TRL (``DPOConfig``, ``train_dpo``)
- :mod:`.events`          the runs' events, subclasses of :mod:`llm_playground.core.events`
- :mod:`.trainer_events`  any ``transformers``/``trl`` Trainer as a generator of events
- :mod:`.preferences`     the vote store, its exports and Bradley–Terry ratings
- :mod:`.reward`          a LoRA reward model with TRL's RewardTrainer (``train_reward_model``,
                          ``load_reward_model``, ``RewardModel.score``)
- :mod:`.rewards`         verifiable rewards: the arithmetic problems and verifier, format,
                          length; GRPO's group advantages
- :mod:`.rl`              GRPO with TRL's GRPOTrainer on a LoRA adapter (``RLConfig``, ``train_rl``)
- :mod:`.best_of`         best-of-n: sample n answers, keep the one a reward model scores highest
- :mod:`.outputs`         names inside the playground home, atomic writes, no silent overwrite

Submodules are imported on use (training pulls in torch; the vote store does not).
"""
