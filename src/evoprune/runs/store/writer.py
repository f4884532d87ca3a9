"""Writing one run into its folder: config.json first, history.csv as the search goes,
result.json last; every check of :mod:`~evoprune.runs.store.guard` before the first write."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evoprune.io import OutputFolder, atomic_write_json, writing_folder
from evoprune.runs.store.files import CONFIG_FILE, HISTORY_FILE, RESULT_FILE, SCHEMA_VERSION
from evoprune.runs.store.guard import (
    clear_for_restart,
    finished_result,
    refuse,
    results_part,
    saved_config,
)
from evoprune.runs.store.history import (
    HistoryAppender,
    known_evaluations,
    read_history,
    write_history,
)
from evoprune.runs.store.schema import RunResult
from evoprune.search import Evaluation, EvaluationRecord

#: the store's messages keep the name they had (``WARNING evoprune.runs.store: ...``)
log = logging.getLogger("evoprune.runs.store")


class RunWriter:
    """Writes one run into its folder. :meth:`check` writes nothing; :meth:`claimed` creates
    and locks the folder, :meth:`begin` resumes or starts the run in it, so a run that fails
    before either leaves nothing behind."""

    def __init__(
        self,
        out: str | Path,
        overwrite: bool = False,
        *,
        command: str = "run",
        advice: str = "give --out another folder, or --overwrite to move that run aside and "
        "start afresh",
    ):
        self.out = Path(out)
        self.overwrite = bool(overwrite)
        self.folder = OutputFolder(self.out, command)
        self.advice = advice

    def check(self, run_doc: dict, data_roots: Sequence[Path] = ()) -> None:
        """Before any work: the folder can hold this run (:func:`check_out_dir`), and a run
        already there has the same settings (else the differences, unless ``overwrite``)."""
        self.folder.check(data_roots)
        if self.overwrite:
            return
        saved = self._saved()
        if saved is not None and results_part(saved["run"]) != results_part(run_doc):
            self._refuse(saved["run"], run_doc)

    def _saved(self) -> dict | None:
        return saved_config(self.out, self.overwrite, self.advice)

    def finished(self, run_doc: dict) -> dict | None:
        """The ``result.json`` of this very run when the folder holds it finished (same result
        settings, a readable result), else None: starting it again must change nothing."""
        return finished_result(self.out, run_doc)

    def _refuse(self, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
        refuse(self.out, saved, current, self.advice)

    @contextmanager
    def claimed(self) -> Iterator[RunWriter]:
        """Create and lock the folder (a second writer is refused) while the run writes it."""
        with self.folder.claim():
            yield self

    def begin(
        self, config_doc: dict, n_genes: int, objectives: Sequence[str]
    ) -> tuple[dict[tuple[bytes, str], Evaluation], HistoryAppender]:
        """Write config.json and open history.csv (inside :meth:`claimed`); returns what an
        interrupted run of the same configuration already evaluated (reused, not retrained)
        and the history appender."""
        config_doc = {"schema_version": SCHEMA_VERSION, **config_doc}
        records: list[EvaluationRecord] = []
        cfg_file, hist = self.out / CONFIG_FILE, self.out / HISTORY_FILE
        saved = self._saved()  # again, under the lock
        if saved is not None:
            same = {k: saved.get(k) for k in config_doc if k != "evoprune_version"} == {
                k: v for k, v in config_doc.items() if k != "evoprune_version"
            }
            if not same:
                if not self.overwrite:
                    self._refuse(_flat(saved), _flat(config_doc))
                self._move_aside()
            elif hist.is_file():
                records = read_history(hist, n_genes)
                if records:
                    log.info("resuming: %d evaluations are already in %s", len(records), hist)
        elif self.folder.listed() and self.overwrite:
            self._move_aside()
        with self.writing():
            clear_for_restart(self.folder)  # unfinished writes and results of an earlier start
            atomic_write_json(cfg_file, config_doc)
            appender = HistoryAppender(hist, objectives, records)
        return known_evaluations(records, objectives), appender

    def _move_aside(self) -> None:
        target = self.folder.move_aside()
        log.warning("moved the previous run in %s aside to %s (--overwrite)", self.out, target)

    def writing(self):
        """An OSError while writing the folder (read-only, disk full...) as one message."""
        return writing_folder(self.out)

    def finish(
        self, result: RunResult, history: Sequence[EvaluationRecord], objectives: Sequence[str]
    ) -> None:
        """The complete history (atomically) and result.json, the last file written."""
        with self.writing():
            write_history(self.out / HISTORY_FILE, history, objectives)
            atomic_write_json(self.out / RESULT_FILE, result.to_dict())


def _flat(doc: Mapping[str, Any]) -> dict:
    """A config.json's settings and its other parts in one mapping, to name differences."""
    return {
        **doc.get("run", {}),
        **{k: v for k, v in doc.items() if k not in ("run", "evoprune_version")},
    }
