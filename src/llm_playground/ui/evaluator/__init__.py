"""Lab 5's tabs, one module each; the page (``ui/labs/evaluator.py``) lays them out.

Every measurement and every leaderboard write is the library's
(:mod:`llm_playground.evaluation.runs`), started as a background job of this browser.
"""
