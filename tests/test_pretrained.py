"""--pretrained: format detection, conversion, bit-identical loading, head replacement, refusals; freezing."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from helpers.pytorchvideo_weights import ptv_x3d_xs, randomise
from torch import nn

from vidact.errors import CheckpointError, UsageError
from vidact.models import create_model
from vidact.train import finetune
from vidact.weights.caffe2 import caffe2_name
from vidact.weights.convert import source_key
from vidact.weights.pretrained import classifier_keys, load_pretrained
from vidact.weights.zoo import ZOO, get_zoo_entry

pytest.importorskip("pytorchvideo.models.x3d", reason="pytorchvideo is not installed")
pytest.importorskip("pytorchvideo.models.slowfast", reason="pytorchvideo is not installed")

pytestmark = pytest.mark.usefixtures("one_thread")


def _rebuild(arch: str, **kw):
    return lambda n: create_model(arch, num_classes=n, **kw)


def _ptv_to_vidact_key(ref_state: dict, vidact_key: str, family: str = "x3d") -> str:
    return source_key(vidact_key, family, "pytorchvideo")


def test_zoo_entries_are_complete_and_unique():
    names = [e.name for e in ZOO]
    assert len(names) == len(set(names))
    for e in ZOO:
        assert e.url.startswith("https://") and e.top1 > 0 and e.views and e.dataset
    assert get_zoo_entry("pytorchvideo-x3d-xs").top1 == 69.12
    assert get_zoo_entry("torchvision-googlenet").sha256 == "1378be20"
    with pytest.raises(UsageError, match="did you mean pytorchvideo-x3d-xs"):
        get_zoo_entry("pytorchvideo-x3d-xss")


def test_pytorchvideo_x3d_loads_bit_identically_and_replaces_the_head(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDACT_CACHE", str(tmp_path / "cache"))
    ref = ptv_x3d_xs()
    path = tmp_path / "X3D_XS.pyth"
    torch.save({"model_state": ref.state_dict()}, path)
    torch.manual_seed(0)
    model = create_model("x3d-xs", num_classes=5)
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.projection")}
    report = load_pretrained(model, path.as_uri(), "x3d-xs", _rebuild("x3d-xs"), progress=False)
    assert (report.format, report.source_classes) == ("pytorchvideo", 400)
    assert report.replaced == ["head.projection.weight", "head.projection.bias"]
    assert report.identity_filled and all(".branch1_bn." in k for k in report.identity_filled)
    own = model.state_dict()
    ref_state = ref.state_dict()
    for key, value in own.items():
        if key in report.replaced:
            assert torch.equal(value, head_before[key])  # the fresh init, untouched
        elif key not in report.identity_filled:
            assert torch.equal(value, ref_state[_ptv_to_vidact_key(ref_state, key)]), key
    assert report.loaded == len(own) - 2 - len(report.identity_filled)  # only tensors read from the file
    assert "replaced 2 classifier tensors" in report.summary()


def test_same_class_count_loads_the_head_too(tmp_path):
    ref = ptv_x3d_xs(classes=7)
    path = tmp_path / "x.pyth"
    torch.save(ref.state_dict(), path)
    model = create_model("x3d-xs", num_classes=7)
    report = load_pretrained(model, str(path), "x3d-xs", _rebuild("x3d-xs"), progress=False)
    assert report.replaced == [] and report.loaded == len(model.state_dict()) - len(report.identity_filled)
    assert torch.equal(model.head.projection.weight, ref.blocks[5].proj.weight)


def test_another_architecture_is_refused(tmp_path):
    path = tmp_path / "x.pyth"
    torch.save(ptv_x3d_xs().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"x\.pyth: missing key .* checkpoint does not fit x3d-l$") as err:
        load_pretrained(create_model("x3d-l", num_classes=3), str(path), "x3d-l", _rebuild("x3d-l"))
    assert err.value.exit_code == 2
    with pytest.raises(CheckpointError, match="foreign PyTorchVideo/PySlowFast weights exist for the x3d and slowfast"):
        load_pretrained(create_model("c3d-bn", num_classes=3), str(path), "c3d-bn", _rebuild("c3d-bn"))
    with pytest.raises(CheckpointError, match="pytorchvideo-x3d-m holds x3d-m weights, not x3d-xs"):
        load_pretrained(create_model("x3d-xs", num_classes=3), "pytorchvideo-x3d-m", "x3d-xs", _rebuild("x3d-xs"))
    with pytest.raises(CheckpointError, match="not a vidact architecture"):
        load_pretrained(create_model("i3d", num_classes=3), "pytorchvideo-i3d-r50-8x8", "i3d", _rebuild("i3d"))


def test_vidact_checkpoint_of_the_same_arch_and_of_another(tmp_path):
    from vidact.runtime.checkpoint import save_checkpoint

    src = randomise(create_model("c3d-bn", num_classes=4, width_mult=0.125))
    path = tmp_path / "best.pt"
    save_checkpoint(path, arch="c3d-bn", classes=list("abcd"), config={}, model=src.state_dict())
    model = create_model("c3d-bn", num_classes=3, width_mult=0.125)
    report = load_pretrained(model, str(path), "c3d-bn", _rebuild("c3d-bn", width_mult=0.125), progress=False)
    assert report.format == "vidact" and report.replaced == ["head.fc.weight", "head.fc.bias"]
    for k, v in model.state_dict().items():
        if k not in report.replaced:
            assert torch.equal(v, src.state_dict()[k]), k
    with pytest.raises(CheckpointError, match="a vidact checkpoint of 'c3d-bn', not 'c3d'"):
        load_pretrained(
            create_model("c3d", num_classes=3, width_mult=0.125), str(path), "c3d", _rebuild("c3d", width_mult=0.125)
        )


def test_imagenet_googlenet_is_inflated_into_i3d(tmp_path, monkeypatch):
    import dataclasses

    import torchvision

    from vidact.weights import zoo

    monkeypatch.setenv("VIDACT_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    g2d = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    path = tmp_path / "googlenet.pth"
    torch.save(g2d.state_dict(), path)
    entry = dataclasses.replace(zoo.get_zoo_entry("torchvision-googlenet"), url=path.as_uri(), sha256="")
    monkeypatch.setattr(zoo, "ZOO", tuple(entry if e.name == entry.name else e for e in zoo.ZOO))
    model = create_model("i3d", num_classes=6)
    report = load_pretrained(model, "imagenet", "i3d", _rebuild("i3d"), progress=False)
    assert report.format == "torchvision-2d" and report.replaced == ["fc.weight", "fc.bias"]
    w2d = g2d.state_dict()["conv1.conv.weight"]
    w3d = model.conv1.conv.weight
    assert torch.allclose(w3d.sum(2), w2d, atol=1e-6)  # repeated over time and divided by it
    assert torch.equal(model.inception5b.branch1.bn.running_var, g2d.inception5b.branch1.bn.running_var)
    with pytest.raises(UsageError, match="inflates 2D ImageNet weights for the i3d family only, not 'x3d-xs'"):
        load_pretrained(create_model("x3d-xs", num_classes=3), "imagenet", "x3d-xs", _rebuild("x3d-xs"))


def _as_caffe2(model: nn.Module) -> dict:
    """A Caffe2 blobs pickle of a vidact SlowFast: PySlowFast's blob names, numpy arrays, solver blobs."""
    names = {}
    for stage in range(1, 6):
        for way, prefix in (("pathway0", ""), ("pathway1", "t_")):
            for block in range(40):
                for part in "abc":
                    names[f"s{stage}.{way}_res{block}.branch2.{part}"] = f"{prefix}res{stage}_{block}_branch2{part}"
                names[f"s{stage}.{way}_res{block}.branch1"] = f"{prefix}res{stage}_{block}_branch1"
    blobs = {"lr": np.array([0.1], dtype=np.float32)}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        sf = source_key(key, "slowfast", "pyslowfast")
        module, param = sf.rsplit(".", 1)
        if module == "head.projection":
            c2 = "pred"
        elif module.endswith("_fuse.conv_f2s") or module.endswith("_fuse.bn"):
            stage = int(module[1])
            last = {1: None, 2: 2, 3: 3, 4: 5}[stage]
            c2 = "t_pool1_subsample" if stage == 1 else f"t_res{stage}_{last}_branch2c_bn_subsample"
            c2 += "_bn" if module.endswith(".bn") else ""
        elif module.endswith("_stem.conv"):
            c2 = ("t_" if "pathway1" in module else "") + "conv1"
        elif module.endswith("_stem.bn"):
            c2 = ("t_" if "pathway1" in module else "") + "res_conv1_bn"
        else:
            base, _, sub = module.rpartition(".")
            if sub.endswith("_bn"):
                c2 = names.get(f"{base}.{sub[:-3]}", names.get(f"{base}.branch2.{sub[:-3]}")) + "_bn"
            else:
                c2 = names.get(module)
            if c2 is None:
                c2 = names[f"{base}.{sub}"]
        suffix = (
            {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}[param]
            if (c2.endswith("_bn"))
            else {"weight": "w", "bias": "b"}[param]
        )
        blobs[f"{c2}_{suffix}"] = value.numpy().copy()
        blobs[f"{c2}_{suffix}_momentum"] = np.zeros(1, dtype=np.float32)
    return {"blobs": blobs}


