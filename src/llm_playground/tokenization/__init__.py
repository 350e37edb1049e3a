"""Lab 1: how text becomes tokens.

- :mod:`.tokenizer`  one interface over tiktoken, Hugging Face, character and own BPE
                     tokenizers (``get_tokenizer``, ``tokenize_with_pieces``)
- :mod:`.bpe`        byte-level BPE: training (``train``, ``train_events`` yielding
                     ``BPEProgress``/``BPEDone``), encoding, replay, bounded JSON files
- :mod:`.cleaning`   pre-cleaning steps (HTML, whitespace, NFKC) and their token diff
- :mod:`.view`       token pieces rendered as escaped, colour-coded HTML
- :mod:`.assets`     the offline tiktoken files, built and checked by sha256
"""
