"""The run settings, declared once.

Every setting of a run is one :class:`Setting` in :data:`SETTINGS`: its name, type, default,
help text, choices, command-line flag, whether :class:`~evoprune.estimator.EvoPruneClassifier`
takes it, and its check. From that one declaration come

- :class:`RunConfig` (the dataclass that experiment, comparison and run store pass around) and
  its :meth:`RunConfig.validate`, the one validation of the settings, run before anything is
  computed or written;
- the command-line options (:func:`add_run_options`, :func:`config_from_args`);
- the estimator's parameters (:func:`estimator_settings`, :func:`validate_estimator_params`);
- the default results folder (:func:`default_out_dir`), named from a hash of every setting that
  changes the result, so that two different runs never share a folder.

The lower-level checks (the GA, the fold builder, the encodings...) stay as guards for direct
callers; this module runs the same checks earlier and names the option the way the user wrote it.
This module imports only light modules at import time; the registries that need torch
(trainers, fitness splits, backbones) are read when a choice list is first needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from evoprune.devices import DEVICES
from evoprune.errors import ConfigError
from evoprune.pareto import (  # the objectives a run can ask for, in order; head selection
    DEFAULT_SELECT,
    OBJECTIVES,
    SELECT_RULES,
    objective,
    parse_select,
)
from evoprune.search import ALGORITHMS as SEARCH_ALGORITHMS
from evoprune.search.algorithms import algorithm_help, auto_algorithm
from evoprune.search.fidelity import FIDELITIES as SEARCH_FIDELITIES
from evoprune.settings import (
    GROUPS as SETTING_GROUPS,
)
from evoprune.settings import (
    ClusterSettings,
    DataSettings,
    FitnessSettings,
    HeadSettings,
    ObjectiveSettings,
    SearchSettings,
    group_of,
    parse_sizes,
)

G = TypeVar("G")

#: Out-of-distribution sets built from images that ship inside packages, and the OOD scores:
#: the names of the registries of evoprune.data.ood_images and evoprune.ood, repeated here so
#: that reading a configuration does not import PIL and scipy (a test keeps them equal).
BUILTIN_OOD = ("digits", "photos", "faces")
OOD_SCORES = ("energy", "msp", "temperature")

#: The values of --fidelity (evoprune.search.fidelity's) and of --final-check.
FIDELITIES = SEARCH_FIDELITIES
FINAL_CHECKS = ("none", "cv", "cv-prob")
#: The values of --final-check that re-score candidates by cross-validation.
CV_FINAL_CHECKS = ("cv", "cv-prob")
#: Shared evaluations per full evaluation when --shared-evaluations is not given.
SHARED_PER_FULL = 20

#: Largest seed: numpy's legacy and torch's generators both take 32-bit seeds everywhere.
MAX_SEED = 2**32 - 1


def default_evaluations(encoding: str) -> int:
    """The paper's budget for ``encoding``: 300 for ``both``, else 200."""
    from evoprune.encodings import (  # the encoding owns its budget
        DEFAULT_BUDGET,
        REGISTRY,
    )

    return REGISTRY[encoding].default_evaluations if encoding in REGISTRY else DEFAULT_BUDGET


# --- choice lists read from the registries that own them (imported on first use) -----------


def _encodings() -> Sequence[str]:
    """Registered encodings and the families that ``--layer`` completes (``edges``)."""
    from evoprune.encodings import ENCODINGS, LAYER_FAMILIES

    return list(ENCODINGS) + list(LAYER_FAMILIES)


def _encoding(v: str) -> str | None:
    from evoprune.encodings import LAYER_FAMILIES

    if v not in LAYER_FAMILIES:
        return None
    names = " or ".join(f"{v}-{layer}" for layer in LAYER_FAMILIES[v])
    return (
        f"needs the layer whose connections the genes switch: --encoding {v} --layer "
        f"{'|'.join(LAYER_FAMILIES[v])} on the command line, encoding={names} elsewhere"
    )


def _trainers() -> Sequence[str]:
    from evoprune.model.head import TRAINERS

    return list(TRAINERS)


def _algorithms() -> Sequence[str]:
    """``auto`` and every registered search algorithm (read when the choices are needed, so
    that an algorithm registered later is a choice too)."""
    return ("auto", *SEARCH_ALGORITHMS)


def _async_help() -> str:
    able = [name for name, spec in SEARCH_ALGORITHMS.items() if spec.asynchronous]
    return (
        "asynchronous search: keep one evaluation per worker in flight and insert each result "
        f"as it arrives (not the paper's synchronous GA; --algorithm {' or '.join(able)} only)"
    )


def _fitness_splits() -> Sequence[str]:
    from evoprune.problem import FITNESS_SPLITS

    return list(FITNESS_SPLITS)


def backbone_names() -> list[str]:
    """Registered backbone names (without building any model)."""
    from evoprune.backbones import registry

    return list(registry.REGISTRY)


