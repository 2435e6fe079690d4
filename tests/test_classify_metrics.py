"""Classification scores against scikit-learn, the independent reference.

``ndwconv.recipes.tasks.classify.metrics`` is plain numpy; each score is checked here
against ``sklearn.metrics`` on random labels and logits (with classes that are never
predicted and classes absent from the labels, where the zero-division conventions matter).
"""

from __future__ import annotations

import numpy as np
import pytest

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="the reference is scikit-learn")

from ndwconv.recipes.tasks.classify.metrics import (  # noqa: E402
    classification_scores,
    confusion_matrix,
    from_confusion,
    top_confusions,
    top_k_accuracy,
)


def _case(seed: int, n: int, classes: int, missing: bool):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), y] += rng.uniform(0, 2.5, n)  # better than chance, not perfect
    if missing:  # class 0 never predicted, the last class never in the labels
        logits[:, 0] = -1e9
        y[y == classes - 1] = 1
    return y, logits


CASES = [
    (0, 500, 3, False),
    (1, 400, 10, False),
    (2, 300, 10, True),
    (3, 2000, 100, False),
    (4, 60, 7, True),
]


@pytest.mark.parametrize(("seed", "n", "classes", "missing"), CASES)
def test_scores_match_scikit_learn(seed, n, classes, missing):
    y, logits = _case(seed, n, classes, missing)
    pred = logits.argmax(1)
    labels = list(range(classes))
    ours = classification_scores(logits, y, classes)
    np.testing.assert_array_equal(
        np.array(ours["confusion"]), sklearn_metrics.confusion_matrix(y, pred, labels=labels)
    )
    assert ours["accuracy"] == pytest.approx(100 * sklearn_metrics.accuracy_score(y, pred))
    for ours_key, average in (
        ("macro_precision", "precision"),
        ("macro_recall", "recall"),
        ("macro_f1", "f1"),
    ):
        reference = getattr(sklearn_metrics, f"{average}_score")(
            y, pred, labels=labels, average="macro", zero_division=0
        )
        assert ours[ours_key] == pytest.approx(100 * reference, abs=1e-9), ours_key
    per_class = sklearn_metrics.recall_score(y, pred, labels=labels, average=None, zero_division=0)
    np.testing.assert_allclose(ours["per_class_accuracy"], 100 * per_class, atol=1e-9)
    per_f1 = sklearn_metrics.f1_score(y, pred, labels=labels, average=None, zero_division=0)
    np.testing.assert_allclose(ours["per_class_f1"], 100 * per_f1, atol=1e-9)
    if classes > 5:
        top5 = sklearn_metrics.top_k_accuracy_score(y, logits, k=5, labels=labels)
        assert ours["top5"] == pytest.approx(100 * top5)
    else:
        assert "top5" not in ours


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_matches_scikit_learn(k):
    y, logits = _case(7, 300, 8, False)
    reference = sklearn_metrics.top_k_accuracy_score(y, logits, k=k, labels=list(range(8)))
    assert top_k_accuracy(logits, y, k) == pytest.approx(reference)


def test_confusion_matrix_counts_by_hand_and_top_confusions():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = np.array([0, 2, 2, 1, 0, 2, 1, 1, 1])
    cm = confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 0, 2], [1, 1, 0], [0, 3, 1]]
    assert cm.dtype == np.int64
    assert top_confusions(cm, 2) == [(2, 1, 3), (0, 2, 2)]
    assert top_confusions(np.eye(3, dtype=np.int64), 5) == []
    scores = from_confusion(cm)
    assert scores["accuracy"] == pytest.approx(100 * 3 / 9)


def test_bad_labels_are_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="y_true holds labels outside 0 … 2"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="y_pred must be a 1-D array of integer labels"):
        confusion_matrix(np.array([0, 1]), np.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)
    with pytest.raises(ValueError, match="k must be in 1 … 3"):
        top_k_accuracy(np.zeros((2, 3)), np.array([0, 1]), 4)
    with pytest.raises(ValueError, match=r"scores must be N × 4"):
        classification_scores(np.zeros((2, 3)), np.array([0, 1]), 4)
