"""Helpers for error and log messages."""

from __future__ import annotations

import logging
from collections.abc import Sequence

MAX_LISTED = 10


def listed(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    """The first `limit` items joined by commas, then 'and N more' for the rest."""
    shown = ", ".join(items[:limit])
    more = len(items) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def case_clashes(names: Sequence[str]) -> list[list[str]]:
    """Groups (each sorted) of distinct names that are equal ignoring case,
    e.g. [['Cat', 'cat']]."""
    groups: dict[str, set[str]] = {}
    for name in names:
        groups.setdefault(name.casefold(), set()).add(name)
    return [sorted(group) for _, group in sorted(groups.items()) if len(group) > 1]


def warn_case_clashes(logger: logging.Logger, where: str, kind: str, names: Sequence[str]) -> None:
    """One WARNING per group of `kind` names (class folders, labels) that differ only in case:
    they become separate classes, which is rarely what was meant."""
    for group in case_clashes(names):
        quoted = " and ".join(repr(n) for n in group)
        logger.warning(
            "%s: %s %s differ only in case and are kept as %d separate classes; rename them "
            "to one spelling if they are meant to be the same class",
            where,
            kind,
            quoted,
            len(group),
        )
