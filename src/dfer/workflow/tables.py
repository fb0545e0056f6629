"""Render one paper table from run results: our number beside the paper's and the difference.

Markdown and LaTeX show one column per metric, each cell ``ours (paper)`` (``38.00 ± 1.20 (65.90)``), our best
row per column in bold; the CSV keeps the long form (ours, spread, paper and diff = ours − paper per cell).

Input: the table's plan (``results/plan/<table>.json``, written by the workflow from workflow/tables.yaml)
and the runs' ``eval.json`` files; Table III also reads ``results/landmarks/<backbone>/report.json``.
Output: ``results/tables/<table>.{md,csv,tex}``. Cells of several runs (folds; the training seeds of a cell a
claim compares) show their mean and spread (std, or half the range); the header says which data produced the
numbers (synthetic or real).

eval.json as read here (percent or fraction; fractions are scaled to percent):
``{"uar": .., "war": .., "per_class": {class name: acc} | [acc in labels.CLASSES order],
   "cross": {DATASET: {"uar", "war", "per_class"}}}`` (cross-dataset SFER tests, Table I).
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

from dfer.cli import add_params_args, command_parser
from dfer.config import ConfigError
from dfer.io import write_text

METRIC_LABEL = {"uar": "UAR", "war": "WAR", "acc": "Acc", "ion": "ION", "params_m": "Params (M)",
                "tunable_m": "Tunable Params (M)", "total_m": "Params (M)", "active_m": "Active Params (M)",
                "gflops": "GFLOPs"}
# the trained model's parameter counts in eval.json (evaluate): all, trainable (after freezing), used per token at
# inference (a mixture of experts uses k of its n experts)
PARAMETER_METRICS = {"tunable_m": "tunable", "total_m": "total", "active_m": "active"}
NOT_MEASURED = "not measured"
NOT_RUN = "not run"
# which way is better, for bolding our best row per column: ION is an error; parameter counts and GFLOPs are cost,
# not performance, and are not ranked
LOWER_IS_BETTER = {"ion"}
NOT_RANKED = {"params_m", "gflops", *PARAMETER_METRICS}
LEGEND = "ours (paper); bold: best of our rows; ≈ chance: did not learn"
# A UAR below this multiple of chance (100 % / classes) is marked "≈ chance" (the model did not learn) and is never
# bold: a cell must not read as a result when it is the floor.
CHANCE_MARGIN = 1.2


# ---------------------------------------------------------------------------------------------------------
# Reading results
def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); re-run the job that writes it") from exc


def _get(d: dict, *keys: str) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return None


def _scale(ev: dict) -> float:
    """eval.json in fractions ([0,1]) or percent: decide once per file from its WAR/UAR."""
    ref = [v for v in (_get(ev, "war", "WAR", "acc", "accuracy"), _get(ev, "uar", "UAR")) if v is not None]
    return 100.0 if ref and max(ref) <= 1.0 else 1.0


def metric_value(ev: dict, metric: str, dataset: str | None, run_dataset: str | None,
                 variant: str | None = None) -> float | None:
    """One metric (percent) of an eval.json; ``dataset`` other than the run's own reads ``cross``, a ``variant``
    its inference-only variant (``variants.<name>``: the same model and test set, other inference settings)."""
    block = ev
    if variant is not None:
        if variant not in (ev.get("variants") or {}):
            raise ConfigError(f"run {ev.get('run')!r}: eval.json has no inference variant {variant!r}; re-run its "
                              "training job (its config declares the variant, the evaluation predates it)")
        block = ev["variants"][variant]
    elif dataset and run_dataset and dataset != run_dataset:
        cross = _get(ev, "cross", "eval_datasets", "datasets") or {}
        if dataset not in cross:
            return None
        block = cross[dataset]
    if metric in PARAMETER_METRICS:  # in millions
        count = (ev.get("parameters") or {}).get(PARAMETER_METRICS[metric])
        return None if count is None else count / 1e6
    if metric == "gflops":  # one test view, counted (evaluate.model_flops); papers' "GFLOPs" are multiply-adds
        flops = ev.get("flops")
        return None if flops is None else float(flops["model_gmacs"])
    scale = _scale(block)
    if metric in ("war", "acc"):
        v = _get(block, "war", "WAR", "acc", "accuracy")
    elif metric == "uar":
        v = _get(block, "uar", "UAR")
    elif metric.startswith("class:"):
        name = metric.split(":", 1)[1]
        pc = _get(block, "per_class", "per_class_acc", "class_acc")
        if isinstance(pc, list):
            from dfer.data.labels import CLASSES

            classes = CLASSES[dataset or run_dataset]
            v = pc[classes.index(name)] if name in classes and len(pc) == len(classes) else None
        elif isinstance(pc, dict):
            v = pc.get(name)
            if v is None:  # tolerate case differences ("happy" vs "Happy")
                v = {k.lower(): x for k, x in pc.items()}.get(name.lower())
        else:
            v = None
    else:
        raise ConfigError(f"unknown metric {metric!r} (uar | war | acc | class:<name> | ion | params_m | "
                          "tunable_m | total_m | active_m | gflops)")
    return None if v is None else float(v) * scale


def landmark_value(root: Path, backbone: str, metric: str, weights: str | None = None) -> float | None:
    """ION (%) or parameter count (M) from the landmark stage's report.json (a trained net, or configured weights
    measured on ``landmarks.ion_datasets``). Without a report: the parameters are counted from the configured
    weights (the ION is then not measured: None)."""
    path = root / "results" / "landmarks" / backbone / "report.json"
    if not path.is_file():
        return _weights_params_m(root, backbone, weights) if metric == "params_m" else None
    rep = _read_json(path)
    if metric == "ion":
        if "ion_percent" in rep:
            return float(rep["ion_percent"])
        v = _get(rep, "ion", "ION", "nme_ion")
        return None if v is None else float(v) * (100.0 if float(v) <= 1.0 else 1.0)
    v = _get(rep, "params_m", "params", "num_params")
    if v is None:
        return None
    v = float(v)
    return v / 1e6 if v > 1e4 else v


def _weights_params_m(root: Path, backbone: str, weights: str | None) -> float:
    """Parameters (M) of the landmark net as loaded from its weights file (the architecture's when absent)."""
    from dfer.landmarks.registry import build_landmark_net, count_params

    path = None if not weights else (Path(weights) if Path(weights).is_absolute() else root / weights)
    net = build_landmark_net(backbone, path if path is not None and path.is_file() else None)
    return count_params(net) / 1e6


def aggregate(values: list[float], spread: str = "std") -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    if spread == "minmax":
        return mean, (max(values) - min(values)) / 2
    return mean, statistics.stdev(values)


# ---------------------------------------------------------------------------------------------------------
def collect(payload: dict, root: Path, spread: str = "std") -> list[dict]:
    """One record per cell: ours (mean, spread, n), paper, diff."""
    records = []
    runs = payload["runs"]
    for c in payload["cells"]:
        values: list[float] = []
        missing: list[str] = []
        if c.get("not_run"):
            pass
        elif c["metric"] in ("ion", "params_m"):
            v = landmark_value(root, c["backbone"], c["metric"], c.get("weights"))
            values = [] if v is None else [v]
        else:
            for h in c["runs"]:
                path = root / runs[h]["output_dir"] / "eval.json"
                if not path.is_file():
                    missing.append(str(path))
                    continue
                run_dataset = runs[h].get("dataset") or c["dataset"]
                v = metric_value(_read_json(path), c["metric"], c["dataset"], run_dataset, c.get("variant"))
                if v is not None:
                    values.append(v)
        mean, sp = aggregate(values, spread)
        paper = c.get("paper")
        records.append({
            "block": c["block"], "row": c["row"], "column": c["column"], "metric": c["metric"] or "",
            "dataset": c["dataset"] or "", "ours": mean, "spread": sp, "n_runs": len(values),
            "paper": paper, "diff": None if mean is None or paper is None else mean - paper,
            "runs": " ".join(c["runs"]), "missing": missing, "cited_only": c["metric"] is None,
            "note": NOT_RUN if c.get("not_run") else NOT_MEASURED if c["metric"] == "ion" and not values else "",
            "not_run": c.get("not_run") or "",
            "chance": chance_uar(c["metric"], c["dataset"] or runs_dataset(c, runs)),
        })
        if at_chance(records[-1]):
            records[-1]["note"] = "at chance (did not learn)"
    return records


def runs_dataset(cell: dict, runs: dict) -> str | None:
    return next((runs[h].get("dataset") for h in cell["runs"] if runs[h].get("dataset")), None)


def chance_uar(metric: str | None, dataset: str | None) -> float | None:
    """Chance UAR (100 / number of classes) for a UAR cell, else None."""
    if metric != "uar" or not dataset:
        return None
    from dfer.data.labels import CLASSES

    return 100.0 / len(CLASSES[dataset]) if dataset in CLASSES else None


def at_chance(r: dict) -> bool:
    return r.get("chance") is not None and r["ours"] is not None and r["ours"] < CHANCE_MARGIN * r["chance"]


def _f(v: float | None, nd: int = 2, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:+.{nd}f}" if signed else f"{v:.{nd}f}"


def _ours(r: dict, pm: str = "±") -> str:
    if r["cited_only"]:
        return ""
    if r["ours"] is None:
        return "missing" if r["missing"] else (r["note"] or "n/a")
    text = _f(r["ours"]) + (f" {pm} {_f(r['spread'])}" if r["spread"] is not None else "")
    return f"{text} ≈ chance" if at_chance(r) else text


def _grid(records: list[dict]) -> list[tuple[str, list[str], list[str], dict]]:
    """(block, row labels, column labels, {(row, col): record}) in declaration order."""
    blocks: dict[str, tuple[list[str], list[str], dict]] = {}
    for r in records:
        rows, cols, cells = blocks.setdefault(r["block"], ([], [], {}))
        if r["row"] not in rows:
            rows.append(r["row"])
        if r["column"] not in cols:
            cols.append(r["column"])
        cells[(r["row"], r["column"])] = r
    return [(b, rows, cols, cells) for b, (rows, cols, cells) in blocks.items()]


def best_rows(cells: dict, rows: list[str], col: str) -> set[str]:
    """Rows of one column whose trained number is the best of the block's (ties at the shown precision all win):
    the highest, the lowest for an error (ION); none for cost columns (parameters, GFLOPs) or fewer than two
    trained rows (nothing to compare); a number at chance is never the best."""
    trained = {row: cells[(row, col)] for row in rows if (row, col) in cells
               and not cells[(row, col)]["cited_only"] and cells[(row, col)]["ours"] is not None}
    if len(trained) < 2 or any(r["metric"] in NOT_RANKED for r in trained.values()):
        return set()
    shown = {row: round(r["ours"], 2) for row, r in trained.items() if not at_chance(r)}
    if not shown:
        return set()
    lower = all(r["metric"] in LOWER_IS_BETTER for r in trained.values())
    best = min(shown.values()) if lower else max(shown.values())
    return {row for row, v in shown.items() if v == best}


def _cell(r: dict | None, bold: bool = False, strong: Callable[[str], str] = "**{}**".format,
          esc: Callable[[str], str] = str) -> str:
    """``ours (paper)``: our number (its spread, or why there is none: missing, not run, not measured, n/a) and
    the paper's in brackets (``-`` when the paper gives none); a cited row shows the paper's number only.
    ``strong`` marks our best row, ``esc`` escapes our text (LaTeX)."""
    if r is None:
        return "-"
    paper = f"({_f(r['paper'])})"
    if r["cited_only"]:
        return "-" if r["paper"] is None else paper
    ours = esc(_ours(r))
    return f"{strong(ours) if bold else ours} {paper}"


def provenance(payload: dict) -> str:
    prov = payload.get("provenance") or {}
    kind = "synthetic" if prov.get("synthetic") else "real"
    roots = ", ".join(f"{d}={r}" for d, r in sorted((prov.get("roots") or {}).items()))
    return (f"Data: **{kind}** (preset `{prov.get('preset', '?')}`; {roots or 'roots unknown'}). "
            + ("Tiny models on the embedded benchmark: compare the direction of a difference with the paper's "
               "(results/tables/claims.md scores each claim), not the values."
               if kind == "synthetic" else "Real datasets."))


def render_markdown(payload: dict, records: list[dict], spread: str) -> str:
    out = [f"# {payload['title']}", "", f"> {provenance(payload)}",
           f"> Each cell: ours (paper). ours = our result ({'mean ± std' if spread == 'std' else 'mean ± half range'}"
           " over the runs of a cell where it has several: its folds, and its training seeds where a claim compares it),"
           " paper = reported (`-`: not reported); **bold** = the best of our "
           "rows in its column (lowest ION; parameter counts and GFLOPs are not ranked); ≈ chance = a UAR below "
           f"{CHANCE_MARGIN} × chance (100 % / classes): the model did not learn. Δ = ours − paper is in "
           f"`{payload['table']}.csv`.", ""]
    if payload.get("note"):
        out[-1:] = [f"> Note: {payload['note']}", ""]
    for reason in _not_run_reasons(records):
        out[-1:] = [f"> Not run in preset `{(payload.get('provenance') or {}).get('preset', '?')}`: {reason}", ""]
    for block, rows, cols, cells in _grid(records):
        if block:
            out += [f"## {block}", ""]
        out.append("| " + " | ".join(["Method", *cols]) + " |")
        out.append("|---|" + "---:|" * len(cols))
        best = {col: best_rows(cells, rows, col) for col in cols}
        for row in rows:
            line = [row] + [_cell(cells.get((row, col)), row in best[col]) for col in cols]
            out.append("| " + " | ".join(line) + " |")
        out.append("")
    out += [f"_{LEGEND}_", ""]
    return "\n".join(out)


def _not_run_reasons(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["not_run"] for r in records if r["not_run"]))


