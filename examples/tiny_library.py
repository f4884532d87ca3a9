"""evoprune as a library on a tiny set: scikit-learn's 8x8 digits as features.

An EvoPruneClassifier evolves which of the 64 pixel features its head keeps (encoding ``fs``),
retrains the best mask's head on all training digits and is scored on held-out digits. Runs in
seconds on a CPU and downloads nothing: ``python examples/tiny_library.py``.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from evoprune import EvoPruneClassifier


def main(evaluations: int = 24, seed: int = 0) -> dict:
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32) / 16.0
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed
    )
    settings = dict(hidden_size=32, population=8, evaluations=evaluations, random_state=seed)
    clf = EvoPruneClassifier(encoding="fs", **settings).fit(X_train, y_train)
    out = {
        "evaluations": len(clf.history_),
        "features kept": int(clf.best_mask_.sum()),
        "of": int(clf.best_mask_.size),
        "pruned head, held-out accuracy": float(clf.score(X_test, y_test)),
        "fitness (validation split)": float(clf.best_fitness_),
    }
    for name, value in out.items():
        print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    return out


if __name__ == "__main__":
    main()
