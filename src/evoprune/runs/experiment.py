"""One EvoPruneDeepTL run from images to a results folder: the protocol, honest by default.

images -> held-out test split -> cached features -> GA search on a fitness split inside the
training data -> best mask retrained on all training data -> scored on the test set next to the
not-pruned head trained the same way. Every evaluation is appended to ``history.csv`` as it
happens, so an interrupted run resumes where it stopped when started again with the same
configuration.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evoprune import __version__
from evoprune.devices import describe_device, resolve_device
from evoprune.errors import ConfigError, DataError
from evoprune.model.head import dense_sizes, nonzero_params
from evoprune.pareto import DEFAULT_SELECT
from evoprune.runs.classes import per_class_fields
from evoprune.runs.config import CV_FINAL_CHECKS, RunConfig, default_out_dir
from evoprune.runs.context import RunContext
from evoprune.runs.evolve import Evolved, evolve
from evoprune.runs.front import FinalHeads, finish_heads, selection_path
from evoprune.runs.store import (
    HEAD_FILE,
    REFERENCE_HEAD_FILE,
    RunResult,
    RunWriter,
    portable_backbone,
    portable_path,
    save_head,
    write_front,
)

log = logging.getLogger(__name__)


def _split_indices(dataset, cfg: RunConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """(train, test) indices into the dataset and how the test set was chosen."""
    from evoprune.data import stratified_split

    if not dataset.folds and cfg.fold != 0:
        raise ConfigError(
            f"--fold {cfg.fold} (fold={cfg.fold}): {cfg.data} has no partitions "
            "(k folders each with train/ and test/); drop --fold"
        )
    if dataset.folds:
        if not 0 <= cfg.fold < len(dataset.folds):
            raise ConfigError(
                f"fold={cfg.fold} is out of range: {cfg.data} has "
                f"{len(dataset.folds)} partitions (0..{len(dataset.folds) - 1})"
            )
        train, test = dataset.folds[cfg.fold]
        return np.asarray(train), np.asarray(test), f"partition {cfg.fold} of {len(dataset.folds)}"
    if dataset.test_idx is not None and len(dataset.test_idx):
        test = np.asarray(dataset.test_idx)
        train = np.setdiff1d(np.arange(len(dataset.paths)), test)
        return train, test, "given test set"
    try:
        train, test = stratified_split(
            dataset.labels, cfg.test_fraction, cfg.seed, classes=dataset.classes
        )
    except DataError as exc:
        used = f" (--limit {cfg.limit})" if cfg.limit else ""
        raise ConfigError(
            f"--test-fraction {cfg.test_fraction}: {exc}; the held-out split is made from "
            f"the {len(dataset.paths)} images used{used}: change --test-fraction"
            + (" or --limit" if cfg.limit else "")
            + ", or give more images"
        ) from None
    return train, test, f"stratified {cfg.test_fraction:.0%} held out (seed {cfg.seed})"


def _limit(dataset, cfg: RunConfig) -> np.ndarray:
    """Indices of the images used: all, or a stratified ``limit`` of them (quick trials)."""
    from evoprune.data import stratified_split

    n = len(dataset.paths)
    if not cfg.limit or cfg.limit >= n:
        return np.arange(n)
    try:
        _, keep = stratified_split(dataset.labels, cfg.limit / n, cfg.seed, classes=dataset.classes)
    except DataError as exc:
        raise ConfigError(
            f"--limit {cfg.limit}: {exc}; give --limit at least 2 images per class "
            f"({2 * dataset.n_classes} here), or leave it out"
        ) from None
    return keep


@dataclass
class PreparedData:
    """A dataset split into training and held-out test features, ready for heads."""

    name: str
    classes: list[str]
    paths: list[str]
    labels: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    test_origin: str
    skipped: list[str]
    X: np.ndarray
    features_cached: bool
    feature_key: str
    feature_seconds: float
    feature_form: str = ""  # the backbone's form that computed X ("onnxruntime/cpu")
    # rows of X_train that are a given validation set (a validation/ folder): the fitness split
    validation: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def X_train(self) -> np.ndarray:
        return self.X[self.train_idx]

    @property
    def y_train(self) -> np.ndarray:
        return self.labels[self.train_idx]

    @property
    def X_test(self) -> np.ndarray:
        return self.X[self.test_idx]

    @property
    def y_test(self) -> np.ndarray:
        return self.labels[self.test_idx]


def prepare_data(
    cfg: RunConfig, *, progress: bool = True, cache_dir: str | Path | None = None
) -> PreparedData:
    """Load ``cfg.data``, choose the held-out test set and compute (or load) its features."""
    from evoprune.backbones import get_backbone
    from evoprune.cluster import feature_compute
    from evoprune.data import load_dataset
    from evoprune.features import extract_features

    backbone = get_backbone(cfg.backbone)
    dataset = load_dataset(cfg.data, skip_bad=cfg.skip_bad_images)
    sub = _used_images(dataset, cfg)
    paths, labels = sub.paths, sub.labels
    train_idx, test_idx, test_origin = _split_indices(sub, cfg)
    missing = sorted(set(range(dataset.n_classes)) - set(labels[train_idx].tolist()))
    if missing:
        raise DataError(
            f"{cfg.data}: class(es) {', '.join(dataset.classes[i] for i in missing)} "
            f"have no training images ({test_origin}); add training images of "
            "them or remove them from the test set"
        )
    _warn_held_out_copies(paths, train_idx, test_idx)
    log.info(
        "%s: %d images, %d classes; %d for training, %d held out (%s)",
        dataset.name,
        len(paths),
        dataset.n_classes,
        len(train_idx),
        len(test_idx),
        test_origin,
    )
    feats = extract_features(
        backbone,
        paths,
        cache_dir=cache_dir,
        progress=progress,
        compute=feature_compute(cfg),
        device=cfg.device,
    )
    return PreparedData(
        name=dataset.name,
        classes=list(dataset.classes),
        paths=paths,
        labels=np.asarray(labels),
        train_idx=np.asarray(train_idx),
        test_idx=np.asarray(test_idx),
        test_origin=test_origin,
        skipped=list(dataset.skipped),
        X=feats.X,
        features_cached=feats.cached,
        feature_key=feats.key,
        feature_seconds=feats.seconds,
        feature_form=feats.form,
        validation=_validation_rows(sub.val_idx, train_idx),
    )


def _used_images(dataset, cfg: RunConfig):
    """The dataset restricted to the images used (all, or a stratified ``limit``), its test,
    validation and partition indices renumbered."""
    used = _limit(dataset, cfg)
    return dataclasses.replace(
        dataset,
        paths=[dataset.paths[i] for i in used],
        labels=dataset.labels[used],
        test_idx=_reindex(dataset.test_idx, used),
        val_idx=_reindex(dataset.val_idx, used),
        folds=None
        if dataset.folds is None
        else [(_reindex(a, used), _reindex(b, used)) for a, b in dataset.folds],
    )


def _validation_rows(val_idx, train_idx: np.ndarray) -> np.ndarray | None:
    """Positions in the training rows of a given validation set's images (None without one)."""
    if val_idx is None or not len(val_idx):
        return None
    rows = np.flatnonzero(np.isin(np.asarray(train_idx), np.asarray(val_idx)))
    log.info("fitness split: the given validation folder, %d of the training images", len(rows))
    return rows


