"""Streamlit pieces of the Lab 4 preference screens: choose the vote database, vote on
pairs of responses, look at win rates and ratings, export the votes.

The page supplies the models: :func:`render_voting` takes ``generate_pair(prompt)``
returning ``((response_1, model_1), (response_2, model_2))``; this module never loads
a model. Every widget key starts with ``prefs_``. A page uses them like this::

    store = store_chooser()                      # a database named inside the home (or None)
    vote_tab, prefs_tab = st.tabs(["Vote", "Preferences"])
    with vote_tab:
        render_voting(store, generate_pair)      # generate_pair(prompt) -> ((r1, m1), (r2, m2))
    with prefs_tab:
        render_stats(store)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.finetuning.outputs import OutputExists, home_file
from llm_playground.finetuning.preferences import (
    TIES_MODES,
    Pair,
    PreferenceStore,
    Vote,
    make_pair,
    sibling_ties_path,
)
from llm_playground.finetuning.preferences.export import EXPORTS_FOLDER
from llm_playground.ui.components import esc, show_user_error

log = logging.getLogger(__name__)

GeneratePair = Callable[[str], tuple[tuple[str, str | None], tuple[str, str | None]]]

VOTE_BUTTONS = (
    ("a", "A is better", "prefs_vote_a"),
    ("b", "B is better", "prefs_vote_b"),
    ("tie", "Tie", "prefs_vote_tie"),
    ("both-bad", "Both are bad", "prefs_vote_both_bad"),
)
MODE_GENERATE = "Generate with two models"
MODE_PASTE = "Paste your own pair"
TIES_LABELS = {
    "separate": "separate: ties and both-bad in FILE.ties.jsonl",
    "label": "label: keep them in the file with a label field",
    "drop": "drop: leave ties and both-bad out",
}
_CHOICE_WORDS = {"a": "A is better", "b": "B is better", "tie": "a tie", "both-bad": "both are bad"}


def _state() -> dict:
    return st.session_state


def session_id() -> str:
    """One id per browser session, stored with each vote."""
    if "prefs_session_id" not in st.session_state:
        st.session_state["prefs_session_id"] = uuid.uuid4().hex
    return st.session_state["prefs_session_id"]


def _as_store(store: PreferenceStore | str | Path | None) -> PreferenceStore | None:
    if store is None or isinstance(store, PreferenceStore):
        return store
    try:
        return PreferenceStore(store)
    except UserError as exc:
        show_user_error(exc)
        return None


def store_chooser(
    default: str = "playground.sqlite", key: str = "prefs_db_name"
) -> PreferenceStore | None:
    """The vote database, named inside the playground home (no folders, no ``..``),
    validated: a foreign, corrupt or unreachable file is shown as an error and not used."""
    name = st.text_input(
        "Vote database (a name in the playground home)",
        value=default,
        key=key,
        help="Votes are kept in a SQLite database in WAL mode, in the playground home "
        "(playground.sqlite is the one the CLI and Lab 5 use). A file that is not a "
        "playground database is refused, never overwritten.",
    )
    try:
        store = PreferenceStore(home_file(name, "", suffix=".sqlite", what="database name"))
    except UserError as exc:
        show_user_error(exc)
        return None
    st.caption(f"Votes are stored in `{esc(store.path.name)}` ({store.count()} so far).")
    return store


# --- voting ---------------------------------------------------------------------------


def _cast_vote(store: PreferenceStore, choice: str) -> None:
    """Button callback: store the vote on the current pair, then reveal the names."""
    state = _state()
    pair: Pair | None = state.get("prefs_pair")
    state.pop("prefs_error", None)
    if pair is None:
        return
    try:
        vote = pair.record(
            store, choice, comment=state.get("prefs_comment", ""), session_id=session_id()
        )
    except UserError as exc:
        state["prefs_error"] = str(exc)
        return
    state["prefs_last_vote"] = vote
    state["prefs_last_db"] = str(store.path)
    state.pop("prefs_pair", None)
    state["prefs_comment"] = ""


def _undo_vote(store: PreferenceStore) -> None:
    state = _state()
    vote: Vote | None = state.pop("prefs_last_vote", None)
    if vote is None:
        return
    try:
        store.delete_vote(vote.id)
    except UserError as exc:
        state["prefs_error"] = str(exc)
        return
    # the same pair comes back, names hidden again, to be judged anew
    state["prefs_pair"] = Pair(
        prompt=vote.prompt,
        response_a=vote.response_a,
        response_b=vote.response_b,
        pair_id=uuid.uuid4().hex,
        _model_a=vote.model_a,
        _model_b=vote.model_b,
    )
    state["prefs_undone"] = True


def _show_response(title: str, text: str) -> None:
    with st.container(border=True):
        st.markdown(f"**{title}**")
        body = esc(text) if text.strip() else "<em>(empty response)</em>"
        st.html(
            f"<div class='prefs-response' style='white-space: pre-wrap; "
            f"overflow-wrap: anywhere'>{body}</div>"
        )


def _new_pair(prompt: str, first: tuple, second: tuple, rng) -> None:
    state = _state()
    state["prefs_pair"] = make_pair(prompt, first[0], first[1], second[0], second[1], rng)
    state.pop("prefs_last_vote", None)
    state.pop("prefs_error", None)
    state.pop("prefs_undone", None)


def _check_generated(result: object) -> tuple[tuple[str, str | None], tuple[str, str | None]]:
    try:
        (r1, m1), (r2, m2) = result  # type: ignore[misc]
    except (TypeError, ValueError):
        raise UserError(
            "the generator must return ((response_1, model_1), (response_2, model_2))"
        ) from None
    if not isinstance(r1, str) or not isinstance(r2, str):
        raise UserError("the generated responses must be text")
    return (r1, m1), (r2, m2)


def _generated_pair(generate_pair: GeneratePair, state, rng) -> None:
    """A prompt box; the page's two models answer it as a new pair."""
    prompt = st.text_area(
        "Prompt",
        key="prefs_prompt",
        height=90,
        placeholder="Write a prompt; two models answer it.",
    )
    if st.button("Generate a pair", key="prefs_generate", type="primary"):
        if not prompt.strip():
            state["prefs_error"] = "the prompt is empty"
        else:
            try:
                with st.spinner("Generating two responses…"):
                    first, second = _check_generated(generate_pair(prompt))
                _new_pair(prompt, first, second, rng)
            except UserError as exc:
                state["prefs_error"] = str(exc)
            except Exception as exc:  # a model failure is shown, not raised
                log.exception("generating a pair failed")
                state["prefs_error"] = f"generation failed: {type(exc).__name__}: {exc}"


