"""The Lab 4 voting and statistics screens under Streamlit's AppTest, with a stub generator."""

from __future__ import annotations

import json
import sqlite3

import pytest
from streamlit.testing.v1 import AppTest

from llm_playground.finetuning.preferences import PreferenceStore


def voting_app(
    db_path: str, seed: int | None = None, with_generator: bool = True, broken: bool = False
):
    import random

    from llm_playground.core.errors import UserError
    from llm_playground.ui.prefs_view import render_voting

    def generate_pair(prompt):
        if broken:
            raise RuntimeError("the model ran out of memory")
        if prompt == "refuse":
            raise UserError("no model is loaded")
        return (f"Long answer to {prompt}", "model-big"), ("<b>short</b> & sweet", "model-small")

    rng = random.Random(seed) if seed is not None else None
    render_voting(db_path, generate_pair if with_generator else None, rng=rng)


def stats_app(db_path: str):
    from llm_playground.ui.prefs_view import render_stats

    render_stats(db_path)


def chooser_app():
    import streamlit as st

    from llm_playground.ui.prefs_view import store_chooser

    store = store_chooser()
    st.session_state["chosen_db"] = str(store.path) if store else None


def page_text(at) -> str:
    """Everything the page shows as text (markdown, HTML, captions, alerts)."""
    parts = [m.value for m in at.markdown] + [h.proto.body for h in at.get("html")]
    parts += [c.value for c in at.caption] + [s.value for s in at.success]
    parts += [e.value for e in at.error] + [i.value for i in at.info]
    return "\n".join(parts)


