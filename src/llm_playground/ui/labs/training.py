"""Lab 2 · Training ground: train a bigram model or a baby GPT live and watch it learn,
then race recipes (baby-gpt against the speedrun and its ablations)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from llm_playground.core.errors import UserError
from llm_playground.core.events import Sample
from llm_playground.core.paths import get_paths, unique_run_dir
from llm_playground.training.checkpoints import list_runs, save_run_as
from llm_playground.training.config import (
    MAX_SNAPSHOTS,
    PRESETS,
    TRICKS,
    config_from_settings,
)
from llm_playground.training.corpus import decoded_batch, load_corpus
from llm_playground.training.engine import run_training, training_step
from llm_playground.training.events import (
    TargetReached,
    TrainDone,
    TrainEval,
    TrainStarted,
    TrainStep,
)
from llm_playground.training.model import explicit_attention, model_summary
from llm_playground.training.optim import newton_schulz_reference
from llm_playground.training.records import (
    SPEEDRUN,
)
from llm_playground.ui.components import (
    code_expander,
    current_job,
    esc,
    job_panel,
    machine_load_caption,
    page_header,
    show_user_error,
    start_job,
)
from llm_playground.ui.race_view import race_tab

SLOT = "train"
BATCHES = "batches (smoothed)"
LRS = [1e-4, 2e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 6e-3, 1e-2]
EMBD = [16, 32, 48, 64, 96, 128, 192, 256, 384]
BLOCKS = [4, 8, 16, 32, 64, 128, 256]


def _nearest(options: list, value):
    return min(options, key=lambda o: abs(o - value))


def _switch_key(name: str) -> str:
    """The widget key of a trick's switch: its setting's name for a choice, else its own."""
    trick = TRICKS[name]
    return f"train_{trick.setting if trick.choices else name}"


def _trick_settings() -> dict:
    """The tricks' settings from their switches (a check box turns its trick on or off)."""
    ss = st.session_state
    settings = {}
    for name, trick in TRICKS.items():
        value = ss[_switch_key(name)]
        settings[trick.setting] = value if trick.choices else (trick.on if value else trick.off)
    return settings


def _apply_preset() -> None:
    """Put the chosen preset's values into the sliders and the recipe switches."""
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
    for name, trick in TRICKS.items():
        value = trick.value_in(p)
        ss[_switch_key(name)] = value if trick.choices else value != trick.off


def _init_state() -> None:
    ss = st.session_state
    if "train_preset" not in ss:
        ss["train_preset"] = "baby-gpt"
        _apply_preset()
    ss.setdefault("train_tokenizer", "char")
    ss.setdefault("train_device", "auto")
    ss.setdefault("train_dtype", "auto")
    ss.setdefault("train_target", 0.0)
    ss.setdefault("train_snapshot_interval", 0)
    ss.setdefault("train_history", [])  # chart rows of this browser's finished runs


def _tokenizer_choices() -> list[str]:
    try:
        from llm_playground.tokenization.tokenizer import saved_tokenizers

        saved = saved_tokenizers()
    except Exception:  # the tokenizer lab's folder is unreadable: offer the built-in ones
        saved = []
    return ["char", "gpt2", *saved]


def _build_config():
    """The run the widgets describe, built by the library (as the CLI builds it from flags)."""
    ss = st.session_state
    name = ss["train_preset"]
    config = config_from_settings(
        name,
        interactive=True,
        lr=float(ss["train_lr"]),
        max_iters=int(ss["train_max_iters"]),
        block_size=int(ss["train_block_size"]),
        batch_size=int(ss["train_batch_size"]),
        dropout=float(ss["train_dropout"]),
        seed=int(ss["train_seed"]),
        tokenizer=ss["train_tokenizer"],
        device=ss["train_device"],
        dtype=ss["train_dtype"],
        n_embd=int(ss["train_n_embd"]),
        n_layer=int(ss["train_n_layer"]),
        n_head=int(ss["train_n_head"]),
        target_val_loss=float(ss["train_target"]) or None,
        snapshot_interval=int(ss["train_snapshot_interval"]),
        **_trick_settings(),
    )
    return config.replace(label=f"{name} lr={config.lr:g}")