def _warn_held_out_copies(paths: list[str], train_idx, test_idx) -> None:
    """Held-out images whose bytes equal a training image's (copies or links, in any layout)
    make the held-out accuracy optimistic: reported, with an example."""
    from evoprune.data.dataset import identical_files

    pairs = identical_files([paths[i] for i in train_idx], [paths[i] for i in test_idx])
    if pairs:
        log.warning(
            "%d held-out image(s) are identical to training images (same bytes; copies or "
            "links), e.g. %s = %s: the held-out accuracy counts them as unseen; remove the "
            "copies from the test images",
            len(pairs),
            *pairs[0],
        )


@dataclass
class OODData:
    """Backbone features of the out-of-distribution images: a part the search scores heads
    on, and a held-out part only the final report uses."""

    source: str
    X_search: np.ndarray
    X_heldout: np.ndarray
    feature_key: str


def prepare_ood(
    cfg: RunConfig,
    *,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    training_paths: list[str] | None = None,
) -> OODData:
    """Features of ``cfg.ood`` (a folder, a CSV or a built-in set), split by the run's seed.
    With ``training_paths`` (the run's images), OOD images identical to one are refused
    before any feature is computed."""
    from evoprune.data.dataset import identical_files
    from evoprune.data.ood_images import ood_split, write_ood_images
    from evoprune.features import default_cache_dir, extract_features

    if cfg.ood is None:
        raise ConfigError("ood=None: prepare_ood needs --ood PATH or a built-in OOD set")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    paths = write_ood_images(cfg.ood, cache / "ood-images")
    if training_paths is not None:
        same = identical_files(training_paths, paths)
        if same:
            raise ConfigError(
                f"--ood {cfg.ood}: {len(same)} of its {len(paths)} images are images of "
                f"--data (same bytes), e.g. {same[0][0]} = {same[0][1]}; out-of-distribution "
                "images must differ from the training data: give --ood other images"
            )
    feats = extract_features(
        cfg.backbone, paths, cache_dir=cache_dir, progress=progress, device=cfg.device
    )
    search, heldout = ood_split(len(paths), cfg.seed, cfg.test_fraction)
    return OODData(
        source=str(cfg.ood),
        X_search=feats.X[search],
        X_heldout=feats.X[heldout],
        feature_key=feats.key,
    )