def render_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    fields = ["block", "row", "column", "metric", "dataset", "ours", "spread", "n_runs", "paper", "diff", "note",
              "chance", "runs"]
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: ("" if r[k] is None else (round(r[k], 4) if isinstance(r[k], float) else r[k]))
                    for k in fields})
    return buf.getvalue()


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("†", r"$\dagger$"), ("‡", r"$\ddagger$"), ("≈", r"$\approx$"), ("Δ", r"$\Delta$"), ("−", "-")):
        s = s.replace(a, b)
    return s


def render_latex(payload: dict, records: list[dict]) -> str:
    out = [f"% {payload['title']}", f"% {provenance(payload).replace('**', '')}"]
    if payload.get("note"):
        out.append(f"% Note: {payload['note']}")
    out += [f"% Not run in this preset: {reason}" for reason in _not_run_reasons(records)]
    for block, rows, cols, cells in _grid(records):
        out.append(r"\begin{tabular}{l" + "r" * len(cols) + "}")
        out.append(r"\toprule")
        if block:
            out.append(r"\multicolumn{%d}{l}{%s} \\" % (1 + len(cols), _tex(block)))
        out.append(" & ".join(["Method"] + [_tex(c) for c in cols]) + r" \\")
        out.append(r"\midrule")
        best = {col: best_rows(cells, rows, col) for col in cols}
        for row in rows:
            line = [_tex(row)] + [_cell(cells.get((row, col)), row in best[col], r"\textbf{{{}}}".format, _tex)
                                  for col in cols]
            out.append(" & ".join(line) + r" \\")
        out.append(r"\bottomrule")
        out.append(r"\end{tabular}")
    out.append(f"% {LEGEND}; the difference ours - paper is in the CSV")
    return "\n".join(out) + "\n"


