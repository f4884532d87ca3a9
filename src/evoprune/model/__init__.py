"""The compact head: built physically small for one mask, trained, scored, counted.

The public API is named here and imported on first use (``from evoprune.model import
TRAINERS, ...``), so that importing one light module of the package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from evoprune._lazy import lazy_exports

if TYPE_CHECKING:
    from evoprune.model.batched import (
        train_heads,
    )
    from evoprune.model.head import (
        TRAINERS,
        CompactHead,
        TrainerConfig,
        accuracy,
        get_trainer,
        predict_proba,
        train_head,
    )

#: public name -> the module that defines it
_PUBLIC = {
    "TRAINERS": "evoprune.model.head",
    "CompactHead": "evoprune.model.head",
    "TrainerConfig": "evoprune.model.head",
    "accuracy": "evoprune.model.head",
    "get_trainer": "evoprune.model.head",
    "predict_proba": "evoprune.model.head",
    "train_head": "evoprune.model.head",
    "train_heads": "evoprune.model.batched",
}

__all__ = [
    "CompactHead",
    "TRAINERS",
    "TrainerConfig",
    "accuracy",
    "get_trainer",
    "predict_proba",
    "train_head",
    "train_heads",
]

__getattr__ = lazy_exports(__name__, _PUBLIC)
