"""Pareto fronts of pruned heads: which heads are non-dominated, how much of the objective space
a set of heads covers (hypervolume), and the rules that pick the one head a run ships.

Convention: every objective is MINIMISED and lies in [0, 1]:

- ``accuracy`` is stored as the error ``1 - accuracy`` (on the fitness split);
- ``size`` is the fraction of active genes (mask ones / mask length);
- ``ood`` is ``1 - AUROC`` of telling in-distribution from out-of-distribution images.

One convention for all of them lets pymoo's sorting and hypervolume run unchanged, and the
bounded range gives a reference point that needs no data: :func:`default_ref_point`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from evoprune._views import RegistryField, RegistryNames
from evoprune.errors import ConfigError


@dataclass(frozen=True)
class Objective:
    """One objective a search can minimise, declared once.

    Its natural value (what a person reads) lies in [0, 1]; the search minimises ``1 - value``
    when ``higher_is_better``, else the value itself. ``description`` says what the minimised
    value means (tables, help). It is measured either from the chromosome alone,
    ``of_mask(chromosome) -> natural value`` (recomputed from a history row's mask when a run
    resumes), or on the trained heads by :class:`~evoprune.problem.HeadProblem` (``accuracy``
    and ``ood``, whose natural values are the evaluation record's field ``record``).
    ``needs``: a run setting it cannot do without (None allowed otherwise), and ``needs_why``
    what to give it.
    """

    name: str
    description: str
    higher_is_better: bool = True
    of_mask: Callable[[np.ndarray], float] | None = None
    record: str | None = None
    needs: str | None = None
    needs_why: str = ""

    def natural(self, record) -> float | None:
        """The natural value of an evaluation ``record`` (an
        :class:`~evoprune.search.evaluator.EvaluationRecord`): its field ``record``, or
        ``of_mask`` of its mask; None when it was not measured."""
        if self.record is not None:
            value = getattr(record, self.record, None)
            return None if value is None else float(value)
        if self.of_mask is None:
            raise ConfigError(f"objective {self.name!r} gives neither of_mask nor record")
        return float(self.of_mask(record.mask()))


#: Every objective by name, in the order the search stacks them (a run uses a subset, in this
#: order). A new objective is one :func:`register_objective` call.
OBJECTIVE_REGISTRY: dict[str, Objective] = {}


def register_objective(objective: Objective, *, replace: bool = False) -> Objective:
    """Add ``objective`` after the others (``replace``: overwrite one of the same name).
    Raises ConfigError if the name is taken or it is measured no way."""
    if objective.name in OBJECTIVE_REGISTRY and not replace:
        raise ConfigError(
            f"objective {objective.name!r} is registered already; pick another name or pass "
            "replace=True"
        )
    if not objective.name or "," in objective.name:
        raise ConfigError(f"objective name {objective.name!r} must be a word without commas")
    if objective.of_mask is None and objective.record is None:
        raise ConfigError(
            f"objective {objective.name!r}: give of_mask, its natural value from a chromosome"
        )
    OBJECTIVE_REGISTRY[objective.name] = objective
    return objective


#: Objective names in the order the search stacks them (a view of :data:`OBJECTIVE_REGISTRY`).
OBJECTIVES: Sequence[str] = RegistryNames(OBJECTIVE_REGISTRY)

#: What the minimised value of each objective means, for tables and help texts (a view).
MINIMISED_AS: Mapping[str, str] = RegistryField(
    OBJECTIVE_REGISTRY, lambda objective: objective.description
)

register_objective(
    Objective(
        "accuracy",
        "error = 1 - accuracy on the fitness split",
        record="fitness",
    )
)
register_objective(
    Objective(
        "size",
        "fraction of active genes",
        higher_is_better=False,
        of_mask=lambda chromosome: float(np.mean(chromosome)),
        record="active_fraction",  # the same value, as the history records it
    )
)
register_objective(
    Objective(
        "ood",
        "1 - AUROC (in-distribution vs out-of-distribution)",
        record="auroc",
        needs="ood",
        needs_why="--ood PATH or a built-in OOD set (digits, photos, faces): the images it "
        "tells apart from the data",
    )
)

# Accuracies are ratios k/n; comparing them after subtracting a threshold in floating point
# (0.78 - 0.01 vs 0.77) must not drop a head that is exactly on the threshold.
_TOL = 1e-9


def objective(name: str) -> Objective:
    """The registered objective ``name``; ConfigError naming the known ones otherwise."""
    if name not in OBJECTIVE_REGISTRY:
        raise ConfigError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}")
    return OBJECTIVE_REGISTRY[name]


def natural_values(record, objectives: Sequence[str]) -> dict[str, float | None]:
    """``{objective: natural value}`` of an evaluation record (None: not measured)."""
    return {name: objective(name).natural(record) for name in objectives}


def to_minimised(name: str, values):
    """The minimised form of objective ``name`` from its natural value.

    ``1 - value`` for an objective whose higher values are better (accuracy -> error,
    ood's AUROC -> 1 - AUROC), else unchanged (size). Works on scalars and arrays.
    """
    v = np.asarray(values, dtype=np.float64)
    out = 1.0 - v if objective(name).higher_is_better else v
    return float(out) if out.ndim == 0 else out


def from_minimised(name: str, values):
    """The natural value (accuracy, active fraction, AUROC) of a minimised objective value.

    The inverse of :func:`to_minimised`, used when writing tables a person reads.
    """
    v = np.asarray(values, dtype=np.float64)
    out = 1.0 - v if objective(name).higher_is_better else v
    return float(out) if out.ndim == 0 else out


def _as_matrix(F, what: str = "F") -> np.ndarray:
    F = np.asarray(F, dtype=np.float64)
    if F.ndim != 2:
        raise ConfigError(
            f"{what} must be an (N, M) matrix of objective values, got shape {F.shape}"
        )
    if not np.all(np.isfinite(F)):
        raise ConfigError(
            f"{what} contains NaN or infinite objective values; every head needs finite objectives"
        )
    return F


def non_dominated(F) -> np.ndarray:
    """Boolean mask of the rows of ``F`` (N, M; minimised) that no other row dominates.

    Uses pymoo's NonDominatedSorting so the front agrees with what NSGA-II ranks first.
    Identical rows are all kept (neither dominates the other); remove duplicate chromosomes
    before calling if one row per objective vector is wanted.
    """
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    F = _as_matrix(F)
    mask = np.zeros(len(F), dtype=bool)
    if len(F) == 0:
        return mask
    mask[NonDominatedSorting().do(F, only_non_dominated_front=True)] = True
    return mask


def default_ref_point(n_objectives: int) -> np.ndarray:
    """The hypervolume reference point: all ones.

    Every minimised objective (error, active fraction, 1 - AUROC) lies in [0, 1], so (1, ..., 1)
    is no better than the worst possible head: hypervolumes of different runs and algorithms
    are comparable without looking at their data.
    """
    if isinstance(n_objectives, bool) or not isinstance(n_objectives, Integral) or n_objectives < 1:
        raise ConfigError(f"n_objectives must be an integer >= 1, got {n_objectives!r}")
    return np.ones(int(n_objectives), dtype=np.float64)


def hypervolume(F, ref_point=None) -> float:
    """Hypervolume (minimisation) dominated by the rows of ``F`` and bounded by ``ref_point``.

    pymoo's HV indicator; larger is better. ``ref_point`` defaults to
    :func:`default_ref_point`; points that are not better than it in every objective add
    nothing. An empty ``F`` (no head evaluated yet) has hypervolume 0.
    """
    from pymoo.indicators.hv import HV

    F = np.asarray(F, dtype=np.float64)
    if F.size == 0:
        return 0.0
    F = _as_matrix(F)
    ref = (
        default_ref_point(F.shape[1])
        if ref_point is None
        else np.asarray(ref_point, dtype=np.float64).ravel()
    )
    if ref.shape != (F.shape[1],):
        raise ConfigError(
            f"ref_point has {ref.size} value(s) but F has {F.shape[1]} "
            "objective(s); give one reference value per objective"
        )
    return float(HV(ref_point=ref)(F))


# ----------------------------------------------------------------------------------- selection

SELECT_RULES: tuple[str, ...] = ("one-se", "knee", "accuracy", "smallest-within:X")
"""The selection rules ``--select`` accepts (X: accuracy points, e.g. smallest-within:1)."""

DEFAULT_SELECT = "one-se"


@dataclass(frozen=True)
class SelectionRule:
    """A parsed ``--select`` value: ``name`` is one-se, knee, accuracy or smallest-within;
    ``points`` is X for smallest-within (accuracy points, 1 point = 0.01), else None."""

    name: str
    points: float | None = None

    def __str__(self) -> str:
        if self.name == "smallest-within":
            return f"smallest-within:{self.points:g}"
        return self.name


def parse_select(text) -> SelectionRule:
    """Validate a selection rule given as text (or pass a SelectionRule through).

    Done once where the option is read, so a typo fails before a search runs, not after.
    """
    if isinstance(text, SelectionRule):
        return text
    help_ = (
        f"choose one of {', '.join(SELECT_RULES)} (X in accuracy points, e.g. "
        "smallest-within:1 for heads within 0.01 of the best fitness)"
    )
    if not isinstance(text, str):
        raise ConfigError(f"selection rule must be text, got {text!r}; {help_}")
    value = text.strip().lower()
    if value in ("one-se", "knee", "accuracy"):
        return SelectionRule(value)
    prefix = "smallest-within:"
    if value.startswith(prefix):
        raw = value[len(prefix) :].strip()
        try:
            points = float(raw)
        except ValueError:
            points = math.nan
        if not math.isfinite(points) or not 0.0 <= points <= 100.0:
            raise ConfigError(
                f"selection rule {text!r}: X={raw!r} is not a number of accuracy points "
                f"between 0 and 100; write e.g. smallest-within:1 (within 0.01 of the best "
                "fitness) or smallest-within:0.5"
            )
        return SelectionRule("smallest-within", points)
    raise ConfigError(f"unknown selection rule {text!r}; {help_}")


def accuracy_standard_error(p: float, n: int) -> float:
    """Standard error sqrt(p (1 - p) / n) of an accuracy ``p`` measured on ``n`` images.

    The binomial error of the fitness split's accuracy: heads closer to the best than this
    are not distinguishable from it on that split (the one-se rule).
    """
    if isinstance(p, bool) or not isinstance(p, Real) or not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"accuracy p must be a number in [0, 1], got {p!r}")
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ConfigError(
            f"n (images the accuracy was measured on) must be an integer >= 1, got {n!r}"
        )
    p = float(p)
    return math.sqrt(p * (1.0 - p) / int(n))


def _front_arrays(front_accuracy, front_size) -> tuple[np.ndarray, np.ndarray]:
    acc = np.asarray(front_accuracy, dtype=np.float64).ravel()
    size = np.asarray(front_size, dtype=np.float64).ravel()
    if acc.size == 0:
        raise ConfigError("cannot select a head from an empty front")
    if acc.shape != size.shape:
        raise ConfigError(
            f"front_accuracy has {acc.size} value(s) but front_size has "
            f"{size.size}; give one accuracy and one size per front head"
        )
    if not (np.all(np.isfinite(acc)) and np.all(np.isfinite(size))):
        raise ConfigError("front accuracies and sizes must be finite numbers")
    return acc, size


def _first_by(keys: Sequence[np.ndarray], candidates: np.ndarray) -> int:
    """Index among ``candidates`` that is smallest by ``keys`` (first key most significant);
    remaining ties go to the lowest index, so the choice is deterministic."""
    order = np.lexsort(tuple(k[candidates] for k in reversed(keys)))
    return int(candidates[order[0]])


def _smallest_at_least(acc: np.ndarray, size: np.ndarray, threshold: float) -> int:
    ok = np.flatnonzero(acc >= threshold - _TOL)
    return _first_by([size, -acc], ok)


def select(front_accuracy, front_size, rule="one-se", se: float | None = None) -> int:
    """Index of the head that ``rule`` picks from a front.

    Parameters
    ----------
    front_accuracy : array (N,)
        Fitness of each head (accuracy on the fitness split; higher is better).
    front_size : array (N,)
        Active fraction of each head (smaller is better).
    rule : str or SelectionRule
        ``accuracy``: the best fitness; ties -> the smaller head.
        ``smallest-within:X``: the smallest head whose fitness >= best - X/100; ties -> the
        higher fitness.
        ``one-se``: the smallest head whose fitness >= best - ``se``; ties -> the higher
        fitness. ``se`` is :func:`accuracy_standard_error` of the best fitness on the fitness
        split (required).
        ``knee``: in (size, error) normalised to [0, 1] over the front, the head farthest from
        the line joining the two extreme heads (smallest head, most accurate head), counting
        only heads on the ideal (origin) side of that line: where one more unit of size stops
        buying much accuracy. Ties -> the smaller head. With no head strictly on that side
        (two heads, or a straight or concave front) the knee is undefined and the most
        accurate head is returned.
    se : float, optional
        Standard error for ``one-se``.

    Notes
    -----
    Remaining ties go to the lowest index. Thresholds compare with a 1e-9 tolerance, so a
    head exactly X points below the best counts as within.
    """
    acc, size = _front_arrays(front_accuracy, front_size)
    rule = parse_select(rule)
    everyone = np.arange(acc.size)
    best_acc = float(acc.max())
    if rule.name == "accuracy":
        return _first_by([-acc, size], everyone)
    if rule.name == "smallest-within":
        return _smallest_at_least(acc, size, best_acc - rule.points / 100.0)
    if rule.name == "one-se":
        if se is None:
            raise ConfigError(
                "the one-se selection rule needs se, the standard error of the "
                "best fitness: pass se=accuracy_standard_error(best, n_score)"
            )
        if isinstance(se, bool) or not isinstance(se, Real) or not math.isfinite(se) or se < 0:
            raise ConfigError(f"se must be a finite number >= 0, got {se!r}")
        return _smallest_at_least(acc, size, best_acc - float(se))
    return _knee(acc, size)


def _knee(acc: np.ndarray, size: np.ndarray) -> int:
    everyone = np.arange(acc.size)
    err = 1.0 - acc

    def normalise(v: np.ndarray) -> np.ndarray:
        span = v.max() - v.min()
        return (v - v.min()) / span if span > 0 else np.zeros_like(v)

    x, y = normalise(size), normalise(err)
    a = _first_by([size, err], everyone)  # the smallest head (least accurate end)
    b = _first_by([err, size], everyone)  # the most accurate head (largest end)
    dx, dy = x[b] - x[a], y[b] - y[a]
    length = math.hypot(dx, dy)
    if length == 0.0:
        return b
    # Signed distance to the line a->b: a is top-left, b bottom-right, so the cross product
    # (b - a) x (p - a) is negative for points on the origin side; negate it to make them > 0.
    dist = -(dx * (y - y[a]) - dy * (x - x[a])) / length
    below = np.flatnonzero(dist > _TOL)
    if below.size == 0:
        return b
    return _first_by([-dist, size], below)
