"""One vote and its vocabulary: the records the store writes and the exports and ratings read.

Kept apart from :mod:`.store` so that :mod:`.export` and :mod:`.ratings` need nothing of the
database: the store uses them, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

#: Version of the vote tables; a database with a larger one is refused.
SCHEMA_VERSION = 1
CHOICES = ("a", "b", "tie", "both-bad")


@dataclass(frozen=True)
class Vote:
    """One stored vote, as the person saw it (A on the left, B on the right)."""

    id: int
    uid: str
    prompt: str
    response_a: str
    response_b: str
    model_a: str | None
    model_b: str | None
    choice: str
    comment: str
    created_at: str
    session_id: str

    @property
    def winner(self) -> str | None:
        """The model that was preferred (None for a tie, both bad, or an unnamed model)."""
        return {"a": self.model_a, "b": self.model_b}.get(self.choice)

    @property
    def chosen(self) -> str | None:
        """The preferred response, or None when the vote carries no preference."""
        return {"a": self.response_a, "b": self.response_b}.get(self.choice)

    @property
    def rejected(self) -> str | None:
        return {"a": self.response_b, "b": self.response_a}.get(self.choice)


class VoteSource(Protocol):
    """What an export reads of a vote store: its votes, and the file they live in (which an
    export must never overwrite)."""

    path: Path

    def list_votes(self) -> list[Vote]: ...
