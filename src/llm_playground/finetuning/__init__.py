"""Lab 4: LoRA fine-tuning and human preferences.

- :mod:`.instructions`  instruction data (offline set, Alpaca, user JSONL) and the prompt format
- :mod:`.sft`           supervised fine-tuning of a LoRA adapter (``train_sft``)
- :mod:`.dpo`           direct preference optimisation with TRL (``train_dpo``)
- :mod:`.preferences`   the vote store, its exports and Bradley–Terry ratings
"""
