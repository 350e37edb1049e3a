"""Lab 5: measuring models.

- :mod:`.metrics`      perplexity (sliding windows), BLEU/chrF, ROUGE, the reference set
- :mod:`.judge`        LLM-as-a-judge: rubric scores and pairwise verdicts vs people
- :mod:`.leaderboard`  results of every evaluation, kept in the playground database
"""
