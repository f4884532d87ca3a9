"""Fault benchmark (issue 8): bad input, damaged caches and interrupts, tried as a user would.

    python benchmarks/faults.py            # every case, about 10 minutes on 2 cores
    python benchmarks/faults.py -k cache   # only the cases whose name contains "cache"

Every case is a small function that sets up a situation in a temporary folder and runs the
``evoprune`` command line in a subprocess, so a traceback shows up on stderr as it would for a
user. Data: scikit-image's 200 real face / non-face crops as two class folders (the same as the
tests), one feature cache shared by every case that does not damage it, and three reference runs
(the faces, the faces with --limit 60, and a two-objective run) that no case modifies.

Counted:
- bad input handled: exit status 2, exactly one ERROR line and no traceback; or, for a damaged
  cache or class names that differ only in case, a WARNING and the correct result;
- interrupts resumed identically: after SIGINT / SIGTERM / SIGKILL the same command, started
  again, finishes with the reference's result.json (timings aside) and history.csv, and leaves
  no temporary file behind;
- data loss (target 0): a finished run's files, a user's files or the data changed or vanished,
  or an interrupted run lost recorded evaluations;
- wrong result (target 0): a run finished with a result other than the reference's.

Prints a table and writes benchmarks/faults.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from evoprune.io import atomic_write_json

log = logging.getLogger("benchmarks.faults")
HERE = Path(__file__).resolve().parent
_MAIN = "from evoprune.cli import main; import sys; sys.exit(main(sys.argv[1:]))"
#: result.json keys that legitimately differ between an interrupted and an uninterrupted run
VOLATILE = {"timings", "wall_seconds", "resumed_evaluations", "features_cached"}
EVALUATIONS = 12
TIMEOUT = 600


@dataclass
class Outcome:
    name: str
    kind: str  # "bad_input" or "interrupt"
    handled: bool = False
    data_loss: bool = False
    wrong_result: bool = False
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Context:
    """The shared workspace: data folders, the feature cache and the reference runs."""

    root: Path
    faces: Path = field(init=False)
    small: Path = field(init=False)
    cache: Path = field(init=False)
    ref: Path = field(init=False)  # faces, 12 evaluations, seed 1
    ref60: Path = field(init=False)  # the same with --limit 60
    multi: Path = field(init=False)  # the same with --objectives accuracy,size

    def __post_init__(self) -> None:
        self.faces, self.small = self.root / "faces", self.root / "small"
        self.cache = self.root / "cache"
        self.ref, self.ref60, self.multi = (
            self.root / "refs" / n / "run" for n in ("ref", "ref60", "multi")
        )
        self._n = 0

    def fresh(self, name: str) -> Path:
        """A new empty folder for one case; its ``run`` subfolder lies at the same depth as the
        reference runs, so the data path stored relative to a results folder is the same."""
        self._n += 1
        path = self.root / "cases" / f"{self._n:02d}-{name}"
        path.mkdir(parents=True)
        return path


# --- running the command line ------------------------------------------------------------------


def env() -> dict:
    """One thread everywhere, so floats agree between the reference and every rerun."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _MAIN, *map(str, args)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_args(
    data: Path | str,
    out: Path,
    cache: Path,
    *extra: str,
    evaluations: int = EVALUATIONS,
    population: int = 6,
) -> list[str]:
    return [
        "run",
        "--data",
        str(data),
        "--encoding",
        "fs",
        "--population",
        str(population),
        "--evaluations",
        str(evaluations),
        "--seed",
        "1",
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def set_option(args: list[str], option: str, value: str) -> list[str]:
    """``args`` with ``option`` given ``value`` (replaced when present, else added)."""
    args = list(args)
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    return args


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ERROR")]


def clean_error(proc: subprocess.CompletedProcess) -> tuple[bool, str]:
    """Whether a run failed as it should: status 2, one ERROR line, no traceback."""
    errors = error_lines(proc.stderr)
    ok = proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
    if ok:
        return True, errors[0]
    return False, f"exit {proc.returncode}; stderr tail: {proc.stderr[-800:]}"


def kill_when(
    args: list[str], moment: Callable[[str], bool], sig: int, log_file: Path, grace: float = 120.0
) -> int | None:
    """Start ``evoprune args``, send ``sig`` as soon as ``moment(stderr so far)`` holds, and
    return its exit status; None when it ended by itself before the moment came."""
    with log_file.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _MAIN, *args], env=env(), stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not moment(log_file.read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                return None
            time.sleep(0.005)
        proc.send_signal(sig)
        return proc.wait(timeout=grace)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- comparing folders ---------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def lost(before: dict[str, str], folder: Path) -> list[str]:
    """Files of ``before`` that changed or vanished."""
    after = snapshot(folder) if folder.is_dir() else {}
    return [name for name, digest in before.items() if after.get(name) != digest]


def result_doc(out: Path) -> dict:
    doc = json.loads((out / "result.json").read_text())
    return {k: v for k, v in doc.items() if k not in VOLATILE}


def differences(out: Path, ref: Path) -> list[str]:
    """How a finished run differs from the reference (empty when identical)."""
    if not (out / "result.json").is_file():
        return ["no result.json"]
    a, b = result_doc(out), result_doc(ref)
    diff = [f"result.json {k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if (out / "history.csv").read_bytes() != (ref / "history.csv").read_bytes():
        diff.append("history.csv")
    return diff


def leftovers(folder: Path) -> list[str]:
    """Temporary files of writes that never finished (ours and the safetensors library's)."""
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.startswith(".tmp"))
    )


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def history_rows(out: Path) -> int:
    try:
        return max(0, (out / "history.csv").read_text().count("\n") - 1)
    except OSError:
        return 0