def run_experiment(
    cfg: RunConfig,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    prepared: PreparedData | None = None,
    overwrite: bool = False,
) -> dict:
    """Run ``cfg`` and write its results folder; returns the ``result.json`` contents.

    Every setting is checked, and the folder too, before anything is computed or written.
    ``prepared`` reuses data already loaded by :func:`prepare_data` for the same data settings;
    ``overwrite`` moves a folder holding another configuration's run aside instead of stopping.
    """
    t_start = time.perf_counter()
    cfg = cfg.validate()
    resolve_device(cfg.device)  # --device cuda without a GPU stops here, before any work
    out = Path(out) if out is not None else default_out_dir(cfg)
    writer = RunWriter(out, overwrite)
    run_doc = saved_settings(cfg, out)
    writer.check(run_doc, data_roots=data_roots(cfg))
    finished = _already_finished(writer, run_doc)
    if finished is not None:  # nothing to do, and nothing is retrained or rewritten
        return finished
    data = (
        prepared
        if prepared is not None
        else prepare_data(cfg, progress=progress, cache_dir=cache_dir)
    )
    context, ood = _context(cfg, data, progress, cache_dir)
    encoding = context.encoding
    config_doc = _config_doc(run_doc, context, data, ood)
    from evoprune.cluster import executor_for

    # the executor first: a Ray address that does not answer stops before anything is written
    with executor_for(cfg) as executor, writer.claimed():
        known, appender = writer.begin(config_doc, encoding.n_genes, cfg.objectives)
        try:
            evolved = evolve(
                context, callbacks=[appender], known=known, executor=executor, progress=progress
            )
        finally:
            appender.close()
        final = finish_heads(context, evolved, ood, progress=progress)
        result = _result(
            cfg,
            data,
            evolved,
            final,
            resumed=len(known),
            wall_seconds=time.perf_counter() - t_start,
            out=out,
        )
        _write_outputs(writer, cfg, data, evolved, final, result)
    log.info("results written to %s", out)
    return result.to_dict()


def _already_finished(writer: RunWriter, run_doc: dict) -> dict | None:
    """result.json of the folder when it holds this run finished (said once), else None."""
    finished = writer.finished(run_doc)
    if finished is not None:
        log.warning(
            "already finished: %s holds this run's results (result.json); nothing was redone. "
            "To run it again, move that folder away or give another --out",
            writer.out,
        )
    return finished


