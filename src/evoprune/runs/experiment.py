"""One EvoPruneDeepTL run from images to a results folder: the protocol, honest by default.

images -> held-out test split -> cached features -> GA search on a fitness split inside the
training data -> best mask retrained on all training data -> scored on the test set next to the
not-pruned head trained the same way. Every evaluation is appended to ``history.csv`` as it
happens, so an interrupted run resumes where it stopped when started again with the same
configuration.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evoprune import __version__
from evoprune.encodings import make_encoding
from evoprune.errors import ConfigError, DataError
from evoprune.estimator import EvoPruneClassifier
from evoprune.problem import FITNESS_SPLITS
from evoprune.model.head import CompactHead, accuracy, dense_sizes, feature_stats, train_head
from evoprune.io import atomic_write, atomic_write_json
from evoprune.search import EvaluationRecord
from evoprune.runs.config import RunConfig, default_out_dir

log = logging.getLogger(__name__)

HISTORY_FIELDS = ["index", "iteration", "fitness", "active_genes", "active_fraction",
                  "best_fitness", "best_active_fraction", "mask"]


def mask_to_hex(mask: np.ndarray) -> str:
    return np.packbits(np.asarray(mask, dtype=np.uint8)).tobytes().hex()


def hex_to_mask(text: str, n_genes: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n_genes]


#: Files a finished run writes last; removed when a run (re)starts so that an interrupted run
#: never leaves an older run's result beside its new configuration.
RESULT_FILES = ("result.json", "head.safetensors", "reference_head.safetensors")


def load_history(out: Path, config_doc: dict, n_genes: int) -> dict[bytes, float]:
    """Fitness of chromosomes already evaluated by an interrupted run of the same
    configuration, trainer settings and features (``config_doc`` as in config.json)."""
    cfg_file, hist = out / "config.json", out / "history.csv"
    if not (cfg_file.exists() and hist.exists()):
        return {}
    try:
        saved = json.loads(cfg_file.read_text())
    except (OSError, ValueError):
        return {}
    if any(saved.get(k) != config_doc[k] for k in ("run", "trainer_settings", "feature_cache_key")):
        log.info("%s holds a run of another configuration or other data; starting afresh", out)
        return {}
    known: dict[bytes, float] = {}
    with hist.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                known[hex_to_mask(row["mask"], n_genes).tobytes()] = float(row["fitness"])
            except (KeyError, TypeError, ValueError):
                continue  # a row cut short by an interruption
    if known:
        log.info("resuming: %d evaluations are already in %s", len(known), hist)
    return known


def _split_indices(dataset, cfg: RunConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """(train, test) indices into the dataset and how the test set was chosen."""
    from evoprune.data import stratified_split

    if dataset.folds:
        if not 0 <= cfg.fold < len(dataset.folds):
            raise ConfigError(f"fold={cfg.fold} is out of range: {cfg.data} has "
                              f"{len(dataset.folds)} partitions (0..{len(dataset.folds) - 1})")
        train, test = dataset.folds[cfg.fold]
        return np.asarray(train), np.asarray(test), f"partition {cfg.fold} of {len(dataset.folds)}"
    if dataset.test_idx is not None and len(dataset.test_idx):
        test = np.asarray(dataset.test_idx)
        train = np.setdiff1d(np.arange(len(dataset.paths)), test)
        return train, test, "given test set"
    train, test = stratified_split(dataset.labels, cfg.test_fraction, cfg.seed)
    return train, test, f"stratified {cfg.test_fraction:.0%} held out (seed {cfg.seed})"


def _limit(dataset, cfg: RunConfig) -> np.ndarray:
    """Indices of the images used: all, or a stratified ``limit`` of them (quick trials)."""
    from evoprune.data import stratified_split

    n = len(dataset.paths)
    if not cfg.limit or cfg.limit >= n:
        return np.arange(n)
    _, keep = stratified_split(dataset.labels, cfg.limit / n, cfg.seed)
    return keep


def save_head(head: CompactHead, path: Path) -> None:
    """The head's weights as safetensors (never a pickle), written atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))


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


