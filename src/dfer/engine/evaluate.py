"""`dfer evaluate`: test a trained model with the paper's protocol.

Protocol (official ``final_test`` + ``merge``): every test video is seen in ``temporal x spatial`` views
(2 x 2 for DFER; 1 for images), the softmax probabilities of its views are averaged, the argmax is the
prediction. Reported: UAR (mean per-class recall), WAR (accuracy), per-class accuracy, macro / weighted F1,
the confusion matrix (JSON + PNG with class names), per-video probabilities (``predictions.csv``), the pooled
features (``features.npy``, view-averaged) and ``predictions.npz`` (features, probs, labels) for figures.

Model selection: the last epoch (``model.pt``) by default. ``--select best_on_test`` takes ``best.pt``, the
epoch with the best accuracy when validating on the *test* split every epoch, as the official code does;
its numbers are labelled so in the JSON. SFER runs are also tested across datasets (``eval_datasets``):
labels are matched by canonical emotion name and only the shared classes are scored.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NamedTuple

import numpy as np
import torch
import torch.nn as nn

from dfer.cli import add_quiet_arg, command_parser
from dfer.config import ConfigError
from dfer.data.labels import classes as dataset_classes
from dfer.engine.loop import Precision, build_landmarks, build_model, landmark_input, predict_views
from dfer.engine.metrics import average_views, plot_confusion, summarize
from dfer.models.params import count_parameters
from dfer.models.unilearn import active_parameters
from dfer.engine.runconfig import BEST_ON_TEST_LABEL, RUN_FILES, RunConfig, check, load_run_config, project_base
from dfer.io import atomic_path, file_sha256, write_json, write_text


# ---- datasets ---------------------------------------------------------------------------------------
def evaluation_dataset(run: RunConfig, dataset: str | None = None, views: dict | None = None):
    """The test split of the run's dataset (or a cross-dataset one, an ``eval_data`` entry) in test mode."""
    from dfer.data.datasets import run_dataset

    dataset = dataset or run.dataset
    data = dict(run.data)
    fold = run.fold
    if dataset != run.dataset:  # check() made sure eval_data has an entry for every eval_datasets entry
        data = {**data, **run.eval_data[dataset], "subset": None}
        data["features"] = None  # the run's cache is for its own dataset: compute landmark features on the fly
        fold = None
    if views is not None:
        data["test_views"] = views
    return run_dataset(data, dataset, "test", fold, mode="test", base=project_base())


# ---- scoring ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scoring:
    """How a test set is scored: the model on ``device`` with its landmark net and precision, in batches of
    ``batch_size`` read by ``num_workers`` loader workers."""
    model: nn.Module
    device: torch.device
    batch_size: int
    num_workers: int
    lmk_net: nn.Module | None = None
    precision: Precision | None = None

    @classmethod
    def for_run(cls, run: RunConfig, model: nn.Module, device: torch.device, lmk_net: nn.Module | None,
                precision: Precision) -> "Scoring":
        return cls(model, device, run.eval_batch_size, int(run.train["num_workers"]), lmk_net, precision)


def score_dataset(scoring: Scoring, dataset_obj, show: bool = True, desc: str = "test",
                  image_head: bool = False) -> dict:
    """Per-video probabilities (view-averaged softmax), features, labels and the protocol's numbers
    (``image_head``: an image set scored by a jointly fine-tuned model's image head)."""
    s = scoring
    out = predict_views(s.model, dataset_obj, s.device, s.batch_size, s.lmk_net, s.precision, s.num_workers,
                        desc=desc, show=show, image_head=image_head)
    n = len(dataset_obj.samples)
    probs = average_views(out.probs, out.sample_index, n)
    feats = average_views(out.feats, out.sample_index, n)
    labels = np.asarray([s.label for s in dataset_obj.samples], dtype=np.int64)
    return {"probs": probs, "feats": feats, "labels": labels, "ids": [s.id for s in dataset_obj.samples],
            "views": int(getattr(dataset_obj, "views_per_sample", 1)), "clips": out.clips,
            "seconds": out.seconds, "filtered": out.filtered}


class CrossHead(NamedTuple):
    """How a run's model is scored on another dataset's test set: the classes its outputs stand for, and whether
    they come from its image head (a 4-D input)."""
    classes: list[str]
    image_head: bool