def _config_doc(run_doc: dict, context: RunContext, data: PreparedData, ood) -> dict:
    """config.json: the settings, the version, the trainer's settings and the features."""
    doc = {
        "run": run_doc,
        "evoprune_version": __version__,
        "trainer_settings": context.trainer.describe(),
        "feature_cache_key": data.feature_key,
    }
    if ood is not None:
        doc["ood_feature_key"] = ood.feature_key
    return doc


def _context(
    cfg: RunConfig, data: PreparedData, progress: bool, cache_dir: str | Path | None
) -> tuple[RunContext, OODData | None]:
    """The run's context (and its OOD features), after every check that needs the data:
    the head's memory and the folds, before the first write."""
    ood = (
        prepare_ood(cfg, progress=progress, cache_dir=cache_dir, training_paths=list(data.paths))
        if cfg.ood
        else None
    )
    if cfg.fitness_split == "test":
        log.warning(
            "fitness_split='test': the search scores candidates on the test set, as the "
            "paper did; the reported test accuracy is optimistic (marked leaked)"
        )
    context = RunContext.of_data(cfg, data, ood_search=None if ood is None else ood.X_search)
    check_head_memory(cfg, data.X.shape[1], context.encoding.hidden, data.n_classes)
    check_folds(context, data)
    return context, ood


#: Bytes a head's weight needs while it trains: the weight, its gradient and two optimiser
#: moments in float32.
_BYTES_PER_TRAINED_WEIGHT = 16


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_head_memory(
    cfg: RunConfig, n_features: int, hidden: tuple[int, ...], n_classes: int
) -> None:
    """Refuse, before any work, a hidden size whose not-pruned head cannot train in half of
    this machine's memory, with the largest size that can."""
    memory = _physical_memory()
    if memory is None or not hidden:
        return
    budget = memory // 2

    def need(h: int) -> int:
        return dense_sizes(n_features, tuple(h for _ in hidden), n_classes)[0] * (
            _BYTES_PER_TRAINED_WEIGHT
        )

    if need(max(hidden)) <= budget:
        return
    low, high = 1, max(hidden)
    while low < high:  # the largest hidden size that fits
        mid = (low + high + 1) // 2
        low, high = (mid, high) if need(mid) <= budget else (low, mid - 1)
    params = dense_sizes(n_features, hidden, n_classes)[0]
    raise ConfigError(
        f"--hidden-size {cfg.hidden_size}: the not-pruned head has {params:,} weights, "
        f"{need(max(hidden)) / 2**30:.1f} GiB while it trains, over half of this machine's "
        f"{memory / 2**30:.1f} GiB: give --hidden-size {low} or less"
    )


def check_folds(context: RunContext, data: PreparedData) -> None:
    """Make the fitness folds (and the final check's) of the run now, so that too few images
    for them stop the run before its folder is written, naming the options to change; the
    search then uses the context's folds, made once."""
    from evoprune.problem import make_folds
    from evoprune.settings import FitnessSettings

    cfg = context.cfg
    where = f"the {len(data.train_idx)} training images"
    sizes = ([f"--limit {cfg.limit}"] if cfg.limit else []) + (
        [f"--test-fraction {cfg.test_fraction}"] if data.test_origin.startswith("strat") else []
    )
    try:
        _ = context.folds  # made once, here: the search uses them
    except (DataError, ConfigError) as exc:
        split = (
            [f"--cv-folds {cfg.cv_folds}"]
            if cfg.fitness_split == "cv"
            else [f"--val-fraction {cfg.val_fraction}"]
            if cfg.fitness_split == "validation"
            else []
        )
        raise ConfigError(
            f"--fitness-split {cfg.fitness_split}: {exc} (in {where}); change "
            + " or ".join(split + sizes + ["--data"])
        ) from None
    if cfg.final_check in CV_FINAL_CHECKS:
        try:
            check_split = FitnessSettings(
                fitness_split="cv",
                seed=(int(cfg.seed) + 1) % 2**32,
                cv_folds=int(cfg.final_check_folds),
            )
            make_folds(data.X_train, data.y_train, check_split)
        except (DataError, ConfigError) as exc:
            raise ConfigError(
                f"--final-check-folds {cfg.final_check_folds}: {exc} (in {where}); change "
                + " or ".join([f"--final-check-folds {cfg.final_check_folds}"] + sizes)
                + ", or give --final-check none"
            ) from None