def _pasted_pair(state, rng) -> None:
    """A form for a prompt and two responses written or pasted by the learner."""
    with st.form("prefs_paste_form", clear_on_submit=False, border=True):
        prompt = st.text_area("Prompt", key="prefs_paste_prompt", height=80)
        c1, c2 = st.columns(2)
        with c1:
            r1 = st.text_area("First response", key="prefs_paste_response_1", height=140)
            m1 = st.text_input("Its model (optional)", key="prefs_paste_model_1")
        with c2:
            r2 = st.text_area("Second response", key="prefs_paste_response_2", height=140)
            m2 = st.text_input("Its model (optional)", key="prefs_paste_model_2")
        submitted = st.form_submit_button(
            "Vote on this pair", type="primary", key="prefs_paste_use"
        )
    if submitted:
        if not prompt.strip():
            state["prefs_error"] = "the prompt is empty"
        elif not r1.strip() and not r2.strip():
            state["prefs_error"] = "both responses are empty"
        else:
            _new_pair(prompt, (r1, m1.strip() or None), (r2, m2.strip() or None), rng)


def _pair_and_vote_buttons(store: PreferenceStore, pair: Pair) -> None:
    """The prompt, the two responses as A and B, a comment box and the four vote buttons."""
    st.markdown("**Prompt**")
    st.html(f"<div class='prefs-prompt' style='white-space: pre-wrap'>{esc(pair.prompt)}</div>")
    col_a, col_b = st.columns(2)
    with col_a:
        _show_response("Response A", pair.response_a)
    with col_b:
        _show_response("Response B", pair.response_b)
    st.text_input(
        "Comment (optional)", key="prefs_comment", placeholder="Why? (kept with the vote)"
    )
    cols = st.columns(4)
    for col, (choice, label, key) in zip(cols, VOTE_BUTTONS, strict=True):
        col.button(
            label,
            key=key,
            on_click=_cast_vote,
            args=(store, choice),
            use_container_width=True,
            type="primary" if choice in ("a", "b") else "secondary",
        )