# --- the cases ------------------------------------------------------------------------------------

CASES: list[tuple[str, str, Callable[[Context], Outcome]]] = []


def case(kind: str):
    def register(fn: Callable[[Context], Outcome]):
        CASES.append((fn.__name__, kind, fn))
        return fn

    return register


def expect_error(ctx: Context, name: str, args: list[str], guard: list[Path] = ()) -> Outcome:
    """Run ``args``; handled when it fails cleanly; data loss when a guarded folder changed."""
    before = {p: snapshot(p) for p in guard}
    proc = cli(*args)
    ok, detail = clean_error(proc)
    gone = [f"{p.name}/{f}" for p in guard for f in lost(before[p], p)]
    if gone:
        detail += f"; changed or vanished: {', '.join(gone[:5])}"
    return Outcome(name, "bad_input", handled=ok, data_loss=bool(gone), detail=detail)


def on_finished_run(ctx: Context, name: str, option: str, value: str) -> Outcome:
    out = copy_run(ctx.ref, ctx.fresh(name) / "run")
    args = set_option(run_args(ctx.faces, out, ctx.cache), option, value)
    return expect_error(ctx, name, args, guard=[out])


@case("bad_input")
def finished_run_population_1(ctx):
    return on_finished_run(ctx, "finished_run_population_1", "--population", "1")


@case("bad_input")
def finished_run_evaluations_minus_5(ctx):
    return on_finished_run(ctx, "finished_run_evaluations_minus_5", "--evaluations", "-5")


@case("bad_input")
def finished_run_init_1_5(ctx):
    return on_finished_run(ctx, "finished_run_init_1_5", "--init", "1.5")


@case("bad_input")
def finished_run_mutation_prob_2(ctx):
    return on_finished_run(ctx, "finished_run_mutation_prob_2", "--mutation-prob", "2")


@case("bad_input")
def another_configuration_same_out(ctx):
    return on_finished_run(ctx, "another_configuration_same_out", "--evaluations", "14")


@case("bad_input")
def another_limit_same_out(ctx):
    return on_finished_run(ctx, "another_limit_same_out", "--limit", "100")


@case("bad_input")
def out_is_a_file(ctx):
    path = ctx.fresh("out_is_a_file") / "results.txt"
    path.write_text("my notes\n")
    return expect_error(
        ctx, "out_is_a_file", run_args(ctx.small, path, ctx.cache), guard=[path.parent]
    )


@case("bad_input")
def out_inside_a_class_folder(ctx):
    data = ctx.fresh("out_inside_a_class_folder") / "data"
    shutil.copytree(ctx.small, data)
    out = data / "face" / "results"
    return expect_error(
        ctx, "out_inside_a_class_folder", run_args(data, out, ctx.cache), guard=[data]
    )


