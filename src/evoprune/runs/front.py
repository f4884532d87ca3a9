"""The heads a finished search hands over: the selected one, the not-pruned reference and,
for a multi-objective search, every head of the Pareto front, each retrained on all training
data and scored on held-out images (accuracy, and OOD AUROC / FPR at 95 % TPR when OOD
images were given).

Which heads those are is :func:`choose`'s: by the search's fitness, or, with ``final_check``
``cv``, from the top candidates re-scored by k-fold cross-validation on all the training images.
A search that compared thousands of masks on one validation split has overfitted it (Reunanen,
JMLR 2003; Cawley & Talbot, JMLR 2010): the re-scoring averages over every training image and
new splits, so the choice no longer rests on the noise the search selected for. The rankings
the search started from were computed on training images too: a ranking's top-k is re-ranked
inside every fold of the check, so no image scores a mask chosen with its label.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from evoprune.model.head import (
    CompactHead,
    accuracy,
    logits,
    nonzero_params,
)
from evoprune.pareto import DEFAULT_SELECT, accuracy_standard_error, non_dominated, select
from evoprune.progress import WorkBar, work_bar
from evoprune.runs.config import CV_FINAL_CHECKS
from evoprune.runs.context import RunContext, fold_rankings
from evoprune.runs.evolve import Evolved
from evoprune.settings import FitnessSettings, SearchSettings

if TYPE_CHECKING:
    from evoprune.problem import HeadProblem

log = logging.getLogger(__name__)


@dataclass
class FrontMember:
    """One non-dominated head: its objectives on the fitness split and held-out scores."""

    rank: int
    evaluation: int
    mask: np.ndarray = field(repr=False)
    fitness: float
    fitness_auroc: float | None
    head: CompactHead = field(repr=False)
    test_accuracy: float
    test_auroc: float | None
    test_fpr95: float | None
    selected: bool = False
    check_accuracy: float | None = None  # the final check's cross-validated accuracy
    check_probability: float | None = None  # ... and mean probability of the true class

    @property
    def active_fraction(self) -> float:
        return float(self.mask.mean())

    def summary(self) -> dict:
        """The member as a pareto.csv row (and result.json's ``front`` entry)."""
        from evoprune.runs.store import mask_to_hex

        return {
            "rank": self.rank,
            "evaluation": self.evaluation,
            "active_fraction": self.active_fraction,
            "active_genes": int(self.mask.sum()),
            "head_params": nonzero_params(self.head),
            "fitness": self.fitness,
            "fitness_auroc": self.fitness_auroc,
            "check_accuracy": self.check_accuracy,
            "check_probability": self.check_probability,
            "test_accuracy": self.test_accuracy,
            "test_auroc": self.test_auroc,
            "test_fpr95": self.test_fpr95,
            "selected": self.selected,
            "mask": mask_to_hex(self.mask),
        }


@dataclass
class FinalHeads:
    """The head a run ships (``mask``, ``head``) next to the not-pruned ``reference``."""

    mask: np.ndarray
    head: CompactHead
    fitness: float
    test_accuracy: float
    reference: CompactHead
    reference_test_accuracy: float
    seconds: float
    reference_seconds: float
    front: list[FrontMember] | None = None
    reference_ood: tuple[float, float] | None = None  # (AUROC, FPR95) of the reference head
    check_accuracy: float | None = None  # the final check's score of the shipped head
    check_seconds: float = 0.0
    check_leak: float | None = None  # accuracy the final check took off the search's masks

    @property
    def selection_bias(self) -> float:
        """Fitness minus held-out accuracy of the shipped head: how much the search's score
        flattered it (positive: optimistic)."""
        return float(self.fitness - self.test_accuracy)


@dataclass
class Choice:
    """What a finished search hands over: ``rows`` (history positions; the front smallest
    first for several objectives, else the candidates), the one shipped (``rows[pick]``), and
    each row's cross-validated accuracy and mean probability of the true class when the final
    check ran (``checked``, ``probability``)."""

    rows: list[int]
    pick: int
    checked: list[float] | None = None
    seconds: float = 0.0
    probability: list[float] | None = None
    leak: float | None = None  # accuracy the check took off the search's own masks

    @property
    def row(self) -> int:
        return self.rows[self.pick]


def _best_rows(search, n: int) -> list[int]:
    """The ``n`` best rows of the result's fidelity by fitness (ties: fewer active genes,
    then the earlier row, as the evaluator ranks them), one per chromosome."""
    from evoprune.search.operators import rank_key

    rows = sorted(
        search.rows(),
        key=lambda i: (*rank_key(search.history[i].fitness, search.history[i].active_genes), i),
    )
    return rows[:n]


def size_band_rows(search, n: int) -> list[int]:
    """The best row by fitness (ties: fewer active genes, then the earlier row) of each of ``n``
    size bands spread log-uniformly from the smallest to the largest evaluated head of the
    result's fidelity, smallest band first, empty bands skipped.

    Not the fitness front: on a small fitness split the accuracy of many sizes saturates (or
    ties within one image), so the front keeps only its smallest heads and a larger head the
    cross-validation would prefer is never re-scored. One candidate per band gives every size
    range, the small ones included, its best head to re-score."""
    from evoprune.search.operators import rank_key

    rows = list(search.rows())
    genes = np.array([max(search.history[i].active_genes, 1) for i in rows], dtype=float)
    edges = np.geomspace(genes.min(), genes.max(), n + 1) if len(rows) else np.ones(1)
    band = np.clip(np.searchsorted(edges, genes, side="left") - 1, 0, n - 1)
    out = []
    for b in np.unique(band):
        members = [rows[j] for j in np.flatnonzero(band == b)]
        h = search.history
        out.append(min(members, key=lambda i: (*rank_key(h[i].fitness, h[i].active_genes), i)))
    return out


def sized_rows(search, sizes, n_genes: int, n: int) -> list[int]:
    """For each of ``sizes`` (fractions of the genes), the ``max(1, n // len(sizes))`` best
    rows of the result's fidelity by fitness (ties: fewer active genes, then the earlier row)
    with at most that many active genes (:func:`~evoprune.search.guided.exact_sizes`), one
    per row, in history order: the candidates a final check re-scores when a user asked for
    head sizes."""
    from evoprune.search.guided import exact_sizes

    h = search.history
    rows = _best_rows(search, len(h))
    per = max(1, int(n) // max(1, len(sizes)))
    out: set[int] = set()
    for k in exact_sizes(sizes, n_genes):
        out.update([i for i in rows if h[i].active_genes <= k][:per])
    return sorted(out)


def ranked_rows(search, rankings: Mapping[str, np.ndarray], sizes, n_genes: int) -> list[int]:
    """The history rows of every ranking's top-k at each of ``sizes`` (fractions of the genes,
    :func:`~evoprune.search.guided.exact_sizes`): the masks a ranked start began with at the
    sizes a user asked for, whatever fidelity scored them (a row of the result's fidelity
    where the mask has one). Masks the search never evaluated are left out."""
    from evoprune.search.guided import exact_sizes, top_k

    h = search.history
    result_rows = set(search.rows())
    where: dict[bytes, int] = {}
    for i, rec in enumerate(h):
        key = rec.mask().astype(bool).tobytes()
        if key not in where or (i in result_rows and where[key] not in result_rows):
            where[key] = i
    masks = [top_k(s, k).tobytes() for k in exact_sizes(sizes, n_genes) for s in rankings.values()]
    return sorted({where[m] for m in masks if m in where})


@dataclass
class CheckScores:
    """The final check's scores of its candidates: cross-validated ``accuracy`` and mean
    ``probability`` of the true class, one per candidate; ``procedures``: for each, the ranking
    whose top-k it is (re-ranked inside every fold) or None (the search's own mask); ``leak``:
    the (accuracy, probability) the re-ranking took off the rankings' top-k masks on average,
    and so off the search's own masks, None when no candidate is a ranking's top-k."""

    accuracy: np.ndarray
    probability: np.ndarray
    procedures: list[str | None]
    leak: tuple[float, float] | None = None


def check_scores(
    cfg: SearchSettings,
    evolved: Evolved,
    X: np.ndarray,
    y: np.ndarray,
    rows: list[int],
    progress: bool = False,
    rankings: Mapping[str, np.ndarray] | None = None,
) -> CheckScores:
    """:func:`mask_check_scores` of each row's mask (``cfg.final_check_folds`` folds of
    (X, y), split from the run's seed + 1, so not the fitness split's folds)."""
    chroms = np.stack([evolved.result.history[i].mask() for i in rows])
    return mask_check_scores(cfg, evolved.problem, X, y, chroms, progress, rankings)


def ranking_procedures(
    chroms: np.ndarray, rankings: Mapping[str, np.ndarray] | None
) -> list[str | None]:
    """For each mask of ``chroms``, the first of ``rankings`` (gene scores) whose top-k at the
    mask's size it is, else None."""
    from evoprune.search.guided import top_k

    out: list[str | None] = []
    for chrom in np.atleast_2d(chroms).astype(bool):
        k = int(chrom.sum())
        out.append(
            next(
                (n for n, s in (rankings or {}).items() if np.array_equal(top_k(s, k), chrom)), None
            )
        )
    return out


def mask_check_scores(
    cfg: SearchSettings,
    problem: HeadProblem,
    X: np.ndarray,
    y: np.ndarray,
    chroms: np.ndarray,
    progress: bool = False,
    rankings: Mapping[str, np.ndarray] | None = None,
) -> CheckScores:
    """Cross-validated accuracy and mean probability of the true class of the masks
    ``chroms`` (one per row; ``cfg.final_check_folds`` folds of (X, y) split from
    ``cfg.seed`` + 1), each head trained as ``problem`` trains its heads (``progress``: a bar
    of the heads, advancing as each fold's heads train).

    A mask chosen with the labels of the images it is then scored on scores high on them
    (Ambroise & McLachlan, PNAS 2002): the rankings (``rankings``, the search's gene scores)
    were computed on training images that the check's folds score on, and the search's own
    masks were chosen on them. So a mask that is a ranking's top-k is scored as what made it:
    in every fold the ranking is computed again on the fold's fitting part alone
    (:func:`~evoprune.runs.context.fold_rankings`, with the problem's trainer, seed and
    device) and its top-k at the mask's size is trained there and scored on the fold's
    scoring part, which no choice has seen. The search's other masks cannot be made again
    inside a fold; each is scored as it is, less what re-ranking took off the rankings' own
    top-k masks on average (their ``leak``, measured in this very check, never below
    zero), so that the two kinds compete on the same footing."""
    from evoprune.problem import HeadProblem, make_folds
    from evoprune.search.guided import top_k

    check_split = FitnessSettings(
        fitness_split="cv", seed=(int(cfg.seed) + 1) % 2**32, cv_folds=int(cfg.final_check_folds)
    )
    folds = make_folds(X, y, check_split)
    check = HeadProblem(problem.encoding, problem.n_classes, folds, problem.training)
    chroms = np.atleast_2d(chroms)
    procedures = ranking_procedures(chroms, rankings)
    redo = [j for j, name in enumerate(procedures) if name is not None]
    made = [(str(procedures[j]), int(chroms[j].astype(bool).sum())) for j in redo]
    per_fold = []
    with work_bar(
        len(chroms) + len(redo), desc="final check", unit="head", enabled=progress, leave=False
    ):
        for k, fold in enumerate(folds):
            batch = chroms
            if redo:
                again = fold_rankings(problem.encoding, fold, problem.n_classes, problem.training)
                redone = [top_k(again[name], n) for name, n in made]
                batch = np.concatenate([chroms, np.stack(redone).astype(chroms.dtype)])
            per_fold.append(check.evaluate_fold_batch(batch, k))
    acc = np.mean([[s.accuracy for s in fold] for fold in per_fold], axis=0)
    prob = np.mean([[float(s.probability or 0.0) for s in fold] for fold in per_fold], axis=0)
    n = len(chroms)
    if not redo:
        return CheckScores(acc, prob, procedures)
    leak = (
        max(0.0, float(np.mean(acc[redo] - acc[n:]))),
        max(0.0, float(np.mean(prob[redo] - prob[n:]))),
    )
    own = np.array([name is None for name in procedures])
    out_acc, out_prob = acc[:n].copy(), prob[:n].copy()
    out_acc[own] -= leak[0]
    out_prob[own] -= leak[1]
    out_acc[redo], out_prob[redo] = acc[n:], prob[n:]
    log.info(
        "final check: %d of %d candidates re-ranked inside each fold; the search's own masks "
        "lose what that took off the rankings' top-k (%.2f points of accuracy)",
        len(redo),
        n,
        100 * leak[0],
    )
    return CheckScores(np.clip(out_acc, 0.0, 1.0), np.clip(out_prob, 0.0, 1.0), procedures, leak)


def tie_broken(score: np.ndarray, finer: np.ndarray) -> np.ndarray:
    """``score`` (in [0, 1]) with its ties broken by ``finer`` (in [0, 1]): ``score`` to 9
    decimals plus ``1e-10 * finer``, a shift far below one image's worth of accuracy, so it
    orders heads of equal score only. For cross-validated accuracy broken by the mean
    probability of the true class: when accuracy saturates (every size scores 1.0, or ties
    within an image), the head that is more sure of the right class comes first, not
    whichever is smaller."""
    return np.round(np.asarray(score, dtype=float), 9) + 1e-10 * np.asarray(finer, dtype=float)


def check_ranking(final_check: str, cv: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """What the final check ranks candidates by (higher: better): ``cv`` by cross-validated
    accuracy, ties by the mean probability of the true class; ``cv-prob`` the other way round.
    The probability is a proper score of the same predictions that moves with every image,
    not only the ones that flip class, so it is less noisy than accuracy for choosing among
    close candidates (and what the shared head scores masks by)."""
    return tie_broken(prob, cv) if final_check == "cv-prob" else tie_broken(cv, prob)


def check_candidates(context: RunContext, evolved: Evolved) -> list[int]:
    """The history rows the final check re-scores (:func:`choose` says which)."""
    cfg, search = context.cfg, evolved.result
    top = int(cfg.final_check_top)
    if len(search.objectives) == 1:
        return _best_rows(search, top)
    if "ood" in search.objectives:
        idx, _ = pareto_front(evolved, cfg.select)
        if len(idx) > top:  # spread over the front's sizes, its two ends included
            idx = [idx[i] for i in np.unique(np.linspace(0, len(idx) - 1, top).round().astype(int))]
        return idx
    if cfg.sizes:
        n_genes = evolved.problem.n_genes
        rows = sized_rows(search, cfg.sizes, n_genes, top)
        if cfg.init == "ranked":
            rankings = context.unit_rankings
            rows = sorted({*rows, *ranked_rows(search, rankings, cfg.sizes, n_genes)})
        return rows
    return size_band_rows(search, top)


def choose(context: RunContext, evolved: Evolved, progress: bool = False) -> Choice:
    """The shipped head and the front of a finished search of ``context`` (its settings and
    training data). Without a final check: the best by fitness, or the front and the head
    ``cfg.select`` picks by fitness. With ``final_check`` ``cv`` or ``cv-prob``: the
    ``final_check_top`` best
    (one objective), the best of that many size bands (:func:`size_band_rows`; accuracy and
    size), the best at or below each of ``cfg.sizes`` when given (:func:`sized_rows`, with a
    ranked start also every ranking's top-k at each size, :func:`ranked_rows`) or at most that
    many front heads spread over sizes (with ood) are re-scored by :func:`check_scores` (with
    a ranked start or guided variation, a candidate that is a ranking's top-k re-ranked inside
    every fold, the others less what that took off: :func:`mask_check_scores`); the
    shipped head is the best by :func:`check_ranking` (``cv``: accuracy, ties by the mean
    probability of the true class; ``cv-prob``: the other way round; then fewer genes), and
    the front is recomputed from it (non-dominated in that score, size and ood) with
    ``select``'s rule judged on it (one-se: the standard error over all training images).
    """
    cfg, X, y = context.cfg, context.X_train, context.y_train
    search = evolved.result
    several = len(search.objectives) > 1
    if cfg.final_check not in CV_FINAL_CHECKS:
        if several:
            idx, pick = pareto_front(evolved, cfg.select)
            return Choice(idx, pick)
        return Choice(_best_rows(search, 1), 0)
    t0 = time.perf_counter()
    candidates = check_candidates(context, evolved)
    scores = check_scores(cfg, evolved, X, y, candidates, progress, context.guiding_rankings)
    cv, prob = scores.accuracy, scores.probability
    leak = None if scores.leak is None else scores.leak[0]
    score = check_ranking(str(cfg.final_check), cv, prob)
    active = np.array([search.history[i].active_genes for i in candidates])
    seconds = time.perf_counter() - t0
    if not several:
        pick = int(np.lexsort((np.arange(len(cv)), active, -score))[0])
        return Choice(candidates, pick, cv.tolist(), seconds, prob.tolist(), leak)
    F = np.array(search.F)[candidates].copy()
    F[:, list(search.objectives).index("accuracy")] = 1.0 - score
    keep = np.flatnonzero(non_dominated(F))
    keep = keep[np.lexsort((-score[keep], active[keep]))]
    rows = [candidates[i] for i in keep]
    sizes = np.array([search.history[i].active_fraction for i in rows])
    # one-se on cv-prob: p (1 - p) bounds the variance of a per-image score in [0, 1] of mean p
    se = accuracy_standard_error(float(np.clip(score[keep].max(), 0.0, 1.0)), len(y))
    pick = select(score[keep], sizes, cfg.select, se=se)
    return Choice(rows, pick, cv[keep].tolist(), seconds, prob[keep].tolist(), leak)


def heldout_ood(
    head: CompactHead, X_test: np.ndarray, X_ood: np.ndarray, score: str
) -> tuple[float, float]:
    """(AUROC, FPR at 95 % TPR) of telling held-out test images from held-out OOD images."""
    from evoprune.ood import auroc, fpr_at_95_tpr, ood_score

    s_in, s_out = ood_score(score, logits(head, X_test)), ood_score(score, logits(head, X_ood))
    return auroc(s_in, s_out), fpr_at_95_tpr(s_in, s_out)


def finish_heads(
    context: RunContext, evolved: Evolved, ood=None, progress: bool = False
) -> FinalHeads:
    """Train the reference head and the shipped head(s) of ``context`` on all training data
    and score them on its held-out images (``progress``: a bar of the heads, the not-pruned
    one and each front member, and one of the final check's masks)."""
    with WorkBar(1, desc="final training", unit="head", enabled=progress) as bar:
        return _finish_heads(context, evolved, ood, bar)


def _finish_heads(context: RunContext, evolved: Evolved, ood, bar: WorkBar) -> FinalHeads:
    cfg = context.cfg
    X_test, y_test = context.held_out

    def train(mask: np.ndarray) -> CompactHead:
        head = context.train(mask)
        bar.done()
        return head

    reference = context.reference
    bar.done()
    reference_seconds = context.reference_seconds
    ref_acc = accuracy(reference, X_test, y_test)
    search = evolved.result
    choice = choose(context, evolved, progress=bar.enabled)
    checked = None if choice.checked is None else choice.checked[choice.pick]
    bar.grow(1 if len(search.objectives) == 1 else len(choice.rows))
    t0 = time.perf_counter()
    if len(search.objectives) == 1:
        rec = search.history[choice.row]
        mask = rec.mask().astype(np.uint8)
        head = train(mask)
        return FinalHeads(
            mask,
            head,
            float(rec.fitness),
            accuracy(head, X_test, y_test),
            reference,
            ref_acc,
            time.perf_counter() - t0,
            reference_seconds,
            check_accuracy=checked,
            check_seconds=choice.seconds,
            check_leak=choice.leak,
        )
    front = front_members(context, evolved, train, ood, choice)
    chosen = next(m for m in front if m.selected)
    reference_ood = (
        None if ood is None else heldout_ood(reference, X_test, ood.X_heldout, cfg.ood_score)
    )
    return FinalHeads(
        chosen.mask,
        chosen.head,
        chosen.fitness,
        chosen.test_accuracy,
        reference,
        ref_acc,
        time.perf_counter() - t0,
        reference_seconds,
        front,
        reference_ood,
        check_accuracy=checked,
        check_seconds=choice.seconds,
        check_leak=choice.leak,
    )


def pareto_front(evolved: Evolved, rule: str | None) -> tuple[list[int], int]:
    """History positions of every non-dominated evaluated head, smallest first (then more
    accurate), and the position in that list that selection ``rule`` picks, judged on
    fitness-split values only (the standard error of the best accuracy over the images the
    fitness is measured on, for ``one-se``). ``rule`` None: the default rule, as a run with
    several objectives resolves it."""
    search = evolved.result
    rows = np.asarray(search.rows())  # the fidelity the result rests on
    idx = sorted(
        rows[np.flatnonzero(non_dominated(np.asarray(search.F)[rows]))],
        key=lambda i: (search.history[i].active_genes, -search.history[i].fitness),
    )
    fitness = np.array([search.history[i].fitness for i in idx])
    size = np.array([search.history[i].active_fraction for i in idx])
    n_score = sum(len(f.y_score) for f in evolved.problem.folds)
    se = accuracy_standard_error(float(fitness.max()), n_score)
    return [int(i) for i in idx], select(fitness, size, rule or DEFAULT_SELECT, se=se)


def selection_path(
    history: list, objectives: tuple[str, ...] | list[str], rule: str, n_score: int
) -> list[int]:
    """For each position ``i`` of ``history``, the position of the head that ``rule`` picks
    from the front of the heads evaluated up to ``i`` (as :func:`pareto_front` judges the
    finished search): the head a multi-objective run would ship had it stopped there, which
    its convergence figure follows."""
    from evoprune.pareto import natural_values, to_minimised

    def minimised(r) -> np.ndarray:
        natural = natural_values(r, objectives)
        return np.array([to_minimised(n, natural[n]) for n in objectives], dtype=float)

    F = np.stack([minimised(r) for r in history]) if history else np.zeros((0, 1))
    front: list[int] = []
    out: list[int] = []
    pick = 0
    for i in range(len(history)):
        f = F[i]
        dominated = any(np.all(F[j] <= f) and np.any(F[j] < f) for j in front)
        if not dominated:
            front = [j for j in front if not (np.all(f <= F[j]) and np.any(f < F[j]))] + [i]
            order = sorted(front, key=lambda j: (history[j].active_genes, -history[j].fitness))
            fitness = np.array([history[j].fitness for j in order])
            size = np.array([history[j].active_fraction for j in order])
            se = accuracy_standard_error(float(fitness.max()), n_score)
            pick = order[select(fitness, size, rule, se=se)]
        out.append(pick)
    return out


def front_members(
    context: RunContext,
    evolved: Evolved,
    train: Callable[[np.ndarray], CompactHead] | None = None,
    ood=None,
    choice: Choice | None = None,
) -> list[FrontMember]:
    """Every head of the front (``choice``'s, by default the non-dominated evaluated heads),
    retrained (by ``train``, default ``context.train``) and scored on held-out data; the one
    the run's selection rule picks is marked ``selected``."""
    cfg, train = context.cfg, train or context.train
    X_test, y_test = context.held_out
    if choice is None:
        choice = Choice(*pareto_front(evolved, cfg.select))
    idx, pick = choice.rows, choice.pick
    members = []
    for rank, i in enumerate(idx):
        rec = evolved.result.history[i]
        head = train(rec.mask())
        auroc = fpr = None
        if ood is not None:
            auroc, fpr = heldout_ood(head, X_test, ood.X_heldout, cfg.ood_score)
        members.append(
            FrontMember(
                rank=rank,
                evaluation=rec.index,
                mask=rec.mask().astype(np.uint8),
                fitness=rec.fitness,
                fitness_auroc=rec.auroc,
                head=head,
                test_accuracy=accuracy(head, X_test, y_test),
                test_auroc=auroc,
                test_fpr95=fpr,
                selected=rank == pick,
                check_accuracy=None if choice.checked is None else choice.checked[rank],
                check_probability=None if choice.probability is None else choice.probability[rank],
            )
        )
    return members