def _encoding_help() -> str:
    from evoprune.encodings import ENCODINGS

    return "what one gene switches: " + "; ".join(f"{k}: {v}" for k, v in ENCODINGS.items())


def _init_metavar() -> str:
    from evoprune.search.operators import INIT_CHOICES

    return "|".join(INIT_CHOICES)


# --- value checks: each returns None when the value is fine, else what is allowed ----------


def _at_least(low: float, why: str = "") -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v >= low else f"must be at least {low}{why}"

    return check


def _within(low: float, high: float, why: str = "", limit: str = "") -> Callable[[Any], str | None]:
    """At least ``low`` (``why`` says why) and at most ``high`` (``limit`` says what the bound
    holds back: memory or time that the machine does not have)."""

    def check(v: Any) -> str | None:
        if v < low:
            return f"must be at least {low}{why}"
        if v > high:
            return f"must be at most {high:,}{limit}"
        return None

    return check


#: Bounds that keep a run within memory and time (issue 19): checked up front, for options
#: and for settings read back from a saved config.json alike.
MAX_POPULATION = 100_000
MAX_HIDDEN_SIZE = 65_536
MAX_EVALUATIONS = 10_000_000


def _open_unit(v: float) -> str | None:
    return None if 0.0 < v < 1.0 else "must be between 0 and 1 (exclusive)"


def _closed_unit(v: float) -> str | None:
    return None if 0.0 <= v <= 1.0 else "must be within [0, 1]"


def _seed(v: int) -> str | None:
    return None if 0 <= v <= MAX_SEED else f"must be an integer in [0, {MAX_SEED}] (2**32 - 1)"


def _non_empty(v: str) -> str | None:
    return (
        None
        if v.strip()
        else (
            "must name a folder, a CSV manifest or a built-in set "
            "(see 'evoprune datasets'); it is empty"
        )
    )


def _backbone(v: str) -> str | None:
    from evoprune.backbones import specs

    names = backbone_names()
    if v.strip().lower() in names:
        return None
    if specs.is_spec(v):
        return specs.check_spec(v)
    return (
        f"is not a known backbone; choose one of {', '.join(names)} (see 'evoprune "
        f"backbones'), or give {specs.SPEC_FORMS}"
    )


def _init(v: str) -> str | None:
    from evoprune.search.operators import parse_init

    try:
        parse_init(v)
    except ConfigError:
        return (
            "must be 'ranked', 'random', a density in [0, 1] such as 0.5, or a range a-b "
            "with 0 <= a <= b <= 1 such as 0.3-0.7"
        )
    return None


def _variations() -> Sequence[str]:
    from evoprune.search.guided import VARIATIONS

    return list(VARIATIONS)


