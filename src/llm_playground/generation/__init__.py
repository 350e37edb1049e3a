"""Lab 3: turning a model's next-token distribution into text.

- :mod:`.registry`     every model the playground can load: offline models, Lab 2 runs,
                       LoRA adapters and hub models (``list_models``, ``find_model``,
                       ``load_model``)
- :mod:`.samplers`     the sampler chain as logits processors (temperature, top-k, top-p,
                       min-p, typical, epsilon, eta, top-nσ, XTC) and per-stage attribution
                       (``attribute``)
- :mod:`.penalties`    the stages that run first: repetition, presence/frequency, DRY,
                       no-repeat n-gram
- :mod:`.config`       ``DecodingConfig``: one generation's settings, and the chain they build
- :mod:`.records`      what a generation yields: step records, beams, the result
- :mod:`.choose`       choosing one token: the chain, then the argmax or a draw
- :mod:`.decoding`     the decoding loop (greedy, sampling) with step records
                       (``generate``, ``stream``)
- :mod:`.beam`         beam search around a ``BeamState``
- :mod:`.speculative`  prompt-lookup and draft-model speculative decoding
- :mod:`.runner`       running a model step by step: a static-cache Llama forward pass,
                       any ``transformers`` model, int8 weights, the bandwidth limit
"""
