"""Did a second run of the workflow reproduce the first? Compares two result trees.

    .venv/bin/python benchmarks/compare_results.py RESULTS_A RESULTS_B

For every run folder present in both (`runs/<hash>/`, same hash = same resolved config) it compares the test
predictions (`predictions.npz`: class probabilities and item order) and the metrics of `done.json`; then every
table CSV and the claims scorecard in `tables/`, cell by cell. Prints how many are identical, lists what
differs (the largest probability difference of each run), and exits 1 when anything differs, so a script can
use it as a check.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

RUN_METRICS = ("uar", "war", "epochs")


def compare_run(a: Path, b: Path) -> str | None:
    """None when the two run folders hold the same predictions and metrics, else what differs."""
    done_a, done_b = (json.loads((d / "done.json").read_text()) for d in (a, b))
    changed = [k for k in RUN_METRICS if done_a.get(k) != done_b.get(k)]
    pred_a, pred_b = np.load(a / "predictions.npz"), np.load(b / "predictions.npz")
    if not np.array_equal(pred_a["ids"], pred_b["ids"]):
        return "different test items"
    if pred_a["probs"].shape != pred_b["probs"].shape:
        return f"probabilities of shape {pred_a['probs'].shape} vs {pred_b['probs'].shape}"
    gap = float(np.abs(pred_a["probs"] - pred_b["probs"]).max(initial=0.0))
    if not changed and gap == 0.0:
        return None
    metrics = ", ".join(f"{k} {done_a.get(k)} vs {done_b.get(k)}" for k in changed)
    return f"max |Δprob| {gap:.3g}" + (f"; {metrics}" if metrics else "")


def compare_table(a: Path, b: Path) -> str | None:
    """None when the two CSVs are equal cell by cell (NaN equals NaN), else which rows differ."""
    ta, tb = pd.read_csv(a, dtype=str), pd.read_csv(b, dtype=str)
    if list(ta.columns) != list(tb.columns) or ta.shape != tb.shape:
        return f"shape {ta.shape} vs {tb.shape}"
    differ = ~((ta == tb) | (ta.isna() & tb.isna())).all(axis=1)
    if not differ.any():
        return None
    return f"{int(differ.sum())} of {len(ta)} rows differ (first: row {int(np.flatnonzero(differ)[0]) + 2})"


def finished_runs(results: Path) -> dict[str, Path]:
    return {d.name: d for d in sorted((results / "runs").glob("*")) if (d / "done.json").is_file()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="a results/ folder")
    ap.add_argument("b", type=Path, help="another results/ folder")
    args = ap.parse_args(argv)

    runs_a, runs_b = finished_runs(args.a), finished_runs(args.b)
    common = sorted(runs_a.keys() & runs_b.keys())
    run_diffs = {h: d for h in common if (d := compare_run(runs_a[h], runs_b[h]))}
    print(f"runs: {len(common) - len(run_diffs)} of {len(common)} in both identical "
          f"(only in A: {len(runs_a.keys() - runs_b.keys())}, only in B: {len(runs_b.keys() - runs_a.keys())})")
    for h, d in run_diffs.items():
        name = json.loads((runs_a[h] / "done.json").read_text()).get("name", "")
        print(f"  {h} {name}: {d}")

    tables_a = {p.name: p for p in (args.a / "tables").glob("*.csv")}
    tables_b = {p.name: p for p in (args.b / "tables").glob("*.csv")}
    shared = sorted(tables_a.keys() & tables_b.keys())
    table_diffs = {n: d for n in shared if (d := compare_table(tables_a[n], tables_b[n]))}
    print(f"tables: {len(shared) - len(table_diffs)} of {len(shared)} in both identical "
          f"(only in A: {sorted(tables_a.keys() - tables_b.keys())}, "
          f"only in B: {sorted(tables_b.keys() - tables_a.keys())})")
    for n, d in table_diffs.items():
        print(f"  {n}: {d}")
    return 1 if run_diffs or table_diffs else 0


if __name__ == "__main__":
    sys.exit(main())
