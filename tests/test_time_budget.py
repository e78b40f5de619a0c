"""A time budget (train.max_time_minutes) drives the LR schedule: warm-up is a share of the budget, the decay
reaches 0 when it is used up, a resumed run goes on where it was. Time comes from a fake clock: no sleeping."""

import itertools
import json
import shutil

import pytest
import torch
from conftest import RECIPE, SMALL, ListLoader, TinyRegression, recipe_edits, run_cli
from torch.optim.lr_scheduler import LambdaLR

import bertkit.training.loop
from bertkit.config.sections import TrainConfig
from bertkit.training.loop import Stopper, fit
from bertkit.training.optim import BudgetLR, describe_schedule, lr_factor, make_schedule, schedule_position
from bertkit.training.runtime import make_accelerator
from bertkit.training.state import TrainState

SMALL = [*SMALL, *recipe_edits(["model.hidden_dropout_prob=0", "model.attention_probs_dropout_prob=0"])]


def _schedule(**train) -> LambdaLR:
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    return make_schedule(optimizer, TrainConfig(**train), total_steps=train.get("max_steps") or 1000)


def _lrs(scheduler: LambdaLR, seconds_per_step: float, steps: int, start: int = 0) -> list[float]:
    """The LR set after each of steps start + 1 … start + steps when every step takes `seconds_per_step` (what
    fit() does, on a fake clock)."""
    lrs = []
    for step in range(start + 1, start + steps + 1):
        scheduler.optimizer.step()
        scheduler.seconds = step * seconds_per_step
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    return lrs


def test_the_schedule_follows_the_fraction_of_the_budget_used():
    # 10 minutes, 6 s a step: the budget ends at step 100, long before the 1,000 steps.
    scheduler = _schedule(max_time_minutes=10, warmup_ratio=0.1, max_steps=1000)
    assert isinstance(scheduler, BudgetLR)
    lrs = _lrs(scheduler, 6.0, 100)
    assert lrs[4] == pytest.approx(51 / 101)  # 30 s = 5% of the budget: half-way up (position 50 of 1,000)
    assert lrs[9] == 1.0  # warm-up ends at 10% of the budget (step 10), not at step 100 of 1,000
    assert lrs[54] == pytest.approx(0.5)  # 55% of the budget: half-way down
    assert lrs[98] == pytest.approx(1 / 90) and lrs[99] == 0.0  # 0 exactly when the budget is used up
    cosine = _lrs(_schedule(max_time_minutes=10, warmup_ratio=0.1, max_steps=1000, schedule="cosine"), 6.0, 100)
    assert cosine[54] == pytest.approx(0.5) and cosine[99] == 0.0


def test_the_steps_bound_the_schedule_when_they_end_first():
    # 10 minutes, 1 s a step, 100 steps: the steps end at 1/6 of the budget; the schedule is the step schedule.
    budget = _lrs(_schedule(max_time_minutes=10, warmup_ratio=0.1, max_steps=100), 1.0, 100)
    steps = _lrs(_schedule(warmup_ratio=0.1, max_steps=100), 1.0, 100)
    assert budget == steps and steps[-1] == 0.0
    assert [lr_factor(s, 10, 100, "linear") for s in range(1, 101)] == steps
    # The faster of the two leads: time ahead of the steps, then the steps ahead of the time.
    assert schedule_position(step=10, seconds=300, total_steps=100, budget_seconds=600) == 50
    assert schedule_position(step=80, seconds=300, total_steps=100, budget_seconds=600) == 80


def test_without_a_budget_the_schedule_is_the_plain_step_schedule():
    scheduler = _schedule(warmup_ratio=0.1, max_steps=100)
    assert type(scheduler) is LambdaLR and "seconds" not in scheduler.state_dict()


def test_the_budget_schedule_state_round_trips_and_takes_the_new_budget():
    uninterrupted = _lrs(_schedule(max_time_minutes=10, warmup_ratio=0.1, max_steps=1000), 6.0, 100)
    scheduler = _schedule(max_time_minutes=10, warmup_ratio=0.1, max_steps=1000)
    _lrs(scheduler, 6.0, 40)
    state = scheduler.state_dict()
    assert state["seconds"] == 240.0 and state["last_epoch"] == 40
    again = _schedule(max_time_minutes=10, warmup_ratio=0.1, max_steps=1000)
    again.load_state_dict(state)
    assert again.seconds == 240.0 and again.get_last_lr() == [uninterrupted[39]]
    assert _lrs(again, 6.0, 60, start=40) == uninterrupted[40:]
    # Resumed under a doubled budget: the same 240 s are 20% of it (position 200 of 1,000).
    longer = _schedule(max_time_minutes=20, warmup_ratio=0.1, max_steps=1000)
    longer.load_state_dict(state)
    longer.seconds = 240.0
    longer.step()
    assert longer.get_last_lr()[0] == pytest.approx(lr_factor(200, 100, 1000, "linear"))


