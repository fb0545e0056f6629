"""The run config (``workflow/schemas/run.schema.yaml``): read, check, resolve paths.

A run config is written fully resolved by the planner (``dfer plan``): every key is present and has its
value from params.yaml, so the engine holds no defaults of its own. ``check`` validates a config against the
run schema plus the few rules a schema cannot say (the total batch is a multiple of the per-step batch,
best-on-test selection needs per-epoch validation).
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from dfer.config import ConfigError, config_hash, validate

BEST_ON_TEST_LABEL = "best_on_test (official; selected on the test split)"
# Keys that describe a run without changing what it computes (its name, folder, MLflow store): not hashed.
UNHASHED_KEYS = ("name", "output_dir", "tracking")
RUN_CONFIG_FIX = "write run configs with `dfer plan --write-configs` (workflow/schemas/run.schema.yaml)"


def run_hash(cfg: dict) -> str:
    """The run's identity: the hash of everything but its name, output folder and tracking store."""
    return config_hash({k: v for k, v in cfg.items() if k not in UNHASHED_KEYS})


def load_run_config(path: str | os.PathLike) -> dict:
    """The run config at ``path``, checked."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: run config not found; {RUN_CONFIG_FIX}")
    try:
        cfg = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"{p}: a run config is a YAML mapping; {RUN_CONFIG_FIX}")
    return check(cfg, source=str(p))


def check(cfg: dict, source: str = "<run config>") -> dict:
    """Validate a run config (schema + cross-field rules); returns it unchanged."""
    validate(cfg, schema="run", what=f"{source} (run config)")
    t = cfg["train"]
    if t["total_batch"] % t["batch_size"]:
        raise ConfigError(f"{source}: train.total_batch {t['total_batch']} is not a multiple of train.batch_size "
                          f"{t['batch_size']}")
    if cfg["evaluate"]["select"] == "best_on_test" and not t["validate_every_epoch"]:
        raise ConfigError(f"{source}: evaluate.select=best_on_test needs train.validate_every_epoch: true "
                          "(the best epoch is picked by validating on the test split every epoch)")
    return cfg


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


def output_dir(cfg: dict) -> Path:
    return resolve_path(cfg["output_dir"])


def class_names(cfg: dict) -> list[str]:
    from dfer.data.labels import classes

    return classes(cfg["dataset"])


def uses_landmarks(cfg: dict) -> bool:
    """Whether the model fuses landmark features (the planner sets ``landmarks`` only then)."""
    return cfg["landmarks"] is not None