@st.cache_data(show_spinner=False, max_entries=32)
def _summary(model_dict: dict, batch_size: int):
    from llm_playground.training.config import ModelConfig

    s = model_summary(ModelConfig.from_dict(model_dict), batch_size)
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


# --- settings --------------------------------------------------------------------------------


def settings_panel() -> None:
    """The run's settings: preset and tokenizer, optimisation, the model's shape, the
    recipe switches, and hardware."""
    with st.container(border=True):
        _preset_and_tokenizer()
        is_bigram = PRESETS[st.session_state["train_preset"]].model.kind == "bigram"
        _optimisation_settings()
        _shape_settings(is_bigram)
        recipe_switches(is_bigram)
        _hardware_settings()


def _preset_and_tokenizer() -> None:
    c1, c2, c3 = st.columns([1, 1, 2])
    c1.selectbox(
        "Preset",
        list(PRESETS),
        key="train_preset",
        on_change=_apply_preset,
        help="bigram: a next-character table · baby-gpt: 4 layers, trains on a CPU in "
        "minutes · lecture-gpt: 6 layers, 384 dims, for a GPU · speedrun: baby-gpt's "
        "size with the modern recipe (Muon, RoPE, QK-norm, ReLU², …)",
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
    c3.caption("Training text: TinyShakespeare (1.1 MB, 90 % training / 10 % validation)")


def _optimisation_settings() -> None:
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


def _shape_settings(is_bigram: bool) -> None:
    """The transformer's size (a bigram table has none of these)."""
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


def _hardware_settings() -> None:
    with st.expander("Hardware, repeatability and a target"):
        h1, h2, h3, h4 = st.columns(4)
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
            help="auto times a few steps of this model in fp32 and bf16 and trains in the faster",
        )
        h3.number_input(
            "Seed",
            min_value=0,
            max_value=2**31 - 1,
            step=1,
            key="train_seed",
            help="the same seed and settings give the same run",
        )
        h4.number_input(
            "Stop at validation loss",
            min_value=0.0,
            max_value=10.0,
            step=0.01,
            key="train_target",
            help="0: run every step · else stop at the first evaluation at or below it "
            "(nanoGPT's baby config ends near 1.88)",
        )
        h1.number_input(
            "Keep a snapshot every N steps",
            min_value=0,
            max_value=5000,
            step=50,
            key="train_snapshot_interval",
            help=f"0: none · else the model is kept every N steps (at most {MAX_SNAPSHOTS} "
            "snapshots), so that Lab 6 can show how its attention heads formed",
        )


def recipe_switches(is_bigram: bool) -> None:
    """One widget per ingredient of the speedrun, each with why it helps and its source:
    a select box for a choice, a check box that turns the trick on."""
    with st.expander("Recipe switches (the speedrun's ingredients, one at a time)"):
        choices = [name for name, trick in TRICKS.items() if trick.choices]
        switches = [name for name, trick in TRICKS.items() if not trick.choices]
        rows = [group[i : i + 4] for group in (choices, switches) for i in range(0, len(group), 4)]
        for row in rows:
            for column, name in zip(st.columns(4), row, strict=False):
                trick = TRICKS[name]
                # a bigram model has no architecture to change; its training still can
                disabled = is_bigram and trick.architecture
                if trick.choices:
                    column.selectbox(
                        trick.label, trick.choices, key=_switch_key(name), disabled=disabled
                    )
                else:
                    column.checkbox(trick.label, key=_switch_key(name), disabled=disabled)
        st.markdown(
            "\n".join(
                f"- **{esc(t.title)}**: {esc(t.why)} ([source]({t.source}))"
                for t in TRICKS.values()
            )
        )


def data_and_summary(config, corpus) -> None:
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
        if config.model.kind == "gpt" and not config.model.classic:
            st.caption(
                "This architecture is not GPT-2's: it gets no Hugging Face GPT-2 export, and "
                "Labs 3 and 5 run it through the playground's own forward pass."
            )
        with st.expander("Modules and their parameters"):
            st.dataframe(pd.DataFrame(table), hide_index=True, key="train_summary_table")


# --- one run: chart, metrics, samples --------------------------------------------------------