def saved_settings(cfg: RunConfig, out: Path) -> dict:
    """The settings as a run in ``out`` saves them in config.json: image sources (data, ood)
    relative to the results folder."""
    doc = cfg.result_dict()  # where the work ran (workers, Ray) may change on a resume
    for key, source in _image_sources(cfg).items():
        doc[key] = portable_path(source, out)
    doc["backbone"] = portable_backbone(cfg.backbone, out)  # its file, if any, relative too
    return doc


def _image_sources(cfg: RunConfig) -> dict[str, str]:
    """The settings that name images on disk (not built-in sets): data and ood."""
    from evoprune.data.builtin import is_builtin
    from evoprune.data.ood_images import builtin_ood_names

    sources = {}
    if not is_builtin(cfg.data):
        sources["data"] = cfg.data
    if cfg.ood and cfg.ood not in builtin_ood_names():
        sources["ood"] = cfg.ood
    return sources


def data_roots(cfg: RunConfig) -> list[Path]:
    """Folders whose images a run reads: results must never be written inside them."""
    from evoprune.data.loading import source_roots

    return [Path(root) for source in _image_sources(cfg).values() for root in source_roots(source)]


def _result(
    cfg: RunConfig,
    data: PreparedData,
    evolved: Evolved,
    final: FinalHeads,
    *,
    resumed: int,
    wall_seconds: float,
    out: Path,
) -> RunResult:
    search = evolved.result
    return RunResult(
        dataset=data.name,
        data=saved_settings(cfg, out)["data"],
        backbone=portable_backbone(cfg.backbone, out),
        feature_dim=int(data.X.shape[1]),
        encoding=cfg.encoding,
        hidden_size=cfg.hidden_size,
        trainer=cfg.trainer,
        fitness_split=cfg.fitness_split,
        leaked_test_set=cfg.fitness_split == "test",
        seed=cfg.seed,
        classes=data.classes,
        n_classes=data.n_classes,
        n_images=len(data.paths),
        n_train=int(len(data.train_idx)),
        n_test=int(len(data.test_idx)),
        test_set=data.test_origin,
        skipped_images=[portable_path(p, out) for p in data.skipped],
        **_size_fields(data, evolved, final),
        evaluations=search.evaluations,
        iterations=search.iterations,
        memory_hits=search.memory_hits,
        resumed_evaluations=resumed,
        features_cached=bool(data.features_cached),
        feature_cache_key=data.feature_key,
        backbone_form=data.feature_form or None,
        timings=_timings(cfg, data, evolved, final),
        wall_seconds=wall_seconds,
        evoprune_version=__version__,
        objectives=list(cfg.objectives),
        algorithm=cfg.algorithm,
        select=cfg.select,
        front=None if final.front is None else [m.summary() for m in final.front],
        device=describe_device(cfg.device),
        fidelity=cfg.fidelity,
        shared_evaluations=search.shared_evaluations,
        final_check=cfg.final_check or "none",  # resolved by validate()
        check_accuracy=final.check_accuracy,
        selection_bias=final.selection_bias,
        check_selection_bias=None
        if final.check_accuracy is None
        else final.check_accuracy - final.test_accuracy,
        check_leak=final.check_leak,
        **_ood_fields(final),
        **per_class_fields(final.head, final.reference, data.X_test, data.y_test, data.classes),
    )


def _size_fields(data: PreparedData, evolved: Evolved, final: FinalHeads) -> dict:
    """The shipped head's genes, units, parameters and MACs, next to the not-pruned head's,
    and its scores."""
    enc, mask = evolved.encoding, final.mask
    ref_params, ref_macs = dense_sizes(data.X.shape[1], enc.hidden, data.n_classes)
    return {
        "genes": int(enc.n_genes),
        "active_genes": int(mask.sum()),
        "active_fraction": float(mask.mean()),
        "active_units": dict(zip(enc.layer_names(), enc.decode(mask).sizes)),
        "total_units": dict(zip(enc.layer_names(), (data.X.shape[1],) + enc.hidden)),
        "fitness": final.fitness,
        "test_accuracy": final.test_accuracy,
        "reference_test_accuracy": final.reference_test_accuracy,
        "head_params": nonzero_params(final.head),
        "reference_head_params": int(ref_params),
        "head_macs": final.head.n_macs(),
        "reference_head_macs": int(ref_macs),
        "best_mask": mask.astype(int).tolist(),
    }


