"""The run store: the one reader and writer of a results folder.

A results folder holds ``config.json`` (the settings, trainer and features it was made with),
``history.csv`` (one row per evaluation, appended as it happens), ``result.json`` (written last),
the heads as safetensors state dicts (never pickles), a multi-objective run's ``pareto.csv`` and
``front/``, and what later commands add (``ensemble.json``, a comparison's ``baselines.json``).
Every file carries or sits beside :data:`SCHEMA_VERSION`; a folder written by an older version,
or damaged, gets one clear message. Rules that keep a user's results safe:

- a folder is resumed only by the same configuration; another configuration stops with the
  settings that differ, unless ``overwrite``, which moves the old folder aside (never deletes);
- evoprune never writes into a folder that holds files it did not write (its own are listed in
  the folder's manifest, :class:`~evoprune.io.OutputFolder`), nor inside the data; one writer
  at a time holds the folder's lock;
- history is appended to or atomically replaced, never truncated first, so an interrupted
  resume loses nothing.

One module per concern:

- :mod:`.files`: the file names, the format version, masks as hexadecimal;
- :mod:`.history`: ``history.csv``;
- :mod:`.schema`: ``result.json``'s typed record and its checks;
- :mod:`.heads`: the heads (safetensors), ``pareto.csv`` and ``front/``;
- :mod:`.guard`: folder safety (resume, refuse, move aside, clean up a killed run);
- :mod:`.writer`: :class:`RunWriter`, which writes one run through the modules above;
- :mod:`.folder`: a finished run read back (:func:`open_run`), paths stored relative to it;
- :mod:`.derived`: ``ensemble.json`` and ``baselines.json``, added by later commands;
- :mod:`.comparison`: a comparison folder's ``comparison.json``, ``table.md``, curve points;
- :mod:`.tables`: the CSV tables (a comparison's, an analysis's).
"""

from evoprune.runs.store.comparison import (
    COMPARISON_FILE,
    CURVES_DIR,
    CURVES_FILE,
    STATS_FILE,
    SUMMARY_FILE,
    TABLE_FILE,
    curves_file,
    is_comparison,
    read_comparison,
    read_table_md,
    write_comparison,
    write_table_md,
)
from evoprune.runs.store.derived import (
    check_ensemble_target,
    read_baselines,
    save_with,
    saved_with,
    write_baselines,
    write_ensemble_file,
)
from evoprune.runs.store.files import (
    BASELINES_FILE,
    CONFIG_FILE,
    ENSEMBLE_FILE,
    FRONT_DIR,
    HEAD_FILE,
    HISTORY_FILE,
    PARETO_FILE,
    REFERENCE_HEAD_FILE,
    RESULT_FILE,
    RESULT_FILES,
    RUN_FILES,
    SCHEMA_VERSION,
    front_head_path,
    hex_to_mask,
    mask_to_hex,
    read_json,
)
from evoprune.runs.store.folder import (
    RunFolder,
    list_runs,
    open_run,
    peek_result,
    portable_backbone,
    portable_path,
    resolve_backbone,
    resolve_path,
)
from evoprune.runs.store.guard import check_out_dir, read_saved_config
from evoprune.runs.store.heads import PARETO_FIELDS, FrontHead, load_head, save_head, write_front
from evoprune.runs.store.history import (
    HISTORY_FIELDS,
    HistoryAppender,
    history_fields,
    history_row,
    known_evaluations,
    read_history,
    write_history,
)
from evoprune.runs.store.schema import RunResult
from evoprune.runs.store.tables import (
    read_table,
    read_table_cells,
    write_records,
    write_rows,
    write_table,
)
from evoprune.runs.store.writer import RunWriter

__all__ = [
    "BASELINES_FILE",
    "COMPARISON_FILE",
    "CONFIG_FILE",
    "CURVES_DIR",
    "CURVES_FILE",
    "ENSEMBLE_FILE",
    "FRONT_DIR",
    "HEAD_FILE",
    "HISTORY_FIELDS",
    "HISTORY_FILE",
    "PARETO_FIELDS",
    "PARETO_FILE",
    "REFERENCE_HEAD_FILE",
    "RESULT_FILE",
    "RESULT_FILES",
    "RUN_FILES",
    "SCHEMA_VERSION",
    "STATS_FILE",
    "SUMMARY_FILE",
    "TABLE_FILE",
    "FrontHead",
    "HistoryAppender",
    "RunFolder",
    "RunResult",
    "RunWriter",
    "check_ensemble_target",
    "check_out_dir",
    "curves_file",
    "front_head_path",
    "hex_to_mask",
    "history_fields",
    "history_row",
    "is_comparison",
    "known_evaluations",
    "list_runs",
    "load_head",
    "mask_to_hex",
    "open_run",
    "peek_result",
    "portable_backbone",
    "portable_path",
    "read_baselines",
    "read_comparison",
    "read_history",
    "read_json",
    "read_saved_config",
    "read_table",
    "read_table_cells",
    "read_table_md",
    "resolve_backbone",
    "resolve_path",
    "save_head",
    "save_with",
    "saved_with",
    "write_baselines",
    "write_comparison",
    "write_ensemble_file",
    "write_front",
    "write_history",
    "write_records",
    "write_rows",
    "write_table",
    "write_table_md",
]
