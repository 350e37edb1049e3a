"""Precision decided on the work itself: core.hardware.decide_precision with a fake timer
(the faster wins, by a margin; one measurement per shape of work; float32 without measuring
where bf16 is not supported; the machine cache), and a training run that records the
decision in its events and its config.json, with the same losses as the dtype asked for."""

import json
import time

import pytest

from llm_playground.core import hardware
from llm_playground.core.hardware import PrecisionChoice, WorkKey, decide_precision
from llm_playground.training import precision as training_precision
from llm_playground.training.config import preset
from llm_playground.training.engine import run_training
from llm_playground.training.events import TrainStarted, TrainStep


@pytest.fixture(autouse=True)
def fresh_decisions():
    hardware.clear_precision_decisions()
    yield
    hardware.clear_precision_decisions()


class FakeWork:
    """A step that costs ``seconds[dtype]`` on a fake clock, counting its calls."""

    def __init__(self, fp32: float, bf16: float):
        self.seconds = {"float32": fp32, "bfloat16": bf16}
        self.clock = 0.0
        self.calls: list[str] = []

    def step(self, dtype: str) -> None:
        self.calls.append(dtype)
        self.clock += self.seconds[dtype]

    def timer(self) -> float:
        return self.clock


WORK = WorkKey.of("train", batch=12, block=64, model=(("n_embd", 128),))


def decide(work: WorkKey, fake: FakeWork, **options) -> PrecisionChoice:
    return decide_precision(work, fake.step, timer=fake.timer, supported=True, **options)


def test_the_faster_precision_wins_with_its_measured_ratio():
    fast_bf16 = decide(WORK, FakeWork(fp32=0.030, bf16=0.015))
    assert fast_bf16.dtype == "bfloat16" and fast_bf16.measured
    assert fast_bf16.ratio == pytest.approx(2.0)
    assert (fast_bf16.seconds_fp32, fast_bf16.seconds_bf16) == pytest.approx((0.030, 0.015))
    slow_bf16 = decide(WorkKey.of("train", batch=64), FakeWork(fp32=0.030, bf16=0.040))
    assert slow_bf16.dtype == "float32" and slow_bf16.ratio == pytest.approx(0.75)
    assert "0.75x" in slow_bf16.summary() and slow_bf16.summary().startswith("float32 (auto")


def test_bf16_needs_the_margin_to_be_chosen():
    assert hardware.PRECISION_MIN_SPEEDUP == pytest.approx(1.1)
    just_below = decide(WorkKey.of("train", batch=1), FakeWork(fp32=1.05, bf16=1.0))
    assert just_below.dtype == "float32" and just_below.ratio == pytest.approx(1.05)
    above = decide(WorkKey.of("train", batch=2), FakeWork(fp32=1.15, bf16=1.0))
    assert above.dtype == "bfloat16"


def test_warm_up_then_interleaved_rounds_keep_each_precisions_fastest():
    fake = FakeWork(fp32=1.0, bf16=1.0)
    costs = iter([9.0, 9.0, 3.0, 2.0, 1.0, 4.0, 2.0, 1.5])  # warm-ups are slow and not timed

    def step(dtype: str) -> None:
        fake.calls.append(dtype)
        fake.clock += next(costs)

    choice = decide_precision(WORK, step, timer=fake.timer, supported=True, rounds=3)
    assert fake.calls == ["float32", "bfloat16"] + ["float32", "bfloat16"] * 3
    assert (choice.seconds_fp32, choice.seconds_bf16) == (1.0, 1.5)
    assert choice.dtype == "float32"


def test_a_ratio_near_the_margin_is_timed_for_twice_the_rounds():
    rounds = hardware.PRECISION_ROUNDS
    clear = FakeWork(fp32=2.0, bf16=1.0)  # 2x: far from the margin
    decide(WorkKey.of("train", batch=3), clear)
    assert len(clear.calls) == 2 + 2 * rounds
    close = FakeWork(fp32=1.2, bf16=1.0)  # 1.2x: within 1.2x of the 1.1x margin
    decide(WorkKey.of("train", batch=4), close)
    assert len(close.calls) == 2 + 2 * 2 * rounds


def test_one_measurement_per_shape_of_work():
    first = FakeWork(fp32=2.0, bf16=1.0)
    choice = decide(WORK, first)
    assert len(first.calls) == 2 + 2 * hardware.PRECISION_ROUNDS
    again = FakeWork(fp32=1.0, bf16=2.0)  # would decide otherwise: it is never run
    assert decide(WORK, again) is choice and again.calls == []
    other_batch = WorkKey.of("train", batch=24, block=64, model=(("n_embd", 128),))
    other = FakeWork(fp32=1.0, bf16=2.0)
    assert decide(other_batch, other).dtype == "float32" and other.calls
    on_another_device = WorkKey("train", WORK.shape, device="cuda")
    assert on_another_device != WORK


