"""`dfer train --config RUN.yaml`: train one run (SFER or DFER) from a resolved run config, then test it.

Recipe (official S2D ``run_class_finetuning.py``, MAE-SFER for the image models; every value comes from the
run config): AdamW (no weight decay on biases/norms), lr scaled by the total batch (``schedule.py``),
optional layer-wise lr decay, step-level warm-up + cosine; loss ``onehot`` (CE; SoftTargetCE on mixed
targets), ``label_smoothing`` or ``onehot_sdl`` (+ lambda * SDL, anchors from the un-mixed clip);
Mixup/CutMix as a batch op (timm); only trainable parameters (after ``freeze_for_dfer`` for S2D DFER runs)
reach the optimizer. The frozen landmark net runs on the (mixed) batch unless cached features match the
frames. UniLearn's MoAE load-balancing loss is added when the model has ``aux_loss()``.

Total batch: ``train.total_batch`` = the recipe's (official: 2 GPUs x 8). The job runs on the GPUs it is
given (``train.gpus`` is what the SLURM profile asks for): with N > 1 visible GPUs, ``dfer train`` re-launches
itself under ``torchrun`` (DDP, NCCL; ``find_unused_parameters`` for models with parameters a step may not
use); with fewer GPUs than the recipe's, each process accumulates gradients over ``total_batch / (N x
batch_size)`` micro-batches, so the total batch and the lr stay the recipe's. World size, accumulation and
the effective batch are recorded in ``done.json``, ``eval.json`` and MLflow.

Outputs (``output_dir``): ``model.pt``, ``metrics.jsonl`` (one line per epoch), ``eval.json`` +
``confusion.png`` + ``predictions.csv`` + ``features.npy`` + ``predictions.npz`` (`dfer evaluate`'s
protocol), ``best.pt`` (when validating every epoch) and last ``done.json``. They are staged and moved in
place only when the run has finished, so a failing re-run never replaces a finished run's results; a run
whose ``done.json`` matches its config hash returns at once.

Resumption: ``<output_dir>/resume/checkpoint.pt`` (not a workflow output) holds model, optimizer, scaler,
schedule position (epoch, step), RNG states, SDL queues and the metric history; written atomically at every
epoch end and, on SIGTERM/SIGUSR1 (SLURM preemption), at the next step boundary before exiting with
status 75. A restarted run continues from it and ends with the same metrics (bitwise on CPU).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from dfer.cli import add_quiet_arg, command_parser
from dfer.config import ConfigError
from dfer.engine import resume as ck
from dfer.engine import distributed as dist_env
from dfer.engine.loop import (EpochSampler, Precision, StepState, build_landmarks, build_model, make_loader,
                              train_one_epoch)
from dfer.engine.runconfig import RUN_FILES, RunConfig, load_run_config, project_base
from dfer.io import file_sha256, write_json, write_jsonl, write_text

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
        # torch.use_deterministic_algorithms also configures torch.compile's inductor, importing it (~2 s per job);
        # nothing here compiles, so set the flag itself.
        torch._C._set_deterministic_algorithms(True, warn_only=True)


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + rank * 10_007 + epoch) % 2**63


# ---- batch arithmetic -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchPlan:
    """How the recipe's total batch is made: ``world_size`` processes x ``accum_steps`` x ``batch_size``."""
    batch_size: int
    world_size: int
    accum_steps: int

    @property
    def effective(self) -> int:
        return self.batch_size * self.world_size * self.accum_steps

    @classmethod
    def for_run(cls, train: dict, world_size: int) -> "BatchPlan":
        batch, total = int(train["batch_size"]), int(train["total_batch"])
        if total % (batch * world_size):
            raise ConfigError(f"train.total_batch {total} cannot be made of {world_size} process(es) x batch_size "
                              f"{batch}: run on a number of GPUs that divides {total // batch}")
        return cls(batch, world_size, total // (batch * world_size))

    def record(self) -> dict:
        return {"world_size": self.world_size, "accum_steps": self.accum_steps, "batch_size": self.batch_size,
                "effective_batch": self.effective}


# ---- setup ------------------------------------------------------------------------------------------
def train_datasets(run: RunConfig):
    """Train dataset (cached landmark features unless mixup/cutmix mixes the clips) and, when validating
    every epoch, the one-view test dataset (official: validation on the test csv)."""
    from dfer.data.datasets import run_dataset

    aug = run.train["augment"]
    data = dict(run.data)
    if aug["mixup"] or aug["cutmix"]:
        data["features"] = None  # the landmark net must see the mixed clip (official)
    train_ds = run_dataset(data, run.dataset, "train", run.fold, mode="train", augment=aug, base=project_base())
    joint = run.train["joint"]
    if joint:  # UniLearn: the SFER images join the DFER clips (`joint_data`: the image set as the run reads it)
        from dfer.data.datasets import JointDataset

        images = run_dataset(dict(run.joint_data), joint["dataset"], "train", None, mode="train", augment=aug,
                             base=project_base())
        train_ds = JointDataset(train_ds, images)
    val_ds = None
    if run.train["validate_every_epoch"]:
        from dfer.engine.evaluate import evaluation_dataset

        val_ds = evaluation_dataset(run, views={"temporal": 1, "spatial": 1})
    return train_ds, val_ds


@dataclass
class Trainer:
    """Everything one training job holds: built by :func:`setup`, driven by :func:`run_epochs`."""
    run: RunConfig
    env: dist_env.DistEnv
    batches: BatchPlan
    model: nn.Module
    ddp_model: nn.Module
    lmk_net: nn.Module | None
    sdl: nn.Module | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    precision: Precision
    sampler: EpochSampler
    lr_schedule: object
    mixup: object
    train_ds: object
    val_ds: object
    image_mixup: object = None    # joint fine-tuning's Mixup/CutMix over the image classes
    tracker: object = None
    history: list = field(default_factory=list)
    best: dict | None = None

    @property
    def hash(self) -> str:
        return self.run.hash

    @property
    def out(self) -> Path:
        return self.run.output_dir

    @property
    def resume_file(self) -> Path:
        return ck.resume_path(self.out)

    @property
    def main(self) -> bool:
        return self.env.is_main


def setup(run: RunConfig, env: dist_env.DistEnv, show: bool) -> Trainer:
    from dfer.data.transforms import mixup_fn
    from dfer.engine.schedule import build_optimizer, lr_schedule, scaled_lrs
    from dfer.models.params import count_parameters

    tr = run.train
    set_determinism(tr["deterministic"], env.device)
    ck.seed_everything(epoch_seed(run.seed, env.rank, -1))
    batches = BatchPlan.for_run(tr, env.world_size)
    train_ds, val_ds = train_datasets(run)
    model = build_model(run, verbose=env.is_main).to(env.device)
    lmk_net = build_landmarks(run.landmarks)
    lmk_net = lmk_net.to(env.device) if lmk_net is not None else None
    sdl = None
    if tr["loss"] == "onehot_sdl":
        from dfer.models.sdl import SDL

        sdl = SDL(len(run.classes), int(model.num_features), k=int(tr["sdl"]["k"]),
                  queue_size=int(tr["sdl"]["queue_size"])).to(env.device)
    total_p, tunable_p = count_parameters(model)
    if env.is_main:
        print(f"run {run.name} ({run.hash}): {run.model['name']} on {run.dataset}"
              f"{'' if run.fold is None else ' fold ' + str(run.fold)}, {len(train_ds)} train items"
              f"{joint_note(train_ds, tr['joint'])}, "
              f"device {env.device} x{env.world_size}, batch {batches.batch_size} x {env.world_size} process(es) "
              f"x {batches.accum_steps} accumulation = {batches.effective}; parameters: {total_p / 1e6:.3f} M "
              f"total, {tunable_p / 1e6:.3f} M tunable")
    lrs = scaled_lrs(tr, batches.effective)
    optimizer = build_optimizer(model, tr, lrs["lr"])
    precision = Precision.from_config(tr, env.device)
    sampler = EpochSampler(train_ds.labels, run.seed, batches.batch_size, balanced=run.data["oversample"],
                           rank=env.rank, world_size=env.world_size, accum_steps=batches.accum_steps)
    smoothing = float(tr["label_smoothing"]) if tr["loss"] == "label_smoothing" else 0.0
    image_mixup = None
    if tr["joint"]:
        from dfer.data.labels import classes as dataset_classes
        from dfer.engine.loop import JointBatchSampler

        images = EpochSampler(train_ds.images.labels, run.seed + 1, batches.batch_size,
                              balanced=bool(tr["joint"]["oversample"]), rank=env.rank, world_size=env.world_size,
                              accum_steps=batches.accum_steps)
        sampler = JointBatchSampler(sampler, images, len(train_ds.videos), float(tr["joint"]["data_rate"]))
        image_mixup = mixup_fn(tr["augment"], len(dataset_classes(tr["joint"]["dataset"])), label_smoothing=smoothing)
    schedule = lr_schedule(tr, lrs, int(tr["epochs"]), sampler.steps)
    mixup = mixup_fn(tr["augment"], len(run.classes), label_smoothing=smoothing)
    if mixup is not None and sampler.micro_batch % 2:
        raise ConfigError(f"train.batch_size={batches.batch_size}: Mixup/CutMix needs an even batch size")
    ddp_model = model
    if env.distributed:
        # Parameters a step may leave without gradient: S2D's last prompt norm (official), UniLearn's image head
        # and idle experts.
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None,
            find_unused_parameters=bool(getattr(model, "has_unused_parameters", True)))
    return Trainer(run, env, batches, model, ddp_model, lmk_net, sdl, optimizer,
                   torch.amp.GradScaler("cuda") if precision.needs_scaler else None, precision, sampler, schedule,
                   mixup, train_ds, val_ds, image_mixup=image_mixup)