def render_table(payload: dict, out_dir: str | Path, root: str | Path = ".", spread: str = "std") -> list[Path]:
    """Write <table>.md/.csv/.tex; return their paths."""
    root, out_dir = Path(root), Path(out_dir)
    records = collect(payload, root, spread)
    missing = sorted({m for r in records for m in r["missing"]})
    if missing:
        print(f"dfer table: warning: {len(missing)} eval.json missing (cells shown as 'missing'), e.g. "
              f"{missing[0]}; run `snakemake {payload['table']}` to produce them", file=sys.stderr)
    tid = payload["table"]
    paths = [out_dir / f"{tid}.md", out_dir / f"{tid}.csv", out_dir / f"{tid}.tex"]
    write_text(paths[0], render_markdown(payload, records, spread))
    write_text(paths[1], render_csv(records))
    write_text(paths[2], render_latex(payload, records))
    return paths


def payload_from_params(table: str, params_path: str | None = None, overrides: list[str] | None = None) -> dict:
    from dfer.workflow.plan import plan_from_files

    plan = plan_from_files(params_path, None, overrides)
    if table not in plan.cells:
        raise ConfigError(f"unknown table {table!r}; declared in workflow/tables.yaml: "
                          f"{plan.tables}")
    return plan.table_payload(table)


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("table", __doc__)
    ap.add_argument("table", help="table id, e.g. table_3")
    ap.add_argument("--plan", default=None, help="the table's plan JSON (default: plan from params.yaml now)")
    add_params_args(ap, set_help="params overrides (no --plan)", params_help="params file when no --plan is given")
    ap.add_argument("--out", default="results/tables", help="output folder (default: results/tables)")
    ap.add_argument("--root", default=".", help="project root the run folders are relative to")
    ap.add_argument("--spread", choices=["std", "minmax"], default=None, help="fold spread (default: params)")
    args = ap.parse_args(argv)
    if args.plan:
        p = Path(args.plan)
        if not p.is_file():
            raise ConfigError(f"{p}: table plan not found; run `snakemake {args.table}` (it writes the plan)")
        payload = _read_json(p)
    else:
        payload = payload_from_params(args.table, args.params, args.set)
    spread = args.spread or payload.get("spread", "std")
    paths = render_table(payload, args.out, args.root, spread)
    for path in paths:
        print(path)
    from dfer.tracking import file_table

    file_table(args.table, payload["title"], payload["runs"], payload["tracking"], [paths[0], paths[1]],
               root=args.root)
    return 0