def _timings(cfg: RunConfig, data: PreparedData, evolved: Evolved, final: FinalHeads) -> dict:
    """Seconds of each part of the run, measured only where they happen (the shared heads'
    training, the final check)."""
    return {
        "features": data.feature_seconds,
        "search": evolved.seconds,
        **({"shared_heads": evolved.problem.shared_seconds} if cfg.fidelity != "full" else {}),
        **({"final_check": final.check_seconds} if cfg.final_check != "none" else {}),
        "final_training": final.seconds,
        "reference_training": final.reference_seconds,
    }


def _ood_fields(final: FinalHeads) -> dict:
    """Held-out OOD AUROC and FPR95 of the shipped and the not-pruned head, when measured."""
    if final.reference_ood is None or final.front is None:  # measured for a front only
        return {}
    chosen = next(m for m in final.front if m.selected)
    return {
        "test_auroc": chosen.test_auroc,
        "test_fpr95": chosen.test_fpr95,
        "reference_test_auroc": final.reference_ood[0],
        "reference_test_fpr95": final.reference_ood[1],
    }


def _write_outputs(
    writer: RunWriter,
    cfg: RunConfig,
    data: PreparedData,
    evolved: Evolved,
    final: FinalHeads,
    result: RunResult,
) -> None:
    """Heads, figures and tables; result.json last, so a folder with it is complete."""
    from evoprune.plots.run import plot_confusion, plot_convergence, plot_front, plot_hypervolume

    out = writer.out
    search = evolved.result
    history = [search.history[i] for i in search.rows()]  # the fidelity the result rests on
    title = f"{data.name} · {cfg.encoding} · {cfg.backbone} · seed {cfg.seed}"
    with writer.writing():
        save_head(final.head, out / HEAD_FILE)
        save_head(final.reference, out / REFERENCE_HEAD_FILE)
        plot_convergence(
            history, out / "convergence.png", title=title, **_followed(cfg, evolved, final, history)
        )
        plot_confusion(
            {"evolved": result.confusion, "not pruned": result.reference_confusion},
            data.classes,
            out / "confusion.png",
            title=f"{title} · held-out images",
        )
        if final.front is not None:
            write_front(out, final.front)
            plot_front(
                history, final.front, final.reference_test_accuracy, out / "pareto.png", title=title
            )
            plot_hypervolume(
                history, out / "hypervolume.png", title=title, population=cfg.population
            )
    writer.finish(result, search.history, cfg.objectives)


def _followed(cfg: RunConfig, evolved: Evolved, final: FinalHeads, history: list) -> dict:
    """What convergence.png follows: for a multi-objective run the head its selection rule
    picks from the front so far (the best by fitness is not the head it ships), and the
    shipped head's position in ``history``."""
    shipped = next((i for i, r in enumerate(history) if np.array_equal(r.mask(), final.mask)), None)
    if len(cfg.objectives) == 1:
        return {"shipped": shipped}
    n_score = sum(len(f.y_score) for f in evolved.problem.folds)
    rule = cfg.select or DEFAULT_SELECT
    return {
        "followed": selection_path(history, cfg.objectives, rule, n_score),
        "followed_label": f"head '{rule}' selects from the front so far",
        "shipped": shipped,
    }


def _reindex(idx, used: np.ndarray):
    """Positions in ``used`` of the original indices ``idx`` that were kept."""
    if idx is None:
        return None
    pos = {int(v): k for k, v in enumerate(used)}
    return np.array([pos[int(i)] for i in idx if int(i) in pos], dtype=np.int64)
