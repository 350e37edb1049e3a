"""Lab 6 · Inside the model: one module per tab (attention, logit lens, head roles, training
timeline, ablation, embeddings), what they share in ``common`` and the page's background
runs in ``jobs``. The page itself is ``ui/labs/inside.py``."""
