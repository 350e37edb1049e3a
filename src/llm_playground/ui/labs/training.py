"""Lab 2 · Training ground: train a bigram model or a baby GPT live and watch it learn."""

from __future__ import annotations

import time

import altair as alt
import pandas as pd
import streamlit as st
import torch

from llm_playground.core.errors import UserError
from llm_playground.core.events import Error, Sample
from llm_playground.core.paths import get_paths
from llm_playground.training.checkpoints import list_runs, save_run_as
from llm_playground.training.config import PRESETS, preset
from llm_playground.training.corpus import decoded_batch, load_corpus
from llm_playground.training.engine import run_training
from llm_playground.training.events import TrainDone, TrainEval, TrainStarted, TrainStep
from llm_playground.training.model import build_model, summarize
from llm_playground.ui.components import esc, job_manager, page_header, show_user_error

KIND = "train"
BATCHES = "batches (smoothed)"
LRS = [1e-4, 2e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2]
EMBD = [16, 32, 48, 64, 96, 128, 192, 256, 384]
BLOCKS = [4, 8, 16, 32, 64, 128, 256]
FIELDS = (
    "lr",
    "max_iters",
    "n_embd",
    "n_layer",
    "n_head",
    "block_size",
    "batch_size",
    "dropout",
    "seed",
)


def _nearest(options: list, value):
    return min(options, key=lambda o: abs(o - value))


def _apply_preset() -> None:
    """Put the chosen preset's values into the sliders."""
    p = PRESETS[st.session_state["train_preset"]]
    ss = st.session_state
    ss["train_lr"] = _nearest(LRS, p.lr)
    ss["train_max_iters"] = min(p.max_iters, 5000)
    ss["train_n_embd"] = _nearest(EMBD, p.model.n_embd or 128)
    ss["train_n_layer"] = max(1, p.model.n_layer)
    ss["train_n_head"] = max(1, p.model.n_head)
    ss["train_block_size"] = _nearest(BLOCKS, p.model.block_size)
    ss["train_batch_size"] = p.batch_size
    ss["train_dropout"] = p.model.dropout
    ss["train_seed"] = p.seed


def _init_state() -> None:
    ss = st.session_state
    if "train_preset" not in ss:
        ss["train_preset"] = "baby-gpt"
        _apply_preset()
    ss.setdefault("train_tokenizer", "char")
    ss.setdefault("train_data", "")
    ss.setdefault("train_device", "auto")
    ss.setdefault("train_dtype", "auto")
    ss.setdefault("train_hidden", [])


def _tokenizer_choices() -> list[str]:
    try:
        from llm_playground.tokenization.tokenizer import saved_tokenizers

        saved = saved_tokenizers()
    except Exception:  # the tokenizer lab's folder is unreadable: offer the built-in ones
        saved = []
    return ["char", "gpt2", *saved]


