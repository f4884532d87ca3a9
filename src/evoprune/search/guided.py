"""Knowledge of units in the search: a start on the rankings' curve and variation guided by
per-unit scores (after SparseEA, Tian et al., IEEE TEVC 24(2), 2020).

Everything here works on numpy arrays: the per-unit scores (one float per gene, higher: more
worth keeping) are computed elsewhere (:mod:`evoprune.unitscores`, from the fitness split's
training part) and handed in. Every random choice takes the run's ``numpy.random.Generator``.

- :func:`ranked_population`: the paper's density-sampled masks mixed with the top-k masks of
  every ranking at sizes spread log-uniformly from one unit to all of them.
- :class:`UnitScores`: the prior (the rankings' mean percentile rank) blended, as evaluations
  come in, with what they taught: a ridge model of fitness on the mask bits.
- :func:`guided_variation`: guided moves on a child (1 + Poisson(1) of them): switch on
  high-scoring off units, switch off low-scoring on units (score-weighted probabilities), or
  swap a kept unit for a dropped one at constant size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.linalg

from evoprune.errors import ConfigError
from evoprune.search.operators import init_population

#: The share of the initial population taken from the rankings (the rest: the paper's masks).
RANKED_FRACTION = 0.5
#: Exponent of the score weights: a unit of percentile rank s is drawn with weight s**GAMMA
#: (switching on) or (1 - s)**GAMMA (switching off); 6 puts 87 % of the mass on the top quarter.
GAMMA = 6.0
#: Ridge penalty of the model of fitness on mask bits.
RIDGE = 1.0
#: The learned scores' weight is LEARNED_MAX * n / (n + LEARNED_HALF) after n distinct masks.
LEARNED_MAX = 0.5
LEARNED_HALF = 50.0
#: The variations a run can use: the paper's operators, or the guided ones.
VARIATIONS = ("paper", "guided")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of exactly ``k`` highest ``scores`` (NaN lowest, ties to the lower index)."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    if not 0 <= int(k) <= s.size:
        raise ConfigError(f"cannot keep {k} of {s.size} units")
    mask = np.zeros(s.size, dtype=bool)
    mask[np.argsort(-s, kind="stable")[: int(k)]] = True
    return mask


def percentile_ranks(scores: np.ndarray) -> np.ndarray:
    """Each score's rank scaled to [0, 1] (1: the highest); ties share their mean rank, NaN
    ranks lowest. Scores of different scales become comparable."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64).ravel(), nan=-np.inf)
    n = s.size
    if n <= 1:
        return np.ones(n)
    order = np.argsort(s, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n, dtype=np.float64)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    if counts.max() > 1:  # ties: the mean rank of their group
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / counts)[inverse]
    return ranks / (n - 1)


def prior_scores(rankings: Mapping[str, np.ndarray]) -> np.ndarray:
    """One score per gene: the mean over ``rankings`` of each gene's percentile rank."""
    if not rankings:
        raise ConfigError("guided search needs at least one ranking of the units")
    return np.mean([percentile_ranks(s) for s in rankings.values()], axis=0)


def log_uniform_sizes(rng: np.random.Generator, n: int, n_genes: int) -> np.ndarray:
    """``n`` sizes spread log-uniformly over [1, n_genes]: one drawn in each of ``n`` equal
    strata of log size (ascending), so small sizes are as well covered as large ones."""
    u = (np.arange(n) + rng.random(n)) / max(n, 1)
    return np.clip(np.rint(np.exp(u * np.log(n_genes))), 1, n_genes).astype(int)


def exact_sizes(sizes: Sequence[float], n_genes: int) -> list[int]:
    """Gene counts of ``sizes`` (fractions): ``max(1, floor(fraction * n_genes))`` each,
    ascending, without repeats."""
    return sorted({max(1, int(np.floor(float(f) * int(n_genes) + 1e-9))) for f in sizes})


