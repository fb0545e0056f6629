"""`dfer train-landmarks`: train a landmark net on ground-truth landmarks and measure its ION.

Ground truth: ``<dataset root>/_groundtruth/<id with / -> __>.json`` (written by `dfer synth`): clips carry
per-frame ``"boxes"`` and ``"landmarks"`` (68 x 2 pixel coordinates, or null), images ``"box"`` and
``"landmarks"``. Frame k is the k-th frame in natural order (or of the video).

Recipe (cunjian's coordinate regression): square face crop of ``crop_scale`` x the box side around the box
centre, resized to the net's input; augmentation = random scale/shift/rotation + horizontal flip (with the
68-point left/right permutation); target = the 136 crop-normalised coordinates ``(x0, y0, x1, y1, ...)`` in
[0, 1]; L1 loss; AdamW with a cosine schedule. Inputs are ImageNet-normalised RGB, as S2D feeds the net.

Held-out frames (a fixed split by clip id: crc32 of ``dataset:id``) give the ION = mean point-to-point error
divided by the outer-eye-corner distance (points 36 and 45), in percent (Table III's column).
Outputs in ``--out``: ``model.pt`` ({'state_dict': ...}, the official format), ``report.json``
({"backbone", "ion", "params", "n_train", "n_test", ...}), ``examples.png`` (held-out predictions).
"""
from __future__ import annotations

import json
import math
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn

from dfer.cli import command_parser
from dfer.data.annotations import Sample, cache_name
from dfer.data.errors import DataError
from dfer.io import atomic_path, write_json
from dfer.landmarks.registry import build_landmark_net, count_params, landmark_net_config

NUM_POINTS = 68
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45
PRE_CROP = 1.25  # pre-cropped context around the nominal crop, room for scale/shift/rotation jitter

# iBUG 68-point mirror permutation: point i of a flipped face is point FLIP_68[i] of the original.
_PAIRS = ([(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
          + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
          + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)])
FLIP_68 = np.arange(NUM_POINTS)
for _a, _b in _PAIRS:
    FLIP_68[_a], FLIP_68[_b] = _b, _a


# ------------------------------------------------------------------------------------ ground truth
@dataclass
class LandmarkItem:
    """One annotated frame: where to read it and its ground truth in that frame's pixel coordinates."""
    sample: Sample
    frame: int
    box: np.ndarray       # float[4] x0, y0, x1, y1
    points: np.ndarray    # float[68, 2]


def groundtruth_path(root: str | os.PathLike, sample_id: str) -> Path:
    return Path(root) / "_groundtruth" / f"{cache_name(sample_id)}.json"


def _points(value, where: str) -> np.ndarray | None:
    if value is None:
        return None
    pts = np.asarray(value, dtype=np.float32)
    if pts.shape != (NUM_POINTS, 2):
        raise DataError(where, f"landmarks have shape {pts.shape}, expected (68, 2)",
                        "regenerate the ground truth with `dfer synth`")
    return pts


def _box(value, pts: np.ndarray) -> np.ndarray:
    if value is None:  # no face box: the landmarks' extent
        return np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)
    return np.asarray(value, dtype=np.float32).reshape(4)


def read_groundtruth(sample: Sample, root: str | os.PathLike) -> list[LandmarkItem]:
    """Annotated frames of one clip/image (frames whose landmarks are null are left out)."""
    path = groundtruth_path(root, sample.id)
    if not path.is_file():
        raise DataError(path, f"no ground truth for {sample.dataset} item {sample.id}",
                        "train landmark nets on the synthetic benchmark (`dfer synth` writes _groundtruth/), "
                        "or configure pretrained weights in params.yaml landmarks.weights")
    try:
        gt = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON ({exc})", "regenerate it with `dfer synth`") from None
    if "landmarks" not in gt:
        raise DataError(path, "has no \"landmarks\" entry", "regenerate it with `dfer synth`")
    if sample.kind == "image" or "box" in gt:
        pts = _points(gt["landmarks"], str(path))
        return [] if pts is None else [LandmarkItem(sample, 0, _box(gt.get("box"), pts), pts)]
    boxes = gt.get("boxes") or [None] * len(gt["landmarks"])
    items = []
    for k, (box, lm) in enumerate(zip(boxes, gt["landmarks"])):
        pts = _points(lm, f"{path} frame {k}")
        if pts is not None:
            items.append(LandmarkItem(sample, k, _box(box, pts), pts))
    return items


def is_held_out(sample: Sample, test_percent: int) -> bool:
    """Fixed split by clip id (stable across runs, machines and backbones)."""
    return zlib.crc32(f"{sample.dataset}:{sample.id}".encode()) % 100 < test_percent