def joint_note(train_ds, joint: dict | None) -> str:
    if not joint:
        return ""
    return (f" ({len(train_ds.videos)} clips + {len(train_ds.images)} {joint['dataset']} images, joint fine-tuning "
            f"on {joint['data_rate']:.0%} of the images per epoch)")


# ---- resume -----------------------------------------------------------------------------------------
@dataclass
class Position:
    epoch: int = 0
    step: int = 0
    partial: dict | None = None   # loss/throughput of the part of an epoch done before a stop
    rng: dict | None = None


def resume(t: Trainer) -> Position:
    """Load the resume checkpoint of this config, if any, into the trainer; return where to continue."""
    state = ck.load_resume(t.resume_file)
    if state is not None and state.get("config_hash") != t.hash:
        if t.main:
            print(f"warning: {t.resume_file} belongs to config {state.get('config_hash')}, not {t.hash}; "
                  "starting over")
        state = None
    if state is None:
        return Position()
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    if t.scaler is not None and state["scaler"]:
        t.scaler.load_state_dict(state["scaler"])
    if t.sdl is not None and state["sdl"]:
        t.sdl.load_state_dict(state["sdl"])
    t.history, t.best = state["history"], state["best"]
    pos = Position(int(state["epoch"]), int(state["step"]), state["partial"], state["rng"])
    if t.main:
        where = f"epoch {pos.epoch + 1} step {pos.step}" if pos.step else f"epoch {pos.epoch + 1}"
        print(f"resuming from {t.resume_file} at {where}")
    return pos