@case("bad_input")
def out_is_a_folder_of_foreign_files(ctx):
    out = ctx.fresh("out_is_a_folder_of_foreign_files") / "mine"
    out.mkdir()
    (out / "history.csv").write_text("my own history\n")
    (out / "thesis.tex").write_text("\\documentclass{article}\n")
    return expect_error(
        ctx, "out_is_a_folder_of_foreign_files", run_args(ctx.small, out, ctx.cache), guard=[out]
    )


def damaged_cache(ctx: Context, name: str, damage: Callable[[Path], None]) -> Outcome:
    """Damage the --limit 60 run's cache file, run it again: a WARNING and the right result."""
    base = ctx.fresh(name)
    cache = base / "cache"
    shutil.copytree(ctx.cache, cache)
    key = json.loads((ctx.ref60 / "result.json").read_text())["feature_cache_key"]
    damage(cache / f"{key}.npz")
    out = base / "run"
    proc = cli(*run_args(ctx.faces, out, cache, "--limit", "60"))
    warned = any(
        line.startswith("WARNING") and "damaged" in line for line in proc.stderr.splitlines()
    )
    if proc.returncode != 0 or "Traceback" in proc.stderr:
        return Outcome(name, "bad_input", detail=f"exit {proc.returncode}: {proc.stderr[-800:]}")
    diff = differences(out, ctx.ref60)
    return Outcome(
        name,
        "bad_input",
        handled=warned and not diff,
        wrong_result=bool(diff),
        detail=("warned; " if warned else "NO warning; ")
        + (f"differs: {', '.join(diff)}" if diff else "result identical"),
    )


def _rewrite_npz(
    path: Path, change: Callable[[np.ndarray], np.ndarray], fix_checksum: bool = False
) -> None:
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(str(archive["header"][()]))
        X = change(archive["features"].copy())
    if fix_checksum:  # damage that the checksum alone would not see
        header["sha256"] = hashlib.sha256(np.ascontiguousarray(X, np.float32).tobytes()).hexdigest()
    with path.open("wb") as fh:
        np.savez(fh, features=X, header=np.asarray(json.dumps(header)))


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _nan(X):
    X[3, :7] = np.nan
    return X


def _zeros(X):
    X[10:20] = 0
    return X


def _permute(X):
    return X[np.random.default_rng(0).permutation(len(X))]


@case("bad_input")
def cache_flipped_bytes(ctx):
    return damaged_cache(ctx, "cache_flipped_bytes", _flip_bytes)


@case("bad_input")
def cache_nan_with_a_matching_checksum(ctx):
    return damaged_cache(
        ctx,
        "cache_nan_with_a_matching_checksum",
        lambda p: _rewrite_npz(p, _nan, fix_checksum=True),
    )


@case("bad_input")
def cache_zeroed_rows(ctx):
    return damaged_cache(ctx, "cache_zeroed_rows", lambda p: _rewrite_npz(p, _zeros))


@case("bad_input")
def cache_permuted_rows(ctx):
    return damaged_cache(ctx, "cache_permuted_rows", lambda p: _rewrite_npz(p, _permute))


@case("bad_input")
def cache_truncated(ctx):
    return damaged_cache(
        ctx, "cache_truncated", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    )


def small_copy(ctx: Context, name: str) -> Path:
    data = ctx.fresh(name) / "data"
    shutil.copytree(ctx.small, data)
    return data


@case("bad_input")
def symlink_loop_class_folder(ctx):
    """A class folder that is a symbolic link to itself."""
    data = small_copy(ctx, "symlink_loop_class_folder")
    (data / "loop").symlink_to(data / "loop", target_is_directory=True)
    return expect_error(
        ctx, "symlink_loop_class_folder", run_args(data, data.parent / "run", ctx.cache)
    )


