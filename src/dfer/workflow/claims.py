"""The paper's qualitative claims, scored on our runs: reproduced, reversed or inconclusive.

Each claim of ``workflow/claims.yaml`` compares table cells (``workflow/tables.yaml``): the statistic is
``sum(better) - sum(worse)`` of cell values (a term may carry ``sign: -1``, e.g. a cross-dataset drop). The
paper's size is that statistic on the paper's numbers; ours is the same on our cells (each the mean over its
folds and seeds, as in the tables). Its spread is a 95% interval from a paired bootstrap: every test set
(dataset, fold) is resampled once per replicate and every run evaluated on it is scored on the same resample,
so two runs on the same test set are compared item by item. Where the compared runs are trained with several
seeds (params.yaml ``tables.claim_seeds``), each replicate also resamples the seeds, one draw shared by every
cell of the claim, so that the interval holds training noise as well as test-set noise; with one seed per run
it holds test-set noise only (the per-fold differences beside it show how much the training moves a
difference). Verdict: **reproduced** when the interval lies on the paper's side of 0, **reversed** when it
lies on the other side, **inconclusive** when it contains 0.

``dfer claims --plan results/plan/claims.json`` writes ``results/tables/claims.{md,csv}`` and logs them on the
MLflow parent run ``claims``; the same scorecard runs on real data in the paper preset.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfer.cli import command_parser
from dfer.config import ConfigError, load_yaml

CLAIMS_RELPATH = Path("workflow/claims.yaml")
BOOTSTRAP = 2000
LEVEL = 0.95
VERDICTS = ("reproduced", "inconclusive", "reversed", "not run")


# ---- declaring claims -------------------------------------------------------------------------------------
def load_claims(path: str | Path) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: claim declarations not found (expected {CLAIMS_RELPATH})")
    claims = (load_yaml(p.read_text()) or {}).get("claims") or []
    ids = [c.get("id") for c in claims]
    if len(set(ids)) != len(ids) or None in ids:
        raise ConfigError(f"{p}: every claim needs a unique `id`")
    return claims


def _terms(claim: dict, side: str) -> list[dict]:
    terms = claim.get(side)
    terms = [terms] if isinstance(terms, dict) else list(terms or [])
    if not terms:
        raise ConfigError(f"workflow/claims.yaml: claim {claim['id']!r} has no `{side}` cell")
    return terms


def claims_payload(plan, claims: list[dict]) -> dict:
    """Resolve each claim's cells to runs, datasets, metrics and paper numbers (what `dfer claims` needs)."""
    out, runs = [], {}
    for claim in claims:
        table = claim.get("table")
        terms, not_run = [], None
        for side, sign in (("better", 1.0), ("worse", -1.0)):
            for t in _terms(claim, side):
                cell = _find_cell(plan.cells, claim, t)
                if cell.not_run:
                    not_run = not_run or cell.not_run
                elif not cell.runs:
                    raise ConfigError(f"workflow/claims.yaml: claim {claim['id']!r}: cell {t} is not backed by "
                                      "runs (a cited-only row or a landmark metric)")
                terms.append({"side": side, "sign": sign * float(t.get("sign", 1)), "row": cell.row,
                              "column": cell.column,
                              "block": cell.block, "metric": cell.metric, "dataset": cell.dataset,
                              "variant": cell.variant, "paper": cell.paper, "runs": cell.runs,
                              "instead_of": cell.instead_of})
                for h in cell.runs:
                    r = plan.runs[h]
                    runs[h] = {"output_dir": r.output_dir, "dataset": r.config["dataset"], "fold": r.config["fold"],
                               "seed": r.config["seed"], "name": r.name, "tables": r.tables}
        entry = {"id": claim["id"], "says": claim.get("says", ""), "table": table, "terms": terms,
                 **({"not_run": not_run} if not_run else {})}
        if "paper_from" in claim:
            entry["paper"] = _paper_from(plan, claim)
        out.append(entry)
    return {"claims": out, "runs": runs, "provenance": plan.provenance, "tracking": plan.tracking}


def _paper_from(plan, claim: dict) -> float:
    """The paper's size of a claim whose own cells the paper does not report (``paper_from``: the reported cells
    that state it, e.g. DS vs TI shown on other models than the one we run both ways)."""
    value = 0.0
    for side, sign in (("better", 1.0), ("worse", -1.0)):
        for t in _terms(claim["paper_from"] | {"id": claim["id"]}, side):
            cell = _find_cell(plan.cells, claim, t)
            if cell.paper is None:
                raise ConfigError(f"workflow/claims.yaml: claim {claim['id']!r}: paper_from cell {t} has no reported "
                                  "number")
            value += sign * float(t.get("sign", 1)) * cell.paper
    return value


