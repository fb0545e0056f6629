"""Draw the paper's figures from run results (workflow/tables.yaml `figures:`).

Kinds: ``per_class_bars`` (per-class accuracy of each series, one panel per dataset, from eval.json),
``metric_curve`` (UAR and WAR against the series' settings, in order: e.g. UniLearn's number of experts),
``tsne`` (2-D t-SNE of the test features) and ``prob_dist`` (distribution of the predicted probability of
the true class and of the top class, with/without SDL). The last two read ``predictions.npz`` from the run
folder (``features [N,D]``, ``probs [N,K]``, ``labels [N]``, written by `dfer evaluate`).
"""
from __future__ import annotations

import json
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np

from dfer.cli import command_parser
from dfer.config import ConfigError
from dfer.io import atomic_path
from dfer.workflow.tables import metric_value


def _series(payload: dict) -> list[dict]:
    return payload["cells"]


def _eval(root: Path, payload: dict, h: str) -> dict | None:
    p = root / payload["runs"][h]["output_dir"] / "eval.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _predictions(root: Path, payload: dict, h: str):
    p = root / payload["runs"][h]["output_dir"] / "predictions.npz"
    if not p.is_file():
        warnings.warn(f"{p} not found: `dfer evaluate` writes it (features, probs, labels); panel left empty")
        return None
    return np.load(p)


def _mean_metric(root: Path, payload: dict, cell: dict, metric: str, evals: dict | None = None) -> float:
    """The mean of one metric over a series' runs (nan when none has it); ``evals`` caches the eval.json files."""
    evals = {} if evals is None else evals
    vs = []
    for h in cell["runs"]:
        if h not in evals:
            evals[h] = _eval(root, payload, h)
        if evals[h] and (v := metric_value(evals[h], metric, cell["dataset"], cell["dataset"])) is not None:
            vs.append(v)
    return float(np.mean(vs)) if vs else np.nan


def draw(payload: dict, out: str | Path, root: str | Path = ".", kind: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dfer.data.labels import CLASSES

    root, out = Path(root), Path(out)
    kind = kind or payload.get("kind")
    cells = [c for c in _series(payload) if not c.get("not_run")]  # panels the preset leaves out are dropped
    panels = list(dict.fromkeys(c["block"] or c["dataset"] for c in cells))
    if kind == "per_class_bars":
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            series = [c for c in cells if (c["block"] or c["dataset"]) == panel]
            names = CLASSES[series[0]["dataset"]] + ["WAR"]
            width = 0.8 / len(series)
            for i, c in enumerate(series):
                evals: dict = {}
                vals = [_mean_metric(root, payload, c, "war" if name == "WAR" else f"class:{name}", evals)
                        for name in names]
                ax.bar(np.arange(len(names)) + i * width, vals, width, label=c["row"])
            ax.set_xticks(np.arange(len(names)) + width * (len(series) - 1) / 2, names, rotation=30)
            ax.set_ylabel("accuracy (%)")
            ax.set_title(panel)
            ax.legend()
    elif kind in ("tsne", "prob_dist"):
        fig, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 4.5), squeeze=False)
        for ax, c in zip(axes[0], cells):
            ax.set_title(c["row"])
            pred = _predictions(root, payload, c["runs"][0]) if c["runs"] else None
            if pred is None:
                ax.text(0.5, 0.5, "predictions.npz missing", ha="center", va="center")
                continue
            labels = np.asarray(pred["labels"]).astype(int)
            classes = CLASSES[c["dataset"]]
            if kind == "tsne":
                from sklearn.manifold import TSNE

                feats = np.asarray(pred["features"], dtype=np.float32)
                xy = TSNE(n_components=2, perplexity=min(30.0, max(2.0, (len(feats) - 1) / 3)),
                          init="pca", random_state=0).fit_transform(feats)
                for k, name in enumerate(classes):
                    m = labels == k
                    if m.any():
                        ax.scatter(xy[m, 0], xy[m, 1], s=6, label=name)
                ax.legend(fontsize=7, markerscale=2)
                ax.set_xticks([]), ax.set_yticks([])
            else:
                probs = np.asarray(pred["probs"], dtype=np.float64)
                true_p = probs[np.arange(len(labels)), labels]
                ax.hist(true_p, bins=20, range=(0, 1), alpha=0.6, label="p(true class)")
                ax.hist(probs.max(1), bins=20, range=(0, 1), alpha=0.6, label="max p")
                ax.set_xlabel("probability")
                ax.set_ylabel("test samples")
                ax.legend()
    elif kind == "metric_curve":   # one setting per series (x, in order), UAR and WAR of its runs (y)
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [c["row"] for c in cells]
        evals: dict = {}
        for metric in ("uar", "war"):
            ys = [_mean_metric(root, payload, c, metric, evals) for c in cells]
            ax.plot(xs, ys, marker="o", label=metric.upper())
            for x, y in zip(xs, ys):
                ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xlabel("setting")
        ax.set_ylabel("%")
        ax.legend()
    else:
        raise ConfigError(f"unknown figure kind {kind!r} (per_class_bars | tsne | prob_dist | metric_curve)")
    fig.suptitle("\n".join(textwrap.wrap(payload.get("title", ""), 70)))   # the 6-inch figures clip a long title
    note = textwrap.wrap(payload.get("note") or "", 110)
    if note:  # e.g. the dataset the preset reads instead (params.yaml tables.read_on)
        fig.text(0.5, 0.01, "\n".join(note), ha="center", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.03 * len(note), 1, 1))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("figure", __doc__)
    ap.add_argument("figure", help="figure id from workflow/tables.yaml, e.g. fig_per_class")
    ap.add_argument("--plan", default=None, help="the figure's plan JSON (default: plan from params.yaml now)")
    ap.add_argument("--out", default=None, help="PNG path (default: results/figures/<figure>.png)")
    ap.add_argument("--root", default=".", help="project root the run folders are relative to")
    args = ap.parse_args(argv)
    if args.plan:
        if not Path(args.plan).is_file():
            raise ConfigError(f"{args.plan}: figure plan not found; run `snakemake results/figures/{args.figure}.png`")
        payload = json.loads(Path(args.plan).read_text())
    else:
        from dfer.workflow.tables import payload_from_params

        payload = payload_from_params(args.figure)
    if "kind" not in payload:
        from dfer.workflow.plan import load_tables

        payload["kind"] = (load_tables().get("figures") or {}).get(args.figure, {}).get("kind")
    png = draw(payload, args.out or f"results/figures/{args.figure}.png", args.root)
    print(png)
    from dfer.tracking import file_table

    # a figure's runs are filed under it like a table's (UniLearn's Fig. 3a has runs no table shows)
    file_table(args.figure, payload["title"], payload["runs"], payload["tracking"], [png], root=args.root)
    return 0
