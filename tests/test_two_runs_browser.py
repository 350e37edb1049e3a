"""Two people who press "Start training" in the same second get a run folder each, and each
Save keeps that person's own model (the real app, two Chromium contexts)."""

from __future__ import annotations

import json
import re
import time

import pytest

PROGRESS = re.compile(r"step [\d,]+ of 3,000")
ENDED = re.compile(r"(finished|stopped) after [\d,]+ steps")


@pytest.fixture(scope="module")
def home_and_url(tmp_path_factory):
    """The real app with a home of its own, and room for two runs at once."""
    from conftest import running_app

    home = tmp_path_factory.mktemp("two-runs-home")
    with running_app(home, {"LLM_PLAYGROUND_MAX_JOBS": "2"}) as url:
        yield home, url


def _open_bigram(tab, url: str, seed: int) -> None:
    """The training page with the bigram preset (the cheapest run) and ``seed``."""
    tab.set_default_timeout(60_000)
    tab.goto(url + "/training")
    tab.get_by_text("One batch, as the model sees it").wait_for(timeout=120_000)
    tab.get_by_test_id("stSelectbox").first.click()
    tab.get_by_role("option", name="bigram").click()
    tab.get_by_text("4,225").first.wait_for()
    tab.get_by_text("Hardware, repeatability and a target").click()
    box = tab.get_by_role("spinbutton", name="Seed")
    box.fill(str(seed))
    box.press("Enter")
    tab.wait_for_timeout(1500)  # the rerun that takes the seed in


def _start_of_a_second() -> None:
    """Wait for the start of the next wall-clock second, so that both clicks share it."""
    time.sleep(1.05 - time.time() % 1.0)


def _metric_steps(folder) -> list[int]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


@pytest.mark.browser
@pytest.mark.slow
def test_two_runs_started_in_the_same_second_keep_their_own_folders(home_and_url, browser):
    home, url = home_and_url
    people = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    seeds = {"alice": 11, "bob": 22}
    try:
        tabs = dict(zip(seeds, (context.new_page() for context in people), strict=True))
        for name, tab in tabs.items():
            _open_bigram(tab, url, seeds[name])
        _start_of_a_second()
        for tab in tabs.values():  # both clicks within the same second
            tab.get_by_role("button", name="Start training").click()
        for tab in tabs.values():  # both run at once (about a minute on two cores)
            tab.get_by_text(PROGRESS).first.wait_for(timeout=120_000)
        for name, tab in tabs.items():
            tab.get_by_text(ENDED).first.wait_for(timeout=600_000)
            tab.get_by_role("textbox", name="Name", exact=True).fill(name)
            tab.get_by_role("button", name="Save").click()
            tab.get_by_text(re.compile("Saved as")).wait_for(timeout=60_000)

        # two scratch folders, one per run, each with one run's metrics in order
        scratch = sorted((home / "runs" / ".scratch").iterdir())
        assert len(scratch) == 2, scratch
        for folder in scratch:
            steps = _metric_steps(folder)
            assert steps and steps == sorted(set(steps)), f"{folder}: {steps}"
        # each Save kept that person's own model: its settings, its weights, its metrics
        saved = {name: home / "runs" / name for name in seeds}
        for name, folder in saved.items():
            meta = json.loads((folder / "config.json").read_text())
            assert meta["train"]["seed"] == seeds[name]
            origin = [s for s in scratch if json.loads((s / "config.json").read_text()) == meta]
            assert len(origin) == 1
            weights = (folder / "model.safetensors").read_bytes()
            assert weights == (origin[0] / "model.safetensors").read_bytes()
        alice, bob = (saved[n] / "model.safetensors" for n in seeds)
        assert alice.read_bytes() != bob.read_bytes()
    except Exception:
        from conftest import ARTIFACTS

        ARTIFACTS.mkdir(exist_ok=True)
        for n, context in enumerate(people):
            context.pages[0].screenshot(path=str(ARTIFACTS / f"two-runs-{n}.png"), full_page=True)
        raise
    finally:
        for context in people:
            context.close()