def claim_cells(cells: dict, claim: dict) -> list:
    """The cells a claim compares (its better and worse terms), from a plan's table id -> cells."""
    return [_find_cell(cells, claim, t) for side in ("better", "worse") for t in _terms(claim, side)]


def _find_cell(cells: dict, claim: dict, term: dict):
    if claim.get("table") not in cells:
        raise ConfigError(f"workflow/claims.yaml: claim {claim['id']!r} names unknown table {claim.get('table')!r}")
    found = [c for c in cells[claim["table"]] if c.row == term.get("row") and c.column == term.get("column")
             and (term.get("block") is None or c.block == term["block"])]
    if len(found) != 1:
        raise ConfigError(f"workflow/claims.yaml: claim {claim['id']!r}: {len(found)} cells of {claim['table']} match "
                          f"row {term.get('row')!r}, column {term.get('column')!r}"
                          f"{', block ' + repr(term['block']) if term.get('block') else ''} (one is needed)")
    return found[0]


# ---- per-item predictions -----------------------------------------------------------------------------------
@dataclass
class Items:
    """One run's predictions on one test set: ids, true and predicted class indices, class names."""
    ids: np.ndarray
    labels: np.ndarray
    pred: np.ndarray
    classes: list[str]


def run_items(root: Path, run: dict, dataset: str, variant: str | None = None) -> Items:
    """A run's test predictions on ``dataset``: its own test set (predictions.csv), a cross-dataset test
    (eval.json ``cross``), or an inference variant of its own test (eval.json ``variants``)."""
    folder = root / run["output_dir"]
    ev_path = folder / "eval.json"
    if not ev_path.is_file():
        raise ConfigError(f"{ev_path}: missing; run the training job first (`snakemake all_tables`)")
    ev = json.loads(ev_path.read_text())
    if variant is not None:
        block = (ev.get("variants") or {}).get(variant)
        if block is None:
            raise ConfigError(f"{ev_path}: no inference variant {variant!r}; re-run the job")
        return _items(block["items"], block["classes"])
    if dataset == run["dataset"]:
        classes = list(ev["classes"])
        index = {c: i for i, c in enumerate(classes)}
        with open(folder / "predictions.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        return Items(np.array([r["id"] for r in rows]), np.array([index[r["label"]] for r in rows], np.int64),
                     np.array([index[r["pred"]] for r in rows], np.int64), classes)
    cross = (ev.get("cross") or {}).get(dataset)
    if cross is None or "items" not in cross:
        raise ConfigError(f"{ev_path}: no per-item cross-dataset predictions on {dataset}; re-run the job")
    return _items(cross["items"], cross["shared_classes"])


def _items(it: dict, classes: list[str]) -> Items:
    """Per-item predictions stored in eval.json (``{ids, labels, pred}``, indices into ``classes``)."""
    return Items(np.array([str(i) for i in it["ids"]]), np.asarray(it["labels"], np.int64),
                 np.asarray(it["pred"], np.int64), list(classes))


def metric(items: Items, name: str, idx: np.ndarray | None = None) -> float:
    """UAR / WAR (= acc) / ``class:<name>`` accuracy in percent, on ``idx`` (a resample) or every item; nan when
    the resample holds no item of the class."""
    y, p = (items.labels, items.pred) if idx is None else (items.labels[idx], items.pred[idx])
    k = len(items.classes)
    if name in ("war", "acc"):
        return 100.0 * float(np.mean(y == p)) if len(y) else float("nan")
    support = np.bincount(y, minlength=k)
    correct = np.bincount(y[y == p], minlength=k)
    if name == "uar":
        present = support > 0
        return 100.0 * float(np.mean(correct[present] / support[present])) if present.any() else float("nan")
    if name.startswith("class:"):
        c = [x.lower() for x in items.classes].index(name.split(":", 1)[1].lower())
        return 100.0 * correct[c] / support[c] if support[c] else float("nan")
    raise ConfigError(f"claims compare uar | war | acc | class:<name> metrics, not {name!r}")


