"""The small core every lab stands on (no lab imports flow back into it).

- :mod:`.errors`     ``UserError``: one line for a person (exit 2 in the CLI, a message in the app)
- :mod:`.paths`      the playground home and cache folders, files shipped in the package
- :mod:`.textfiles`, :mod:`.jsonl`  bounded, line-numbered readers of user files
- :mod:`.events`     the one vocabulary of every long run (Started, Progress, Metric, Sample,
                     Saved, Done, Error)
- :mod:`.jobs`       background jobs with owners, a cap on heavy runs, a queue and eviction
"""
