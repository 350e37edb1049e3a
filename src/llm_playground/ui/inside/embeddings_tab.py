"""Lab 6, Embeddings: the token embeddings on a 2-D map (principal components) and the
nearest neighbours of a word by cosine."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.generation.decoding import shown_token
from llm_playground.inspection import DEFAULT_WORDS, embedding_map, nearest_neighbours
from llm_playground.inspection.embeddings import WHOLE_VOCABULARY
from llm_playground.ui.components import show_user_error

INTRO = (
    "Each token enters the model as a vector of numbers, its embedding, learned in training. "
    "This map flattens those vectors to two dimensions (the two directions along which they "
    "differ most) so that tokens the model treats alike land close together. For a "
    "character model: do vowels, digits and punctuation form groups? For a large "
    "vocabulary, type words and see whether numbers, colours or countries cluster."
)
GROUP_COLOURS = alt.Scale(
    domain=["vowel", "consonant", "digit", "punctuation", "space", "other", "word"],
    range=["#e4572e", "#4c78a8", "#54a24b", "#b279a2", "#9d755d", "#bab0ac", "#4c78a8"],
)


def render(model) -> None:
    st.markdown(INTRO)
    words = None
    if model.vocab_size > WHOLE_VOCABULARY:
        text = st.text_area(
            "Words to map (separated by spaces or new lines)",
            value=" ".join(DEFAULT_WORDS),
            key="inside_emb_words",
            height=90,
        )
        words = text.split()
    try:
        points = embedding_map(model, words)
    except UserError as exc:
        show_user_error(exc)
        return
    _scatter(points)
    _neighbours(model)


def _scatter(points) -> None:
    df = pd.DataFrame(
        {
            "x": points.points[:, 0],
            "y": points.points[:, 1],
            "token": [shown_token(label) for label in points.labels],
            "group": points.groups,
        }
    )
    first, second = points.explained
    base = alt.Chart(df).encode(
        x=alt.X("x:Q", title=f"first principal component ({first:.0%} of the variance)"),
        y=alt.Y("y:Q", title=f"second principal component ({second:.0%})"),
        color=alt.Color(
            "group:N",
            scale=GROUP_COLOURS,
            legend=None if set(points.groups) == {"word"} else alt.Legend(orient="bottom"),
        ),
        tooltip=["token", "group"],
    )
    chart = base.mark_circle(size=60, opacity=0.5) + base.mark_text(
        dy=-9, fontSize=13, fontWeight="bold"
    ).encode(text="token:N")
    st.altair_chart(chart.properties(height=520), width="stretch", key="inside_emb_chart")


def _neighbours(model) -> None:
    c1, c2 = st.columns([3, 1])
    query = c1.text_input(
        "Nearest neighbours of",
        value="e" if model.vocab_size <= WHOLE_VOCABULARY else "king",
        key="inside_emb_query",
        help="The tokens whose embeddings point the most the same way (cosine similarity).",
    )
    k = c2.number_input("How many", 1, 50, 10, key="inside_emb_k")
    if not query.strip():
        return
    try:
        found = nearest_neighbours(model, query, int(k))
    except UserError as exc:
        show_user_error(exc)
        return
    st.dataframe(
        pd.DataFrame(
            [
                {"token": shown_token(n.token), "id": n.token_id, "cosine": round(n.cosine, 4)}
                for n in found
            ]
        ),
        hide_index=True,
        key="inside_emb_table",
    )
