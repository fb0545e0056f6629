"""Sampling rules, view expansion, clip-consistent augmentation, feature cache and params wiring."""
import random
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfer.config import load_params
from dfer.data import video
from dfer.data.annotations import Sample
from dfer.data.datasets import ImageDataset, VideoClipDataset, balanced_sampler, run_dataset
from dfer.data.errors import DataError
from dfer.data.sampling import test_views, train_indices
from dfer.data.transforms import IMAGENET_MEAN, IMAGENET_STD

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


# -------------------------------------------------------------------------------------- sampling
def test_short_clips_are_linspaced_and_padded_with_the_last_frame():
    assert train_indices(16, 16).tolist() == list(range(16))
    assert train_indices(10, 16).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 9]
    # sampling rate 2: 20 frames <= 32 -> linspace(0, 20, 10) clipped, then padded
    assert train_indices(20, 16, 2).tolist() == [0, 2, 4, 6, 8, 11, 13, 15, 17, 19] + [19] * 6
    assert train_indices(1, 16).tolist() == [0] * 16


def test_long_clips_get_a_random_window():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        idx = train_indices(100, 16, 1, rng)
        assert len(idx) == 16 and idx.min() >= 0 and idx.max() <= 99
        assert np.all(np.diff(idx) >= 0) and idx[-1] - idx[0] <= 15
        starts.add(int(idx[0]))
    assert len(starts) > 10
    idx = train_indices(200, 16, 4, np.random.default_rng(1))
    assert idx[-1] - idx[0] <= 63 and np.all(np.diff(idx) >= 3)


def test_test_views_start_at_zero_and_at_the_end():
    a, b = test_views(40, 16, 2)
    assert a.tolist() == list(range(16)) and b.tolist() == list(range(24, 40))
    a, b = test_views(16, 16, 2)
    assert a.tolist() == b.tolist() == list(range(16))
    (c,) = test_views(10, 16, 1)
    assert c.tolist() == list(range(10)) + [9] * 6
    v = test_views(100, 16, 3, sampling_rate=2)  # 50 frames every 2nd: starts 0, 17, 34
    assert [int(x[0]) for x in v] == [0, 34, 68] and v[0][1] == 2


# ------------------------------------------------------------------------------------- fixtures
def gray_clip(n, h=48, w=48):
    """Frame i has intensity 8*i+20: a decoded frame names its index."""
    return np.stack([np.full((h, w, 3), 8 * i + 20, np.uint8) for i in range(n)])


def frame_ids(video_chw: torch.Tensor) -> list[int]:
    """Undo ImageNet normalisation of channel 0 and read back frame indices."""
    red = video_chw[0].mean(dim=(1, 2)) * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    return [int(round((float(v) * 255 - 20) / 8)) for v in red]


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "frames/00001"
    folder.mkdir(parents=True)
    for i, f in enumerate(gray_clip(20)):
        cv2.imwrite(str(folder / f"{i + 1}.png"), f)
    mp4 = video.write_video(tmp_path / "videos/00002.mp4", gray_clip(30, 64, 64))
    return [Sample("00001", 3, folder, "frames", "DFEW", "a.csv:2"),
            Sample("00002", 5, mp4, "video", "DFEW", "a.csv:3")]


# -------------------------------------------------------------------------------------- datasets
def test_test_mode_expands_temporal_times_spatial_views(clips):
    # Square frames (the official resize): the 2 spatial crops are the whole frame, identical, computed once.
    ds = VideoClipDataset(clips, num_frames=16, input_size=32, mode="test", test_views={"temporal": 2, "spatial": 2})
    assert len(ds) == 4 and ds.views_per_sample == 2
    items = [ds[i] for i in range(len(ds))]
    assert [(it["index"], it["view"], it["label"]) for it in items] == [(0, 0, 3), (0, 1, 3), (1, 0, 5), (1, 1, 5)]
    assert all(it["video"].shape == (3, 16, 32, 32) and it["video"].dtype == torch.float32 for it in items)
    assert frame_ids(items[0]["video"]) == list(range(16))
    assert frame_ids(items[1]["video"]) == list(range(4, 20))      # temporal view 1 ends at the last frame
    assert frame_ids(items[3]["video"])[-1] == 29                  # the video: frames 14..29
    assert "lmk" not in items[0]
    # Short-side resize keeps a long side: then the 2 crops differ and both are computed.
    wide = VideoClipDataset(clips, num_frames=16, input_size=32, mode="test", resize="short_side",
                            test_views={"temporal": 2, "spatial": 2})
    assert len(wide) == 8 and wide.views_per_sample == 4


