"""Races between training recipes, and the records table they leave in the playground database.

A *race* trains two to four recipes one after another on the same data with the same
seed, and reports each one's validation curve against wall-clock seconds and steps.
:func:`race_recipes` lists the recipes a learner can pick (baby-gpt, the speedrun, and
the speedrun without one trick), :func:`run_race` is the race as one generator of events
(each recipe's training events, tagged with the recipe), and every finished recipe is
recorded in the ``training_records`` table (recipe, machine, time to target, final loss,
date) through :mod:`llm_playground.core.db`. :func:`trick_table` turns one race with the
speedrun and its ablations into "what each trick bought".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from llm_playground.core.db import Database, TableSet, utc_now
from llm_playground.core.errors import UserError
from llm_playground.core.events import Error, RunEvent
from llm_playground.core.hardware import machine
from llm_playground.training.config import PRESETS, TRICKS, TrainConfig, without_trick
from llm_playground.training.events import RaceDone, RecipeDone, RecipeEval, RecipeStarted

RECORDS = TableSet(
    name="training_records",
    version=1,
    schema="""
    CREATE TABLE IF NOT EXISTS training_records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        recipe TEXT NOT NULL,
        cpu TEXT NOT NULL,
        cores INTEGER NOT NULL,
        device TEXT NOT NULL,
        target REAL,
        time_to_target_s REAL,
        steps INTEGER NOT NULL,
        final_val_loss REAL,
        seconds REAL NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS training_records_recipe ON training_records(recipe)
    """,
)

#: The validation loss nanoGPT's baby config reaches after 2000 steps ("1.88").
DEFAULT_TARGET = 1.88
BASELINE = "baby-gpt"
SPEEDRUN = "speedrun"


def race_recipes() -> dict[str, TrainConfig]:
    """The recipes a race can include, by name: the two presets and one ablation per trick."""
    recipes = {
        BASELINE: PRESETS[BASELINE].replace(label=BASELINE),
        SPEEDRUN: PRESETS[SPEEDRUN].replace(label=SPEEDRUN),
    }
    for trick in TRICKS:
        name = f"{SPEEDRUN} - {trick}"
        recipes[name] = without_trick(PRESETS[SPEEDRUN], trick).replace(label=name)
    return recipes


def recipe_config(name: str, **settings: Any) -> TrainConfig:
    """One recipe of :func:`race_recipes`, with race-wide settings (steps, seed, ...) applied."""
    recipes = race_recipes()
    if name not in recipes:
        raise UserError(f"unknown recipe {name!r}; choose one of {', '.join(recipes)}")
    settings = {k: v for k, v in settings.items() if v is not None}
    return recipes[name].replace(**settings)


# --- the race as events ----------------------------------------------------------------------


def _run_recipe(name, config, stop, corpus, target):
    """Train one recipe, passing its events on (each evaluation as a ``RecipeEval``).

    Returns (failed, result): failed when the run yielded an ``Error``; result is the
    ``RecipeDone`` when the run finished (or was stopped), else None."""
    from llm_playground.training.engine import run_training
    from llm_playground.training.events import TrainDone, TrainEval

    started = time.perf_counter()
    reached: float | None = None  # seconds to the first evaluation at or below the target
    done = None
    for event in run_training(config, stop, corpus):
        if isinstance(event, Error):
            yield event
            return True, None
        if isinstance(event, TrainEval):
            if target is not None and reached is None and event.val_loss <= target:
                reached = event.elapsed_s
            yield RecipeEval(
                step=event.step,
                recipe=name,
                train_loss=event.train_loss,
                val_loss=event.val_loss,
                elapsed_s=event.elapsed_s,
            )
        elif isinstance(event, TrainDone):
            done = event
        else:
            yield event
    if done is None:
        return False, None
    return False, RecipeDone(
        recipe=name,
        steps=done.step,
        final_val_loss=done.val_loss,
        seconds=time.perf_counter() - started,
        time_to_target_s=reached,
        stopped=done.stopped,
    )


@dataclass(frozen=True)
class RaceSettings:
    """What every recipe of a race shares: the step budget, how often and how long it is
    evaluated, the loss that counts as the target, the seed and the device."""

    max_iters: int = 500
    eval_interval: int = 50
    eval_iters: int = 10
    target: float | None = DEFAULT_TARGET
    seed: int = 1337
    device: str = "auto"


def run_race(
    recipes: list[str],
    stop: threading.Event | None = None,
    *,
    settings: RaceSettings | None = None,
    database: Database | None = None,
    corpus=None,
) -> Iterator[RunEvent]:
    """Train each recipe in turn (same data, same seed, same budget) and record it.

    Yields the engine's events of every recipe between a ``RecipeStarted`` and a
    ``RecipeDone``, a ``RecipeEval`` per evaluation, and finally ``RaceDone``. A target
    does not end a recipe early here: the race shows whole curves.
    """
    stop = stop or threading.Event()
    race = settings or RaceSettings()
    if not 1 <= len(recipes) <= 4:
        raise UserError("a race takes one to four recipes")
    shared = {k: v for k, v in asdict(race).items() if k != "target"}
    configs = [recipe_config(name, **shared, sample_tokens=0) for name in recipes]
    for index, (name, config) in enumerate(zip(recipes, configs, strict=True)):
        if stop.is_set():
            break
        yield RecipeStarted(
            label=name, total=race.max_iters, recipe=name, index=index, count=len(recipes)
        )
        failed, result = yield from _run_recipe(name, config, stop, corpus, race.target)
        if failed:  # its Error has been passed on: the race ends here
            return
        if result is None:
            continue
        if not result.stopped:
            record(result, race.target, race.device, database)
        yield result
    yield RaceDone(recipes=tuple(recipes), stopped=stop.is_set())


# --- the records table -----------------------------------------------------------------------


def record(
    result: RecipeDone,
    target: float | None,
    device: str = "auto",
    database: Database | None = None,
) -> None:
    """Add a finished recipe to ``training_records``, with the machine it ran on."""
    db = database or Database()
    db.ensure(RECORDS)
    here = machine(device)
    row = (
        result.recipe,
        here.cpu,
        here.cores,
        here.device,
        target,
        result.time_to_target_s,
        result.steps,
        result.final_val_loss,
        result.seconds,
        utc_now(),
    )
    db.write(
        lambda conn: conn.execute(
            "INSERT INTO training_records (recipe, cpu, cores, device, target, "
            "time_to_target_s, steps, final_val_loss, seconds, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        ),
        refused="the training records",
    )


def records(database: Database | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The records, fastest time to target first (then lowest final loss)."""
    db = database or Database()
    db.ensure(RECORDS)
    rows = db.read(
        "SELECT recipe, cpu, cores, device, target, time_to_target_s, steps, final_val_loss, "
        "seconds, created_at FROM training_records "
        "ORDER BY time_to_target_s IS NULL, time_to_target_s, final_val_loss LIMIT ?",
        (limit,),
    )
    names = (
        "recipe",
        "cpu",
        "cores",
        "device",
        "target",
        "time_to_target_s",
        "steps",
        "final_val_loss",
        "seconds",
        "date",
    )
    return [dict(zip(names, row, strict=True)) for row in rows]


def trick_table(results: dict[str, RecipeDone]) -> list[dict[str, Any]]:
    """What each trick bought: the speedrun's final loss against the speedrun without it.

    ``results`` maps recipe names to their ``RecipeDone``; rows appear for every trick
    whose ablation ran alongside the full speedrun.
    """
    full = results.get(SPEEDRUN)
    if full is None or full.final_val_loss is None:
        return []
    rows = []
    for trick, entry in TRICKS.items():
        ablation = results.get(f"{SPEEDRUN} - {trick}")
        if ablation is None or ablation.final_val_loss is None:
            continue
        rows.append(
            {
                "trick": entry.title,
                "val loss without it": round(ablation.final_val_loss, 4),
                "val loss with it": round(full.final_val_loss, 4),
                "bought (loss)": round(ablation.final_val_loss - full.final_val_loss, 4),
                "why": entry.why,
                "source": entry.source,
            }
        )
    return rows
