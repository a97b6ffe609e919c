"""X3D progressive expansion: axes, the FLOPs solver, contraction, trajectory cache/resume, the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vidact.errors import UsageError, VidactError
from vidact.models import create_model
from vidact.models.x3d import X3D_VARIANTS, X3DFactors, x3d_from_factors
from vidact.search.axes import AXES, X2D, axis_range, path_to, replay, set_axis
from vidact.search.candidates import Budget, SearchConfig, TrainResult, parse_budget
from vidact.search.cost import Cost, CostModel, contract, expand
from vidact.search.x3d_expand import choose, run_search
from vidact.train.samplers import IterationBudgetSampler


def analytic_count(f: X3DFactors, num_classes: int, in_channels: int = 3) -> Cost:
    """A cost that rises with every axis like the real one (fast; exact brute-force checks)."""
    body = sum(
        d * (w * i + 27 * i) / 4**k
        for k, (d, w, i) in enumerate(zip(f.stage_depths(), f.stage_widths(), f.inner_widths()))
    )
    return Cost(int(f.gamma_t * f.gamma_s**2 * body) + 1000 * num_classes, int(body))


def analytic_cost(num_classes: int = 4) -> CostModel:
    return CostModel(num_classes, count=analytic_count)


def log_gap(macs: float, goal: float) -> float:
    return abs(math.log(macs / goal))


# --------------------------------------------------------------------------- axes
def test_set_axis_moves_one_axis():
    f = replace(X2D, gamma_t=2, gamma_tau=8)  # duration 16
    assert set_axis(f, "t", 4) == replace(f, gamma_t=4)  # longer clip, same stride
    assert set_axis(f, "tau", 4) == replace(f, gamma_t=4, gamma_tau=4)  # same duration, higher frame rate
    assert set_axis(f, "s", 160) == replace(f, gamma_s=160)
    assert set_axis(f, "w", 1.5) == replace(f, gamma_w=1.5)
    assert set_axis(f, "b", 3.0) == replace(f, gamma_b=3.0)
    assert set_axis(f, "d", 2.2) == replace(f, gamma_d=2.2)
    with pytest.raises(UsageError, match="unknown axis 'x'"):
        set_axis(f, "x", 1)


def test_frame_rate_axis_needs_a_stride_above_one():
    assert axis_range(replace(X2D, gamma_t=3, gamma_tau=4), "tau") == (1, 12)
    assert expand(replace(X2D, gamma_tau=1), "tau", analytic_cost()) is None


@pytest.mark.parametrize("name", list(X3D_VARIANTS))
def test_x3d_variants_are_points_of_the_search_space(name):
    """Axis moves from X2D reach each variant; the search's builder gives the registry's model."""
    moves = path_to(X3D_VARIANTS[name])
    assert [axis for axis, _ in moves] == ["t", "tau", "s", "w", "b", "d"]
    factors = replay(moves)
    assert factors == X3D_VARIANTS[name]
    with torch.device("meta"):
        ours = x3d_from_factors(factors, num_classes=400)
        registry = create_model(name, num_classes=400)
    shapes = lambda m: [(k, tuple(v.shape)) for k, v in m.state_dict().items()]  # noqa: E731
    assert shapes(ours) == shapes(registry)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in registry.parameters())


def test_x3d_xs_path_from_x2d():
    assert path_to(X3D_VARIANTS["x3d-xs"]) == [("t", 3), ("tau", 4), ("s", 160), ("w", 2.0), ("b", 2.25), ("d", 2.2)]


# --------------------------------------------------------------------------- solver
@pytest.mark.parametrize("axis", list(AXES))
def test_expand_picks_the_grid_value_closest_to_double(axis):
    cost = analytic_cost()
    start = replace(X2D, gamma_t=2, gamma_tau=8)
    grown, ratio = expand(start, axis, cost)
    base = cost(start).macs
    assert ratio == pytest.approx(cost(grown).macs / base)
    ax = AXES[axis]
    k0 = ax.index(ax.value(start))
    lo, hi = axis_range(start, axis)
    best = min(
        log_gap(cost(set_axis(start, axis, ax.at(k))).macs, 2 * base) for k in range(k0 + 1, min(hi, 4 * k0 + 40) + 1)
    )
    assert log_gap(cost(grown).macs, 2 * base) == pytest.approx(best)
    assert 1.4 < ratio < 2.9


def test_expand_is_exact_when_flops_are_linear():
    cost = CostModel(4, count=lambda f, n, c: Cost(1000 * f.gamma_t * f.gamma_s, 1))
    assert expand(X2D, "t", cost) == (replace(X2D, gamma_t=2), 2.0)
    assert expand(X2D, "s", cost) == (replace(X2D, gamma_s=224), 2.0)
    assert expand(replace(X2D, gamma_t=3), "tau", cost) == (replace(X2D, gamma_t=6, gamma_tau=8), 2.0)


def test_cost_model_counts_each_architecture_once(tmp_path):
    calls = []

    def count(f, n, c):
        calls.append(f)
        return analytic_count(f, n, c)

    cost = CostModel(4, path=tmp_path / "cache.json", count=count)
    cost(X2D)
    cost(replace(X2D, gamma_tau=3))  # the stride does not change the network
    cost(replace(X2D, gamma_d=1.01))  # depth rounds up: 2, 3, 6, 4 blocks, a new network
    cost(replace(X2D, gamma_w=1.02))  # widths round to multiples of 8: the same network as X2D
    assert len(calls) == 2
    cost.save()
    again = CostModel(4, path=tmp_path / "cache.json", count=count)
    assert again(X2D) == cost(X2D) and len(calls) == 2


def test_contract_finds_the_largest_value_under_target():
    cost = analytic_cost()
    big = replace(X2D, gamma_s=224)
    target = int(cost(replace(X2D, gamma_s=170)).macs)
    small = contract(big, "s", cost, target)
    assert cost(small).macs <= target
    assert small == replace(X2D, gamma_s=168)  # 176 is over; the grid is in steps of 8
    assert contract(big, "s", cost, cost(big).macs) == big
    with pytest.raises(
        UsageError,
        match=r"cannot contract spatial resolution \(X-Spatial\) to 1e-06 GFLOPs: "
        r"even gamma_s=32 costs",
    ):
        contract(big, "s", cost, 1000)


# --------------------------------------------------------------------------- budget
def test_parse_budget():
    assert parse_budget("2") == Budget(epochs=2)
    assert parse_budget("3ep") == Budget(epochs=3)
    assert parse_budget(" 30it ") == Budget(iterations=30)
    assert str(parse_budget("30 iters")) == "30it"
    for bad in ("0", "two", "5min", "-1"):
        with pytest.raises(UsageError, match="budget must look like 2 or 2ep"):
            parse_budget(bad)


def test_iteration_budget_sampler_gives_exactly_n_batches():
    sampler = IterationBudgetSampler(num_samples=10, batch_size=4, iterations=5, seed=1)
    sampler.set_epoch(0)
    batches = list(sampler)
    assert len(sampler) == 5 and len(batches) == 5
    assert all(len(b) == 4 and all(0 <= i < 10 for i in b) for b in batches)
    assert batches[0] != batches[2] or batches[1] != batches[3]  # a new pass is reshuffled
    sampler.set_epoch(0, start_batch=3)
    assert list(sampler) == batches[3:] and len(sampler) == 2


# --------------------------------------------------------------------------- the search loop (fake training)
class FakeTrainer:
    """Top-1 from a table by axis (the frame count breaks ties within an axis); records the calls."""

    def __init__(self, score):
        self.score, self.calls = score, []

    def __call__(self, factors: X3DFactors, run_dir: Path) -> TrainResult:
        self.calls.append((run_dir.name, factors))
        return TrainResult(top1=self.score(run_dir.name, factors), seconds=0.01)


def prefer(order_by_step: dict[int, str]):
    def score(run: str, f: X3DFactors) -> float:
        step, _, axis = run.split("-", 2)
        return 0.9 if order_by_step.get(int(step[4:])) == axis else 0.3

    return score


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def search_config(tmp_path, **kw) -> SearchConfig:
    return SearchConfig(data=str(tmp_path / "data"), out=str(tmp_path / "search"), **kw)


def test_search_keeps_the_best_candidate_each_step(tmp_path):
    trainer = FakeTrainer(prefer({1: "s", 2: "t"}))
    summary = run_search(search_config(tmp_path, steps=2), trainer, analytic_cost())
    assert [r["axis"] for r in summary["path"]] == ["base", "s", "t"]
    assert summary["trained"] == 13 and summary["reused"] == 0
    records = read_lines(tmp_path / "search" / "trajectory.jsonl")
    assert len(records) == 13
    assert [(r["step"], r["axis"]) for r in records if r["chosen"]] == [(0, "base"), (1, "s"), (2, "t")]
    first = {r["axis"]: r for r in records if r["step"] == 1}
    assert set(first) == set(AXES)
    for r in records[1:]:
        assert set(r) >= {
            "step",
            "axis",
            "factors",
            "gflops",
            "params",
            "top1",
            "train_seconds",
            "chosen",
            "flops_ratio",
        }
        assert 1.4 < r["flops_ratio"] < 2.9
    step2 = [r for r in records if r["step"] == 2]
    assert all(
        r["factors"]["gamma_s"] == first["s"]["factors"]["gamma_s"]  # grown from step 1's s
        for r in step2
        if r["axis"] != "s"
    )
    assert summary["final"]["factors"] == step2[0]["factors"]  # t is listed first and was chosen
    assert (tmp_path / "search" / "trajectory.png").stat().st_size > 1000


def test_ties_go_to_fewer_flops():
    recs = [
        {"axis": "s", "top1": 0.5, "gflops": 2.0},
        {"axis": "w", "top1": 0.5, "gflops": 1.9},
        {"axis": "t", "top1": 0.4, "gflops": 1.0},
    ]
    assert choose(recs)["axis"] == "w"


def test_resume_reads_finished_candidates_back(tmp_path):
    """A pre-written trajectory: its candidates are not retrained and their top-1 decides."""
    cost = analytic_cost()
    out = tmp_path / "search"
    out.mkdir()
    grown = {axis: expand(X2D, axis, cost) for axis in ("t", "s", "w")}
    lines = [
        {
            "step": 0,
            "kind": "base",
            "axis": "base",
            "factors": X2D.to_dict(),
            "gflops": cost(X2D).gflops,
            "params": 1,
            "flops_ratio": 1.0,
            "top1": 0.2,
            "train_seconds": 5.0,
            "chosen": True,
        }
    ]
    for axis, (f, ratio) in grown.items():
        lines.append(
            {
                "step": 1,
                "kind": "expand",
                "axis": axis,
                "factors": f.to_dict(),
                "gflops": cost(f).gflops,
                "params": 1,
                "flops_ratio": ratio,
                "top1": 0.95 if axis == "w" else 0.1,
                "train_seconds": 5.0,
                "chosen": False,
            }
        )
    text = "".join(json.dumps(r) + "\n" for r in lines)
    (out / "trajectory.jsonl").write_text(text + '{"step": 1, "kind": "exp')  # plus a torn last line
    trainer = FakeTrainer(lambda run, f: 0.5)
    summary = run_search(search_config(tmp_path, steps=1), trainer, cost)
    assert sorted(name for name, _ in trainer.calls) == ["step1-expand-b", "step1-expand-d", "step1-expand-tau"]
    assert summary["reused"] == 4 and summary["trained"] == 3
    assert summary["path"][-1]["axis"] == "w" and summary["path"][-1]["top1"] == 0.95
    assert len(read_lines(out / "trajectory.jsonl")) == 7

    again = FakeTrainer(lambda run, f: pytest.fail("a finished candidate was trained again"))
    assert run_search(search_config(tmp_path, steps=1), again, cost)["reused"] == 7
    more = FakeTrainer(lambda run, f: 0.5)  # one more step resumes on top of the finished one
    summary = run_search(search_config(tmp_path, steps=2), more, cost)
    assert len(more.calls) == 6 and all(name.startswith("step2-") for name, _ in more.calls)


def test_resume_refuses_other_settings(tmp_path):
    run_search(search_config(tmp_path, steps=1, budget="2it"), FakeTrainer(lambda r, f: 0.5), analytic_cost())
    with pytest.raises(UsageError, match=r"search: holds a search with other settings \(budget: 2it here, 3it now\)"):
        run_search(search_config(tmp_path, steps=1, budget="3it"), FakeTrainer(lambda r, f: 0.5), analytic_cost())


def test_contraction_to_target_gflops(tmp_path):
    cost = analytic_cost()
    trainer = FakeTrainer(prefer({1: "s", 2: "s"}))
    target = cost(expand(X2D, "s", cost)[0]).macs * 1.5 / 1e9
    summary = run_search(search_config(tmp_path, steps=2, target_gflops=target), trainer, cost)
    last = summary["path"][-1]
    assert last["kind"] == "contract" and last["axis"] == "s" and last["step"] == 3
    assert (
        last["gflops"]
        <= target
        < cost(set_axis(X3DFactors(**last["factors"]), "s", last["factors"]["gamma_s"] + 8)).gflops
    )
    assert summary["contraction"] == last
    chosen = [r for r in read_lines(tmp_path / "search" / "trajectory.jsonl") if r["chosen"]]
    assert [r["kind"] for r in chosen] == ["base", "expand", "expand", "contract"]


# --------------------------------------------------------------------------- real training and the CLI
def test_one_real_step_then_resume(cli, synth_dir, tmp_path):
    out = tmp_path / "x3d"
    args = [
        "x3d",
        "expand",
        "--data",
        synth_dir,
        "--steps",
        "1",
        "--budget-per-candidate",
        "1it",
        "--batch-size",
        "4",
        "--base-size",
        "32",
        "--base-stride",
        "2",
        "--threads",
        "1",
        "--out",
        out,
        "--json",
    ]
    res = cli(*args)
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["trained"] == 7 and summary["reused"] == 0
    assert [r["step"] for r in summary["path"]] == [0, 1]
    records = read_lines(out / "trajectory.jsonl")
    assert len(records) == 7 and sum(r["chosen"] for r in records) == 2
    for r in records[1:]:
        assert 1.5 < r["flops_ratio"] < 2.6  # the profiler-solved doubling
        assert 0.0 <= r["top1"] <= 1.0 and r["train_seconds"] > 0
    assert records[0]["gflops"] == pytest.approx(0.0015, rel=0.1)  # X2D at 1x32x32
    run = out / "runs" / "step1-expand-s"
    assert (run / "last.pt").is_file()
    assert json.loads((run / "factors.json").read_text())["gamma_s"] == records[3]["factors"]["gamma_s"]
    assert (out / "trajectory.png").is_file()

    again = cli(*args)
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["reused"] == 7 and json.loads(again.stdout)["trained"] == 0


def test_cli_bad_budget_and_missing_data(cli, synth_dir, tmp_path):
    res = cli("x3d", "expand", "--data", synth_dir, "--budget-per-candidate", "soon", "--out", tmp_path / "o")
    assert res.exit_code == 2
    assert res.stderr.strip() == "error: budget must look like 2 or 2ep (epochs) or 30it (iterations), not 'soon'"
    res = cli("x3d", "expand", "--data", tmp_path / "nope")
    assert res.exit_code == 2 and "data folder not found" in res.stderr
    res = cli("x3d", "expand", "--data", synth_dir, "--set", "frames=8", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "the search sets frames itself" in res.stderr


def test_a_damaged_trajectory_line_is_reported_with_its_place(tmp_path):
    out = tmp_path / "search"
    out.mkdir()
    good = {
        "step": 0,
        "kind": "base",
        "axis": "base",
        "factors": X2D.to_dict(),
        "gflops": 0.01,
        "params": 1,
        "flops_ratio": 1.0,
        "top1": 0.2,
        "train_seconds": 1.0,
        "chosen": True,
    }
    no_top1 = {k: v for k, v in good.items() if k != "top1"}
    (out / "trajectory.jsonl").write_text(json.dumps(no_top1) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(VidactError, match=r"trajectory.jsonl:1: not a trajectory record \('top1'\)"):
        run_search(search_config(tmp_path, steps=1), FakeTrainer(lambda r, f: 0.5), analytic_cost())