def save_state(t: Trainer, epoch: int, step: int, partial: dict | None) -> None:
    if not t.main:
        return
    ck.save_resume(t.resume_file, {
        "config_hash": t.hash, "epoch": epoch, "step": step, "model": t.model.state_dict(),
        "optimizer": t.optimizer.state_dict(), "scaler": t.scaler.state_dict() if t.scaler else None,
        "sdl": t.sdl.state_dict() if t.sdl is not None else None,
        "schedule": {"steps_per_epoch": t.sampler.steps, "global_step": epoch * t.sampler.steps + step},
        "sampler": {"seed": t.sampler.seed, "epoch": epoch, "skip": step * t.batches.accum_steps * t.sampler.micro_batch,
                    "balanced": t.sampler.balanced},
        "batches": t.batches.record(), "rng": ck.rng_state(), "history": t.history, "best": t.best,
        "partial": partial,
    })
    write_jsonl(t.resume_file.parent / RUN_FILES["metrics"], t.history)


# ---- epochs -----------------------------------------------------------------------------------------
def step_state(t: Trainer, epoch: int, stop: StopFlag) -> StepState:
    from dfer.models.sdl import SDLConfig, sdl_active, sdl_weight, should_update

    tr = t.run.train
    epochs = int(tr["epochs"])
    st = StepState(t.optimizer, t.lr_schedule, t.sampler.steps, t.precision, t.scaler, t.lmk_net,
                   bool(t.train_ds.uses_feature_cache), t.mixup, tr["loss"], float(tr["label_smoothing"]),
                   len(t.run.classes), accum_steps=t.batches.accum_steps,
                   aux_coeff=float(tr["aux_loss_coeff"]), clip_grad=tr["clip_grad"],
                   stop_requested=lambda: dist_env.broadcast_flag(t.env, stop()), image_mixup=t.image_mixup)
    if t.sdl is not None:
        s = tr["sdl"]
        scfg = SDLConfig(k=int(s["k"]), queue_size=int(s["queue_size"]), schedule=s["schedule"], update=s["update"],
                         update_freq=int(s["update_freq"]))
        st.sdl, st.sdl_lambda = t.sdl, sdl_weight(epoch, epochs, scfg.schedule)
        st.sdl_active = sdl_active(epoch, epochs, scfg.schedule)
        st.sdl_update = should_update(epoch, epochs, scfg)
    return st


