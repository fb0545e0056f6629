"""UniLearn's dual-modal MAE (images + videos, one tubelet encoder): masking per modality, loss on the masked
tubelets, learning, and a checkpoint in S4D's layout that the fine-tuned UniLearn model loads."""
from __future__ import annotations

import json

import pytest
import torch

from dfer.models import create_model
from dfer.models.unilearn import load_unilearn_pretrained
from dfer.pretrain.dual_mae import dual_mae_for
from dfer.pretrain.engine import build_optimizer


def test_each_modality_masks_its_own_ratio_and_predicts_every_tubelet():
    torch.manual_seed(0)
    mae = dual_mae_for("unilearn_tiny", image_mask_ratio=0.75, video_mask_ratio=0.875)  # 64 px, 4 frames
    image, video = torch.randn(3, 3, 64, 64), torch.randn(3, 3, 4, 64, 64)
    loss_i, pred_i, mask_i = mae(image)
    loss_v, pred_v, mask_v = mae(video)
    assert pred_i.shape == (3, 16, 2 * 16 * 16 * 3) and pred_v.shape == (3, 32, 2 * 16 * 16 * 3)
    assert mask_i.sum(1).tolist() == [12.0] * 3 and mask_v.sum(1).tolist() == [28.0] * 3
    assert torch.isfinite(loss_i) and torch.isfinite(loss_v)
    assert mae.modality(image) == "image" and mae.modality(video) == "video"


def test_an_image_is_one_static_tubelet():
    """An image is repeated to one tubelet (OmniMAE / S4D): it gives exactly what the two-frame still clip gives."""
    torch.manual_seed(0)
    mae = dual_mae_for("unilearn_tiny")
    image = torch.randn(2, 3, 64, 64)
    still = image.unsqueeze(2).expand(-1, -1, 2, -1, -1)
    a = mae(image, mask_ratio=0.5, generator=torch.Generator().manual_seed(3))
    b = mae(still, mask_ratio=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[2], b[2]) and torch.allclose(a[1], b[1]) and a[0].item() == pytest.approx(b[0].item())


