"""Votes out as training data, and preference pairs back in.

Export writes TRL's standard preference format, one ``{"prompt", "chosen", "rejected"}``
object a line for each A/B vote. Ties and "both bad" votes carry no preference, so they
are handled as the user asks: ``drop`` (counted in the result, not written), ``separate``
(written to a sibling file ``NAME.ties.jsonl`` as ``{"prompt", "response_a",
"response_b", "label"}``) or ``label`` (kept in the main file; every line then has a
``label`` field: ``"preferred"`` when ``chosen`` was really preferred to ``rejected``, and
``"tie"`` or ``"both-bad"`` when it was not — then ``chosen`` is simply the response shown
as A and ``rejected`` the one shown as B).

Files are written to temporary names and renamed into place; an existing file or
dataset is replaced only with ``force``.

:func:`read_preference_pairs` is the one reader of such files (DPO's input): a line is a
preference when it has no ``label`` or the label ``preferred``; lines labelled ``tie`` or
``both-bad`` are skipped (or kept with ``keep_labels``); any other label is an error
naming the line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_playground.core.errors import UserError
from llm_playground.finetuning.outputs import (
    OutputExists,
    check_new_file,
    replace_dir,
    temp_dir_beside,
    write_text_files,
)
from llm_playground.finetuning.preferences.votes import Vote, VoteSource

log = logging.getLogger(__name__)

TIES_MODES = ("drop", "separate", "label")
#: The folder of the playground home where the app saves exports.
EXPORTS_FOLDER = "exports"
#: Labels of lines that carry no preference.
NO_PREFERENCE = ("tie", "both-bad")
PAIR_FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote. ``n_dropped`` counts ties and both-bad votes left out."""

    path: Path
    ties: str
    n_pairs: int
    n_ties: int
    n_both_bad: int
    n_dropped: int
    ties_path: Path | None = None

    def summary(self) -> str:
        text = f"{self.n_pairs} preference pair(s) -> {self.path}"
        extra = self.n_ties + self.n_both_bad
        if self.ties == "drop" and extra:
            text += f"; dropped {self.n_ties} tie(s) and {self.n_both_bad} both-bad vote(s)"
        elif self.ties == "separate":
            text += (
                f"; {self.n_ties} tie(s) and {self.n_both_bad} both-bad vote(s) -> {self.ties_path}"
            )
        elif self.ties == "label" and extra:
            text += (
                f" plus {self.n_ties} tie(s) and {self.n_both_bad} both-bad vote(s) "
                "labelled in the same file"
            )
        return text


def sibling_ties_path(out_path: str | os.PathLike) -> Path:
    """Where ``ties="separate"`` writes ties: ``prefs.jsonl`` -> ``prefs.ties.jsonl``."""
    path = Path(out_path)
    suffix = path.suffix or ".jsonl"
    return path.with_name(f"{path.stem if path.suffix else path.name}.ties{suffix}")


def check_ties(ties: str) -> str:
    if ties not in TIES_MODES:
        raise UserError(f"ties must be one of {', '.join(TIES_MODES)}, not {ties!r}")
    return ties


# --- records --------------------------------------------------------------------------------


def preference_records(votes: Iterable[Vote], ties: str) -> tuple[list[dict], list[dict], dict]:
    """The export as Python records: (main lines, ties-file lines, counts)."""
    check_ties(ties)
    main: list[dict] = []
    side: list[dict] = []
    counts = {"pairs": 0, "tie": 0, "both-bad": 0}
    for v in votes:
        if v.choice in ("a", "b"):
            counts["pairs"] += 1
            record = {"prompt": v.prompt, "chosen": v.chosen, "rejected": v.rejected}
            if ties == "label":
                record["label"] = "preferred"
            main.append(record)
            continue
        counts[v.choice] += 1
        if ties == "label":
            main.append(
                {
                    "prompt": v.prompt,
                    "chosen": v.response_a,
                    "rejected": v.response_b,
                    "label": v.choice,
                }
            )
        elif ties == "separate":
            side.append(
                {
                    "prompt": v.prompt,
                    "response_a": v.response_a,
                    "response_b": v.response_b,
                    "label": v.choice,
                }
            )
    return main, side, counts


