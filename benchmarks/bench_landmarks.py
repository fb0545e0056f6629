"""Landmark-feature throughput (frames/s) of every Table III net on this machine.

Times ``LandmarkFeatures`` on ImageNet-normalised 224x224 frames (what the S2D video model receives; each net
resizes to its own input) at batch 64, after a warm-up batch, and the CPU time the kernel spent for the
process meanwhile (page faults of freshly mapped activations: `dfer` keeps freed memory for reuse, as every
`dfer` command does; `--glibc-default` measures without). Usage:
    python benchmarks/bench_landmarks.py [--batch 64] [--iters 3] [--threads N] [--device cpu] [--glibc-default]
"""
import argparse
import resource
import time

import torch

from dfer.cli import keep_freed_memory
from dfer.landmarks import LandmarkFeatures, count_params, list_landmark_nets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--frame-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--glibc-default", action="store_true", help="leave malloc as glibc sets it (no dfer tuning)")
    args = ap.parse_args()
    tuned = False if args.glibc_default else keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 3, args.frame_size, args.frame_size, device=args.device)
    print(f"device={args.device} threads={torch.get_num_threads()} batch={args.batch} "
          f"frames={args.frame_size}x{args.frame_size} keep_freed_memory={tuned}")
    print(f"{'backbone':<16} {'input':>5} {'feature':>14} {'params':>10} {'frames/s':>9} {'sys s':>6}")
    for name in list_landmark_nets():
        lf = LandmarkFeatures(name).to(args.device)
        feat = lf(x)  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0, sys0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
        for _ in range(args.iters):
            lf(x)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        fps = args.batch * args.iters / (time.perf_counter() - t0)
        sys_s = resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys0
        shape = "x".join(map(str, feat.shape[1:]))
        print(f"{name:<16} {lf.input_size:>5} {shape:>14} {count_params(lf.net):>10,} {fps:>9.1f} {sys_s:>6.1f}")


if __name__ == "__main__":
    main()