@case("bad_input")
def symlink_to_the_parent_inside_a_class_folder(ctx):
    """A link back up the tree inside a class folder: a clean error, or ignored (class folders
    are not searched recursively), never a traceback or an endless walk."""
    data = small_copy(ctx, "symlink_to_the_parent_inside_a_class_folder")
    (data / "face" / "up").symlink_to(data, target_is_directory=True)
    proc = cli(*run_args(data, data.parent / "run", ctx.cache, evaluations=4, population=4))
    if proc.returncode == 0 and "Traceback" not in proc.stderr:
        return Outcome(
            "symlink_to_the_parent_inside_a_class_folder",
            "bad_input",
            handled=True,
            detail="ignored: the run finished",
        )
    ok, detail = clean_error(proc)
    return Outcome(
        "symlink_to_the_parent_inside_a_class_folder", "bad_input", handled=ok, detail=detail
    )


@case("bad_input")
def symlink_loop_file(ctx):
    data = small_copy(ctx, "symlink_loop_file")
    (data / "face" / "a.png").symlink_to(data / "face" / "b.png")
    (data / "face" / "b.png").symlink_to(data / "face" / "a.png")
    return expect_error(ctx, "symlink_loop_file", run_args(data, data.parent / "run", ctx.cache))


@case("bad_input")
def seed_minus_1(ctx):
    out = ctx.fresh("seed_minus_1") / "run"
    return expect_error(
        ctx, "seed_minus_1", set_option(run_args(ctx.small, out, ctx.cache), "--seed", "-1")
    )


@case("bad_input")
def seed_2_pow_64(ctx):
    out = ctx.fresh("seed_2_pow_64") / "run"
    return expect_error(
        ctx, "seed_2_pow_64", set_option(run_args(ctx.small, out, ctx.cache), "--seed", str(2**64))
    )


@case("bad_input")
def out_under_a_regular_file(ctx):
    """A results folder that cannot be created (as with a read-only parent: root ignores
    permission bits, a file in the path cannot be worked around)."""
    base = ctx.fresh("out_under_a_regular_file")
    (base / "file").write_text("x")
    return expect_error(
        ctx,
        "out_under_a_regular_file",
        run_args(ctx.small, base / "file" / "run", ctx.cache),
        guard=[base],
    )


@case("bad_input")
def predict_csv_is_a_folder(ctx):
    base = ctx.fresh("predict_csv_is_a_folder")
    (base / "folder").mkdir()
    return expect_error(
        ctx,
        "predict_csv_is_a_folder",
        ["predict", ctx.ref, ctx.small / "face", "--csv", base / "folder", "--no-progress"],
        guard=[ctx.ref],
    )


@case("bad_input")
def predict_csv_under_a_file(ctx):
    base = ctx.fresh("predict_csv_under_a_file")
    (base / "file").write_text("x")
    return expect_error(
        ctx,
        "predict_csv_under_a_file",
        ["predict", ctx.ref, ctx.small / "face", "--csv", base / "file" / "p.csv", "--no-progress"],
        guard=[ctx.ref],
    )


@case("bad_input")
def export_out_under_a_file(ctx):
    base = ctx.fresh("export_out_under_a_file")
    (base / "file").write_text("x")
    return expect_error(
        ctx,
        "export_out_under_a_file",
        ["export", ctx.ref, "--out", base / "file" / "model.onnx"],
        guard=[ctx.ref],
    )


@case("bad_input")
def show_null_accuracy(ctx):
    out = copy_run(ctx.ref, ctx.fresh("show_null_accuracy") / "run")
    doc = json.loads((out / "result.json").read_text())
    doc["test_accuracy"] = None
    (out / "result.json").write_text(json.dumps(doc))
    return expect_error(ctx, "show_null_accuracy", ["show", out], guard=[out])


@case("bad_input")
def evaluations_0(ctx):
    out = ctx.fresh("evaluations_0") / "run"
    return expect_error(
        ctx, "evaluations_0", set_option(run_args(ctx.small, out, ctx.cache), "--evaluations", "0")
    )


@case("bad_input")
def limit_0(ctx):
    out = ctx.fresh("limit_0") / "run"
    return expect_error(ctx, "limit_0", run_args(ctx.small, out, ctx.cache, "--limit", "0"))


