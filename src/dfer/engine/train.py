"""`dfer train --config RUN.yaml`: train one run (SFER or DFER) from a resolved run config.

Recipe (official S2D ``run_class_finetuning.py``): AdamW (betas 0.9/0.999, weight decay 0.05, none on
biases/norms), lr scaled by total batch / 8 (min/warm-up lr by / 256), step-level warm-up + cosine; loss
``onehot`` (CE; SoftTargetCE on mixed targets), ``label_smoothing`` or ``onehot_sdl`` (+ lambda * SDL);
Mixup/CutMix as a batch op (timm); only trainable parameters (after ``freeze_for_dfer`` for S2D DFER runs)
reach the optimizer. The frozen landmark net runs on the (mixed) batch unless cached features match the
frames. UniLearn's MoAE load-balancing loss is added when the model has ``aux_loss()``.

Outputs (``output_dir``): ``model.pt``, ``metrics.jsonl`` (one line per epoch), ``eval.json`` +
``confusion.png`` + ``predictions.csv`` + ``features.npy`` + ``predictions.npz`` (`dfer evaluate`'s
protocol), ``best.pt`` (when validating every epoch) and last ``done.json``. They are staged and moved in
place only when the run has finished, so a failing re-run never replaces a finished run's results; a run
whose ``done.json`` matches its config hash returns at once.

Resumption: ``<output_dir>/resume/checkpoint.pt`` (not a workflow output) holds model, optimizer, scaler,
schedule position (epoch, step), RNG states, SDL queues and the metric history; written atomically at every
epoch end and, on SIGTERM/SIGUSR1 (SLURM preemption), at the next step boundary before exiting with
status 75. A restarted run continues from it and ends with the same metrics (bitwise on CPU).

Multi-GPU: ``torchrun --nproc_per_node=N -m dfer.cli train --config RUN.yaml`` (DDP; validation and the
final evaluation run on rank 0).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from dfer.config import ConfigError
from dfer.engine import checkpointing as ck
from dfer.engine import distributed as dist_env
from dfer.engine.loop import (EpochSampler, Precision, StepState, build_landmarks, build_model, make_loader,
                              train_one_epoch)
from dfer.engine.runconfig import class_names, load_run_config, output_dir, project_base, run_hash

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpoint saved, run again to continue


class StopFlag:
    """Set by SIGTERM / SIGUSR1; the loop saves a checkpoint at the next step boundary and exits."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def __call__(self) -> bool:
        return self.signum is not None

    def install(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a library): no handler
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        print(f"\nreceived signal {signum}: saving a checkpoint at the next step boundary", file=sys.stderr,
              flush=True)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def set_determinism(enabled: bool, device: torch.device) -> None:
    torch.backends.cudnn.benchmark = False
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + rank * 10_007 + epoch) % 2**63


def train_datasets(cfg: dict):
    """Train dataset (cached landmark features unless mixup/cutmix mixes the clips) and, when validating
    every epoch, the one-view test dataset (official: validation on the test csv)."""
    from dfer.data.datasets import dataset_from_params

    aug = cfg["train"].get("augment") or {}
    data = dict(cfg["data"])
    if aug.get("mixup") or aug.get("cutmix"):
        data["features"] = None  # the landmark net must see the mixed clip (official)
    train_cfg = {"data": data, "train": cfg["train"]}
    train_ds = dataset_from_params(train_cfg, cfg["dataset"], "train", cfg.get("fold"), mode="train",
                                   base=project_base())
    val_ds = None
    if cfg["train"].get("validate_every_epoch"):
        from dfer.engine.evaluate import evaluation_dataset

        val_ds = evaluation_dataset(cfg, views={"temporal": 1, "spatial": 1})
    return train_ds, val_ds


def validate(model: nn.Module, cfg: dict, val_ds, device, lmk_net, precision, show: bool) -> dict:
    from dfer.engine.evaluate import score_dataset
    from dfer.engine.metrics import summarize

    res = score_dataset(model, cfg, val_ds, device, lmk_net, precision, show=show, desc="validate")
    s = summarize(res["labels"], res["probs"].argmax(axis=1), class_names(cfg))
    return {"val_uar": s["uar"], "val_war": s["war"]}


class NullTracker:
    def log_params(self, *a, **k): ...
    def log_epoch(self, *a, **k): ...
    def log_eval(self, *a, **k): ...
    def end(self, *a, **k): ...