def split_items(samples: Sequence[Sample], roots: dict[str, Path], frames_per_clip: int, test_percent: int,
                max_train: int | None = None, max_test: int | None = None, seed: int = 0) \
        -> tuple[list[LandmarkItem], list[LandmarkItem]]:
    """Annotated frames (``frames_per_clip`` evenly spaced per clip), split into train / held-out test."""
    train, test = [], []
    for s in samples:
        items = read_groundtruth(s, roots[s.dataset])
        if len(items) > frames_per_clip:
            keep = np.linspace(0, len(items) - 1, frames_per_clip).round().astype(int)
            items = [items[i] for i in keep]
        (test if is_held_out(s, test_percent) else train).extend(items)
    rng = np.random.default_rng(seed)
    if max_train and len(train) > max_train:
        train = [train[i] for i in sorted(rng.choice(len(train), max_train, replace=False))]
    if max_test and len(test) > max_test:
        test = [test[i] for i in sorted(rng.choice(len(test), max_test, replace=False))]
    return train, test


# ------------------------------------------------------------------------------------ crops
def _crop_affine(center: np.ndarray, side: float, out: int, angle: float = 0.0) -> np.ndarray:
    """2x3 matrix taking a square of ``side`` around ``center`` (rotated by ``angle`` deg) to out x out."""
    m = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), angle, out / side)
    m[:, 2] += out / 2.0 - center
    return m


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