def test_float32_without_measuring_where_bf16_is_not_supported(monkeypatch):
    fake = FakeWork(fp32=2.0, bf16=1.0)
    choice = decide_precision(WORK, fake.step, timer=fake.timer, supported=False)
    assert choice.dtype == "float32" and not choice.measured and choice.ratio is None
    assert fake.calls == []
    hardware.clear_precision_decisions()
    monkeypatch.setattr(hardware, "has_bf16_instructions", lambda flags=None: False)
    assert hardware.bf16_supported("cpu")[0] is False
    choice = decide_precision(WORK, fake.step, timer=fake.timer)
    assert choice.dtype == "float32" and "no native bf16" in choice.summary()
    assert fake.calls == []


def test_a_bf16_failure_falls_back_to_float32():
    def step(dtype: str) -> None:
        if dtype == "bfloat16":
            raise RuntimeError('"addmm" not implemented for BFloat16')

    choice = decide_precision(WORK, step, supported=True)
    assert choice.dtype == "float32" and not choice.measured and "bf16 failed" in choice.reason


def test_explicit_precisions_measure_nothing():
    assert hardware.asked_precision("bfloat16").summary() == "bfloat16 (as asked)"
    with pytest.raises(hardware.UserError, match="unknown dtype"):
        hardware.asked_precision("float16")


def test_the_machine_cache_is_written_and_read_back(tmp_path):
    cache = tmp_path / "precision.json"
    measured = decide(WORK, FakeWork(fp32=3.0, bf16=1.0), cache_file=cache)
    entries = json.loads(cache.read_text())["entries"]
    (key,) = entries
    assert hardware.cpu_model() in key and "threads" in key and WORK.text() in key
    assert not list(tmp_path.glob("*.tmp"))  # written under a temporary name, renamed
    hardware.clear_precision_decisions()  # a new process on the same machine
    unused = FakeWork(fp32=1.0, bf16=3.0)
    read = decide(WORK, unused, cache_file=cache)
    assert unused.calls == [] and read.dtype == "bfloat16" and read.measured
    assert read.ratio == measured.ratio and "measured on this machine" in read.reason
    # an entry older than the limit, or a damaged file, is measured again
    old = time.time() - (hardware.PRECISION_CACHE_DAYS + 1) * 86400
    entries[key]["measured_at"] = old
    cache.write_text(json.dumps({"version": 1, "entries": entries}))
    hardware.clear_precision_decisions()
    again = FakeWork(fp32=1.0, bf16=3.0)
    assert decide(WORK, again, cache_file=cache).dtype == "float32" and again.calls
    cache.write_text("{not json")
    hardware.clear_precision_decisions()
    damaged = FakeWork(fp32=1.0, bf16=3.0)
    assert decide(WORK, damaged, cache_file=cache).dtype == "float32" and damaged.calls
    assert json.loads(cache.read_text())["entries"]  # rewritten whole


# --- the training run ----------------------------------------------------------------------


def tiny(name: str, **changes):
    base = dict(
        n_layer=1,
        n_head=2,
        n_embd=32,
        block_size=16,
        batch_size=4,
        max_iters=4,
        eval_interval=4,
        eval_iters=1,
        sample_tokens=0,
        warmup_iters=1,
        device="cpu",
    )
    return preset(name, **{**base, **changes})


@pytest.fixture
def fake_timings(monkeypatch):
    """Real steps of the run's work, timed on a fake clock: bf16 twice as fast for the
    training steps, twice as slow for Newton-Schulz; every work kind decided is listed."""
    costs = {"train": {"float32": 2.0, "bfloat16": 1.0}}
    costs["newton-schulz"] = {"float32": 1.0, "bfloat16": 2.0}
    decided: list[WorkKey] = []

    def fake_decide(work, run_step, timer):
        clock = [0.0]

        def step(dtype: str) -> None:
            run_step(dtype)  # the real work runs: it must not disturb the run
            clock[0] += costs[work.kind][dtype]

        decided.append(work)
        return decide_precision(work, step, timer=lambda: clock[0], supported=True)

    monkeypatch.setattr(training_precision, "_decide", fake_decide)
    return decided


def test_auto_records_the_decided_dtype_and_ratio_in_the_run(tmp_path, fake_timings):
    out = tmp_path / "run"
    events = list(run_training(tiny("speedrun", dtype="auto", out_dir=str(out))))
    started = events[0]
    assert isinstance(started, TrainStarted) and started.dtype == "bfloat16"
    assert started.bf16_ratio == pytest.approx(2.0)
    assert "2.00x" in started.precision and "Newton-Schulz in float32" in started.precision
    assert [work.kind for work in fake_timings] == ["newton-schulz", "train"]
    assert dict(fake_timings[1].shape)["batch"] == 4
    meta = json.loads((out / "config.json").read_text())
    assert meta["train"]["dtype"] == "auto"  # what was asked, so a resume decides again
    compute, ns = meta["precision"]["compute"], meta["precision"]["newton_schulz"]
    assert compute["dtype"] == "bfloat16" and compute["ratio"] == pytest.approx(2.0)
    assert compute["measured"] and compute["seconds_fp32"] > compute["seconds_bf16"]
    assert ns["dtype"] == "float32" and ns["ratio"] == pytest.approx(0.5)
    restored = training_precision.TrainingPrecision.from_dict(meta["precision"])
    assert restored.summary() == started.precision