def app(fn, *args, **kwargs) -> AppTest:
    at = AppTest.from_function(fn, args=args, kwargs=kwargs, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_vote_hides_names_until_stored_then_reveals(tmp_path):
    db = tmp_path / "votes.sqlite"
    at = app(voting_app, str(db), seed=1)
    assert [b.label for b in at.button if b.key and b.key.startswith("prefs_vote")] == []
    at.text_area(key="prefs_prompt").set_value("What is 2+2?").run()
    at.button(key="prefs_generate").click().run()
    assert not at.exception
    shown = page_text(at)
    assert "Long answer to What is 2+2?" in shown
    assert "&lt;b&gt;short&lt;/b&gt; &amp; sweet" in shown and "<b>short" not in shown
    assert "model-big" not in shown and "model-small" not in shown  # names hidden
    labels = [
        at.button(key=k).label
        for k in ("prefs_vote_a", "prefs_vote_b", "prefs_vote_tie", "prefs_vote_both_bad")
    ]
    assert labels == ["A is better", "B is better", "Tie", "Both are bad"]

    at.text_input(key="prefs_comment").set_value("clearer").run()
    at.button(key="prefs_vote_a").click().run()
    assert not at.exception
    [vote] = PreferenceStore(db).list_votes()
    assert vote.choice == "a" and vote.comment == "clearer" and vote.session_id
    assert {vote.model_a, vote.model_b} == {"model-big", "model-small"}
    # position A is the model whose response was shown as A
    assert (vote.model_a == "model-big") == vote.response_a.startswith("Long answer")
    [success] = at.success
    assert f"Vote #{vote.id} stored" in success.value
    assert f"Response A was written by {vote.model_a}" in success.value
    # the next pair starts with an empty comment box and hidden names
    at.button(key="prefs_generate").click().run()
    assert at.text_input(key="prefs_comment").value == ""
    assert "model-big" not in page_text(at)


def test_positions_are_randomised(tmp_path):
    first_positions = set()
    for seed in range(8):
        db = tmp_path / f"v{seed}.sqlite"
        at = app(voting_app, str(db), seed=seed)
        at.text_area(key="prefs_prompt").set_value("Q").run()
        at.button(key="prefs_generate").click().run()
        at.button(key="prefs_vote_b").click().run()
        [vote] = PreferenceStore(db).list_votes()
        first_positions.add(vote.model_a)
    assert first_positions == {"model-big", "model-small"}


def test_each_choice_is_stored(tmp_path):
    db = tmp_path / "votes.sqlite"
    at = app(voting_app, str(db), seed=3)
    at.text_area(key="prefs_prompt").set_value("Q").run()
    for key in ("prefs_vote_a", "prefs_vote_b", "prefs_vote_tie", "prefs_vote_both_bad"):
        at.button(key="prefs_generate").click().run()
        at.button(key=key).click().run()
        assert not at.exception
    assert [v.choice for v in PreferenceStore(db).list_votes()] == ["a", "b", "tie", "both-bad"]


def test_undo_removes_the_vote_and_shows_the_pair_again(tmp_path):
    db = tmp_path / "votes.sqlite"
    at = app(voting_app, str(db), seed=0)
    at.text_area(key="prefs_prompt").set_value("Q").run()
    at.button(key="prefs_generate").click().run()
    at.button(key="prefs_vote_tie").click().run()
    assert PreferenceStore(db).count() == 1
    at.button(key="prefs_undo").click().run()
    assert PreferenceStore(db).count() == 0
    assert "model-big" not in page_text(at)
    at.button(key="prefs_vote_a").click().run()
    assert [v.choice for v in PreferenceStore(db).list_votes()] == ["a"]


def test_paste_your_own_pair_needs_no_model(tmp_path):
    db = tmp_path / "votes.sqlite"
    at = app(voting_app, str(db), seed=2, with_generator=False)
    assert not at.radio  # only one way to get a pair
    at.text_area(key="prefs_paste_prompt").set_value("Name a colour")
    at.text_area(key="prefs_paste_response_1").set_value("Blue")
    at.text_input(key="prefs_paste_model_1").set_value("human")
    at.text_area(key="prefs_paste_response_2").set_value("Seven")
    at.button(key="prefs_paste_use").click().run()
    assert not at.exception
    assert "human" not in page_text(at)
    at.button(key="prefs_vote_both_bad").click().run()
    [vote] = PreferenceStore(db).list_votes()
    assert vote.prompt == "Name a colour" and vote.choice == "both-bad"
    assert {(vote.response_a, vote.model_a), (vote.response_b, vote.model_b)} == {
        ("Blue", "human"),
        ("Seven", None),
    }


def test_paste_mode_beside_generation_and_empty_prompt(tmp_path):
    db = tmp_path / "votes.sqlite"
    at = app(voting_app, str(db))
    at.radio(key="prefs_mode").set_value("Paste your own pair").run()
    at.button(key="prefs_paste_use").click().run()
    assert any("prompt is empty" in e.value for e in at.error)
    assert PreferenceStore(db).count() == 0


@pytest.mark.parametrize(
    "broken,prompt,message",
    [
        (True, "Q", "ran out of memory"),
        (False, "refuse", "no model is loaded"),
        (False, "   ", "prompt is empty"),
    ],
)
def test_generation_problems_are_shown_not_raised(tmp_path, broken, prompt, message):
    db = tmp_path / "votes.sqlite"
    at = app(voting_app, str(db), broken=broken)
    at.text_area(key="prefs_prompt").set_value(prompt).run()
    at.button(key="prefs_generate").click().run()
    assert not at.exception
    assert any(message in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "prefs_vote_a"]


def test_foreign_database_is_shown_as_an_error(tmp_path):
    foreign = tmp_path / "other.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE accounts (id INTEGER)")
    conn.commit()
    conn.close()
    at = app(voting_app, str(foreign))
    assert any("another application" in e.value for e in at.error)
    assert any("Choose a vote database" in i.value for i in at.info)


def test_store_chooser_takes_names_inside_the_home_only(tmp_path, playground_home):
    at = app(chooser_app)
    assert at.session_state["chosen_db"] == str(playground_home / "playground.sqlite")
    at.text_input(key="prefs_db_name").set_value("class-votes").run()
    assert at.session_state["chosen_db"] == str(playground_home / "class-votes.sqlite")
    outside = tmp_path / "elsewhere.sqlite"
    for typed in (str(outside), "../elsewhere.sqlite", "sub/dir.sqlite", "~/x.sqlite"):
        at.text_input(key="prefs_db_name").set_value(typed).run()
        assert at.session_state["chosen_db"] is None, typed
        assert any("plain name" in e.value for e in at.error), typed
    assert not outside.exists() and not (tmp_path / "elsewhere.sqlite").exists()
    bad = playground_home / "notes.sqlite"
    bad.write_text("hello")
    at.text_input(key="prefs_db_name").set_value("notes.sqlite").run()
    assert at.session_state["chosen_db"] is None
    assert any("not a SQLite database" in e.value for e in at.error)
    assert bad.read_text() == "hello"


