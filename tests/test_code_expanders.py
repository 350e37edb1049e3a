"""Every lab page shows "How it works in code": the source of the library's reference
functions, read from the functions themselves (so the code shown is the code tested)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from llm_playground.evaluation.overlap import bleu_simple, ngram_counts
from llm_playground.evaluation.perplexity import perplexity_simple
from llm_playground.finetuning.dpo import dpo_loss
from llm_playground.finetuning.lora import LoRALinear
from llm_playground.finetuning.preferences.ratings import bradley_terry_simple
from llm_playground.generation.decoding import decode_simple
from llm_playground.tokenization.bpe import train_simple
from llm_playground.training.engine import training_step
from llm_playground.training.model import explicit_attention
from llm_playground.training.optim import newton_schulz_reference
from llm_playground.ui.components import CODE_EXPANDER_LABEL, function_source

LABS = Path(__file__).resolve().parents[1] / "src/llm_playground/ui/labs"
SHOWN = {
    "tokenizer": [train_simple],
    "training": [explicit_attention, training_step, newton_schulz_reference],
    "generation": [decode_simple],
    "finetuner": [LoRALinear, dpo_loss, bradley_terry_simple],
    "evaluator": [perplexity_simple, bleu_simple, ngram_counts],
}


def test_the_component_shows_each_functions_source():
    def app():
        from llm_playground.evaluation.overlap import bleu_simple, ngram_counts
        from llm_playground.ui.components import code_expander

        code_expander("BLEU", [bleu_simple, ngram_counts], "sacrebleu does the same.")

    at = AppTest.from_function(app).run()
    assert not at.exception
    [expander] = at.expander
    assert expander.label == f"{CODE_EXPANDER_LABEL}: BLEU"
    assert [tab.label for tab in expander.tabs] == ["bleu_simple", "ngram_counts"]
    assert [code.value.strip() for code in expander.code] == [
        function_source(bleu_simple).strip(),
        function_source(ngram_counts).strip(),
    ]
    assert "sacrebleu does the same." in expander.markdown[0].value


@pytest.mark.parametrize("page", sorted(SHOWN))
def test_each_lab_page_shows_its_references(page):
    at = AppTest.from_file(str(LABS / f"{page}.py"), default_timeout=180).run()
    assert not at.exception
    expanders = [e for e in at.expander if e.label.startswith(CODE_EXPANDER_LABEL)]
    assert expanders, f"the {page} page has no '{CODE_EXPANDER_LABEL}' expander"
    shown = [code.value.strip() for expander in expanders for code in expander.code]
    notes = " ".join(m.value for expander in expanders for m in expander.markdown)
    for function in SHOWN[page]:
        assert function_source(function).strip() in shown, function.__name__
        assert function.__name__ in " ".join(e.label for e in expanders) + " ".join(shown)
    assert "fast" in notes or "same" in notes  # the note on what the fast path does
