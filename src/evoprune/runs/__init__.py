"""One run from images to a results folder: its settings, data, context, search, store.

The public API is named here and imported on first use (``from evoprune.runs import
BY_NAME, ...``), so that importing one light module of the package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from evoprune._lazy import lazy_exports

if TYPE_CHECKING:
    from evoprune.runs.config import (
        BY_NAME,
        SETTINGS,
        RunConfig,
        Setting,
        add_run_options,
        config_from_args,
        default_out_dir,
    )
    from evoprune.runs.context import (
        RunContext,
    )
    from evoprune.runs.ensembling import (
        build_ensemble,
    )
    from evoprune.runs.evolve import (
        Evolved,
        evolve,
    )
    from evoprune.runs.experiment import (
        OODData,
        PreparedData,
        prepare_data,
        prepare_ood,
        run_experiment,
        saved_settings,
    )
    from evoprune.runs.front import (
        FinalHeads,
        finish_heads,
    )
    from evoprune.runs.store import (
        HEAD_FILE,
        HISTORY_FILE,
        REFERENCE_HEAD_FILE,
        RESULT_FILE,
        RunFolder,
        RunResult,
        hex_to_mask,
        load_head,
        mask_to_hex,
        open_run,
        read_history,
        save_head,
    )

#: public name -> the module that defines it
_PUBLIC = {
    "BY_NAME": "evoprune.runs.config",
    "SETTINGS": "evoprune.runs.config",
    "RunConfig": "evoprune.runs.config",
    "Setting": "evoprune.runs.config",
    "add_run_options": "evoprune.runs.config",
    "config_from_args": "evoprune.runs.config",
    "default_out_dir": "evoprune.runs.config",
    "RunContext": "evoprune.runs.context",
    "OODData": "evoprune.runs.experiment",
    "PreparedData": "evoprune.runs.experiment",
    "prepare_data": "evoprune.runs.experiment",
    "prepare_ood": "evoprune.runs.experiment",
    "run_experiment": "evoprune.runs.experiment",
    "saved_settings": "evoprune.runs.experiment",
    "Evolved": "evoprune.runs.evolve",
    "evolve": "evoprune.runs.evolve",
    "FinalHeads": "evoprune.runs.front",
    "finish_heads": "evoprune.runs.front",
    "build_ensemble": "evoprune.runs.ensembling",
    "HEAD_FILE": "evoprune.runs.store",
    "HISTORY_FILE": "evoprune.runs.store",
    "REFERENCE_HEAD_FILE": "evoprune.runs.store",
    "RESULT_FILE": "evoprune.runs.store",
    "RunFolder": "evoprune.runs.store",
    "RunResult": "evoprune.runs.store",
    "hex_to_mask": "evoprune.runs.store",
    "load_head": "evoprune.runs.store",
    "mask_to_hex": "evoprune.runs.store",
    "open_run": "evoprune.runs.store",
    "read_history": "evoprune.runs.store",
    "save_head": "evoprune.runs.store",
}

__all__ = [
    "BY_NAME",
    "Evolved",
    "FinalHeads",
    "HEAD_FILE",
    "HISTORY_FILE",
    "OODData",
    "PreparedData",
    "REFERENCE_HEAD_FILE",
    "RESULT_FILE",
    "RunConfig",
    "RunContext",
    "RunFolder",
    "RunResult",
    "SETTINGS",
    "Setting",
    "add_run_options",
    "build_ensemble",
    "config_from_args",
    "default_out_dir",
    "evolve",
    "finish_heads",
    "hex_to_mask",
    "load_head",
    "mask_to_hex",
    "open_run",
    "prepare_data",
    "prepare_ood",
    "read_history",
    "run_experiment",
    "save_head",
    "saved_settings",
]

__getattr__ = lazy_exports(__name__, _PUBLIC)
