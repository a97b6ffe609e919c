"""--multigrid auto and --lr auto: the decisions at their boundaries, the probe through the engine, the recipe check."""

from __future__ import annotations

import pytest

from vidact.train.auto import COST_LIMIT, GROWTH_PAYS, choose_multigrid, needs_probe


@pytest.mark.parametrize(
    "b_simple, mode, rule, critical",
    [
        (None, "long+short", "fixed", 0.0),  # not measurable: the base batch, which wastes nothing
        (0.0, "long+short", "fixed", 0.0),
        (7.9, "long+short", "fixed", 0.0),  # not even 2x keeps within 1.5x the clips
        (8.0, "long+short", "bounded", 8.0),  # 2x does
        (231.9, "long+short", "bounded", 231.9),  # 8x
        (232.0, "long+short", "paper", 0.0),  # the paper's 16x fits
    ],
)
def test_multigrid_choice_follows_the_critical_batch(b_simple, mode, rule, critical):
    choice = choose_multigrid(b_simple, base_batch=8, frames=16, size=48)
    assert (choice.mode, choice.batch_rule, choice.critical_batch) == (mode, rule, critical)


def test_multigrid_choice_says_why_in_one_line():
    choice = choose_multigrid(11.0, base_batch=8, frames=16, size=48)
    assert choice.reason == (
        "B_simple ≈ 11 clips: long+short with batches up to 2x; "
        "the paper's 16x would need 7.3x the clips of batch 8 for the same progress"
    )
    assert "\n" not in choose_multigrid(None, base_batch=8, frames=16, size=48).reason


@pytest.mark.parametrize("ratio, mode", [(COST_LIMIT - 0.01, "long+short"), (COST_LIMIT, "none"), (1.2, "none")])
def test_multigrid_choice_is_plain_when_a_coarse_clip_saves_no_time(ratio, mode):
    choice = choose_multigrid(100.0, base_batch=8, frames=16, size=48, cost_ratio=ratio)
    assert choice.mode == mode
    if mode == "none":
        assert "would save no time" in choice.reason and f"{ratio:.2f} of a full clip's seconds" in choice.reason


@pytest.mark.parametrize("frames, mode", [(8, "long+short"), (6, "long+short"), (5, "short"), (4, "short")])
def test_short_clips_keep_only_the_short_cycle(frames, mode):
    """T/4 rounds to 2 frames from T=6 up; below, the long cycle's coarsest clip would be one frame."""
    choice = choose_multigrid(1e6, base_batch=8, frames=frames, size=48)
    assert (choice.mode, choice.batch_rule) == (mode, "paper")
    if mode == "short":
        assert choice.reason.startswith(f"{frames} frames leave the long cycle's coarsest clips 1 frame")
        assert "(up to 4x fit)" in choice.reason  # the short cycle's largest batch


def test_under_ddp_the_rule_compares_with_the_global_base_batch():
    # B_simple 40: 4x of one process's batch 8 (32 clips), 2x of two processes' 16
    assert "up to 4x" in choose_multigrid(40.0, base_batch=8, frames=16, size=48).reason
    assert "up to 2x" in choose_multigrid(40.0, base_batch=16, frames=16, size=48).reason


def test_what_waits_on_the_probe():
    from vidact.train.config import TrainConfig

    assert not needs_probe(TrainConfig())
    assert needs_probe(TrainConfig(multigrid="auto"))
    assert needs_probe(TrainConfig(lr_finder=True))
    assert needs_probe(TrainConfig(multigrid="long", multigrid_batch="bounded"))
    assert not needs_probe(TrainConfig(multigrid="long", multigrid_batch="bounded", critical_batch=12.0))
    assert not needs_probe(TrainConfig(multigrid="long+short"))


# --------------------------------------------------------------------------- through the engine
def _final_weights(folder):
    from vidact.runtime.checkpoint import load_checkpoint

    return load_checkpoint(folder / "last.pt")["model"]