def test_the_timed_steps_leave_the_run_as_the_chosen_dtype_would_run_it(fake_timings):
    def run_losses(dtype: str) -> list[float]:
        events = run_training(tiny("baby-gpt", dtype=dtype, dropout=0.1))
        return [e.loss for e in events if isinstance(e, TrainStep)]

    decided = run_losses("auto")  # bf16 by the fake timings, after timed throwaway steps
    assert fake_timings and decided == run_losses("bfloat16")


# --- perplexity --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A few float32 steps of a tiny speedrun GPT, saved (shared by the tests below)."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    list(run_training(tiny("speedrun", dtype="float32", out_dir=str(out))))
    return out


def tiny_model(folder):
    """The tiny run loaded as Labs 3 and 5 load a run folder."""
    from llm_playground.generation.registry import find_model, load_model

    return load_model(find_model(folder=folder))


def test_an_explicit_dtype_is_recorded_as_asked(tiny_run):
    meta = json.loads((tiny_run / "config.json").read_text())
    assert meta["train"]["dtype"] == "float32"
    compute, ns = meta["precision"]["compute"], meta["precision"]["newton_schulz"]
    assert compute["requested"] == "float32" and not compute["measured"]
    assert compute["ratio"] is None and ns["dtype"] == "float32"


def fake_hardware_timings(monkeypatch, fp32: float, bf16: float) -> list[WorkKey]:
    """core.hardware's decisions run the real steps but read a fake clock; returns the list
    of the work measured."""
    decided: list[WorkKey] = []

    def fake_decide(work, run_step, **options):  # the machine cache left out
        fake = FakeWork(fp32=fp32, bf16=bf16)

        def step(dtype: str) -> None:
            if not fake.calls:
                decided.append(work)  # measured (a kept decision runs no step)
            run_step(dtype)  # the real work
            fake.step(dtype)

        return decide_precision(work, step, timer=fake.timer, supported=True)

    monkeypatch.setattr(hardware, "decide_precision", fake_decide)
    return decided


def test_perplexity_auto_decides_on_a_window_of_its_text(tiny_run, monkeypatch):
    from llm_playground.evaluation.perplexity import PRECISION_WINDOW, perplexity

    loaded = tiny_model(tiny_run)
    decided = fake_hardware_timings(monkeypatch, fp32=1.0, bf16=0.8)  # bf16 1.25x faster
    text = "To be, or not to be, that is the question. " * 4
    auto = perplexity(loaded, text, stride=8, dtype="auto")
    assert auto.dtype == "bfloat16" and auto.bf16_ratio == pytest.approx(1.25)
    assert "1.25x" in auto.precision and auto.to_json()["precision"] == auto.precision
    (work,) = decided
    assert work.kind == "perplexity" and dict(work.shape)["window"] <= PRECISION_WINDOW
    bf16 = perplexity(loaded, text, stride=8, dtype="bfloat16")
    assert auto.token_perplexity == bf16.token_perplexity  # the same run as asking for bf16
    fp32 = perplexity(loaded, text, stride=8, dtype="float32")
    assert fp32.precision == "float32 (as asked)" and fp32.bf16_ratio is None
    assert len(decided) == 1  # explicit precisions time nothing


# --- decoding ----------------------------------------------------------------------------


def test_decoding_auto_times_decoding_steps_and_takes_the_faster(tiny_run, monkeypatch):
    import torch

    from llm_playground.generation.decoding import DecodingConfig, generate
    from llm_playground.generation.runner import at_precision, decoding_precision

    loaded = tiny_model(tiny_run)
    decided = fake_hardware_timings(monkeypatch, fp32=1.0, bf16=1.5)  # bf16 slower
    choice = decoding_precision(loaded)
    assert choice.dtype == "float32" and choice.ratio == pytest.approx(1 / 1.5)
    assert at_precision(loaded, "auto") is loaded  # the same decision, kept for the process
    (work,) = decided
    assert work.kind == "decode" and dict(work.shape)["threads"] == torch.get_num_threads()
    hardware.clear_precision_decisions()
    decided = fake_hardware_timings(monkeypatch, fp32=1.5, bf16=1.0)  # bf16 faster
    auto = at_precision(loaded, "auto")
    assert next(auto.model.parameters()).dtype == torch.bfloat16
    assert next(loaded.model.parameters()).dtype == torch.float32  # a copy
    config = DecodingConfig("greedy", max_new_tokens=4)
    tokens = generate(auto, "ROMEO:", config, chat_template=False).ids
    assert (
        tokens == generate(at_precision(loaded, "bf16"), "ROMEO:", config, chat_template=False).ids
    )
