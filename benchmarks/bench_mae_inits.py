"""Does MAE pre-training give SFER a better start? MAE on synthetic faces vs on the generic set vs random init.

1. Pre-trains the two MAE inits of the synthetic preset (``dfer pretrain-mae`` settings from params.yaml:
   ``mae_imagenet1k`` on the non-face ``Generic`` set, ``mae_affectnet`` on AffectNet-8 training images);
2. trains ``sfer_tiny`` (no landmark branch: ``fusion: none``, so only the init differs) on synthetic
   AffectNet-7 from each init and from random init, with the synthetic preset's SFER recipe (``train:``), as a
   full fine-tune and as a frozen-backbone probe (``train.freeze: dfer``: only ln_post, the temporal embedding
   and the head train), for each seed; reports test accuracy (WAR) and UAR on the AffectNet-7 validation set;
3. ``linprobe``: logistic regression on the frozen encoder's features (CLS, mean of the patch tokens).

Needs the synthetic AffectNet and Generic sets:

    python -m dfer.cli synth --out /tmp/synth --datasets AffectNet Generic
    OMP_NUM_THREADS=1 python benchmarks/bench_mae_inits.py --synth /tmp/synth --work /tmp/mae_bench [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

INITS = ("random", "mae_imagenet1k", "mae_affectnet")
MODES = {"finetune": "none", "probe": "dfer"}


def pretrain(synth: Path, work: Path, overrides: list[str]) -> dict[str, dict]:
    from dfer.config import load_params
    from dfer.pretrain.stage import init_settings, pretrain_mae

    generic = synth / "Generic" / "images.txt"
    params = load_params(overrides=[f"data.datasets.AffectNet-8.root={synth / 'AffectNet'}",
                                    f"pretrain.inits.mae_imagenet1k.sources=[{{images: {generic}}}]", *overrides])
    done = {}
    for init in INITS[1:]:
        t0 = time.time()
        done[init] = pretrain_mae(init_settings(params, init), work / "pretrain" / init, show=False)
        done[init]["wall_s"] = round(time.time() - t0, 1)
    return done


@torch.no_grad()
def features(model, dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(CLS after ln_post, mean of the patch tokens after ln_post, labels) of every item of an image dataset."""
    model.eval()
    cls, avg, labels = [], [], []
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=False)
    for batch in loader:
        x = batch["video"].squeeze(2)                       # [B, 3, 1, H, W] -> [B, 3, H, W]
        tokens = model.forward_features(x, None)            # T = 1: [B, 1 + N, D]
        cls.append(tokens[:, 0].numpy())
        avg.append(tokens[:, 1:].mean(1).numpy())
        labels.append(batch["label"].numpy())
    return np.concatenate(cls), np.concatenate(avg), np.concatenate(labels)