def to_jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def jsonl_text(store: VoteSource, ties: str = "separate") -> tuple[str, str | None]:
    """The export as text, for a download: (main file, ties file or None)."""
    main, side, _ = preference_records(store.list_votes(), ties)
    return to_jsonl(main), (to_jsonl(side) if ties == "separate" else None)


def _result(out: Path, ties: str, counts: dict, ties_path: Path | None) -> ExportResult:
    return ExportResult(
        path=out,
        ties=ties,
        n_pairs=counts["pairs"],
        n_ties=counts["tie"],
        n_both_bad=counts["both-bad"],
        n_dropped=(counts["tie"] + counts["both-bad"]) if ties == "drop" else 0,
        ties_path=ties_path,
    )


# --- files ----------------------------------------------------------------------------------


def _protected(store: VoteSource) -> set[Path]:
    db = store.path.resolve()
    return {db} | {db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal")}


def check_export_path(store: VoteSource, out_path: str | os.PathLike, force: bool) -> Path:
    """A file the export may write: not a folder, not the database, new unless ``force``."""
    if str(out_path).strip() == "":
        raise UserError("the output path is empty")
    out = Path(out_path).expanduser()
    if out.is_dir():
        raise UserError(f"{out} is a folder; give a file name such as {out / 'prefs.jsonl'}")
    if out.resolve() in _protected(store):
        raise UserError(f"{out} is the vote database itself; choose another output file")
    return check_new_file(out, force, "the export file")


def export_jsonl(
    store: VoteSource, out_path: str | os.PathLike, ties: str = "separate", *, force=False
) -> ExportResult:
    """Write the TRL preference file (and the ties file), atomically."""
    check_ties(ties)
    out = check_export_path(store, out_path, force)
    ties_path = sibling_ties_path(out) if ties == "separate" else None
    if ties_path is not None:
        check_export_path(store, ties_path, force)
    main, side, counts = preference_records(store.list_votes(), ties)
    if not main and not side:
        extra = counts["tie"] + counts["both-bad"]
        raise UserError(
            "there are no votes to export"
            if not extra
            else f"there are no A/B votes to export ({extra} tie/both-bad vote(s) "
            "dropped); keep them separate or labelled instead"
        )
    files = [(out, main)] + ([(ties_path, side)] if ties_path is not None else [])
    write_text_files([(p, to_jsonl(records)) for p, records in files])
    result = _result(out, ties, counts, ties_path)
    log.info("exported %s", result.summary())
    return result


def check_dataset_dir(store: VoteSource, out_dir: str | os.PathLike, force: bool) -> Path:
    """A folder the dataset may be saved to: new or empty, or (with ``force``) a dataset."""
    if str(out_dir).strip() == "":
        raise UserError("the output folder is empty")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; give a folder for the dataset")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "dataset_info.json").exists():
            raise UserError(
                f"{out} is a folder with other files in it; choose an empty or new folder"
            )
        if not force:
            raise OutputExists(out, "the dataset folder")
    db = store.path.resolve()
    if db.parent == out.resolve() or out.resolve() in db.parents:
        raise UserError(f"{out} holds the vote database; choose another folder")
    return out


def export_dataset(
    store: VoteSource, out_dir: str | os.PathLike, ties: str = "drop", *, force=False
) -> ExportResult:
    """Save the A/B votes as a Hugging Face ``datasets`` Dataset (``save_to_disk``) with
    string columns ``prompt``, ``chosen``, ``rejected`` (and ``label`` when
    ``ties="label"``; ``"separate"`` saves the ties to the sibling folder ``DIR.ties``).
    ``datasets.load_from_disk(out_dir)`` reads it back."""
    check_ties(ties)
    out = check_dataset_dir(store, out_dir, force)
    ties_dir = out.with_name(out.name + ".ties") if ties == "separate" else None
    if ties_dir is not None:
        check_dataset_dir(store, ties_dir, force)
    main, side, counts = preference_records(store.list_votes(), ties)
    if not main and not side:
        raise UserError("there are no votes to export")
    main_columns = list(PAIR_FIELDS) + (["label"] if ties == "label" else [])
    _save_dataset(out, main, main_columns)
    if ties_dir is not None:
        _save_dataset(ties_dir, side, ["prompt", "response_a", "response_b", "label"])
    return _result(out, ties, counts, ties_dir)


def _save_dataset(out: Path, records: list[dict], columns: list[str]) -> None:
    """``save_to_disk`` into a temporary folder (no progress bar), then rename into place."""
    import shutil

    from datasets import Dataset, Features, Value
    from datasets.utils import logging as ds_logging

    features = Features({c: Value("string") for c in columns})
    dataset = Dataset.from_dict({c: [r[c] for r in records] for c in columns}, features=features)
    tmp = temp_dir_beside(out)
    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        dataset.save_to_disk(str(tmp))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()
    replace_dir(tmp, out)


# --- reading pairs back ---------------------------------------------------------------------


def _pairs(rows: list[tuple[int, dict[str, Any]]], source: str, keep_labels: bool) -> list[dict]:
    out = []
    for number, row in rows:
        label = row.get("label")
        if label in (None, "", "preferred"):
            pass
        elif label in NO_PREFERENCE:
            if not keep_labels:
                continue
        else:
            raise UserError(
                f"{source} line {number}: unknown label {label!r} "
                "(use preferred, tie or both-bad, or leave it out)"
            )
        record = {k: row[k] for k in PAIR_FIELDS}
        if keep_labels and label:
            record["label"] = label
        out.append(record)
    if not out:
        raise UserError(
            f"{source} holds no A/B preference pairs (ties and 'both bad' "
            "votes carry no preference)"
        )
    return out


def parse_preference_pairs(text: str, source: str, *, keep_labels: bool = False) -> list[dict]:
    """Preference pairs from JSONL text (an upload); ``source`` names it in messages."""
    from llm_playground.core.jsonl import parse_jsonl

    rows = parse_jsonl(text, source, text_fields=PAIR_FIELDS)
    return _pairs(rows, source, keep_labels)


def read_preference_pairs(path: str | os.PathLike, *, keep_labels: bool = False) -> list[dict]:
    """Read a preference JSONL file (the DPO input): ``prompt``, ``chosen``, ``rejected``
    strings on every line; a malformed line raises a UserError with its line number."""
    from llm_playground.core.jsonl import read_jsonl

    path = Path(path)
    rows = read_jsonl(path, "preferences file", text_fields=PAIR_FIELDS)
    return _pairs(rows, path.name, keep_labels)


def is_preference_export(path: str | os.PathLike, limit: int = 50_000_000) -> bool:
    """True when ``path`` is a file this module could have written: JSONL whose every line
    is an object with either the pair fields or the ties-file fields (and nothing else)."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return False
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    allowed = ({*PAIR_FIELDS, "label"}, {"prompt", "response_a", "response_b", "label"})
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            return False
        if not isinstance(row, dict) or "prompt" not in row:
            return False
        if not any(set(row) <= fields and len(row) >= 3 for fields in allowed):
            return False
    return True


def saved_exports() -> list[Path]:
    """Preference files saved in the playground home's exports folder (ties files left out)."""
    from llm_playground.core.paths import get_paths

    folder = get_paths().home / EXPORTS_FOLDER
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob("*.jsonl") if p.is_file() and not p.name.endswith(".ties.jsonl")
    )
