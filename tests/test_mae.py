"""MAE pre-training (`dfer pretrain-mae`): masking, loss, learning, checkpoint -> SFER/S2D, resumption, and the
generic (non-face) synthetic image set it pre-trains the "ImageNet" init on."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dfer.data.synth.generate import generate
from dfer.models import create_model
from dfer.models.weights import load_pretrained
from dfer.pretrain.engine import Schedule, build_optimizer, lr_at, train_one_epoch
from dfer.pretrain.mae import (mae_for, masked_patch_loss, normalize_patches, patchify, random_masking,
                               sincos_pos_embed_2d, unpatchify)
from dfer.pretrain.stage import MAEImages, image_samples, init_settings, pretrain_mae

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
TINY_DECODER = {"embed_dim": 32, "depth": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def generic(tmp_path_factory) -> Path:
    """A small Generic set (40 images) written by the real synthetic generator."""
    out = tmp_path_factory.mktemp("synth")
    generate(out, ["Generic"], 5, _synth({"generic": {"images": 40, "size": [80, 120]}}), progress=False)
    return out / "Generic"


def _synth(over: dict) -> dict:
    """params.yaml's `synth` section (every setting) with ``over`` merged in."""
    from dfer.config import deep_merge, load_params

    return deep_merge(load_params()["synth"], over)


def _settings(list_file: Path, **kw) -> dict:
    """The project's pretrain settings (params.yaml), shrunk to a few CPU seconds on ``list_file``'s images."""
    from dfer.config import load_params

    base = {k: v for k, v in load_params()["pretrain"].items() if k not in ("inits", "out")}
    return {**base, "init": "test", "model": "sfer_tiny", "decoder": TINY_DECODER, "epochs": 2, "warmup_epochs": 1,
            "batch_size": 8, "effective_batch": 8, "blr": 1.0e-2, "num_workers": 0, "reconstructions": 2, "seed": 0,
            "amp": False, "sources": [{"images": str(list_file)}], **kw}


# ---- masking and patches ------------------------------------------------------------------------
def test_masking_keeps_exactly_the_right_tokens_and_is_a_permutation():
    n, length, d = 5, 49, 6
    tokens = torch.arange(n * length, dtype=torch.float32).reshape(n, length, 1).expand(n, length, d).contiguous()
    m = random_masking(tokens, 0.75, torch.Generator().manual_seed(0))
    keep = int(length * 0.25)  # MAE: int(L * (1 - ratio)) = 12 of 49
    assert m.kept.shape == (n, keep, d) and m.mask.shape == (n, length)
    assert torch.all(m.mask.sum(1) == length - keep)
    for i in range(n):
        assert sorted(m.ids_restore[i].tolist()) == list(range(length))          # a permutation
        visible = set(torch.nonzero(m.mask[i] == 0).flatten().tolist())
        assert visible == set(m.ids_keep[i].tolist())
        assert torch.equal(m.kept[i], tokens[i, m.ids_keep[i]])               # the visible tokens themselves
    assert len({tuple(sorted(r.tolist())) for r in m.ids_keep}) > 1            # per-sample shuffling
    # video tokens (UniLearn-style tubelets 2x16x16, 16 frames at 224 px): 95 % masked
    video_tokens = torch.zeros(2, 8 * 14 * 14, 4)
    assert random_masking(video_tokens, 0.95).kept.shape[1] == int(1568 * 0.05)
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(tokens, 1.0)


def test_patchify_matches_mae_layout_and_inverts_for_images_and_tubelets():
    imgs = torch.randn(2, 3, 32, 48)
    p = 16
    ref = torch.einsum("nchpwq->nhwpqc", imgs.reshape(2, 3, 2, p, 3, p)).reshape(2, 6, p * p * 3)  # MAE's patchify
    assert torch.equal(patchify(imgs, (p, p)), ref)
    assert torch.equal(unpatchify(ref, (p, p), (2, 3)), imgs)
    video = torch.randn(2, 3, 4, 32, 32)
    tokens = patchify(video, (2, 16, 16))
    assert tokens.shape == (2, 2 * 2 * 2, 2 * 16 * 16 * 3)
    assert torch.equal(tokens[0, 0].reshape(2, 16, 16, 3).permute(3, 0, 1, 2), video[0, :, :2, :16, :16])
    assert torch.equal(unpatchify(tokens, (2, 16, 16), (2, 2, 2)), video)