def cross_head(run: RunConfig, other: str) -> CrossHead | None:
    """An SFER model is scored with its own classes (Table I); a jointly fine-tuned model (UniLearn) with its image
    head on its static dataset, in that set's classes (UniLearn Table 4's SFER columns); None when no head of the
    model was trained for that test set (it is then not scored)."""
    from dfer.data.annotations import IMAGE_DATASETS

    if run.task == "sfer":
        return CrossHead(list(run.classes), False)
    joint = run.train["joint"]
    if joint and joint["dataset"] == other and other in IMAGE_DATASETS:
        return CrossHead(dataset_classes(other), True)
    return None


def cross_scores(probs: np.ndarray, labels: np.ndarray, src_classes: list[str], dst_classes: list[str],
                 ids: list[str] | None = None) -> dict:
    """Score a model of ``src_classes`` on a test set of ``dst_classes``: samples of shared classes only,
    prediction = argmax over the shared classes' probabilities. ``items`` keeps every scored sample's id, label
    and prediction (indices into ``shared_classes``) for the claims scorecard's bootstrap."""
    from dfer.data.labels import canonical

    src = {canonical(c): i for i, c in enumerate(src_classes)}
    shared = [c for c in dst_classes if canonical(c) in src]
    if not shared:
        raise ValueError(f"no shared classes between {src_classes} and {dst_classes}")
    dst_idx = {canonical(c): i for i, c in enumerate(dst_classes)}
    src_cols = [src[canonical(c)] for c in shared]
    keep_dst = {dst_idx[canonical(c)]: k for k, c in enumerate(shared)}
    mask = np.isin(labels, list(keep_dst))
    y_true = np.asarray([keep_dst[int(y)] for y in labels[mask]], dtype=np.int64)
    y_pred = probs[mask][:, src_cols].argmax(axis=1)
    res = summarize(y_true, y_pred, shared)
    res["shared_classes"] = shared
    res["excluded_samples"] = int((~mask).sum())
    kept_ids = [i for i, m in zip(ids, mask) if m] if ids is not None else list(range(int(mask.sum())))
    res["items"] = {"ids": kept_ids, "labels": y_true.tolist(), "pred": y_pred.tolist()}
    return res


# ---- the whole evaluation ---------------------------------------------------------------------------
def load_weights(model: nn.Module, path: Path) -> dict:
    """Our checkpoint (``{"model", "meta"}``) into ``model`` (strict); returns its meta."""
    from dfer.models.weights import extract_state_dict, read_checkpoint

    obj = read_checkpoint(path)
    sd = extract_state_dict(obj, path)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"{path}: does not fit the model of the run config ({str(exc)[:400]}); pass the "
                          "config the checkpoint was trained with") from exc
    return dict(obj.get("meta") or {}) if isinstance(obj, dict) else {}


