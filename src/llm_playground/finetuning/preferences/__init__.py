"""Human preference votes (Lab 4): the vote store, its exports and the ratings.

- :mod:`.votes`    one vote (:class:`Vote`) and the choices a person can make;
- :mod:`.store`    votes as tables of the playground database (:class:`PreferenceStore`,
  :class:`Pair` and :func:`make_pair` for blind A/B pairs), with its exports and ratings;
- :mod:`.export`   TRL preference files and datasets out, preference pairs back in
  (:func:`read_preference_pairs`, the one reader of DPO's input);
- :mod:`.ratings`  win rates, Bradley–Terry ratings with intervals, online Elo.
"""

from llm_playground.core.db import APPLICATION_ID  # the one mark, defined in core.db
from llm_playground.finetuning.preferences.export import (
    TIES_MODES,
    ExportResult,
    is_preference_export,
    parse_preference_pairs,
    read_preference_pairs,
    sibling_ties_path,
)
from llm_playground.finetuning.preferences.ratings import (
    ELO_SCALE,
    BTFit,
    Rating,
    compute_stats,
    elo_ratings,
    fit_bradley_terry,
    ratings_from_votes,
    win_matrix,
)
from llm_playground.finetuning.preferences.store import (
    VOTE_TABLES,
    Pair,
    PreferenceStore,
    make_pair,
    normalise_choice,
    resolve_db_path,
)
from llm_playground.finetuning.preferences.votes import CHOICES, SCHEMA_VERSION, Vote

__all__ = [
    "APPLICATION_ID",
    "CHOICES",
    "ELO_SCALE",
    "SCHEMA_VERSION",
    "TIES_MODES",
    "VOTE_TABLES",
    "BTFit",
    "ExportResult",
    "Pair",
    "PreferenceStore",
    "Rating",
    "Vote",
    "compute_stats",
    "elo_ratings",
    "fit_bradley_terry",
    "is_preference_export",
    "make_pair",
    "normalise_choice",
    "parse_preference_pairs",
    "ratings_from_votes",
    "read_preference_pairs",
    "resolve_db_path",
    "sibling_ties_path",
    "win_matrix",
]
