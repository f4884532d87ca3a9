"""Helpers for error and log messages."""

from __future__ import annotations

from collections.abc import Sequence

MAX_LISTED = 10


def listed(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    """The first `limit` items joined by commas, then 'and N more' for the rest."""
    shown = ", ".join(items[:limit])
    more = len(items) - limit
    return shown + (f" and {more} more" if more > 0 else "")