def evaluate(run: RunConfig, checkpoint: Path, select: str, out_json: Path,
             device: torch.device | None = None, show: bool = True, model: nn.Module | None = None,
             epoch: int | None = None, extra: dict | None = None) -> dict:
    """Evaluate ``checkpoint`` (or the given in-memory ``model``) and write the outputs next to ``out_json``.

    Every output file is written atomically; the caller stages them when they must appear together."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    classes = list(run.classes)
    meta: dict = {}
    if model is None:
        model = build_model(run, init=False, verbose=False)
        meta = load_weights(model, checkpoint)
    model = model.to(device).eval()
    lmk_net = build_landmarks(run.landmarks)
    if lmk_net is not None:
        lmk_net = lmk_net.to(device)
    scoring = Scoring.for_run(run, model, device, lmk_net, Precision.from_config(run.train, device))
    t0 = time.perf_counter()
    ds = evaluation_dataset(run)
    res = score_dataset(scoring, ds, show=show)
    pred = res["probs"].argmax(axis=1)
    summary = summarize(res["labels"], pred, classes)
    report = {
        "run": run.name, "config_hash": run.hash, "task": run.task, "method": run.method,
        "dataset": run.dataset, "fold": run.fold, "split": "test",
        "selection": BEST_ON_TEST_LABEL if select == "best_on_test" else "last",
        "epoch": epoch if epoch is not None else meta.get("epoch"),
        "checkpoint": str(checkpoint),
        "parameters": {**dict(zip(("total", "tunable"), count_parameters(model))), "active": active_parameters(model)},
        "flops": model_flops(model, run.data, lmk_net, device),
        "protocol": {"views_per_video": res["views"], **run.data["test_views"],
                     "identical_spatial_crops": "computed once (square resize: every crop is the whole frame)",
                     "aggregation": "mean of softmax over views"},
        **summary,
    }
    cross = {other: head for other in run.eval_datasets if (head := cross_head(run, other)) is not None}
    if cross:
        report["cross"] = {}
        for other, head in cross.items():
            ores = score_dataset(scoring, evaluation_dataset(run, other), show=show, desc=f"test {other}",
                                 image_head=head.image_head)
            report["cross"][other] = cross_scores(ores["probs"], ores["labels"], head.classes,
                                                  dataset_classes(other), ores["ids"])
    if res["filtered"] is not None:  # NR-DFERNet: how often its snippet-based filter removed "neutral"
        report["snippet_filter"] = filter_rate(res)
    variants = run.evaluate["variants"]
    if variants:
        report["variants"] = {name: score_variant(scoring, ds, f"run {run.name}: evaluate.variants.{name}", name,
                                                  settings, classes, show) for name, settings in variants.items()}
    report["seconds"] = round(time.perf_counter() - t0, 3)
    report["clips_per_s"] = round(res["clips"] / res["seconds"], 3) if res["seconds"] > 0 else None
    report.update(extra or {})
    write_outputs(report, res, classes, out_json)
    return report


def filter_rate(res: dict) -> dict:
    return {"views": res["clips"], "filtered": res["filtered"], "rate": res["filtered"] / max(res["clips"], 1)}


def score_variant(scoring: Scoring, ds, where: str, name: str, settings: dict, classes: list[str],
                  show: bool) -> dict:
    """The protocol's numbers of one inference-only variant (``evaluate.variants``; ``where`` names it in errors):
    the same trained model and test set under other inference settings (NR-DFERNet's snippet filter), with
    per-item predictions so that the claims scorecard can pair it with the main evaluation."""
    model = scoring.model
    if not hasattr(model, "inference_settings"):
        raise ConfigError(f"{where}: {type(model).__name__} has no inference-only "
                          "settings; remove the variant or use a model that has them (NR-DFERNet)")
    try:
        previous = model.inference_settings(**settings)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    try:
        res = score_dataset(scoring, ds, show=show, desc=f"test {name}")
    finally:
        model.inference_settings(**previous)
    pred = res["probs"].argmax(axis=1)
    out = {"settings": settings, **summarize(res["labels"], pred, classes),
           "items": {"ids": [str(i) for i in res["ids"]], "labels": res["labels"].tolist(), "pred": pred.tolist()}}
    if res["filtered"] is not None:
        out["snippet_filter"] = filter_rate(res)
    return out


@torch.no_grad()
def model_flops(model: nn.Module, data: Mapping, lmk_net: nn.Module | None, device: torch.device) -> dict:
    """FLOPs of one test view (``torch.utils.flop_counter``: a multiply-add counts 2, as fvcore's "FLOPs" count 1
    MAC, so ``gmacs`` is the number papers usually print as GFLOPs): the model on a ``[1, 3, T, S, S]`` clip with
    its landmark features, and the landmark net on its T frames, counted apart (``data``: the run's data
    section, for T and S)."""
    from torch.utils.flop_counter import FlopCounterMode

    video = torch.zeros(1, 3, int(data["num_frames"]), int(data["input_size"]), int(data["input_size"]),
                        device=device)
    with FlopCounterMode(display=False) as lmk_count:
        lmk = landmark_input({}, video, lmk_net, use_cache=False)
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as count:
        model(video, lmk)
    model.train(was_training)
    flops, lmk_flops = count.get_total_flops(), lmk_count.get_total_flops()
    return {"input": list(video.shape), "model_gflops": flops / 1e9, "model_gmacs": flops / 2e9,
            "landmark_net_gmacs": lmk_flops / 2e9}


def write_outputs(report: dict, res: dict, classes: list[str], out_json: Path) -> None:
    folder = out_json.parent
    folder.mkdir(parents=True, exist_ok=True)
    pred = res["probs"].argmax(axis=1)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "label", "pred", *[f"p_{c}" for c in classes]])
    for vid, y, p, row in zip(res["ids"], res["labels"], pred, res["probs"]):
        w.writerow([vid, classes[int(y)], classes[int(p)], *[f"{v:.6f}" for v in row]])
    write_text(folder / RUN_FILES["predictions"], buf.getvalue())
    with atomic_path(folder / RUN_FILES["embeddings"]) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, res["feats"].astype(np.float32))
    with atomic_path(folder / RUN_FILES["probabilities"]) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, features=res["feats"].astype(np.float32), probs=res["probs"].astype(np.float32),
                     labels=res["labels"], ids=np.asarray(res["ids"]))
    title = f"{report.get('run') or report['dataset']} ({report['selection']}): UAR {100 * report['uar']:.2f} " \
            f"WAR {100 * report['war']:.2f}"
    with atomic_path(folder / RUN_FILES["confusion"]) as tmp:
        plot_confusion(np.asarray(report["confusion"]), classes, tmp, title)
    write_json(out_json, report)


def checkpoint_for(run_dir: Path, select: str, validated_every_epoch: bool) -> Path:
    if select == "best_on_test":
        if not validated_every_epoch:
            raise ConfigError(f"{run_dir}: --select best_on_test needs a run trained with "
                              "train.validate_every_epoch: true (it keeps best.pt)")
        path = run_dir / "best.pt"
    else:
        path = run_dir / RUN_FILES["model"]
    if not path.is_file():
        raise ConfigError(f"{path}: not found; train the run first (`dfer train --config "
                          f"{run_dir / 'config.yaml'}`)")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("evaluate", __doc__)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder (config.yaml + model.pt / best.pt)")
    src.add_argument("--checkpoint", help="a model checkpoint (with --config)")
    ap.add_argument("--config", help="run config of --checkpoint (default: the one stored in it)")
    ap.add_argument("--select", choices=["last", "best_on_test"], default=None,
                    help="last epoch (default) or the official best epoch selected on the test split")
    ap.add_argument("--out", help="eval JSON path (default: <run>/eval.json, or eval.json next to --checkpoint)")
    ap.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    ap.add_argument("--force", action="store_true", help="re-evaluate even if the output matches the checkpoint")
    ap.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    add_quiet_arg(ap)
    args = ap.parse_args(argv)

    if args.run:
        run_dir = Path(args.run)
        run = load_run_config(args.config or run_dir / "config.yaml")
        select = args.select or run.evaluate["select"]
        ckpt = checkpoint_for(run_dir, select, run.train["validate_every_epoch"])
        out = Path(args.out) if args.out else run_dir / RUN_FILES["eval"]
    else:
        ckpt = Path(args.checkpoint)
        if args.config:
            run = load_run_config(args.config)
        else:
            from dfer.models.weights import read_checkpoint

            meta = (read_checkpoint(ckpt) or {}).get("meta", {}) if ckpt.is_file() else {}
            if not meta.get("config"):
                raise ConfigError(f"{ckpt}: stores no run config; pass --config RUN.yaml")
            run = check(meta["config"], source=str(ckpt))
        select = args.select or "last"
        out = Path(args.out) if args.out else ckpt.parent / RUN_FILES["eval"]
        if select == "best_on_test" and ckpt.name != "best.pt":
            raise ConfigError(f"{ckpt}: --select best_on_test evaluates a run's best.pt; pass --run DIR")

    sha = file_sha256(ckpt)
    if out.is_file() and not args.force:
        try:
            old = json.loads(out.read_text())
        except ValueError:
            old = {}
        if old.get("checkpoint_sha256") == sha and old.get("selection", "").startswith(select):
            print(f"{out}: up to date for {ckpt} (use --force to recompute)")
            _print_report(old)
            return 0
    device = torch.device(args.device) if args.device else None
    report = evaluate(run, ckpt, select, out, device, show=not args.quiet, extra={"checkpoint_sha256": sha})
    _print_report(report)
    if not args.no_tracking and os.environ.get("DFER_NO_TRACKING") != "1":
        _track(run.raw, report, out)
    return 0


def _print_report(report: dict) -> None:
    print(f"{report.get('run')}: {report.get('selection')}  UAR {100 * report['uar']:.2f}  "
          f"WAR {100 * report['war']:.2f}  ({report.get('num_samples')} videos)")
    for name, acc in (report.get("per_class") or {}).items():
        print(f"  {name:<16} {'-' if acc is None else f'{100 * acc:.2f}'}")
    for d, sub in (report.get("cross") or {}).items():
        print(f"  cross {d}: WAR {100 * sub['war']:.2f} UAR {100 * sub['uar']:.2f} on {sub['shared_classes']}")


def _track(cfg: dict, report: dict, out: Path) -> None:
    try:
        from dfer.tracking import Tracker
    except ImportError:
        return
    with Tracker.from_config(cfg, stage="evaluate") as tr:
        tr.log_eval(out, out.parent / "confusion.png")


if __name__ == "__main__":
    sys.exit(main())
