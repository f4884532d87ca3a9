"""A package's public names, imported from their modules on first use (PEP 562).

A package's ``__init__`` lists its public API as a mapping from name to defining module and
sets ``__getattr__ = lazy_exports(__name__, PUBLIC)``; ``from evoprune.runs import RunConfig``
then imports ``evoprune.runs.config`` only, so that importing one light module of a package
(``evoprune.runs.config``) does not import the package's heavy ones (torch). Type checkers see
the same names through ``if TYPE_CHECKING:`` imports beside the mapping.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, public: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: a name of ``public`` (name -> the module that
    defines it under that name) is imported from its module; any other is an AttributeError."""

    def __getattr__(name: str) -> Any:
        if name in public:
            return getattr(importlib.import_module(public[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
