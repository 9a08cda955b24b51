"""train.lr/epochs/batch_size: auto (training/auto.py): the range test leaves no trace, and each rule
picks its documented value on synthetic curves and at the edges (1 row, 100k rows, tiny memory)."""

from __future__ import annotations

import math
import random

import pytest
import torch

import tunery
from tunery.config import LR_FAMILIES
from tunery.training import auto
from tunery.training.auto import (
    AutoPlan,
    choose_batch_size,
    choose_epochs,
    pick_lr,
    range_test,
    range_test_size,
    smooth,
    sweep,
)
from tunery.training.recipe import train as train_run

# --- the range test restores everything ---------------------------------------------------------


def tiny_training(seed: int = 0):
    """A frozen 'base' layer and a trainable head with dropout, AdamW (one real step taken) and a schedule."""
    from transformers import get_scheduler

    torch.manual_seed(seed)
    base, head = torch.nn.Linear(8, 8), torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    base.requires_grad_(False)
    model = torch.nn.Sequential(base, head)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=2, num_training_steps=20)

    def step(_: int) -> float:
        x = torch.randn(4, 8)  # draws from the RNG, as dropout does
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    step(0)  # the optimiser has state to restore
    return model, optimizer, scheduler, step


def equal_states(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal_states(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(equal_states(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_the_range_test_restores_weights_optimiser_schedule_and_rng_bit_for_bit():
    model, optimizer, scheduler, step = tiny_training()
    import copy

    weights = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    scheduler_state = copy.deepcopy(scheduler.state_dict())
    rng = torch.get_rng_state()
    python_rng = random.getstate()

    losses = range_test(model, optimizer, scheduler, step, sweep("lora", 12))

    assert len(losses) >= 2  # it trained
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert equal_states(optimizer.state_dict(), optimizer_state)
    assert equal_states(scheduler.state_dict(), scheduler_state)
    assert torch.equal(torch.get_rng_state(), rng) and random.getstate() == python_rng
    assert all(p.grad is None for p in model.parameters())


def test_after_a_range_test_training_continues_exactly_as_without_it():
    model_a, _, _, step_a = tiny_training()
    losses_a = [step_a(0) for _ in range(3)]
    model_b, optimizer_b, scheduler_b, step_b = tiny_training()
    range_test(model_b, optimizer_b, scheduler_b, step_b, sweep("lora", 12))
    assert [step_b(0) for _ in range(3)] == losses_a
    assert all(torch.equal(a, b) for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True))


def test_the_range_test_sets_each_lr_even_when_warm_up_starts_the_schedule_at_zero():
    from transformers import get_scheduler

    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=5, num_training_steps=50)
    assert optimizer.param_groups[0]["lr"] == 0.0
    seen: list[float] = []

    def step(_: int) -> float:
        seen.append(optimizer.param_groups[0]["lr"])
        model(torch.ones(1, 4)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        return 1.0

    range_test(model, optimizer, scheduler, step, [1e-4, 1e-3, 1e-2])
    assert seen == pytest.approx([1e-4, 1e-3, 1e-2])
    assert optimizer.param_groups[0]["lr"] == 0.0  # and the schedule is back where it was


def test_the_range_test_stops_at_divergence_and_keeps_group_ratios():
    model, optimizer, scheduler, _ = tiny_training()
    optimizer.add_param_group(
        {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.5e-3, "initial_lr": 0.5e-3}
    )
    seen: list[tuple[float, float]] = []

    def diverging(i: int) -> float:
        seen.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"]))
        return [1.0, 0.9, 0.8, 50.0, math.inf, 1.0][i]

    losses = range_test(model, optimizer, scheduler, diverging, [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert losses[-1] in (50.0, math.inf) and len(losses) < 6
    assert seen[:3] == [
        pytest.approx((lr, lr / 2)) for lr in (1e-5, 1e-4, 1e-3)
    ]  # a group at half keeps half


# --- the rule on synthetic curves ----------------------------------------------------------------


def u_shape(lrs: list[float], noise: float = 0.0, seed: int = 0) -> list[float]:
    """Flat, falling fastest near lr 1e-3 to a minimum at 3e-3, rising again (not diverging)."""
    rng = random.Random(seed)
    return [2.0 - 1.5 * math.exp(-(((math.log10(lr) + 2.5) / 0.8) ** 2)) + rng.gauss(0, noise) for lr in lrs]


def documented_point(lrs: list[float], losses: list[float]) -> float:
    """A tenth of the lr at the smoothed curve's minimum."""
    smoothed = smooth(losses)
    return lrs[min(range(len(smoothed)), key=smoothed.__getitem__)] / 10


def test_a_clean_u_shape_gives_a_tenth_of_the_minimums_lr():
    lrs = sweep("lora", 30)
    losses = u_shape(lrs)
    choice = pick_lr(lrs, losses, "lora")
    assert choice.value == pytest.approx(documented_point(lrs, losses), rel=1e-2)
    assert 3e-4 <= choice.value <= 1e-3  # the true minimum is at 3e-3; the EMA lags it a step or two
    assert choice.numbers["steepest_lr"] < choice.numbers["min_loss_lr"]  # the other reading, recorded
    assert "a tenth of the lr at the smoothed loss's minimum" in choice.reason


@pytest.mark.parametrize("seed", range(5))
def test_a_noisy_u_shape_stays_near_the_clean_answer(seed):
    lrs = sweep("lora", 30)
    choice = pick_lr(lrs, u_shape(lrs, noise=0.08, seed=seed), "lora")
    clean = pick_lr(lrs, u_shape(lrs), "lora").value
    assert clean / 2.5 <= choice.value <= clean * 2.5


def test_a_loss_still_falling_at_the_end_gives_the_familys_highest():
    lrs = sweep("lora", 20)
    choice = pick_lr(lrs, [3.0 - 0.1 * i for i in range(20)], "lora")
    assert choice.value == LR_FAMILIES["lora"][2]
    assert "still fell" in choice.reason and "clamped" in choice.reason


def test_a_loss_rising_from_the_first_step_gives_the_familys_lowest():
    lrs = sweep("lora", 12)
    choice = pick_lr(lrs[:4], [2.0, 9.0, 40.0, math.inf], "lora")
    assert choice.value == LR_FAMILIES["lora"][1]
    assert "rose from the first step" in choice.reason


def test_divergence_cuts_the_curve_before_the_minimum_is_taken():
    lrs = sweep("lora", 14)
    losses = [2.0, 2.0, 1.9, 1.6, 1.2, 0.9, 0.7, 0.8, 5.0, math.inf]  # a late spike, then NaN
    choice = pick_lr(lrs[: len(losses)], losses, "lora")
    assert choice.numbers["diverged_at_lr"] is not None
    assert choice.numbers["min_loss_lr"] in lrs[5:8]


def test_the_clamp_keeps_each_family_in_its_safe_range():
    lrs = sweep("full", 30)
    assert pick_lr(lrs, [3.0 - 0.1 * i for i in range(30)], "full").value == LR_FAMILIES["full"][2]
    assert sweep("lora", 2) == pytest.approx([LR_FAMILIES["lora"][1] / 3, LR_FAMILIES["lora"][2] * 20])


def test_the_sample_batch_is_the_examples_nearest_the_median_length():
    lengths = [5, 100, 40, 41, 39, 2, 40]
    assert auto.sample_batch(lengths, 3) == [2, 6, 3]  # median 40: the two 40s, then 41 (before 39)
    assert auto.sample_batch([7], 4) == [0]


def test_the_test_costs_at_most_a_tenth_of_the_run_and_is_skipped_when_too_short():
    assert range_test_size(run_examples=100, batch=8) is None  # 10 examples: not 12 steps of 1
    assert range_test_size(run_examples=320, batch=8) == (2, 12)  # the demo: 25 examples
    assert range_test_size(run_examples=100_000, batch=8) == (8, 36)
    for examples in (150, 640, 5000):
        batch, steps = range_test_size(examples, 8)
        assert batch * steps <= auto.TEST_SHARE * examples and steps >= auto.MIN_TEST_STEPS


# --- epochs and batch size at the edges ----------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "tokens", "epochs"),
    [
        (1, 10, 10),
        (60, 600, 10),
        (240, 2400, 3),
        (300, 3000, 2),
        (401, 4010, 1),
        (100_000, 10**6, 1),
        (300, 10**6, 1),
    ],  # fmt: skip
)
def test_auto_epochs_give_small_sets_more_passes(rows, tokens, epochs):
    assert choose_epochs(rows, tokens).value == epochs


def test_auto_batch_size_for_one_row_is_one():
    assert choose_batch_size(1, 10, 20.0, 20, 10**6, 1024).value == 1


def test_auto_batch_size_for_100k_rows_follows_the_token_budget():
    choice = choose_batch_size(100_000, 100_000, 100.0, 512, 10**6, 1024)
    assert choice.value == 16  # 2048 / 100 = 20, down to a power of two
    assert choose_batch_size(100_000, 100_000, 10.0, 64, 10**6, 1024).value == auto.MAX_AUTO_BATCH


def test_auto_batch_size_never_exceeds_what_fits():
    tiny = choose_batch_size(100_000, 100_000, 100.0, 512, fit_tokens=300, max_batch_tokens=1024)
    assert tiny.value == 1 and "may not fit" in tiny.reason
    unsplit = choose_batch_size(100_000, 100_000, 50.0, 100, fit_tokens=1000, max_batch_tokens=None)
    assert unsplit.value == 8  # 1000 tokens / 100-token examples = 10, down to a power of two
    split = choose_batch_size(100_000, 100_000, 50.0, 100, fit_tokens=2000, max_batch_tokens=1024)
    assert split.value == 32  # passes of <= 1024 tokens fit: memory does not bound it


def test_auto_batch_size_divides_over_the_processes_and_counts_accumulation():
    assert choose_batch_size(1, 10, 20.0, 20, 10**6, 1024, world=4).value == 4
    two = choose_batch_size(100_000, 100_000, 50.0, 100, fit_tokens=1000, max_batch_tokens=None, world=2)
    assert two.value == 16  # each process fits 10 examples: 20 in all, down to a power of two
    assert choose_batch_size(100_000, 100_000, 100.0, 512, 10**6, 1024, grad_accum=4).value == 4
    assert choose_batch_size(24, None, 20.0, 20, 10**6, 1024).value == 16  # max_steps: no more than the rows


def test_memory_estimate_for_smollm2_is_about_four_megabytes_a_token():
    from types import SimpleNamespace

    from tunery.training.memory import activation_bytes_per_token

    smollm2 = SimpleNamespace(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, vocab_size=49152)
    per_token = activation_bytes_per_token(smollm2, 4, checkpointing=False)
    assert 3e6 < per_token < 5e6
    assert activation_bytes_per_token(smollm2, 4, checkpointing=True) < per_token / 3


# --- in a run ------------------------------------------------------------------------------------


def auto_config(model_dir, files, out, **train) -> dict:
    train_file, valid_file = files
    return {
        "model": str(model_dir),
        "data": {"train": str(train_file), "validation": str(valid_file), "max_length": 64},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
        "train": {"seed": 7, "warmup_ratio": 0.0, "threads": 1, **train},
        "output_dir": str(out),
    }


def test_an_auto_run_records_each_choice_and_trains_as_the_same_run_with_that_lr(
    tiny_model_dir, chat_files, tmp_path
):
    config = auto_config(tiny_model_dir, chat_files, tmp_path, max_steps=20, batch_size=8)
    tested = tunery.train({**config, "run_name": "auto"}, quiet=True)
    record = tested.record["auto"]
    lr = record["resolved"]["lr"]
    assert [c["key"] for c in record["choices"]] == ["train.epochs", "train.lr"]
    assert record["curve"]["lrs"] and len(record["curve"]["losses"]) == len(record["curve"]["lrs"])
    assert tested.record["config"]["train"]["lr"] == lr

    config["train"]["lr"] = lr
    plain = tunery.train({**config, "run_name": "plain"}, quiet=True)
    assert plain.record["auto"]["choices"] == [record["choices"][0]]  # epochs only; lr was given
    losses = [[row["loss"] for row in run.history() if "loss" in row] for run in (tested, plain)]
    assert losses[0] == losses[1]  # the range test left nothing behind


def test_a_rerun_takes_the_lr_from_the_cache(tiny_model_dir, chat_files, tmp_path, monkeypatch):
    config = auto_config(tiny_model_dir, chat_files, tmp_path, max_steps=20, batch_size=8)
    first = train_run({**config, "run_name": "first"}, quiet=True, dry_run=True)
    monkeypatch.setattr(auto, "range_test_size", lambda *_: pytest.fail("the range test ran again"))
    second = train_run({**config, "run_name": "second"}, quiet=True, dry_run=True)
    lr = [c for c in second.record["auto"]["choices"] if c["key"] == "train.lr"][0]
    assert "cached" in lr["reason"] and lr["value"] == first.record["auto"]["resolved"]["lr"]
    assert second.record["status"] == "planned" and not second.adapter_dir.exists()


def test_a_short_run_skips_the_range_test_and_says_why(tiny_model_dir, chat_files, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNERY_HOME", str(tmp_path / "home"))  # no range test cached by another test
    run = train_run({**auto_config(tiny_model_dir, chat_files, tmp_path, max_steps=3, batch_size=4), "run_name": "short"},
                    quiet=True, dry_run=True)  # fmt: skip
    lr = [c for c in run.record["auto"]["choices"] if c["key"] == "train.lr"][0]
    assert lr["value"] == LR_FAMILIES["lora"][0] and "too few for a range test" in lr["reason"]
    assert run.record["auto"]["curve"] is None


def test_auto_epochs_switch_on_early_stopping_or_say_it_needs_validation(
    tiny_model_dir, chat_files, tmp_path
):
    config = auto_config(tiny_model_dir, chat_files, tmp_path, lr=5e-3, batch_size=4)
    with_valid = train_run({**config, "run_name": "valid"}, quiet=True, dry_run=True).record["auto"]
    assert with_valid["resolved"] == {"epochs": 10.0, "early_stopping_patience": 2, "load_best": True}
    config["data"] = {"train": config["data"]["train"], "validation_split": 0.0, "max_length": 64}
    without = train_run({**config, "run_name": "no-valid"}, quiet=True, dry_run=True).record["auto"]
    notes = {c["key"]: c for c in without["choices"]}
    assert "early stopping needs a validation set" in notes["train.early_stopping_patience"]["reason"]
    assert "load_best" not in without["resolved"]


def test_a_recorded_plan_round_trips_for_resume():
    plan = AutoPlan()
    plan.add(choose_epochs(300, 3000), epochs=2.0)
    again = AutoPlan.from_record(plan.record())
    assert again.resolved == {"epochs": 2.0} and again.choices == plan.choices
