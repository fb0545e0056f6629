"""Classification metrics of the DFER protocol: UAR, WAR, per-class accuracy, F1, confusion matrix.

UAR (unweighted average recall) = mean over classes of the per-class recall (the diagonal of the
row-normalised confusion matrix); WAR (weighted average recall) = overall accuracy. Classes absent from the
ground truth are left out of UAR (their recall is undefined) and reported as ``None`` per class; the
official ``merge()`` divides by zero there. Values are fractions in [0, 1].
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of samples of true class i predicted as j (int64 ``[K, K]``)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in length")
    bad = (y_true < 0) | (y_true >= num_classes) | (y_pred < 0) | (y_pred >= num_classes)
    if bad.any():
        raise ValueError(f"labels outside 0..{num_classes - 1}: {sorted(set(y_true[bad]) | set(y_pred[bad]))}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class_recall(cm: np.ndarray) -> list[float | None]:
    """Recall (= per-class accuracy) of each class; None for a class with no ground-truth sample."""
    support = cm.sum(axis=1)
    return [float(cm[i, i] / support[i]) if support[i] else None for i in range(len(cm))]


def uar(cm: np.ndarray) -> float:
    recalls = [r for r in per_class_recall(cm) if r is not None]
    return float(np.mean(recalls)) if recalls else 0.0


def war(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def f1_scores(cm: np.ndarray) -> dict[str, float]:
    """Macro and weighted (by support) F1 over the classes present in truth or prediction."""
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = denom > 0
    macro = float(f1[present].mean()) if present.any() else 0.0
    weighted = float((f1 * support).sum() / support.sum()) if support.sum() else 0.0
    return {"macro_f1": macro, "weighted_f1": weighted}


def summarize(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    """Every number of the protocol: ``uar, war, per_class {name: acc}, macro_f1, weighted_f1, confusion``."""
    cm = confusion_matrix(y_true, y_pred, len(classes))
    return {"uar": uar(cm), "war": war(cm),
            "per_class": dict(zip(classes, per_class_recall(cm))),
            **f1_scores(cm), "num_samples": int(cm.sum()),
            "classes": list(classes), "confusion": cm.tolist()}


def average_views(probs: np.ndarray, sample_index: Sequence[int], num_samples: int) -> np.ndarray:
    """Mean of the per-view softmax probabilities of each sample (official ``merge()``).

    ``probs [N_views, K]`` with ``sample_index[i]`` the sample of view i -> ``[num_samples, K]``.
    Every sample must have at least one view.
    """
    probs = np.asarray(probs, dtype=np.float64)
    idx = np.asarray(sample_index, dtype=np.int64)
    counts = np.bincount(idx, minlength=num_samples)
    if len(counts) > num_samples or (counts == 0).any():
        missing = np.flatnonzero(counts[:num_samples] == 0)[:5].tolist()
        raise ValueError(f"views do not cover samples 0..{num_samples - 1} (e.g. missing {missing})")
    out = np.zeros((num_samples, probs.shape[1]), dtype=np.float64)
    np.add.at(out, idx, probs)
    return out / counts[:, None]


def plot_confusion(cm: np.ndarray | list, classes: Sequence[str], path, title: str = "") -> None:
    """Row-normalised confusion matrix with counts, class names on both axes (matplotlib PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    support = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, support, out=np.zeros(cm.shape, dtype=np.float64), where=support > 0)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * k, 0.8 + 0.7 * k), dpi=120)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{100 * norm[i, j]:.0f}%\n({cm[i, j]})", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