def prepare_data(cfg: RunConfig, *, progress: bool = True,
                 cache_dir: str | Path | None = None) -> PreparedData:
    """Load ``cfg.data``, choose the held-out test set and compute (or load) its features."""
    from evoprune.backbones import get_backbone
    from evoprune.data import load_dataset
    from evoprune.features import extract_features

    backbone = get_backbone(cfg.backbone)
    dataset = load_dataset(cfg.data, skip_bad=cfg.skip_bad_images)
    used = _limit(dataset, cfg)
    paths = [dataset.paths[i] for i in used]
    labels = dataset.labels[used]
    sub = dataclasses.replace(dataset, paths=paths, labels=labels,
                              test_idx=_reindex(dataset.test_idx, used),
                              folds=None if dataset.folds is None else [
                                  (_reindex(a, used), _reindex(b, used)) for a, b in dataset.folds])
    train_idx, test_idx, test_origin = _split_indices(sub, cfg)
    missing = sorted(set(range(dataset.n_classes)) - set(labels[train_idx].tolist()))
    if missing:
        raise DataError(f"{cfg.data}: class(es) {', '.join(dataset.classes[i] for i in missing)} "
                        f"have no training images ({test_origin}); add training images of "
                        "them or remove them from the test set")
    log.info("%s: %d images, %d classes; %d for training, %d held out (%s)", dataset.name,
             len(paths), dataset.n_classes, len(train_idx), len(test_idx), test_origin)
    feats = extract_features(backbone, paths, cache_dir=cache_dir, progress=progress)
    return PreparedData(name=dataset.name, classes=list(dataset.classes), paths=paths,
                        labels=np.asarray(labels), train_idx=np.asarray(train_idx),
                        test_idx=np.asarray(test_idx), test_origin=test_origin,
                        skipped=list(dataset.skipped), X=feats.X, features_cached=feats.cached,
                        feature_key=feats.key, feature_seconds=feats.seconds)


def run_experiment(cfg: RunConfig, out: str | Path | None = None, *, progress: bool = True,
                   cache_dir: str | Path | None = None,
                   prepared: PreparedData | None = None) -> dict:
    """Run ``cfg`` and write its results folder; returns the ``result.json`` contents.

    ``prepared`` reuses data already loaded by :func:`prepare_data` for the same data settings.
    """
    from evoprune.report import plot_convergence

    t_start = time.perf_counter()
    cfg = cfg.resolved()
    if cfg.fitness_split not in FITNESS_SPLITS:  # checked before the features are computed
        raise ConfigError(f"fitness_split={cfg.fitness_split!r} is unknown; choose one of "
                          f"{', '.join(FITNESS_SPLITS)}")
    out = Path(out) if out is not None else default_out_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    data = prepared if prepared is not None else prepare_data(cfg, progress=progress,
                                                              cache_dir=cache_dir)
    X = data.X
    X_train, y_train, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test

    leaked = cfg.fitness_split == "test"
    if leaked:
        log.warning("fitness_split='test': the search scores candidates on the test set, as the "
                    "paper did; the reported test accuracy is optimistic (marked leaked)")
    clf = EvoPruneClassifier(
        encoding=cfg.encoding, hidden_size=cfg.hidden_size, population=cfg.population,
        evaluations=cfg.evaluations, trainer=cfg.trainer, fitness_split=cfg.fitness_split,
        val_fraction=cfg.val_fraction, cv_folds=cfg.cv_folds, init=cfg.init,
        mutation_prob=cfg.mutation_prob, random_state=cfg.seed)
    n_genes = make_encoding(cfg.encoding, X.shape[1], cfg.hidden_size).n_genes
    config_doc = {"run": cfg.to_dict(), "evoprune_version": __version__,
                  "trainer_settings": _trainer_settings(cfg.trainer),
                  "feature_cache_key": data.feature_key}
    known = load_history(out, config_doc, n_genes)
    for name in RESULT_FILES:
        (out / name).unlink(missing_ok=True)
    atomic_write_json(out / "config.json", config_doc)
    history_path = out / "history.csv"
    with _HistoryWriter(history_path, cfg.evaluations, progress) as writer:
        clf.fit(X_train, y_train, eval_set=(X_test, y_test) if leaked else None,
                on_evaluation=writer.add, known_fitness=known)
    history = clf.search_.history
    write_history(history_path, history)

    t0 = time.perf_counter()
    n_classes = data.n_classes
    reference = train_head(X_train, y_train, clf.encoding_.decode(clf.encoding_.full()),
                           n_classes, cfg.trainer, seed=cfg.seed,
                           stats=feature_stats(X_train)).head
    reference_seconds = time.perf_counter() - t0
    test_acc = accuracy(clf.head_, X_test, y_test)
    ref_acc = accuracy(reference, X_test, y_test)
    save_head(clf.head_, out / "head.safetensors")
    save_head(reference, out / "reference_head.safetensors")
    ref_params, ref_macs = dense_sizes(X.shape[1], clf.encoding_.hidden, n_classes)
    sizes = clf.masks_.sizes
    layer_names = clf.encoding_.layer_names()
    result = {
        "dataset": data.name,
        "data": cfg.data,
        "backbone": cfg.backbone,
        "feature_dim": int(X.shape[1]),
        "encoding": cfg.encoding,
        "hidden_size": cfg.hidden_size,
        "trainer": cfg.trainer,
        "fitness_split": cfg.fitness_split,
        "leaked_test_set": leaked,
        "seed": cfg.seed,
        "classes": data.classes,
        "n_classes": n_classes,
        "n_images": len(data.paths),
        "n_train": int(len(data.train_idx)),
        "n_test": int(len(data.test_idx)),
        "test_set": data.test_origin,
        "skipped_images": data.skipped,
        "genes": int(clf.encoding_.n_genes),
        "active_genes": int(clf.best_mask_.sum()),
        "active_fraction": float(clf.best_mask_.mean()),
        "active_units": dict(zip(layer_names, sizes)),
        "total_units": dict(zip(layer_names, (X.shape[1],) + clf.encoding_.hidden)),
        "fitness": clf.best_fitness_,
        "test_accuracy": test_acc,
        "reference_test_accuracy": ref_acc,
        "head_params": clf.head_.n_params(),
        "reference_head_params": int(ref_params),
        "head_macs": clf.head_.n_macs(),
        "reference_head_macs": int(ref_macs),
        "evaluations": clf.search_.evaluations,
        "iterations": clf.search_.iterations,
        "memory_hits": clf.search_.memory_hits,
        "resumed_evaluations": len(known),
        "features_cached": bool(data.features_cached),
        "feature_cache_key": data.feature_key,
        "timings": {"features": data.feature_seconds, "search": clf.search_seconds_,
                    "final_training": clf.final_train_seconds_,
                    "reference_training": reference_seconds},
        "wall_seconds": time.perf_counter() - t_start,
        "evoprune_version": __version__,
        "best_mask": clf.best_mask_.astype(int).tolist(),
    }
    plot_convergence(history, out / "convergence.png",
                     title=f"{data.name} · {cfg.encoding} · {cfg.backbone} · seed {cfg.seed}")
    atomic_write_json(out / "result.json", result)
    log.info("results written to %s", out)
    return result


