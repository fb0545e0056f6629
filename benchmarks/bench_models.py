"""Throughput and memory of the S2D models (DFER setting: frozen ViT, MCP + TMA + head trainable).

    python benchmarks/bench_models.py                      # s2d_tiny and s2d_base_patch16_224 on CPU (+ CUDA)
    python benchmarks/bench_models.py --models s2d_tiny --batch 8 --steps 5 --threads 2

Prints, per model and device: total / tunable parameters, median train-step time and clips/s (forward +
backward + AdamW step), inference clips/s (no grad, eval) and peak memory (CPU: process peak RSS from ``resource``;
CUDA: ``torch.cuda.max_memory_allocated``).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch

from dfer.models import create_model
from dfer.models.params import count_parameters, freeze_for_dfer

DEFAULTS = {"s2d_tiny": dict(batch=8, frames=16), "s2d_base_patch16_224": dict(batch=2, frames=16)}


def peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def bench(name: str, device: str, batch: int, frames: int, steps: int, amp: bool, warmup: int = 2) -> dict:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, num_frames=frames).to(device)
    freeze_for_dfer(model)
    total, tunable = count_parameters(model)
    size = model.patch_embed.img_size[0]
    x = torch.randn(batch, 3, frames, size, size, device=device)
    lmk = torch.randn(batch * frames, model.lmk_channels, model.lmk_grid, model.lmk_grid, device=device)
    y = torch.randint(0, 7, (batch,), device=device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    autocast = torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp and device == "cuda")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def train_step():
        with autocast:
            logits, _ = model(x, lmk)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def median_time(fn) -> float:
        for _ in range(warmup):  # first calls pay allocator / kernel set-up costs
            fn()
        times = []
        for _ in range(steps):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    model.train()
    t_train = median_time(train_step)
    model.eval()
    with torch.no_grad(), autocast:
        t_inf = median_time(lambda: model(x, lmk))
    mem = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mib()
    return dict(model=name, device=device, batch=batch, frames=frames, total=total, tunable=tunable,
                train_s=t_train, train_cps=batch / t_train, infer_cps=batch / t_inf, peak_mib=mem)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_models.py", description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(DEFAULTS))
    ap.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu, + cuda if present)")
    ap.add_argument("--batch", type=int, default=None, help="clips per batch (default: 8 tiny, 2 base)")
    ap.add_argument("--frames", type=int, default=None, help="frames per clip (default 16)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--no-amp", action="store_true", help="fp32 on CUDA (default: fp16 autocast, as official)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    header = f"{'model':24} {'dev':4} {'BxT':>6} {'total':>12} {'tunable':>11} {'train s/step':>12} " \
             f"{'train clip/s':>12} {'infer clip/s':>12} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for device in devices:
        for name in args.models:
            d = DEFAULTS.get(name, dict(batch=2, frames=16))
            r = bench(name, device, args.batch or d["batch"], args.frames or d["frames"], args.steps,
                      amp=not args.no_amp, warmup=args.warmup)
            print(f"{r['model']:24} {r['device']:4} {r['batch']:>2}x{r['frames']:<3} {r['total']:>12,} "
                  f"{r['tunable']:>11,} {r['train_s']:>12.3f} {r['train_cps']:>12.2f} {r['infer_cps']:>12.2f} "
                  f"{r['peak_mib']:>9.0f}", flush=True)
    if "cpu" in devices:
        print("(CPU peak MiB is the process's peak RSS so far, i.e. cumulative over the rows above)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
