"""vidact train --pretrained / --freeze / backbone_lr_mult / recipes, end to end on a local HTTP server."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from helpers.local_server import Handler, LocalServer
from helpers.pytorchvideo_weights import ptv_slowfast_r50, ptv_x3d_xs

from vidact.runtime.checkpoint import load_checkpoint
from vidact.train.config import load_config, read_config_file
from vidact.train.recipes import all_recipes, get_recipe, recipe_names
from vidact.weights.convert import source_key

pytest.importorskip("pytorchvideo.models.x3d", reason="pytorchvideo is not installed")

pytestmark = pytest.mark.usefixtures("one_thread")

# X3D-XS at a tiny clip; no recipe, so the run is small and its LR plain.
SMALL = "--arch x3d-xs --epochs 1 --batch-size 4 --frames 4 --stride 2 --size 32 --recipe none --set threads=1".split()
SMALL += ["--set", "dropout=0"]


@pytest.fixture
def x3d_server(tmp_path, monkeypatch):
    """A PyTorchVideo X3D-XS checkpoint (400 classes) served on 127.0.0.1, and an empty cache."""
    monkeypatch.setenv("VIDACT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "www"
    root.mkdir()
    ref = ptv_x3d_xs()
    torch.save({"model_state": ref.state_dict()}, root / "X3D_XS.pyth")
    server = LocalServer(root)
    yield server, ref.state_dict(), root
    server.stop()


def _backbone_equal(model_state: dict, ref_state: dict, skip: set[str]) -> list[str]:
    """Keys of the vidact state that differ from the PyTorchVideo reference (identity-filled BN skipped)."""
    bad = []
    for key, value in model_state.items():
        if key in skip or ".branch1_bn." in key and source_key(key, "x3d", "pytorchvideo") not in ref_state:
            continue
        if not torch.equal(value, ref_state[source_key(key, "x3d", "pytorchvideo")]):
            bad.append(key)
    return bad


def test_pretrained_url_frozen_backbone_stays_bit_identical_then_cache(cli, synth_dir, x3d_server, tmp_path):
    server, ref_state, _ = x3d_server
    url = server.url("X3D_XS.pyth")
    run = tmp_path / "run"
    res = cli("train", *SMALL, "--data", synth_dir, "--out", run, "--pretrained", url, "--freeze", "backbone")
    assert res.exit_code == 0, res.stderr
    assert f"pretrained {url} [pytorchvideo, x3d-xs]: loaded" in res.stderr
    assert (
        "replaced 2 classifier tensors (400 -> new classes: head.projection.weight, head.projection.bias)" in res.stderr
    )
    assert "frozen: all but the classifier" in res.stderr
    ckpt = load_checkpoint(run / "last.pt")
    head = {"head.projection.weight", "head.projection.bias"}
    # every backbone tensor, BatchNorm statistics included, is the checkpoint's after an epoch
    assert _backbone_equal(ckpt["model"], ref_state, head) == []
    assert not torch.equal(ckpt["model"]["head.projection.weight"][:4], ref_state["blocks.5.proj.weight"][:4])
    assert read_config_file(run / "config.toml")["pretrained"] == url
    env = json.loads((run / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["vidact"] and "cuda" in env
    assert json.loads((run / "pretrained.json").read_text())["format"] == "pytorchvideo"

    server.stop()  # a second run is served from the cache
    res = cli("train", *SMALL, "--data", synth_dir, "--out", tmp_path / "run2", "--pretrained", url)
    assert res.exit_code == 0, res.stderr
    assert "(from the cache)" in res.stderr
    first = load_checkpoint(run / "last.pt")["model"]
    assert torch.equal(
        first["res3.0.branch2.a.weight"], ref_state[source_key("res3.0.branch2.a.weight", "x3d", "pytorchvideo")]
    )


def test_backbone_lr_mult_gives_two_lrs(cli, synth_dir, x3d_server, tmp_path):
    _, ref_state, root = x3d_server
    run = tmp_path / "run"
    res = cli(
        "train",
        *SMALL,
        "--data",
        synth_dir,
        "--out",
        run,
        "--pretrained",
        (root / "X3D_XS.pyth").as_uri(),
        "--set",
        "backbone_lr_mult=0.1",
        "--lr",
        "0.05",
        "--set",
        "schedule=constant",
    )
    assert res.exit_code == 0, res.stderr
    groups = load_checkpoint(run / "last.pt")["optimizer"]["param_groups"]
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["head"] == pytest.approx(0.05) and lrs["head_no_decay"] == pytest.approx(0.05)
    assert lrs["backbone"] == pytest.approx(0.005) and lrs["backbone_no_decay"] == pytest.approx(0.005)


def test_hash_mismatch_and_truncation_exit_2_and_cache_nothing(cli, synth_dir, x3d_server, tmp_path, monkeypatch):
    from vidact.weights import zoo

    server, _, _ = x3d_server
    entry = dataclasses.replace(
        zoo.get_zoo_entry("pytorchvideo-x3d-xs"), url=server.url("X3D_XS.pyth"), sha256="0123abcd"
    )
    monkeypatch.setattr(zoo, "ZOO", tuple(entry if e.name == entry.name else e for e in zoo.ZOO))
    res = cli("train", *SMALL, "--data", synth_dir, "--out", tmp_path / "a", "--pretrained", "pytorchvideo-x3d-xs")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "does not match the expected 0123abcd; nothing was cached" in res.stderr
    size = (tmp_path / "www" / "X3D_XS.pyth").stat().st_size
    monkeypatch.setitem(Handler.truncate, "X3D_XS.pyth", size // 2)
    res = cli("train", *SMALL, "--data", synth_dir, "--out", tmp_path / "b", "--pretrained", server.url("X3D_XS.pyth"))
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "truncated download" in res.stderr
    cache = tmp_path / "cache"
    assert not cache.exists() or [p for p in cache.rglob("*") if p.is_file()] == []


def test_other_architecture_is_refused(cli, synth_dir, x3d_server, tmp_path):
    _, _, root = x3d_server
    where = ("--data", synth_dir, "--out", tmp_path / "r", "--epochs", "1")
    res = cli("train", "--arch", "c3d-bn", *where, "--pretrained", root / "X3D_XS.pyth")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "foreign PyTorchVideo/PySlowFast weights exist for the x3d and slowfast families only" in res.stderr
    res = cli("train", "--arch", "x3d-xs", *where, "--pretrained", "pytorchvideo-slowfast-r50-8x8")
    assert res.exit_code == 2 and "holds slowfast-r50-8x8 weights, not x3d-xs" in res.stderr


# ----------------------------------------------------------------------------- recipes
@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_parses_and_dry_runs(cli, name):
    recipe = get_recipe(name)
    assert recipe.aims_at and recipe.source and recipe.reference_batch_size > 0
    res = cli("train", "--recipe", name, "--dry-run", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["recipe"]["name"] == name and out["config"]["arch"] == recipe.arch
    assert out["config"]["lr"] == pytest.approx(recipe.config["lr"] * 8 / recipe.reference_batch_size)


def test_arch_without_options_uses_its_recipe_scaled():
    assert {r.arch for r in all_recipes() if r.auto} >= {
        "x3d-xs",
        "x3d-s",
        "x3d-m",
        "x3d-l",
        "slowfast-r50-4x16",
        "slowfast-r50-8x8",
    }
    cfg = load_config(recipe="auto", arch="x3d-xs", batch_size=32)
    assert (cfg.recipe, cfg.epochs, cfg.warmup_epochs, cfg.weight_decay) == ("x3d-xs-kinetics400", 300, 35.0, 5e-5)
    assert cfg.lr == pytest.approx(0.1 * 32 / 128) and cfg.scale_range == [182, 228] and cfg.nesterov
    short = load_config(recipe="auto", arch="x3d-xs", epochs=30, lr=0.3)
    assert (short.warmup_epochs, short.lr) == (pytest.approx(3.5), 0.3)
    assert load_config(recipe="auto", arch="x3d-xs", size=80).scale_range == [91, 114]  # 182..228 x 80/160
    assert load_config(recipe="auto", arch="c3d").recipe == ""  # no recipe: the defaults
    assert load_config(recipe="none", arch="x3d-xs").lr == 0.01
    with pytest.raises(Exception, match="recipe x3d-m-kinetics400 is for arch x3d-m, not x3d-xs"):
        load_config(recipe="x3d-m-kinetics400", arch="x3d-xs")


def test_models_zoo_lists_every_entry(cli):
    from vidact.weights.zoo import ZOO

    res = cli("models", "zoo", "--json")
    rows = json.loads(res.stdout)
    assert res.exit_code == 0 and [r["name"] for r in rows] == [e.name for e in ZOO]
    res = cli("models", "zoo", "--arch", "x3d-xs")
    assert res.exit_code == 0 and "pytorchvideo-x3d-xs" in res.stdout and "69.12" in res.stdout
    assert "slowfast-r50" not in res.stdout and " 182 " in res.stdout  # the crop the figure was tested at
    assert {(r["name"], r["test_crop"], r["protocol"]) for r in rows if r["arch"] == "slowfast-r50-8x8"} == {
        ("pyslowfast-slowfast-r50-8x8", 256, "pyslowfast"),
        ("pytorchvideo-slowfast-r50-8x8", 256, "pytorchvideo"),
    }


def _ptv_slowfast_r50(tmp_path):
    pytest.importorskip("pytorchvideo.models.slowfast", reason="pytorchvideo is not installed")
    ref = ptv_slowfast_r50()
    path = tmp_path / "SLOWFAST_8x8_R50.pyth"
    torch.save({"model_state": ref.state_dict()}, path)
    return path, ref.state_dict()


def test_pytorchvideo_slowfast_r50_file_url_loads_bit_identically(tmp_path, monkeypatch):
    from vidact.models import create_model
    from vidact.weights.pretrained import load_pretrained

    monkeypatch.setenv("VIDACT_CACHE", str(tmp_path / "cache"))
    path, ref_state = _ptv_slowfast_r50(tmp_path)
    model = create_model("slowfast-r50-8x8", num_classes=3)
    report = load_pretrained(
        model,
        path.as_uri(),
        "slowfast-r50-8x8",
        lambda n: create_model("slowfast-r50-8x8", num_classes=n),
        progress=False,
    )
    assert report.format == "pytorchvideo" and report.replaced == ["head.projection.weight", "head.projection.bias"]
    for key, value in model.state_dict().items():
        if key not in report.replaced:
            assert torch.equal(value, ref_state[source_key(key, "slowfast", "pytorchvideo")]), key


def test_slowfast_r50_over_http_frozen_backbone_epoch(cli, synth_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDACT_CACHE", str(tmp_path / "cache"))
    path, ref_state = _ptv_slowfast_r50(tmp_path)
    server = LocalServer(path.parent)
    try:
        run = tmp_path / "run"
        options = "--epochs 1 --batch-size 4 --frames 8 --stride 2 --size 32 --recipe none --set threads=1".split()
        res = cli(
            "train", "--arch", "slowfast-r50-8x8", "--data", synth_dir, "--out", run, *options,
            "--pretrained", server.url(path.name), "--freeze", "backbone",
        )  # fmt: skip
    finally:
        server.stop()
    assert res.exit_code == 0, res.stderr
    state = load_checkpoint(run / "last.pt")["model"]
    head = {"head.projection.weight", "head.projection.bias"}
    bad = [
        k
        for k, v in state.items()
        if k not in head and not torch.equal(v, ref_state[source_key(k, "slowfast", "pytorchvideo")])
    ]
    assert bad == []
