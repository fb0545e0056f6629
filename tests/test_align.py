"""Face alignment: detectors (MTCNN on a real photo, RetinaFace checkpoint compatibility, the trained
synthetic detector), quality numbers, geometry, and the `dfer align` stage end to end on real mp4 files."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from dfer.align import quality, stage
from dfer.align.detectors import Detection, build_detector
from dfer.align.retinaface import CONFIGS, RetinaFace, decode_boxes, prior_boxes
from dfer.data.errors import DataError
from dfer.data.video import write_video

ASTRONAUT_FACE = [181, 62, 268, 172]   # Eileen Collins' face in skimage.data.astronaut() (hand-checked)


# ------------------------------------------------------------------------------------ helpers
def draw_face(img: np.ndarray, cx: float, cy: float, w: float, rng) -> tuple[list, np.ndarray]:
    """A face-like pattern (skin ellipse, dark eyes and mouth); returns its box and 68 points."""
    h = 1.25 * w
    skin = tuple(int(v) for v in rng.uniform([150, 100, 70], [230, 180, 140]))
    cv2.ellipse(img, (int(cx), int(cy)), (int(w / 2), int(h / 2)), 0, 0, 360, skin, -1)
    le, re = (cx - 0.2 * w, cy - 0.12 * h), (cx + 0.2 * w, cy - 0.12 * h)
    for ex, ey in (le, re):
        cv2.circle(img, (int(ex), int(ey)), max(1, int(0.07 * w)), (20, 20, 30), -1)
    ml, mr = (cx - 0.18 * w, cy + 0.22 * h), (cx + 0.18 * w, cy + 0.22 * h)
    cv2.line(img, (int(ml[0]), int(ml[1])), (int(mr[0]), int(mr[1])), (90, 20, 30), max(1, int(0.05 * w)))
    lm = np.tile([cx, cy], (68, 1)).astype(np.float32)
    lm[36:42], lm[42:48], lm[48], lm[54] = le, re, ml, mr
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], lm


def background(rng, size: int) -> np.ndarray:
    img = np.empty((size, size, 3), np.uint8)
    img[:] = rng.integers(0, 120, 3)
    noise = rng.normal(0, 12, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def write_dataset(root, clips: dict[str, tuple[np.ndarray, list, list]], test_ids: set[str]) -> None:
    """A MAFW-like dataset: data/clips/<id>.mp4, S2D split csvs for 5 folds, _groundtruth/<id>.json."""
    for clip_id, (frames, boxes, lms) in clips.items():
        write_video(root / "data/clips" / f"{clip_id}.mp4", frames)
        gt = {"boxes": boxes, "landmarks": [None if lm is None else lm.tolist() for lm in lms]}
        (root / "_groundtruth").mkdir(parents=True, exist_ok=True)
        (root / "_groundtruth" / f"{clip_id}.json").write_text(json.dumps(gt))
    for fold in range(1, 6):
        d = root / f"anno/single/no_caption/set_{fold}"
        d.mkdir(parents=True, exist_ok=True)
        for split, ids in (("train", [c for c in clips if c not in test_ids]), ("test", sorted(test_ids))):
            (d / f"{split}.csv").write_text("video_name,labels\n" + "".join(f"{c},{i % 11}\n" for i, c in
                                                                             enumerate(ids)))


def moving_face_clip(rng, n: int, size: int, blank: set[int] = frozenset()):
    frames, boxes, lms = [], [], []
    w = rng.uniform(0.25, 0.45) * size
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    vx, vy = rng.normal(0, 0.01 * size, 2)
    bg = background(rng, size)
    for t in range(n):
        img = bg.copy()
        if t in blank:
            box, lm = None, None
        else:
            box, lm = draw_face(img, cx + vx * t, cy + vy * t, w, rng)
        frames.append(img)
        boxes.append(box)
        lms.append(lm)
    return np.stack(frames), boxes, lms


# ------------------------------------------------------------------------------------- quality
def test_iou_and_frame_quality_hand_checked():
    assert quality.box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert quality.box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert quality.box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert quality.box_iou(None, [0, 0, 1, 1]) == 0.0
    chosen = [[0, 0, 10, 10], None, [0, 0, 10, 10], None, [1, 1, 2, 2]]
    gt = [[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 15, 10], None, None]
    q = quality.frame_quality(chosen, gt)
    assert q == {"face_frames": 3, "iou_sum": pytest.approx(1 + 0 + 1 / 3), "hits": 1,
                 "no_face_frames": 2, "correct_negatives": 1}
    s = quality.summarize([q, quality.frame_quality([[0, 0, 10, 10]], [[0, 0, 10, 10]])])
    assert s["face_frames"] == 4 and s["mean_iou"] == pytest.approx((2 + 1 / 3) / 4, abs=1e-4)
    assert s["share_iou_ge_0.5"] == 0.5 and s["share_correct_negatives"] == 0.5
    with pytest.raises(ValueError, match="frame count"):
        quality.frame_quality([None], [None, None])


# ------------------------------------------------------------------------------------ detectors
def test_mtcnn_finds_the_face_in_a_real_photograph():
    from skimage import data

    detector = build_detector("mtcnn")
    dets = detector.detect(data.astronaut())
    assert len(dets) == 1
    d = dets[0]
    assert d.score > 0.95
    assert quality.box_iou(d.box, ASTRONAUT_FACE) > 0.8
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = d.landmarks
    assert lx < nx < rx and ly < ny < mly and ry < ny < mry      # eyes above nose above mouth
    assert detector.detect(np.full((120, 160, 3), 128, np.uint8)) == []   # a blank frame has no face
    with pytest.raises(ValueError, match="weights shipped"):
        build_detector("mtcnn", weights="x.pt")


def test_retinaface_loads_official_style_checkpoints_and_rejects_wrong_ones(tmp_path):
    torch.manual_seed(0)
    net = RetinaFace(CONFIGS["mobilenet0.25"])
    # The public Pytorch_Retinaface files were saved from DataParallel: every key starts with `module.`.
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    for key in ("module.body.stage1.0.0.weight", "module.fpn.merge1.0.weight", "module.ssh1.conv7x7_3.0.weight",
                "module.ClassHead.0.conv1x1.weight", "module.BboxHead.2.conv1x1.bias",
                "module.LandmarkHead.1.conv1x1.weight"):
        assert key in state
    assert tuple(state["module.LandmarkHead.0.conv1x1.weight"].shape) == (20, 64, 1, 1)   # 2 anchors x 10
    assert sum(v.numel() for k, v in net.named_parameters()) == 426_608   # the 1.7 MB mobilenet0.25_Final.pth
    good = tmp_path / "mobilenet0.25_Final.pth"
    torch.save(state, good)
    det = build_detector("retinaface", weights=good, backbone="mobilenet0.25", score_threshold=0.0)
    assert torch.equal(det.model.state_dict()["ssh2.conv5X5_1.0.weight"], net.state_dict()["ssh2.conv5X5_1.0.weight"])
    dets = det.detect(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8))
    assert dets and all(d.box.shape == (4,) and d.landmarks.shape == (5, 2) for d in dets)
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)

    wrong = tmp_path / "wrong.pth"
    torch.save({k: v for k, v in state.items() if "ssh3" not in k}, wrong)
    with pytest.raises(DataError, match=r"wrong\.pth.*not a RetinaFace-resnet50 checkpoint"):
        build_detector("retinaface", weights=wrong, backbone="resnet50")   # mobilenet file, resnet backbone
    with pytest.raises(DataError, match="missing keys.*ssh3"):
        build_detector("retinaface", weights=wrong, backbone="mobilenet0.25")
    with pytest.raises(DataError, match="weights file not found"):
        build_detector("retinaface", weights=tmp_path / "absent.pth", backbone="mobilenet0.25")


def test_retinaface_priors_and_decoding():
    cfg = CONFIGS["mobilenet0.25"]
    priors = prior_boxes(cfg, 64, 96)
    assert len(priors) == 2 * (8 * 12 + 4 * 6 + 2 * 3)
    # first anchor: centre of the top-left stride-8 cell, 16 px square; the second one 32 px
    assert priors[0].tolist() == pytest.approx([4 / 96, 4 / 64, 16 / 96, 16 / 64])
    assert priors[1].tolist() == pytest.approx([4 / 96, 4 / 64, 32 / 96, 32 / 64])
    assert priors[2, 0].item() == pytest.approx(12 / 96)
    zero = decode_boxes(torch.zeros(2, 4), priors[:2])   # zero deltas: the anchor itself
    assert zero[0].tolist() == pytest.approx([-4 / 96, -4 / 64, 12 / 96, 12 / 64])


# --------------------------------------------------------------------------- trained detector
@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("mafw")
    clips = {f"{i:05d}": moving_face_clip(rng, 10, 96, blank={7, 8} if i % 4 == 0 else set()) for i in range(14)}
    write_dataset(root, clips, test_ids={"00012", "00013"})
    return root


@pytest.fixture(scope="module")
def trained_detector(tiny_dataset, tmp_path_factory):
    from dfer.align.stage import split_clips
    from dfer.align.train_detector import train_detector

    entry = {"root": str(tiny_dataset), "format": "s2d", "splits": None, "videos": "data/clips"}
    root, train = split_clips("MAFW", entry, "train", 1)
    _, test = split_clips("MAFW", entry, "test", 1)
    out = tmp_path_factory.mktemp("detector")
    from dfer.config import load_params

    settings = load_params()["align"]["train"]  # the real recipe, shrunk for the tiny clips
    report = train_detector(root, train, test, out, {**settings, "input_size": 64, "frames_per_clip": 10, "epochs": 25,
                                                       "batch_size": 16, "lr": 5e-3, "threads": 1,
                                                       "crop_scale": [0.8, 1.0]})
    return out / "model.pt", report


def test_synthetic_detector_trains_and_beats_the_mean_box(trained_detector):
    model_path, report = trained_detector
    assert model_path.is_file() and (model_path.parent / "train_report.json").is_file()
    assert report["train_frames"] == 12 * 10 and report["test"]["face_frames"] == 18   # 00012: 2 blanks
    test, base = report["test"], report["baseline_mean_box"]
    assert test["share_iou_ge_0.5"] >= base["share_iou_ge_0.5"] + 0.3
    assert test["mean_iou"] > base["mean_iou"] + 0.2
    assert report["history"][-1]["loss"] < report["history"][0]["loss"]
    det = build_detector("synthetic", weights=model_path)
    assert det.train_ids and "00012" not in det.train_ids
    with pytest.raises(DataError, match="not a `dfer train-detector` checkpoint"):
        bad = model_path.parent / "bad.pt"
        torch.save({"state_dict": {}}, bad)
        build_detector("synthetic", weights=bad)


def test_synthetic_detector_sees_a_wide_frame_with_its_faces_in_shape(trained_detector):
    """A non-square frame (AFEW's 160x120) is letterboxed, not squashed: its faces are found as in the same frame
    padded to a square by hand, in the frame's own pixel coordinates (squashing gave AFEW a mean IoU of 0.77, 0.88
    letterboxed)."""
    frames, boxes, _ = moving_face_clip(np.random.default_rng(5), 1, 96)
    wide = np.pad(frames[0], ((0, 0), (0, 40), (0, 0)), mode="edge")             # 96 x 136
    square = np.full((136, 136, 3), 128, np.uint8)
    square[:96] = wide
    det = build_detector("synthetic", weights=trained_detector[0])
    found, by_hand = det.detect(wide), det.detect(square)
    assert found and len(found) == len(by_hand)
    for a, b in zip(found, by_hand):
        np.testing.assert_allclose(a.box, b.box, atol=1e-3)
    assert quality.box_iou(found[0].box, boxes[0]) > 0.5


# ------------------------------------------------------------------------------------ geometry
def test_main_face_is_followed_through_time():
    def det(box, score=0.9):
        return Detection(np.array(box, np.float32), score, None)

    a0, a1, a2 = det([10, 10, 50, 50]), det([12, 10, 52, 50]), det([14, 10, 54, 50])
    big_elsewhere = det([100, 100, 145, 145], 0.9)   # larger, but not where the tracked face is
    chosen = stage.select_main_faces([[a0], [big_elsewhere, a1], [], [a2]])
    assert chosen == [a0, a1, None, a2]
    assert stage.select_main_faces([[], []]) == [None, None]


def test_crop_align_levels_the_eye_line():
    img = np.zeros((200, 200, 3), np.uint8)
    le, re = (80.0, 100.0), (120.0, 124.0)
    for x, y in (le, re):
        cv2.circle(img, (int(x), int(y)), 4, (255, 255, 255), -1)
    angle = stage.eye_angle(np.array([le, re, (100, 120), (85, 140), (115, 150)]))
    assert angle == pytest.approx(math.degrees(math.atan2(24, 40)))
    out = stage.crop_align(img, 100, 112, 100, angle, 100)
    mask = out[..., 0] > 128
    ys, xs = np.nonzero(mask)
    left, right = ys[xs < 50].mean(), ys[xs >= 50].mean()
    assert abs(left - right) < 1.0                                   # eyes on one row
    assert abs((left + right) / 2 - 50) < 2                          # crop centred on the eye midpoint


# ------------------------------------------------------------------------------------ the stage
def test_align_stage_writes_frames_reports_and_skips_finished_clips(tiny_dataset, trained_detector, tmp_path,
                                                                    capsys):
    model_path, _ = trained_detector
    out = tmp_path / "aligned"
    argv = ["--dataset", "MAFW", "--root", str(tiny_dataset), "--detector", str(model_path), "--out", str(out),
            "--size", "48", "--limit", "5"]
    assert stage.main(argv) == 0
    ids = [f"{i:05d}" for i in range(5)]
    for clip_id in ids:
        pngs = sorted((out / clip_id).glob("*.png"))
        assert [p.name for p in pngs] == [f"{k:05d}.png" for k in range(10)]
        assert cv2.imread(str(pngs[0])).shape == (48, 48, 3)
    report = json.loads((out / "_reports/00000.json").read_text())   # frames 7 and 8 are blank
    assert report["frames"] == 10 and report["frames_without_face"] == [7, 8] and report["faces_found"] == 8
    assert report["quality"]["no_face_frames"] == 2 and report["quality"]["correct_negatives"] == 2
    assert json.loads((out / "_reports/00001.json").read_text())["frames_without_face"] == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"] == 5 and summary["frames"] == 50 and summary["frames_without_face"] == 4
    assert summary["detection_quality"]["face_frames"] == 46
    assert summary["detection_quality"]["share_iou_ge_0.5"] >= 0.8
    assert summary["config"]["detector"]["name"] == "synthetic"   # resolved from the checkpoint path

    files = [p for p in out.rglob("*") if p.is_file()]
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    capsys.readouterr()
    assert stage.main(argv) == 0
    assert "aligned 0 clips, skipped 5" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes
    assert not list(out.glob(".*tmp"))


def test_align_stage_on_a_real_face_with_mtcnn(tmp_path):
    """MTCNN on frames made from a real photograph: a blank frame is reported, the face is cropped."""
    from skimage import data

    photo = data.astronaut()
    face = photo[40:200, 160:290]                       # face and some context, 160x130
    frames, boxes = [], []
    for t in range(6):
        img = np.full((224, 224, 3), 90, np.uint8)
        if t != 3:
            y, x = 30 + 3 * t, 40 + 4 * t
            img[y:y + 160, x:x + 130] = face
            boxes.append([x + 21, y + 22, x + 108, y + 132])   # ASTRONAUT_FACE inside the pasted crop
        else:
            boxes.append(None)
        frames.append(img)
    clips = {"00001": (np.stack(frames), boxes, [None] * 6)}
    root = tmp_path / "mafw"
    write_dataset(root, clips, test_ids={"00001"})
    out = tmp_path / "aligned"
    assert stage.main(["--dataset", "MAFW", "--root", str(root), "--detector", "mtcnn", "--out", str(out),
                       "--size", "64"]) == 0
    report = json.loads((out / "_reports/00001.json").read_text())
    assert report["frames_without_face"] == [3]
    assert report["quality"]["hits"] == 5 and report["quality"]["correct_negatives"] == 1
    assert len(list((out / "00001").glob("*.png"))) == 6
