"""Which backbone channels feature selection keeps across the runs of a comparison.

Each fs run keeps a set of the backbone's channels. If the runs agreed only by chance, a channel
would be kept in k of R runs with the probability of independent draws at each run's density
(a Poisson-binomial law); channels kept in (nearly) every run, more than that law expects, are
the ones the task needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evoprune.analysis.context import ANALYSIS_DIR
from evoprune.errors import EvoPruneError
from evoprune.runs.store import RESULT_FILE, open_run, write_rows

log = logging.getLogger(__name__)

CHANNELS_FILE = "channels.csv"
CHANNELS_PLOT = "channels.png"


@dataclass
class ChannelFrequency:
    """How often each channel was kept over ``runs`` fs runs (names of their folders)."""

    runs: list[str]
    kept: np.ndarray  # (feature_dim,) number of runs that kept each channel
    densities: np.ndarray  # (runs,) fraction of channels each run kept

    def expected(self) -> np.ndarray:
        """Expected number of channels kept in k = 0..R runs if each run drew its channels
        independently at its density (Poisson-binomial, times the number of channels)."""
        law = np.array([1.0])
        for p in self.densities:
            law = np.convolve(law, [1.0 - p, p])
        return law * len(self.kept)

    def observed(self) -> np.ndarray:
        """Number of channels kept in k = 0..R runs."""
        return np.bincount(self.kept, minlength=len(self.runs) + 1)


def fs_masks(compare_dir: str | Path) -> tuple[list[str], np.ndarray]:
    """(run folder names, (R, feature_dim) best masks) of the finished fs runs of a
    comparison; one message when there are fewer than two."""
    root = Path(compare_dir)
    names, masks = [], []
    for folder in sorted((root / "runs").glob("*_run*")):
        if not (folder / RESULT_FILE).is_file():
            continue
        result = open_run(folder).result
        if result.encoding == "fs":
            names.append(folder.name)
            masks.append(np.asarray(result.best_mask, dtype=np.uint8))
    if len(masks) < 2 or len({m.size for m in masks}) != 1:
        raise EvoPruneError(
            f"{root} has {len(masks)} finished fs run(s) of one backbone; the channel "
            "frequency needs at least 2: run 'evoprune compare --encodings fs --runs 2' or more"
        )
    return names, np.stack(masks)


def channel_frequency(compare_dir: str | Path) -> ChannelFrequency:
    """How often the fs runs of the comparison at ``compare_dir`` kept each channel; writes
    ``analysis/channels.csv`` (channels, most often kept first) and ``channels.png``."""
    from evoprune.plots.analysis import plot_channels

    names, masks = fs_masks(compare_dir)
    freq = ChannelFrequency(names, masks.sum(axis=0).astype(np.int64), masks.mean(axis=1))
    out = Path(compare_dir) / ANALYSIS_DIR
    order = np.argsort(-freq.kept, kind="stable")
    write_rows(
        out / CHANNELS_FILE,
        ["channel", "runs_kept", "fraction_of_runs"],
        ([int(ch), int(freq.kept[ch]), freq.kept[ch] / len(names)] for ch in order),
    )
    plot_channels(freq, out / CHANNELS_PLOT, title=f"{Path(compare_dir).name}: fs runs")
    return freq