def ranked_population(
    rng: np.random.Generator,
    size: int,
    n_genes: int,
    rankings: Mapping[str, np.ndarray],
    density: tuple[float, float] = (0.0, 1.0),
    ranked_fraction: float = RANKED_FRACTION,
    sizes: Sequence[float] = (),
) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """``size`` chromosomes: first ``round(ranked_fraction * size)`` top-k masks of the
    rankings (sizes from :func:`log_uniform_sizes`, the rankings taken in turn), then the
    paper's density-sampled masks (:func:`init_population` over ``density``).

    ``sizes`` (fractions of the genes): before those, every ranking's top-k at exactly
    ``k = max(1, floor(fraction * n_genes))`` for each, the smallest size first (repeats
    skipped; at most ``size`` of them), so the search starts where every ranking stands at
    the sizes a user asked for; they count toward the ranked rows.

    A top-k mask that repeats an earlier one is replaced by the next ranking's at the same
    size, and when every ranking repeats, by k random units: each ranked row has exactly the
    size drawn. Returns the population and, per ranked row, (ranking name, k) (``"random"``
    where the fallback was used)."""
    names = list(rankings)
    if not names:
        raise ConfigError("init='ranked' needs at least one ranking of the units")
    check_rankings(rankings, n_genes)
    rows: list[np.ndarray] = []
    drawn: list[tuple[str, int]] = []
    seen: set[bytes] = set()
    for k in exact_sizes(sizes, n_genes):
        for name in names:
            row = top_k(rankings[name], k).astype(np.uint8)
            if row.tobytes() not in seen and len(rows) < int(size):
                seen.add(row.tobytes())
                rows.append(row)
                drawn.append((name, k))
    n_ranked = min(int(size), int(round(float(ranked_fraction) * int(size))))
    drawn_sizes = log_uniform_sizes(rng, max(0, n_ranked - len(rows)), n_genes)
    n_ranked = max(n_ranked, len(rows))
    for j, k in enumerate(drawn_sizes):
        for step in range(len(names)):
            name = names[(j + step) % len(names)]
            row = top_k(rankings[name], int(k)).astype(np.uint8)
            if row.tobytes() not in seen:
                break
        else:
            name = "random"
            row = np.zeros(n_genes, dtype=np.uint8)
            row[rng.choice(n_genes, size=int(k), replace=False)] = 1
        seen.add(row.tobytes())
        rows.append(row)
        drawn.append((name, int(k)))
    rest = init_population(rng, int(size) - n_ranked, n_genes, density)
    pop = np.concatenate([np.array(rows, dtype=np.uint8).reshape(-1, n_genes), rest])
    return pop, drawn


