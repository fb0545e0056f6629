"""Per-frame landmark-feature cache: cached == on-the-fly for the same pixels, no recomputation on re-runs."""
import json
import os

import numpy as np
import pytest
import torch

from dfer.data.clips import open_clip
from dfer.data.transforms import to_normalized_tensor
from dfer.landmarks import LandmarkFeatures, build_landmark_net
from dfer.landmarks.features import dataset_samples, extract_features, feature_path, load_features, main
from test_landmarks import ROOT, dfew_samples, make_dfew_like

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dfew(tmp_path_factory):
    base = tmp_path_factory.mktemp("feat")
    root = base / "DFEW"
    ids = make_dfew_like(root, n_clips=6, n_frames=5, size=96)
    weights = base / "mobilefacenet_model_best.pth.tar"
    net = build_landmark_net("MobileFaceNet", seed=7)
    torch.save({"state_dict": net.state_dict()}, weights)
    return base, root, ids, weights


def test_cached_features_equal_on_the_fly_features_of_the_same_pixels(dfew):
    base, root, ids, weights = dfew
    samples = dfew_samples(root)
    out = base / "cache_eq"
    stats = extract_features(samples, out, "MobileFaceNet", weights, input_size=112, batch_size=8, progress=False)
    assert stats.computed == len(ids) and stats.frames == len(ids) * 5
    lf = LandmarkFeatures("MobileFaceNet", weights)
    for s in samples:
        cached = np.load(feature_path(out, s.id))
        assert cached.dtype == np.float16 and cached.shape == (5, 128, 14, 14)
        # what the training loader does without augmentation: frames at input_size, normalised, then features
        frames = open_clip(s).get([3, 1, 4], size=(112, 112))
        live = lf(to_normalized_tensor(frames))
        picked = torch.from_numpy(load_features(out, s.id, [3, 1, 4]).astype(np.float32))
        assert torch.equal(picked, live.half().float())                    # exact in float16
        assert torch.allclose(picked, live, rtol=1e-3, atol=1e-3 * live.abs().max().item())


def test_geometric_augmentation_changes_the_features(dfew):
    """Flipped/cropped pixels give other features: an augmenting engine must compute them on the batch."""
    base, root, ids, weights = dfew
    s = dfew_samples(root)[0]
    lf = LandmarkFeatures("MobileFaceNet", weights)
    x = to_normalized_tensor(open_clip(s).get(range(5), size=(112, 112)))
    plain = lf(x)
    flipped = lf(x.flip(-1))
    cropped = lf(torch.nn.functional.interpolate(x[:, :, 8:104, 8:104], size=(112, 112), mode="bilinear",
                                                 align_corners=False))
    for moved in (flipped, cropped):
        assert (moved - plain).abs().mean() > 0.05 * plain.abs().mean()
    # ...and computing on the augmented batch is exactly the feature of those augmented pixels
    assert torch.equal(lf(x.flip(-1)), flipped)


def test_second_run_recomputes_nothing(dfew):
    base, root, ids, weights = dfew
    samples = dfew_samples(root)
    out = base / "cache_rerun"
    first = extract_features(samples, out, "MobileFaceNet", weights, 112, batch_size=16, progress=False)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    assert first.computed == len(ids) and len(mtimes) == len(ids)
    second = extract_features(samples, out, "MobileFaceNet", weights, 112, batch_size=16, progress=False)
    assert second.computed == 0 and second.skipped == len(ids)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")} == mtimes
    index = json.loads((out / "index.json").read_text())
    assert index["fingerprint"]["backbone"] == "MobileFaceNet" and index["channels"] == 128
    assert {k: v["frames"] for k, v in index["items"].items()} == {i: 5 for i in ids}
    # a lost file is recomputed alone
    os.remove(feature_path(out, ids[2]))
    third = extract_features(samples, out, "MobileFaceNet", weights, 112, batch_size=16, progress=False)
    assert third.computed == 1 and third.skipped == len(ids) - 1
    # other weights invalidate the whole cache
    other = base / "other.pth"
    torch.save({"state_dict": build_landmark_net("MobileFaceNet", seed=8).state_dict()}, other)
    fourth = extract_features(samples, out, "MobileFaceNet", other, 112, batch_size=16, progress=False)
    assert fourth.computed == len(ids)


def test_cli_extracts_every_clip_of_all_folds(dfew, tmp_path, capsys):
    base, root, ids, weights = dfew
    from dfer.config import load_params

    params = load_params(ROOT / "params.yaml", [f"data.datasets.DFEW.root={root}"])
    assert sorted(s.id for s in dataset_samples("DFEW", params)) == ids
    out = tmp_path / "features"
    argv = ["--dataset", "DFEW", "--backbone", "PFLD", "--out", str(out), "--batch-size", "7",
            "--params", str(ROOT / "params.yaml"), "--set", f"data.datasets.DFEW.root={root}"]
    assert main(argv) == 0
    assert sorted(p.stem for p in out.glob("*.npy")) == ids
    assert np.load(out / f"{ids[0]}.npy").shape == (5, 128, 14, 14)
    assert main(argv) == 0
    assert f"0 computed" in capsys.readouterr().out.splitlines()[-1]


def test_a_dataset_the_workflow_aligns_is_cached_from_its_aligned_frames(tmp_path):
    """MAFW given as raw videos: the models read the aligned crops (results/align/MAFW), so its landmark features
    must describe those crops, not the raw video frames (whose face fills a quarter of the frame)."""
    import cv2
    from test_align import write_dataset
    from dfer.config import load_params

    rng = np.random.default_rng(0)
    root = tmp_path / "MAFW"
    clips = {f"{i:05d}": (rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8), [None] * 4, [None] * 4)
             for i in range(1, 4)}
    write_dataset(root, clips, test_ids={"00003"})
    for clip_id in clips:  # what `dfer align` writes
        folder = tmp_path / "results/align/MAFW" / clip_id
        folder.mkdir(parents=True)
        for k in range(4):
            cv2.imwrite(str(folder / f"{k:05d}.png"), np.zeros((32, 32, 3), np.uint8))
    params = load_params(ROOT / "params.yaml", [f"data.datasets.MAFW.root={root}", "data.datasets.MAFW.frames=null"])
    samples = dataset_samples("MAFW", params, base=tmp_path)
    assert sorted(s.id for s in samples) == sorted(clips)
    assert all(s.kind == "frames" and s.path == tmp_path / "results/align/MAFW" / s.id for s in samples)