def linear_probe(synth: Path, ckpt: Path | None, seed: int) -> dict[str, float]:
    """Frozen sfer_tiny encoder (random init with ``seed`` when ``ckpt`` is None) -> logistic regression
    (standardised features, balanced class weights) on AffectNet-7 train, accuracy on its test split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from dfer.data.annotations import load_split
    from dfer.data.datasets import ImageDataset
    from dfer.models import create_model
    from dfer.models.weights import load_pretrained

    torch.manual_seed(seed)
    model = create_model("sfer_tiny", num_classes=7, fusion="none")
    if ckpt is not None:
        load_pretrained(model, ckpt, format="mae", verbose=False)
    split = {k: ImageDataset(load_split("AffectNet-7", synth / "AffectNet", k, format="official"), 112, mode="test")
             for k in ("train", "test")}
    tr, te = features(model, split["train"]), features(model, split["test"])
    out = {}
    for j, name in ((0, "cls"), (1, "mean_tokens")):
        scaler = StandardScaler().fit(tr[j])
        clf = LogisticRegression(max_iter=3000, class_weight="balanced", C=0.1)
        clf.fit(scaler.transform(tr[j]), tr[2])
        out[name] = float((clf.predict(scaler.transform(te[j])) == te[2]).mean())
    return out


def run_config(synth: Path, out: Path, init: Path | None, freeze: str, seed: int, train: dict,
               data: dict) -> dict:
    return {"name": f"sfer/AffectNet-7/{out.name}", "task": "sfer", "method": "sfer", "dataset": "AffectNet-7",
            "fold": None, "eval_datasets": [], "seed": seed,
            "data": {"root": str(synth / "AffectNet"), "format": "official", "num_frames": 1, "input_size": 112,
                     "features": None, **data},
            "model": {"name": "sfer_tiny", "kwargs": {"fusion": "none"}, "init": str(init) if init else None,
                      "init_format": "mae"},
            "landmarks": None, "train": {**train, "freeze": freeze}, "evaluate": {"select": "last"},
            "output_dir": str(out)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synth", type=Path, required=True, help="folder holding the synthetic AffectNet and Generic")
    ap.add_argument("--work", type=Path, required=True, help="output folder (pre-training and runs)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--modes", nargs="+", default=["linprobe", *MODES], choices=["linprobe", *MODES])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="params overrides for pre-training, e.g. pretrain.epochs=10")
    ap.add_argument("--inits", nargs="+", default=list(INITS), choices=list(INITS))
    ap.add_argument("--tag", default="preset", help="runs go to WORK/runs/TAG/ (one tag per recipe)")
    ap.add_argument("--train", default="{}", help="JSON overrides of the SFER recipe, e.g. '{\"epochs\": 8}'")
    ap.add_argument("--data", default="{}", help="JSON overrides of the run's data, e.g. '{\"oversample\": true}'")
    args = ap.parse_args()
    os.environ["DFER_NO_TRACKING"] = "1"
    from dfer.config import load_params
    from dfer.engine.runconfig import complete
    from dfer.engine.train import train_run

    synth, work = args.synth.resolve(), args.work.resolve()
    pre = pretrain(synth, work, args.set)
    for init, d in pre.items():
        rows = [json.loads(x) for x in (work / "pretrain" / init / "metrics.jsonl").read_text().splitlines()]
        print(f"pretrain {init}: {d['images']} images, {d['epochs']} epochs, {d['seconds_per_epoch']} s/epoch, "
              f"loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}; losses "
              + " ".join(f"{r['loss']:.3f}" for r in rows), flush=True)
    if "linprobe" in args.modes:
        for init in args.inits:
            ckpt = None if init == "random" else work / "pretrain" / init / "model.pt"
            seeds = args.seeds if init == "random" else [0]     # the MAE inits are one pre-training each
            accs = [linear_probe(synth, ckpt, seed) for seed in seeds]
            print(f"linprobe {init:15s} " + "  ".join(
                f"{k}: {100 * np.mean([a[k] for a in accs]):.2f} +- {100 * np.std([a[k] for a in accs]):.2f}"
                for k in accs[0]) + f"  (seeds {seeds})", flush=True)
    train = {**load_params()["train"], **json.loads(args.train)}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for mode in [m for m in args.modes if m in MODES]:
        for init in args.inits:
            for seed in args.seeds:
                out = work / "runs" / args.tag / f"{mode}-{init}-s{seed}"
                ckpt = None if init == "random" else work / "pretrain" / init / "model.pt"
                raw = run_config(synth, out, ckpt, MODES[mode], seed, train, json.loads(args.data))
                t0 = time.time()
                train_run(raw, complete(raw), device="cpu", track=False, show=False)
                ev = json.loads((out / "eval.json").read_text())
                results.setdefault((mode, init), []).append((ev["war"], ev["uar"]))
                print(f"{mode:8s} {init:15s} seed {seed}: WAR {100 * ev['war']:.2f}  UAR {100 * ev['uar']:.2f}  "
                      f"({time.time() - t0:.0f} s)", flush=True)
    print("\nAffectNet-7 (synthetic) test accuracy, sfer_tiny fusion=none, mean +- std over seeds "
          f"{args.seeds}; recipe {json.dumps({k: train[k] for k in ('epochs', 'batch_size', 'lr', 'warmup_epochs')})}"
          f" data {args.data}")
    print(f"{'mode':8s} {'init':15s} {'WAR %':>14s} {'UAR %':>14s}")
    for (mode, init), vals in results.items():
        a = 100 * np.array(vals)
        print(f"{mode:8s} {init:15s} {a[:, 0].mean():7.2f} +- {a[:, 0].std():4.2f} "
              f"{a[:, 1].mean():7.2f} +- {a[:, 1].std():4.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