# ---- scoring ------------------------------------------------------------------------------------------------
def score(payload: dict, root: Path, replicates: int = BOOTSTRAP, seed: int = 0) -> list[dict]:
    """One record per claim: the paper's and our statistic, our bootstrap interval, per-fold values, verdict."""
    root = Path(root)
    cache: dict[tuple[str, str, str | None], Items] = {}

    def items_of(h: str, dataset: str, variant: str | None = None) -> Items:
        if (h, dataset, variant) not in cache:
            cache[(h, dataset, variant)] = run_items(root, payload["runs"][h], dataset, variant)
        return cache[(h, dataset, variant)]

    # One resample per test set (dataset, fold) and replicate, shared by every run scored on it.
    sets: dict[tuple[str, Any], int] = {}
    scored = [c for c in payload["claims"] if not c.get("not_run")]
    for claim in scored:
        for t in claim["terms"]:
            for h in t["runs"]:
                key = (t["dataset"], payload["runs"][h]["fold"])
                n = len(items_of(h, t["dataset"], t.get("variant")).ids)
                if sets.setdefault(key, n) != n:
                    raise ConfigError(f"runs scored on {key} have different test sets ({sets[key]} vs {n} items)")
    rng = np.random.default_rng(seed)
    draws = {key: rng.integers(0, n, size=(replicates, n)) for key, n in sorted(sets.items(), key=str)}
    seed_rng = np.random.default_rng(seed + 1)   # its own stream: one seed per run leaves the item draws as they were
    records = []
    for claim in payload["claims"]:
        if claim.get("not_run"):
            records.append({"id": claim["id"], "table": claim["table"], "says": claim["says"],
                            "comparison": _comparison(claim["terms"]), "paper": _claim_paper(claim), "ours": None,
                            "low": None, "high": None, "per_fold": {}, "per_seed": {}, "verdict": "not run",
                            "reason": claim["not_run"]})
            continue
        seeds = sorted({payload["runs"][h].get("seed", 0) for t in claim["terms"] for h in t["runs"]})
        # one draw of the training seeds per replicate, shared by every term: paired, like the test items
        seed_draw = seed_rng.integers(0, len(seeds), size=(replicates, len(seeds)))
        ours, boot = 0.0, np.zeros(replicates)
        folds: dict[Any, float] = {}
        per_seed: dict[int, float] = {}
        for t in claim["terms"]:
            by_fold: dict[Any, dict[int, str]] = {}
            for h in t["runs"]:
                run = payload["runs"][h]
                by_fold.setdefault(run["fold"], {})[run.get("seed", 0)] = h
            values = {h: metric(items_of(h, t["dataset"], t.get("variant")), t["metric"]) for h in t["runs"]}
            ours += t["sign"] * float(np.mean(list(values.values())))
            fold_reps = []
            for fold, by_seed in by_fold.items():
                if sorted(by_seed) != seeds:
                    raise ConfigError(f"claim {claim['id']!r}: {t['row']} / {t['column']} fold {fold} has seeds "
                                      f"{sorted(by_seed)}, the claim's other runs {seeds}")
                key = (t["dataset"], fold)
                reps = np.array([[metric(items_of(by_seed[s], t["dataset"], t.get("variant")), t["metric"],
                                         draws[key][b]) for b in range(replicates)] for s in seeds])
                fold_reps.append(np.nanmean(reps[seed_draw, np.arange(replicates)[:, None]], axis=1))
                folds[fold] = folds.get(fold, 0.0) + t["sign"] * float(np.mean([values[by_seed[s]] for s in seeds]))
            boot += t["sign"] * np.nanmean(fold_reps, axis=0)
            for s in seeds:
                per_seed[s] = per_seed.get(s, 0.0) + t["sign"] * float(
                    np.mean([values[by_seed[s]] for by_seed in by_fold.values()]))
        paper = _claim_paper(claim)
        lo, hi = (float(np.nanpercentile(boot, q)) for q in (100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2))
        direction = 1.0 if paper is None or paper >= 0 else -1.0
        verdict = ("reproduced" if min(lo * direction, hi * direction) > 0 else
                   "reversed" if max(lo * direction, hi * direction) < 0 else "inconclusive")
        records.append({"id": claim["id"], "table": claim["table"], "says": claim["says"],
                        "comparison": _comparison(claim["terms"]), "paper": paper, "ours": ours, "low": lo,
                        "high": hi, "per_fold": {str(k): v for k, v in folds.items()} if len(folds) > 1 else {},
                        "per_seed": {str(k): v for k, v in per_seed.items()} if len(per_seed) > 1 else {},
                        "verdict": verdict, "reason": ""})
    return records


def _claim_paper(claim: dict) -> float | None:
    return claim["paper"] if "paper" in claim else _paper(claim["terms"])


def _paper(terms: list[dict]) -> float | None:
    """The claim's statistic on the paper's numbers (None when a cell has no reported number)."""
    values = [t["paper"] for t in terms]
    return None if None in values else sum(t["sign"] * t["paper"] for t in terms)