def _build_config():
    ss = st.session_state
    name = ss["train_preset"]
    base = PRESETS[name]
    max_iters = int(ss["train_max_iters"])
    overrides = dict(
        lr=float(ss["train_lr"]),
        max_iters=max_iters,
        block_size=int(ss["train_block_size"]),
        batch_size=int(ss["train_batch_size"]),
        dropout=float(ss["train_dropout"]),
        seed=int(ss["train_seed"]),
        tokenizer=ss["train_tokenizer"],
        data=(ss["train_data"] or "").strip() or None,
        device=ss["train_device"],
        dtype=ss["train_dtype"],
        min_lr=float(ss["train_lr"]) * base.final_lr / base.lr,
        eval_interval=min(base.eval_interval, max(20, max_iters // 10)),
        eval_iters=min(base.eval_iters, 10),
        warmup_iters=min(base.warmup_iters, max_iters // 10),
    )
    if base.model.kind == "gpt":
        overrides.update(
            n_embd=int(ss["train_n_embd"]),
            n_layer=int(ss["train_n_layer"]),
            n_head=int(ss["train_n_head"]),
        )
    config = preset(name, **overrides)
    return config.replace(label=f"{name} lr={config.lr:g}")


@st.cache_data(show_spinner=False, max_entries=32)
def _summary(model_dict: dict, batch_size: int):
    from llm_playground.training.config import ModelConfig

    with torch.device("meta"):
        model = build_model(ModelConfig.from_dict(model_dict))
    s = summarize(model, batch_size)
    return s.table(), s.total_parameters, s.flops_per_token, s.memory_bytes, s.memory_breakdown


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n} B"


def _fmt_secs(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


# --- page ------------------------------------------------------------------------------------

page_header(
    "🏋️ Lab 2 · Training ground",
    "Train a language model from scratch on TinyShakespeare. A bigram model learns which "
    "character tends to follow which; a baby GPT learns from a whole block of context "
    "through self-attention. Watch the training and validation loss fall and the samples "
    "turn from noise into verse — and start a second run with another learning rate to "
    "compare them on one chart.",
)
_init_state()
jm = job_manager()
running = jm.running(KIND)
if running is not None:
    st.session_state["train_job"] = running.id  # a second tab finds the run in progress

with st.container(border=True):
    c1, c2, c3 = st.columns([1, 1, 2])
    c1.selectbox(
        "Preset",
        list(PRESETS),
        key="train_preset",
        on_change=_apply_preset,
        help="bigram: a next-character table · baby-gpt: 4 layers, trains on a CPU in "
        "minutes · lecture-gpt: 6 layers, 384 dims, for a GPU",
    )
    tokenizers = _tokenizer_choices()
    if st.session_state["train_tokenizer"] not in tokenizers:
        st.session_state["train_tokenizer"] = "char"
    c2.selectbox(
        "Tokenizer",
        tokenizers,
        key="train_tokenizer",
        help="char: one token per character (65 for Shakespeare) · gpt2: GPT-2's 50,257 "
        "BPE tokens · bpe:… your tokenizers from Lab 1",
    )
    c3.text_input(
        "Training text (a UTF-8 file; empty for TinyShakespeare)",
        key="train_data",
        placeholder="TinyShakespeare (1.1 MB, 90 % training / 10 % validation)",
    )
    is_bigram = PRESETS[st.session_state["train_preset"]].model.kind == "bigram"
    s1, s2, s3, s4 = st.columns(4)
    s1.select_slider(
        "Learning rate",
        options=LRS,
        key="train_lr",
        format_func=lambda v: f"{v:.0e}",
        help="Peak learning rate of AdamW (log scale); it warms up, then decays to a tenth",
    )
    s2.slider("Max iterations", 50, 5000, step=50, key="train_max_iters")
    s3.select_slider(
        "Block size (context)",
        options=BLOCKS,
        key="train_block_size",
        help="tokens the model sees at once",
    )
    s4.slider("Batch size", 1, 128, key="train_batch_size", help="blocks per optimiser step")
    g1, g2, g3, g4 = st.columns(4)
    g1.select_slider("Embedding size", options=EMBD, key="train_n_embd", disabled=is_bigram)
    g2.slider("Layers", 1, 12, key="train_n_layer", disabled=is_bigram)
    g3.slider(
        "Heads",
        1,
        12,
        key="train_n_head",
        disabled=is_bigram,
        help="the embedding size must divide evenly among the heads",
    )
    g4.slider("Dropout", 0.0, 0.5, step=0.05, key="train_dropout")
    with st.expander("Hardware and repeatability"):
        h1, h2, h3 = st.columns(3)
        h1.selectbox(
            "Device",
            ["auto", "cpu", "cuda"],
            key="train_device",
            help="auto uses a GPU when PyTorch sees one",
        )
        h2.selectbox(
            "Number format",
            ["auto", "float32", "bfloat16"],
            key="train_dtype",
            help="auto measures whether bf16 is faster than fp32 on this hardware",
        )
        h3.number_input(
            "Seed",
            min_value=0,
            max_value=2**31 - 1,
            step=1,
            key="train_seed",
            help="the same seed and settings give the same run",
        )

config = None
corpus = None
try:
    config = _build_config()
    config.validate()
    with st.spinner("Reading and tokenizing the text…"):
        corpus = load_corpus(config.data, config.tokenizer)
    config = config.replace(vocab_size=corpus.vocab_size)
    config.validate(len(corpus.train), len(corpus.val))
except UserError as exc:
    show_user_error(exc)
    config = None

if config is not None and corpus is not None:
    left, right = st.container(), st.container()
    with left:
        st.subheader("One batch, as the model sees it")
        rows = decoded_batch(
            corpus, config.model.block_size, min(config.batch_size, 4), seed=config.seed
        )
        st.caption(
            f"{len(corpus.train):,} training and {len(corpus.val):,} validation tokens · "
            f"vocabulary {corpus.vocab_size:,} · showing {len(rows)} of {config.batch_size} rows. "
            "At every position the model reads x and must predict y: the same text shifted by one token."
        )
        show_cols = min(config.model.block_size, 24)

        def cells(tokens, ids, cls):
            return "".join(
                f'<td class="{cls}" title="id {i}">{esc(repr(t)[1:-1]) or "&nbsp;"}</td>'
                for t, i in zip(tokens[:show_cols], ids[:show_cols], strict=True)
            )

        html = [
            "<style>.tb td{border:1px solid #ddd;padding:2px 5px;font-family:monospace;"
            "font-size:0.85em;text-align:center;white-space:pre}.tb .x{background:#eef4ff}"
            ".tb .y{background:#eefbea}.tb th{padding:2px 6px;font-size:0.8em;color:#666}</style>"
            '<div style="overflow-x:auto"><table class="tb">'
        ]
        for n, r in enumerate(rows):
            html.append(f"<tr><th>x[{n}]</th>{cells(r.x_tokens, r.x_ids, 'x')}</tr>")
            html.append(f"<tr><th>y[{n}]</th>{cells(r.y_tokens, r.y_ids, 'y')}</tr>")
        html.append("</table></div>")
        st.markdown("".join(html), unsafe_allow_html=True)
        if config.model.block_size > show_cols:
            st.caption(
                f"First {show_cols} of {config.model.block_size} positions; hover a token for its id."
            )
    with right:
        st.subheader("Model summary")
        table, total, flops, memory, breakdown = _summary(config.model.to_dict(), config.batch_size)
        m1, m2, m3 = st.columns(3)
        m1.metric("Parameters", f"{total:,}")
        m2.metric(
            "FLOPs per token",
            f"{flops / 1e6:,.1f} M" if flops >= 1e5 else f"{flops:,.0f}",
            help="training: forward and backward",
        )
        m3.metric(
            "Training memory",
            _fmt_bytes(memory),
            help=" · ".join(f"{k}: {_fmt_bytes(v)}" for k, v in breakdown.items()),
        )
        with st.expander("Modules and their parameters"):
            st.dataframe(pd.DataFrame(table), hide_index=True, key="train_summary_table")

# --- start / stop ------------------------------------------------------------------------------

b1, b2, _ = st.columns([2, 1, 3])
start = b1.button(
    "▶ Start training",
    key="train_start",
    type="primary",
    disabled=config is None or running is not None,
)
if start and config is not None:
    runs = jm.jobs(KIND)
    label = f"{config.run_label} · #{len(runs) + 1}"
    out_dir = (
        get_paths().ensure().runs / ".scratch" / f"{time.strftime('%Y%m%d-%H%M%S')}-{len(runs) + 1}"
    )
    cfg = config.replace(label=label, out_dir=str(out_dir))
    job = jm.start(
        KIND,
        label,
        lambda stop, c=cfg: run_training(c, stop),
        params={
            "out_dir": str(out_dir),
            "max_iters": cfg.max_iters,
            "tokens_per_step": cfg.batch_size * cfg.model.block_size,
        },
    )
    st.session_state["train_job"] = job.id
    running = job if job.running else None
if b2.button("■ Stop", key="train_stop", disabled=running is None):
    if running is not None:
        jm.stop(running.id)
        st.toast("Stopping after the current step…")


def _collect(job):
    """Chart rows, the latest state and the samples of one job."""
    rows, samples = [], []
    state = {"step": 0, "tps": 0.0, "started": None, "done": None, "error": None, "loss": None}
    ema = None
    for ev in job.events_since(0):
        if isinstance(ev, TrainStep):
            ema = ev.loss if ema is None else 0.9 * ema + 0.1 * ev.loss
            state.update(step=ev.step, tps=ev.tokens_per_s, loss=ev.loss, lr=ev.lr)
            if ev.step % max(1, job.params.get("max_iters", 1000) // 200) == 0:
                rows.append({"run": job.label, "step": ev.step, "loss": ema, "split": BATCHES})
        elif isinstance(ev, TrainEval):
            rows.append(
                {"run": job.label, "step": ev.step, "loss": ev.train_loss, "split": "train"}
            )
            rows.append(
                {"run": job.label, "step": ev.step, "loss": ev.val_loss, "split": "validation"}
            )
            state["eval"] = ev
        elif isinstance(ev, Sample):
            samples.append(ev)
        elif isinstance(ev, TrainStarted):
            state["started"] = ev
            state["step"] = ev.start_step
        elif isinstance(ev, TrainDone):
            state["done"] = ev
        elif isinstance(ev, Error):
            state["error"] = ev.message
    if job.error:
        state["error"] = job.error
    return rows, state, samples


@st.fragment(run_every=1)
def live_panel() -> None:
    jm = job_manager()
    jobs = [j for j in jm.jobs(KIND) if j.id not in st.session_state.get("train_hidden", [])]
    current = jm.get(st.session_state.get("train_job"))
    if current is None and jobs:  # a reloaded page or a new tab shows the latest run
        current = jobs[-1]
    if not jobs and current is None:
        st.info(
            "Press **Start training** to train with these settings. Runs stay on the chart, so "
            "a second run with another learning rate lands next to the first."
        )
        return
    all_rows = []
    for job in jobs:
        rows, _, _ = _collect(job)
        all_rows += rows
    if current is not None:
        _, state, samples = _collect(current)
        started = state["started"]
        max_iters = started.max_iters if started else current.params.get("max_iters", 1)
        step = state["step"]
        if current.running:
            steps_per_s = state["tps"] / max(1, current.params.get("tokens_per_step", 1))
            left = (max_iters - step) / steps_per_s if steps_per_s > 0 else None
            text = (
                f"{current.label}: step {step:,} of {max_iters:,} · {state['tps']:,.0f} tokens/s"
                + (f" · about {_fmt_secs(left)} left" if left is not None else " · starting…")
            )
            st.progress(min(1.0, step / max_iters), text=text)
            if started:
                st.caption(
                    f"Training on {started.device} in {started.dtype} · {started.parameters:,} "
                    f"parameters · vocabulary {started.vocab_size:,}"
                )
        elif state["error"]:
            st.error(f"{current.label}: {state['error']}", icon="⚠️")
        elif state["done"]:
            d = state["done"]
            how = "stopped" if d.stopped else "finished"
            val = f", validation loss {d.val_loss:.4f}" if d.val_loss is not None else ""
            st.success(
                f"{current.label} {how} after {d.step:,} steps{val} in {_fmt_secs(d.elapsed_s)}."
            )
    m = st.columns(4) if current is not None else None
    if current is not None:
        ev = state.get("eval")
        m[0].metric("Step", f"{step:,}")
        m[1].metric("Batch loss", f"{state['loss']:.4f}" if state["loss"] is not None else "–")
        m[2].metric("Train loss (eval)", f"{ev.train_loss:.4f}" if ev else "–")
        m[3].metric("Validation loss", f"{ev.val_loss:.4f}" if ev else "–")
    if all_rows:
        df = pd.DataFrame(all_rows)
        splits = ["validation", "train", BATCHES]
        base = alt.Chart(df).encode(
            x=alt.X("step:Q", title="step"),
            y=alt.Y("loss:Q", title="loss (cross-entropy)", scale=alt.Scale(zero=False)),
            color=alt.Color(
                "run:N",
                title="run",
                scale=alt.Scale(scheme="category10"),
                legend=alt.Legend(orient="bottom", columns=2, labelLimit=400),
            ),
            strokeDash=alt.StrokeDash(
                "split:N",
                title="data",
                sort=splits,
                scale=alt.Scale(domain=splits, range=[[1, 0], [6, 3], [1, 2]]),
                legend=alt.Legend(
                    symbolType="stroke",
                    symbolStrokeWidth=2,
                    symbolSize=400,
                    orient="bottom",
                    labelLimit=300,
                ),
            ),
            tooltip=["run", "split", "step", alt.Tooltip("loss:Q", format=".4f")],
        )
        batches = base.transform_filter(alt.datum.split == BATCHES).mark_line(
            strokeWidth=1, opacity=0.45
        )
        evals = base.transform_filter(alt.datum.split != BATCHES).mark_line(
            strokeWidth=2.5, point=alt.OverlayMarkDef(size=35)
        )
        chart = alt.layer(batches, evals).properties(height=360)
        st.altair_chart(chart, width="stretch", key="train_chart")
    if current is not None and samples:
        last = samples[-1]
        st.markdown(f"**Sample at step {last.step:,}** (from a newline, 200 tokens)")
        st.code(last.text, language=None, wrap_lines=True)
        if len(samples) > 1:
            with st.expander(f"All {len(samples)} samples of this run"):
                for s in reversed(samples):
                    st.markdown(f"**Step {s.step:,}**")
                    st.code(s.text, language=None, wrap_lines=True)
    if (
        current is not None
        and not current.running
        and state["done"] is not None
        and not state["error"]
    ):
        with st.form("train_save_form", border=True):
            st.markdown("**Save this model** — Labs 3–5 list saved models.")
            name = st.text_input("Name", key="train_save_name", placeholder="e.g. my-baby-gpt")
            if st.form_submit_button("💾 Save", key="train_save"):
                try:
                    dest = save_run_as(current.params["out_dir"], name)
                    st.success(f"Saved as {dest}")
                except UserError as exc:
                    show_user_error(exc)


live_panel()

c1, c2 = st.columns([1, 5])
if c1.button("Clear chart", key="train_clear", help="hide finished runs from the chart"):
    st.session_state["train_hidden"] = [j.id for j in jm.jobs(KIND) if not j.running]
    st.rerun()

saved = list_runs()
with st.expander(f"Saved models ({len(saved)})"):
    if saved:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "name": r.name,
                        "model": r.summary,
                        "steps": r.step,
                        "val loss": None if r.val_loss is None else round(r.val_loss, 4),
                        "Hugging Face": "yes" if r.hf_path else "no",
                        "saved": r.saved_at,
                    }
                    for r in saved
                ]
            ),
            hide_index=True,
            key="train_saved_table",
        )
    else:
        st.caption("None yet: train a model, then save it under a name.")