@case("bad_input")
def fold_3_without_partitions(ctx):
    out = ctx.fresh("fold_3_without_partitions") / "run"
    return expect_error(
        ctx, "fold_3_without_partitions", run_args(ctx.small, out, ctx.cache, "--fold", "3")
    )


@case("bad_input")
def data_empty_string(ctx):
    out = ctx.fresh("data_empty_string") / "run"
    return expect_error(ctx, "data_empty_string", run_args("", out, ctx.cache))


@case("bad_input")
def class_folders_differ_in_case(ctx):
    """face / Face / not_face: a WARNING naming them, and the run goes on."""
    data = small_copy(ctx, "class_folders_differ_in_case")
    (data / "Face").mkdir()
    for p in sorted((data / "face").iterdir())[:6]:
        p.rename(data / "Face" / p.name)
    proc = cli(*run_args(data, data.parent / "run", ctx.cache, evaluations=6, population=4))
    warned = [
        line for line in proc.stderr.splitlines() if line.startswith("WARNING") and "case" in line
    ]
    ok = proc.returncode == 0 and bool(warned) and "Traceback" not in proc.stderr
    return Outcome(
        "class_folders_differ_in_case",
        "bad_input",
        handled=ok,
        detail=warned[0] if ok else f"exit {proc.returncode}: {proc.stderr[-800:]}",
    )


@case("bad_input")
def a_60_megapixel_png(ctx):
    from PIL import Image

    data = small_copy(ctx, "a_60_megapixel_png")
    Image.new("L", (7746, 7746), 128).save(data / "face" / "huge.png")
    return expect_error(ctx, "a_60_megapixel_png", run_args(data, data.parent / "run", ctx.cache))


@case("bad_input")
def swapped_head_files_export(ctx):
    out = copy_run(ctx.ref, ctx.fresh("swapped_head_files_export") / "run")
    head, ref = out / "head.safetensors", out / "reference_head.safetensors"
    tmp = out / "swap"
    head.rename(tmp)
    ref.rename(head)
    tmp.rename(ref)
    return expect_error(
        ctx,
        "swapped_head_files_export",
        ["export", out, "--out", out.parent / "model.onnx"],
        guard=[out],
    )


@case("bad_input")
def train_without_test(ctx):
    data = ctx.fresh("train_without_test") / "data"
    shutil.copytree(ctx.small, data / "train")
    return expect_error(ctx, "train_without_test", run_args(data, data.parent / "run", ctx.cache))


@case("bad_input")
def csv_unclosed_quote(ctx):
    base = ctx.fresh("csv_unclosed_quote")
    (base / "manifest").mkdir()
    rows = ["path,label"]
    for cls in ("face", "not_face"):
        rows += [f"{p},{cls}" for p in sorted((ctx.small / cls).iterdir())]
    rows[7] = f'"{rows[7]}'  # line 8 opens a quote that never closes
    (base / "manifest" / "data.csv").write_text("\n".join(rows) + "\n")
    out = expect_error(
        ctx, "csv_unclosed_quote", run_args(base / "manifest" / "data.csv", base / "run", ctx.cache)
    )
    if out.handled and "line 8" not in out.detail:
        out.handled = False
        out.detail = "names the wrong line (expected line 8): " + out.detail
    return out


@case("bad_input")
def unknown_objective(ctx):
    out = ctx.fresh("unknown_objective") / "run"
    return expect_error(
        ctx,
        "unknown_objective",
        run_args(ctx.small, out, ctx.cache, "--objectives", "accuracy,speed"),
    )


@case("bad_input")
def ood_objective_without_ood(ctx):
    out = ctx.fresh("ood_objective_without_ood") / "run"
    return expect_error(
        ctx,
        "ood_objective_without_ood",
        run_args(ctx.small, out, ctx.cache, "--objectives", "accuracy,ood"),
    )


@case("bad_input")
def select_on_a_single_objective_run(ctx):
    out = ctx.fresh("select_on_a_single_objective_run") / "run"
    return expect_error(
        ctx,
        "select_on_a_single_objective_run",
        run_args(ctx.small, out, ctx.cache, "--select", "knee"),
    )


