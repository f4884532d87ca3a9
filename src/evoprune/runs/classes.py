"""Per-class results of a run: precision, recall and F1 of the shipped head and of the
not-pruned head on the held-out images, and their confusion matrices.

Accuracy alone hides where pruning costs: a head can keep its accuracy while one small class
loses most of its recall. These fields go into ``result.json`` (``per_class``, ``confusion``,
``reference_confusion``); ``confusion.png`` draws the matrices and ``evoprune show`` prints the
classes whose F1 changed most.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evoprune.model.head import CompactHead, predict_proba

#: The per-class scores of one head, in the order of ``per_class`` entries' keys.
SCORES = ("precision", "recall", "f1")


def class_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Precision, recall and F1 of every class (0 where undefined: a class never predicted has
    precision 0) and its support, from scikit-learn."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(n_classes), zero_division=0
    )
    return {"precision": p, "recall": r, "f1": f, "support": s}


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> list[list[int]]:
    """Counts with true classes as rows and predicted classes as columns."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes)).astype(int).tolist()


def per_class_fields(
    head: CompactHead,
    reference: CompactHead,
    X_test: np.ndarray,
    y_test: np.ndarray,
    classes: Sequence[str],
) -> dict:
    """``result.json``'s per-class fields for the shipped ``head`` and the not-pruned
    ``reference``: ``per_class`` (one entry per class: support, precision, recall, f1 and the
    same with ``reference_``) and the two confusion matrices."""
    n = len(classes)
    y_test = np.asarray(y_test)
    pred = predict_proba(head, X_test).argmax(axis=1)
    ref_pred = predict_proba(reference, X_test).argmax(axis=1)
    ours, ref = class_scores(y_test, pred, n), class_scores(y_test, ref_pred, n)
    rows = []
    for k, name in enumerate(classes):
        row: dict = {"class": str(name), "support": int(ours["support"][k])}
        row.update({s: float(ours[s][k]) for s in SCORES})
        row.update({f"reference_{s}": float(ref[s][k]) for s in SCORES})
        rows.append(row)
    return {
        "per_class": rows,
        "confusion": confusion(y_test, pred, n),
        "reference_confusion": confusion(y_test, ref_pred, n),
    }


def f1_changes(per_class: Sequence[dict], most: int = 3) -> list[dict]:
    """Classes ordered from the largest F1 loss to the largest gain (pruned minus not pruned),
    each with its ``change``; with more than ``2 * most`` classes only the ``most`` largest
    losses and the ``most`` largest gains."""
    rows = sorted(
        ({**row, "change": row["f1"] - row["reference_f1"]} for row in per_class),
        key=lambda row: (row["change"], row["class"]),
    )
    if len(rows) <= 2 * most:
        return rows
    return rows[:most] + rows[-most:]