def test_the_schedule_is_announced():
    budget = TrainConfig(max_time_minutes=30, warmup_ratio=0.05)
    assert describe_schedule(budget, 100_000) == (
        "LR schedule (linear) over the 30-minute budget (warm-up 5%; or over 100,000 steps if they come first)"
    )
    assert describe_schedule(budget, 100_000, seconds=90).endswith("if they come first), 1.5 minutes of it used")
    assert describe_schedule(TrainConfig(warmup_ratio=0.1), 600) == "LR schedule (linear) over 600 steps (warm-up 10%)"


class _FakeClock:
    """Time that moves only when told: a training step and an evaluation say how long they took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_fit_stops_at_the_budget_with_the_lr_at_0_evaluation_not_counted(monkeypatch, tmp_path):
    clock = _FakeClock()
    monkeypatch.setattr(bertkit.training.loop, "clock", clock)
    train = TrainConfig(max_time_minutes=10 / 60, warmup_ratio=0.2, log_every=1, eval_every=3, grad_accum=2)
    accelerator = make_accelerator(train.precision, "train.precision", train.grad_accum)
    torch.manual_seed(0)
    model = TinyRegression(clock)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = make_schedule(optimizer, train, total_steps=1000)
    batch = {"x": torch.ones(2, 2), "y": torch.zeros(2), "attention_mask": torch.ones(2, 1, dtype=torch.long)}

    def evaluate(state):
        clock.now += 100.0  # an evaluation of 100 s: not training time
        return {"score": 0.0}

    evaluated, saved = [], []
    state = fit(
        accelerator,
        model,
        optimizer,
        scheduler,
        ListLoader([dict(batch) for _ in range(4)]),
        train,
        1000,
        evaluate=lambda s: evaluated.append(s.step) or evaluate(s),
        save=lambda s: saved.append((s.step, s.seconds)),
        log_file=tmp_path / "metrics.jsonl",
    )
    # Two micro-batches (2 s) a step: the 10 s budget ends after step 5, however long the evaluations took.
    assert (state.step, state.seconds, state.stopped_by, state.signal) == (5, 10.0, "time", None)
    assert evaluated == [3, 5] and saved == [(5, 10.0)]  # the stop is the run's end: evaluated and saved
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if "lr" in r]
    assert lrs == pytest.approx([lr_factor(200 * s, 200, 1000, "linear") for s in range(1, 6)])
    assert lrs[0] == 1.0 and lrs[-1] == 0.0
    # Resumed with the budget used up: no further step.
    again = fit(accelerator, model, optimizer, scheduler, ListLoader([batch]), train, 1000, state=state)
    assert (again.step, again.stopped_by) == (5, "time")


def test_early_stopping_is_asked_after_an_evaluation(monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(bertkit.training.loop, "clock", clock)
    train = TrainConfig(log_every=100, eval_every=2)
    model = TinyRegression(clock)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    batch = {"x": torch.ones(2, 2), "y": torch.zeros(2), "attention_mask": torch.ones(2, 1, dtype=torch.long)}
    saved = []
    state = fit(
        make_accelerator(train.precision, "train.precision", train.grad_accum),
        model,
        optimizer,
        make_schedule(optimizer, train, total_steps=10),
        ListLoader([dict(batch) for _ in range(10)]),
        train,
        10,
        evaluate=lambda s: {},
        save=lambda s: saved.append(s.step),
        stop=lambda: True,
    )
    assert (state.step, state.stopped_by, state.seconds, saved) == (2, "early stopping", 2.0, [2])


class _TwoProcesses:
    """An accelerator whose reduce sees another process' tensor too."""

    num_processes, device = 2, torch.device("cpu")

    def __init__(self, other: list[float]):
        self.other = torch.tensor(other, dtype=torch.float64)

    def reduce(self, tensor, reduction):
        assert reduction == "max" and tensor.dtype == torch.float64
        return torch.maximum(tensor, self.other)


def test_all_processes_agree_on_the_time_and_the_stop():
    state = TrainState(step=3, seconds=41.5)
    assert Stopper(_TwoProcesses([0.0, 42.0]), 1.0, None).check(state) is None
    assert state.seconds == 42.0  # the slower clock: every process sets the same LR
    state.seconds = 59.0
    assert Stopper(_TwoProcesses([0.0, 60.0]), 1.0, None).check(state) == "time" and state.seconds == 60.0
    assert Stopper(_TwoProcesses([1.0, 0.0]), 1.0, None).check(state) == "signal"  # the other got SIGTERM