def render_voting(
    store: PreferenceStore | str | Path | None,
    generate_pair: GeneratePair | None = None,
    *,
    rng=None,
) -> Vote | None:
    """The voting screen. Returns the vote just stored (names revealed), if any.

    With ``generate_pair`` the learner types a prompt and the page's two models (or two
    samples) answer; "paste your own pair" needs no model. Positions are randomised
    and the model names stay hidden until the vote is stored.
    """
    store = _as_store(store)
    if store is None:
        st.info("Choose a vote database first.")
        return None
    state = _state()
    modes = [MODE_GENERATE, MODE_PASTE] if generate_pair is not None else [MODE_PASTE]
    mode = (
        st.radio("Where do the two responses come from?", modes, key="prefs_mode", horizontal=True)
        if len(modes) > 1
        else MODE_PASTE
    )

    if mode == MODE_GENERATE:
        _generated_pair(generate_pair, state, rng)
    else:
        _pasted_pair(state, rng)

    if state.get("prefs_error"):
        show_user_error(UserError(state["prefs_error"]))

    last: Vote | None = state.get("prefs_last_vote")
    pair: Pair | None = state.get("prefs_pair")
    if last is not None and pair is None:
        _show_reveal(store, last)
    if state.pop("prefs_undone", False):
        st.info("The vote was removed; judge the pair again.")
    if pair is None:
        if last is None:
            st.caption("A pair appears here; the model names stay hidden until you vote.")
        return last

    _pair_and_vote_buttons(store, pair)
    return None


def _show_reveal(store: PreferenceStore, vote: Vote) -> None:
    name_a = vote.model_a or "an unnamed model"
    name_b = vote.model_b or "an unnamed model"
    st.success(
        f"Vote #{vote.id} stored: {_CHOICE_WORDS[vote.choice]}. "
        f"Response A was written by {name_a}; response B by {name_b}.",
        icon="✅",
    )
    col1, col2 = st.columns(2)
    with col1:
        _show_response(f"Response A — {name_a}", vote.response_a)
    with col2:
        _show_response(f"Response B — {name_b}", vote.response_b)
    st.button("Undo this vote", key="prefs_undo", on_click=_undo_vote, args=(store,))


# --- statistics and export ---------------------------------------------------------------


