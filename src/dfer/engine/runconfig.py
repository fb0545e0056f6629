"""The run config (``workflow/schemas/run.schema.yaml``): read, check, resolve once into a :class:`RunConfig`.

A run config is written fully resolved by the planner (``dfer plan``): every key is present and has its
value from params.yaml, so the engine holds no defaults of its own. ``check`` validates a config against the
run schema plus the few rules a schema cannot say (the total batch is a multiple of the per-step batch,
best-on-test selection needs per-epoch validation, every cross-dataset test set has its data entry) and
returns the :class:`RunConfig` the engine passes down (its sections, not the dict).
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from dfer.config import ConfigError, config_hash, validate

BEST_ON_TEST_LABEL = "best_on_test (official; selected on the test split)"
# Keys that describe a run without changing what it computes (its name, folder, MLflow store): not hashed.
UNHASHED_KEYS = ("name", "output_dir", "tracking")
RUN_CONFIG_FIX = "write run configs with `dfer plan --write-configs` (workflow/schemas/run.schema.yaml)"
# What a training job leaves in results/runs/<hash>/, by the name the Snakemake rules give each output
# (rules/common.smk RUN_OUTPUTS is built from it): the weights, per-epoch metrics, the marker that makes a re-run
# a no-op, and `dfer evaluate`'s outputs (eval.json, confusion plot, per-video predictions, pooled features).
RUN_FILES = {"model": "model.pt", "done": "done.json", "metrics": "metrics.jsonl", "eval": "eval.json",
             "confusion": "confusion.png", "predictions": "predictions.csv", "embeddings": "features.npy",
             "probabilities": "predictions.npz"}


def run_hash(cfg: dict) -> str:
    """The run's identity: the hash of everything but its name, output folder and tracking store."""
    return config_hash({k: v for k, v in cfg.items() if k not in UNHASHED_KEYS})


@dataclass(frozen=True, eq=False)
class RunConfig:
    """A checked run config, resolved once (:func:`check`): typed top-level fields, the class names, the
    resolved output folder and the hash, and each section as a read-only mapping (every key present: the
    schema requires them). ``raw`` is the config as written, for what hashes or stores it (the run hash,
    checkpoint and eval meta, MLflow params); never mutate it."""
    raw: dict
    name: str
    task: str
    method: str
    dataset: str
    fold: int | None
    eval_datasets: tuple[str, ...]
    seed: int
    output_dir: Path
    classes: tuple[str, ...]   # the model-order class names of ``dataset``
    hash: str                  # run_hash(raw): the run folder's name
    data: Mapping[str, Any]
    eval_data: Mapping[str, Mapping[str, Any]]
    joint_data: Mapping[str, Any] | None
    model: Mapping[str, Any]
    landmarks: Mapping[str, Any] | None
    train: Mapping[str, Any]
    evaluate: Mapping[str, Any]
    tracking: Mapping[str, Any]

    @classmethod
    def from_dict(cls, cfg: dict) -> "RunConfig":
        """Resolve a run config that :func:`check` has validated (a private copy: later edits of ``cfg`` do not
        reach it)."""
        from dfer.data.labels import classes

        raw = copy.deepcopy(cfg)
        ro = lambda section: None if section is None else MappingProxyType(section)  # noqa: E731
        return cls(raw=raw, name=raw["name"], task=raw["task"], method=raw["method"], dataset=raw["dataset"],
                   fold=raw["fold"], eval_datasets=tuple(raw["eval_datasets"]), seed=int(raw["seed"]),
                   output_dir=resolve_path(raw["output_dir"]), classes=tuple(classes(raw["dataset"])),
                   hash=run_hash(raw), data=ro(raw["data"]), eval_data=ro(raw["eval_data"]),
                   joint_data=ro(raw["joint_data"]), model=ro(raw["model"]), landmarks=ro(raw["landmarks"]),
                   train=ro(raw["train"]), evaluate=ro(raw["evaluate"]), tracking=ro(raw["tracking"]))

    @property
    def uses_landmarks(self) -> bool:
        """Whether the model fuses landmark features (the planner sets ``landmarks`` only then)."""
        return self.landmarks is not None

    @property
    def eval_batch_size(self) -> int:
        """The test batch: ``evaluate.batch_size``, or ``train.batch_size`` where it is null (schema: optional)."""
        return int(self.evaluate["batch_size"] or self.train["batch_size"])


def read_run_config(path: str | os.PathLike) -> dict:
    """The run config at ``path`` as written (a mapping), not yet checked."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: run config not found; {RUN_CONFIG_FIX}")
    try:
        cfg = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"{p}: a run config is a YAML mapping; {RUN_CONFIG_FIX}")
    return cfg


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """The run config at ``path``, checked and resolved."""
    return check(read_run_config(path), source=str(path))


def check(cfg: dict, source: str = "<run config>") -> RunConfig:
    """Validate a run config (schema + cross-field rules) and resolve it into a :class:`RunConfig`."""
    validate(cfg, schema="run", what=f"{source} (run config)")
    t = cfg["train"]
    if t["total_batch"] % t["batch_size"]:
        raise ConfigError(f"{source}: train.total_batch {t['total_batch']} is not a multiple of train.batch_size "
                          f"{t['batch_size']}")
    if cfg["evaluate"]["select"] == "best_on_test" and not t["validate_every_epoch"]:
        raise ConfigError(f"{source}: evaluate.select=best_on_test needs train.validate_every_epoch: true "
                          "(the best epoch is picked by validating on the test split every epoch)")
    missing = [d for d in cfg["eval_datasets"] if d != cfg["dataset"] and d not in cfg["eval_data"]]
    if missing:
        raise ConfigError(f"{source}: cross-dataset test set(s) {missing} have no entry in eval_data (the planner "
                          "writes one per eval_datasets entry)")
    return RunConfig.from_dict(cfg)


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
