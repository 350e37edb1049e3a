"""Token embeddings: a 2-D map by principal components, and nearest neighbours by cosine.

For a character model the map shows every character (do vowels, digits and punctuation
cluster?); for a large vocabulary a list of words. A word is looked up as one token when
the tokenizer has it as one (with a leading space first, the way words inside a sentence
are written, else without); a word of several tokens is the mean of their embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llm_playground.core.errors import UserError
from llm_playground.inspection.models import InspectedModel, encode_text

#: Up to this many tokens, a vocabulary is mapped whole (a character model's).
WHOLE_VOCABULARY = 512
MAX_WORDS = 200
#: Words for a large vocabulary when the learner gives none: groups that may cluster.
DEFAULT_WORDS = (
    "one two three four five six seven eight nine ten "
    "red green blue yellow black white "
    "cat dog horse bird fish cow "
    "France Germany Italy Spain Japan China "
    "Monday Tuesday Friday Sunday January March "
    "run walk eat sleep think write "
    "king queen man woman boy girl"
).split()


@dataclass(frozen=True, eq=False)
class EmbeddingMap:
    """Points of a 2-D PCA of token embeddings: one per label, with its group for colour."""

    labels: list[str]  # the character or word
    token_ids: list[tuple[int, ...]]  # the token(s) behind each label
    groups: list[str]  # vowel, consonant, digit, punctuation, space, other, or word
    points: np.ndarray  # (n, 2) float32: coordinates on the first two principal components
    explained: tuple[float, float]  # the share of the variance each component explains


@dataclass(frozen=True)
class Neighbour:
    token_id: int
    token: str
    cosine: float


def _embedding_matrix(model: InspectedModel) -> np.ndarray:
    """The input embeddings, (vocab, d_model) float32."""
    if model.architecture == "gpt":
        weight = model.model.wte.weight
    else:
        base = (
            model.model.get_base_model() if hasattr(model.model, "get_base_model") else model.model
        )
        weight = base.get_input_embeddings().weight
    return weight.detach().float().cpu().numpy()


def character_group(text: str) -> str:
    if text.isspace() or text == "":
        return "space"
    if len(text) == 1 and text.lower() in "aeiou":
        return "vowel"
    if len(text) == 1 and text.isalpha():
        return "consonant"
    if text.isdigit():
        return "digit"
    if all(not c.isalnum() for c in text):
        return "punctuation"
    return "other"


def word_ids(model: InspectedModel, word: str) -> tuple[int, ...]:
    """The token(s) a word maps to: one token with a leading space, else one without,
    else every token of the word (no beginning-of-text token)."""
    candidates = [encode_text(model, form) for form in (" " + word, word)]
    candidates = [[i for i in ids if i not in model.special_ids] for ids in candidates]
    for ids in candidates:
        if len(ids) == 1:
            return (ids[0],)
    return tuple(candidates[1] or candidates[0])


def embedding_map(model: InspectedModel, words: list[str] | None = None) -> EmbeddingMap:
    """A 2-D PCA of the embeddings of every token (a vocabulary of at most 512 tokens, when
    no words are given) or of ``words`` (default :data:`DEFAULT_WORDS`)."""
    matrix = _embedding_matrix(model)
    if words is None and model.vocab_size <= WHOLE_VOCABULARY:
        ordinary = [int(i) for i in model.ordinary_ids()]
        labels = model.token_texts(ordinary)
        token_ids = [(i,) for i in ordinary]
        groups = [character_group(label) for label in labels]
    else:
        words = [w.strip() for w in (words or DEFAULT_WORDS) if w.strip()]
        words = list(dict.fromkeys(words))  # each word once, in the order given
        if len(words) < 3:
            raise UserError("an embedding map needs at least 3 different words")
        if len(words) > MAX_WORDS:
            raise UserError(f"an embedding map takes at most {MAX_WORDS} words, got {len(words)}")
        labels, token_ids = words, [word_ids(model, w) for w in words]
        groups = ["word"] * len(words)
    # one vector per label: (n, d_model)
    vectors = np.stack([matrix[list(ids)].mean(axis=0) for ids in token_ids])
    points, explained = _pca_2d(vectors)
    return EmbeddingMap(labels, token_ids, groups, points, explained)


def _pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Coordinates on the first two principal components, and their share of the variance."""
    # centre the cloud, then the right singular vectors are the principal directions
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    # (n, d) x (d, 2) -> (n, 2)
    points = centred @ directions[:2].T
    variance = singular**2
    share = variance[:2] / max(float(variance.sum()), 1e-30)
    share = np.pad(share, (0, 2 - len(share)))
    return points.astype(np.float32), (float(share[0]), float(share[1]))


def nearest_neighbours(model: InspectedModel, query: str | int, k: int = 10) -> list[Neighbour]:
    """The ``k`` tokens whose embeddings are closest by cosine to a word's (or token id's),
    the word's own tokens left out."""
    if not 1 <= int(k) <= 100:
        raise UserError(f"the number of neighbours must be from 1 to 100, got {k}")
    matrix = _embedding_matrix(model)
    if isinstance(query, str):
        if not query.strip():
            raise UserError("no word given")
        own = word_ids(model, query.strip()) if model.vocab_size > WHOLE_VOCABULARY else ()
        if not own:  # a character model: the characters of the text
            own = tuple(i for i in encode_text(model, query) if i not in model.special_ids)
    else:
        if not 0 <= int(query) < len(matrix):
            raise UserError(f"token id must be from 0 to {len(matrix) - 1}")
        own = (int(query),)
    target = matrix[list(own)].mean(axis=0)
    # cosine of every row with the target: (V, d) x (d,) -> (V,)
    # row lengths without a (V, d) temporary: sqrt of each row's dot product with itself
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix)) * max(
        float(np.linalg.norm(target)), 1e-12
    )
    cosine = matrix @ target / np.maximum(norms, 1e-12)
    cosine[list(own)] = -np.inf
    cosine[sorted(i for i in model.special_ids if i < len(cosine))] = -np.inf
    best = np.argsort(-cosine, kind="stable")[: int(k)]
    return [Neighbour(int(i), model.token_text(int(i)), float(cosine[i])) for i in best]
