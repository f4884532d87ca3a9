"""The harness of the interrupt tests: run the ``evoprune`` command line in a subprocess, stop it
with a signal at a chosen moment, run it again and compare its results folder with a run that
was never interrupted.

Shared by ``tests/integration/test_kill.py`` and ``benchmarks/faults.py``. Every command runs
with one thread (:func:`single_thread_env`), so that the floats of an interrupted run and of
the reference agree bit for bit. It imports nothing of evoprune: the commands run in their own
processes, as a user's would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "EVALUATIONS",
    "HUNG",
    "MAIN",
    "VOLATILE",
    "Moment",
    "at_rows",
    "cli",
    "command",
    "differences",
    "extracting",
    "history_rows",
    "kill_when",
    "leftovers",
    "result_doc",
    "resuming",
    "run_args",
    "single_thread_env",
    "writing",
]

#: Python that runs the command line with the arguments after ``-c``.
MAIN = "from evoprune.cli import main; import sys; sys.exit(main(sys.argv[1:]))"
#: keys of result.json that may differ between an interrupted and an uninterrupted run
VOLATILE = frozenset({"timings", "wall_seconds", "resumed_evaluations", "features_cached"})
#: the budget of :func:`run_args`'s runs
EVALUATIONS = 12
#: the exit status :func:`cli` gives a command that was still running after its time limit
HUNG = -1000

#: whether to act now, from the results folder and the command's stderr so far
Moment = Callable[[Path, str], bool]


def single_thread_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with one thread everywhere and a plotting backend without a
    display, then ``extra``."""
    one = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return {**os.environ, **one, **(extra or {})}


def run_args(
    data: Path | str,
    out: Path | str,
    cache: Path | str,
    *extra: str,
    evaluations: int = EVALUATIONS,
    population: int = 6,
) -> list[str]:
    """The arguments of a small ``evoprune run`` (encoding ``fs``, seed 1) on ``data`` into
    ``out`` with the feature cache ``cache``, then ``extra``."""
    return [
        "run", "--data", str(data), "--encoding", "fs", "--population", str(population),
        "--evaluations", str(evaluations), "--seed", "1", "--cache-dir", str(cache),
        "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def command(args: list[Any], code: str = MAIN) -> list[str]:
    """The subprocess command that runs ``evoprune args`` (``code``: Python run with them)."""
    return [sys.executable, "-c", code, *map(str, args)]


def cli(
    *args: Any,
    timeout: float,
    code: str = MAIN,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``evoprune args`` to its end, its output captured; a command still running after
    ``timeout`` seconds is killed and returned with status :data:`HUNG`."""
    try:
        return subprocess.run(
            command(list(args), code),
            env=single_thread_env(extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return subprocess.CompletedProcess(exc.cmd, HUNG, out, err + f"\nHUNG after {timeout} s")


def kill_when(
    args: list[Any],
    out: Path,
    moment: Moment,
    sig: int,
    log_file: Path,
    *,
    timeout: float,
    grace: float = 120.0,
) -> int | None:
    """Start ``evoprune args`` (its stderr into ``log_file``), send ``sig`` as soon as
    ``moment(out, stderr so far)`` holds (polled every 5 ms) and return its exit status; None
    when it ended by itself first or the moment had not come after ``timeout`` seconds."""
    with log_file.open("w") as err:
        proc = subprocess.Popen(
            command(args), env=single_thread_env(), stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        deadline = time.monotonic() + timeout
        while not moment(out, log_file.read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                return None
            time.sleep(0.005)
        proc.send_signal(sig)
        return proc.wait(timeout=grace)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def history_rows(out: Path) -> int:
    """Evaluations in ``out``'s history.csv so far (the header excluded; 0 without one)."""
    try:
        return max(0, (out / "history.csv").read_text().count("\n") - 1)
    except OSError:
        return 0


def leftovers(folder: Path, *, recursive: bool = False) -> list[str]:
    """Temporary files of writes that never finished (``.NAME.tmp`` of evoprune's atomic
    writes, ``.tmp…`` of the safetensors library's), by path relative to ``folder``."""
    if not folder.is_dir():
        return []
    return sorted(
        str(p.relative_to(folder))
        for p in (folder.rglob(".*") if recursive else folder.iterdir())
        if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.startswith(".tmp"))
    )


def result_doc(out: Path) -> dict[str, Any]:
    """``out``'s result.json without the keys that may differ between an interrupted run and
    an uninterrupted one (:data:`VOLATILE`)."""
    doc = json.loads((out / "result.json").read_text())
    return {k: v for k, v in doc.items() if k not in VOLATILE}


def differences(out: Path, ref: Path) -> list[str]:
    """How a finished run differs from the reference ``ref`` (empty when identical): the keys
    of result.json (:data:`VOLATILE` aside) and history.csv, byte for byte."""
    if not (out / "result.json").is_file():
        return ["no result.json"]
    a, b = result_doc(out), result_doc(ref)
    diff = [f"result.json {k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if (out / "history.csv").read_bytes() != (ref / "history.csv").read_bytes():
        diff.append("history.csv")
    return diff


# --- moments to interrupt a run ------------------------------------------------------------


def at_rows(k: int) -> Moment:
    """Once history.csv holds ``k`` evaluations."""
    return lambda out, text: history_rows(out) >= k


def writing(out: Path, text: str) -> bool:
    """While a file of the results folder is being written (a temporary file is there)."""
    return bool(leftovers(out))


def extracting(delay: float) -> Moment:
    """``delay`` seconds after the run said it computes features (a feature cache miss)."""
    started: dict[str, float] = {}

    def moment(out: Path, text: str) -> bool:
        if "Feature cache miss" not in text:
            return False
        return time.monotonic() - started.setdefault("t", time.monotonic()) >= delay

    return moment


def resuming(out: Path, text: str) -> bool:
    """Once the run said it resumes an interrupted one."""
    return "resuming" in text