def test_caffe2_names():
    assert caffe2_name("res2_0_branch2a_w") == "s2.pathway0_res0.branch2.a.weight"
    assert caffe2_name("t_res4_5_branch2c_bn_riv") == "s4.pathway1_res5.branch2.c_bn.running_var"
    assert caffe2_name("t_res3_3_branch2c_bn_subsample_bn_rm") == "s3_fuse.bn.running_mean"
    assert caffe2_name("t_pool1_subsample_w") == "s1_fuse.conv_f2s.weight"
    assert caffe2_name("res_conv1_bn_s") == "s1.pathway0_stem.bn.weight"
    assert caffe2_name("t_conv1_w") == "s1.pathway1_stem.conv.weight"
    assert caffe2_name("pred_b") == "head.projection.bias"
    assert caffe2_name("res2_0_branch2a_w_momentum") is None and caffe2_name("lr") is None


def test_pyslowfast_caffe2_pickle_round_trip_and_models_convert(tmp_path, cli):
    src = randomise(create_model("slowfast-r50-4x16", num_classes=400))
    path = tmp_path / "SLOWFAST_4x16_R50.pkl"
    with open(path, "wb") as f:
        pickle.dump(_as_caffe2(src), f)
    counters = [k for k in src.state_dict() if k.endswith("num_batches_tracked")]
    from_file = len(src.state_dict()) - len(counters)
    model = create_model("slowfast-r50-4x16", num_classes=10)
    report = load_pretrained(model, str(path), "slowfast-r50-4x16", _rebuild("slowfast-r50-4x16"), progress=False)
    assert report.format == "pyslowfast-caffe2" and len(report.replaced) == 2
    # the file holds no BatchNorm batch counters: reported as left at init, never as loaded
    assert report.left_at_init == counters and report.loaded == from_file - 2
    assert f"left {len(counters)} at init" in report.summary()
    for k, v in model.state_dict().items():
        if k not in report.replaced and not k.endswith("num_batches_tracked"):
            assert torch.equal(v, src.state_dict()[k]), k

    # models convert reads the same .pkl (it used to refuse it with torch's weights-only message)
    dst = tmp_path / "sf.pt"
    res = cli("models", "convert", path, dst, "--arch", "slowfast-r50-4x16", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["source"], out["num_classes"], out["tensors"]) == ("pyslowfast", 400, from_file)
    assert out["left_at_init"] == counters and out["filled_identity"] == []
    res = cli("models", "convert", path, dst, "--arch", "slowfast-r50-4x16")
    assert f"({from_file} tensors from the file, 400 classes, {len(counters)} BN batch counters" in res.stdout
    from vidact.runtime.checkpoint import load_checkpoint

    state = load_checkpoint(dst)["model"]
    assert all(torch.equal(state[k], v) for k, v in src.state_dict().items() if k not in counters)
    assert all(int(state[k]) == 0 for k in counters)