def test_interleaved_image_and_video_batches_learn():
    torch.manual_seed(0)
    mae = dual_mae_for("unilearn_tiny", decoder_embed_dim=32, decoder_depth=1)
    # Smooth inputs a tiny model can learn to fill in: gradients per image / per clip.
    ramp = torch.linspace(-1, 1, 64)
    images = torch.stack([ramp.view(1, -1) * s + ramp.view(-1, 1) * (1 - s) for s in torch.rand(8)])
    images = images.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    videos = images[:4].unsqueeze(2).expand(-1, -1, 4, -1, -1).contiguous()
    opt = build_optimizer(mae, 2e-3)
    first = last = None
    for step in range(40):
        batch = images if step % 2 == 0 else videos
        loss, _, _ = mae(batch, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
        last = loss.item()
    assert last < 0.7 * first, (first, last)


def test_checkpoint_in_s4d_layout_initialises_the_unilearn_model(tmp_path):
    torch.manual_seed(0)
    mae = dual_mae_for("unilearn_tiny")
    sd = mae.state_dict()
    assert {"encoder.patch_embed.proj.weight", "encoder.blocks.0.attn.q_bias", "encoder.norm.weight",
            "encoder_to_decoder.weight", "mask_token", "decoder.head.weight"} <= set(sd)
    path = tmp_path / "model.pt"
    torch.save({"model": sd}, path)
    model = create_model("unilearn_tiny")
    report = load_unilearn_pretrained(model, path, verbose=False)
    enc = mae.encoder_state_dict()
    for k, v in model.state_dict().items():
        if f"encoder.{k}" in enc:
            assert torch.equal(v, enc[f"encoder.{k}"]), k
    assert len(report.loaded) == len([k for k in enc if k[len("encoder."):] in model.state_dict()]) > 10
    assert all(k.startswith(("blocks.2.moe_layer", "blocks.3.moe_layer", "fc_norm", "head")) for k in report.missing)


# ---- the stage: `dfer pretrain-mae` with a UniLearn model ---------------------------------------
@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Generic images and VoxCeleb2-layout talking-face clips, written by the real synthetic generator."""
    from dfer.config import deep_merge, load_params
    from dfer.data.synth.generate import generate

    out = tmp_path_factory.mktemp("synth")
    synth = deep_merge(load_params()["synth"], {
        "generic": {"images": 24, "size": [64, 80]},
        "voxceleb2": {"speakers": 2, "videos_per_speaker": 2, "clips_per_video": 2, "size": 64, "frames": [8, 10]}})
    generate(out, ["Generic", "VoxCeleb2"], 5, synth, progress=False)
    return out


def _dual_settings(media, **kw) -> dict:
    from dfer.config import load_params

    base = {k: v for k, v in load_params()["pretrain"].items() if k not in ("inits", "out")}
    return {**base, "init": "test", "model": "unilearn_tiny", "decoder": {"embed_dim": 32, "depth": 1, "num_heads": 2},
            "dual": {"image_mask_ratio": 0.9, "video_mask_ratio": 0.95, "input_size": 64, "num_frames": 4,
                     "sampling_rate": 2},
            "epochs": 2, "warmup_epochs": 1, "batch_size": 4, "effective_batch": 4, "blr": 1.0e-2, "num_workers": 0,
            "seed": 0, "amp": False, "sources": [{"images": str(media / "Generic" / "images.txt")}],
            "video_sources": [{"videos": str(media / "VoxCeleb2" / "dev" / "mp4")}], **kw}


def test_stage_pretrains_on_images_and_clips_and_the_unilearn_model_loads_it(media, tmp_path):
    from dfer.pretrain.stage import ModalityBatches, pretrain_mae

    done = pretrain_mae(_dual_settings(media), tmp_path / "run", show=False)
    assert (done["images"], done["videos"]) == (24, 8)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["loss"] > 0 for r in rows)
    ckpt = torch.load(tmp_path / "run" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["meta"]["format"] == "unilearn"
    model = create_model("unilearn_tiny", img_size=64, num_frames=4)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_unilearn_pretrained(model, tmp_path / "run" / "model.pt", verbose=False)
    own = model.state_dict()
    for k in report.loaded:
        assert torch.equal(own[k], ckpt["model"][f"encoder.{k}"]), k
    assert not torch.equal(own["blocks.0.attn.qkv.weight"], fresh["blocks.0.attn.qkv.weight"])
    # Each batch is one modality; every image and clip batch of an epoch comes once, in a seeded order.
    batches = ModalityBatches(24, 8, 4, seed=0)
    order = batches.batches()
    assert len(order) == batches.steps == 6 + 2
    assert all(max(b) < 24 or min(b) >= 24 for b in order)
    assert sorted(i for b in order for i in b) == list(range(32))
    batches.set_epoch(1)
    assert batches.batches() != order


def test_the_synthetic_presets_conv_stem_encoder_pretrains_and_loads_at_another_size(media, tmp_path):
    """The synthetic preset pre-trains ``unilearn_tiny_convstem`` at one size and fine-tunes it at another: the
    stem (convolutions and BatchNorm statistics) and the blocks load; the positions are a fixed sinusoid table."""
    from dfer.pretrain.stage import pretrain_mae

    pretrain_mae(_dual_settings(media, model="unilearn_tiny_convstem", epochs=1), tmp_path / "run", show=False)
    ckpt = torch.load(tmp_path / "run" / "model.pt", map_location="cpu", weights_only=True)
    model = create_model("unilearn_tiny_convstem", img_size=32, num_frames=2)
    report = load_unilearn_pretrained(model, tmp_path / "run" / "model.pt", verbose=False)
    own = model.state_dict()
    stem = [k for k in ckpt["model"] if k.startswith("encoder.patch_embed.stem.")]
    assert any(k.endswith("running_mean") for k in stem)
    for k in stem + ["encoder.patch_embed.proj.weight", "encoder.blocks.3.mlp.fc2.weight"]:
        assert k[len("encoder."):] in report.loaded and torch.equal(own[k[len("encoder."):]], ckpt["model"][k]), k
    assert model(torch.randn(2, 3, 2, 32, 32))[0].shape == (2, 7)


def test_video_only_and_image_only_pretraining_and_bad_sources(media, tmp_path):
    from dfer.config import ConfigError
    from dfer.pretrain.stage import pretrain_mae

    video_only = pretrain_mae(_dual_settings(media, sources=[], epochs=1), tmp_path / "v", show=False)
    image_only = pretrain_mae(_dual_settings(media, video_sources=[], epochs=1), tmp_path / "i", show=False)
    assert (video_only["images"], video_only["videos"]) == (0, 8)
    assert (image_only["images"], image_only["videos"]) == (24, 0)
    with pytest.raises(ConfigError, match="no-such-folder"):
        pretrain_mae(_dual_settings(media, video_sources=[{"videos": str(tmp_path / "no-such-folder")}]),
                     tmp_path / "x", show=False)
    # UniLearn Table 2 row 5: the videos' frames as the image modality (one frame of each clip per epoch)
    vox = str(media / "VoxCeleb2" / "dev" / "mp4")
    frames = pretrain_mae(_dual_settings(media, sources=[{"video_frames": vox}], epochs=1), tmp_path / "f", show=False)
    assert (frames["images"], frames["videos"]) == (8, 8)


def test_a_video_frame_source_gives_one_random_frame_per_epoch_as_an_image(media):
    from dfer.pretrain.stage import MAEImages, image_samples

    samples = image_samples([{"video_frames": str(media / "VoxCeleb2" / "dev" / "mp4")}])
    assert len(samples) == 8 and all(s.kind == "video" for s in samples)
    torch.manual_seed(0)
    train = MAEImages(samples, 48)
    shots = torch.stack([train[0]["video"] for _ in range(4)])
    assert shots.shape == (4, 3, 48, 48) and not torch.equal(shots[0], shots[1])   # random frame, crop, flip
    test = MAEImages(samples, 48, train=False)
    assert torch.equal(test[0]["video"], test[0]["video"])   # the middle frame, whole


def test_video_tubes_hide_the_same_spatial_positions_in_every_slice():
    from dfer.pretrain.dual_mae import tube_masking

    tokens = torch.randn(3, 4 * 16, 8)                       # 4 temporal slices of a 4x4 grid
    m = tube_masking(tokens, 4, 0.75, torch.Generator().manual_seed(0))
    mask = m.mask.view(3, 4, 16)
    assert torch.equal(mask, mask[:, :1].expand_as(mask)) and mask.sum(2).eq(12).all()
    assert torch.equal(m.kept, torch.gather(tokens, 1, m.ids_keep.unsqueeze(-1).expand(-1, -1, 8)))
    restored = torch.gather(torch.cat([m.kept, torch.zeros(3, 48, 8)], 1), 1,
                            m.ids_restore.unsqueeze(-1).expand(-1, -1, 8))
    assert torch.equal(restored[m.mask == 0], tokens[m.mask == 0])  # unshuffling puts visible tokens back