def test_sincos_position_embedding_is_mae_style_and_fixed():
    pe = sincos_pos_embed_2d(8, (2, 3))
    assert pe.shape == (1, 7, 8) and torch.all(pe[0, 0] == 0)                  # CLS: zeros
    # token (row 1, col 2): first half encodes the column, second half the row; sin then cos
    omega = 1.0 / 10000 ** (torch.arange(2, dtype=torch.float64) / 2)
    col, row = 2 * omega, 1 * omega
    want = torch.cat([col.sin(), col.cos(), row.sin(), row.cos()]).float()
    assert torch.allclose(pe[0, 1 + 1 * 3 + 2], want)
    model = mae_for("sfer_tiny")
    assert not model.pos_embed.requires_grad and not model.decoder_pos_embed.requires_grad
    assert torch.equal(model.pos_embed, sincos_pos_embed_2d(96, (7, 7)))


# ---- loss ---------------------------------------------------------------------------------------
def test_loss_is_computed_on_masked_patches_only():
    torch.manual_seed(0)
    model = mae_for("sfer_tiny", decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    imgs = torch.randn(3, 3, 112, 112)
    loss, pred, mask = model(imgs, generator=torch.Generator().manual_seed(1))
    assert torch.isclose(loss, model.forward_loss(imgs, pred, mask))
    visible = (mask == 0).unsqueeze(-1)
    garbage = pred + 100.0 * visible                                          # change only visible patches
    assert torch.equal(model.forward_loss(imgs, garbage, mask), model.forward_loss(imgs, pred, mask))
    target = normalize_patches(model.patchify(imgs))
    perfect_on_masked = torch.where(visible, torch.randn_like(target), target)
    assert float(masked_patch_loss(perfect_on_masked, model.patchify(imgs), mask)) < 1e-10
    assert float(masked_patch_loss(torch.where(visible, target, target + 1.0), model.patchify(imgs), mask)) \
        == pytest.approx(1.0, rel=1e-5)                                       # error 1 on masked patches only
    # norm_pix_loss off: raw pixels are the target
    assert float(masked_patch_loss(model.patchify(imgs), model.patchify(imgs), mask, norm_pix=False)) == 0.0


def test_loss_decreases_over_30_steps_on_a_tiny_image_set(generic):
    torch.manual_seed(0)
    samples = image_samples([{"images": str(generic / "images.txt")}])
    assert len(samples) == 40
    ds = MAEImages(samples[:32], 112)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    model = mae_for("sfer_tiny", decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    sched = Schedule(lr=1.5e-3, min_lr=0.0, warmup_epochs=1, epochs=8, steps_per_epoch=4)
    opt = build_optimizer(model, sched.lr)
    losses = []
    for epoch in range(8):  # 32 steps
        r = train_one_epoch(model, loader, opt, epoch, sched, torch.device("cpu"), show=False)
        losses += r["losses"]
    assert len(losses) == 32
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.85 * first, (first, last)


def test_lr_schedule_is_mae_warmup_then_cosine():
    assert lr_at(0.0, 1.0, 0.0, 4, 20) == 0.0
    assert lr_at(2.0, 1.0, 0.0, 4, 20) == pytest.approx(0.5)
    assert lr_at(4.0, 1.0, 0.1, 4, 20) == pytest.approx(1.0)
    assert lr_at(12.0, 1.0, 0.1, 4, 20) == pytest.approx(0.55)
    assert lr_at(20.0, 1.0, 0.1, 4, 20) == pytest.approx(0.1)
    opt = build_optimizer(mae_for("sfer_tiny"), 1e-3)
    assert opt.defaults["betas"] == (0.9, 0.95)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.05 for p in g["params"]}
    names = {n for n, p in mae_for("sfer_tiny").named_parameters() if p.ndim > 1 and p.requires_grad}
    assert len(decayed) == len(names)


# ---- checkpoint -> S2D / SFER -------------------------------------------------------------------
def test_encoder_names_and_shapes_are_the_s2d_vits():
    for name in ("sfer_tiny", "s2d_tiny", "s2d_base_patch16_224"):  # sfer_base: s2d_base's ViT, T=1
        with torch.device("meta"):
            mae = mae_for(name).state_dict()
        target = create_model(name, fusion="none", adapter="none").state_dict()  # S2D's init calls .item()
        enc = {k.replace("norm.", "ln_post.", 1) if k.startswith("norm.") else k: v
               for k, v in mae.items() if not (k.startswith("decoder") or k == "mask_token")}
        vit = {k: v for k, v in target.items() if not k.startswith(("head.", "temporal_embedding"))}
        assert set(enc) == set(vit), (name, set(enc) ^ set(vit))
        assert all(enc[k].shape == vit[k].shape for k in enc), name
        assert {"decoder_embed.weight", "mask_token", "decoder_pos_embed", "decoder_norm.weight",
                "decoder_pred.weight", "decoder_blocks.0.attn.qkv.weight"} <= set(mae)


def test_checkpoint_loads_into_sfer_and_s2d_with_every_encoder_tensor(generic, tmp_path):
    done = pretrain_mae(_settings(generic / "images.txt", epochs=1), tmp_path / "run", show=False)
    path = tmp_path / "run" / "model.pt"
    assert done["outputs"] == ["model.pt", "metrics.jsonl", "reconstructions.png"]
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["meta"]["format"] == "mae" and ckpt["meta"]["target_model"] == "sfer_tiny"
    sd = ckpt["model"]
    encoder = {k: v for k, v in sd.items() if not (k.startswith("decoder") or k == "mask_token")}
    assert len(encoder) == 4 + 4 * 12 + 2  # patch_embed (2), cls, pos, 4 blocks x 12 tensors, norm (2)
    fresh = mae_for("sfer_tiny", decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2).state_dict()
    assert not torch.equal(sd["blocks.0.attn.qkv.weight"], fresh["blocks.0.attn.qkv.weight"])  # it trained
    for name in ("sfer_tiny", "s2d_tiny"):
        torch.manual_seed(1)
        model = create_model(name, num_classes=7)
        report = load_pretrained(model, path, format="mae", verbose=False)
        own = model.state_dict()
        for k, v in encoder.items():
            dst = k.replace("norm.", "ln_post.", 1) if k.startswith("norm.") else k
            assert dst in report.loaded and torch.equal(own[dst], v), (name, k)
        assert set(report.dropped) == {k for k in sd if k.startswith("decoder") or k == "mask_token"}
        assert not report.unexpected
    # what a person looks at: metrics per epoch and the reconstruction figure
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1] and np.isfinite(rows[0]["loss"])
    import cv2
    fig = cv2.imread(str(tmp_path / "run" / "reconstructions.png"))
    assert fig is not None and fig.shape[1] >= 4 * 112 and fig.shape[0] >= 2 * 112


