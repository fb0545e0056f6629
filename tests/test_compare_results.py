"""benchmarks/compare_results.py: two result trees compared run by run and table by table."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_results.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def write_tree(root: Path) -> Path:
    run = root / "runs" / "abc123def456"
    run.mkdir(parents=True)
    (run / "done.json").write_text(json.dumps({"name": "s2d/DFEW/fold1", "uar": 0.4, "war": 0.5, "epochs": 2}))
    probs = np.random.default_rng(0).dirichlet(np.ones(7), size=5).astype(np.float32)
    np.savez(run / "predictions.npz", probs=probs, labels=np.arange(5), ids=np.array([f"{i:05d}" for i in range(5)]))
    (root / "tables").mkdir()
    pd.DataFrame({"row": ["S2D", "NR-DFERNet"], "ours": [42.0, None]}).to_csv(root / "tables" / "table_9.csv",
                                                                             index=False)
    return root


def test_identical_trees_pass(tmp_path, compare, capsys):
    a = write_tree(tmp_path / "a")
    shutil.copytree(a, tmp_path / "b")
    assert compare([str(a), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "runs: 1 of 1 in both identical" in out and "tables: 1 of 1 in both identical" in out


def test_a_changed_probability_and_cell_are_reported(tmp_path, compare, capsys):
    a, b = write_tree(tmp_path / "a"), write_tree(tmp_path / "b")
    pred = dict(np.load(b / "runs/abc123def456/predictions.npz"))
    pred["probs"][0, 0] += 1e-4
    np.savez(b / "runs/abc123def456/predictions.npz", **pred)
    table = pd.read_csv(b / "tables/table_9.csv")
    table.loc[1, "ours"] = 31.5
    table.to_csv(b / "tables/table_9.csv", index=False)
    assert compare([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "abc123def456 s2d/DFEW/fold1: max |Δprob| 0.0001" in out
    assert "table_9.csv: 1 of 2 rows differ (first: row 3)" in out
