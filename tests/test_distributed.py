"""The official total batch on any number of GPUs: DDP (here 2 gloo processes on the CPU, under torchrun) and
gradient accumulation on one process train on the same batches and end with the same model."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_helpers import FAST, run_config, write_config, write_dfew, write_rafdb  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "DFER_NO_TRACKING": "1"}
# Same data seen the same way by every process: whole 6-frame clips (no random temporal window), no flip, no
# dropout. Then the only difference between the two runs is float summation order.
DETERMINISTIC = {**FAST, "data.num_frames": 6, "model.kwargs.head_dropout": 0.0, "train.augment.hflip": False,
                 "train.epochs": 2, "train.gpus": 2, "train.batch_size": 4, "train.total_batch": 8}


def _train(cfg: dict, path: Path, nproc: int) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dfer.cli", "train", "--config", str(write_config(cfg, path)),
                           "--quiet", "--nproc", str(nproc)], env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def _run(tmp_path: Path, name: str, nproc: int, set_: dict) -> tuple[dict, dict, list[dict]]:
    cfg = run_config(tmp_path / "DFEW", tmp_path / name, {**DETERMINISTIC, **set_})
    proc = _train(cfg, tmp_path / f"{name}.yaml", nproc)
    out = tmp_path / name
    done = json.loads((out / "done.json").read_text())
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    weights = torch.load(out / "model.pt", map_location="cpu", weights_only=True)["model"]
    assert f"x {done['batches']['world_size']} process(es)" in proc.stdout
    return done, weights, rows


def test_two_ddp_processes_equal_one_process_with_gradient_accumulation(tmp_path):
    write_dfew(tmp_path / "DFEW", n_train=24, n_test=7)
    ddp, w_ddp, rows_ddp = _run(tmp_path, "ddp", 2, {})
    acc, w_acc, rows_acc = _run(tmp_path, "accumulated", 1, {})
    assert ddp["batches"] == {"world_size": 2, "accum_steps": 1, "batch_size": 4, "effective_batch": 8}
    assert acc["batches"] == {"world_size": 1, "accum_steps": 2, "batch_size": 4, "effective_batch": 8}
    # Tolerance: the two runs differ only in the order float gradients are summed (all-reduce vs accumulation).
    for a, b in zip(rows_ddp, rows_acc):
        assert a["lr"] == b["lr"] and a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    for k in w_ddp:
        torch.testing.assert_close(w_ddp[k], w_acc[k], rtol=1e-4, atol=1e-5, msg=k)
    assert (ddp["uar"], ddp["war"]) == (acc["uar"], acc["war"])
    # ...and both are the recipe's lr: scaled by the effective batch (8 / 8 = 1x the base lr at its peak).
    assert max(r["lr"] for r in rows_ddp) <= 1.0e-3


def test_unilearn_joint_fine_tuning_trains_under_ddp(tmp_path):
    """UniLearn's joint fine-tuning on 2 processes: a video step leaves the image head (and idle experts) without
    gradient and an image step the video head; DDP must not stop at step 2, and both heads must train."""
    write_dfew(tmp_path / "DFEW", n_train=16, n_test=7)
    write_rafdb(tmp_path / "RAF-DB", n_train=16)
    cfg = run_config(tmp_path / "DFEW", tmp_path / "unilearn", {
        **DETERMINISTIC, "method": "unilearn", "model.name": "unilearn_tiny", "model.kwargs": {},
        "data.input_size": 64, "data.num_frames": 4, "train.freeze": "none", "train.epochs": 1,
        "train.joint": {"dataset": "RAF-DB", "data_rate": 1.0, "oversample": False}})
    from dfer.workflow.plan import Planner

    cfg["joint_data"] = {**Planner(_params())._run_data("RAF-DB"), "root": str(tmp_path / "RAF-DB"), "num_frames": 1,
                         "sampling_rate": 1, "input_size": 64, "oversample": False}
    proc = _train(cfg, tmp_path / "unilearn.yaml", 2)
    done = json.loads((tmp_path / "unilearn" / "done.json").read_text())
    rows = [json.loads(r) for r in (tmp_path / "unilearn" / "metrics.jsonl").read_text().splitlines()]
    assert "x 2 process(es)" in proc.stdout and done["batches"]["world_size"] == 2
    assert "16 clips + 16 RAF-DB images, joint fine-tuning on 100% of the images" in proc.stdout
    assert len(rows) == 1 and rows[0]["train_loss"] > 0


def _params() -> dict:
    from dfer.config import load_params

    return load_params(Path(__file__).resolve().parents[1] / "params.yaml")