@case("bad_input")
def ensemble_members_over_the_front(ctx):
    out = copy_run(ctx.multi, ctx.fresh("ensemble_members_over_the_front") / "run")
    front = len(json.loads((out / "result.json").read_text())["front"])
    return expect_error(
        ctx,
        "ensemble_members_over_the_front",
        ["ensemble", out, "--members", str(front + 5), "--cache-dir", ctx.cache, "--no-progress"],
        guard=[out],
    )


@case("bad_input")
def ensemble_on_a_single_objective_run(ctx):
    return expect_error(
        ctx,
        "ensemble_on_a_single_objective_run",
        ["ensemble", ctx.ref, "--cache-dir", ctx.cache, "--no-progress"],
        guard=[ctx.ref],
    )


# --- interrupts -----------------------------------------------------------------------------------


def interrupted(
    ctx: Context,
    name: str,
    moments: list[tuple[Callable[[Path, str], bool], int]],
    ref: Path | None = None,
    extra: tuple[str, ...] = (),
    cache: Path | None = None,
) -> Outcome:
    """Start the reference's command and interrupt it at each of ``moments`` in turn (each a
    rerun of the same command), then run it to completion and compare with ``ref``."""
    ref = ref or ctx.ref
    base = ctx.fresh(name)
    out = base / "run"
    args = run_args(ctx.faces, out, cache or ctx.cache, *extra)
    notes, rows_before, loss = [], 0, []
    for i, (moment, sig) in enumerate(moments):
        status = kill_when(args, lambda text, m=moment: m(out, text), sig, base / f"try{i}.log")
        rows = history_rows(out)
        if rows < rows_before:
            loss.append(f"history fell from {rows_before} to {rows} rows")
        rows_before = rows
        notes.append(
            f"{signal.Signals(sig).name}: "
            + ("finished before the moment" if status is None else f"exit {status}, {rows} rows")
        )
    proc = cli(*args)
    if proc.returncode != 0 or "Traceback" in proc.stderr:
        return Outcome(
            name,
            "interrupt",
            data_loss=bool(loss),
            detail="; ".join(
                notes + loss + [f"rerun exit {proc.returncode}: {proc.stderr[-600:]}"]
            ),
        )
    diff, temps = differences(out, ref), leftovers(out)
    notes += [f"rerun differs: {', '.join(diff)}" if diff else "rerun identical"]
    if temps:
        notes.append(f"temporary files left: {', '.join(temps)}")
    return Outcome(
        name,
        "interrupt",
        handled=not diff and not temps and not loss,
        data_loss=bool(loss),
        wrong_result=bool(diff),
        detail="; ".join(notes + loss),
    )


def at_rows(k: int):
    return lambda out, text: history_rows(out) >= k


def writing(out: Path, text: str) -> bool:
    return bool(leftovers(out))


def extracting(delay: float):
    started: dict[str, float] = {}

    def moment(out: Path, text: str) -> bool:
        if "Feature cache miss" not in text:
            return False
        return time.monotonic() - started.setdefault("t", time.monotonic()) >= delay

    return moment


def replaying(out: Path, text: str) -> bool:
    return "resuming" in text


@case("interrupt")
def sigint_during_search(ctx):
    return interrupted(ctx, "sigint_during_search", [(at_rows(5), signal.SIGINT)])


@case("interrupt")
def sigterm_during_search(ctx):
    return interrupted(ctx, "sigterm_during_search", [(at_rows(7), signal.SIGTERM)])


@case("interrupt")
def sigkill_during_search(ctx):
    return interrupted(ctx, "sigkill_during_search", [(at_rows(4), signal.SIGKILL)])


@case("interrupt")
def sigkill_during_final_writing(ctx):
    return interrupted(ctx, "sigkill_during_final_writing", [(writing, signal.SIGKILL)])


@case("interrupt")
def sigint_during_a_resumed_replay(ctx):
    return interrupted(
        ctx,
        "sigint_during_a_resumed_replay",
        [(at_rows(8), signal.SIGKILL), (replaying, signal.SIGINT)],
    )


@case("interrupt")
def sigkill_twice_in_the_search(ctx):
    return interrupted(
        ctx,
        "sigkill_twice_in_the_search",
        [(at_rows(3), signal.SIGKILL), (at_rows(9), signal.SIGKILL)],
    )