def make_tracker(raw: dict, enabled: bool):
    if not enabled or os.environ.get("DFER_NO_TRACKING") == "1":
        return NullTracker()
    try:
        from dfer.workflow.tracking import Tracker

        return Tracker.from_config(raw, stage="train").start()
    except Exception as exc:  # noqa: BLE001 - tracking never kills a run
        print(f"warning: MLflow tracking unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)
        return NullTracker()


def finished(out: Path, h: str) -> bool:
    """True when ``out`` holds the finished run of this config; error if it holds another config's run."""
    done = out / "done.json"
    if not done.is_file():
        return False
    try:
        d = json.loads(done.read_text())
    except ValueError:
        return False
    if d.get("config_hash") != h:
        raise ConfigError(f"{out}: holds the finished run of config {d.get('config_hash')}, not {h}; set another "
                          "output_dir, or delete the folder to retrain")
    return True


def train_run(raw: dict, cfg: dict, device: str | None = None, force: bool = False, track: bool = True,
              show: bool = True) -> int:
    h = run_hash(raw)
    out = output_dir(cfg, raw)
    if not force and finished(out, h):
        print(f"{out}: already finished (config {h}); nothing to do")
        return 0
    env = dist_env.setup(device)
    main_proc = env.is_main
    show = show and main_proc
    set_determinism(bool(cfg["train"].get("deterministic", True)), env.device)
    tr_cfg = cfg["train"]
    epochs, batch = int(tr_cfg["epochs"]), int(tr_cfg["batch_size"])
    resume_file = ck.resume_path(out)
    if force and main_proc and resume_file.parent.exists():
        shutil.rmtree(resume_file.parent)
    dist_env.barrier(env)

    ck.seed_everything(epoch_seed(cfg["seed"], env.rank, -1))
    train_ds, val_ds = train_datasets(cfg)
    model = build_model(cfg, verbose=main_proc)
    lmk_net = build_landmarks(cfg)
    classes = class_names(cfg)
    sdl = None
    if tr_cfg["loss"] == "onehot_sdl":
        from dfer.models.sdl import SDL

        s = tr_cfg["sdl"]
        dim = int(getattr(model, "num_features", 0) or model.head.fc_cls.in_features)
        sdl = SDL(len(classes), dim, k=int(s.get("k", 2)), queue_size=int(s.get("queue_size", 16)))
    model.to(env.device)
    if lmk_net is not None:
        lmk_net.to(env.device)
    if sdl is not None:
        sdl.to(env.device)

    from dfer.models.params import count_parameters

    total_p, tunable_p = count_parameters(model)
    if main_proc:
        print(f"run {cfg.get('name')} ({h}): {cfg['model']['name']} on {cfg['dataset']}"
              f"{'' if cfg.get('fold') is None else ' fold ' + str(cfg['fold'])}, {len(train_ds)} train items, "
              f"device {env.device} x{env.world_size}; parameters: {total_p / 1e6:.3f} M total, "
              f"{tunable_p / 1e6:.3f} M tunable")

    from dfer.engine.schedule import build_optimizer, cosine_schedule, scaled_lrs

    lrs = scaled_lrs(tr_cfg, batch * env.world_size)
    optimizer = build_optimizer(model, tr_cfg, lrs["lr"])
    precision = Precision.from_config(tr_cfg, env.device)
    scaler = torch.amp.GradScaler("cuda") if precision.needs_scaler else None
    sampler = EpochSampler(train_ds.labels, cfg["seed"], balanced=bool(cfg["data"].get("oversample")),
                           rank=env.rank, world_size=env.world_size)
    drop_last = sampler.num_samples >= batch
    steps_per_epoch = sampler.num_samples // batch if drop_last else -(-sampler.num_samples // batch)
    lr_schedule = cosine_schedule(lrs["lr"], lrs["min_lr"], epochs, steps_per_epoch,
                                  float(tr_cfg.get("warmup_epochs", 0)), lrs["warmup_lr"])
    from dfer.data.transforms import mixup_fn

    smoothing = float(tr_cfg.get("label_smoothing", 0.1)) if tr_cfg["loss"] == "label_smoothing" else 0.0
    mixup = mixup_fn(tr_cfg.get("augment"), len(classes), label_smoothing=smoothing)
    if mixup is not None and batch % 2:
        raise ConfigError(f"train.batch_size={batch}: Mixup/CutMix needs an even batch size")

    ddp_model = model
    if env.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None,
            find_unused_parameters=cfg.get("method") == "s2d")  # prompt_norms[-1] is never used (official)

    # ---- resume ----
    start_epoch, start_step, history, best, partial = 0, 0, [], None, None
    state = ck.load_resume(resume_file)
    if state is not None and state.get("config_hash") != h:
        if main_proc:
            print(f"warning: {resume_file} belongs to config {state.get('config_hash')}, not {h}; starting over")
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if sdl is not None and state.get("sdl"):
            sdl.load_state_dict(state["sdl"])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        history, best, partial = state.get("history", []), state.get("best"), state.get("partial")
        if main_proc:
            where = f"epoch {start_epoch + 1} step {start_step}" if start_step else f"epoch {start_epoch + 1}"
            print(f"resuming from {resume_file} at {where}")

    stop = StopFlag().install()
    tracker = make_tracker(raw, track and main_proc)
    tracker.log_params()

    def save_state(epoch: int, step: int, part: dict | None) -> None:
        if not main_proc:
            return
        ck.save_resume(resume_file, {
            "config_hash": h, "epoch": epoch, "step": step, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else None,
            "sdl": sdl.state_dict() if sdl is not None else None,
            "schedule": {"steps_per_epoch": steps_per_epoch, "global_step": epoch * steps_per_epoch + step},
            "sampler": {"seed": sampler.seed, "epoch": epoch, "skip": step * batch, "balanced": sampler.balanced},
            "rng": ck.rng_state(), "history": history, "best": best, "partial": part,
        })
        ck.write_jsonl(resume_file.parent / "metrics.jsonl", history)

    from dfer.models.sdl import SDLConfig, sdl_active, sdl_weight, should_update

    try:
        for epoch in range(start_epoch, epochs):
            step0 = start_step if epoch == start_epoch else 0
            if step0 and state is not None:
                ck.set_rng_state(state["rng"])  # mid-epoch: continue the RNG streams where they stopped
            else:
                ck.seed_everything(epoch_seed(cfg["seed"], env.rank, epoch))
            sampler.set_epoch(epoch, skip=step0 * batch)
            loader = make_loader(train_ds, batch, sampler, int(tr_cfg.get("num_workers", 0)),
                                 epoch_seed(cfg["seed"], env.rank, epoch), drop_last, env.device)
            st = StepState(optimizer, lr_schedule, steps_per_epoch, precision, scaler, lmk_net,
                           bool(getattr(train_ds, "uses_feature_cache", False)), mixup, tr_cfg["loss"],
                           float(tr_cfg.get("label_smoothing", 0.1)), len(classes),
                           aux_coeff=float(tr_cfg.get("aux_loss_coeff", 1e-3)), clip_grad=tr_cfg.get("clip_grad"),
                           stop_requested=lambda: dist_env.broadcast_flag(env, stop()))
            if sdl is not None:
                s = tr_cfg["sdl"]
                scfg = SDLConfig(k=int(s.get("k", 2)), queue_size=int(s.get("queue_size", 16)),
                                 schedule=s.get("schedule", "paper"), update=s.get("update", "paper"),
                                 update_freq=int(s.get("update_freq", 40)))
                st.sdl, st.sdl_lambda = sdl, sdl_weight(epoch, epochs, scfg.schedule)
                st.sdl_active = sdl_active(epoch, epochs, scfg.schedule)
                st.sdl_update = should_update(epoch, epochs, scfg)
            r = train_one_epoch(ddp_model, loader, st, epoch, env.device, start_step=step0, show=show)
            if partial and step0:  # the part of this epoch done before the restart
                for k in ("loss_sum", "steps", "clips", "seconds"):
                    r[k] += partial[k]
            partial = None
            if r["stopped"]:
                save_state(epoch, r["step"], {k: r[k] for k in ("loss_sum", "steps", "clips", "seconds")})
                if main_proc:
                    print(f"stopped by signal {stop.signum} at epoch {epoch + 1} step {r['step']}; checkpoint "
                          f"saved to {resume_file}; run the same command again to continue", file=sys.stderr)
                return EXIT_PREEMPTED
            row = {"epoch": epoch + 1,
                   "train_loss": dist_env.all_reduce_mean(env, r["loss_sum"] / max(r["steps"], 1)),
                   "lr": float(lr_schedule[min((epoch + 1) * steps_per_epoch - 1, len(lr_schedule) - 1)])}
            if sdl is not None:
                row["sdl_lambda"] = st.sdl_lambda
            if val_ds is not None:
                if main_proc:
                    row.update(validate(model, cfg, val_ds, env.device, lmk_net, precision, show))
                    if best is None or row["val_war"] > best["val_war"]:  # official --val_metric acc1
                        best = {"epoch": epoch + 1, "val_war": row["val_war"], "val_uar": row["val_uar"]}
                        from dfer.models.checkpoint import save_checkpoint

                        save_checkpoint(model, resume_file.parent / "best.pt",
                                        meta={"config": raw, "config_hash": h, "epoch": epoch + 1,
                                              "classes": classes, "selection": "best_on_test"})
                dist_env.barrier(env)
            row["time"] = round(r["seconds"], 3)
            row["clips_per_s"] = round(r["clips"] * env.world_size / r["seconds"], 3) if r["seconds"] else None
            history.append(row)
            tracker.log_epoch({k: v for k, v in row.items() if k != "epoch"}, epoch + 1)
            if main_proc:
                shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
                print(shown, flush=True)
            save_state(epoch + 1, 0, None)
            if stop():
                print(f"stopped by signal {stop.signum} after epoch {epoch + 1}; checkpoint saved to "
                      f"{resume_file}", file=sys.stderr)
                return EXIT_PREEMPTED
        if main_proc:
            finalize(raw, cfg, h, out, model, history, best, env, show, tracker)
        dist_env.barrier(env)
    finally:
        stop.restore()
        tracker.end()
        dist_env.cleanup()
    return 0