@pytest.fixture
def voted_db(tmp_path):
    db = tmp_path / "votes.sqlite"
    store = PreferenceStore(db)
    for choice, ma, mb in (
        [("a", "big", "small")] * 5
        + [("b", "big", "small")] * 2
        + [
            ("tie", "small", "big"),
            ("both-bad", "big", "small"),
            ("a", "small", "tiny"),
            ("b", "tiny", "big"),
            ("a", "tiny", "small"),
        ]
    ):
        store.add_vote("Q", "first", "second", choice, model_a=ma, model_b=mb)
    return db


def test_stats_show_pairs_win_rates_and_ratings(voted_db):
    at = app(stats_app, str(voted_db))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "Votes": "12",
        "A better": "7",
        "B better": "3",
        "Ties": "1",
        "Both bad": "1",
    }
    frames = {tuple(df.value.columns)[:3]: df.value for df in at.dataframe}
    pairs = frames[("model_1", "model_2", "n_votes")]
    big_small = pairs[(pairs.model_1 == "big") & (pairs.model_2 == "small")].iloc[0]
    assert (
        big_small.n_votes,
        big_small.wins_1,
        big_small.wins_2,
        big_small.ties,
        big_small.both_bad,
    ) == (9, 5, 2, 1, 1)
    models = frames[("model", "rating", "ci_low")]
    assert "ci_low" in models.columns and "win_rate" in models.columns
    assert set(models.model) == {"big", "tiny", "small"}
    assert list(models.rating) == sorted(models.rating, reverse=True)  # best first
    assert (models.ci_low <= models.rating).all() and (models.rating <= models.ci_high).all()
    assert len(at.get("vega_lite_chart")) == 1  # the ratings chart with its intervals


def test_stats_on_empty_database(tmp_path):
    at = app(stats_app, str(tmp_path / "empty.sqlite"))
    assert any("No votes yet" in i.value for i in at.info)


def test_export_saves_in_the_home_and_replaces_only_when_confirmed(voted_db, playground_home):
    at = app(stats_app, str(voted_db))
    assert not [t for t in at.text_input if t.key == "prefs_export_path"]  # no server paths
    out = playground_home / "exports" / "prefs.jsonl"
    at.radio(key="prefs_export_ties").set_value("label").run()
    at.text_input(key="prefs_export_name").set_value("prefs").run()
    at.button(key="prefs_export_jsonl").click().run()
    assert not at.exception
    assert any("10 preference pair(s) saved as prefs.jsonl" in s.value for s in at.success)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 12
    assert sorted({r["label"] for r in records}) == ["both-bad", "preferred", "tie"]

    # the same name again: refused until the replacement is confirmed
    at.radio(key="prefs_export_ties").set_value("drop").run()
    at.button(key="prefs_export_jsonl").click().run()
    assert any("exists already" in e.value for e in at.error)
    assert len(out.read_text().splitlines()) == 12
    at.checkbox(key="prefs_export_replace").check().run()
    at.button(key="prefs_export_jsonl").click().run()
    assert len(out.read_text().splitlines()) == 10

    at.text_input(key="prefs_export_dataset_name").set_value("ds").run()
    at.button(key="prefs_export_dataset").click().run()
    assert not at.exception
    from datasets import load_from_disk

    assert load_from_disk(str(playground_home / "exports" / "ds")).num_rows == 10

    for typed in ("../../etc/passwd", str(voted_db), "/tmp/x.jsonl"):
        at.text_input(key="prefs_export_name").set_value(typed).run()
        at.button(key="prefs_export_jsonl").click().run()
        assert any("plain name" in e.value for e in at.error), typed
    assert PreferenceStore(voted_db).count() == 12


def test_download_buttons_follow_the_ties_option(voted_db):
    at = app(stats_app, str(voted_db))
    assert len(at.get("download_button")) == 2  # separate: the pairs file and the ties file
    at.radio(key="prefs_export_ties").set_value("label").run()
    assert len(at.get("download_button")) == 1
