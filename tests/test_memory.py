"""Training in less memory: --accumulate equals the whole batch, activation checkpointing changes no number,
and out-of-memory is one line naming the remedies."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers.tiny_model import TINY, Tiny3d, fake_config, fake_data, register_tiny
from torch import nn
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from vidact.errors import UsageError
from vidact.models.registry import create_model, get_entry
from vidact.train import engine
from vidact.train.accumulate import accumulate_gradients
from vidact.train.finetune import freeze
from vidact.train.memory import checkpoint_stages, stage_names
from vidact.train.metrics_log import read_metrics
from vidact.train.subbatch_bn import convert_sub_batch_norm

pytestmark = pytest.mark.usefixtures("one_thread")


class NoBatchNorm(nn.Module):
    """Tiny3d without BatchNorm (and without dropout, whose masks depend on how a batch is cut)."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv3d(6, 6, 3, stride=2), nn.ReLU())
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3, 4)))


def _train(out, model: nn.Module, **changes) -> dict:
    # SGD: AdamW would blow up the float noise of gradients that are zero in exact arithmetic (a conv bias
    # before BatchNorm) into full-size steps
    cfg = fake_config(out, epochs=2, dropout=0.0, optimizer="sgd", lr=0.05, **changes)
    return engine.fit(cfg, fake_data(), model=model, progress=False)


def _weights(summary: dict) -> dict[str, torch.Tensor]:
    return torch.load(summary["last"], weights_only=True)["model"]


def _steps(run) -> list[tuple]:
    return [(r["step"], r["lr"], r["loss"]) for r in read_metrics(run) if r["kind"] == "train"]


def _assert_close_runs(a: dict, b: dict) -> None:
    assert a["iterations"] == b["iterations"] == 4  # 16 clips, 8 per step: the schedule counts optimizer steps
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5, msg=key)
    sa, sb = _steps(a["run"]), _steps(b["run"])
    assert [s[:2] for s in sa] == [s[:2] for s in sb]  # same steps at the same learning rates
    assert [s[2] for s in sa] == pytest.approx([s[2] for s in sb], rel=1e-5)


def test_accumulate_4_of_2_equals_a_batch_of_8_without_batchnorm(tmp_path):
    torch.manual_seed(0)
    model = NoBatchNorm()
    whole = _train(tmp_path / "whole", copy.deepcopy(model), batch_size=8)
    accumulated = _train(tmp_path / "accumulated", copy.deepcopy(model), batch_size=2, accumulate=4)
    _assert_close_runs(whole, accumulated)


def test_accumulate_4_of_2_equals_a_batch_of_8_with_sub_batch_norm_of_2(tmp_path):
    torch.manual_seed(0)
    model = Tiny3d(num_classes=4, dropout=0.0)
    reference = copy.deepcopy(model)
    convert_sub_batch_norm(reference, base=2)  # BatchNorm over 2 clips inside the batch of 8
    whole = _train(tmp_path / "whole", reference, batch_size=8)
    accumulated = _train(tmp_path / "accumulated", copy.deepcopy(model), batch_size=2, accumulate=4)
    _assert_close_runs(whole, accumulated)
    assert _weights(accumulated)["features.1.num_batches_tracked"] == 4  # running statistics folded once a step
    plain = _train(tmp_path / "plain", copy.deepcopy(model), batch_size=8)  # BatchNorm over all 8: different
    assert not torch.allclose(_weights(plain)["features.1.running_var"], _weights(whole)["features.1.running_var"])


@pytest.mark.parametrize(("n", "k"), [(8, 3), (2, 3), (8, 1)])
def test_accumulated_gradients_are_the_batch_mean_for_uneven_cuts(n, k):
    torch.manual_seed(0)
    model, x, y = NoBatchNorm(), torch.randn(n, 3, 4, 8, 8), torch.randint(0, 4, (n,))
    twin = copy.deepcopy(model)
    nn.functional.cross_entropy(twin(x), y).backward()
    seen = []
    loss = accumulate_gradients(
        model, x, y, k, lambda xs, ys: nn.functional.cross_entropy(model(xs), ys), after_micro_batch=seen.append
    )
    assert seen == list(range(min(n, k)))
    torch.testing.assert_close(loss, nn.functional.cross_entropy(twin(x), y).detach())
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)


