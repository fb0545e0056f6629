"""The claims scorecard: every declared claim resolves to runs; verdicts follow a paired bootstrap over test
items and training seeds (reproduced / reversed only when the interval excludes 0)."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from dfer.config import load_params
from dfer.data.labels import classes
from dfer.workflow.claims import claims_payload, load_claims, main as claims_main, render_markdown, score
from dfer.workflow.plan import build_plan

ROOT = Path(__file__).resolve().parents[1]
TABLES = yaml.safe_load((ROOT / "workflow/tables.yaml").read_text())
CLAIMS = load_claims(ROOT / "workflow/claims.yaml")


@pytest.mark.parametrize("preset", ["synthetic", "paper"])
def test_every_claim_resolves_to_runs_with_the_papers_direction(preset):
    payload = claims_payload(build_plan(load_params(ROOT / "params.yaml", [f"preset={preset}"]), TABLES), CLAIMS)
    assert len(payload["claims"]) >= 15
    for c in payload["claims"]:
        assert c["terms"] and all(t["runs"] for t in c["terms"]), c["id"]
        paper = c["paper"] if "paper" in c else sum(t["sign"] * t["paper"] for t in c["terms"])
        assert paper > 0, (c["id"], paper)  # each claim is stated in the paper's direction


def _write_run(root: Path, run: dict, labels: np.ndarray, pred: np.ndarray) -> None:
    folder = root / run["output_dir"]
    folder.mkdir(parents=True, exist_ok=True)
    names = classes(run["dataset"])
    (folder / "eval.json").write_text(json.dumps({"classes": names}))
    with open(folder / "predictions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "label", "pred"])
        for i, (y, p) in enumerate(zip(labels, pred)):
            w.writerow([f"{i:05d}", names[y], names[p]])


def _claim_runs(payload: dict, claim_id: str):
    claim = next(c for c in payload["claims"] if c["id"] == claim_id)
    one = {**payload, "claims": [claim]}
    better = [h for t in claim["terms"] if t["sign"] > 0 for h in t["runs"]]
    worse = [h for t in claim["terms"] if t["sign"] < 0 for h in t["runs"]]
    return one, better, worse


@pytest.mark.parametrize("gap, verdict", [(0.25, "reproduced"), (-0.25, "reversed"), (0.0, "inconclusive")])
def test_verdicts_follow_a_paired_bootstrap(tmp_path, gap, verdict):
    """Two runs on the same 400-clip test set: one right on 50% + gap of the clips, the other on 50%."""
    payload = claims_payload(build_plan(load_params(ROOT / "params.yaml"), TABLES), CLAIMS)
    one, better, worse = _claim_runs(payload, "mcp_beats_no_fusion_dfer")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 400)
    wrong = (labels + 1) % 7
    # which clips each run gets right: independent draws, so an equal accuracy is not an identical prediction
    for hashes, acc, u in ((better, 0.5 + gap, rng.random(400)), (worse, 0.5, rng.random(400))):
        for h in hashes:
            _write_run(tmp_path, payload["runs"][h], labels, np.where(u < acc, labels, wrong))
    [rec] = score(one, tmp_path, replicates=500)
    assert rec["verdict"] == verdict
    assert rec["low"] <= rec["ours"] <= rec["high"]
    if verdict == "inconclusive":
        assert abs(rec["ours"]) < 6 and rec["low"] < 0 < rec["high"]
    else:
        assert rec["ours"] == pytest.approx(100 * gap, abs=6)


@pytest.mark.parametrize("seed_1_gap, verdict", [(0.25, "reproduced"), (-0.25, "inconclusive")])
def test_the_interval_resamples_training_seeds(tmp_path, seed_1_gap, verdict):
    """With tables.claim_seeds each compared run trains per seed: a gap that one seed shows and the other reverses
    is training noise, not a finding, although each seed alone is far beyond its test-set noise."""
    plan = build_plan(load_params(ROOT / "params.yaml"), TABLES, CLAIMS)
    payload = claims_payload(plan, CLAIMS)
    one, better, worse = _claim_runs(payload, "mcp_beats_no_fusion_dfer")
    assert sorted(payload["runs"][h]["seed"] for h in better) == [0, 1]
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, 400)
    wrong = (labels + 1) % 7
    for h in better + worse:
        gap = 0.25 if payload["runs"][h]["seed"] == 0 else seed_1_gap
        acc = 0.5 + max(gap, 0) if h in better else 0.5 + max(-gap, 0)
        _write_run(tmp_path, payload["runs"][h], labels, np.where(rng.random(400) < acc, labels, wrong))
    [rec] = score(one, tmp_path, replicates=500)
    assert rec["verdict"] == verdict
    assert rec["per_seed"]["0"] == pytest.approx(25, abs=6)
    assert rec["per_seed"]["1"] == pytest.approx(100 * seed_1_gap, abs=6)
    assert rec["ours"] == pytest.approx((rec["per_seed"]["0"] + rec["per_seed"]["1"]) / 2)
    md = render_markdown([rec], payload["provenance"])
    assert "over the 2 training seeds" in md and "seed 1: " in md


def test_the_command_writes_the_scorecard(tmp_path, capsys):
    payload = claims_payload(build_plan(load_params(ROOT / "params.yaml"), TABLES), CLAIMS)
    one, better, worse = _claim_runs(payload, "s2d_beats_nr_dfernet")
    rng = np.random.default_rng(1)
    for h in better + worse:
        labels = rng.integers(0, 7, 120)
        _write_run(tmp_path, payload["runs"][h], labels, labels if h in better else rng.integers(0, 7, 120))
    (tmp_path / "plan.json").write_text(json.dumps(one))
    assert claims_main(["--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path / "tables"),
                        "--root", str(tmp_path)]) == 0
    md = (tmp_path / "tables/claims.md").read_text()
    assert "**1 reproduced, 0 inconclusive, 0 reversed.**" in md and "S2D beats NR-DFERNet" in md
    row = next(csv.DictReader((tmp_path / "tables/claims.csv").open()))
    assert row["verdict"] == "reproduced" and float(row["paper"]) == pytest.approx(61.82 - 54.21)
    assert json.loads(row["per_fold"]).keys() == {"1", "2"}  # the synthetic preset's 2 folds


def test_a_claim_on_cells_the_preset_does_not_run_says_so(tmp_path):
    # The synthetic preset leaves FERV39K out of Table V: a claim on it is "not run", with the preset's reason.
    params = load_params(ROOT / "params.yaml")
    claims = [{"id": "tma_ferv39k", "says": "TMA beats no adapter (FERV39K)", "table": "table_5",
               "better": {"row": "Temporal-Modeling Adapter", "column": "FERV39K UAR"},
               "worse": {"row": "None", "column": "FERV39K UAR"}}]
    payload = claims_payload(build_plan(params, TABLES), claims)
    [rec] = score(payload, tmp_path)
    assert rec["verdict"] == "not run" and "DFEW fold 1 only" in rec["reason"]
    assert rec["paper"] == pytest.approx(41.28 - 33.17)
    md = render_markdown([rec], payload["provenance"])
    assert "0 reversed, 1 not run in this preset.**" in md and "not run: the ablations run on DFEW" in md


def test_a_claim_the_preset_reads_on_another_dataset_says_where(tmp_path):
    # The synthetic preset reads UniLearn's FERV39K ablations on DFEW fold 1 (params.yaml tables.read_on).
    payload = claims_payload(build_plan(load_params(ROOT / "params.yaml"), TABLES), CLAIMS)
    one, better, worse = _claim_runs(payload, "unilearn_pretraining_helps")
    assert {(payload["runs"][h]["dataset"], payload["runs"][h]["fold"]) for h in better + worse} == {("DFEW", 1)}
    labels = np.random.default_rng(2).integers(0, 7, 150)
    for h in better + worse:
        _write_run(tmp_path, payload["runs"][h], labels, labels if h in better else (labels + 1) % 7)
    [rec] = score(one, tmp_path, replicates=100)
    assert rec["verdict"] == "reproduced" and rec["comparison"].endswith("(read on DFEW instead of FERV39K)")
    assert "(read on DFEW instead of FERV39K)" in render_markdown([rec], payload["provenance"])