def _ratings_chart(rows: list[dict]):
    import altair as alt
    import pandas as pd

    df = pd.DataFrame(rows)
    order = list(df["model"])
    y = alt.Y("model:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=240))
    bars = (
        alt.Chart(df)
        .mark_rule(strokeWidth=2)
        .encode(
            y=y,
            x=alt.X(
                "ci_low:Q",
                title="rating (Elo scale) with 95% interval",
                scale=alt.Scale(zero=False),
            ),
            x2="ci_high:Q",
        )
    )
    points = (
        alt.Chart(df)
        .mark_point(filled=True, size=90)
        .encode(
            y=y,
            x="rating:Q",
            tooltip=[
                "model",
                alt.Tooltip("rating:Q", format=".0f"),
                alt.Tooltip("ci_low:Q", format=".0f"),
                alt.Tooltip("ci_high:Q", format=".0f"),
                "n_votes",
            ],
        )
    )
    return (bars + points).properties(height=60 + 40 * len(df))


def _ratings_tables(stats: dict) -> None:
    """Win rates and Bradley–Terry ratings with their intervals, the chart and online Elo."""
    import pandas as pd

    st.subheader("Win rates and ratings")
    bt = stats["bradley_terry"]
    st.caption(
        "Win rate = (wins + ties/2) / (wins + losses + ties); 'both bad' votes are "
        "counted apart. Bradley–Terry ratings on the Elo scale (1000 = average), "
        "95% intervals from the "
        + (
            "observed information (Hessian)."
            if bt["method"] == "hessian"
            else "bootstrap (200 resamples of the votes)."
        )
    )
    if bt["regularized"]:
        st.warning(
            "A model has never lost or never won yet, so the plain Bradley–Terry fit "
            "does not exist; a weak prior keeps the ratings finite. More votes will "
            "make them meaningful."
        )
    table = pd.DataFrame(stats["models"])[
        [
            "model",
            "rating",
            "ci_low",
            "ci_high",
            "n_votes",
            "wins",
            "losses",
            "ties",
            "both_bad",
            "win_rate",
        ]
    ]
    whole = st.column_config.NumberColumn(format="%.0f")
    st.dataframe(
        table,
        hide_index=True,
        key="prefs_models_table",
        column_config={
            "rating": whole,
            "ci_low": whole,
            "ci_high": whole,
            "win_rate": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    if stats["ratings"]:
        st.altair_chart(_ratings_chart(stats["ratings"]), key="prefs_ratings_chart")
    with st.expander("Online Elo (K = 32, in vote order)"):
        st.dataframe(pd.DataFrame(stats["elo"]["ratings"]), hide_index=True, key="prefs_elo_table")


def render_stats(store: PreferenceStore | str | Path | None) -> dict | None:
    """Votes per pair, win rates, ratings with uncertainty, export and download.
    Returns the statistics shown (see :meth:`PreferenceStore.stats`)."""
    import pandas as pd

    store = _as_store(store)
    if store is None:
        st.info("Choose a vote database first.")
        return None
    bootstrap = st.toggle(
        "Bootstrap intervals (200 resamples) instead of the Hessian", key="prefs_bootstrap"
    )
    try:
        stats = store.stats(bootstrap=200 if bootstrap else 0, seed=0)
    except UserError as exc:
        show_user_error(exc)
        return None
    v = stats["votes"]
    cols = st.columns(5)
    for col, (label, value) in zip(
        cols,
        [
            ("Votes", v["total"]),
            ("A better", v["a"]),
            ("B better", v["b"]),
            ("Ties", v["tie"]),
            ("Both bad", v["both-bad"]),
        ],
        strict=True,
    ):
        col.metric(label, value)
    if not v["total"]:
        st.info("No votes yet: vote on a few pairs first.")
        return stats

    skipped = stats["excluded_from_ratings"]
    if skipped["unnamed"] or skipped["same_model"]:
        st.caption(
            f"Not in the ratings: {skipped['unnamed']} vote(s) without model names, "
            f"{skipped['same_model']} of a model against itself (still exported)."
        )
    if stats["pairs"]:
        st.subheader("Votes per pair of models")
        st.dataframe(pd.DataFrame(stats["pairs"]), hide_index=True, key="prefs_pairs_table")
    if stats["models"]:
        _ratings_tables(stats)
    _render_export(store)
    return stats


def _save_in_home(store: PreferenceStore, ties: str, name: str, replace: bool) -> None:
    path = home_file(name, EXPORTS_FOLDER, suffix=".jsonl", what="file name")
    result = store.export_jsonl(path, ties=ties, force=replace)
    extra = result.n_ties + result.n_both_bad
    st.success(
        f"{result.n_pairs} preference pair(s) saved as {path.name} in the playground home"
        + (f" ({extra} tie/both-bad vote(s): {ties})" if extra else "")
        + "; the DPO tab lists it under its saved exports."
    )


def _save_dataset_in_home(store: PreferenceStore, ties: str, name: str, replace: bool) -> None:
    folder = home_file(name, EXPORTS_FOLDER, what="dataset name")
    result = store.export_dataset(folder, ties=ties, force=replace)
    st.success(
        f"{result.n_pairs} preference pair(s) saved as the dataset {result.path.name} in the "
        "playground home" + (f"; ties in {result.ties_path.name}" if result.ties_path else "")
    )


def _render_export(store: PreferenceStore) -> None:
    st.subheader("Export for DPO")
    ties = st.radio(
        "Ties and 'both bad' votes",
        list(TIES_MODES[1:]) + ["drop"],
        format_func=TIES_LABELS.get,
        key="prefs_export_ties",
    )
    try:
        main, side = store.jsonl_text(ties)
    except UserError as exc:
        show_user_error(exc)
        return
    name = "preferences.jsonl"
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download JSONL",
        data=main.encode("utf-8"),
        file_name=name,
        mime="application/jsonl",
        key="prefs_download",
        on_click="ignore",
        disabled=not main,
    )
    if side is not None:
        d2.download_button(
            "Download ties JSONL",
            data=side.encode("utf-8"),
            file_name=sibling_ties_path(name).name,
            mime="application/jsonl",
            key="prefs_download_ties",
            on_click="ignore",
            disabled=not side,
        )
    st.markdown("**Keep in the playground home** (for the DPO tab, or `datasets.load_from_disk`)")
    replace = st.checkbox("Replace a file or dataset of the same name", key="prefs_export_replace")
    c1, c2 = st.columns(2)
    with c1:
        file_name = st.text_input("File name", value=name, key="prefs_export_name")
        if st.button("Save JSONL", key="prefs_export_jsonl"):
            try:
                _save_in_home(store, ties, file_name, replace)
            except OutputExists as exc:
                show_user_error(
                    UserError(f"{exc.path.name} exists already: tick 'Replace' to overwrite it")
                )
            except UserError as exc:
                show_user_error(exc)
    with c2:
        ds_name = st.text_input(
            "Dataset name (datasets save_to_disk)",
            value="preferences-dataset",
            key="prefs_export_dataset_name",
        )
        if st.button("Save dataset", key="prefs_export_dataset"):
            try:
                _save_dataset_in_home(store, ties, ds_name, replace)
            except OutputExists as exc:
                show_user_error(
                    UserError(f"{exc.path.name} exists already: tick 'Replace' to overwrite it")
                )
            except UserError as exc:
                show_user_error(exc)
