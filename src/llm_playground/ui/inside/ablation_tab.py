"""Lab 6, Ablation: knock out heads, a layer's attention or its MLP, and compare the
next-token distribution and the loss on the prompt before and after."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.generation.decoding import shown_token
from llm_playground.inspection.runs import Ablated, ablate_run
from llm_playground.ui.components import current_job, job_panel, start_job
from llm_playground.ui.inside.common import ABLATE_SLOT, token_labels

INTRO = (
    "Knock parts of the model out and see what it can no longer do: one head (its output "
    "set to zero, the other heads of the layer still work), a layer's whole attention, or "
    "a layer's MLP. The loss is the model's mean surprise at each next token of your prompt; "
    "if it jumps, the part mattered. On the example 'A passage, repeated', knock out the "
    "top induction head from Head roles, then the top three together, then as many heads "
    "of layer 0 for comparison."
)


def _choices(n_layers: int, n_heads: int) -> tuple[list[str], list[str]]:
    heads = [f"{layer}.{head}" for layer in range(n_layers) for head in range(n_heads)]
    layers = [f"{layer}.{part}" for layer in range(n_layers) for part in ("attn", "mlp")]
    return heads, layers


def _describe(spec: str) -> str:
    layer, what = spec.split(".")
    if what == "attn":
        return f"layer {layer}'s attention"
    if what == "mlp":
        return f"layer {layer}'s MLP"
    return f"layer {layer}, head {what}"


def render(model, ids, result) -> None:
    st.markdown(INTRO)
    heads, layers = _choices(model.n_layers, model.n_heads)
    c1, c2 = st.columns(2)
    chosen = c1.multiselect(
        "Heads to knock out", heads, key="inside_ablate_heads", format_func=_describe
    )
    chosen += c2.multiselect(
        "Whole parts to knock out", layers, key="inside_ablate_layers", format_func=_describe
    )
    st.caption(
        "The same parts on the command line: `llm-playground inspect --ablate "
        + (" --ablate ".join(chosen) if chosen else "3.2")
        + "` (layer.head, layer.attn, layer.mlp; counting from 0)."
    )
    job = current_job(ABLATE_SLOT)
    busy = job is not None and job.running
    if st.button(
        "Knock them out", key="inside_ablate_run", disabled=not chosen or ids is None or busy
    ):
        start_job(
            ABLATE_SLOT,
            f"ablate {', '.join(chosen)}",
            ablate_run(model, ids, chosen),
            heavy=False,
            params={"label": model.label},
        )
        st.rerun()
    job_panel(ABLATE_SLOT)
    job = current_job(ABLATE_SLOT)
    if job is None or job.running:
        return
    ablated = next((e for e in reversed(job.snapshot()) if isinstance(e, Ablated)), None)
    if ablated is not None:
        _show(ablated, job.params.get("label", ""))


def _show(ablated: Ablated, label: str) -> None:
    result = ablated.result
    st.markdown(f"**{label}** without " + "; ".join(_describe(s) for s in ablated.specs))
    if result.loss is not None and result.base_loss is not None:
        m1, m2 = st.columns(2)
        m1.metric("Loss on the prompt, intact", f"{result.base_loss:.4f}")
        m2.metric(
            "Loss with the parts knocked out",
            f"{result.loss:.4f}",
            delta=f"{result.loss - result.base_loss:+.4f}",
            delta_color="inverse",
        )
    T = result.n_tokens
    labels = token_labels(result.tokens)
    position = st.select_slider(
        "Next token after",
        options=list(range(T)),
        value=T - 1,
        key="inside_ablate_position",
        format_func=lambda i: labels[i],
    )
    intact = zip(result.base_top_tokens[position], result.base_top_probs[position], strict=True)
    knocked = zip(result.lens_tokens[-1][position], result.lens_probs[-1, position], strict=True)
    rows = [
        {"model": name, "token": shown_token(text), "probability": float(p)}
        for name, pairs in (("intact", intact), ("knocked out", knocked))
        for text, p in pairs
    ]
    chart = (
        alt.Chart(pd.DataFrame(rows))
        .mark_bar()
        .encode(
            x=alt.X("probability:Q"),
            y=alt.Y("token:N", sort="-x", title=None),
            color=alt.Color("model:N", legend=alt.Legend(orient="bottom")),
            yOffset="model:N",
            tooltip=["model", "token", alt.Tooltip("probability:Q", format=".4f")],
        )
        .properties(height=max(200, 30 * len({r["token"] for r in rows})))
    )
    st.altair_chart(chart, width="stretch", key="inside_ablate_chart")
