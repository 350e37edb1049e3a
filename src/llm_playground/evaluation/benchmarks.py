"""What the model cards publish, and the few ideas needed to read a benchmark number.

The figures are the models' own cards (as checked in the project's references): each with
the shots and the evaluation tool, because the same benchmark reported with another
number of examples, answer format or normalisation differs by points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Published:
    model: str  # the card's model
    playground_model: str  # the registry model it corresponds to here
    benchmark: str
    harness_task: str  # the lm-evaluation-harness task of the same benchmark
    shots: int
    value: float  # percent
    source: str
    note: str = ""


_SMOL = "SmolLM2-135M model card (lighteval; MMLU in cloze form)"
_GEMMA = "Gemma 3 270M model card (pre-trained model)"
_BASE = "figures of the base model; the playground runs the instruction-tuned one"

PUBLISHED: tuple[Published, ...] = (
    Published("SmolLM2-135M", "smollm2-135m-instruct", "HellaSwag", "hellaswag", 0, 42.1, _SMOL, _BASE),
    Published("SmolLM2-135M", "smollm2-135m-instruct", "ARC (average)", "arc_easy", 0, 43.9, _SMOL, _BASE),
    Published("SmolLM2-135M", "smollm2-135m-instruct", "PIQA", "piqa", 0, 68.4, _SMOL, _BASE),
    Published("SmolLM2-135M", "smollm2-135m-instruct", "WinoGrande", "winogrande", 0, 51.3, _SMOL, _BASE),
    Published("Gemma 3 270M PT", "gemma3-270m", "HellaSwag", "hellaswag", 10, 40.9, _GEMMA),
    Published("Gemma 3 270M PT", "gemma3-270m", "PIQA", "piqa", 0, 67.7, _GEMMA),
    Published("Gemma 3 270M PT", "gemma3-270m", "WinoGrande", "winogrande", 0, 52.0, _GEMMA),
)  # fmt: skip


def published_rows(model: str | None = None) -> list[dict]:
    """The published figures (for one registry model, or all), as table rows."""
    return [asdict(p) for p in PUBLISHED if model is None or p.playground_model == model]


READING_NOTES = {
    "Shots": (
        "*k*-shot means *k* solved examples are put before each question. More shots help a "
        "small model find the answer format, so a 10-shot HellaSwag and a 0-shot one are "
        "different numbers: compare only at the same shots."
    ),
    "acc vs acc_norm": (
        "Multiple choice is scored by the log-probability the model gives each answer. "
        "`acc` picks the highest total; longer answers collect more negative terms, so it "
        "favours short ones. `acc_norm` divides by the answer's length in characters first. "
        "Cards often report one or the other without saying which."
    ),
    "Cloze vs multiple-choice": (
        "In the *cloze* form the model sees only the question and scores each answer's own "
        "text (HellaSwag, PIQA in the harness); in the *multiple-choice* form it sees the "
        "lettered options and scores the letter (MMLU's usual form). Small models are near "
        "chance on letters but not on cloze, which is why SmolLM2's card reports cloze MMLU."
    ),
}
