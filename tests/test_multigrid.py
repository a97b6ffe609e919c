"""Multigrid schedules against hand-derived tables (Wu et al. 2020 / PySlowFast semantics)."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from vidact.errors import UsageError
from vidact.train.lr import LRSchedule
from vidact.train.multigrid import (
    allowed_batch_mult,
    build_schedule,
    clips_ratio,
    describe_batch_rule,
    format_table,
    long_cycle_shapes,
    lr_multiplier,
    paper_batch_warning,
    short_cycle_shapes,
)

STEP = LRSchedule(base_lr=0.1, epochs=20, kind="step", steps=(8, 16), gamma=0.1)

# Hand derivation for STEP (stages [0, 8), [8, 16), fine-tune stage [16, 20)), T=16, S=112, B=8:
#   multipliers 8, 4, 2, 1 (sum 15); a stage of 8 epochs splits into 64/15, 32/15, 16/15, 8/15
#   epochs (8/15 "iterations" each); iterations before fine-tune 2 * 4 * 8/15 = 64/15, so the
#   saving is 16 / (64/15) = 3.75 and the fine-tune is 4 / 3.75 = 16/15 epochs at 1x.
#   Total 16 + 16/15 = 256/15 is rescaled to 20 * 1.5 = 30: factor 30 * 15 / 256 = 225/128.
#   Phase ends: 64/15 * 225/128 = 7.5, then 11.25, 13.125, 14.0625 (= 8 * 225/128), 21.5625,
#   25.3125, 27.1875, 28.125, and the fine-tune 28.125 -> 30, split in halves at 29.0625.
#   Shapes: T 4, 8, 8, 16; S round(112/sqrt2) = 79, 79, 112, 112; batch 64, 32, 16, 8.
#   LR = 0.1 * 0.1**stage * multiplier; fine-tune halves at 0.1 * 0.01 then 0.1 * 0.001.
LONG_TABLE = [
    # start, end, T, S, batch, LR
    (0.0, 7.5, 4, 79, 64, 0.8),
    (7.5, 11.25, 8, 79, 32, 0.4),
    (11.25, 13.125, 8, 112, 16, 0.2),
    (13.125, 14.0625, 16, 112, 8, 0.1),
    (14.0625, 21.5625, 4, 79, 64, 0.08),
    (21.5625, 25.3125, 8, 79, 32, 0.04),
    (25.3125, 27.1875, 8, 112, 16, 0.02),
    (27.1875, 28.125, 16, 112, 8, 0.01),
    (28.125, 29.0625, 16, 112, 8, 0.01),
    (29.0625, 30.0, 16, 112, 8, 0.001),
]


def _table(schedule):
    return [
        (p.start, p.end, p.frames, p.size, schedule.batch_size * p.batch_mult, schedule.lr(p.start))
        for p in schedule.phases
    ]


def _assert_table(actual, expected):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got[2:5] == want[2:5]
        assert got[0] == pytest.approx(want[0], abs=1e-9)
        assert got[1] == pytest.approx(want[1], abs=1e-9)
        assert got[5] == pytest.approx(want[5], rel=1e-9)


def test_long_cycle_step_schedule_equals_hand_derived_table():
    schedule = build_schedule("long", STEP, frames=16, size=112, batch_size=8, stride=2)
    assert schedule.total_epochs == 30
    _assert_table(_table(schedule), LONG_TABLE)
    assert [p.fine_tune for p in schedule.phases] == [False] * 8 + [True, True]
    # the LR is constant inside a phase and changes at its end
    assert schedule.lr(7.4999) == pytest.approx(0.8)
    assert schedule.lr(29.0624) == pytest.approx(0.01)
    assert schedule.lr(29.0625) == pytest.approx(0.001)


def test_each_long_cycle_shape_gets_equal_iterations():
    schedule = build_schedule("long", STEP, frames=16, size=112, batch_size=8)
    cycled = [p for p in schedule.phases if not p.fine_tune]
    for stage in (cycled[:4], cycled[4:]):
        iters = [(p.end - p.start) / p.batch_mult for p in stage]
        assert iters == pytest.approx([iters[0]] * 4)


# PySlowFast's short cycle (the default), hand-derived for STEP at T=16, S0=112, B=8. Crops are
# 0.5 and sqrt(0.5) of the *default* S0 (56, 79), then the long-cycle crop S, with batch factor
# round((S / (f * S0))**2):
#   S = 112: (56, 4), (79, 2), (112, 1);  S = 79: (56, round(1.99) = 2), (79, round(0.995) = 1), (79, 1).
# Combined multipliers per long shape: 16/8/8, 8/4/4, 8/4/2, 4/2/1 (largest 16x the base batch);
# their means 32/3, 16/3, 14/3, 7/3 (sum 23) are PySlowFast's avg_bs. An 8-epoch stage splits into
# 8 * avg / 23 epochs per shape (256/69, 128/69, 112/69, 56/69), 8/23 iterations each; the saving
# is 16 / (64/23) = 23/4, the fine-tune 4 / (23/4) * 7/3 = 112/69 epochs; total 1216/69 is scaled
# to 30 by 2070/1216. So the first stage ends at 8 * 2070/1216 = 13.6184..., the first phase at
# 256/69 * 2070/1216 = 7680/1216, the fine-tune starts at 16 * 2070/1216 = 27.2368...
SCALE = 2070 / 1216
LONG_SHORT_ENDS = [x * SCALE for x in (256 / 69, 384 / 69, 496 / 69, 8, 8 + 256 / 69, 8 + 384 / 69, 8 + 496 / 69, 16)]


def test_long_plus_short_uses_pyslowfast_short_cycle_by_default():
    both = build_schedule("long+short", STEP, frames=16, size=112, batch_size=8)
    assert both.short_cycle_rule == "pyslowfast"
    cycled = [p for p in both.phases if not p.fine_tune]
    assert [p.end for p in cycled] == pytest.approx(LONG_SHORT_ENDS, abs=1e-9)
    assert [(p.frames, p.size, p.batch_mult) for p in cycled[:4]] == [(4, 79, 8), (8, 79, 4), (8, 112, 2), (16, 112, 1)]
    first, last = both.phases[0], both.phases[-1]
    assert [(s.size, s.batch_mult) for s in both.short_shapes(first)] == [(56, 2), (79, 1), (79, 1)]
    assert [(s.size, s.batch_mult) for s in both.short_shapes(last)] == [(56, 4), (79, 2), (112, 1)]
    rows = both.rows()
    assert [r["batch_sizes"] for r in rows[:4]] == [[128, 64, 64], [64, 32, 32], [64, 32, 16], [32, 16, 8]]
    assert max(max(r["batch_sizes"]) for r in rows) == 16 * 8  # 16x the base batch at most
    # every shape still gets equal iterations per stage (by its mean short-cycle batch)
    means = [sum(r["batch_sizes"]) / 3 for r in rows[:4]]
    iters = [(p.end - p.start) / m for p, m in zip(cycled[:4], means)]
    assert iters == pytest.approx([iters[0]] * 4)
    # fine-tune at the full shape, LR as in the long cycle alone
    assert both.phases[-2].start == pytest.approx(16 * SCALE)
    assert both.lr(both.phases[-1].start) == pytest.approx(0.1 * 0.01)
    # no short cycle in "long"
    long_ = build_schedule("long", STEP, frames=16, size=112, batch_size=8)
    assert [(s.size, s.batch_mult) for s in long_.short_shapes(first)] == [(79, 1)]


def test_relative_short_cycle_follows_the_current_long_cycle_crop():
    both = build_schedule("long+short", STEP, frames=16, size=112, batch_size=8, short_cycle="relative")
    long_ = build_schedule("long", STEP, frames=16, size=112, batch_size=8)
    _assert_table(_table(both), _table(long_))  # 4, 2, 1 at every shape: the same phase bounds as long
    first = both.phases[0]
    assert [(s.size, s.batch_mult) for s in both.short_shapes(first)] == [(40, 4), (56, 2), (79, 1)]
    assert both.rows()[0]["batch_sizes"] == [256, 128, 64]  # up to 32x
    with pytest.raises(UsageError, match="short-cycle rule 'sideways'"):
        build_schedule("long+short", STEP, frames=16, size=112, batch_size=8, short_cycle="sideways")


@pytest.mark.parametrize("steps", [(), (25, 40)])
def test_step_base_without_steps_inside_the_run_keeps_its_constant_lr(steps):
    base = LRSchedule(base_lr=0.1, epochs=20, kind="step", steps=steps)
    plain = [base(e) for e in (0, 10, 19.9)]
    assert plain == [0.1, 0.1, 0.1]
    for mode in ("long", "long+short"):
        schedule = build_schedule(mode, base, frames=16, size=112, batch_size=8)
        for phase in schedule.phases:
            assert schedule.lr(phase.start) == pytest.approx(0.1 * phase.lr_mult)  # never decayed
        assert schedule.lr(schedule.total_epochs - 1e-6) == pytest.approx(0.1)


def test_short_cycle_alone_stretches_base_without_lr_scaling():
    schedule = build_schedule("short", STEP, frames=16, size=112, batch_size=8)
    assert schedule.total_epochs == 30
    assert len(schedule.phases) == 1
    assert (schedule.phases[0].frames, schedule.phases[0].size) == (16, 112)
    # steps 8, 16 move to 12, 24
    assert schedule.lr(0) == pytest.approx(0.1)
    assert schedule.lr(11.99) == pytest.approx(0.1)
    assert schedule.lr(12.0) == pytest.approx(0.01)
    assert schedule.lr(23.99) == pytest.approx(0.01)
    assert schedule.lr(24.0) == pytest.approx(0.001)
    assert schedule.rows()[0]["batch_sizes"] == [32, 16, 8]


def test_cosine_base_uses_equal_stages():
    base = LRSchedule(base_lr=0.1, epochs=20, kind="cosine")
    schedule = build_schedule("long", base, frames=16, size=112, batch_size=8)
    # stages [0,5), [5,10), [10,15) cycled, [15,20) fine-tune: pre-rescale 3 * 5 + 5 * 4/15 = 49/3
    # epochs, rescaled to 30 (factor 90/49); first phase 5 * 8/15 * 90/49 = 240/49 epochs
    ends = [p.end for p in schedule.phases]
    assert ends[0] == pytest.approx(240 / 49)
    assert ends[3] == pytest.approx(5 * 90 / 49)
    assert ends[11] == pytest.approx(15 * 90 / 49)
    assert ends[12] == pytest.approx((15 * 90 / 49 + 30) / 2)
    # each shape follows the cosine over its quarter of the stage, times its multiplier
    assert schedule.lr(0) == pytest.approx(8 * 0.1)
    stage1_shape2 = schedule.phases[6]
    assert (stage1_shape2.base_start, stage1_shape2.base_end) == (7.5, 8.75)
    assert schedule.lr(stage1_shape2.start) == pytest.approx(2 * base.main_lr(7.5))
    assert schedule.lr(30.0) == pytest.approx(0.0, abs=1e-12)
    mid = (schedule.phases[-1].start + 30) / 2
    assert schedule.lr(mid) == pytest.approx(base.main_lr(18.75))


def test_warmup_ramps_to_the_multigrid_lr():
    base = LRSchedule(base_lr=0.1, epochs=20, kind="step", steps=(8, 16), warmup_epochs=2, warmup_start_factor=0.1)
    schedule = build_schedule("long", base, frames=16, size=112, batch_size=8)
    assert schedule.lr(0) == pytest.approx(0.01)
    assert schedule.lr(1) == pytest.approx((0.01 + 0.8) / 2)
    assert schedule.lr(2) == pytest.approx(0.8)


def test_none_is_the_base_schedule():
    schedule = build_schedule("none", STEP, frames=16, size=112, batch_size=8)
    assert schedule.total_epochs == 20
    for epoch in (0, 7.9, 8, 15, 16, 19.5):
        assert schedule.lr(epoch) == pytest.approx(STEP.main_lr(epoch))


@pytest.mark.parametrize("frames,size", [(16, 224), (8, 112), (32, 256), (16, 160), (4, 64)])
def test_long_cycle_keeps_btHW_constant(frames, size):
    shapes = long_cycle_shapes(frames, size)
    assert [m for _, _, m in shapes] == [8, 4, 2, 1]
    full = frames * size * size
    for t, s, mult in shapes:
        # exact up to rounding S/sqrt2 to whole pixels
        assert mult * t * s * s == pytest.approx(full, rel=0.03)


@pytest.mark.parametrize(
    "size,expected",
    [(224, [(112, 4), (158, 2), (224, 1)]), (112, [(56, 4), (79, 2), (112, 1)]), (79, [(40, 4), (56, 2), (79, 1)])],
)
def test_short_cycle_sizes_and_batches(size, expected):
    assert [(s.size, s.batch_mult) for s in short_cycle_shapes(size)] == expected


def test_frame_rate_jitter_range_spans_the_full_time():
    schedule = build_schedule("long", STEP, frames=16, size=112, batch_size=8, stride=2)
    assert [schedule.stride_range(p) for p in schedule.phases[:4]] == [(2, 8), (2, 4), (2, 4), (2, 2)]
    # the longest stride of a short clip covers the full clip's span
    for p in schedule.phases:
        assert p.frames * schedule.stride_range(p)[1] == 16 * 2


def test_dry_run_table_lists_every_phase():
    schedule = build_schedule("long+short", STEP, frames=16, size=112, batch_size=8, stride=2)
    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(format_table(schedule))
    text = console.export_text()
    assert "multigrid long+short: 30 epochs" in text
    assert "0.00–6.32" in text and "56/79/79" in text and "128/64/64" in text
    assert text.count("fine-tune") == 2
    assert schedule.to_dict()["phases"][0]["lr_start"] == pytest.approx(0.8)


def test_bad_mode_and_base_are_one_line_errors():
    with pytest.raises(UsageError, match=r"^multigrid='longer' is not one of none, long, short, long\+short$"):
        build_schedule("longer", STEP, frames=16, size=112, batch_size=8)
    with pytest.raises(UsageError, match="at least 2 base stages"):
        build_schedule("long", LRSchedule(0.1, 10, "cosine"), frames=16, size=112, batch_size=8, cosine_stages=1)


def test_the_base_schedule_is_the_plain_lr_schedule_and_validates_itself():
    base = LRSchedule(0.2, 10, "cosine")
    assert math.isclose(build_schedule("none", base, frames=16, size=112, batch_size=8).lr(5), base(5))
    with pytest.raises(UsageError, match=r"^schedule='cosin' is not one of cosine, step, constant$"):
        LRSchedule(0.2, 10, "cosin")
    with pytest.raises(UsageError, match="epochs > 0"):
        LRSchedule(0.2, 0, "cosine")


def test_sqrt_and_no_lr_scaling_change_only_the_cycled_phases():
    linear = build_schedule("long", STEP, frames=16, size=112, batch_size=8)
    for scaling, factor in (("sqrt", lambda m: math.sqrt(m)), ("none", lambda m: 1.0)):
        other = build_schedule("long", STEP, frames=16, size=112, batch_size=8, lr_scaling=scaling)
        expected = [(s, e, t, sz, b, lr / b * 8 * factor(b // 8)) for s, e, t, sz, b, lr in LONG_TABLE]
        _assert_table(_table(other), expected)  # same phases and shapes, LR x sqrt(8) = 2.83 not x8, ...
        assert [p.start for p in other.phases] == [p.start for p in linear.phases]
    assert lr_multiplier(8, "sqrt") == pytest.approx(2 * math.sqrt(2))
    with pytest.raises(UsageError, match="LR scaling 'cube' is not one of linear, sqrt, none"):
        build_schedule("long", STEP, frames=16, size=112, batch_size=8, lr_scaling="cube")


@pytest.mark.parametrize(
    "optimizer, setting, expected",
    [
        ("sgd", "auto", "linear"),
        ("adamw", "auto", "sqrt"),
        ("adamw", "linear", "linear"),
        ("sgd", "none", "none"),
    ],
)
def test_config_picks_the_lr_scaling_rule_of_the_optimizer(optimizer, setting, expected):
    from vidact.train.config import load_config
    from vidact.train.multigrid import schedule_for_config

    cfg = load_config(
        arch="c3d",
        data="x",
        optimizer=optimizer,
        lr=0.01,
        epochs=4,
        batch_size=8,
        overrides=["multigrid=long", f"multigrid_lr_scaling={setting}"],
    )
    assert cfg.resolved_lr_scaling() == expected
    first = schedule_for_config(cfg).phases[0]
    assert first.batch_mult == 8
    assert first.lr_mult == pytest.approx(lr_multiplier(8, expected))


# --------------------------------------------------------------------------- batch rules
@pytest.mark.parametrize(
    "b_simple, expected",
    # m <= 1.5 + B_simple / (2 x 8): the largest power of two whose batch needs <= 1.5x the clips of batch 8
    [(0.0, 1), (2.0, 1), (7.9, 1), (8.0, 2), (11.0, 2), (39.9, 2), (40.0, 4), (103.9, 4), (104.0, 8), (232.0, 16)]
    + [(488.0, 32), (1e6, 32)],
)
def test_allowed_batch_multiplier_at_its_boundaries(b_simple, expected):
    assert allowed_batch_mult(b_simple, 8) == expected
    if b_simple > 0 and expected < 32:
        assert clips_ratio(8 * expected, 8, b_simple) <= 1.5 < clips_ratio(16 * expected, 8, b_simple)


# the long cycle of STEP under the bounded rule at B_simple 11 (cap 2x): the paper's phases and shares, batches
# min(paper, 2) x 8 and the LR x the multiplier used
BOUNDED_11 = [(s, e, t, sz, min(b, 16), lr * min(b, 16) / b) for s, e, t, sz, b, lr in LONG_TABLE[:8]] + LONG_TABLE[8:]


@pytest.mark.parametrize(
    "rule, b_simple, expected",
    [
        ("bounded", 11.0, BOUNDED_11),
        ("bounded", 40.0, [(s, e, t, sz, min(b, 32), lr * min(b, 32) / b) for s, e, t, sz, b, lr in LONG_TABLE]),
        ("bounded", 1000.0, LONG_TABLE),  # the critical batch allows every paper batch: the paper's table
        ("fixed", None, [(s, e, t, sz, 8, lr * 8 / b) for s, e, t, sz, b, lr in LONG_TABLE]),
    ],
)
def test_bounded_and_fixed_tables_keep_the_shapes_and_shares(rule, b_simple, expected):
    schedule = build_schedule("long", STEP, frames=16, size=112, batch_size=8, batch_rule=rule, critical_batch=b_simple)
    _assert_table(_table(schedule), expected)


def test_bounded_rule_caps_the_short_cycle_too():
    def batches(rule, b):
        schedule = build_schedule(
            "long+short", STEP, frames=16, size=112, batch_size=8, batch_rule=rule, critical_batch=b
        )
        return [row["batch_sizes"] for row in schedule.rows()]

    paper = batches("paper", None)
    assert paper[0] == [128, 64, 64] and paper[3] == [32, 16, 8]
    assert batches("bounded", 11.0)[:4] == [[16, 16, 16], [16, 16, 16], [16, 16, 16], [16, 16, 8]]
    assert batches("bounded", 40.0)[:4] == [[32, 32, 32], [32, 32, 32], [32, 32, 16], [32, 16, 8]]
    assert batches("bounded", 1000.0) == paper
    assert batches("fixed", None)[0] == [8, 8, 8]
    # under DDP the cap is of the global base batch (2 processes x 8 = 16 clips): B_simple 40 allows 2x
    ddp = build_schedule(
        "long", STEP, frames=16, size=112, batch_size=8, batch_rule="bounded", critical_batch=40.0, world_size=2
    )
    assert ddp.max_batch_mult == 2


def test_bounded_rule_without_a_critical_batch_and_a_bad_rule_are_usage_errors():
    with pytest.raises(UsageError, match="multigrid_batch=bounded needs the critical batch"):
        build_schedule("long", STEP, frames=16, size=112, batch_size=8, batch_rule="bounded")
    with pytest.raises(UsageError, match=r"multigrid_batch='big' is not one of paper, bounded, fixed"):
        build_schedule("long", STEP, frames=16, size=112, batch_size=8, batch_rule="big")


def test_dry_run_table_names_the_rule_and_the_critical_batch():
    schedule = build_schedule(
        "long+short", STEP, frames=16, size=112, batch_size=8, batch_rule="bounded", critical_batch=11.0
    )
    assert describe_batch_rule(schedule) == (
        "batch rule bounded by B_simple 11 clips (batches up to 2x the base; this schedule's largest 2x)"
    )
    assert describe_batch_rule(build_schedule("long+short", STEP, frames=16, size=112, batch_size=8)) == (
        "batch rule paper (batches up to 16x the base)"
    )
    assert schedule.to_dict()["critical_batch"] == 11.0 and schedule.to_dict()["batch_rule"] == "bounded"


def test_paper_rule_warning_only_when_its_batches_waste_clips():
    schedule = build_schedule("long+short", STEP, frames=16, size=112, batch_size=8)
    line = paper_batch_warning(schedule, 11.0, 8)
    assert line.startswith("warning: measured gradient noise scale B_simple ≈ 11 clips")
    assert "(128 clips, 16x) need 7.3x the clips" in line and "at or below 2x" in line
    assert paper_batch_warning(schedule, 232.0, 8) is None  # 16x fits
    assert paper_batch_warning(schedule, None, 8) is None
