"""The GA's operators as small, separately testable functions on 0/1 numpy arrays.

Each takes a ``numpy.random.Generator`` so that every random choice flows from the run's seed.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

#: The paper code's fixed initial densities, selectable by name.
#: ``ranked`` starts on the rankings' curve (see :mod:`evoprune.search.guided`); its other
#: half is drawn like ``random``.
INIT_CHOICES = ("ranked", "random", "0.3", "0.4", "0.5", "0.6", "0.7", "0.3-0.7")


def parse_init(init: str | float) -> tuple[float, float]:
    """The (low, high) range that initial densities are drawn from for an ``init`` option.

    ``"random"`` is the paper's U(0, 1); a number is a fixed density; ``"a-b"`` is U(a, b);
    ``"ranked"`` draws its density-sampled half like ``"random"``.
    """
    text = str(init).strip()
    if text in ("random", "ranked"):
        return 0.0, 1.0
    try:
        if "-" in text:
            low, high = (float(v) for v in text.split("-", 1))
        else:
            low = high = float(text)
    except ValueError:
        raise ConfigError(
            f"init={init!r} is not understood; use 'ranked', 'random', a density in (0, 1] "
            "such as 0.5, or a range such as 0.3-0.7"
        ) from None
    if not (0.0 <= low <= high <= 1.0):
        raise ConfigError(f"init={init!r}: densities must satisfy 0 <= low <= high <= 1")
    return low, high


def init_population(
    rng: np.random.Generator, size: int, n_genes: int, density: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """``size`` chromosomes; each draws a density p in ``density`` and switches on exactly
    round(p * n_genes) genes at random positions (at least one, so no head is empty)."""
    low, high = density
    pop = np.zeros((size, n_genes), dtype=np.uint8)
    for row in pop:
        p = rng.uniform(low, high) if high > low else low
        k = min(n_genes, max(1, int(round(p * n_genes))))
        row[rng.choice(n_genes, size=k, replace=False)] = 1
    return pop


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.count_nonzero(a != b))


def nam_select(
    rng: np.random.Generator, population: np.ndarray, n_candidates: int = 3
) -> tuple[int, int]:
    """Negative assortative mating: a uniformly random first parent, and of ``n_candidates``
    other random members the one farthest (Hamming) from it as the second."""
    n = len(population)
    first = int(rng.integers(n))
    others = np.delete(np.arange(n), first)
    cands = rng.choice(others, size=min(n_candidates, len(others)), replace=False)
    dists = [hamming(population[first], population[c]) for c in cands]
    return first, int(cands[int(np.argmax(dists))])


def uniform_crossover(
    rng: np.random.Generator, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two children: each gene from either parent with probability 0.5; the second child takes
    the gene the first did not."""
    take_a = rng.random(a.size) < 0.5
    return np.where(take_a, a, b).astype(np.uint8), np.where(take_a, b, a).astype(np.uint8)


def mutate(rng: np.random.Generator, child: np.ndarray, probability: float) -> np.ndarray:
    """With ``probability``, a copy of ``child`` with one random gene flipped; else a copy."""
    out = child.copy()
    if rng.random() < probability:
        i = int(rng.integers(out.size))
        out[i] ^= 1
    return out


def rank_key(fitness: float, active: int) -> tuple[float, int]:
    """Sort key where smaller is better: higher fitness, then fewer active genes."""
    return (-float(fitness), int(active))


def replace_worst(
    population: np.ndarray, fitness: np.ndarray, children: np.ndarray, child_fitness: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Of the children and as many worst members, the best stay (ties: fewer active genes;
    full ties: the child). Returns the new population and fitness (copies)."""
    pop = population.copy()
    fit = fitness.astype(float).copy()
    k = len(children)
    if k == 0:
        return pop, fit
    order = sorted(range(len(pop)), key=lambda i: rank_key(fit[i], pop[i].sum()))
    worst = order[-k:]
    pool = [(children[j], float(child_fitness[j]), 0) for j in range(k)]
    pool += [(pop[i].copy(), float(fit[i]), 1) for i in worst]
    pool.sort(key=lambda item: rank_key(item[1], item[0].sum()) + (item[2],))
    for slot, (chrom, f, _) in zip(worst, pool[:k]):
        pop[slot] = chrom
        fit[slot] = f
    return pop, fit
