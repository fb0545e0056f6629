"""The run config (docs/architecture.md "Run config"): read, check, complete with defaults, resolve paths.

A run config is produced by the planner fully resolved; keys it may lack (older configs, hand-written
ones) take the defaults below, which are the official S2D recipe where it has one.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from dfer.config import ConfigError, deep_merge

TASKS = ("dfer", "sfer")
LOSSES = ("onehot", "label_smoothing", "onehot_sdl")
SELECTIONS = ("last", "best_on_test")
BEST_ON_TEST_LABEL = "best_on_test (official; selected on the test split)"

TRAIN_DEFAULTS: dict = {
    "epochs": 100, "batch_size": 8, "lr": 1.0e-5, "min_lr": 1.0e-8, "warmup_lr": 1.0e-7, "warmup_epochs": 2,
    "weight_decay": 0.05, "betas": [0.9, 0.999], "loss": "onehot", "label_smoothing": 0.1,
    "sdl": {"k": 2, "queue_size": 16, "schedule": "paper", "update": "paper", "update_freq": 40},
    "augment": {"hflip": True, "random_resized_crop": False, "rand_augment": None, "mixup": 0.0, "cutmix": 0.0,
                "random_erasing": 0.0},
    "amp": True, "amp_dtype": "bfloat16", "num_workers": 0, "freeze": "auto", "aux_loss_coeff": 1.0e-3,
    "validate_every_epoch": False, "clip_grad": None, "deterministic": True,
}
EVALUATE_DEFAULTS: dict = {"select": "last", "batch_size": None}
REQUIRED = ("task", "dataset", "data", "model", "train")


def load_run_config(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(raw, cfg)``: the file as written (its hash names the run) and the completed, checked config."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: run config not found; write one with `dfer plan --write` or by hand "
                          "(docs/architecture.md, 'Run config')")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: a run config is a YAML mapping (docs/architecture.md, 'Run config')")
    return raw, complete(raw, source=str(p))


def complete(raw: dict, source: str = "<run config>") -> dict:
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise ConfigError(f"{source}: missing keys {missing} (docs/architecture.md, 'Run config')")
    cfg = copy.deepcopy(raw)
    cfg["train"] = deep_merge(TRAIN_DEFAULTS, cfg.get("train") or {})
    cfg["evaluate"] = deep_merge(EVALUATE_DEFAULTS, cfg.get("evaluate") or {})
    cfg.setdefault("seed", 0)
    cfg.setdefault("fold", None)
    cfg.setdefault("eval_datasets", [])
    cfg.setdefault("landmarks", None)
    cfg.setdefault("name", cfg["dataset"])
    cfg["model"] = {"kwargs": {}, "init": None, "init_format": "dfer", **cfg["model"]}
    t = cfg["train"]
    checks = [
        (cfg["task"] in TASKS, f"task must be one of {TASKS}, got {cfg['task']!r}"),
        (t["loss"] in LOSSES, f"train.loss must be one of {LOSSES}, got {t['loss']!r}"),
        (cfg["evaluate"]["select"] in SELECTIONS,
         f"evaluate.select must be one of {SELECTIONS}, got {cfg['evaluate']['select']!r}"),
        (int(t["epochs"]) >= 1, f"train.epochs must be >= 1, got {t['epochs']}"),
        (int(t["batch_size"]) >= 1, f"train.batch_size must be >= 1, got {t['batch_size']}"),
        ("name" in cfg["model"], "model.name is missing"),
        (t["freeze"] in ("auto", "none", "dfer"), f"train.freeze must be auto|none|dfer, got {t['freeze']!r}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"{source}: {msg}")
    if cfg["evaluate"]["select"] == "best_on_test" and not t["validate_every_epoch"]:
        raise ConfigError(f"{source}: evaluate.select=best_on_test needs train.validate_every_epoch: true "
                          "(the best epoch is picked by validating on the test split every epoch)")
    return cfg


def run_hash(raw: dict) -> str:
    """The planner's identity of a run (everything but ``name`` and ``output_dir``)."""
    from dfer.workflow.plan import run_hash as _run_hash

    return _run_hash(raw)


def project_base() -> Path:
    """Relative paths in a run config are relative to the project root (else the working directory)."""
    try:
        from dfer.config import project_root

        return project_root()
    except ConfigError:
        return Path.cwd()


def resolve_path(path: str | os.PathLike | None, base: Path | None = None) -> Path | None:
    if path in (None, ""):
        return None
    p = Path(path)
    return p if p.is_absolute() else (base or project_base()) / p


def output_dir(cfg: dict, raw: dict | None = None) -> Path:
    out = cfg.get("output_dir") or f"results/runs/{run_hash(raw if raw is not None else cfg)}"
    return resolve_path(out)


def class_names(cfg: dict) -> list[str]:
    from dfer.data.labels import classes

    return classes(cfg["dataset"])


def uses_landmarks(cfg: dict) -> bool:
    """Whether the model fuses landmark features (S2D with fusion != none and a landmarks entry)."""
    return bool(cfg.get("landmarks")) and (cfg["model"].get("kwargs") or {}).get("fusion", "none") != "none"
