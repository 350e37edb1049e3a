"""Lab 6 · Inside the model: attention heads, the logit lens, head roles, the training
timeline, ablation and embeddings, on every playground model. Layout and state only: the
numbers come from llm_playground.inspection; each tab is a module of ui/inside."""

from __future__ import annotations

import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.inspection import MAX_PROMPT_TOKENS, encode_prompt
from llm_playground.inspection.heads import induction_scores
from llm_playground.inspection.lens import lens_logits
from llm_playground.inspection.runs import Inspected, inspect_run
from llm_playground.training.model import explicit_attention
from llm_playground.ui.components import (
    code_expander,
    current_job,
    job_panel,
    machine_load_caption,
    model_picker,
    page_header,
    show_user_error,
    start_job,
)
from llm_playground.ui.inside import (
    ablation_tab,
    attention_tab,
    embeddings_tab,
    heads_tab,
    lens_tab,
    timeline_tab,
)
from llm_playground.ui.inside.common import FINAL, SLOT, inspected_model, run_snapshots

EXAMPLES = {
    "A sentence, repeated": "The cat sat on the mat. The cat sat on the mat.",
    "A fact to complete": "The Eiffel Tower is in the city of",
    "Shakespeare": "ROMEO:\nBut soft, what light through yonder window breaks?",
    "Names to copy": "When Mary and John went to the shop, John gave a drink to",
    "A passage, repeated (for ablation)": " ".join(
        [
            "The old lighthouse stood on the rocky cliff above the harbour, and every night its "
            "keeper climbed the spiral stairs to light the lamp."
        ]
        * 2
    ),
}

page_header(
    "🔬 Lab 6 · Inside the model",
    "Every other lab shows what goes into a model and what comes out. This one opens it: "
    "what each attention head looks at, what each layer would predict if it were the last "
    "(the logit lens), which heads copy patterns (induction heads), what breaks when a head "
    "is knocked out, and how the token embeddings are arranged. Pick one of your Lab 2 runs "
    "and watch these form while it trained, or look inside SmolLM2 and Gemma 3.",
)

state = st.session_state
state.setdefault("inside_prompt", EXAMPLES["A sentence, repeated"])


def _take_hand_over() -> None:
    """Lab 3's step-by-step view links here with ?model=...&text=...&chat=0|1: use them once."""
    params = st.query_params
    if "text" not in params and "model" not in params:
        return
    if params.get("model"):
        state["inside_model"] = params["model"]
    if params.get("text"):
        state["inside_prompt"] = params["text"]
    state["inside_chat"] = params.get("chat") == "1"
    st.query_params.clear()


def _load_example() -> None:
    state["inside_prompt"] = EXAMPLES[state["inside_example"]]


def _step_choice(name: str) -> int | None:
    """For a Lab 2 run with snapshots: a slider over its steps, the final model last."""
    steps = run_snapshots(name)
    if not steps:
        return None
    options = [*steps, FINAL]
    if state.get("inside_step") not in options:
        state["inside_step"] = FINAL
    choice = st.select_slider(
        "Training step",
        options=options,
        key="inside_step",
        format_func=lambda s: "final model" if s == FINAL else f"step {s:,}",
        help=f"This run kept {len(steps)} snapshots while it trained: look inside the model "
        "as it was at any of them, or at the end.",
    )
    return None if choice == FINAL else int(choice)


def _prompt_ids(model) -> list[int] | None:
    """The prompt's token ids as the model sees it, or None with the reason shown."""
    chat_possible = model.chat
    use_chat = st.toggle(
        "Use the chat template",
        key="inside_chat",
        disabled=not chat_possible,
        help="Off (the default here): the raw text, which is easiest to read in the maps. "
        "On: the prompt wrapped in the chat model's template, as Lab 3 sends it.",
    )
    try:
        ids = encode_prompt(model, state["inside_prompt"], use_chat and chat_possible)
        if len(ids) > model.context_length:
            raise UserError(
                f"the prompt is {len(ids)} tokens, more than this model's context of "
                f"{model.context_length}: shorten it"
            )
    except UserError as exc:
        show_user_error(exc)
        return None
    st.caption(f"{len(ids)} tokens (at most {MAX_PROMPT_TOKENS}).")
    return ids