# ---- resumption ---------------------------------------------------------------------------------
def test_killed_or_preempted_run_resumes_and_ends_as_an_uninterrupted_run(generic, tmp_path, capsys):
    settings = _settings(generic / "images.txt", epochs=12, warmup_epochs=2, max_images=24, reconstructions=0)
    from dfer.config import Params, load_params, stage_params

    params = Params({**load_params(), "seed": 0,
                     "pretrain": {**{k: v for k, v in settings.items() if k not in ("init", "sources")},
                                  "out": "results/pretrain/{init}", "inits": {"test": {"sources": settings["sources"]}}}})
    resumed = init_settings(params, "test")
    pretrain_mae(resumed, tmp_path / "straight", show=False)
    ref = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["model"]
    ref_losses = [json.loads(r)["loss"] for r in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]

    def same_as_straight(out: Path) -> None:
        got = torch.load(out / "model.pt", weights_only=True)["model"]
        assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)  # bitwise (CPU, 1 thread)
        assert [json.loads(r)["loss"] for r in (out / "metrics.jsonl").read_text().splitlines()] == ref_losses
        assert len(ref_losses) == 12 and not (out / "resume").exists()

    # 1. SIGKILL (no warning) of the CLI after a few epochs
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(stage_params(params, ["seed", "data", "pretrain"])))  # as the workflow writes it
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DFER_ROOT": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dfer.cli", "pretrain-mae", "--params", str(pfile), "--init",
                             "test", "--out", str(out), "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    metrics = out / "resume" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "resume" / "checkpoint.pt").is_file() and not (out / "done.json").exists()
    assert 2 <= len(metrics.read_text().splitlines()) < 12
    capsys.readouterr()
    pretrain_mae(resumed, out, show=False)
    assert "resuming from" in capsys.readouterr().out
    same_as_straight(out)

    # 2. SIGUSR1 (SLURM preemption): checkpoint at the next optimizer step, then continue (mid-epoch or not)
    out = tmp_path / "preempted"
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    first = pretrain_mae(resumed, out, show=False)
    timer.join()
    assert first.get("stopped") and (out / "resume" / "checkpoint.pt").is_file(), first
    pretrain_mae(resumed, out, show=False)
    same_as_straight(out)

    # a finished run returns at once; other settings in the same folder are refused
    assert pretrain_mae(resumed, out, show=False)["settings_hash"] == \
        json.loads((out / "done.json").read_text())["settings_hash"]
    from dfer.config import ConfigError
    with pytest.raises(ConfigError, match="finished pre-training"):
        pretrain_mae({**resumed, "epochs": 13}, out, show=False)


