"""The speedrun recipe: each switch does what it says, Muon, the target stop, races and records,
and a speedrun checkpoint used by Labs 3 and 5 through the playground's own forward pass."""

import threading

import pytest
import torch

from llm_playground.core import hardware
from llm_playground.core.db import Database
from llm_playground.core.errors import UserError
from llm_playground.core.events import Saved
from llm_playground.training.config import PRESETS, TRICKS, ModelConfig, preset, without_trick
from llm_playground.training.engine import run_training
from llm_playground.training.events import TargetReached, TrainDone, TrainEval, TrainStep
from llm_playground.training.model import GPT, Rotary, build_model, count_parameters
from llm_playground.training.optim import Muon, build_optimizer, newton_schulz

TINY = ModelConfig(vocab_size=65, n_layer=1, n_head=2, n_embd=32, block_size=16)
SMALL = dict(
    n_layer=2,
    n_head=2,
    n_embd=32,
    block_size=16,
    batch_size=8,
    eval_iters=4,
    sample_tokens=0,
    warmup_iters=8,
    dtype="float32",
    device="cpu",
)


def gpt(**switches) -> GPT:
    torch.manual_seed(0)
    return build_model(TINY.__class__(**{**TINY.to_dict(), **switches}))


# --- the preset ----------------------------------------------------------------------------


def test_speedrun_is_baby_gpt_sized_with_every_trick_on():
    baby, speed = PRESETS["baby-gpt"], PRESETS["speedrun"]
    n_baby, n_speed = (count_parameters(build_model(c.model)) for c in (baby, speed))
    assert abs(n_speed - n_baby) / n_baby <= 0.25
    assert (speed.model.block_size, speed.batch_size, speed.eval_iters) == (64, 12, 20)
    for trick in TRICKS:
        off = without_trick(speed, trick)
        assert off != speed and off.validate()
    assert not speed.model.classic and baby.model.classic


# --- each switch ---------------------------------------------------------------------------


def test_rope_has_no_position_table_and_scores_depend_only_on_distance():
    model = gpt(pos="rope")
    assert model.wpe is None and not any("wpe" in n for n, _ in model.named_parameters())
    rotary = Rotary(head_size=8, max_positions=32)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i: int, j: int) -> float:
        return float((rotary(q, offset=i) * rotary(k, offset=j)).sum())

    assert score(3, 1) == pytest.approx(score(13, 11), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)


def test_qk_norm_gives_unit_rms_queries_and_keys():
    attn = gpt(qk_norm=True).h[0].attn
    with torch.no_grad():
        q, k, _ = attn.queries_keys_values(torch.randn(2, 5, 32) * 7)
        for t in (q, k):
            assert torch.allclose(t.pow(2).mean(-1).sqrt(), torch.ones(2, 2, 5), atol=1e-4)
        q, _, _ = gpt(qk_norm=False).h[0].attn.queries_keys_values(torch.randn(2, 5, 32) * 7)
    assert not torch.allclose(q.pow(2).mean(-1).sqrt(), torch.ones(2, 2, 5), atol=0.1)


def test_relu2_zero_init_untied_head_and_softcap():
    model = gpt(mlp="relu2", zero_init=True, tied_head=False, logit_softcap=2.0)
    x = torch.tensor([-2.0, 0.5, 3.0])
    assert model.h[0].mlp.activation(x).tolist() == [0.0, 0.25, 9.0]
    # the activation holds no weights: checkpoints saved when it was called `gelu` still load
    assert not [k for k in model.state_dict() if "activation" in k or "gelu" in k]
    assert not model.h[0].attn.c_proj.weight.any() and not model.h[0].mlp.c_proj.weight.any()
    assert model.lm_head.weight is not model.wte.weight
    with torch.no_grad():
        model.lm_head.weight.mul_(1000)
    logits, _ = model(torch.randint(65, (1, 8)))
    assert logits.abs().max() <= 2.0
    tied = gpt()
    assert tied.lm_head.weight is tied.wte.weight  # GPT-2 default: tied


# --- Muon ----------------------------------------------------------------------------------