def test_train_mode_one_random_clip_per_sample_with_consistent_augmentation(clips, tmp_path):
    aug = {"hflip": True, "random_resized_crop": True, "rand_augment": "rand-m7-n4-mstd0.5-inc1",
           "random_erasing": 0.0, "mixup": 0.8}
    ds = VideoClipDataset(clips, num_frames=8, input_size=32, mode="train", augment=aug, feature_cache="unused")
    assert len(ds) == 2 and not ds.uses_feature_cache
    item = ds[1]
    assert item["video"].shape == (3, 8, 32, 32) and item["index"] == 1 and "lmk" not in item
    # A clip of 12 identical textured frames: whatever the random ops, all augmented frames stay identical.
    folder = tmp_path / "same"
    folder.mkdir()
    texture = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    for i in range(12):
        cv2.imwrite(str(folder / f"{i}.png"), texture)
    same = VideoClipDataset([Sample("same", 0, folder, "frames", "DFEW", "a:1")], num_frames=8, input_size=32,
                            augment=aug)
    for seed in range(6):
        torch.manual_seed(seed)
        v = same[0]["video"]
        assert torch.equal(v, v[:, :1].expand_as(v)), seed


def test_random_erasing_uses_one_box_for_the_whole_clip(clips):
    torch.manual_seed(3)
    ds = VideoClipDataset(clips[:1], num_frames=16, input_size=32, mode="train", augment={"random_erasing": 1.0})
    v = ds[0]["video"][0]
    erased = (v - v.median(dim=2, keepdim=True).values.median(dim=1, keepdim=True).values).abs() > 1e-4
    assert erased.any() and torch.equal(erased[0], erased[7]) and torch.equal(erased[0], erased[-1])


def test_feature_cache_supplies_lmk_at_the_sampled_frames(clips, tmp_path):
    cache = tmp_path / "features"
    cache.mkdir()
    feats = np.arange(20, dtype=np.float16)[:, None, None, None] * np.ones((20, 4, 14, 14), np.float16)
    np.save(cache / "00001.npy", feats)
    ds = VideoClipDataset(clips[:1], num_frames=16, input_size=32, mode="test", feature_cache=cache)
    assert ds.uses_feature_cache
    lmk = ds[1]["lmk"]  # temporal view 1: frames 4..19
    assert lmk.shape == (16, 4, 14, 14) and lmk.dtype == torch.float32
    assert lmk[:, 0, 0, 0].tolist() == list(range(4, 20))
    ds_video = VideoClipDataset(clips[1:], num_frames=16, input_size=32, mode="test", feature_cache=cache)
    with pytest.raises(DataError, match=r"00002\.npy.*extract-features"):
        ds_video[0]
    no_geo = VideoClipDataset(clips[:1], num_frames=16, input_size=32, mode="train", feature_cache=cache,
                              augment={"hflip": False, "random_erasing": 0.25})
    assert "lmk" in no_geo[0]