def test_multigrid_auto_decides_records_and_trains_as_the_decision_given_by_hand(tmp_path, one_thread):
    """The probe leaves no trace: the auto run ends with the weights of a run given its decisions explicitly."""
    import torch
    from helpers.shaped_clips import shaped_config, shaped_data

    from vidact.train.config import read_config_file
    from vidact.train.engine import fit

    lines = []
    auto = fit(
        shaped_config(tmp_path / "auto", batch_size=2, overrides=["multigrid=auto"]),
        shaped_data(),
        progress=False,
        notify=lines.append,
    )
    decided = read_config_file(tmp_path / "auto" / "config.toml")
    assert decided["multigrid"] in ("none", "short", "long+short") and decided["multigrid"] == auto["multigrid"]
    assert decided["probe_decision"].startswith("multigrid auto: ") and decided["probe_decision"] in lines
    assert auto["decisions"] == decided["probe_decision"]
    probe = auto["probe"]
    assert probe["noise"]["steps"] >= 4 and probe["noise"]["b_small"] == 8 and probe["noise"]["b_big"] == 32
    assert probe["cost"]["ratio"] > 0 and 0 < probe["fraction_of_run"] < 1
    by_hand = [f"{k}={decided[k]}" for k in ("multigrid", "multigrid_batch", "critical_batch")]
    fit(shaped_config(tmp_path / "by_hand", batch_size=2, overrides=by_hand), shaped_data(), progress=False)
    a, b = _final_weights(tmp_path / "auto"), _final_weights(tmp_path / "by_hand")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_lr_auto_picks_an_lr_by_the_range_test_and_records_it(tmp_path, one_thread):
    import torch
    from helpers.shaped_clips import shaped_config, shaped_data

    from vidact.train.config import read_config_file
    from vidact.train.engine import fit

    lines = []
    cfg = shaped_config(tmp_path / "auto", batch_size=4, optimizer="adamw", overrides=["lr_finder=true"])  # plain
    auto = fit(cfg, shaped_data(), progress=False, notify=lines.append)
    decided = read_config_file(tmp_path / "auto" / "config.toml")
    test = auto["probe"]["lr"]
    assert decided["lr_finder"] is False and test["steps"] >= 30 and len(test["curve"]) == test["steps"]
    assert [line for line in lines if "lr auto" in line] == [decided["probe_decision"]]
    if test["lr"] is not None:
        assert decided["lr"] == pytest.approx(test["lr"]) == pytest.approx(auto["lr"])
    fit(
        shaped_config(tmp_path / "by_hand", batch_size=4, optimizer="adamw", lr=decided["lr"], overrides=[]),
        shaped_data(),
        progress=False,
    )
    a, b = _final_weights(tmp_path / "auto"), _final_weights(tmp_path / "by_hand")
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("speedup, rule", [(None, "bounded"), (GROWTH_PAYS, "bounded"), (GROWTH_PAYS - 0.01, "fixed")])
def test_a_batch_grows_only_where_growing_makes_a_clip_cheaper(speedup, rule):
    """B_simple 60 allows 4x at batch 8; on a device where a 4x coarse batch is not 1.25x faster per clip
    (a CPU), the batch stays at the base."""
    choice = choose_multigrid(60.0, base_batch=8, frames=16, size=48, growth_speedup=speedup)
    assert (choice.mode, choice.batch_rule) == ("long+short", rule)
    if rule == "fixed":
        assert "B_simple allows batches up to 4x, but a 4x coarse batch made a clip only 1.24x as fast" in choice.reason


def test_the_batch_is_bounded_by_the_lower_bound_of_a_noisy_estimate():
    choice = choose_multigrid(171.0, base_batch=8, frames=16, size=48, b_low=40.0)
    assert (choice.batch_rule, choice.critical_batch) == ("bounded", 40.0)  # 4x, where 171 alone allows 8x
    assert choice.reason.startswith("B_simple ≈ 171 clips (at least 40 within one standard error): long+short")
    assert "with batches up to 4x" in choice.reason
    assert choose_multigrid(171.0, base_batch=8, frames=16, size=48, b_low=0.0).batch_rule == "fixed"
