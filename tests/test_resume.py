"""Resumption: a run killed (SIGKILL) after an epoch checkpoint, or stopped by SIGTERM (SLURM preemption),
finishes with the same metrics and bitwise identical weights as an uninterrupted run (CPU)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_helpers import FAST, run_config, write_config, write_dfew  # noqa: E402

DFER = [sys.executable, "-m", "dfer.cli", "train", "--no-tracking", "--quiet", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "DFER_NO_TRACKING": "1"}
STABLE = ("epoch", "train_loss", "lr")  # time and clips/s differ between runs


def _cfg(tmp_path: Path, name: str, epochs: int = 4, set_: dict | None = None) -> Path:
    data = tmp_path / "DFEW"
    if not data.exists():
        write_dfew(data, n_train=24, n_test=7)
    cfg = run_config(data, tmp_path / name, {**FAST, "train.epochs": epochs, **(set_ or {})})
    return write_config(cfg, tmp_path / f"{name}.yaml")


def _metrics(out: Path) -> list[dict]:
    return [{k: r[k] for k in STABLE} for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]


def _weights(out: Path) -> dict:
    return torch.load(out / "model.pt", map_location="cpu", weights_only=True)["model"]


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, f"training ended before {path} appeared:\n{proc.stderr.read()}"
        assert time.time() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.02)


def test_sigkill_after_first_checkpoint_then_resume_matches_uninterrupted(tmp_path):
    ref = _cfg(tmp_path, "ref")
    subprocess.run(DFER + ["--config", str(ref)], check=True, env=ENV, capture_output=True)

    cfg = _cfg(tmp_path, "killed")
    out = tmp_path / "killed"
    proc = subprocess.Popen(DFER + ["--config", str(cfg)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(out / "resume" / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "done.json").exists() and not (out / "model.pt").exists()
    state = torch.load(out / "resume" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert 1 <= state["epoch"] < 4  # a real mid-run kill

    r = subprocess.run(DFER + ["--config", str(cfg)], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stdout
    assert _metrics(out) == _metrics(tmp_path / "ref")
    assert _same_weights(_weights(out), _weights(tmp_path / "ref"))
    ev_a = json.loads((out / "eval.json").read_text())
    ev_b = json.loads((tmp_path / "ref" / "eval.json").read_text())
    assert (ev_a["uar"], ev_a["war"], ev_a["confusion"]) == (ev_b["uar"], ev_b["war"], ev_b["confusion"])
    assert not (out / "resume").exists()  # cleaned up once the run is done


def test_sigterm_saves_mid_epoch_and_exits_nonzero_then_resumes_identically(tmp_path):
    # SDL + oversampling: the queues and the balanced sampler's position must survive the restart too.
    over = {"train.loss": "onehot_sdl", "data.oversample": True}
    ref = _cfg(tmp_path, "ref", 10, over)  # long enough to be stopped
    subprocess.run(DFER + ["--config", str(ref)], check=True, env=ENV, capture_output=True)

    cfg = _cfg(tmp_path, "term", 10, over)
    out = tmp_path / "term"
    proc = subprocess.Popen(DFER + ["--config", str(cfg)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(out / "resume" / "checkpoint.pt", proc)  # epoch 1 done: now inside epoch 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    state = torch.load(out / "resume" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["sdl"] is not None and state["sampler"]["balanced"]

    r = subprocess.run(DFER + ["--config", str(cfg)], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _metrics(out) == _metrics(tmp_path / "ref")
    assert _same_weights(_weights(out), _weights(tmp_path / "ref"))