def test_image_dataset_has_the_same_keys_and_t_equals_one(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.jpg"
        cv2.imwrite(str(p), np.full((50, 40, 3), 60 * i, np.uint8))
        paths.append(Sample(f"img{i}", i, p, "image", "RAF-DB", f"l.txt:{i + 1}"))
    cache = tmp_path / "f"
    cache.mkdir()
    for s in paths:
        np.save(cache / f"{s.id}.npy", np.full((1, 8, 14, 14), s.label, np.float16))
    test = ImageDataset(paths, input_size=32, mode="test", feature_cache=cache)
    item = test[2]
    assert item["video"].shape == (3, 1, 32, 32) and item["label"] == 2 and item["index"] == 2
    assert item["lmk"].shape == (1, 8, 14, 14) and float(item["lmk"].max()) == 2.0
    train = ImageDataset(paths, input_size=32, mode="train", augment={"hflip": True, "random_resized_crop": True})
    assert train[0]["video"].shape == (3, 1, 32, 32) and "lmk" not in train[0]
    batch = next(iter(torch.utils.data.DataLoader(test, batch_size=3)))
    assert batch["video"].shape == (3, 3, 1, 32, 32) and batch["label"].tolist() == [0, 1, 2]


def test_balanced_sampler_oversamples_rare_classes():
    labels = [0] * 90 + [1] * 9 + [2] * 1
    sampler = balanced_sampler(labels, num_samples=3000, generator=torch.Generator().manual_seed(0))
    counts = Counter(labels[i] for i in sampler)
    assert all(800 < counts[c] < 1200 for c in (0, 1, 2))


def test_run_dataset_reads_a_real_run_configs_data_section(tmp_path):
    root = tmp_path / "DFEW"
    for cid in ("00001", "00002"):
        folder = root / "Clip/clip_224x224_16f" / cid
        folder.mkdir(parents=True)
        for i in range(1, 17):
            cv2.imwrite(str(folder / f"{i}.jpg"), np.full((40, 40, 3), 10 * i, np.uint8))
    split = root / "EmoLabel_DataSplit/test(single-labeled)/test_set_1.csv"
    split.parent.mkdir(parents=True)
    split.write_text("video_name,label\n00001,4\n00002,1\n")
    from dfer.workflow.plan import method_run_config

    params = load_params(ROOT / "params.yaml", [f"data.datasets.DFEW.root={root}"])
    data = method_run_config(params, "s2d", "DFEW", fold=1)["data"]  # the planner's data section of a real run
    assert data["root"] == str(root)
    ds = run_dataset({**data, "features": None}, "DFEW", "test", 1, mode="test")
    assert isinstance(ds, VideoClipDataset) and len(ds) == 2 * 2 and ds.labels == [4, 1]  # 2 temporal views
    small = {**data, "num_frames": 8, "input_size": 32, "test_views": {"temporal": 1, "spatial": 1},
             "frame_order": "lexicographic", "features": None}
    ds = run_dataset(small, "DFEW", "test", 1, mode="test", augment={"hflip": True})
    assert len(ds) == 2 and ds[0]["video"].shape == (3, 8, 32, 32)
    assert ds.samples[0].frame_order == "lexicographic" and not ds.augment.hflip  # no augmentation at test
    aug = {**params["train"]["augment"], "hflip": True}
    assert run_dataset(small, "DFEW", "test", 1, mode="train", augment=aug).augment.hflip


def test_video_cutmix_pastes_the_same_box_into_every_frame():
    from dfer.data.transforms import mixup_fn

    torch.manual_seed(0)
    np.random.seed(0)
    mix = mixup_fn({"mixup": 0.0, "cutmix": 1.0}, num_classes=4, label_smoothing=0.0)
    x = torch.zeros(2, 3, 5, 16, 16)
    x[1] = 1.0
    mixed, target = mix(x.clone(), torch.tensor([0, 1]))
    assert mixed.shape == x.shape and target.shape == (2, 4)
    pasted = mixed[0, 0] > 0.5                       # sample 0 received a box from sample 1
    assert pasted.any() and all(torch.equal(pasted[0], pasted[t]) for t in range(5))
    assert torch.isclose(target[0, 1], pasted[0].float().mean(), atol=1e-4)


def test_dynamic_sampling_spans_the_whole_video():
    """NR-DFERNet's DS: U segments x V consecutive frames over the whole video, random inside each segment in
    training, the middle at test; short videos repeat a segment's last frame."""
    from dfer.data.sampling import dynamic_indices

    test = dynamic_indices(80, 8, 2)
    assert test.tolist() == [4, 5, 14, 15, 24, 25, 34, 35, 44, 45, 54, 55, 64, 65, 74, 75]
    rng = np.random.default_rng(0)
    for _ in range(20):
        train = dynamic_indices(80, 8, 2, rng)
        assert all(10 * k <= train[2 * k] and train[2 * k + 1] == train[2 * k] + 1 <= 10 * k + 9 for k in range(8))
    short = dynamic_indices(5, 8, 2)
    assert len(short) == 16 and short.max() == 4 and np.all(np.diff(short) >= 0)


def test_time_interpolation_spreads_the_frames_from_first_to_last():
    """NR-DFERNet's TI: the whole video resampled to num_frames, first and last frame included; the same clip in
    training and at test; a short video repeats frames."""
    from dfer.data.sampling import interpolated_indices

    assert interpolated_indices(8, 4).tolist() == [0, 2, 5, 7]
    assert interpolated_indices(80, 16).tolist() == [round(k * 79 / 15) for k in range(16)]
    assert interpolated_indices(3, 5).tolist() == [0, 0, 1, 2, 2]


def test_predict_reads_the_test_clips_of_the_run_s_sampler():
    """`dfer predict` and the evaluation take the same frames: DS / TI one clip over the whole video, the dense
    sampler its temporal windows."""
    from dfer.data.sampling import dynamic_indices, interpolated_indices
    from dfer.workflow.predict import clip_views

    frames = np.repeat(np.arange(20, dtype=np.uint8)[:, None, None, None] * 10, 8, axis=1).repeat(8, axis=2)
    frames = np.repeat(frames, 3, axis=3)                                   # frame k is grey level 10k
    base = {"num_frames": 4, "input_size": 8, "sampling_rate": 1, "segments": 4,
            "test_views": {"temporal": 2, "spatial": 1}}
    expected = {"dense": test_views(20, 4, 2, 1), "interpolate": [interpolated_indices(20, 4)],
                "dynamic": [dynamic_indices(20, 4, 1)]}
    for sampler, clips in expected.items():
        views = clip_views(frames, {**base, "sampler": sampler})             # [V,3,T,S,S], normalised
        grey = views[:, 0, :, 0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
        read = torch.round(grey * 255 / 10).long().tolist()
        assert read == [c.tolist() for c in clips], sampler


def test_dataset_with_time_interpolation_reads_one_view_over_the_clip(clips):
    train = VideoClipDataset(clips, num_frames=4, input_size=32, mode="train", sampler="interpolate")
    test = VideoClipDataset(clips, num_frames=4, input_size=32, mode="test", sampler="interpolate",
                            test_views={"temporal": 2, "spatial": 1})
    assert len(test) == 2 and test.views_per_sample == 1
    assert frame_ids(test[1]["video"]) == frame_ids(train[1]["video"]) == [0, 10, 19, 29]   # 30 frames


def test_dataset_with_dynamic_sampling_reads_one_view_over_the_clip(clips):
    ds = VideoClipDataset(clips, num_frames=16, input_size=32, mode="test", sampler="dynamic", segments=8,
                          test_views={"temporal": 2, "spatial": 1})
    assert len(ds) == 2 and ds.views_per_sample == 1
    from dfer.data.sampling import dynamic_indices

    assert frame_ids(ds[1]["video"]) == dynamic_indices(30, 8, 2).tolist()   # the 30-frame video, end to end
    assert frame_ids(ds[1]["video"])[0] == 0 and frame_ids(ds[1]["video"])[-1] == 28
    with pytest.raises(ValueError, match="segments"):
        VideoClipDataset(clips, num_frames=12, sampler="dynamic", segments=8)


def test_kept_training_frames_give_the_items_fresh_decoding_gives(clips, tmp_path, monkeypatch):
    textured = tmp_path / "textured"
    textured.mkdir()
    rng = np.random.default_rng(1)
    for i in range(12):
        cv2.imwrite(str(textured / f"{i}.jpg"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    samples = [clips[0], Sample("tex", 1, textured, "frames", "DFEW", "a:1"), clips[1]]
    images = [Sample(f"im{i}", i, textured / f"{i}.jpg", "image", "RAF-DB", f"l:{i}") for i in range(3)]
    aug = {"hflip": True, "random_resized_crop": True, "rand_augment": "rand-m7-n4-mstd0.5-inc1",
           "random_erasing": 0.25}

    def epochs(make):
        ds = make()
        out = []
        for epoch in range(2):             # the second epoch reads kept frames
            torch.manual_seed(epoch)
            random.seed(epoch)             # RandAugment draws from Python's and NumPy's global RNGs
            np.random.seed(epoch)
            out += [ds[i]["video"] for i in range(len(ds))]
        return ds, out

    videos = lambda: VideoClipDataset(samples, num_frames=8, input_size=32, mode="train", augment=aug)
    stills = lambda: ImageDataset(images, input_size=32, mode="train", augment=aug)
    monkeypatch.setenv("DFER_FRAME_CACHE_MB", "0")
    fresh = [epochs(videos)[1], epochs(stills)[1]]
    monkeypatch.setenv("DFER_FRAME_CACHE_MB", "64")
    (vds, kept_videos), (ids, kept_images) = epochs(videos), epochs(stills)
    for a, b in zip(fresh, [kept_videos, kept_images]):
        assert len(a) == len(b) and [torch.equal(x, y) for x, y in zip(a, b)] == [True] * len(a)
    # frame folders and images are kept (the mp4 is decoded every time); 32x32x3 bytes each
    assert {p for p, _ in vds.decoded.frames} == {str(clips[0].path), str(textured)}
    assert vds.decoded.used == len(vds.decoded.frames) * 32 * 32 * 3 and len(ids.decoded.frames) == 3
    monkeypatch.setenv("DFER_FRAME_CACHE_MB", str(5 * 32 * 32 * 3 / 2 ** 20))   # room for 5 frames
    small, kept_small = epochs(videos)
    assert len(small.decoded.frames) == 5 and all(torch.equal(x, y) for x, y in zip(fresh[0], kept_small))
    assert VideoClipDataset(samples, num_frames=8, input_size=32, mode="test").decoded is None