def validate_epoch(t: Trainer, epoch: int, show: bool) -> dict:
    """Official per-epoch validation on the test split; keeps ``best.pt`` (best WAR = official acc1)."""
    from dfer.engine.evaluate import Scoring, score_dataset
    from dfer.engine.metrics import summarize
    from dfer.models.weights import save_checkpoint

    scoring = Scoring.for_run(t.run, t.model, t.env.device, t.lmk_net, t.precision)
    res = score_dataset(scoring, t.val_ds, show=show, desc="validate")
    s = summarize(res["labels"], res["probs"].argmax(axis=1), t.run.classes)
    row = {"val_uar": s["uar"], "val_war": s["war"]}
    if t.best is None or row["val_war"] > t.best["val_war"]:
        t.best = {"epoch": epoch + 1, **row}
        save_checkpoint(t.model, t.resume_file.parent / "best.pt",
                        meta={"config": t.run.raw, "config_hash": t.hash, "epoch": epoch + 1,
                              "classes": list(t.run.classes), "selection": "best_on_test"})
    return row


def run_epochs(t: Trainer, pos: Position, stop: StopFlag, show: bool) -> bool:
    """Train from ``pos`` to the last epoch; False when stopped by a signal (checkpoint saved)."""
    run, env = t.run, t.env
    for epoch in range(pos.epoch, int(run.train["epochs"])):
        step0 = pos.step if epoch == pos.epoch else 0
        if step0 and pos.rng is not None:
            ck.set_rng_state(pos.rng)  # mid-epoch: continue the RNG streams where they stopped
        else:
            ck.seed_everything(epoch_seed(run.seed, env.rank, epoch))
        t.sampler.set_epoch(epoch, skip=step0 * t.batches.accum_steps * t.sampler.micro_batch)
        loader = make_loader(t.train_ds, t.sampler.micro_batch, t.sampler, int(run.train["num_workers"]),
                             epoch_seed(run.seed, env.rank, epoch), False, env.device)
        st = step_state(t, epoch, stop)
        r = train_one_epoch(t.ddp_model, loader, st, epoch, env.device, start_step=step0, show=show)
        if pos.partial and step0:  # the part of this epoch done before the restart
            for k in ("loss_sum", "steps", "clips", "seconds"):
                r[k] += pos.partial[k]
        pos.partial = None
        if r["stopped"]:
            save_state(t, epoch, r["step"], {k: r[k] for k in ("loss_sum", "steps", "clips", "seconds")})
            if t.main:
                print(f"stopped by signal {stop.signum} at epoch {epoch + 1} step {r['step']}; checkpoint "
                      f"saved to {t.resume_file}; run the same command again to continue", file=sys.stderr)
            return False
        row = {"epoch": epoch + 1,
               "train_loss": dist_env.all_reduce_mean(env, r["loss_sum"] / max(r["steps"], 1)),
               "lr": float(t.lr_schedule[min((epoch + 1) * t.sampler.steps - 1, len(t.lr_schedule) - 1)])}
        if t.sdl is not None:
            row["sdl_lambda"] = st.sdl_lambda
        if t.val_ds is not None:
            if t.main:
                row.update(validate_epoch(t, epoch, show))
            dist_env.barrier(env)
        row["time"] = round(r["seconds"], 3)
        row["clips_per_s"] = round(r["clips"] * env.world_size / r["seconds"], 3) if r["seconds"] else None
        t.history.append(row)
        t.tracker.log_epoch({k: v for k, v in row.items() if k != "epoch"}, epoch + 1)
        if t.main:
            print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                  flush=True)
        save_state(t, epoch + 1, 0, None)
        if stop():
            print(f"stopped by signal {stop.signum} after epoch {epoch + 1}; checkpoint saved to "
                  f"{t.resume_file}", file=sys.stderr)
            return False
    return True


