"""Classification scores in numpy: confusion matrix, top-k, macro precision/recall/F1.

Conventions are scikit-learn's (the tests check each against it): the confusion matrix
has true classes in rows and predicted classes in columns; precision, recall and F1 are
computed per class over every class ``0 … C − 1`` and averaged without weights ("macro"),
a class with no predictions (precision) or no samples (recall) scoring 0
(``zero_division=0``); macro F1 is the mean of the per-class F1 scores, not the F1 of the
macro precision and recall. Per-class accuracy is the per-class recall. The code is a few
lines of numpy, so the recipes need no scikit-learn at run time.

Example:
    >>> import numpy as np
    >>> cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
    >>> cm.tolist()
    [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    >>> scores = from_confusion(cm)
    >>> round(scores["accuracy"], 2), round(scores["macro_f1"], 2)
    (75.0, 77.78)
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "classification_scores",
    "confusion_matrix",
    "from_confusion",
    "top_confusions",
    "top_k_accuracy",
]


def _labels(y: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D array of integer labels, got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} holds labels outside 0 … {num_classes - 1}")
    return y.astype(np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``C × C`` counts, ``[i, j]`` = samples of class ``i`` predicted as ``j`` (int64)."""
    t = _labels(y_true, num_classes, "y_true")
    p = _labels(y_pred, num_classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} and {p.size}")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def top_k_accuracy(scores: np.ndarray, y_true: np.ndarray, k: int) -> float:
    """Fraction (0–1) of samples whose class is among the ``k`` highest ``scores``
    (``scores``: ``N × C`` logits or probabilities)."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be N × C, got shape {scores.shape}")
    t = _labels(y_true, scores.shape[1], "y_true")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be in 1 … {scores.shape[1]}, got {k}")
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float((top == t[:, None]).any(axis=1).mean()) if t.size else 0.0


def from_confusion(cm: np.ndarray) -> dict[str, Any]:
    """Scores of a confusion matrix, in percent: ``accuracy``, ``macro_precision``,
    ``macro_recall``, ``macro_f1``, and the lists ``per_class_accuracy``,
    ``per_class_precision``, ``per_class_f1``."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    total = cm.sum()
    return {
        "accuracy": 100.0 * float(tp.sum() / total) if total else 0.0,
        "macro_precision": 100.0 * float(precision.mean()),
        "macro_recall": 100.0 * float(recall.mean()),
        "macro_f1": 100.0 * float(f1.mean()),
        "per_class_accuracy": (100.0 * recall).tolist(),
        "per_class_precision": (100.0 * precision).tolist(),
        "per_class_f1": (100.0 * f1).tolist(),
    }


def classification_scores(
    scores: np.ndarray, y_true: np.ndarray, num_classes: int
) -> dict[str, Any]:
    """Everything a final evaluation reports (percent): ``from_confusion``'s scores, the
    confusion matrix (``confusion``, nested lists) and ``top5`` when ``num_classes`` > 5.
    The prediction is the arg-max of ``scores`` (``N × num_classes``)."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != num_classes:
        raise ValueError(f"scores must be N × {num_classes}, got shape {scores.shape}")
    cm = confusion_matrix(y_true, scores.argmax(axis=1), num_classes)
    result = from_confusion(cm)
    if num_classes > 5:
        result["top5"] = 100.0 * top_k_accuracy(scores, y_true, 5)
    result["confusion"] = cm.tolist()
    return result


def top_confusions(cm: np.ndarray, k: int = 10) -> list[tuple[int, int, int]]:
    """The ``k`` largest off-diagonal counts as ``(true, predicted, count)``, largest
    first (ties: by true, then predicted class); zero counts are left out.

    Example:
        >>> top_confusions(np.array([[5, 2, 0], [3, 4, 2], [0, 0, 9]]), k=2)
        [(1, 0, 3), (0, 1, 2)]
    """
    cm = np.asarray(cm, dtype=np.int64)
    off = [(int(i), int(j), int(cm[i, j])) for i, j in zip(*np.nonzero(cm), strict=True) if i != j]
    off.sort(key=lambda c: (-c[2], c[0], c[1]))
    return off[:k]
