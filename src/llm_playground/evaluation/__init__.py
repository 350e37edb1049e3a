"""Lab 5: measuring models.

- :mod:`.scoring`        one forward pass over any playground model (registry or Lab 2 run)
- :mod:`.perplexity`     rolling and sliding windows, the harness's word and byte counts,
                         the key/value-cached mode
- :mod:`.overlap`        BLEU/chrF (sacrebleu), ROUGE (rouge-score)
- :mod:`.reference_set`  the shipped prompt/reference pairs, answered and scored
- :mod:`.metrics`        all of the above in one namespace, and the precision decision
- :mod:`.harness`        lm-evaluation-harness tasks through a model class of our own
- :mod:`.local_tasks`    the shipped offline tasks (multiple choice, cloze, rolling)
- :mod:`.benchmarks`     the model cards' published figures and how to read them
- :mod:`.judge`          LLM-as-a-judge: rubric scores and pairwise verdicts vs people
- :mod:`.leaderboard`    results of every evaluation, kept in the playground database
- :mod:`.runs`           evaluate, then record: the one path of the CLI and the page
"""