def test_newton_schulz_sets_singular_values_near_one_in_fp32_and_bf16():
    g = torch.Generator().manual_seed(0)
    for shape in ((32, 96), (96, 32), (3, 24, 24)):
        m = torch.randn(*shape, generator=g) * 3.0
        s = torch.linalg.svdvals(newton_schulz(m))
        assert s.min() > 0.5 and s.max() < 1.3 and (s - 1).abs().mean() < 0.25
    m = torch.randn(48, 64, generator=g)
    fp32 = newton_schulz(m, dtype=torch.float32)
    bf16 = newton_schulz(m, dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32 and (fp32 - bf16).abs().max() < 0.05


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    config = PRESETS["speedrun"].replace(**{k: v for k, v in TINY.to_dict().items() if k != "kind"})
    model = build_model(config.model)
    optimizer = build_optimizer(model, config)
    assert isinstance(optimizer, Muon)
    kinds = {id(p): g["kind"] for g in optimizer.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        expected = "muon" if (p.dim() == 2 and name.startswith("h.")) else "adamw"
        assert kinds[id(p)] == expected, name
    assert optimizer.ns_dtype == torch.float32  # unless the run hands in another
    assert build_optimizer(model, config, ns_dtype=torch.bfloat16).ns_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="2-D"):
        Muon([{"params": [torch.nn.Parameter(torch.zeros(3))], "kind": "muon"}])


def test_hardware_reports_flags_and_one_cached_measurement():
    flags = hardware.cpu_flags("processor: 0\nflags : fpu avx2 avx512f amx_bf16\n")
    assert flags == {"avx2": True, "avx512f": True, "avx512_bf16": False, "amx_bf16": True}
    assert hardware.probe_cpu_bf16() is hardware.probe_cpu_bf16()  # measured once
    here = hardware.machine("cpu")
    assert here.cores >= 1 and here.device == "cpu" and set(here.flags) == set(hardware.SPEED_FLAGS)


# --- training ------------------------------------------------------------------------------


def test_a_short_speedrun_beats_baby_gpt_per_step_at_the_same_seed():
    finals = {}
    for name in ("baby-gpt", "speedrun"):
        events = run_training(preset(name, **SMALL, max_iters=40, eval_interval=40))
        finals[name] = [e.val_loss for e in events if isinstance(e, TrainEval)][-1]
    assert finals["speedrun"] < finals["baby-gpt"] - 0.2


def test_target_stops_at_the_first_evaluation_at_or_below_it(tmp_path):
    config = preset("speedrun", **SMALL, max_iters=200, eval_interval=5, out_dir=str(tmp_path))
    events = list(run_training(config.replace(target_val_loss=3.6)))
    evals = [e for e in events if isinstance(e, TrainEval)]
    reached = [e for e in events if isinstance(e, TargetReached)]
    assert len(reached) == 1 and evals[-1].val_loss <= 3.6 < min(e.val_loss for e in evals[:-1])
    assert reached[0].step == evals[-1].step < 200
    done = events[-1]
    assert isinstance(done, TrainDone) and not done.stopped and done.step == reached[0].step
    assert done.target_reached_s == pytest.approx(reached[0].elapsed_s)
    import json

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["target_val_loss"] == 3.6 and rows[-1]["target_reached_s"] > 0
    assert "target_val_loss" not in rows[0]
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["target"]["step"] == reached[0].step and meta["hf_export"] is None


def test_speedrun_resume_and_stop_continue_the_same_curve(tmp_path):
    config = preset("speedrun", **SMALL, max_iters=10, eval_interval=5)
    full = [e.loss for e in run_training(config) if isinstance(e, TrainStep)]
    stop, first = threading.Event(), []
    for event in run_training(config.replace(out_dir=str(tmp_path)), stop):
        first.append(event)
        if isinstance(event, TrainStep) and event.step == 4:
            stop.set()
    assert isinstance(first[-2], Saved) and first[-1].stopped and first[-1].step == 4
    rest = list(run_training(config.replace(resume=str(tmp_path), out_dir=str(tmp_path))))
    losses = [e.loss for e in first + rest if isinstance(e, TrainStep)]
    assert losses == pytest.approx(full, abs=1e-6)
    other = list(run_training(config.replace(pos="learned", resume=str(tmp_path))))
    assert "differs in pos" in other[-1].message


# --- checkpoints in Labs 3 and 5 -----------------------------------------------------------


def test_a_speedrun_run_loads_in_labs_3_and_5_through_its_own_forward_pass(tmp_path):
    from llm_playground.core.paths import get_paths
    from llm_playground.evaluation.metrics import perplexity
    from llm_playground.generation.decoding import DecodingConfig, StepRecord, stream
    from llm_playground.generation.registry import list_models, load_model
    from llm_playground.training.checkpoints import load_checkpoint, save_run_as

    out = tmp_path / "run"
    list(run_training(preset("speedrun", **SMALL, max_iters=4, eval_interval=4, out_dir=str(out))))
    assert not (out / "hf").exists()
    save_run_as(out, "fast-one")
    info = next(i for i in list_models() if i.name == "fast-one")
    assert info.available and info.kind == "checkpoint"
    loaded = load_model("fast-one")
    assert loaded.context_length == 16
    own = load_checkpoint(get_paths().runs / "fast-one").model
    ids = torch.tensor([loaded.tokenizer("ROMEO: to be")["input_ids"]])
    assert torch.allclose(loaded.model(input_ids=ids).logits, own(ids)[0])

    def tokens(config, use_cache=True):
        steps = stream(loaded, "ROMEO:", config, use_cache=use_cache)
        return [s.token_id for s in steps if isinstance(s, StepRecord)]

    greedy = DecodingConfig(strategy="greedy", max_new_tokens=8)
    assert len(tokens(greedy)) == 8 and tokens(greedy) == tokens(greedy, use_cache=False)
    beams = DecodingConfig(strategy="beam", num_beams=2, max_new_tokens=6)
    assert tokens(beams) == tokens(beams, use_cache=False)
    result = perplexity(loaded, "To be, or not to be, that is the question. " * 3, stride=8)
    assert 1.0 < result.token_perplexity < 100.0


# --- races and records ---------------------------------------------------------------------


def test_a_race_runs_recipes_in_turn_and_records_them(tmp_path):
    from llm_playground.training import records
    from llm_playground.training.events import RaceDone, RecipeDone, RecipeEval

    db = Database(tmp_path / "playground.db")
    small = {k: v for k, v in SMALL.items() if k not in ("eval_iters", "sample_tokens")}
    original = records.recipe_config

    def tiny_recipe(name, **settings):
        return original(name, **{**settings, **small})

    records.recipe_config = tiny_recipe
    try:
        events = list(
            records.run_race(
                ["baby-gpt", "speedrun"],
                settings=records.RaceSettings(
                    max_iters=6, eval_interval=3, eval_iters=2, target=4.0, device="cpu"
                ),
                database=db,
            )
        )
    finally:
        records.recipe_config = original
    assert isinstance(events[-1], RaceDone)
    done = {e.recipe: e for e in events if isinstance(e, RecipeDone)}
    assert set(done) == {"baby-gpt", "speedrun"}
    assert {e.recipe for e in events if isinstance(e, RecipeEval)} == set(done)
    rows = records.records(db)
    assert len(rows) == 2 and {r["recipe"] for r in rows} == set(done)
    assert rows[0]["cores"] >= 1 and rows[0]["cpu"] and rows[0]["date"]
    fake = {
        "speedrun": done["speedrun"],
        "speedrun - muon": RecipeDone(
            recipe="speedrun - muon",
            steps=6,
            final_val_loss=done["speedrun"].final_val_loss + 0.5,
            seconds=1.0,
            time_to_target_s=None,
        ),
    }
    table = records.trick_table(fake)
    assert table[0]["trick"] == "Muon optimizer" and table[0]["bought (loss)"] == 0.5
    with pytest.raises(UserError, match="unknown recipe"):
        records.recipe_config("nope")


@pytest.mark.parametrize("name", list(TRICKS))
def test_each_trick_is_a_switch_of_the_train_command(name):
    """The train command's switch of every trick, as the trick describes it, turns it on
    and off (a new trick gets its flag by itself)."""
    from llm_playground.cli import build_parser
    from llm_playground.cli.train import build_config

    trick = TRICKS[name]
    parser = build_parser()
    words = {
        value: next((w for w, v in (trick.flag_values or {}).items() if v == value), None)
        for value in (trick.on, trick.off)
    }
    for value in (trick.on, trick.off):
        if trick.flag_values:
            flag = [trick.flag, words[value]]
        elif trick.choices or not isinstance(value, bool):
            flag = [trick.flag, str(value)]
        else:
            flag = [trick.flag if value else "--no-" + trick.flag[2:]]
        args = parser.parse_args(["train", "--preset", "speedrun", "--out", "x", *flag])
        assert trick.value_in(build_config(args)) == value
