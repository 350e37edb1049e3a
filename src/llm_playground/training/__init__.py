"""Lab 2: training a bigram model or a baby GPT on TinyShakespeare.

- :mod:`.config`       frozen ``ModelConfig``/``TrainConfig`` and the presets
- :mod:`.corpus`       the text, its tokenizer, the train/validation split and batches
- :mod:`.model`        the bigram model and the GPT, with a parameter/FLOPs summary
- :mod:`.events`       what a training run reports (``TrainStep``, ``TrainEval``, ...)
- :mod:`.engine`       ``run_training(config, stop)``: the training loop as events
- :mod:`.checkpoints`  safetensors checkpoints, resume, Hugging Face GPT-2 export
"""