def _grads_and_buffers(model: nn.Module, x, seed: int = 0) -> tuple[list, list, torch.Tensor]:
    torch.manual_seed(seed)  # dropout draws the same masks, also in the recomputation
    model.train()
    out = model(x)
    out = out[0] if isinstance(out, (list, tuple)) else out
    out.float().pow(2).mean().backward()
    return [p.grad.clone() for p in model.parameters()], [b.clone() for b in model.buffers()], out.detach()


def _input(arch: str):
    frames = {TINY: 8, "x3d-xs": 4, "c3d-bn": 8, "slowfast-r50-4x16": 16}.get(arch)
    return get_entry(arch).example_input(2, frames, 32)


@pytest.mark.parametrize("arch", [TINY, "x3d-xs", "c3d-bn", "slowfast-r50-4x16", "two-stream"])
def test_activation_checkpointing_changes_no_gradient_or_statistic(arch, monkeypatch):
    from vidact.train import memory

    pieces = []
    monkeypatch.setattr(memory, "checkpoint", lambda *a, **k: pieces.append(1) or torch_checkpoint(*a, **k))
    register_tiny()
    torch.manual_seed(1)
    kwargs = {"width_mult": 0.25} if arch in ("c3d-bn", "two-stream") else {}
    model = create_model(arch, num_classes=5, dropout=0.5, **kwargs)
    twin = copy.deepcopy(model)
    stages = checkpoint_stages(twin, "all")
    assert stages == stage_names(model)
    assert twin.state_dict().keys() == model.state_dict().keys()
    x = _input(arch)
    grads, buffers, out = _grads_and_buffers(model, x)
    grads_c, buffers_c, out_c = _grads_and_buffers(twin, x)
    assert len(pieces) >= len(stages)  # every stage ran checkpointed (a two-stream model runs its streams' stages)
    assert torch.equal(out, out_c)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_c))
    assert all(torch.equal(a, b) for a, b in zip(buffers, buffers_c))  # BN statistics updated once, not twice


def test_activation_checkpointing_with_accumulation_folds_statistics_once():
    torch.manual_seed(0)
    model = Tiny3d(num_classes=4, dropout=0.0)
    convert_sub_batch_norm(model, base=2)
    twin = copy.deepcopy(model)
    checkpoint_stages(twin, "features")
    x, y = torch.randn(8, 3, 8, 16, 16), torch.randint(0, 4, (8,))
    for m in (model, twin):
        accumulate_gradients(m, x, y, 4, lambda xs, ys, m=m: nn.functional.cross_entropy(m(xs), ys))
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), twin.buffers()))
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(model.parameters(), twin.parameters()))


def test_stage_names_and_bad_names():
    assert stage_names(create_model("x3d-xs", num_classes=5)) == [
        "stem", "res2", "res3", "res4", "res5", "conv5", "conv5_bn", "head"
    ]  # fmt: skip
    c3d = create_model("c3d-bn", num_classes=5, width_mult=0.125)
    assert stage_names(c3d)[:2] == ["features.conv1a:pool1", "features.conv2a:pool2"]
    two_stream = create_model("two-stream", num_classes=5, width_mult=0.125)
    assert stage_names(two_stream)[3:5] == ["spatial.head", "temporal.features.conv1:pool1"]
    with pytest.raises(UsageError, match="activation_checkpointing 'res9': no such module; choose all or from stem"):
        checkpoint_stages(create_model("x3d-xs", num_classes=5), "res2,res9")
    with pytest.raises(UsageError, match="'features.pool1:conv1a': no such module"):
        checkpoint_stages(c3d, "features.pool1:conv1a")


