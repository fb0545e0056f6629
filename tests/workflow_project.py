"""A clean checkout of the project for the end-to-end tests (local, DVC and SLURM), with params.yaml shrunk
for a 2-core CI machine the way lightning-hydra-template's tests shrink the real config: the same DAG, every
table and figure, fewer items and epochs."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from dfer.config import set_path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Dotted overrides of params.yaml (the synthetic preset's values live under presets.synthetic).
# The tables of the three papers, in declaration order (workflow/tables.yaml).
DECLARED_TABLES = ([f"table_{i}" for i in range(1, 11)] + [f"nr_table_{i}" for i in range(1, 6)]
                   + [f"unilearn_table_{i}" for i in range(2, 6)])
DECLARED_FIGURES = ["fig_per_class", "fig_tsne", "fig_sdl_probs", "unilearn_fig_3a"]

SHRINK = {
    "synth.scale": 0.5,
    "synth.mafw.clips": 100,
    "presets.synthetic.train.epochs": 1,
    "presets.synthetic.methods.sfer.train.epochs": 1,
    "presets.synthetic.methods.s2d.train.epochs": 1,
    "presets.synthetic.methods.nr_dfernet.train.epochs": 1,
    "presets.synthetic.recipes.official.s2d.MAFW.train.epochs": 1,
    "presets.synthetic.recipes.official.s2d.FERV39K.train.epochs": 1,
    "presets.synthetic.recipes.official.nr_dfernet.AFEW.train.epochs": 1,
    "presets.synthetic.methods.unilearn.train.epochs": 1,
    "presets.synthetic.train.warmup_epochs": 0,
    "presets.synthetic.landmarks.train.epochs": 1,
    "presets.synthetic.landmarks.train.max_train_frames": 32,
    "presets.synthetic.landmarks.train.max_test_frames": 32,
    "presets.synthetic.align.train": {"epochs": 2, "frames_per_clip": 2},
    "presets.synthetic.pretrain.epochs": 1,
    "presets.synthetic.pretrain.inits.mae_affectnet.epochs": 1,
    "presets.synthetic.pretrain.inits.unilearn_pretrain.epochs": 1,
}


def clean_checkout(dst: Path) -> Path:
    """What `git clone` of the working tree gives (tracked and untracked-but-not-ignored files), committed
    in a fresh git repository of its own (DVC needs one)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    dst.mkdir(parents=True)
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    git(dst, "init", "-q", "-b", "main")
    commit(dst, "clean checkout")
    return dst


def shrink(proj: Path, overrides: dict | None = None) -> None:
    params = yaml.safe_load((proj / "params.yaml").read_text())
    for key, value in {**SHRINK, **(overrides or {})}.items():
        set_path(params, key.split("."), value)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit(proj, "shrink params for CI")


def env_for(proj: Path) -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DFER_ROOT": str(proj),
            "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DFER_NO_TRACKING": "0",
            "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.invalid",
            "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.invalid"}


def git(proj: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=proj, env=env_for(proj), capture_output=True, text=True,
                          check=True).stdout


def commit(proj: Path, message: str) -> None:
    git(proj, "add", "-A")
    if git(proj, "status", "--porcelain").strip():
        git(proj, "commit", "-q", "-m", message)


def run(proj: Path, *cmd: str, timeout: int = 3600, check: bool = True) -> tuple[subprocess.CompletedProcess, float]:
    """Run a command of the project's venv (``snakemake``, ``dvc``, ``dfer``) in ``proj``; (process, seconds)."""
    exe = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else cmd[0]
    t0 = time.monotonic()
    proc = subprocess.run([exe, *cmd[1:]], cwd=proj, env=env_for(proj), capture_output=True, text=True,
                          timeout=timeout)
    seconds = time.monotonic() - t0
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-6000:]}"
    return proc, seconds


def tables_of(proj: Path) -> dict[str, str]:
    """Every rendered table file (md, csv, tex) by name -> text."""
    return {p.name: p.read_text() for p in sorted((proj / "results/tables").glob("table_*.*"))}


def job_counts(log: str) -> dict[str, int]:
    """Snakemake's "Job stats" table (rule -> count) from a run or dry-run log."""
    stats = log[log.index("Job stats:"):] if "Job stats:" in log else ""
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", stats, re.M) if rule != "total"}


def planned(proj: Path, tmp: Path, tables: list[str] | None = None) -> dict:
    """`dfer plan --json`: hash -> {name, tables, cells, upstream} of every unique run (of ``tables`` only)."""
    out = tmp / "plan.json"
    run(proj, "dfer", "plan", "--json", str(out), *[f"--table={t}" for t in tables or []])
    return json.loads(out.read_text())
