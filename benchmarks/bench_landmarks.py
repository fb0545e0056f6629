"""Landmark-feature throughput (frames/s) of every Table III net on this machine.

Times ``LandmarkFeatures`` on ImageNet-normalised 224x224 frames (what the S2D video model receives; each net
resizes to its own input) at batch 64, after a warm-up batch. Usage:
    python benchmarks/bench_landmarks.py [--batch 64] [--iters 3] [--threads N] [--device cpu]
"""
import argparse
import time

import torch

from dfer.landmarks import LandmarkFeatures, count_params, list_landmark_nets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--frame-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 3, args.frame_size, args.frame_size, device=args.device)
    print(f"device={args.device} threads={torch.get_num_threads()} batch={args.batch} "
          f"frames={args.frame_size}x{args.frame_size}")
    print(f"{'backbone':<16} {'input':>5} {'feature':>14} {'params':>10} {'frames/s':>9}")
    for name in list_landmark_nets():
        lf = LandmarkFeatures(name).to(args.device)
        feat = lf(x)  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.iters):
            lf(x)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        fps = args.batch * args.iters / (time.perf_counter() - t0)
        shape = "x".join(map(str, feat.shape[1:]))
        print(f"{name:<16} {lf.input_size:>5} {shape:>14} {count_params(lf.net):>10,} {fps:>9.1f}")


if __name__ == "__main__":
    main()
