"""Lab 2: training a bigram model, a baby GPT or the speedrun recipe on TinyShakespeare.

- :mod:`.config`       frozen ``ModelConfig``/``TrainConfig``, the presets, the speedrun's tricks,
                       ``config_from_settings`` (what the CLI and the page both build runs with)
- :mod:`.corpus`       the text, its tokenizer, the train/validation split and batches
- :mod:`.model`        the bigram model and the GPT (with the speedrun's switches), the summary
- :mod:`.optim`        AdamW, and Muon (Newton-Schulz orthogonalised momentum) for hidden matrices
- :mod:`.events`       what a training run or a race reports (``TrainStep``, ``TrainEval``, ...)
- :mod:`.engine`       ``run_training(config, stop)``: the training loop as events
- :mod:`.checkpoints`  safetensors checkpoints written atomically, resume, GPT-2 export
- :mod:`.causal_lm`    a GPT of any architecture in the causal-LM call shape, for Labs 3 and 5
- :mod:`.records`      races between recipes and the records table in the playground database
"""