def parse_objectives(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"accuracy,size"`` (or a sequence of names) -> names in canonical order.

    Raises ValueError with what is wrong (unknown, repeated, empty, accuracy missing)."""
    names = (
        [s.strip() for s in value.split(",")]
        if isinstance(value, str)
        else [str(s).strip() for s in value]
    )
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"must name at least one objective of {','.join(OBJECTIVES)}")
    bad = [n for n in names if n not in OBJECTIVES]
    if bad:
        raise ValueError(
            f"has unknown objective(s) {', '.join(bad)}; choose from {','.join(OBJECTIVES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError("repeats an objective")
    if "accuracy" not in names:
        raise ValueError("must include accuracy (for example accuracy,size)")
    return tuple(n for n in OBJECTIVES if n in names)


def _objectives_metavar() -> str:
    return "accuracy" + "".join(f"[,{name}]" for name in OBJECTIVES if name != "accuracy")


def _objectives_help() -> str:
    """--objectives' help, from the registry: what each one minimises."""
    from evoprune.pareto import MINIMISED_AS

    return (
        "comma-separated objectives, each minimised as: "
        + "; ".join(f"{name}: {MINIMISED_AS[name]}" for name in OBJECTIVES)
        + ". Default: accuracy"
    )


def _check_parsed(parse: Callable[[Any], Any]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        try:
            parse(v)
        except ValueError as exc:
            return str(exc)
        return None

    return check


def _address(v: str) -> str | None:
    return None if v.strip() else "is empty; give host:port of a Ray head node, or auto"


def _ood(v: str) -> str | None:
    if not v.strip():
        return (
            f"is empty; give a folder of images, a CSV of images, or one of "
            f"{', '.join(BUILTIN_OOD)}"
        )
    if v in BUILTIN_OOD or Path(v).exists():
        return None
    return (
        f"is neither a built-in OOD set ({', '.join(BUILTIN_OOD)}) nor an existing folder or "
        "CSV file of images"
    )


# --- the declaration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One run setting, declared once.

    ``type`` is int, float, str, bool or tuple (a comma list on the command line);
    ``nullable`` allows None (the default then means "decided from other settings");
    ``choices`` is a sequence or a function returning one (read lazily); ``estimator`` is the
    parameter name in :class:`~evoprune.estimator.EvoPruneClassifier` (None: not a parameter);
    ``check`` returns None or what is allowed; ``result`` says whether the setting can change
    a run's result (cosmetic settings are left out of the results-folder hash).
    """

    name: str
    type: type
    default: Any
    help: str | Callable[[], str]
    group: str
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    nullable: bool = False
    estimator: str | None = None
    check: Callable[[Any], str | None] | None = None
    metavar: str | Callable[[], str] | None = None
    result: bool = True
    option: str | None = None  # the flag's name when it is not the setting's (async)
    parse: Callable[[Any], tuple] | None = None  # a tuple setting's canonical form

    @property
    def flag(self) -> str:
        return "--" + (self.option or self.name.replace("_", "-"))

    def choice_list(self) -> list[str] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def help_text(self) -> str:
        return self.help() if callable(self.help) else self.help

    def metavar_text(self) -> str | None:
        return self.metavar() if callable(self.metavar) else self.metavar


SETTINGS: tuple[Setting, ...] = (
    # the paper's settings, in the order of the earlier RunConfig fields (the options are
    # grouped by `group` on the command line)
    Setting(
        "data",
        str,
        "elpv",
        group="data",
        metavar="PATH|NAME",
        check=_non_empty,
        help="a folder of class folders, a folder with train/ and test/, a folder of k "
        "partitions each with train/ and test/, a CSV manifest (path,label[,split]), "
        "or a built-in set (see 'evoprune datasets'). Default: elpv",
    ),
    Setting(
        "encoding",
        str,
        "fs",
        group="head",
        choices=_encodings,
        check=_encoding,
        estimator="encoding",
        help=_encoding_help,
    ),
    Setting(
        "backbone",
        str,
        "efficientnet-lite0",
        group="head",
        check=_backbone,
        help="frozen feature extractor: a name (see 'evoprune backbones'), or timm:NAME, "
        "torchvision:NAME, a .pt/.pth/.onnx file or module:factory, with options such as "
        "'model.onnx?size=64'. Default: efficientnet-lite0",
    ),
    Setting(
        "hidden_size",
        int,
        512,
        group="head",
        estimator="hidden_size",
        check=_within(
            1,
            MAX_HIDDEN_SIZE,
            limit=" (a head of 1280 features x 65,536 units already holds 84 million weights, "
            "over 1 GB with its gradients and optimiser state)",
        ),
        help="neurons per hidden layer. Default: 512",
    ),
    Setting(
        "population",
        int,
        30,
        group="search",
        estimator="population",
        check=_within(
            4,
            MAX_POPULATION,
            " (mating draws 1 + 3 parents)",
            " (a larger population's masks and scores do not fit in memory, and its first "
            "generation alone would take days)",
        ),
        help="GA population. Default: 30",
    ),
    Setting(
        "evaluations",
        int,
        None,
        nullable=True,
        group="search",
        estimator="evaluations",
        check=_within(
            1,
            MAX_EVALUATIONS,
            limit=" (each evaluation trains a head: more cannot finish in a month, and the "
            "history would not fit in memory)",
        ),
        help="budget of fitness evaluations, initial population included. "
        "Default: 200 (300 for --encoding both)",
    ),
    Setting(
        "trainer",
        str,
        "fast",
        group="head",
        choices=_trainers,
        estimator="trainer",
        help="fast (default; Adam on standardised features, few epochs) or paper (SGD 1e-3, "
        "Nesterov, batch 32, <= 600 epochs, early stopping)",
    ),
    Setting(
        "fitness_split",
        str,
        "validation",
        group="fitness",
        choices=_fitness_splits,
        estimator="fitness_split",
        help="where fitness is measured: validation (default; a stratified part of the "
        "training data), cv (k-fold inside the training data), or test (the paper's "
        "protocol; leaks the test set, result marked leaked)",
    ),
    Setting(
        "val_fraction",
        float,
        0.2,
        group="fitness",
        estimator="val_fraction",
        check=_open_unit,
        help="validation fraction of the training data. Default: 0.2",
    ),
    Setting(
        "cv_folds",
        int,
        5,
        group="fitness",
        estimator="cv_folds",
        check=_at_least(2),
        help="folds for --fitness-split cv. Default: 5",
    ),
    Setting(
        "test_fraction",
        float,
        0.2,
        group="data",
        check=_open_unit,
        help="held-out test fraction when the data has no test set (stratified, seeded). "
        "Default: 0.2",
    ),
    Setting(
        "fold",
        int,
        0,
        group="data",
        check=_at_least(0),
        help="which partition to use for the k-partition layout. Default: 0",
    ),
    Setting(
        "init",
        str,
        None,
        nullable=True,
        group="search",
        estimator="init",
        check=_init,
        metavar=_init_metavar,
        help="initial population: ranked (half the top-k masks of every ranking of the units, "
        "scored on the fitness split's training part, at sizes spread log-uniformly; half "
        "drawn like random), random (densities U(0,1), the paper's), a fixed density, or a "
        "range a-b. Default: ranked for encodings that switch units, random for edges",
    ),
    Setting(
        "mutation_prob",
        float,
        0.07,
        group="search",
        estimator="mutation_prob",
        check=_closed_unit,
        help="probability that a child gets one gene flipped (the paper's variation). "
        "Default: 0.07",
    ),
    Setting(
        "variation",
        str,
        None,
        nullable=True,
        group="search",
        choices=_variations,
        estimator="variation",
        help="how children vary: paper (one-gene mutation with --mutation-prob; NSGA-II: "
        "bit flips at 1/L) or guided (every child gets score-guided moves: switch on "
        "high-scoring units, off low-scoring ones, or swap one for another at constant size; "
        "the scores start from the rankings and learn from the evaluations). Default: "
        "guided with --init ranked, else paper",
    ),
    Setting(
        "seed",
        int,
        0,
        group="search",
        estimator="random_state",
        check=_seed,
        help="seed for every random choice (splits, search, training). Default: 0",
    ),
    Setting(
        "skip_bad_images",
        bool,
        False,
        group="data",
        help="skip unreadable images with a warning instead of stopping",
    ),
    Setting(
        "limit",
        int,
        None,
        nullable=True,
        group="data",
        metavar="N",
        check=_at_least(1),
        help="use a stratified sample of N images (quick trials)",
    ),
    # objectives (multi-objective search)
    Setting(
        "objectives",
        tuple,
        ("accuracy",),
        group="objectives",
        estimator="objectives",
        check=_check_parsed(parse_objectives),
        parse=parse_objectives,
        metavar=_objectives_metavar,
        help=_objectives_help,
    ),
    Setting(
        "algorithm",
        str,
        "auto",
        group="objectives",
        choices=_algorithms,
        estimator="algorithm",
        help=algorithm_help,
    ),
    Setting(
        "select",
        str,
        None,
        nullable=True,
        group="objectives",
        estimator="select",
        check=_check_parsed(parse_select),
        metavar="|".join(SELECT_RULES),
        help="which head of the front to use, for more than one objective: knee, accuracy "
        "(the most accurate), smallest-within:X (the smallest within X accuracy points "
        "of the best fitness) or one-se (the smallest within one standard error of the "
        "best fitness). Default: one-se",
    ),
    Setting(
        "ood",
        str,
        None,
        nullable=True,
        group="objectives",
        check=_ood,
        metavar="PATH|" + "|".join(BUILTIN_OOD),
        help="out-of-distribution images for the ood objective: a folder (searched "
        "recursively), a CSV of images, or a built-in set (" + ", ".join(BUILTIN_OOD) + ")",
    ),
    Setting(
        "ood_score",
        str,
        "energy",
        group="objectives",
        choices=OOD_SCORES,
        estimator="ood_score",
        help="how a head scores in-distribution-ness for ood: energy (default), msp "
        "(maximum softmax probability) or temperature (softmax at T = 1000)",
    ),
    # where torch work runs; results agree up to float rounding, so it is not hashed
    Setting(
        "device",
        str,
        "auto",
        group="head",
        choices=DEVICES,
        estimator="device",
        result=False,
        help="where features are extracted and heads trained: auto (default; a GPU when "
        "torch sees one, else the CPU), cpu, or cuda",
    ),
    # where the work runs (Ray): none of these changes a result, so they are not hashed
    Setting(
        "workers",
        int,
        1,
        group="cluster",
        check=_at_least(1),
        result=False,
        metavar="N",
        help="evaluate on N Ray worker processes (pip install 'evoprune[ray]'); 1 (default) "
        "runs in this process without Ray. Results do not depend on N",
    ),
    Setting(
        "ray_address",
        str,
        None,
        nullable=True,
        group="cluster",
        check=_address,
        result=False,
        metavar="ADDR",
        help="join the running Ray cluster at ADDR (host:port of 'ray start --head', or "
        "auto) instead of starting one; default: the RAY_ADDRESS environment variable",
    ),
    Setting(
        "threads_per_worker",
        int,
        None,
        nullable=True,
        group="cluster",
        check=_at_least(1),
        result=False,
        metavar="T",
        help="torch threads of each evaluation. Default: in this process, the cores other "
        "work leaves free; on each Ray worker, 1. A head's weights were bit-identical with 1 "
        "and 2 threads in our tests; fix T to be sure that runs on different numbers of "
        "workers agree to the bit",
    ),
    Setting(
        "asynchronous",
        bool,
        False,
        group="cluster",
        option="async",
        help=_async_help,
    ),
    # how masks are scored (the problem's fidelity) and how the shipped head is chosen
    Setting(
        "fidelity",
        str,
        "full",
        group="search",
        choices=FIDELITIES,
        estimator="fidelity",
        help="how the search scores a mask: full (default; train its head on every fitness "
        "fold), shared (a forward pass of one head per fold trained once on randomly masked "
        "units: milliseconds), or multi (shared scores, then the best masks promoted by "
        "successive halving to full training: the result rests on full scores)",
    ),
    Setting(
        "shared_evaluations",
        int,
        None,
        nullable=True,
        group="search",
        estimator="shared_evaluations",
        check=_at_least(1),
        metavar="N",
        help="budget of shared-head evaluations for --fidelity shared or multi (--evaluations "
        f"counts full trainings). Default: {SHARED_PER_FULL} x --evaluations",
    ),
    Setting(
        "final_check",
        str,
        None,
        nullable=True,
        group="search",
        choices=FINAL_CHECKS,
        estimator="final_check",
        help="how the shipped head (and the front) is chosen: none (by the search's fitness), "
        "cv (the top candidates re-scored by k-fold cross-validation on the training "
        "images, --final-check-folds k; by accuracy, ties by the mean probability of the true "
        "class) or cv-prob (the same, by the mean probability of the true class, ties by "
        "accuracy). Default: cv-prob when --fidelity is not full, else none",
    ),
    Setting(
        "final_check_folds",
        int,
        5,
        group="search",
        estimator="final_check_folds",
        check=_at_least(2),
        metavar="K",
        help="folds of --final-check cv. Default: 5",
    ),
    Setting(
        "final_check_top",
        int,
        16,
        group="search",
        estimator="final_check_top",
        check=_at_least(1),
        metavar="N",
        help="candidates --final-check cv re-scores: the N best by fitness (one objective), "
        "the best of each of N size bands spread log-uniformly over the evaluated sizes "
        "(accuracy and size), or N front heads spread over sizes (with ood). Default: 16",
    ),
    Setting(
        "sizes",
        tuple,
        None,
        nullable=True,
        group="search",
        estimator="sizes",
        parse=parse_sizes,
        metavar="F1,F2",
        help="head sizes to offer, as fractions of the units (e.g. 0.02,0.05,0.1): the ranked "
        "start holds every ranking's top-k at exactly each size, and with accuracy and size as "
        "objectives the final check re-scores the best heads at or below each (its front then "
        "holds those). Default: none (the final check's size bands)",
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
GROUPS = tuple(SETTING_GROUPS)  # the command line's option groups, in this order
#: Settings a saved configuration may lack (written before they existed); their defaults
#: resolve to what those runs did (variation: paper, as their init was never ranked).
NEWER_SETTINGS = ("variation",)


def estimator_settings() -> tuple[Setting, ...]:
    """The settings that are :class:`~evoprune.estimator.EvoPruneClassifier` parameters, in
    the order of its ``__init__``."""
    return tuple(s for s in SETTINGS if s.estimator)


def estimator_defaults() -> dict[str, Any]:
    """``{parameter name: default}`` of the estimator, from the declaration."""
    return {name: s.default for name, s in estimator_params().items()}


def estimator_params() -> dict[str, Setting]:
    """``{parameter name: setting}`` of the estimator, in the order of its ``__init__``."""
    return {s.estimator: s for s in SETTINGS if s.estimator is not None}


def result_settings() -> tuple[str, ...]:
    """Names of the settings that can change a run's result (hashed into the folder name).

    Every setting today: none is purely cosmetic (``skip_bad_images`` decides which images are
    used; ``ood_score`` and ``ood`` decide the ood objective). Output, cache and progress
    options are not run settings at all."""
    return tuple(s.name for s in SETTINGS if s.result)


# --- validation (the one place) --------------------------------------------------------------


def _describe(setting: Setting, value: Any, py_name: str | None = None) -> str:
    """``--population 1 (population=1)``: the option as typed and as a Python argument."""
    shown = ",".join(value) if isinstance(value, tuple) and setting.type is tuple else value
    shown = shlex.quote(shown) if isinstance(shown, str) else shown
    return f"{setting.flag} {shown} ({py_name or setting.name}={value!r})"


def _fail(setting: Setting, value: Any, message: str, py_name: str | None = None) -> ConfigError:
    return ConfigError(f"{_describe(setting, value, py_name)}: {message}")


def _coerce(setting: Setting, value: Any, py_name: str | None) -> Any:
    """``value`` as the setting's type (numpy scalars to Python), or ConfigError."""
    if value is None:
        if setting.nullable:
            return None
        raise _fail(setting, value, "must be given (None is not allowed)", py_name)
    t = setting.type
    if t is bool:
        if isinstance(value, (bool, numbers.Integral)) and value in (0, 1):
            return bool(value)
        raise _fail(setting, value, "must be true or false", py_name)
    if t is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _fail(setting, value, "must be an integer", py_name)
    if t is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            v = float(value)
            if not math.isfinite(v):
                raise _fail(setting, value, "must be a finite number", py_name)
            return v
        raise _fail(setting, value, "must be a number", py_name)
    if t is tuple:
        if setting.parse is not None:
            try:
                return setting.parse(value)
            except ValueError as exc:
                raise _fail(setting, value, str(exc), py_name) from None
        if isinstance(value, str):
            return tuple(s.strip() for s in value.split(",") if s.strip())
        return tuple(value)
    if isinstance(value, str):
        return value
    raise _fail(setting, value, "must be a string", py_name)


def _check_one(setting: Setting, value: Any, py_name: str | None = None) -> Any:
    value = _coerce(setting, value, py_name)
    if value is None:
        return None
    choices = setting.choice_list()
    if choices is not None and value not in choices:
        raise _fail(setting, value, f"is unknown; choose one of {', '.join(choices)}", py_name)
    if setting.check is not None:
        problem = setting.check(value)
        if problem:
            raise _fail(setting, value, problem, py_name)
    return value


def validate_values(
    values: Mapping[str, Any], py_names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Check ``{setting name: value}`` (any subset of the settings) and return them resolved:
    types normalised, ``evaluations`` filled in from the encoding, ``algorithm`` decided,
    ``select`` defaulted for several objectives, objectives in canonical order.

    Checks between settings run when the settings they involve are all present.
    ``py_names`` renames settings in messages (the estimator's ``random_state``).
    Raises ConfigError naming the option (flag and Python name), the value and what is allowed.
    """
    py_names = dict(py_names or {})
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    out = {k: _check_one(BY_NAME[k], v, py_names.get(k)) for k, v in values.items()}

    def fail(name: str, message: str) -> ConfigError:
        return _fail(BY_NAME[name], out[name], message, py_names.get(name))

    _resolve_budget(out, fail)
    if "encoding" in out:
        _resolve_start(out, fail)
    if "objectives" in out:
        _resolve_objectives(out, fail)
    _resolve_fidelity(out, fail)
    return out


Fail = Callable[[str, str], ConfigError]


def _resolve_budget(out: dict[str, Any], fail: Fail) -> None:
    """``evaluations`` filled in from the encoding; at least the population."""
    defaulted = ""
    if "evaluations" in out and "encoding" in out and out["evaluations"] is None:
        out["evaluations"] = default_evaluations(out["encoding"])
        defaulted = f" (the default for encoding {out['encoding']}; give --evaluations)"
    if (
        out.get("evaluations") is not None
        and "population" in out
        and out["evaluations"] < out["population"]
    ):
        raise fail(
            "evaluations",
            f"must be at least population={out['population']}: the "
            f"initial population counts toward the budget{defaulted}",
        )


def _resolve_start(out: dict[str, Any], fail: Fail) -> None:
    """``init`` and ``variation`` defaulted from the encoding (ranked and guided where its
    genes switch whole units, else random and paper); the ranked ones refused elsewhere."""
    from evoprune.encodings import encoding_spec

    units = encoding_spec(out["encoding"]).switches_units
    if "init" in out:
        if out["init"] is None:
            out["init"] = "ranked" if units else "random"
        elif out["init"] == "ranked" and not units:
            raise fail(
                "init",
                f"encoding {out['encoding']} switches no whole units, so there is no "
                "ranking to start from; use --init random",
            )
    if "variation" in out:
        if out["variation"] is None:
            out["variation"] = "guided" if out.get("init") == "ranked" else "paper"
        elif out["variation"] == "guided" and not units:
            raise fail(
                "variation",
                f"encoding {out['encoding']} switches no whole units, so there are no "
                "unit scores to guide it; use --variation paper",
            )


def _resolve_objectives(out: dict[str, Any], fail: Fail) -> None:
    """``algorithm`` decided and ``select`` defaulted from the number of objectives; the
    asynchronous mode and the ood objective checked against them."""
    several = len(out["objectives"]) > 1
    if "algorithm" in out:
        if out["algorithm"] == "auto":
            out["algorithm"] = auto_algorithm(several)
        elif several and not SEARCH_ALGORITHMS[out["algorithm"]].several_objectives:
            fronts = [n for n, a in SEARCH_ALGORITHMS.items() if a.several_objectives]
            raise fail(
                "algorithm",
                f"the {SEARCH_ALGORITHMS[out['algorithm']].description} optimises one "
                f"objective; use --algorithm {' or '.join(fronts)} (or auto) for "
                f"{','.join(out['objectives'])}",
            )
    if "select" in out:
        if out["select"] is not None and not several:
            raise fail(
                "select",
                "choosing a head from a front needs more than one "
                "objective; add --objectives accuracy,size or drop --select",
            )
        if out["select"] is None and several:
            out["select"] = DEFAULT_SELECT
    _check_asynchronous(out, fail)
    for name in out["objectives"]:  # a setting an objective cannot do without
        needs = objective(name).needs
        if needs is not None and needs in out and out[needs] is None:
            raise fail("objectives", f"{name} needs {objective(name).needs_why}")


def _check_asynchronous(out: dict[str, Any], fail: Fail) -> None:
    """--async only with an algorithm that runs asynchronously and full trainings."""
    algorithm = SEARCH_ALGORITHMS.get(out.get("algorithm", ""))
    if out.get("asynchronous") and algorithm is not None and not algorithm.asynchronous:
        able = [n for n, a in SEARCH_ALGORITHMS.items() if a.asynchronous]
        raise fail(
            "asynchronous",
            f"the asynchronous mode inserts each result as it arrives; the "
            f"{algorithm.description} evaluates in synchronous batches: drop --async or use "
            f"--algorithm {' or '.join(able)}",
        )
    if out.get("asynchronous") and out.get("fidelity", "full") != "full" and "fidelity" in out:
        raise fail(
            "asynchronous",
            "the asynchronous mode keeps full trainings in flight; drop --async for "
            f"--fidelity {out['fidelity']}",
        )


def _resolve_fidelity(out: dict[str, Any], fail: Fail) -> None:
    """Checks of --fidelity against the encoding and the budgets; ``shared_evaluations`` and
    ``final_check`` filled in from it."""
    if "fidelity" not in out:
        return
    fidelity = out["fidelity"]
    if fidelity == "full":
        if out.get("shared_evaluations") is not None:
            raise fail(
                "shared_evaluations",
                "counts evaluations by a shared head; give --fidelity shared or multi, or drop "
                "--shared-evaluations",
            )
    else:
        if "encoding" in out:
            from evoprune.encodings import encoding_spec

            if not encoding_spec(out["encoding"]).switches_units:
                raise fail(
                    "fidelity",
                    f"a shared head scores masks of whole units; encoding {out['encoding']} "
                    "switches connections: use --fidelity full with it",
                )
        if (
            "shared_evaluations" in out
            and out["shared_evaluations"] is None
            and out.get("evaluations") is not None
        ):
            out["shared_evaluations"] = SHARED_PER_FULL * out["evaluations"]
        shared = out.get("shared_evaluations")
        if shared is not None and "population" in out and shared < out["population"]:
            raise fail(
                "shared_evaluations",
                f"must be at least population={out['population']}: the initial population "
                "is scored by the shared head",
            )
    if "final_check" in out and out["final_check"] is None:
        out["final_check"] = "none" if fidelity == "full" else "cv-prob"


# --- the configuration of a run ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunConfig(
    DataSettings,
    HeadSettings,
    FitnessSettings,
    SearchSettings,
    ObjectiveSettings,
    ClusterSettings,
):
    """The settings of one run: every field of every group of :mod:`evoprune.settings` (one
    field per setting of :data:`SETTINGS`, with its default); build it with keywords.

    A RunConfig is an instance of each group, so a layer that takes its group
    (``executor_for(ClusterSettings)``, ``make_folds(X, y, FitnessSettings)``) takes it as it is;
    :meth:`group` gives only one group's fields."""

    def group(self, group: type[G]) -> G:
        """Only ``group``'s fields (for example ``cfg.group(ClusterSettings)``)."""
        return group_of(self, group)

    def validate(self) -> RunConfig:
        """A resolved copy (``evaluations``, ``algorithm``, ``select`` filled in, objectives in
        canonical order) after every check of :data:`SETTINGS`. Raises ConfigError naming the
        option as flag and Python name, the bad value and what is allowed."""
        return dataclasses.replace(self, **validate_values(self._values()))

    def resolved(self) -> RunConfig:
        """The same as :meth:`validate` (the older name)."""
        return self.validate()

    def _values(self) -> dict[str, Any]:
        """``{setting: value}`` in the declaration's order."""
        return {s.name: getattr(self, s.name) for s in SETTINGS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples as lists), in the declaration's order."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._values().items()}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RunConfig:
        """A configuration from :meth:`to_dict`'s output (for example a saved config.json), not
        yet validated. Unknown or missing keys raise ConfigError naming them (another
        version's file)."""
        if not isinstance(doc, Mapping):
            raise ConfigError(
                f"a saved run configuration must be a mapping of settings, got {type(doc).__name__}"
            )
        unknown = sorted(set(doc) - set(BY_NAME))
        # a run saves only result settings; where the work ran (the cluster group, --async
        # included) is missing from folders written before it existed: both take their defaults
        # and settings added since (NEWER_SETTINGS) take theirs, which resolve to what such
        # runs did
        missing = [
            s.name
            for s in SETTINGS
            if s.name not in doc
            and s.result
            and s.group != "cluster"
            and s.name not in NEWER_SETTINGS
        ]
        if unknown or missing:
            parts = ([f"unknown setting(s) {', '.join(unknown)}"] if unknown else []) + (
                [f"missing setting(s) {', '.join(missing)}"] if missing else []
            )
            raise ConfigError(
                "the saved run configuration has "
                + " and ".join(parts)
                + "; it was written by another version of evoprune"
            )
        values: dict[str, Any] = {
            k: tuple(v) if BY_NAME[k].type is tuple and isinstance(v, list) else v
            for k, v in doc.items()
        }
        return cls(**values)

    def result_dict(self) -> dict[str, Any]:
        """The settings that change the result (:func:`result_settings`), JSON-ready."""
        d = self.to_dict()
        return {k: d[k] for k in result_settings()}

    def fingerprint(self) -> str:
        """8 hex digits of a SHA-256 of every result setting of the resolved configuration."""
        text = json.dumps(self.validate().result_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


# the fields in the declaration's order (dataclasses.fields, asdict, replace): the bases give
# them group by group; the generated __init__ takes keywords only, so it does not depend on it
RunConfig.__dataclass_fields__ = {s.name: RunConfig.__dataclass_fields__[s.name] for s in SETTINGS}


def default_out_dir(cfg: RunConfig) -> Path:
    """``runs/<data name>_<encoding>_<backbone>_s<seed>-<8 hex>``; the hash covers every
    result setting, so runs that differ in any of them never share a folder."""
    cfg = cfg.validate()
    data = Path(cfg.data).name or "data"
    backbone = backbone_folder_word(cfg.backbone)
    return Path("runs") / f"{data}_{cfg.encoding}_{backbone}_s{cfg.seed}-{cfg.fingerprint()}"


def backbone_folder_word(backbone: str) -> str:
    """A backbone as part of a folder name: a registered name as it is; a spec's file stem or
    model name, other characters as '-' (``timm:resnet18`` -> ``timm-resnet18``)."""
    from evoprune.backbones import specs

    text = str(backbone).strip()
    if specs.spec_file(text) is not None:
        text = Path(specs.spec_file(text) or text).stem
    text = text.split("?")[0]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "backbone"


# --- command line -----------------------------------------------------------------------------


def _objectives_arg(text: str) -> tuple[str, ...] | str:
    return text  # parsed and checked by validate(), which names the option


def add_run_options(parser, exclude: Iterable[str] = ()) -> None:
    """Add one argparse option per setting (grouped data / model / search / objectives) with
    the declaration's flag, default, help, choices and metavar. ``exclude`` names settings that
    a command defines its own way (compare: encoding, seed)."""
    exclude = set(exclude)
    unknown = exclude - set(BY_NAME)
    if unknown:
        raise ValueError(f"add_run_options: unknown settings {sorted(unknown)}")
    groups = {g: parser.add_argument_group(g) for g in GROUPS}
    for s in SETTINGS:
        if s.name in exclude:
            continue
        g = groups[s.group]
        if s.type is bool:
            g.add_argument(s.flag, dest=s.name, action="store_true", help=s.help_text())
            continue
        kwargs: dict[str, Any] = {"dest": s.name, "default": s.default, "help": s.help_text()}
        if s.type in (int, float):
            kwargs["type"] = s.type
        elif s.type is tuple:
            kwargs["type"] = _objectives_arg
        choices = s.choice_list()
        if choices is not None:
            kwargs["choices"] = choices
        metavar = s.metavar_text()
        if metavar is not None:
            kwargs["metavar"] = metavar
        g.add_argument(s.flag, **kwargs)


def config_from_args(args, **overrides: Any) -> RunConfig:
    """The (not yet validated) RunConfig of parsed arguments; settings missing from ``args``
    (excluded options) take ``overrides`` or their defaults."""
    values = {s.name: getattr(args, s.name) for s in SETTINGS if hasattr(args, s.name)}
    values.update(overrides)
    return RunConfig(**values)


# --- the estimator -----------------------------------------------------------------------------


def validate_estimator_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check an estimator's ``get_params()`` (parameter names, e.g. ``random_state``) through
    the declaration; returns ``{parameter name: resolved value}``."""
    by_param = estimator_params()
    values = {by_param[k].name: v for k, v in params.items() if k in by_param}
    name_of = {s.name: param for param, s in by_param.items()}
    py_names = {name: param for name, param in name_of.items() if param != name}
    resolved = validate_values(values, py_names=py_names)
    return {name_of[k]: v for k, v in resolved.items()}


def config_from_estimator_params(params: Mapping[str, Any]) -> RunConfig:
    """The validated RunConfig of an estimator's parameters (settings it does not take keep
    their defaults); messages name the estimator's parameters (``random_state``)."""
    resolved = validate_estimator_params(params)
    by_param = {s.estimator: s.name for s in estimator_settings()}
    # already checked: validating again would ask for --ood, which an estimator gets from fit
    return RunConfig(**{by_param[k]: v for k, v in resolved.items()})