def test_the_progress_bar_counts_to_where_the_budget_ends():
    timed, untimed = Stopper(_TwoProcesses([0.0]), 1.0, None), Stopper(_TwoProcesses([0.0]), None, None)
    # 100 steps in 20 of 60 s: 200 more at that rate, unless max_steps comes first.
    assert timed.last_step(TrainState(step=100, seconds=20.0), 1_000_000) == 300
    assert timed.last_step(TrainState(step=100, seconds=20.0), 250) == 250
    assert timed.last_step(TrainState(step=100, seconds=70.0), 1_000_000) == 100  # spent
    assert timed.last_step(TrainState(), 1_000_000) == 1_000_000  # no rate yet
    assert untimed.last_step(TrainState(step=100, seconds=20.0), 1_000_000) == 1_000_000


# End to end: every clock reading moves the fake time on by 1 s. fit() reads the clock once when a step ends
# and once when its evaluation and checkpoint are done, so each optimizer step takes exactly 1 s.
def _tick(monkeypatch):
    ticks = itertools.count()
    monkeypatch.setattr(bertkit.training.loop, "clock", lambda: float(next(ticks)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("budget")
    assert run_cli("tokenize", RECIPE, f"output_dir={out}", *SMALL).exit_code == 0
    return out / "data"


BUDGET = ["train.max_steps=1000", "train.max_time_minutes=0.1", "train.warmup_ratio=0.2", "train.batch_size=8"]


def _pretrain(out, data_dir, *extra):
    result = run_cli("pretrain", RECIPE, f"output_dir={out}", f"data.dataset_dir={data_dir}", *SMALL, *extra)
    assert result.exit_code == 0, result.output
    return result.output


def _records(out):
    return [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_pretraining_on_a_budget_decays_to_0_when_it_ends(data_dir, tmp_path, monkeypatch):
    _tick(monkeypatch)
    output = _pretrain(tmp_path, data_dir, *BUDGET)
    assert "LR schedule (linear) over the 0.1-minute budget (warm-up 20%; or over 1,000 steps" in output
    assert "stopped at step 6 of 1000: the 0.1-minute budget is used up" in output  # 6 steps of 1 s
    records = _records(tmp_path)
    lrs = {r["step"]: r["lr"] for r in records if "lr" in r}
    peak = 1e-3  # the recipe's train.lr
    expected = {s: peak * lr_factor(s / 6 * 1000, 200, 1000, "linear") for s in range(1, 7)}
    assert lrs == pytest.approx(expected) and lrs[6] == 0.0
    assert [r["step"] for r in records if "eval/mlm_accuracy" in r] == [6]  # evaluated at the stop
    saved = torch.load(tmp_path / "pretrain" / "checkpoints" / "step-6" / "training_state.pt", weights_only=True)
    assert saved["seconds"] == 6.0


@pytest.mark.slow
def test_resuming_mid_budget_continues_the_schedule(data_dir, tmp_path, monkeypatch):
    _tick(monkeypatch)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _pretrain(straight, data_dir, *BUDGET, "train.save_every=2", "train.keep_last=5")
    # What a run killed between steps 4 and 6 leaves: checkpoints up to step-4, no final model.
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "pretrain" / "checkpoints" / "step-6")
    (resumed / "pretrain" / "model.safetensors").unlink()
    _tick(monkeypatch)  # a new process: its clock starts anew, the 4 s of training come from the checkpoint
    output = _pretrain(resumed, data_dir, *BUDGET, "train.save_every=2", "train.keep_last=5", "train.resume=auto")
    assert "at step 4" in output and "0.1 minutes of it used" in output
    a, b = _records(straight), _records(resumed)
    assert [r["step"] for r in b if "lr" in r] == [1, 2, 3, 4, 5, 6]
    assert {r["step"]: r["lr"] for r in b if "lr" in r} == {r["step"]: r["lr"] for r in a if "lr" in r}
    assert {r["step"]: r["loss"] for r in b if "loss" in r} == pytest.approx(
        {r["step"]: r["loss"] for r in a if "loss" in r}, rel=1e-6
    )


@pytest.mark.slow
def test_fine_tuning_on_a_budget(data_dir, tmp_path, monkeypatch):
    base = tmp_path / "base"
    _pretrain(base, data_dir, "train.max_steps=1")
    _tick(monkeypatch)
    finetune = [
        f"output_dir={tmp_path}",
        f"finetune.model_dir={base / 'pretrain'}",
        "finetune.train.epochs=50",
        "finetune.train.max_time_minutes=0.05",  # 3 s: 3 steps
        "finetune.train.log_every=1",
        "finetune.task.max_seq_length=32",
    ]
    result = run_cli("finetune", RECIPE, *finetune)
    assert result.exit_code == 0, result.output
    assert "LR schedule (linear) over the 0.05-minute budget (warm-up 10%" in result.output
    assert "stopped at step 3 of" in result.output and "budget is used up" in result.output
    records = [json.loads(line) for line in (tmp_path / "finetune" / "topic" / "metrics.jsonl").open()]
    assert [r["step"] for r in records if "lr" in r] == [1, 2, 3] and records[-2]["lr"] == 0.0
    assert [r["step"] for r in records if "eval/accuracy" in r] == [3]  # the final, fully decayed model is scored
