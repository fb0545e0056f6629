"""`dfer train-detector`: train the no-download face detector on the synthetic training split.

Frames of the training clips of one fold (``align.train.dataset``/``fold``, videos decoded as the stage does)
with their ground-truth boxes and landmarks (``<root>/_groundtruth``, the 5 detector points taken from the
68) train :mod:`dfer.align.synthetic_detector`; the fold's test clips (every frame) measure it: mean IoU,
share of frames with IoU >= 0.5, correct negatives, next to a trivial baseline (the mean training box).
Writes ``model.pt`` and ``train_report.json`` (to ``--out``: a folder, or the model file's path).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from dfer.align import quality
from dfer.align.stage import split_clips
from dfer.align.synthetic_detector import (CenterNetConfig, CenterNetTiny, SyntheticDetector, centernet_loss,
                                           encode_targets, save_checkpoint)
from dfer.cli import add_params_args, command_parser, stage_params
from dfer.data.errors import DataError
from dfer.io import write_json


# ----------------------------------------------------------------------------------------- data
def read_clip(path: Path, indices=None) -> np.ndarray:
    from dfer.data.video import read_frames

    return read_frames(path, indices)


def load_training_frames(root: Path, clips, frames_per_clip: int):
    """Evenly spaced frames of every clip plus all its frames without a face (the rare negatives), with
    their ground-truth boxes and 5 landmarks."""
    from dfer.data.video import count_frames

    frames, boxes, lms = [], [], []
    for clip_id, path in clips:
        gt = quality.load_groundtruth(root, clip_id)
        if gt is None:
            raise DataError(quality.groundtruth_path(root, clip_id), "ground truth not found",
                            "train the detector on a `dfer synth` dataset (it writes <root>/_groundtruth/)")
        n = min(count_frames(path), len(gt["boxes"]))
        pick = set(np.linspace(0, n - 1, min(frames_per_clip, n)).round().astype(int).tolist())
        idx = sorted(pick | {i for i in range(n) if gt["boxes"][i] is None})
        for i, f in zip(idx, read_clip(path, idx)):
            lm = gt["landmarks"][i]
            frames.append(f)
            boxes.append(gt["boxes"][i])
            lms.append(None if lm is None else quality.five_landmarks(np.asarray(lm)))
    return frames, boxes, lms


_FLIP5 = [1, 0, 2, 4, 3]  # mirrored image: left/right eyes and mouth corners swap


def augment(frame: np.ndarray, box, lm5, size: int, rng: np.random.Generator, crop_scale=(0.6, 1.0)):
    """Random square crop (scale, shift), flip and brightness/contrast, resized to ``size``."""
    import cv2

    h, w = frame.shape[:2]
    side = rng.uniform(*crop_scale) * min(h, w)
    x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
    s = size / side
    flip = rng.random() < 0.5
    m = np.array([[-s if flip else s, 0, (x0 + side) * s if flip else -x0 * s], [0, s, -y0 * s]], np.float32)
    img = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    img = np.clip(img.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25), 0, 255).astype(np.uint8)

    def tf(pts):
        pts = np.asarray(pts, np.float32).reshape(-1, 2)
        return pts @ m[:, :2].T + m[:, 2]

    if box is None:
        return img, None, None
    corners = tf([[box[0], box[1]], [box[2], box[3]]])
    nb = np.array([corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max()], np.float32)
    cx, cy = (nb[0] + nb[2]) / 2, (nb[1] + nb[3]) / 2
    if not (0 <= cx < size and 0 <= cy < size):
        return img, None, None           # face centre cropped away: a negative
    nl = None if lm5 is None else tf(lm5)[_FLIP5 if flip else slice(None)]
    return img, nb, nl


def evaluate(detector, root: Path, clips) -> dict:
    """Every frame of ``clips``: the top detection against the ground truth."""
    counts = []
    for clip_id, path in clips:
        frames = read_clip(path)
        gt = quality.load_groundtruth(root, clip_id)
        n = min(len(frames), len(gt["boxes"]))
        dets = detector.detect_batch(frames[:n])
        chosen = [d[0].box.tolist() if d else None for d in dets]
        counts.append(quality.frame_quality(chosen, gt["boxes"][:n]))
    return quality.summarize(counts)


def baseline_quality(root: Path, clips, mean_box) -> dict:
    """The trivial detector: always the mean training box."""
    counts = []
    for clip_id, _ in clips:
        gt = quality.load_groundtruth(root, clip_id)
        counts.append(quality.frame_quality([mean_box] * len(gt["boxes"]), gt["boxes"]))
    return quality.summarize(counts)


# ------------------------------------------------------------------------------------- training
def train_detector(root: Path, train_clips, test_clips, out: Path, settings: dict, log=print) -> dict:
    st = settings  # params.yaml align.train
    torch.manual_seed(st["seed"])
    rng = np.random.default_rng(st["seed"])
    if st["threads"]:
        torch.set_num_threads(int(st["threads"]))
    t0 = time.time()
    frames, boxes, lms = load_training_frames(root, train_clips, st["frames_per_clip"])
    if not frames:
        raise DataError(root, "no training frames", "check the training split file")
    size = int(st["input_size"])
    model = CenterNetTiny(CenterNetConfig(input_size=size))
    opt = torch.optim.AdamW(model.parameters(), lr=st["lr"], weight_decay=st["weight_decay"])
    bs = int(st["batch_size"])
    steps = st["epochs"] * math.ceil(len(frames) / bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=st["lr"], total_steps=steps, pct_start=0.15)
    from tqdm import tqdm

    history = []
    model.train()
    bar = tqdm(total=steps, desc="train-detector", unit="step", mininterval=2.0)
    for epoch in range(st["epochs"]):
        order = rng.permutation(len(frames))
        losses = []
        for s in range(0, len(order), bs):
            batch = [augment(frames[i], boxes[i], lms[i], size, rng, st["crop_scale"]) for i in order[s:s + bs]]
            x = torch.from_numpy(np.stack([b[0] for b in batch])).permute(0, 3, 1, 2).float().div_(255).sub_(0.5)
            loss, parts = centernet_loss(model(x), encode_targets([b[1] for b in batch], [b[2] for b in batch],
                                                                   size))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(losses):.3f}", refresh=False)
        history.append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4)})
    bar.close()
    train_s = time.time() - t0
    model.eval()
    detector = SyntheticDetector(model, score_threshold=st["score_threshold"])
    test = evaluate(detector, root, test_clips)
    mean_box = np.mean([b for b in boxes if b is not None], axis=0).round(2).tolist()
    report = {"dataset": st["dataset"], "fold": st["fold"], "train_clips": len(train_clips),
              "train_frames": len(frames), "test_clips": len(test_clips),
              "params": sum(p.numel() for p in model.parameters()), "settings": st,
              "train_seconds": round(train_s, 1), "history": history, "test": test,
              "baseline_mean_box": {"box": mean_box, **baseline_quality(root, test_clips, mean_box)}}
    model_path = out if out.suffix == ".pt" else out / "model.pt"
    save_checkpoint(model_path, model, train_ids=[c for c, _ in train_clips], report=report)
    write_json(model_path.with_name("train_report.json"), report)
    log(f"test frames: mean IoU {test['mean_iou']}, IoU>=0.5 {test['share_iou_ge_0.5']}, correct negatives "
        f"{test['correct_negatives']}/{test['no_face_frames']} (baseline IoU>=0.5 "
        f"{report['baseline_mean_box']['share_iou_ge_0.5']}); trained in {train_s:.0f} s -> {model_path}")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("train-detector", __doc__)
    add_params_args(ap)
    ap.add_argument("--dataset", default=None, help="dataset with ground truth (default align.train.dataset)")
    ap.add_argument("--root", default=None, help="dataset root (default: data.datasets.<DATASET>.root)")
    ap.add_argument("--fold", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--out", default=None, help="output folder or model file (default: align.train.out)")
    args = ap.parse_args(argv)
    params, base = stage_params(args)
    st = dict(params["align"]["train"])
    for key in ("dataset", "fold", "epochs"):
        if getattr(args, key) is not None:
            st[key] = getattr(args, key)
    dataset = st["dataset"]
    entry = dict(params["data"]["datasets"][dataset])
    if args.root:
        entry["root"] = args.root
    fold = st["fold"] if dataset in ("DFEW", "MAFW") else None
    root, train_clips = split_clips(dataset, entry, "train", fold, base)
    _, test_clips = split_clips(dataset, entry, "test", fold, base)
    out = Path(args.out or st["out"])
    train_detector(root, train_clips, test_clips, out, st)
    return 0