def _comparison(terms: list[dict]) -> str:
    """``better cell(s) vs worse cell(s)``; a term subtracted inside its side is shown with a minus."""
    def side(name: str) -> str:
        own = [t for t in terms if t["side"] == name]
        sign = 1.0 if name == "better" else -1.0
        return " ".join(("" if i == 0 and t["sign"] * sign > 0 else "+ " if t["sign"] * sign > 0 else "− ")
                        + f"{t['row']} / {t['column']}" for i, t in enumerate(own))

    moved = dict.fromkeys(f"{t['dataset']} instead of {t['instead_of']}" for t in terms if t.get("instead_of"))
    return f"{side('better')} vs {side('worse')}" + (f" (read on {', '.join(moved)})" if moved else "")


# ---- rendering ----------------------------------------------------------------------------------------------
def _f(v, signed: bool = True) -> str:
    return "-" if v is None else (f"{v:+.2f}" if signed else f"{v:.2f}")


def render_markdown(records: list[dict], provenance: dict) -> str:
    counts = {v: sum(r["verdict"] == v for r in records) for v in VERDICTS}
    kind = "synthetic" if provenance.get("synthetic") else "real"
    n_seeds = max((len(r.get("per_seed") or {}) for r in records), default=0)
    seeds_said = (f" and over the {n_seeds} training seeds each compared run is trained with (`tables.claim_seeds`)"
                  if n_seeds > 1 else "")
    out = ["# Claims scorecard: which of the paper's findings hold on this data", "",
           f"> Data: **{kind}** (preset `{provenance.get('preset')}`, recipe `{provenance.get('recipe')}`). "
           f"**{counts['reproduced']} reproduced, {counts['inconclusive']} inconclusive, {counts['reversed']} "
           f"reversed{f', {n} not run in this preset' if (n := counts['not run']) else ''}.**",
           f"> Δ = better − worse (points); ours with its {int(LEVEL * 100)}% paired-bootstrap interval over test "
           f"items{seeds_said}; reproduced / reversed when the interval excludes 0 on the paper's / the other side.",
           "", "| claim | table | paper Δ | ours Δ [95% CI] | per fold / seed | verdict |", "|---|---|---|---|---|---|"]
    for r in records:
        per_run = "; ".join(filter(None, (", ".join(f"{what} {k}: {v:+.1f}" for k, v in r[f"per_{what}"].items())
                                          for what in ("fold", "seed")))) or "-"
        ours = (f"{_f(r['ours'])} [{_f(r['low'])}, {_f(r['high'])}]" if r["ours"] is not None
                else f"not run: {r['reason']}")
        out.append(f"| {r['says']}<br><sub>{r['comparison']}</sub> | {r['table'].replace('table_', '')} | "
                   f"{_f(r['paper'])} | {ours} | {per_run} | **{r['verdict']}** |")
    return "\n".join(out) + "\n"


def render_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    fields = ["id", "table", "says", "comparison", "paper", "ours", "low", "high", "per_fold", "per_seed", "verdict",
              "reason"]
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({**{k: ("" if r[k] is None else round(r[k], 4) if isinstance(r[k], float) else r[k])
                       for k in fields},
                    **{k: json.dumps(r[k]) if r.get(k) else "" for k in ("per_fold", "per_seed")}})
    return buf.getvalue()


def write_scorecard(payload: dict, out_dir: str | Path, root: str | Path = ".") -> tuple[Path, Path, list[dict]]:
    from dfer.io import write_text

    records = score(payload, Path(root))
    out_dir = Path(out_dir)
    md, csv_path = out_dir / "claims.md", out_dir / "claims.csv"
    write_text(md, render_markdown(records, payload.get("provenance") or {}))
    write_text(csv_path, render_csv(records))
    return md, csv_path, records


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("claims", __doc__)
    ap.add_argument("--plan", required=True, help="the claims plan (results/plan/claims.json)")
    ap.add_argument("--out", default="results/tables", help="output folder (default: results/tables)")
    ap.add_argument("--root", default=".", help="project root the run folders are relative to")
    args = ap.parse_args(argv)
    plan = Path(args.plan)
    if not plan.is_file():
        raise ConfigError(f"{plan}: claims plan not found; run `snakemake claims` (it writes the plan)")
    md, csv_path, records = write_scorecard(json.loads(plan.read_text()), args.out, args.root)
    counts = {v: sum(r["verdict"] == v for r in records) for v in VERDICTS}
    from dfer.tracking import file_table

    payload = json.loads(plan.read_text())
    file_table("claims", "The paper's claims scored on these runs", {}, payload["tracking"], [md, csv_path],
               {f"claims_{k.replace(' ', '_')}": v for k, v in counts.items()}, root=args.root)
    print(f"{md}: {counts['reproduced']} reproduced, {counts['inconclusive']} inconclusive, "
          f"{counts['reversed']} reversed, {counts['not run']} not run")
    return 0