# ---- the job ----------------------------------------------------------------------------------------
class NullTracker:
    def log_params(self, *a, **k): ...
    def log_epoch(self, *a, **k): ...
    def log_eval(self, *a, **k): ...
    def end(self, *a, **k): ...


def make_tracker(run: RunConfig, enabled: bool):
    if not enabled or os.environ.get("DFER_NO_TRACKING") == "1":
        return NullTracker()
    try:
        from dfer.tracking import Tracker

        return Tracker.from_config(run.raw, stage="train").start()
    except Exception as exc:  # noqa: BLE001 - tracking never kills a run
        print(f"warning: MLflow tracking unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)
        return NullTracker()


def finished(out: Path, h: str) -> bool:
    """True when ``out`` holds the finished run of this config; error if it holds another config's run."""
    return ck.finished(out, "config_hash", h, "the finished run of config",
                       "set another output_dir, or delete the folder to retrain")


def train_run(run: RunConfig, device: str | None = None, force: bool = False, track: bool = True,
              show: bool = True) -> int:
    """Train and test one run; 0 when finished, EXIT_PREEMPTED when stopped by a signal (run again)."""
    h, out = run.hash, run.output_dir
    if not force and finished(out, h):
        print(f"{out}: already finished (config {h}); nothing to do")
        return 0
    env = dist_env.setup(device)
    show = show and env.is_main
    if force and env.is_main and ck.resume_path(out).parent.exists():
        shutil.rmtree(ck.resume_path(out).parent)
    dist_env.barrier(env)
    t = setup(run, env, show)
    pos = resume(t)
    stop = StopFlag().install()
    t.tracker = make_tracker(run, track and env.is_main)
    t.tracker.log_params({**run.raw, "runtime": t.batches.record()})
    try:
        if not run_epochs(t, pos, stop, show):
            return EXIT_PREEMPTED
        if env.is_main:
            finalize(t, show)
        dist_env.barrier(env)
    finally:
        stop.restore()
        t.tracker.end()
        dist_env.cleanup()
    return 0


def finalize(t: Trainer, show: bool) -> None:
    """Evaluate and write the final outputs into a staging folder, then move them in place (done.json last)."""
    from dfer.engine.evaluate import evaluate, load_weights
    from dfer.engine.runconfig import BEST_ON_TEST_LABEL
    from dfer.models.weights import save_checkpoint

    run, out = t.run, t.out
    epochs = int(run.train["epochs"])
    stage = t.resume_file.parent / "final"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    save_checkpoint(t.model, stage / RUN_FILES["model"], meta={"config": run.raw, "config_hash": t.hash,
                                                                "epoch": epochs, "classes": list(run.classes),
                                                                "dataset": run.dataset})
    best_src = t.resume_file.parent / "best.pt"
    select = run.evaluate["select"]
    model = t.model
    if select == "best_on_test":
        if not best_src.is_file():
            raise ConfigError(f"{best_src}: missing; best_on_test needs train.validate_every_epoch")
        load_weights(model, best_src)
    report = evaluate(run, out / ("best.pt" if select == "best_on_test" else RUN_FILES["model"]), select,
                      stage / RUN_FILES["eval"], t.env.device, show=show, model=model,
                      epoch=t.best["epoch"] if select == "best_on_test" and t.best else epochs,
                      extra={"checkpoint_sha256": file_sha256(stage / RUN_FILES["model"] if select == "last" else best_src),
                             "batches": t.batches.record()})
    write_jsonl(stage / RUN_FILES["metrics"], t.history)
    names = [file for key, file in RUN_FILES.items() if key != "done"]  # done.json: written last, below
    if best_src.is_file():
        shutil.copy2(best_src, stage / "best.pt")
        names.append("best.pt")
    for name in names:
        os.replace(stage / name, out / name)
    done = {"config_hash": t.hash, "name": run.name, "epochs": epochs,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "uar": report["uar"], "war": report["war"],
            "selection": report["selection"], "best": t.best, "final": t.history[-1] if t.history else None,
            "batches": t.batches.record(), "outputs": names}
    if t.best is not None and select == "last":
        done["best_on_test_note"] = f"best.pt = epoch {t.best['epoch']}: {BEST_ON_TEST_LABEL}"
    if not (out / "config.yaml").is_file():  # `dfer evaluate --run` reads it (the planner normally wrote it)
        import yaml

        write_text(out / "config.yaml", yaml.safe_dump(run.raw, sort_keys=False))
    write_json(out / RUN_FILES["done"], done)
    t.tracker.log_eval(out / RUN_FILES["eval"], out / RUN_FILES["confusion"])
    shutil.rmtree(t.resume_file.parent, ignore_errors=True)
    print(f"finished: UAR {100 * report['uar']:.2f}  WAR {100 * report['war']:.2f} ({report['selection']}); "
          f"outputs in {out}")


# ---- launching on several GPUs ----------------------------------------------------------------------
def visible_devices() -> int:
    """GPUs this job may use: CUDA's count; where CUDA is unusable but SLURM allocated GPUs (a test cluster
    with fake GPU devices), the allocation's count, run as CPU processes."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES", "") if os.environ.get("SLURM_JOB_ID") else ""
    return len([d for d in listed.split(",") if d.strip()])


def processes_for(gpus: int, nproc: int | None) -> int:
    """How many DDP processes this job starts: ``--nproc``, else min(``train.gpus``, visible GPUs), at least 1."""
    if nproc is not None:
        return max(int(nproc), 1)
    return max(min(int(gpus), visible_devices()), 1)


def relaunch_distributed(argv: list[str], nproc: int) -> int:
    """Run this command again under torchrun with ``nproc`` processes (one per GPU; gloo on CPU)."""
    if not torch.cuda.is_available():
        print(f"dfer train: CUDA is not usable here; running {nproc} DDP processes on the CPU (gloo)",
              file=sys.stderr)
    # The children see WORLD_SIZE (set by torchrun) and train; they never re-launch.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "dfer.cli", "train", *argv]
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("train", __doc__)
    ap.add_argument("--config", required=True, help="resolved run config (results/runs/<hash>/config.yaml)")
    ap.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    ap.add_argument("--nproc", type=int, default=None,
                    help="DDP processes (default: min(train.gpus, visible GPUs); >1 re-launches under torchrun)")
    ap.add_argument("--force", action="store_true",
                    help="retrain even if done.json exists (old results stay until the new run finishes)")
    ap.add_argument("--no-tracking", action="store_true", help="do not log to MLflow (also DFER_NO_TRACKING=1)")
    add_quiet_arg(ap)
    args = ap.parse_args(argv)
    run = load_run_config(args.config)
    nproc = processes_for(run.train["gpus"], args.nproc)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        if not args.force and finished(run.output_dir, run.hash):
            print(f"{run.output_dir}: already finished (config {run.hash}); nothing to do")
            return 0
        flags = [f"--{k}" for k in ("force", "no_tracking", "quiet") if getattr(args, k)]
        device = ["--device", args.device] if args.device else []
        return relaunch_distributed(["--config", args.config, *device, *[f.replace("_", "-") for f in flags]],
                                    nproc)
    return train_run(run, device=args.device, force=args.force, track=not args.no_tracking, show=not args.quiet)


if __name__ == "__main__":
    sys.exit(main())
