"""Datasets listed in a CSV manifest: a header with columns `path` and `label`, and optionally
`split` (train or test). Relative paths are relative to the folder of the CSV file."""

from __future__ import annotations

import csv
import logging
import os

import numpy as np

from evoprune.data._messages import listed, warn_case_clashes
from evoprune.data.dataset import ImageDataset
from evoprune.errors import DataError

logger = logging.getLogger(__name__)

_REQUIRED = ("path", "label")
_SPLIT = "split"
_SPLIT_VALUES = ("train", "test")


def load_manifest(csv_path: str) -> ImageDataset:
    """Load the dataset listed in the CSV manifest at `csv_path` (an existing file)."""
    csv_path = os.path.abspath(csv_path)
    base_dir = os.path.dirname(csv_path)
    header, rows = _read_rows(csv_path)
    column = _column_index(csv_path, header)
    if not rows:
        raise DataError(f"manifest {csv_path!r} has a header but no rows; add one row per image")

    def cell(row: list[str], name: str) -> str:
        i = column[name]
        return row[i].strip() if i < len(row) else ""

    # Line numbers count the header as line 1, as an editor shows them.
    entries = [(lineno, cell(r, "path"), cell(r, "label")) for lineno, r in rows]
    blank = [str(n) for n, p, lab in entries if not p or not lab]
    if blank:
        raise DataError(
            f"manifest {csv_path!r}: empty path or label on line(s) {listed(blank)}; "
            "fill in both for every row"
        )
    paths = [os.path.normpath(os.path.join(base_dir, os.path.expanduser(p))) for _, p, _ in entries]
    _check_paths(csv_path, paths, [p for _, p, _ in entries])

    classes = sorted({lab for _, _, lab in entries})
    if len(classes) < 2:
        raise DataError(
            f"manifest {csv_path!r} has only {len(classes)} label ({', '.join(classes)}); "
            "a classifier needs at least 2 classes: add rows for the other classes"
        )
    warn_case_clashes(logger, csv_path, "labels", classes)
    label_of = {c: i for i, c in enumerate(classes)}
    labels = np.asarray([label_of[lab] for _, _, lab in entries], dtype=np.int64)

    test_idx = None
    if _SPLIT in column:
        test_idx = _marked_test_rows(csv_path, [(n, cell(r, _SPLIT).lower()) for n, r in rows])
    name = os.path.splitext(os.path.basename(csv_path))[0]
    logger.info(
        "%s: %d images in %d classes%s",
        csv_path,
        len(paths),
        len(classes),
        "" if test_idx is None else f", {len(test_idx)} marked test",
    )
    return ImageDataset(name=name, paths=paths, labels=labels, classes=classes, test_idx=test_idx)


def _read_rows(csv_path: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (first line number, cells) of each non-blank row.

    The csv module numbers a row by the line it ends on, so a quote left open swallows the rest
    of the file and is reported at its end; a row starts on the line after the previous row
    ended, and only an open quote makes a row span lines, so that start is where the quote opened.
    """
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for row in reader:
                end = reader.line_num
                if end > start and any("\n" in c or "\r" in c for c in row):
                    raise DataError(
                        f"manifest {csv_path!r} line {start}: a quote opened on this line is "
                        f"not closed, so the row runs on to line {end}; close the quote (or "
                        "remove it)"
                    )
                records.append((start, row))
                start = end + 1
    except UnicodeDecodeError as exc:
        raise DataError(
            f"manifest {csv_path!r} is not UTF-8 text ({exc}); save it as UTF-8 CSV"
        ) from exc
    except csv.Error as exc:
        hint = (
            " (a quote opened on that line and never closed makes one huge field)"
            if "field larger" in str(exc)
            else ""
        )
        raise DataError(
            f"manifest {csv_path!r} line {start}: cannot parse the row starting there "
            f"({exc}){hint}; fix that row"
        ) from exc
    except OSError as exc:
        raise DataError(f"cannot read manifest {csv_path!r} ({exc}); check the file") from exc
    records = [(n, row) for n, row in records if any(c.strip() for c in row)]
    if not records:
        raise DataError(
            f"manifest {csv_path!r} is empty; write a header 'path,label' (optionally ',split') "
            "and one row per image"
        )
    return records[0][1], records[1:]


def _check_paths(csv_path: str, paths: list[str], as_written: list[str]) -> None:
    special = [w for p, w in zip(paths, as_written) if os.path.exists(p) and not os.path.isfile(p)]
    if special:
        raise DataError(
            f"manifest {csv_path!r}: {len(special)} listed path(s) are not image files but "
            f"folders, FIFOs, sockets or devices: {listed(special)}; they were not opened: "
            "fix the paths or remove those rows"
        )
    missing = [w for p, w in zip(paths, as_written) if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"manifest {csv_path!r}: {len(missing)} listed file(s) do not exist: "
            f"{listed(missing)} (relative paths are relative to the manifest's folder "
            f"{os.path.dirname(csv_path)!r}); fix the paths or remove those rows"
        )
    seen: set[str] = set()
    dupes = []
    for path, written in zip(paths, as_written):
        if path in seen:
            dupes.append(written)
        seen.add(path)
    if dupes:
        raise DataError(
            f"manifest {csv_path!r} lists {len(dupes)} file(s) more than once: {listed(dupes)}; "
            "keep one row per image"
        )


def _column_index(csv_path: str, header: list[str]) -> dict[str, int]:
    """``{column name (lower case): position}``; DataError when path or label is missing."""
    column = {name.strip().lower(): i for i, name in enumerate(header)}
    missing = [c for c in _REQUIRED if c not in column]
    if missing:
        hint = ""
        if len(header) == 1 and any(sep in header[0] for sep in ";\t"):
            hint = " (the file looks separated by ';' or tabs: it must be comma-separated)"
        raise DataError(
            f"manifest {csv_path!r} lacks column(s) {', '.join(missing)}: found columns "
            f"{', '.join(repr(h) for h in header)}{hint}; the header needs 'path' and 'label' "
            "(and optionally 'split' with values train/test)"
        )
    return column


def _marked_test_rows(csv_path: str, splits: list[tuple[int, str]]) -> np.ndarray:
    """Positions of the rows whose split column says ``test``, from (line number, value)
    pairs; every value must be train or test, and both must occur."""
    bad = [f"{n} ({s!r})" for n, s in splits if s not in _SPLIT_VALUES]
    if bad:
        raise DataError(
            f"manifest {csv_path!r}: the split column must be 'train' or 'test', but "
            f"line(s) {listed(bad)} say otherwise; fix them or drop the split column"
        )
    test_idx = np.flatnonzero(np.asarray([s for _, s in splits]) == "test").astype(np.int64)
    if len(test_idx) in (0, len(splits)):
        empty = "test" if len(test_idx) == 0 else "train"
        raise DataError(
            f"manifest {csv_path!r}: the split column marks no row as {empty!r}; mark some "
            "rows, or drop the split column to let evoprune make the split"
        )
    return test_idx