# ---- settings -----------------------------------------------------------------------------------
def test_project_params_define_both_inits_for_both_presets():
    from dfer.config import load_params

    syn = load_params()  # validated against the schema's pretrain section
    assert syn["preset"] == "synthetic"
    gen = init_settings(syn, "mae_imagenet1k")
    aff = init_settings(syn, "mae_affectnet")
    assert gen["model"] == aff["model"] == syn["methods"]["sfer"]["model"] == "sfer_tiny"
    assert gen["sources"] == [{"images": "results/synth/Generic/images.txt"}]
    assert aff["sources"][0]["dataset"] == "AffectNet-8" and aff["sources"][0]["split"] == "train"
    assert aff["sources"][0]["entry"]["root"] == "results/synth/AffectNet"
    paper = load_params(overrides=["preset=paper"])
    p = init_settings(paper, "mae_affectnet")
    # MSA-LMC/MAE-SFER's MAE-AffectNet: batch 32 x accum_iter 4, blr 1.5e-4, 300 epochs, warm-up 40, mask 0.75
    assert (p["model"], p["epochs"], p["warmup_epochs"], p["effective_batch"], p["blr"], p["mask_ratio"]) == \
        ("sfer_base_patch16_224", 300, 40, 128, 1.5e-4, 0.75)
    assert (gen["epochs"], aff["epochs"]) == (20, 10)  # the synthetic preset's CPU budget (2,800 faces)
    assert p["model"] == paper["methods"]["sfer"]["model"]
    from dfer.config import ConfigError
    with pytest.raises(ConfigError, match="no 'bogus'"):
        init_settings(syn, "bogus")


# ---- the generic synthetic set ------------------------------------------------------------------
def test_generic_set_has_no_faces_and_is_deterministic_from_its_seed(generic, tmp_path):
    listed = generic.joinpath("images.txt").read_text().splitlines()
    assert len(listed) == 40 and all((generic / rel).is_file() for rel in listed)
    gts = [json.loads(p.read_text()) for p in (generic / "_groundtruth").glob("*.json") if p.name != "manifest.json"]
    assert len(gts) == 40
    for gt in gts:
        assert gt["box"] is None and gt["landmarks"] is None and gt["expression"] is None and gt["label"] is None
        assert gt["objects"] and all(o["kind"] != "face" for o in gt["objects"])
    assert len({gt["background"] for gt in gts}) >= 4                            # varied scenes
    again = tmp_path / "again"
    generate(again, ["Generic"], 5, _synth({"generic": {"images": 40, "size": [80, 120]}}), progress=False)
    for p in sorted(generic.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            assert p.read_bytes() == (again / "Generic" / p.relative_to(generic)).read_bytes(), p
    other = tmp_path / "other"
    generate(other, ["Generic"], 6, _synth({"generic": {"images": 40, "size": [80, 120]}}), progress=False)
    assert (other / "Generic/images/00000.jpg").read_bytes() != (generic / "images/00000.jpg").read_bytes()
