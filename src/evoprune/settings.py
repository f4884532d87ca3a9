"""The run settings as typed groups, one per layer that reads them.

Every setting is declared once, in :data:`evoprune.runs.config.SETTINGS` (type, default, help,
flag, check); its typed field lives in exactly one of the frozen dataclasses below, the group
of the layer that uses it. ``tests/unit/runs/test_settings.py`` keeps the two equal field for field
(name, type, default, group). The run's settings, :class:`~evoprune.runs.config.RunConfig`,
is composed of all the groups; a layer takes only its group (a ``RunConfig`` is one of each):

- :class:`DataSettings`: which images and how the held-out test set is chosen (``runs``);
- :class:`HeadSettings`: the head, its encoding, backbone, trainer and device (``model``,
  ``problem``);
- :class:`FitnessSettings`: where fitness is measured (``problem.make_folds``);
- :class:`SearchSettings`: the search's population, budget and operators (``search``);
- :class:`ObjectiveSettings`: the objectives, the algorithm, head selection, OOD
  (``pareto``, ``problem``);
- :class:`ClusterSettings`: where the work runs (``cluster``); never changes a result.

The one ``seed`` of a run is a field of :class:`Seeded`, the base of every group whose layer
draws random numbers (data, fitness, search).

This module imports only :mod:`evoprune.errors` and sits just above it in the layers (beside
``io``), so that every layer can import its group.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

from evoprune.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Seeded:
    """The run's one seed: every random choice (splits, folds, search, training) derives
    from it."""

    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class DataSettings(Seeded):
    """Which images a run uses and how its held-out test set is chosen."""

    data: str = "elpv"
    test_fraction: float = 0.2
    fold: int = 0
    skip_bad_images: bool = False
    limit: int | None = None


@dataclass(frozen=True, kw_only=True)
class HeadSettings:
    """The head the search prunes: what a gene switches, the features, the trainer, where it
    trains."""

    encoding: str = "fs"
    backbone: str = "efficientnet-lite0"
    hidden_size: int = 512
    trainer: str = "fast"
    device: str = "auto"


@dataclass(frozen=True, kw_only=True)
class FitnessSettings(Seeded):
    """Where a candidate's fitness is measured (the folds)."""

    fitness_split: str = "validation"
    val_fraction: float = 0.2
    cv_folds: int = 5


@dataclass(frozen=True, kw_only=True)
class SearchSettings(Seeded):
    """The search's population, budget and operators, the fidelity of its evaluations and the
    final check of its best candidates."""

    population: int = 30
    evaluations: int | None = None
    init: str | None = None  # resolved: ranked for encodings that switch units, else random
    mutation_prob: float = 0.07
    variation: str | None = None  # resolved: guided with a ranked init, else paper
    fidelity: str = "full"
    shared_evaluations: int | None = None
    final_check: str | None = None
    final_check_folds: int = 5
    final_check_top: int = 16
    sizes: tuple[float, ...] | None = None  # fractions of the units, ascending

    @property
    def budget(self) -> int:
        """``evaluations`` once resolved (``RunConfig.validate`` fills it in from the
        encoding's default)."""
        if self.evaluations is None:
            raise ConfigError(
                "evaluations=None is not resolved yet: validate the settings first "
                "(RunConfig.validate() fills in the encoding's default budget)"
            )
        return int(self.evaluations)


def parse_sizes(value: Any) -> tuple[float, ...]:
    """Head sizes as fractions of the units, from a comma list ("0.02,0.05") or numbers:
    ascending, without repeats, each in (0, 1]. Raises ValueError saying what is wrong."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        text = item.strip() if isinstance(item, str) else item
        if text == "":
            continue
        try:
            f = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"{item!r} is not a number; give fractions like 0.02,0.05") from None
        if not 0.0 < f <= 1.0:
            raise ValueError(f"{f:g} is not a fraction of the units in (0, 1]; 5 % is 0.05")
        out.append(f)
    if not out:
        raise ValueError("give at least one size, e.g. 0.02,0.05,0.1")
    return tuple(sorted(set(out)))


@dataclass(frozen=True, kw_only=True)
class ObjectiveSettings:
    """What the search optimises, with which algorithm, and which head of a front ships."""

    objectives: tuple[str, ...] = ("accuracy",)
    algorithm: str = "auto"
    select: str | None = None
    ood: str | None = None
    ood_score: str = "energy"


@dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    """Where the work runs (this process or Ray workers); results do not depend on it."""

    workers: int = 1
    ray_address: str | None = None
    threads_per_worker: int | None = None
    asynchronous: bool = False


#: The groups by the name that :class:`~evoprune.runs.config.Setting` ``group`` gives.
GROUPS: dict[str, type] = {
    "data": DataSettings,
    "head": HeadSettings,
    "fitness": FitnessSettings,
    "search": SearchSettings,
    "objectives": ObjectiveSettings,
    "cluster": ClusterSettings,
}

G = TypeVar("G")


def group_of(settings: Any, group: type[G]) -> G:
    """Only ``group``'s fields of ``settings`` (a :class:`~evoprune.runs.config.RunConfig` or
    any object with those attributes), as a ``group`` instance."""
    if type(settings) is group:
        return settings
    return group(**{f.name: getattr(settings, f.name) for f in fields(group)})  # type: ignore[arg-type]