def test_a_frozen_batchnorm_stays_frozen_when_accumulation_converts_it():
    model = Tiny3d(num_classes=4)
    freeze(model, "features", head=[])
    convert_sub_batch_norm(model, base=2)
    before = model.features[1].running_mean.clone()
    model.train()
    model(torch.randn(4, 3, 8, 16, 16))
    assert torch.equal(model.features[1].running_mean, before) and model.features[1].vidact_frozen


def test_out_of_memory_is_one_line_naming_the_remedies(cli, synth_dir, tmp_path, monkeypatch):
    register_tiny()

    def no_memory(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.7 GiB total)")

    monkeypatch.setattr(Tiny3d, "forward", no_memory)
    r = cli("train", "--arch", TINY, "--data", synth_dir, "--out", tmp_path / "run", "--batch-size", "4")
    assert r.exit_code == 1
    loading, *lines = r.stderr.strip().splitlines()
    assert loading.startswith("data loading: ")  # said once as training starts
    assert lines == [
        "error: out of memory on cpu at --batch-size 4 (--accumulate 1, --amp none, activation checkpointing off): "
        "lower --batch-size and keep the step's 4 clips with --accumulate (e.g. --batch-size 2 --accumulate 2); "
        "--amp bf16 (or fp16); --activation-checkpointing all"
    ]
    r = cli("train", "--arch", TINY, "--data", synth_dir, "--out", tmp_path / "run2", "--batch-size", "1",
            "--accumulate", "4", "--activation-checkpointing", "all")  # fmt: skip
    assert r.exit_code == 1 and r.stderr.strip().splitlines()[-1] == (
        "error: out of memory on cpu at --batch-size 1 (--accumulate 4, --amp none, activation checkpointing all): "
        "lower --batch-size and keep the step's 4 clips with --accumulate; --amp bf16 (or fp16)"
    )


def _ddp_accumulate(rank: int, world: int, port: int, out: str) -> None:
    """One gloo rank: the gradient of 2 accumulated micro-batches against one backward of the rank's batch."""
    import json
    from pathlib import Path

    from helpers.ddp_ranks import join_as_rank

    from vidact.runtime import distributed

    join_as_rank(rank, world, port)
    try:
        torch.manual_seed(0)
        model = NoBatchNorm()
        ddp_whole = distributed.wrap_ddp(copy.deepcopy(model), torch.device("cpu"))
        ddp_micro = distributed.wrap_ddp(copy.deepcopy(model), torch.device("cpu"))
        g = torch.Generator().manual_seed(rank)
        x, y = torch.randn(4, 3, 4, 8, 8, generator=g), torch.randint(0, 4, (4,), generator=g)
        nn.functional.cross_entropy(ddp_whole(x), y).backward()
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        syncs = []

        def counting_hook(state, bucket):  # DDP's all-reduce, counted
            syncs.append(len(seen))
            return allreduce_hook(state, bucket)

        seen = []
        ddp_micro.register_comm_hook(None, counting_hook)
        accumulate_gradients(
            ddp_micro, x, y, 2, lambda xs, ys: nn.functional.cross_entropy(ddp_micro(xs), ys),
            after_micro_batch=seen.append,
        )  # fmt: skip
        diff = max((p.grad - q.grad).abs().max().item() for p, q in zip(ddp_whole.parameters(), ddp_micro.parameters()))
        Path(out, f"rank{rank}.json").write_text(json.dumps({"diff": diff, "syncs": syncs}))
    finally:
        distributed.cleanup()


def test_accumulation_under_ddp_all_reduces_once_and_equals_the_batch(tmp_path):
    import json

    import torch.multiprocessing as mp
    from helpers.ddp_ranks import free_port

    mp.start_processes(_ddp_accumulate, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["diff"] < 1e-6
        assert result["syncs"] == [1]  # one all-reduce (one bucket), in the second micro-batch's backward
