"""A finished run made ready for analysis: its folder, settings, data (features from the cache,
no CNN pass) and a way to train a head for any mask exactly as the run trained its own."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evoprune.encodings import Encoding
from evoprune.errors import ConfigError, DataError, EvoPruneError
from evoprune.model.head import (
    CompactHead,
    TrainerConfig,
    get_trainer,
)
from evoprune.runs.config import RunConfig
from evoprune.runs.context import RunContext
from evoprune.runs.experiment import PreparedData, prepare_data
from evoprune.runs.store import CONFIG_FILE, HISTORY_FILE, RunFolder, open_run, read_history
from evoprune.search import EvaluationRecord

log = logging.getLogger(__name__)

#: Where the analyses of a run (or a comparison) are written.
ANALYSIS_DIR = "analysis"


@dataclass
class AnalysisContext:
    """A run folder with its settings and data, for the analyses; ``context`` is the run's
    :class:`~evoprune.runs.context.RunContext` (encoding, trainer as the run saved it, folds,
    ``train(mask)``)."""

    run: RunFolder
    data: PreparedData
    context: RunContext
    cache_dir: str | Path | None = None
    progress: bool = True

    @property
    def cfg(self) -> RunConfig:
        return self.context.cfg

    @property
    def encoding(self) -> Encoding:
        return self.context.encoding

    @property
    def trainer(self) -> TrainerConfig:
        return self.context.trainer

    @property
    def out(self) -> Path:
        """``RUN_DIR/analysis``, where tables and plots go."""
        return self.run.path / ANALYSIS_DIR

    @property
    def best_mask(self) -> np.ndarray:
        return np.asarray(self.run.result.best_mask, dtype=np.uint8)

    def history(self) -> list[EvaluationRecord]:
        """Every evaluated mask of the search, in order (``chromosome`` decoded)."""
        path = self.run.path / HISTORY_FILE
        if not path.is_file():
            raise EvoPruneError(
                f"{path} is missing, so the evaluated masks are unknown; run the "
                "experiment again to write it"
            )
        return read_history(path, self.encoding.n_genes)

    def train(self, mask: np.ndarray) -> CompactHead:
        """The head of ``mask`` trained on all training images as the run trained its heads
        (same trainer, seed and feature statistics), in eval mode."""
        return self.context.train(mask)


def open_analysis(
    run_dir: str | Path, *, cache_dir: str | Path | None = None, progress: bool = True
) -> AnalysisContext:
    """The run at ``run_dir`` with its data loaded from the run's saved settings.

    One message when the folder is not a finished run, when it records no images (a run made
    from features only), or when its images are gone or changed since the run.
    """
    run = open_run(run_dir)
    cfg = _saved_config(run)
    try:
        data = prepare_data(cfg, progress=progress, cache_dir=cache_dir)
    except DataError as exc:
        raise DataError(
            f"{run.path}: the run's images ({cfg.data}) cannot be loaded: {exc}; the "
            "analyses need them: put them back where the run found them"
        ) from None
    _check_same_images(run, cfg, data)
    context = RunContext.of_data(cfg, data, trainer=saved_trainer(run))
    return AnalysisContext(run, data, context, cache_dir, progress)


def _saved_config(run: RunFolder) -> RunConfig:
    """The run's settings from config.json; a run that records no image source (made from
    features only) cannot be analysed."""
    doc = run.run_config
    if not doc.get("data"):
        raise EvoPruneError(
            f"{run.path} records no images ({run.path / CONFIG_FILE} has no run settings with "
            "a data source): it was made from features only, and the analyses need the "
            "images; analyse a folder written by 'evoprune run'"
        )
    return run.settings().validate()


def _check_same_images(run: RunFolder, cfg: RunConfig, data: PreparedData) -> None:
    """The loaded data is the run's: same classes and split sizes (else one message); features
    that differ otherwise (another cache format, images edited in place) only warn."""
    r = run.result
    found = (list(data.classes), len(data.paths), len(data.train_idx), len(data.test_idx))
    if found != (list(r.classes), r.n_images, r.n_train, r.n_test):
        raise DataError(
            f"{run.path}: the images at {cfg.data} are not those the run used (classes "
            f"{', '.join(data.classes)}; {found[1]} images, {found[2]} for training, "
            f"{found[3]} held out; the run had {', '.join(r.classes)}; {r.n_images}, "
            f"{r.n_train}, {r.n_test}); restore the run's images or run the experiment "
            "again on these"
        )
    if data.feature_key != r.feature_cache_key:
        log.warning(
            "%s: the features of %s differ from those the run recorded (edited images or "
            "another feature cache format); the analyses use the features as they are now",
            run.path,
            cfg.data,
        )


def saved_trainer(run: RunFolder) -> TrainerConfig:
    """The trainer's settings as the run saved them in config.json, so that heads are trained
    as the run trained its own even if the named trainer has changed since; settings added
    since keep their defaults (off)."""
    name = run.run_config.get("trainer", "fast")
    saved = run.config.get("trainer_settings")
    if not isinstance(saved, dict):
        log.warning("%s records no trainer settings; training with today's %r", run.path, name)
        return get_trainer(name)
    known = {f.name for f in dataclasses.fields(TrainerConfig)}
    try:
        return TrainerConfig(**{k: v for k, v in saved.items() if k in known})
    except (TypeError, ConfigError) as exc:
        raise EvoPruneError(
            f"{run.path / CONFIG_FILE}: trainer_settings cannot be read ({exc}); the file is "
            "damaged: run the experiment again"
        ) from None