def test_load_report_of_a_pytorchvideo_file_without_bn_counters(tmp_path):
    ref = ptv_x3d_xs()
    state = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "X3D_XS.pyth"
    torch.save({"model_state": state}, path)
    model = create_model("x3d-xs", num_classes=400)
    report = load_pretrained(model, str(path), "x3d-xs", _rebuild("x3d-xs"), progress=False)
    own = model.state_dict()
    assert report.identity_filled  # PyTorchVideo's X3D lacks res2's shortcut BN: made here, not read
    counters = [k for k in own if k.endswith("num_batches_tracked") and k not in report.identity_filled]
    assert report.left_at_init == counters and report.replaced == []
    assert report.loaded == len(own) - len(counters) - len(report.identity_filled) == len(state)


def test_a_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"blobs": {"x": np.zeros(2)}, "f": print}))
    with pytest.raises(CheckpointError, match="refused to load builtins.print"):
        load_pretrained(
            create_model("slowfast-r50-8x8", num_classes=3), str(path), "slowfast-r50-8x8", _rebuild("slowfast-r50-8x8")
        )


# ----------------------------------------------------------------------------- freezing and LR groups
def test_freeze_backbone_keeps_every_tensor_and_bn_statistics():
    torch.manual_seed(0)
    model = create_model("x3d-xs", num_classes=3)
    head = classifier_keys(model, _rebuild("x3d-xs"))
    assert head == ["head.projection.weight", "head.projection.bias"]
    report = finetune.freeze(model, "backbone", head)
    assert report.eval_norms > 0 and report.trainable_numel == sum(model.state_dict()[k].numel() for k in head)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(finetune.param_groups(model, lr=0.1, weight_decay=1e-4, head=head), lr=0.1, momentum=0.9)
    model.train()
    for _ in range(2):
        loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 4, 32, 32)), torch.tensor([0, 2]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert changed == head


def test_freeze_stages_and_bad_names():
    model = create_model("x3d-xs", num_classes=3)
    head = classifier_keys(model, _rebuild("x3d-xs"))
    report = finetune.freeze(model, "stem,res2", head)
    assert report.frozen_modules == ["stem", "res2"]
    assert not model.stem.conv_xy.weight.requires_grad and model.res3[0].branch2.a.weight.requires_grad
    model.train()
    assert model.res3[0].branch2.a_bn.training
    with pytest.raises(UsageError, match=r"--freeze 'res9': no such module; choose from backbone, stem, res2"):
        finetune.freeze(create_model("x3d-xs", num_classes=3), "res9", head)


def test_backbone_lr_mult_makes_separate_groups():
    model = create_model("x3d-xs", num_classes=3)
    head = classifier_keys(model, _rebuild("x3d-xs"))
    groups = finetune.param_groups(model, lr=0.2, weight_decay=1e-4, head=head, backbone_lr_mult=0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["head"]["lr"] == 0.2 and by_name["head"]["params"] == [model.head.projection.weight]
    assert by_name["head_no_decay"]["params"] == [model.head.projection.bias]
    assert by_name["backbone"]["lr"] == pytest.approx(0.02) and by_name["backbone"]["lr_scale"] == 0.1
    n = sum(len(g["params"]) for g in groups)
    assert n == len(list(model.parameters()))
    from vidact.train.lr import set_lr

    opt = torch.optim.SGD(groups, lr=0.2)
    set_lr(opt, 0.5)
    assert sorted({g["lr"] for g in opt.param_groups}) == [pytest.approx(0.05), 0.5]
