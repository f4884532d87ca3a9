"""Ensembles of pruned heads from one Pareto front: voting over their class probabilities and a
greedy choice of members that are accurate together and disagree with each other.

Probabilities are stacked as (K, N, C): K heads, N images, C classes.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from evoprune.errors import ConfigError

VOTES: tuple[str, ...] = ("soft", "hard")


def _as_probas(probas) -> np.ndarray:
    P = np.asarray(probas, dtype=np.float64)
    if P.ndim != 3 or P.shape[0] == 0 or P.shape[2] == 0:
        raise ConfigError(
            "probas must be stacked as (heads K >= 1, images N, classes C >= 1), got shape "
            f"{P.shape}"
        )
    if not np.all(np.isfinite(P)):
        raise ConfigError("probas contain NaN or infinite values; check the heads' outputs")
    return P


def soft_vote(probas) -> np.ndarray:
    """Mean of the members' class probabilities, (K, N, C) -> (N, C).

    Averaging probabilities keeps each member's confidence, which is what the exported
    ensemble computes (one backbone pass, K heads, averaged probabilities).
    """
    return _as_probas(probas).mean(axis=0)


def hard_vote(probas) -> np.ndarray:
    """Majority class of the members' argmax predictions, (K, N, C) -> (N,) int64 labels.

    A tie between classes with equally many votes goes to the tied class with the largest
    probability summed over all members (the soft vote restricted to the tied classes), so
    an even number of members still gives one deterministic answer; an exact tie there too
    goes to the lower class index.
    """
    P = _as_probas(probas)
    votes = vote_counts(P)
    summed = P.sum(axis=0)
    tied = votes == votes.max(axis=1, keepdims=True)
    # Among the classes with the most votes, the largest summed probability wins.
    score = np.where(tied, summed, -np.inf)
    return np.argmax(score, axis=1).astype(np.int64)


def vote_counts(probas) -> np.ndarray:
    """(N, C) number of members whose argmax is each class: the hard vote's tally."""
    P = _as_probas(probas)
    K, N, C = P.shape
    pred = P.argmax(axis=2)  # (K, N)
    counts = np.zeros((N, C), dtype=np.int64)
    for k in range(K):
        counts[np.arange(N), pred[k]] += 1
    return counts


def ensemble_predict(probas, vote: str = "soft") -> np.ndarray:
    """Labels (N,) of the ensemble under ``vote`` ('soft' or 'hard')."""
    if vote == "soft":
        return soft_vote(probas).argmax(axis=1).astype(np.int64)
    if vote == "hard":
        return hard_vote(probas)
    raise ConfigError(f"unknown vote {vote!r}; choose soft or hard")


def _disagreement(candidate: np.ndarray, members: np.ndarray) -> float:
    """Mean over members of the fraction of positions where ``candidate`` differs."""
    return float(np.mean(candidate[None, :] != members))


def choose_members(val_probas, y_val, k: int, masks=None, vote: str = "soft") -> list[int]:
    """Pick ``k`` heads for an ensemble, greedily, on the validation (fitness) split.

    Start from the most accurate head; then repeatedly add the head that makes the ensemble's
    validation accuracy (under ``vote``) highest. Ties are broken by diversity, because
    members that err on different images are what an ensemble gains from: the candidate's
    mean disagreement (fraction of images with a different predicted class) with the chosen
    members, or, when ``masks`` (K, L) are given, its mean Hamming distance (fraction of genes
    that differ) to their masks. Remaining ties go to the lower index. Only the fitness split
    is used, so held-out images stay unseen.

    Parameters
    ----------
    val_probas : array (K, N, C)
        Each candidate head's class probabilities on the validation images.
    y_val : array (N,)
        Their true labels (0..C-1).
    k : int
        Number of members, 1 <= k <= K.
    masks : array (K, L), optional
        The candidates' 0/1 masks, to measure diversity by genes instead of predictions.
    vote : str
        'soft' or 'hard', as the ensemble will vote.

    Returns
    -------
    list of int
        Indices into the K candidates, in the order chosen.
    """
    P = _as_probas(val_probas)
    y, genes = _checked_choice(P, y_val, k, masks, vote)
    N = P.shape[1]
    pred = P.argmax(axis=2)  # (K, N)
    # diversity by genes when masks are given, else by predictions
    by = pred if genes is None else genes
    single = (pred == y[None, :]).mean(axis=1) if N else np.zeros(len(P))
    chosen = [int(np.argmax(single))]  # argmax: first (lowest index) of the most accurate
    while len(chosen) < k:
        chosen.append(_next_member(P, y, by, chosen, vote))
    return chosen


def _next_member(P: np.ndarray, y: np.ndarray, by: np.ndarray, chosen: list[int], vote: str) -> int:
    """The candidate that makes the ensemble most accurate; ties: the most diverse (mean
    disagreement of ``by`` rows with the chosen), then the lower index."""
    best: tuple[float, float, int] | None = None
    for c in range(len(P)):
        if c in chosen:
            continue
        labels = ensemble_predict(P[chosen + [c]], vote)
        acc = float((labels == y).mean()) if len(y) else 0.0
        key = (acc, _disagreement(by[c], by[chosen]), -c)
        if best is None or key > best:
            best = key
    assert best is not None  # k <= K: a candidate is left
    return -best[2]


def _checked_choice(
    P: np.ndarray, y_val, k: int, masks, vote: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The labels as a (N,) array and the masks as a (K, L) bool matrix (or None), after every
    check of :func:`choose_members`'s arguments."""
    K, N, C = P.shape
    if vote not in VOTES:
        raise ConfigError(f"unknown vote {vote!r}; choose soft or hard")
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ConfigError(f"the number of ensemble members must be an integer >= 1, got {k!r}")
    if k > K:
        raise ConfigError(
            f"cannot choose {k} ensemble members from {K} candidate head(s) on the front; "
            f"ask for at most {K} members"
        )
    y = np.asarray(y_val).ravel()
    if y.shape != (N,):
        raise ConfigError(f"y_val has {y.size} label(s) but val_probas has {N} image(s)")
    if N and (y.min() < 0 or y.max() >= C):
        raise ConfigError(f"y_val labels must be class indices 0..{C - 1}")
    if masks is None:
        return y, None
    genes = np.asarray(masks).astype(bool)
    if genes.ndim != 2 or genes.shape[0] != K:
        raise ConfigError(f"masks must be a (K={K}, L) 0/1 matrix, got shape {genes.shape}")
    return y, genes
