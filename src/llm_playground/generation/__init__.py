"""Lab 3: turning a model's next-token distribution into text.

- :mod:`.registry`  every model the playground can load: offline models, Lab 2 runs,
                    LoRA adapters and hub models (``list_models``, ``resolve``, ``load_model``)
- :mod:`.decoding`  logits processors, greedy, sampling and beam search with a KV cache,
                    step records for the step-by-step view (``generate``, ``stream``)
"""