class UnitScores:
    """Per-gene scores for guided variation: ``prior`` (e.g. :func:`prior_scores`) blended with
    a ridge model of fitness on the mask bits, fitted on every distinct mask told so far.

    The model's coefficients become percentile ranks and weigh
    ``LEARNED_MAX * n / (n + LEARNED_HALF)`` after ``n`` distinct masks, so the prior leads
    until evaluations have something to say. Refits happen when the masks grew by an eighth
    since the last fit (a handful of solves over a whole run); the masks told since are added
    to the sums the fit needs in one product at the fit, so a fit costs one L x L product and
    solve whatever the history's length."""

    def __init__(self, prior: np.ndarray, ridge: float = RIDGE):
        self.prior = np.asarray(prior, dtype=np.float64).ravel()
        if not np.all(np.isfinite(self.prior)):
            raise ConfigError("unit scores must be finite numbers")
        self.ridge = float(ridge)
        L = self.prior.size
        self._seen: set[bytes] = set()
        self._n = 0
        self._sx = np.zeros(L)
        self._sy = 0.0
        self._sxx = np.zeros((L, L))
        self._sxy = np.zeros(L)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._n_fit = 0
        self.learned = np.full(L, 0.5)
        self.current = self.prior.copy()

    @property
    def n(self) -> int:
        """Distinct masks with a fitness told so far."""
        return self._n

    @property
    def weight(self) -> float:
        """The learned scores' share of :attr:`current`."""
        return LEARNED_MAX * self._n / (self._n + LEARNED_HALF)

    def tell(self, chromosomes: np.ndarray, fitness: np.ndarray) -> None:
        """Learn from masks and their fitness (higher is better; NaN rows and masks told
        before are skipped)."""
        chromosomes = np.atleast_2d(np.asarray(chromosomes, dtype=np.uint8))
        fitness = np.asarray(fitness, dtype=np.float64).ravel()
        new = []
        for i, (row, f) in enumerate(zip(chromosomes, fitness)):
            key = row.tobytes()
            if np.isfinite(f) and key not in self._seen:
                self._seen.add(key)
                new.append(i)
        if new:
            self._pending.append((chromosomes[new].copy(), fitness[new].copy()))
            self._n += len(new)
        if self._n >= 2 and self._n - self._n_fit >= max(1, self._n_fit // 8):
            self._fit()

    def _accumulate(self) -> None:
        """Add the masks told since the last fit to the sums, in one product (the sums are
        needed only at a fit; one L x L product per fit, not one per told mask)."""
        if not self._pending:
            return
        X = np.concatenate([x for x, _ in self._pending]).astype(np.float64)
        y = np.concatenate([f for _, f in self._pending])
        self._pending = []
        self._sx += X.sum(axis=0)
        self._sy += float(y.sum())
        self._sxx += X.T @ X
        self._sxy += X.T @ y

    def _fit(self) -> None:
        self._accumulate()
        n = self._n
        mx, my = self._sx / n, self._sy / n
        cov = self._sxx - n * np.outer(mx, mx)
        b = self._sxy - n * mx * my
        cov[np.diag_indices_from(cov)] += self.ridge
        coef = scipy.linalg.cho_solve(scipy.linalg.cho_factor(cov), b)  # covariance + ridge
        # a gene never varied has no evidence either way: the middle rank
        varied = (self._sx > 0) & (self._sx < n)
        learned = np.full(coef.size, 0.5)
        learned[varied] = percentile_ranks(coef[varied])
        self.learned = learned
        w = self.weight
        self.current = (1.0 - w) * self.prior + w * self.learned
        self._n_fit = n


def _pick(rng: np.random.Generator, candidates: np.ndarray, weights: np.ndarray) -> int:
    """One of ``candidates`` drawn with probability proportional to ``weights``."""
    w = np.asarray(weights, dtype=np.float64) + 1e-12
    return int(candidates[rng.choice(candidates.size, p=w / w.sum())])


def guided_flip(
    rng: np.random.Generator, child: np.ndarray, scores: np.ndarray, switch_on: bool
) -> np.ndarray:
    """A copy of ``child`` with one off unit switched on (drawn with weight score**GAMMA) or
    one on unit switched off (weight (1 - score)**GAMMA); the last unit is never switched off
    and a full mask is never grown."""
    out = child.copy()
    on = np.flatnonzero(out)
    off = np.flatnonzero(out == 0)
    s = np.clip(scores, 0.0, 1.0)
    if switch_on and off.size:
        out[_pick(rng, off, s[off] ** GAMMA)] = 1
    elif not switch_on and on.size > 1:
        out[_pick(rng, on, (1.0 - s[on]) ** GAMMA)] = 0
    return out


def guided_swap(rng: np.random.Generator, child: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """A copy of ``child`` with a kept low-scoring unit exchanged for a dropped high-scoring
    one (score-weighted draws as in :func:`guided_flip`): the size does not change."""
    out = child.copy()
    on = np.flatnonzero(out)
    off = np.flatnonzero(out == 0)
    if on.size and off.size:
        s = np.clip(scores, 0.0, 1.0)
        out[_pick(rng, on, (1.0 - s[on]) ** GAMMA)] = 0
        out[_pick(rng, off, s[off] ** GAMMA)] = 1
    return out


def guided_variation(rng: np.random.Generator, child: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``child`` (a copy) after 1 + Poisson(1) guided moves, each with probability 1/2 a
    :func:`guided_swap`, else a :func:`guided_flip` switching on or off (1/2 each)."""
    out = np.asarray(child, dtype=np.uint8).copy()
    for _ in range(1 + int(rng.poisson(1.0))):
        if rng.random() < 0.5:
            out = guided_swap(rng, out, scores)
        else:
            out = guided_flip(rng, out, scores, switch_on=bool(rng.random() < 0.5))
    return out


def check_rankings(rankings: Mapping[str, np.ndarray], n_genes: int) -> None:
    """ConfigError unless every ranking has one finite-or-NaN score per gene."""
    for name, scores in rankings.items():
        if np.shape(scores) != (int(n_genes),):
            raise ConfigError(
                f"ranking {name!r} has {np.size(scores)} scores for {n_genes} genes; "
                "give one score per gene"
            )


def check_ranked_init(init: str | float, rankings: Mapping | None) -> bool:
    """Whether ``init`` is ``ranked`` (ConfigError when it is and there are no rankings)."""
    ranked = str(init).strip() == "ranked"
    if ranked and not rankings:
        raise ConfigError(
            "init='ranked' needs rankings of the units (gene scores); pass rankings= "
            "or use init='random'"
        )
    return ranked


def check_variation(variation: str, rankings: Sequence[str] | Mapping | None) -> str:
    """``variation`` if known and, for ``guided``, given rankings; else ConfigError."""
    if variation not in VARIATIONS:
        raise ConfigError(
            f"variation={variation!r} is unknown; choose one of {', '.join(VARIATIONS)}"
        )
    if variation == "guided" and not rankings:
        raise ConfigError(
            "variation='guided' needs per-unit scores (rankings of the units the genes "
            "switch); pass them, or use variation='paper'"
        )
    return variation
