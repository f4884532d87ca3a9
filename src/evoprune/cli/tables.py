"""The one plain-text table formatter of the command line."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(
    rows: Sequence[Sequence[str]], rule: bool = False, right: Sequence[int] = ()
) -> str:
    """Columns padded to their widest cell, two spaces apart; ``rule`` draws a line under the
    first row; columns listed in ``right`` are right-aligned (numbers)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))
        ).rstrip()
        for r in rows
    ]
    if rule:
        lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines) + "\n"
