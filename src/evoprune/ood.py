"""Out-of-distribution (OOD) detection by a head: scores from its logits and the metrics that
judge them (AUROC, FPR at 95 % TPR). The OOD images to judge them on (built-in sets, or the
user's folder or CSV) are in :mod:`evoprune.data.ood_images`.

Scores follow one convention: HIGHER = MORE IN-DISTRIBUTION, so in-distribution images are the
positive class of every metric.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from numbers import Real
from typing import Any

import numpy as np
from scipy.special import logsumexp, softmax

from evoprune.errors import ConfigError

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------- scores


def _as_logits(logits: Any) -> np.ndarray:
    if hasattr(logits, "detach"):  # a torch tensor, without importing torch here
        logits = logits.detach().cpu().numpy()
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] == 0:
        raise ConfigError(f"logits must be an (N images, C classes) matrix, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ConfigError("logits contain NaN or infinite values; check the head's outputs")
    return z


def _check_temperature(T: float) -> float:
    if isinstance(T, bool) or not isinstance(T, Real) or not math.isfinite(T) or T <= 0:
        raise ConfigError(f"temperature T must be a finite number > 0, got {T!r}")
    return float(T)


def energy_score(logits, T: float = 1.0) -> np.ndarray:
    """Negative free energy T * logsumexp(logits / T), (N, C) -> (N,).

    Unlike the softmax it keeps the logits' magnitude, which tends to separate unfamiliar
    inputs better (Liu et al., 2020); the default OOD score.
    """
    T = _check_temperature(T)
    return T * logsumexp(_as_logits(logits) / T, axis=1)


def msp_score(logits) -> np.ndarray:
    """Maximum softmax probability, (N, C) -> (N,): the baseline OOD score."""
    return softmax(_as_logits(logits), axis=1).max(axis=1)


def temperature_score(logits, T: float = 1000.0) -> np.ndarray:
    """Maximum softmax probability of logits / T, (N, C) -> (N,).

    A large T spreads the softmax so the score reflects logit gaps rather than saturating
    at 1 (the temperature part of ODIN, without input perturbation).
    """
    T = _check_temperature(T)
    return softmax(_as_logits(logits) / T, axis=1).max(axis=1)


OOD_SCORES: dict[str, Callable[[Any], np.ndarray]] = {
    "energy": energy_score,
    "msp": msp_score,
    "temperature": temperature_score,
}
"""OOD score name -> function(logits) -> (N,) scores, higher = more in-distribution."""

DEFAULT_OOD_SCORE = "energy"


def ood_score(name: str, logits) -> np.ndarray:
    """The OOD score ``name`` (a key of OOD_SCORES) of each row of ``logits``."""
    if name not in OOD_SCORES:
        raise ConfigError(f"unknown OOD score {name!r}; choose one of {', '.join(OOD_SCORES)}")
    return OOD_SCORES[name](logits)


# --------------------------------------------------------------------------------- metrics


def _scores(values, what: str) -> np.ndarray:
    s = np.asarray(values, dtype=np.float64).ravel()
    if s.size == 0:
        raise ConfigError(f"{what} is empty; both in- and out-of-distribution scores are needed")
    if not np.all(np.isfinite(s)):
        raise ConfigError(f"{what} contains NaN or infinite scores")
    return s


def _labelled(in_scores, out_scores) -> tuple[np.ndarray, np.ndarray]:
    s_in = _scores(in_scores, "in_scores")
    s_out = _scores(out_scores, "out_scores")
    y = np.concatenate([np.ones(s_in.size), np.zeros(s_out.size)])
    return y, np.concatenate([s_in, s_out])


def auroc(in_scores, out_scores) -> float:
    """Area under the ROC curve of telling in- from out-of-distribution by the score.

    In-distribution is the positive class: 1 = every in-distribution image scores above every
    OOD image, 0.5 = chance, 0 = reversed. Ties count half (scikit-learn's roc_auc_score).
    """
    from sklearn.metrics import roc_auc_score

    y, s = _labelled(in_scores, out_scores)
    return float(roc_auc_score(y, s))


def fpr_at_95_tpr(in_scores, out_scores, tpr: float = 0.95) -> float:
    """Fraction of OOD images accepted at the threshold that keeps ``tpr`` of in-distribution.

    The threshold is the highest score t with at least 95 % of in-distribution scores >= t;
    an image is accepted as in-distribution when its score is >= t, so OOD images whose score
    EQUALS the threshold count as false positives (the pessimistic side of a tie). Lower is
    better; 0 = no OOD image gets through.
    """
    from sklearn.metrics import roc_curve

    if isinstance(tpr, bool) or not isinstance(tpr, Real) or not 0.0 < float(tpr) <= 1.0:
        raise ConfigError(f"tpr must be a number in (0, 1], got {tpr!r}")
    y, s = _labelled(in_scores, out_scores)
    # roc_curve's thresholds decrease and it predicts positive for score >= threshold, so the
    # first point whose TPR reaches the target is the highest such threshold.
    fpr, tpr_curve, _ = roc_curve(y, s, drop_intermediate=False)
    i = int(np.argmax(tpr_curve >= float(tpr) - 1e-12))
    return float(fpr[i])