@case("interrupt")
def sigkill_during_feature_extraction(ctx):
    """A fresh cache, killed while the --limit 60 run extracts its features."""
    cache = ctx.fresh("empty_cache")
    return interrupted(
        ctx,
        "sigkill_during_feature_extraction",
        [(extracting(0.5), signal.SIGKILL)],
        ref=ctx.ref60,
        extra=("--limit", "60"),
        cache=cache,
    )


# --- setup and report -----------------------------------------------------------------------------


def write_faces(root: Path, small: Path, per_class_small: int = 12) -> None:
    """The 200 face / non-face crops of scikit-image as class folders, and a small copy."""
    from PIL import Image
    from skimage.data import lfw_subset

    images = (lfw_subset() * 255).round().astype(np.uint8)
    for i, img in enumerate(images):  # the first 100 are faces, the rest are not
        cls = "face" if i < 100 else "not_face"
        for folder, keep in ((root, True), (small, i % 100 < per_class_small)):
            if keep:
                (folder / cls).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(folder / cls / f"{i:03d}.png")


def prepare(ctx: Context) -> None:
    write_faces(ctx.faces, ctx.small)
    for out, extra in (
        (ctx.ref, ()),
        (ctx.ref60, ("--limit", "60")),
        (ctx.multi, ("--objectives", "accuracy,size")),
    ):
        proc = cli(*run_args(ctx.faces, out, ctx.cache, *extra))
        if proc.returncode != 0:
            raise SystemExit(f"reference run {out.name} failed:\n{proc.stderr[-3000:]}")
    # the small set's features too, so that cases failing late do not extract them
    cli(*run_args(ctx.small, ctx.root / "small-run", ctx.cache, evaluations=4, population=4))


def summarise(outcomes: list[Outcome]) -> dict:
    bad = [o for o in outcomes if o.kind == "bad_input"]
    intr = [o for o in outcomes if o.kind == "interrupt"]
    return {
        "bad_input_kinds_tried": len(bad),
        "bad_input_handled_cleanly": sum(o.handled for o in bad),
        "interrupts_tried": len(intr),
        "interrupts_resumed_identically": sum(o.handled for o in intr),
        "data_loss_cases": sum(o.data_loss for o in outcomes),
        "wrong_result_cases": sum(o.wrong_result for o in outcomes),
    }


def table(outcomes: list[Outcome]) -> str:
    rows = [("case", "kind", "ok", "loss", "wrong", "s")] + [
        (
            o.name,
            o.kind,
            "yes" if o.handled else "NO",
            "LOSS" if o.data_loss else "",
            "WRONG" if o.wrong_result else "",
            f"{o.seconds:.0f}",
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    for o in outcomes:
        if not o.handled or o.data_loss or o.wrong_result:
            lines.append(f"\n{o.name}: {o.detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only the cases whose name contains this")
    parser.add_argument("--out", default=str(HERE / "faults.json"), help="JSON file to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="evoprune-faults-") as tmp:
        ctx = Context(Path(tmp))
        log.info("preparing the data, the feature cache and three reference runs")
        prepare(ctx)
        outcomes = []
        for name, kind, fn in CASES:
            if args.k not in name:
                continue
            t = time.perf_counter()
            try:
                outcome = fn(ctx)
            except Exception as exc:  # noqa: BLE001 - a broken case is reported, not fatal
                outcome = Outcome(name, kind, detail=f"the case itself failed: {exc!r}")
            outcome.seconds = time.perf_counter() - t
            outcome.detail = outcome.detail.replace(tmp, "<tmp>")
            log.info("%-40s %s", name, "ok" if outcome.handled else "NOT HANDLED")
            outcomes.append(outcome)
    summary = summarise(outcomes)
    sys.stdout.write(table(outcomes) + "\n\n" + json.dumps(summary, indent=2) + "\n")
    atomic_write_json(
        args.out,
        {
            "summary": summary,
            "targets": {"data_loss_cases": 0, "wrong_result_cases": 0},
            "cases": [asdict(o) for o in outcomes],
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "threads_per_run": 1,
            },
            "seconds": round(time.perf_counter() - start, 1),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
