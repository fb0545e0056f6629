"""The learning canary: a short real training on the synthetic benchmark must beat chance by a stated margin,
and must stop doing so when learning is broken (shuffled training labels, parameters that never update).

Data: `dfer synth` writes a DFEW subset (350 clips of 8 frames) with the generator's difficulty turned down
(strong expressions, no clutter, occluders, speech or label noise), so a CPU learns it in seconds; the run is
NR-DFERNet-tiny (a CNN: it reads the expression from pixels, no landmark net needed) on fold 1, trained and
tested by the engine as `dfer train` does. Measured on the development machine: UAR 40.7 after 6 epochs, 58.6
after 10 (chance 14.3); shuffled labels stay at chance. Freezing only the classifier does *not* stop learning
(the trunk adapts to a fixed random head: UAR 58.4), so the broken case freezes every weight the run trains
(only the classifier's bias may move: it can learn the class prior, not the expression).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import ROOT, run_config

CHANCE = 100.0 / 7
MARGIN = 20.0  # points of UAR above chance a learning run must reach (it reaches ~+35 at 8 epochs)
EASY = ("{intensity: [2.5, 3.0], au_jitter: 0.1, idle_au: 0.0, resting_ambiguity: 0.0, pose_sd: [3.0, 2.0, 2.0], "
        "pose_drift: 0.2, neutral_stretch: 0.0, irrelevant_frames: 0.0, occlusion: 0.0, speech: 0.0, "
        "noise: [0.0, 1.0], blur: 0.0, gradient: [0.0, 0.0], clutter: [0, 0]}")


@pytest.fixture(scope="module")
def easy_dfew(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("canary")
    subprocess.run([sys.executable, "-m", "dfer.cli", "synth", "--out", str(out), "--datasets", "DFEW", "--quiet",
                    "--set", "synth.dfew.clips=350", "synth.dfew.frames=8", "synth.dfew.label_noise=0.0",
                    f"synth.difficulty={EASY}"], check=True, cwd=ROOT)
    return out / "DFEW"


def train_uar(data_root: Path, out: Path, freeze_trained: bool = False) -> float:
    """Train NR-DFERNet-tiny on fold 1 for 8 epochs with the engine's own steps; the test UAR in percent."""
    from dfer.engine import distributed
    from dfer.engine.runconfig import check
    from dfer.engine.train import StopFlag, finalize, make_tracker, resume, run_epochs, setup

    cfg = run_config(data_root, out, {
        "model.name": "nr_dfernet_tiny", "model.kwargs": {}, "landmarks": None, "data.num_frames": 4,
        "data.sampling_rate": 2, "data.input_size": 64, "train.epochs": 8, "train.batch_size": 8,
        "train.total_batch": 8, "train.lr": 3.0e-3, "train.augment.hflip": False})
    trainer = setup(check(cfg), distributed.setup("cpu"), show=False)
    if freeze_trained:  # what a broken freezing rule would do: nothing moves but the classifier's bias (which
        for name, p in trainer.model.named_parameters():  # keeps the loss differentiable)
            p.requires_grad_(name == "head.bias")
    position = resume(trainer)
    trainer.tracker = make_tracker(trainer.run, False)
    stop = StopFlag().install()
    try:
        assert run_epochs(trainer, position, stop, False)
        finalize(trainer, False)
    finally:
        stop.restore()
    return 100.0 * json.loads((out / "eval.json").read_text())["uar"]


def test_learns_above_chance(easy_dfew, tmp_path):
    uar = train_uar(easy_dfew, tmp_path / "run")
    assert uar >= CHANCE + MARGIN, f"UAR {uar:.1f} is not {MARGIN} points above chance ({CHANCE:.1f}): learning broke"


def test_shuffled_labels_do_not_learn(easy_dfew, tmp_path):
    # The same clips with the training labels permuted (an annotation file joined to the wrong clip list).
    import shutil

    data = tmp_path / "DFEW"
    shutil.copytree(easy_dfew, data, symlinks=True)
    split = data / "EmoLabel_DataSplit" / "train(single-labeled)" / "train_set_1.csv"
    header, *rows = split.read_text().splitlines()
    names, labels = zip(*(r.split(",") for r in rows))
    labels = np.random.default_rng(0).permutation(labels)
    split.write_text("\n".join([header, *(f"{n},{y}" for n, y in zip(names, labels))]) + "\n")
    uar = train_uar(data, tmp_path / "run")
    assert uar < CHANCE + MARGIN, f"UAR {uar:.1f} with shuffled labels: the test set leaks into training"


def test_frozen_parameters_do_not_learn(easy_dfew, tmp_path):
    uar = train_uar(easy_dfew, tmp_path / "run", freeze_trained=True)
    assert uar < CHANCE + MARGIN, f"UAR {uar:.1f} without a single parameter update"
