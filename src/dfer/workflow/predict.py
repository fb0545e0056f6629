"""`dfer predict VIDEO --checkpoint CKPT`: expression probabilities for your own video file.

The faces are detected, cropped and aligned (dfer.align: ``--detector mtcnn`` by default, weights ship with
facenet-pytorch), the clip is sampled with the test protocol (temporal x spatial views), landmark features
are computed by the frozen landmark net, and the view-averaged softmax is printed, classes sorted by
probability. Our checkpoints (``model.pt`` / ``best.pt``) carry their run config; the official S2D release
needs ``--official-s2d --num-classes 7 --dataset DFEW --landmark-weights mobilefacenet_model_best.pth.tar``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np
import torch

from dfer.cli import command_parser
from dfer.config import ConfigError

if TYPE_CHECKING:
    from dfer.engine.runconfig import RunConfig


def _config_for(args) -> RunConfig:
    """The run config of the checkpoint (``--config``, the paper's S2D config, or the one stored in it), with
    ``--landmark-weights`` in place of its landmark weights, checked and resolved once (a ``RunConfig``)."""
    from dfer.engine.runconfig import check

    cfg, source = _raw_config(args)
    if args.landmark_weights and cfg["landmarks"]:
        cfg["landmarks"]["weights"] = args.landmark_weights
    return check(cfg, source=source)


def _raw_config(args) -> tuple[dict, str]:
    from dfer.engine.runconfig import read_run_config

    if args.config:
        return read_run_config(args.config), str(args.config)
    if args.official_s2d:
        if not args.dataset:
            raise ConfigError("--official-s2d needs --dataset (DFEW | MAFW | FERV39K) for the class names")
        # The run config S2D gets on this dataset in the paper preset (predict is a tool over the workflow, so
        # it composes the planner's config rather than keeping a second copy of the recipe).
        from dfer.config import load_params
        from dfer.workflow.plan import method_run_config

        cfg = method_run_config(load_params(overrides=["preset=paper"]), "s2d", args.dataset,
                                {"model.name": args.model})
        cfg["name"] = f"official S2D {args.dataset}"
        cfg["landmarks"] = {"backbone": args.landmark_backbone, "weights": args.landmark_weights}
        return cfg, "--official-s2d"
    from dfer.models.weights import read_checkpoint

    meta = (read_checkpoint(args.checkpoint) or {}).get("meta") or {}
    if not meta.get("config"):
        raise ConfigError(f"{args.checkpoint}: stores no run config; pass --config RUN.yaml, or --official-s2d "
                          "--num-classes N --dataset D for an official S2D checkpoint")
    return meta["config"], str(args.checkpoint)


def load_model(args, run: RunConfig) -> torch.nn.Module:
    from dfer.engine.evaluate import load_weights
    from dfer.engine.loop import build_model

    model = build_model(run, init=False, verbose=False)
    if args.official_s2d:
        from dfer.models.weights import load_pretrained

        if args.num_classes != len(run.classes):
            raise ConfigError(f"--num-classes {args.num_classes} does not match {run.dataset} "
                              f"({len(run.classes)} classes)")
        report = load_pretrained(model, args.checkpoint, format="official_s2d", verbose=False)
        if report.missing:
            raise ConfigError(f"{args.checkpoint}: not an S2D checkpoint for {args.model} "
                              f"(missing {report.missing[:5]})")
    else:
        load_weights(model, Path(args.checkpoint))
    return model.eval()


def clip_views(frames: np.ndarray, data: Mapping) -> torch.Tensor:
    """``uint8[N,H,W,3]`` face frames -> normalised views ``[V,3,T,S,S]`` of the test protocol (``data``: the run
    config's data section)."""
    from dfer.data.sampling import test_clips
    from dfer.data.transforms import resize_frames, spatial_crops, to_normalized_tensor

    t, size, tv = int(data["num_frames"]), int(data["input_size"]), data["test_views"]
    views = []
    for idx in test_clips(len(frames), t, data["sampler"], int(tv["temporal"]), int(data["sampling_rate"]),
                          int(data["segments"])):
        clip = resize_frames(frames[idx], size, "square")
        for crop in spatial_crops(clip, size, int(tv["spatial"])):
            views.append(to_normalized_tensor(crop).permute(1, 0, 2, 3))
    return torch.stack(views)


def faces(video: Path, detector_name: str | None, weights: str | None, size: int, device: str) -> np.ndarray:
    from dfer.data.video import read_frames

    frames = read_frames(video)
    if detector_name in (None, "none"):
        return frames
    from dfer.align.detectors import build_detector
    from dfer.align.stage import align_frames

    detector = build_detector(detector_name, weights, device=device)
    from dfer.config import load_params

    aligned, info = align_frames(frames, detector, {**load_params()["align"], "size": max(size, 112)})
    if info.get("no_face_in_clip"):
        print(f"warning: {video}: no face found by {detector_name}; using the whole frames", file=sys.stderr)
        return frames
    return aligned


@torch.no_grad()
def predict(model, run: RunConfig, frames: np.ndarray, device: torch.device) -> np.ndarray:
    from dfer.engine.loop import build_landmarks, landmark_input

    views = clip_views(frames, run.data).to(device)
    lmk_net = build_landmarks(run.landmarks)
    if lmk_net is not None:
        lmk_net = lmk_net.to(device)
    logits, _ = model.to(device)(views, landmark_input({}, views, lmk_net, False))
    return torch.softmax(logits.float(), dim=-1).mean(0).cpu().numpy()


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("predict", __doc__)
    ap.add_argument("video", help="a video file (mp4, avi, ...)")
    ap.add_argument("--checkpoint", required=True, help="model.pt / best.pt of a run, or an official S2D .pth")
    ap.add_argument("--config", help="run config (default: the one stored in the checkpoint)")
    ap.add_argument("--detector", default="mtcnn", help="face detector (mtcnn | retinaface | synthetic | none: "
                                                       "the video already shows an aligned face)")
    ap.add_argument("--detector-weights", default=None, help="detector checkpoint (retinaface, synthetic)")
    ap.add_argument("--official-s2d", action="store_true", help="the checkpoint is from the official S2D release")
    ap.add_argument("--num-classes", type=int, default=7, help="classes of the official checkpoint")
    ap.add_argument("--dataset", default=None, help="class names of the official checkpoint (DFEW | MAFW | FERV39K)")
    ap.add_argument("--model", default="s2d_base_patch16_224", help="model name of the official checkpoint")
    ap.add_argument("--landmark-backbone", default="MobileFaceNet")
    ap.add_argument("--landmark-weights", default=None, help="landmark net weights (official: "
                                                            "mobilefacenet_model_best.pth.tar)")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    video = Path(args.video)
    if not video.is_file():
        raise ConfigError(f"{video}: video file not found")
    if args.official_s2d and not args.landmark_weights:
        raise ConfigError("--official-s2d needs --landmark-weights (the MobileFaceNet file the model was trained "
                          "with: mobilefacenet_model_best.pth.tar)")
    run = _config_for(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_model(args, run)
    frames = faces(video, args.detector, args.detector_weights, int(run.data["input_size"]), device.type)
    probs = predict(model, run, frames, device)
    names = run.classes
    order = np.argsort(-probs, kind="stable")
    if args.json:
        print(json.dumps({"video": str(video), "probabilities": {names[i]: float(probs[i]) for i in order}}))
    else:
        print(f"{video} ({len(frames)} frames):")
        for i in order:
            print(f"  {names[i]:<16} {100 * probs[i]:6.2f}%  {'#' * int(round(40 * probs[i]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
