"""Two CPU processes (gloo): process-group helpers, DDP with sub-batch BN, multigrid sampler slices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers.ddp_ranks import free_port, join_as_rank, sub_batch_bn_net

from vidact.runtime import distributed


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank: join via torchrun-style env vars, train a tiny DDP model on multigrid batches."""

    from vidact.runtime.device import select_device
    from vidact.train.lr import LRSchedule
    from vidact.train.multigrid import build_schedule
    from vidact.train.samplers import MultigridBatchSampler

    join_as_rank(rank, world, port)
    try:
        model = sub_batch_bn_net(seed=rank)  # different init per rank: DDP must broadcast rank 0's weights
        device = select_device("cpu")
        ddp = distributed.wrap_ddp(model, device)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        schedule = build_schedule("long+short", LRSchedule(0.1, 2, "cosine"), frames=8, size=16, batch_size=1)
        sampler = MultigridBatchSampler(160, schedule, seed=1, drop_last=False)  # rank and world size from the group
        data = torch.randn(160, 3, 8, 16, 16, generator=torch.Generator().manual_seed(0))
        seen, shapes = [], []
        for epoch in range(schedule.total_epochs):
            sampler.set_epoch(epoch)
            seen.append([])
            for batch in sampler:
                idx = [i for i, _ in batch]
                spec = batch[0][1]
                x = data[idx][:, :, : spec.num_frames, : spec.crop_size, : spec.crop_size]
                loss = ddp(x).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                seen[-1] += idx
                shapes.append([len(idx), spec.num_frames, spec.crop_size])
        counts = distributed.reduce_counts({"clips": len(seen[0]), "rank": rank})
        result = {
            "world": distributed.get_world_size(),
            "rank": distributed.get_rank(),
            "main": distributed.is_main_process(),
            "seen": seen,
            "shapes": shapes,
            "counts": counts,
            "mean": distributed.all_reduce_mean(torch.tensor(float(rank))).item(),
            "broadcast": distributed.broadcast_object({"from": rank}),
            "weights": [p.sum().item() for p in model.parameters()],
        }
        distributed.barrier()
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        distributed.cleanup()


def test_helpers_in_a_single_process():
    assert (
        distributed.get_rank(),
        distributed.get_world_size(),
        distributed.is_main_process(),
        distributed.is_dist(),
    ) == (0, 1, True, False)
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_mean(t) is t and distributed.all_reduce_sum(t) is t
    assert distributed.reduce_counts({"a": 2}) == {"a": 2}
    assert distributed.broadcast_object("x") == "x"
    assert distributed.init_from_env() is False  # WORLD_SIZE unset
    distributed.barrier(), distributed.cleanup()


def test_two_process_ddp_with_multigrid_batches(tmp_path):
    world = 2
    mp.start_processes(_worker, args=(world, free_port(), str(tmp_path)), nprocs=world, join=True, start_method="fork")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    assert [(r["world"], r["rank"], r["main"]) for r in results] == [(2, 0, True), (2, 1, False)]
    # every rank ran the same shapes; their slices are disjoint and cover the 160 clips
    assert results[0]["shapes"] == results[1]["shapes"]
    assert len({(n, t, s) for n, t, s in results[0]["shapes"]}) > 1
    for epoch in range(3):
        assert sorted(results[0]["seen"][epoch] + results[1]["seen"][epoch]) == list(range(160))
    assert results[0]["counts"] == {"clips": 160.0, "rank": 1.0}
    assert results[0]["mean"] == pytest.approx(0.5)
    assert results[1]["broadcast"] == {"from": 0}
    # DDP kept the replicas identical (same start weights, averaged gradients)
    assert results[0]["weights"] == pytest.approx(results[1]["weights"], abs=1e-6)