def _collect(label: str, events: list, max_iters: int):
    """Chart rows, the latest state and the samples of one run's events."""
    rows, samples = [], []
    state = {"step": 0, "tps": 0.0, "started": None, "done": None, "loss": None}
    state.update(eval=None, reached=None)
    ema = None
    for ev in events:
        if isinstance(ev, TrainStep):
            ema = ev.loss if ema is None else 0.9 * ema + 0.1 * ev.loss
            state.update(step=ev.step, tps=ev.tokens_per_s, loss=ev.loss)
            if ev.step % max(1, max_iters // 200) == 0:
                rows.append({"run": label, "step": ev.step, "loss": ema, "split": BATCHES})
        elif isinstance(ev, TrainEval):
            rows.append({"run": label, "step": ev.step, "loss": ev.train_loss, "split": "train"})
            rows.append({"run": label, "step": ev.step, "loss": ev.val_loss, "split": "validation"})
            state["eval"] = ev
        elif isinstance(ev, TargetReached):
            state["reached"] = ev
        elif isinstance(ev, Sample):
            samples.append(ev)
        elif isinstance(ev, TrainStarted):
            state["started"] = ev
            state["step"] = ev.start_step
        elif isinstance(ev, TrainDone):
            state["done"] = ev
    return rows, state, samples


def _loss_chart(df: pd.DataFrame, reached: TargetReached | None, key: str):
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
    layers = [batches, evals]
    if reached is not None:
        note = pd.DataFrame(
            [
                {
                    "step": reached.step,
                    "loss": reached.val_loss,
                    "text": f"reached {reached.target:g} at {reached.elapsed_s:.0f} s",
                }
            ]
        )
        marker = alt.Chart(note).encode(x="step:Q", y="loss:Q")
        layers += [
            marker.mark_point(shape="diamond", size=120, color="black", filled=True),
            marker.mark_text(align="left", dx=8, dy=-10, fontSize=13).encode(text="text:N"),
        ]
    st.altair_chart(alt.layer(*layers).properties(height=360), width="stretch", key=key)


def draw_run(job, events: list) -> None:
    """What the Training ground shows of a run: state line, metrics, chart, samples, save."""
    max_iters = job.params.get("max_iters", 1000)
    rows, state, samples = _collect(job.label, events, max_iters)
    started, step = state["started"], state["step"]
    if job.running and not job.queued:
        steps_per_s = state["tps"] / max(1, job.params.get("tokens_per_step", 1))
        left = (max_iters - step) / steps_per_s if steps_per_s > 0 else None
        st.caption(
            f"{job.label}: step {step:,} of {max_iters:,} · {state['tps']:,.0f} tokens/s"
            + (f" · about {_fmt_secs(left)} left" if left is not None else " · starting…")
        )
        if started:
            st.caption(
                f"Training on {started.device} in {started.dtype} · {started.parameters:,} "
                f"parameters · vocabulary {started.vocab_size:,}"
            )
            if started.precision:
                st.caption(f"Precision: {started.precision}")
    elif state["done"]:
        d = state["done"]
        how = "stopped" if d.stopped else "finished"
        val = f", validation loss {d.val_loss:.4f}" if d.val_loss is not None else ""
        st.success(f"{job.label} {how} after {d.step:,} steps{val} in {_fmt_secs(d.elapsed_s)}.")
    if state["reached"] is not None:
        r = state["reached"]
        st.info(f"Reached validation loss {r.target:g} at step {r.step:,}, {r.elapsed_s:.0f} s.")
    ev = state["eval"]
    m = st.columns(4)
    m[0].metric("Step", f"{step:,}")
    m[1].metric("Batch loss", f"{state['loss']:.4f}" if state["loss"] is not None else "–")
    m[2].metric("Train loss (eval)", f"{ev.train_loss:.4f}" if ev else "–")
    m[3].metric("Validation loss", f"{ev.val_loss:.4f}" if ev else "–")
    all_rows = [r for r in st.session_state.get("train_history", []) if r["run"] != job.label]
    all_rows += rows
    if all_rows:
        _loss_chart(pd.DataFrame(all_rows), state["reached"], key="train_chart")
    if samples:
        last = samples[-1]
        st.markdown(f"**Sample at step {last.step:,}** (from a newline, 200 tokens)")
        st.code(last.text, language=None, wrap_lines=True)
        if len(samples) > 1:
            with st.expander(f"All {len(samples)} samples of this run"):
                for s in reversed(samples):
                    st.markdown(f"**Step {s.step:,}**")
                    st.code(s.text, language=None, wrap_lines=True)
    if not job.running and state["done"] is not None:
        save_form(job)


def save_form(job) -> None:
    with st.form("train_save_form", border=True):
        st.markdown("**Save this model** — Labs 3–5 list saved models.")
        name = st.text_input("Name", key="train_save_name", placeholder="e.g. my-baby-gpt")
        replace = st.checkbox(
            "Replace a saved model of that name", key="train_save_replace", value=False
        )
        if st.form_submit_button("💾 Save", key="train_save"):
            try:
                dest = save_run_as(job.params["out_dir"], name, overwrite=replace)
                st.success(f"Saved as {dest}")
            except UserError as exc:
                show_user_error(exc)


def remember_run(job, events: list) -> None:
    """Keep a finished run's curves, so that the next run lands beside it on the chart."""
    rows, _, _ = _collect(job.label, events, job.params.get("max_iters", 1000))
    history = [r for r in st.session_state.get("train_history", []) if r["run"] != job.label]
    st.session_state["train_history"] = history + rows


def training_tab() -> None:
    settings_panel()
    config = corpus = None
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
        data_and_summary(config, corpus)

    running = current_job(SLOT)
    busy = running is not None and running.running
    b1, b2, _ = st.columns([2, 1, 3])
    if b1.button(
        "▶ Start training", key="train_start", type="primary", disabled=config is None or busy
    ):
        number = len({r["run"] for r in st.session_state["train_history"]}) + 1
        label = f"{config.run_label} · #{number}"
        # a folder of this run's own, created exclusively: two people who start in the
        # same second never share metrics, checkpoints or the model that Save keeps
        out_dir = unique_run_dir(get_paths().ensure().runs / ".scratch", "run")
        run_config = config.replace(label=label, out_dir=str(out_dir))
        start_job(
            SLOT,
            label,
            lambda stop, c=run_config: run_training(c, stop),
            params={
                "out_dir": str(out_dir),
                "max_iters": run_config.max_iters,
                "tokens_per_step": run_config.batch_size * run_config.model.block_size,
            },
        )
        st.rerun()  # Start turns disabled, the panel starts polling
    if b2.button("Clear chart", key="train_clear", help="forget finished runs on the chart"):
        st.session_state["train_history"] = []
    machine_load_caption()
    # a chart per poll is heavy: poll every 2 s so that clicks (Stop) are never crowded out
    if job_panel(SLOT, draw=draw_run, on_finish=remember_run, run_every=2.0) is None:
        st.info(
            "Press **Start training** to train with these settings. Runs stay on the chart, so "
            "a second run with another learning rate lands next to the first."
        )
    saved_models()
    code_expander(
        "attention, one training step, Muon",
        [explicit_attention, training_step, newton_schulz_reference],
        "The run above does the same, faster: attention goes through PyTorch's fused "
        "`scaled_dot_product_attention`, which never keeps the T × T weights in memory; each "
        "step also takes its learning rate from the schedule and runs in bfloat16 where that "
        "is measured faster here; Muon orthogonalises all the matrices of one shape in one "
        "batch. Tests check that each gives the same numbers as the code shown here.",
    )


def saved_models() -> None:
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


# --- page ------------------------------------------------------------------------------------

page_header(
    "🏋️ Lab 2 · Training ground",
    "Train a language model from scratch on TinyShakespeare. A bigram model learns which "
    "character tends to follow which; a baby GPT learns from a whole block of context "
    "through self-attention. Watch the training and validation loss fall and the samples "
    "turn from noise into verse — and start a second run with another learning rate to "
    "compare them on one chart. The race pits nanoGPT's baby config against a modern "
    f"recipe ({SPEEDRUN}) and shows what each of its tricks buys.",
)
_init_state()
train, race = st.tabs(["Train", "Race recipes"])
with train:
    training_tab()
with race:
    race_tab()