def settings():
    """Model, step and prompt; returns the loaded model and the prompt's ids (or Nones)."""
    _take_hand_over()
    left, right = st.columns([2, 3], gap="large")
    with left:
        name = model_picker(
            "Model", key="inside_model", kinds=("offline", "checkpoint", "adapter", "hub")
        )
        if not name:
            return None, None, None
        step = _step_choice(name)
        try:
            model = inspected_model(name, step)
        except UserError as exc:
            show_user_error(exc)
            return name, None, None
        st.caption(
            f"{model.n_layers} layers × {model.n_heads} heads"
            + (
                f" ({model.n_kv_heads} key/value heads shared by them)"
                if model.n_kv_heads != model.n_heads
                else ""
            )
            + f" · {model.d_model} dimensions · vocabulary {model.vocab_size:,}. "
            "Layers and heads count from 0, as in `llm-playground inspect --ablate 3.2`."
        )
    with right:
        st.selectbox(
            "Example prompt",
            list(EXAMPLES),
            index=None,
            placeholder="Pick an example, or type your own below",
            key="inside_example",
            on_change=_load_example,
        )
        st.text_area(
            "Prompt", key="inside_prompt", height=90, help=f"At most {MAX_PROMPT_TOKENS} tokens."
        )
        ids = _prompt_ids(model)
    return name, model, ids


def run_button(name: str, model, ids) -> None:
    job = current_job(SLOT)
    busy = job is not None and job.running
    if st.button("🔬 Look inside", key="inside_run", type="primary", disabled=ids is None or busy):
        start_job(
            SLOT,
            f"inspect {model.label}",
            inspect_run(model, ids),
            heavy=False,
            params={"model": name, "step": model.step, "label": model.label},
        )
        st.rerun()
    machine_load_caption()


def _of_this_model(job, name: str, model) -> bool:
    return (job.params.get("model"), job.params.get("step")) == (name, model.step)


def finished_result(name: str, model) -> Inspected | None:
    """The last inspection of this browser, with a note when it was of another model."""
    job = current_job(SLOT)
    if job is None or job.running:
        return None
    result = next((e for e in reversed(job.snapshot()) if isinstance(e, Inspected)), None)
    if result is not None and not _of_this_model(job, name, model):
        st.warning(
            f"Showing {job.params.get('label')}: press **Look inside** to see {model.label}."
        )
    return result


def how_it_works() -> None:
    code_expander(
        "attention, the logit lens and the induction score",
        [explicit_attention, lens_logits, induction_scores],
        "These are the functions the grids come from. The playground's GPT trains with "
        "PyTorch's fused attention kernel, which never writes the weights down; for this lab "
        "it runs the written-out path above instead (tested equal to the fused one). "
        "Hugging Face models run their own eager attention, which returns the weights.",
    )


name, model, ids = settings()
if model is not None:
    run_button(name, model, ids)
    job_panel(SLOT)
    result = finished_result(name, model)
    if result is None:
        st.info("Press **Look inside** to run the prompt through the model once.")
    elif _of_this_model(current_job(SLOT), name, model):
        # the induction probe reads many more positions: it starts once the prompt's grids are in
        heads_tab.ensure_probe(name, model)
    tabs = st.tabs(
        ["Attention", "Logit lens", "Head roles", "Training timeline", "Ablation", "Embeddings"],
        key="inside_tabs",  # the open tab stays open when a note above it comes or goes
    )
    with tabs[0]:
        attention_tab.render(result)
    with tabs[1]:
        lens_tab.render(result)
    with tabs[2]:
        heads_tab.render(result, name, model)
    with tabs[3]:
        timeline_tab.render(name, model, ids)
    with tabs[4]:
        ablation_tab.render(model, ids, result)
    with tabs[5]:
        embeddings_tab.render(model)
    how_it_works()