def finalize(raw: dict, cfg: dict, h: str, out: Path, model: nn.Module, history: list[dict], best: dict | None,
             env, show: bool, tracker) -> None:
    """Evaluate and write the final outputs into a staging folder, then move them in place (done.json last)."""
    from dfer.engine.evaluate import evaluate
    from dfer.engine.runconfig import BEST_ON_TEST_LABEL
    from dfer.models.checkpoint import save_checkpoint

    epochs = int(cfg["train"]["epochs"])
    stage = ck.resume_path(out).parent / "final"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    classes = class_names(cfg)
    save_checkpoint(model, stage / "model.pt", meta={"config": raw, "config_hash": h, "epoch": epochs,
                                                     "classes": classes, "dataset": cfg["dataset"]})
    best_src = ck.resume_path(out).parent / "best.pt"
    select = cfg["evaluate"]["select"]
    if select == "best_on_test":
        if not best_src.is_file():
            raise ConfigError(f"{best_src}: missing; best_on_test needs train.validate_every_epoch")
        model = _load_into(model, best_src)
    report = evaluate(cfg, raw, out / ("best.pt" if select == "best_on_test" else "model.pt"), select,
                      stage / "eval.json", env.device, show=show, model=model,
                      epoch=best["epoch"] if select == "best_on_test" and best else epochs,
                      extra={"checkpoint_sha256": _sha(stage / "model.pt" if select == "last" else best_src)})
    ck.write_jsonl(stage / "metrics.jsonl", history)
    names = ["model.pt", "metrics.jsonl", "eval.json", "confusion.png", "predictions.csv", "features.npy",
             "predictions.npz"]
    if best_src.is_file():
        shutil.copy2(best_src, stage / "best.pt")
        names.append("best.pt")
    for name in names:
        os.replace(stage / name, out / name)
    done = {"config_hash": h, "name": cfg.get("name"), "epochs": epochs, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "uar": report["uar"], "war": report["war"], "selection": report["selection"],
            "best": best, "final": history[-1] if history else None, "outputs": names}
    if best is not None and select == "last":
        done["best_on_test_note"] = f"best.pt = epoch {best['epoch']}: {BEST_ON_TEST_LABEL}"
    if not (out / "config.yaml").is_file():  # `dfer evaluate --run` reads it (the planner normally wrote it)
        import yaml

        ck.write_text(out / "config.yaml", yaml.safe_dump(raw, sort_keys=False))
    ck.write_json(out / "done.json", done)
    tracker.log_eval(out / "eval.json", out / "confusion.png")
    shutil.rmtree(ck.resume_path(out).parent, ignore_errors=True)
    print(f"finished: UAR {100 * report['uar']:.2f}  WAR {100 * report['war']:.2f} ({report['selection']}); "
          f"outputs in {out}")


def _sha(path: Path) -> str:
    from dfer.engine.evaluate import file_sha256

    return file_sha256(path)


def _load_into(model: nn.Module, path: Path) -> nn.Module:
    from dfer.engine.evaluate import load_weights

    load_weights(model, path)
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dfer train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="resolved run config (results/runs/<hash>/config.yaml)")
    ap.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    ap.add_argument("--force", action="store_true",
                    help="retrain even if done.json exists (old results stay until the new run finishes)")
    ap.add_argument("--no-tracking", action="store_true", help="do not log to MLflow (also DFER_NO_TRACKING=1)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    raw, cfg = load_run_config(args.config)
    return train_run(raw, cfg, device=args.device, force=args.force, track=not args.no_tracking,
                     show=not args.quiet)


if __name__ == "__main__":
    sys.exit(main())