def _reindex(idx, used: np.ndarray):
    """Positions in ``used`` of the original indices ``idx`` that were kept."""
    if idx is None:
        return None
    pos = {int(v): k for k, v in enumerate(used)}
    return np.array([pos[int(i)] for i in idx if int(i) in pos], dtype=np.int64)


def _trainer_settings(trainer: str) -> dict:
    from evoprune.model.head import get_trainer

    return get_trainer(trainer).describe()


class _HistoryWriter:
    """Appends each evaluation to history.csv as it happens and drives the progress bar."""

    def __init__(self, path: Path, total: int, progress: bool):
        self.path = path
        self.total = total
        self.progress = progress

    def __enter__(self) -> "_HistoryWriter":
        from tqdm.auto import tqdm

        self.fh = self.path.open("w", newline="")
        self.writer = csv.DictWriter(self.fh, fieldnames=HISTORY_FIELDS)
        self.writer.writeheader()
        self.bar = tqdm(total=self.total, desc="search", unit="eval", disable=not self.progress,
                        dynamic_ncols=True)
        return self

    def add(self, rec: EvaluationRecord) -> None:
        self.writer.writerow(history_row(rec))
        self.fh.flush()
        self.bar.set_postfix(best=f"{rec.best_fitness:.4f}",
                             density=f"{rec.best_active_fraction:.2f}", refresh=False)
        self.bar.update(1)

    def __exit__(self, *exc) -> bool:
        self.bar.close()
        self.fh.close()
        return False


def history_row(rec: EvaluationRecord) -> dict:
    row = rec.as_row()
    row["mask"] = mask_to_hex(rec.chromosome)
    return row


def write_history(path: Path, history: list[EvaluationRecord]) -> None:
    """The complete history, written atomically over the one appended during the search."""
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
            writer.writeheader()
            writer.writerows(history_row(r) for r in history)
    atomic_write(path, write)