@dataclass
class CropBank:
    """Pre-cropped faces (``uint8[N,P,P,3]``, P = 1.25 x input) and landmarks in those crops' pixels."""
    images: np.ndarray
    points: np.ndarray
    input_size: int

    @classmethod
    def build(cls, items: Sequence[LandmarkItem], input_size: int, crop_scale: float) -> "CropBank":
        from dfer.data.clips import open_clip, read_image

        size = int(round(PRE_CROP * input_size))
        images = np.zeros((len(items), size, size, 3), np.uint8)
        points = np.zeros((len(items), NUM_POINTS, 2), np.float32)
        by_sample: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            by_sample.setdefault(f"{it.sample.dataset}:{it.sample.id}", []).append(i)
        for idx in by_sample.values():
            sample = items[idx[0]].sample
            if sample.kind == "image":
                frames = read_image(sample)[None].repeat(len(idx), 0)
            else:
                frames = open_clip(sample, frame_order="natural").get([items[i].frame for i in idx])
            for i, frame in zip(idx, frames):
                x0, y0, x1, y1 = items[i].box
                center = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float32)
                side = crop_scale * max(x1 - x0, y1 - y0, 1.0) * PRE_CROP
                m = _crop_affine(center, side, size)
                images[i] = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_REPLICATE)
                points[i] = _apply(m, items[i].points)
        return cls(images, points, input_size)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, idx: Sequence[int], rng: np.random.Generator | None = None, augment: dict | None = None) \
            -> tuple[np.ndarray, np.ndarray]:
        """Crops ``uint8[B,S,S,3]`` and landmarks ``float[B,68,2]`` in crop pixels (augmented when rng given)."""
        s = self.input_size
        pre = self.images.shape[1]
        out_img = np.zeros((len(idx), s, s, 3), np.uint8)
        out_pts = np.zeros((len(idx), NUM_POINTS, 2), np.float32)
        for j, i in enumerate(idx):
            center = np.full(2, pre / 2.0, np.float32)
            side, angle, flip = pre / PRE_CROP, 0.0, False
            if rng is not None and augment:  # params.yaml landmarks.train.augment
                side *= 1.0 + rng.uniform(-1, 1) * float(augment["scale"])
                center += rng.uniform(-1, 1, 2) * float(augment["shift"]) * side
                angle = rng.uniform(-1, 1) * float(augment["rotate"])
                flip = bool(augment["hflip"]) and rng.random() < 0.5
            m = _crop_affine(center, side, s, angle)
            img = cv2.warpAffine(self.images[i], m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            pts = _apply(m, self.points[i])
            if flip:
                img = img[:, ::-1]
                pts = pts[FLIP_68].copy()
                pts[:, 0] = (s - 1) - pts[:, 0]
            out_img[j], out_pts[j] = img, pts
        return out_img, out_pts


# ------------------------------------------------------------------------------------ metric
def ion(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-face inter-ocular normalised error (%): mean point error / |p36 - p45| x 100."""
    iod = np.linalg.norm(gt[:, LEFT_EYE_OUTER] - gt[:, RIGHT_EYE_OUTER], axis=-1)
    return np.linalg.norm(pred - gt, axis=-1).mean(-1) / np.maximum(iod, 1e-6) * 100.0


def _to_input(images: np.ndarray, device) -> torch.Tensor:
    from dfer.data.transforms import to_normalized_tensor

    return to_normalized_tensor(images).to(device)


@torch.no_grad()
def predict(model: nn.Module, bank: CropBank, batch_size: int = 64, device="cpu") -> np.ndarray:
    """Landmarks ``float[N,68,2]`` in crop pixels for the nominal (un-augmented) crops."""
    model.eval()
    out = []
    for start in range(0, len(bank), batch_size):
        images, _ = bank.batch(range(start, min(len(bank), start + batch_size)))
        pred = model(_to_input(images, device))[0].float().cpu().numpy()
        out.append(pred.reshape(len(images), NUM_POINTS, 2) * bank.input_size)
    return np.concatenate(out) if out else np.zeros((0, NUM_POINTS, 2), np.float32)


def evaluate_ion(model: nn.Module, bank: CropBank, batch_size: int = 64, device="cpu") -> np.ndarray:
    _, gt = bank.batch(range(len(bank)))
    return ion(predict(model, bank, batch_size, device), gt)


# ------------------------------------------------------------------------------------ training
def init_regression_head(model: nn.Module, mean_target: np.ndarray, scale: float = 0.01) -> None:
    """Fresh nets start at the mean shape with small deviations: the 136-d output's last affine term gets
    bias = mean normalised target and a small gain (BN heads otherwise emit unit-variance coordinates,
    i.e. a whole crop width of spread, which a short CPU budget does not undo)."""
    from dfer.landmarks.mobilefacenet import MobileFaceNet
    from dfer.landmarks.mobilenetv2 import MobileNetGDConv
    from dfer.landmarks.pfld import PFLDInference

    if isinstance(model, MobileFaceNet):
        last = model.output_layer.bn
    elif isinstance(model, MobileNetGDConv):
        last = model.linear1.bn
    elif isinstance(model, PFLDInference):
        last = model.fc
    else:
        raise TypeError(f"no landmark regression head known for {type(model).__name__}")
    with torch.no_grad():
        last.bias.copy_(torch.as_tensor(mean_target, dtype=last.bias.dtype))
        if isinstance(last, nn.BatchNorm1d | nn.BatchNorm2d):
            last.weight.fill_(scale)
        else:
            last.weight.mul_(scale * 10)


def train_landmark_net(backbone: str, train_bank: CropBank, cfg: dict, weights=None, device="cpu",
                       progress: bool = True) -> nn.Module:
    """Train (or, with ``epochs: 0``, just load) the net on ``train_bank``; returns it in eval mode."""
    from tqdm import tqdm

    model = build_landmark_net(backbone, weights, seed=int(cfg["seed"])).to(device)
    epochs, bs = int(cfg["epochs"]), int(cfg["batch_size"])
    steps_per_epoch = len(train_bank) // bs if len(train_bank) >= bs else 1
    if epochs <= 0 or len(train_bank) < 2:
        return model.eval()
    if weights is None:
        _, pts = train_bank.batch(range(len(train_bank)))
        init_regression_head(model, pts.reshape(len(pts), -1).mean(0) / train_bank.input_size)
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    total = epochs * steps_per_epoch
    warmup = min(steps_per_epoch, max(1, total // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: (t + 1) / warmup if t < warmup else 0.5 * (1 + math.cos(math.pi * (t - warmup) / max(1, total - warmup))))
    rng = np.random.default_rng(int(cfg["seed"]))
    bar = tqdm(total=total, desc=f"train {backbone}", unit="step", disable=not progress)
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(train_bank))
        for step in range(steps_per_epoch):
            idx = order[step * bs:(step + 1) * bs]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            images, pts = train_bank.batch(idx, rng, cfg["augment"])
            target = torch.from_numpy(pts.reshape(len(idx), -1) / train_bank.input_size).to(device)
            loss = nn.functional.l1_loss(model(_to_input(images, device))[0], target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
    bar.close()
    recalibrate_bn(model, train_bank, bs, device)
    return model.eval()


@torch.no_grad()
def recalibrate_bn(model: nn.Module, bank: CropBank, batch_size: int = 32, device="cpu",
                   max_images: int = 1024) -> None:
    """Re-estimate BatchNorm running statistics with the final weights ("precise BN"): after a short
    schedule the momentum averages still lag the weights, and eval-mode predictions suffer."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or len(bank) < 2:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes below
    model.train()
    n = min(len(bank), max_images)
    for start in range(0, n, batch_size):
        idx = range(start, min(n, start + batch_size))
        if len(idx) >= 2:
            model(_to_input(bank.batch(idx)[0], device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


def save_examples(path: Path, model: nn.Module, bank: CropBank, n: int = 8, device="cpu") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(bank))
    if n == 0:
        return
    images, gt = bank.batch(range(n))
    pred = predict(model, CropBank(bank.images[:n], bank.points[:n], bank.input_size), device=device)
    errs = ion(pred, gt)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.6))
    for ax, img, g, p, e in zip(np.atleast_1d(axes), images, gt, pred, errs):
        ax.imshow(img)
        ax.scatter(g[:, 0], g[:, 1], s=4, c="lime", label="ground truth")
        ax.scatter(p[:, 0], p[:, 1], s=4, c="red", label="predicted")
        ax.set_title(f"ION {e:.1f}%", fontsize=8)
        ax.axis("off")
    np.atleast_1d(axes)[0].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def run(backbone: str, samples: Sequence[Sample], roots: dict[str, Path], out_dir: str | os.PathLike,
        cfg: dict, weights=None, device="cpu", progress: bool = True) -> dict:
    """Build crops, train, measure ION on the held-out frames, write model.pt / report.json / examples.png."""
    net = landmark_net_config(backbone)
    t0 = time.perf_counter()
    train_items, test_items = split_items(samples, roots, int(cfg["frames_per_clip"]), int(cfg["test_percent"]),
                                          cfg["max_train_frames"], cfg["max_test_frames"], int(cfg["seed"]))
    if not test_items:
        raise DataError(next(iter(roots.values()), "."), "no held-out annotated frames to measure ION on",
                        "use more clips or raise landmarks.train.test_percent")
    train_bank = CropBank.build(train_items, net.input_size, float(cfg["crop_scale"]))
    test_bank = CropBank.build(test_items, net.input_size, float(cfg["crop_scale"]))
    model = train_landmark_net(backbone, train_bank, cfg, weights, device, progress)
    errors = evaluate_ion(model, test_bank, device=device)
    per_dataset: dict[str, list[float]] = {}
    for it, e in zip(test_items, errors):
        per_dataset.setdefault(it.sample.dataset, []).append(float(e))
    _, train_pts = train_bank.batch(range(len(train_bank)))
    _, test_pts = test_bank.batch(range(len(test_bank)))
    mean_shape = np.broadcast_to(train_pts.mean(0) if len(train_pts) else test_pts.mean(0), test_pts.shape)
    report = {"backbone": backbone, "ion": float(errors.mean()), "params": count_params(model),
              "mean_shape_ion": float(ion(mean_shape, test_pts).mean()),  # baseline: always the mean face
              "n_train": len(train_items), "n_test": len(test_items),
              "ion_per_dataset": {d: float(np.mean(v)) for d, v in per_dataset.items()},
              "input_size": net.input_size, "feature_tap": net.feature_tap, "channels": net.channels,
              "datasets": sorted({s.dataset for s in samples}), "epochs": int(cfg["epochs"]),
              "init": str(weights) if weights else None, "seconds": round(time.perf_counter() - t0, 1)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.pt") as tmp:
        torch.save({"state_dict": model.state_dict(), "backbone": backbone}, tmp)
    save_examples(out / "examples.png", model, test_bank, device=device)
    write_json(out / "report.json", report, indent=1, end="")
    return report


# ------------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    ap = command_parser("train-landmarks", __doc__)
    ap.add_argument("--backbone", default=None, help="landmark net name (default: params landmarks.backbone)")
    ap.add_argument("--datasets", nargs="+", default=None,
                    help="datasets with ground truth (default: landmarks.train.datasets, plus "
                         "external_datasets for the nets trained with external data)")
    ap.add_argument("--out", default=None, help="output folder (default: results/landmarks/<BACKBONE>)")
    ap.add_argument("--weights", default=None, help="initial weights (local checkpoint); with --epochs 0: ION only")
    ap.add_argument("--epochs", type=int, default=None)
    from dfer.landmarks.features import dataset_samples, parse_landmark_args

    args, params, base, backbone = parse_landmark_args(ap, argv)
    net = landmark_net_config(backbone)
    cfg = dict(params["landmarks"]["train"])
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    datasets = args.datasets or (list(cfg["datasets"]) + (list(cfg["external_datasets"]) if net.external_data else []))
    samples, roots = [], {}
    for d in datasets:
        root = Path(params["data"]["datasets"][d]["root"])
        roots[d] = root if root.is_absolute() else base / root
        samples += dataset_samples(d, params, base)
    report = run(backbone, samples, roots, args.out or f"results/landmarks/{backbone}", cfg, args.weights,
                 args.device)
    print(f"{backbone}: ION {report['ion']:.2f}% on {report['n_test']} held-out frames "
          f"(trained on {report['n_train']}, {report['params']:,} params, {report['seconds']} s)")
    return 0
