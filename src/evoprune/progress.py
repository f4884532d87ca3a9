"""Honest progress bars: work counted as it finishes, and a time left from the recent pace.

Long steps report finished work with :func:`report_work` (a fraction of one item: one head of
a batch trained on one of five folds is 0.2 of an evaluation) to whatever bar is listening in
the current context (:func:`reporting`); code that reports knows nothing about bars, and
reporting with no bar listening costs nothing. :class:`WorkBar` counts items as they finish
(a batch of forty heads trained in groups advances group by group, not all at once at its
end) and estimates the time left with :class:`Eta`, from the pace of the latter half of the
work done so far rather than from the first item, so a slow start does not predict hours.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

WorkSink = Callable[[float], None]

_SINK: ContextVar[WorkSink | None] = ContextVar("evoprune_work_sink", default=None)


def report_work(units: float) -> None:
    """Tell the bar listening in this context (if any) that ``units`` items' worth of work
    just finished."""
    sink = _SINK.get()
    if sink is not None and units > 0:
        sink(float(units))


@contextmanager
def reporting(sink: WorkSink | None) -> Iterator[None]:
    """Inside the block, :func:`report_work` calls ``sink`` (None: nobody listens)."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


class Eta:
    """The seconds a job of ``total`` items has left, from the pace of its recent work.

    ``add(units)`` records work as it finishes (items skipped without work, such as those of a
    resumed run, are not added: they would make the pace look faster than it is). The pace is
    measured over the latter half of the work done so far, up to now (a stall slows it down):
    recent enough to follow a change of pace, long enough to smooth over batches. ``clock``
    (seconds) is replaceable for tests.
    """

    def __init__(self, total: float, clock: Callable[[], float] = time.monotonic):
        self.total = float(total)
        self.clock = clock
        self.worked = 0.0
        self._samples: list[tuple[float, float]] = [(clock(), 0.0)]  # (time, work so far)

    def add(self, units: float) -> None:
        self.worked += float(units)
        self._samples.append((self.clock(), self.worked))

    def rate(self) -> float | None:
        """Items per second over the latter half of the work, or None before any."""
        if self.worked <= 0:
            return None
        half = self.worked / 2
        t_ref, w_ref = self._samples[0]
        for t, w in self._samples:  # the last sample at or below half of the work
            if w > half:
                break
            t_ref, w_ref = t, w
        seconds = self.clock() - t_ref
        return (self.worked - w_ref) / seconds if seconds > 0 else None

    def remaining(self, done: float) -> float | None:
        """Seconds left when ``done`` of the ``total`` items are finished (None: unknown)."""
        rate = self.rate()
        if rate is None or rate <= 0:
            return None
        return max(self.total - float(done), 0.0) / rate


@functools.cache
def _tqdm_class() -> type:
    from tqdm.auto import tqdm

    class _Bar(tqdm):
        """tqdm showing whole finished items and the pace of :class:`Eta`."""

        eta: Eta | None = None

        @property
        def format_dict(self) -> dict[str, Any]:
            d = super().format_dict
            if self.eta is not None:
                d["n"] = math.floor(d["n"] + 1e-9)
                d["rate"] = self.eta.rate()
            return d

    return _Bar


class WorkBar:
    """A progress bar of ``total`` items fed by :meth:`work` (fractions of items finished, as
    :func:`report_work` sends them) and :meth:`done` (an item complete; work reported for it is
    used up, an item done without reported work counts as worked then, a ``skipped`` one, as a
    resumed evaluation, counts without work). ``enabled=False`` draws nothing but still counts.
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str = "it",
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        leave: bool = True,
    ):
        self.total = int(total)
        self.enabled = bool(enabled)
        self.eta = Eta(total, clock)
        self.count = 0
        self.pending = 0.0  # work reported for items not yet done
        self._bar = _tqdm_class()(
            total=self.total,
            desc=desc,
            unit=unit,
            disable=not enabled,
            dynamic_ncols=True,
            leave=leave,
        )
        self._bar.eta = self.eta
        self._shown = 0.0

    @property
    def n(self) -> float:
        """Items finished, fractions included (what the bar shows, rounded down)."""
        return min(float(self.total), self.count + self.pending)

    def remaining(self) -> float | None:
        """Estimated seconds left."""
        return self.eta.remaining(self.n)

    def work(self, units: float) -> None:
        self.pending += float(units)
        self.eta.add(units)
        self._show()

    def done(self, skipped: bool = False) -> None:
        self.count += 1
        if not skipped:
            used = min(self.pending, 1.0)
            if used < 1.0 - 1e-9:
                self.eta.add(1.0 - used)
            self.pending -= used
        self._show()

    def grow(self, items: int) -> None:
        """``items`` more to do (a step whose size was not known at the start)."""
        self.total += int(items)
        self.eta.total = float(self.total)
        self._bar.total = self.total
        self._bar.refresh()

    def end_at_count(self) -> None:
        """A step that finished with fewer items than planned (a search that converged before
        its budget) ends full at what it did: its total becomes the count."""
        if self.count < self.total:
            self.total = self.count
            self.pending = 0.0
            self.eta.total = float(self.total)
            self._bar.total = self.total
            self._shown = min(self._shown, float(self.total))
            self._bar.n = self._shown
            self._bar.refresh()

    def set_postfix(self, **values: Any) -> None:
        self._bar.set_postfix(refresh=False, **values)

    def _show(self) -> None:
        delta = self.n - self._shown
        if delta:
            self._shown = self.n
            self._bar.update(delta)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> WorkBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def work_bar(
    total: int, *, desc: str, unit: str = "it", enabled: bool = True, leave: bool = True
) -> Iterator[WorkBar]:
    """A :class:`WorkBar` that listens to :func:`report_work` inside the block."""
    with (
        WorkBar(total, desc=desc, unit=unit, enabled=enabled, leave=leave) as bar,
        reporting(bar.work),
    ):
        yield bar
