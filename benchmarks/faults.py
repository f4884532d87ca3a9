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
- wrong result (target 0): a run finished with a result other than the reference's;
- silently wrong (target 0): exit 0 where a refusal was due, or a wrong result;
- hangs (target 0): a command still running after its time limit (killed);
- tracebacks (target 0): a Python traceback on stderr.

Issue 19 added the cases of every command's folder guard (users' files named like evoprune's,
damaged config.json and manifest, --out . --overwrite, a second writer, compare --out, files
of other commands, the data), values checked on read, sizes that cannot fit, late checks,
injected disk-full and read-only errors, FIFOs, sockets and devices, leaks between training
and held-out or OOD images.

Prints a table and writes benchmarks/faults.json: cases, clean, data_loss, silent_wrong, hangs,
tracebacks, interrupts_identical (of interrupts_tried), the names of cases not clean, and every
outcome.
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
    hang: bool = False  # still running after the case's time limit (killed)
    traceback: bool = False  # a Python traceback on stderr
    silent_wrong: bool = False  # exit 0 where a refusal was due, or a wrong result with exit 0


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


#: The exit status given to a command that was still running after its time limit.
HUNG = -1000


def cli(
    *args: str, timeout: float = TIMEOUT, code: str = _MAIN, extra_env: dict | None = None
) -> subprocess.CompletedProcess:
    """``evoprune args`` in a subprocess; a command still running after ``timeout`` seconds
    is killed and returned with status :data:`HUNG`."""
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *map(str, args)],
            env={**env(), **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return subprocess.CompletedProcess(exc.cmd, HUNG, out, err + f"\nHUNG after {timeout} s")


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
    """Whether a run failed as it should: status 2, one ERROR line (or the option parser's
    one "error:" line after its usage), no traceback."""
    errors = error_lines(proc.stderr) or [
        line
        for line in proc.stderr.splitlines()
        if line.startswith("evoprune") and ": error:" in line
    ]
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


def expect_error(
    ctx: Context,
    name: str,
    args: list[str],
    guard: list[Path] = (),
    *,
    absent: list[Path] = (),
    contains: str = "",
    timeout: float = 240,
    code: str = _MAIN,
    extra_env: dict | None = None,
) -> Outcome:
    """Run ``args``; handled when it fails cleanly (status 2, one ERROR line holding
    ``contains``, no traceback) and wrote none of ``absent``; data loss when a guarded folder
    changed; silently wrong when it exited 0."""
    before = {p: snapshot(p) for p in guard}
    proc = cli(*args, timeout=timeout, code=code, extra_env=extra_env)
    ok, detail = clean_error(proc)
    if ok and contains and contains not in detail:
        ok, detail = False, f"the message does not say {contains!r}: {detail}"
    written = [p.name for p in absent if os.path.lexists(p)]
    if written:
        ok, detail = False, detail + f"; written although refused: {', '.join(written)}"
    gone = [f"{p.name}/{f}" for p in guard for f in lost(before[p], p)]
    if gone:
        detail += f"; changed or vanished: {', '.join(gone[:5])}"
    return Outcome(
        name,
        "bad_input",
        handled=ok,
        data_loss=bool(gone),
        detail=detail,
        hang=proc.returncode == HUNG,
        traceback="Traceback" in proc.stderr,
        silent_wrong=proc.returncode == 0,
    )


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


# --- issue 19: every command guards its folder, values checked on read, no hangs -------------


#: The cases of issue 19, run first (a run stopped early has measured them).
ISSUE_19: set[str] = set()


def add_case(name: str, kind: str, fn: Callable[[Context], Outcome]) -> None:
    """Register a case made by a function of its name (the table-driven cases below)."""
    CASES.append((name, kind, fn))
    ISSUE_19.add(name)


def _edit_json(path: Path, **changes) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def _run_copy(ctx: Context, name: str, src: Path | None = None) -> Path:
    """A copy of a reference run at the reference's depth (its data path still resolves)."""
    return copy_run(src or ctx.ref, ctx.fresh(name) / "run")


# Options that cannot be right, given to the finished reference run's command: refused with
# one message and the run untouched (values that cannot fit memory or time among them).
_BAD_OPTIONS = {
    "population_1e9": ("--population", "1000000000"),
    "population_2_pow_62": ("--population", str(2**62)),
    "hidden_size_1e8": ("--hidden-size", "100000000"),
    "hidden_size_0": ("--hidden-size", "0"),
    "evaluations_1e11": ("--evaluations", "100000000000"),
    "evaluations_text": ("--evaluations", "many"),
    "cv_folds_1": ("--cv-folds", "1"),
    "val_fraction_0": ("--val-fraction", "0"),
    "val_fraction_1": ("--val-fraction", "1"),
    "test_fraction_0": ("--test-fraction", "0"),
    "test_fraction_1_5": ("--test-fraction", "1.5"),
    "test_fraction_nan": ("--test-fraction", "nan"),
    "limit_minus_1": ("--limit", "-1"),
    "mutation_prob_minus": ("--mutation-prob", "-0.1"),
    "mutation_prob_inf": ("--mutation-prob", "inf"),
    "init_text": ("--init", "half"),
    "init_reversed_range": ("--init", "0.7-0.3"),
    "encoding_unknown": ("--encoding", "neurons"),
    "backbone_unknown": ("--backbone", "resnet9000"),
    "trainer_unknown": ("--trainer", "slow"),
    "fitness_split_unknown": ("--fitness-split", "train"),
    "objectives_unknown": ("--objectives", "accuracy,speed"),
    "select_bad": ("--select", "best"),
    "ood_score_unknown": ("--ood-score", "magic"),
    "device_unknown": ("--device", "tpu"),
    "workers_0": ("--workers", "0"),
    "threads_per_worker_0": ("--threads-per-worker", "0"),
    "fidelity_unknown": ("--fidelity", "half"),
    "final_check_folds_1": ("--final-check-folds", "1"),
    "layer_unknown": ("--layer", "middle"),
    "fold_99": ("--fold", "99"),
    "seed_text": ("--seed", "lucky"),
}
for _name, (_option, _value) in _BAD_OPTIONS.items():
    add_case(
        f"finished_run_{_name}",
        "bad_input",
        lambda ctx, n=f"finished_run_{_name}", o=_option, v=_value: on_finished_run(ctx, n, o, v),
    )


# Checks that used to come after config.json and history.csv were written: now no folder.
_LATE = {
    "cv_folds_50": ("--fitness-split", "cv", "--cv-folds", "50"),
    "test_fraction_0_99": ("--test-fraction", "0.99"),
    "limit_3": ("--limit", "3"),
    "final_check_folds_50": ("--final-check", "cv", "--final-check-folds", "50"),
    "ray_address_nowhere": ("--ray-address", "nowhere.invalid:1"),
}


def late_check(ctx: Context, name: str, extra: tuple[str, ...], env_extra=None) -> Outcome:
    out = ctx.fresh(name) / "run"
    args = run_args(ctx.small, out, ctx.cache, *extra, evaluations=6, population=4)
    return expect_error(ctx, name, args, absent=[out], extra_env=env_extra)


for _name, _extra in _LATE.items():
    add_case(
        f"late_{_name}",
        "bad_input",
        lambda ctx, n=f"late_{_name}", e=_extra: late_check(ctx, n, e),
    )
add_case(
    "late_ray_address_env",
    "bad_input",
    lambda ctx: late_check(
        ctx, "late_ray_address_env", ("--workers", "2"), {"RAY_ADDRESS": "nowhere.invalid:1"}
    ),
)


def _class_of_two(ctx: Context) -> Outcome:
    data = small_copy(ctx, "late_class_of_2_images")
    for p in sorted((data / "not_face").iterdir())[2:]:
        p.unlink()
    out = data.parent / "run"
    args = run_args(data, out, ctx.cache, evaluations=6, population=4)
    return expect_error(ctx, "late_class_of_2_images", args, absent=[out], guard=[data])


add_case("late_class_of_2_images", "bad_input", _class_of_two)


# A user's file in a results folder, whatever its name: refused, never deleted or moved.
_USER_FILES = {
    "user_dot_tmp": ".thesis-draft.tmp",
    "user_model_json": "model-notes.json",
    "user_ensemble_onnx": "ensemble_ideas.onnx",
    "user_file_in_analysis": "analysis/notes.md",
    "user_file_in_front": "front/mine.txt",
    "user_confusion_copy": "confusion (1).png",
}


def user_file_in_run(ctx: Context, name: str, rel: str, overwrite: bool) -> Outcome:
    out = _run_copy(ctx, name)
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    (out / rel).write_text("the user's own words\n")
    args = run_args(ctx.faces, out, ctx.cache, *(["--overwrite"] if overwrite else []))
    if overwrite:
        args = set_option(args, "--evaluations", "14")
    return expect_error(
        ctx, name, args, guard=[out], absent=[out.with_name("run.old-1")], contains=rel
    )


for _name, _rel in _USER_FILES.items():
    for _ow in (False, True):
        _full = f"{_name}{'_overwrite' if _ow else ''}"
        add_case(
            _full,
            "bad_input",
            lambda ctx, n=_full, r=_rel, o=_ow: user_file_in_run(ctx, n, r, o),
        )


def _damaged_config(text: str | None, what: str):
    def fn(ctx: Context) -> Outcome:
        name = f"config_{what}"
        out = _run_copy(ctx, name)
        if text is None:
            (out / "config.json").unlink()
        else:
            (out / "config.json").write_text(text)
        args = set_option(run_args(ctx.faces, out, ctx.cache), "--evaluations", "14")
        return expect_error(ctx, name, args, guard=[out], contains="config.json")

    return fn


for _what, _text in {
    "missing_other_settings": None,
    "cut": '{"run": {"data": ',
    "run_null": '{"run": null}',
    "a_list": "[1, 2]",
    "empty": "",
}.items():
    add_case(f"config_{_what}", "bad_input", _damaged_config(_text, _what))


def _manifest_case(what: str):
    def fn(ctx: Context) -> Outcome:
        name = f"manifest_{what}"
        out = _run_copy(ctx, name)
        manifest = out / ".evoprune-manifest.json"
        if what == "missing":
            manifest.unlink()
        else:
            manifest.write_text("{not json" if what == "damaged" else '{"files": 3}')
        args = run_args(ctx.faces, out, ctx.cache, "--overwrite")
        return expect_error(ctx, name, set_option(args, "--evaluations", "14"), guard=[out])

    return fn


for _what in ("missing", "damaged", "wrong_type"):
    add_case(f"manifest_{_what}", "bad_input", _manifest_case(_what))


def _overwrite_current_folder(ctx: Context) -> Outcome:
    out = _run_copy(ctx, "overwrite_the_current_folder")
    args = set_option(run_args(ctx.faces, ".", ctx.cache, "--overwrite"), "--evaluations", "14")
    args = set_option(args, "--data", os.path.relpath(ctx.faces, out))
    code = f"import os; os.chdir({str(out)!r}); " + _MAIN
    return expect_error(ctx, "overwrite_the_current_folder", args, guard=[out], code=code)


add_case("overwrite_the_current_folder", "bad_input", _overwrite_current_folder)

#: Python run in the subprocess before the command: an OSError injected where it happens.
_INJECT = (
    "import errno, os, pathlib, sys\n"
    "from evoprune.runs import store\n"
    "{patch}\n" + _MAIN.replace("; ", "\n")
)


def _read_only_overwrite(ctx: Context) -> Outcome:
    out = _run_copy(ctx, "overwrite_read_only_parent")
    patch = (
        "def ro(self, target):\n"
        "    raise OSError(errno.EROFS, 'Read-only file system')\n"
        "pathlib.Path.rename = ro"
    )
    args = set_option(run_args(ctx.faces, out, ctx.cache, "--overwrite"), "--evaluations", "14")
    return expect_error(
        ctx,
        "overwrite_read_only_parent",
        args,
        guard=[out],
        code=_INJECT.format(patch=patch),
        contains="read-only",
    )


add_case("overwrite_read_only_parent", "bad_input", _read_only_overwrite)


def _disk_full_in_search(ctx: Context) -> Outcome:
    """ENOSPC after 5 history rows: one message, the rows kept, the rerun identical."""
    name = "disk_full_during_search"
    out = ctx.fresh(name) / "run"
    patch = (
        "real = store.HistoryAppender._append\n"
        "n = [0]\n"
        "def full(self, rec):\n"
        "    n[0] += 1\n"
        "    if n[0] > 5:\n"
        "        raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "    return real(self, rec)\n"
        "store.HistoryAppender._append = full"
    )
    args = run_args(ctx.faces, out, ctx.cache)
    first = expect_error(ctx, name, args, code=_INJECT.format(patch=patch), contains="disk is full")
    rows = history_rows(out)
    proc = cli(*args)
    diff = differences(out, ctx.ref) if proc.returncode == 0 else ["rerun failed"]
    first.handled = first.handled and rows == 5 and not diff
    first.silent_wrong = first.silent_wrong or (proc.returncode == 0 and bool(diff))
    first.detail += f"; {rows} rows kept; rerun " + (", ".join(diff) or "identical")
    return first


add_case("disk_full_during_search", "bad_input", _disk_full_in_search)


def _read_only_final_write(ctx: Context) -> Outcome:
    name = "read_only_at_the_final_write"
    out = ctx.fresh(name) / "run"
    patch = (
        "def ro(*a, **k):\n"
        "    raise OSError(errno.EROFS, 'Read-only file system')\n"
        "store.write_history = ro"
    )
    return expect_error(
        ctx, name, run_args(ctx.faces, out, ctx.cache), code=_INJECT.format(patch=patch)
    )


add_case("read_only_at_the_final_write", "bad_input", _read_only_final_write)


def _second_writer(ctx: Context) -> Outcome:
    """Another evoprune holds the folder (its lock): a second --overwrite run is refused."""
    out = _run_copy(ctx, "second_writer_at_once")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(300)",
            str(out),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        holder.stdout.readline()
        args = set_option(run_args(ctx.faces, out, ctx.cache, "--overwrite"), "--evaluations", "14")
        return expect_error(
            ctx,
            "second_writer_at_once",
            args,
            guard=[out],
            absent=[out.with_name("run.old-1")],
            contains="another evoprune command",
        )
    finally:
        holder.kill()
        holder.wait()


add_case("second_writer_at_once", "bad_input", _second_writer)


def _two_overwrites(ctx: Context) -> Outcome:
    """Two --overwrite runs with other settings started together: at most one claims success,
    and the folder holds the run that did."""
    base = ctx.fresh("two_overwrite_runs_at_once")
    out = copy_run(ctx.ref, base / "run")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _MAIN,
                *set_option(
                    run_args(ctx.faces, out, ctx.cache, "--overwrite"), "--evaluations", str(e)
                ),
            ],
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for e in (13, 14)
    ]
    results = [p.communicate(timeout=TIMEOUT) for p in procs]
    codes = [p.returncode for p in procs]
    tb = any("Traceback" in err for _, err in results)
    ok_runs = [e for e, c in zip((13, 14), codes) if c == 0]
    evaluations = (
        json.loads((out / "result.json").read_text())["evaluations"]
        if (out / "result.json").is_file()
        else None
    )
    handled = len(ok_runs) == 1 and evaluations == ok_runs[0] and not tb
    handled = handled or (not ok_runs and not tb)
    return Outcome(
        "two_overwrite_runs_at_once",
        "bad_input",
        handled=handled,
        silent_wrong=len(ok_runs) > 1,
        traceback=tb,
        detail=f"exits {codes}; the folder holds the run of {evaluations} evaluations",
    )


add_case("two_overwrite_runs_at_once", "bad_input", _two_overwrites)


# --- compare --out -------------------------------------------------------------------------------


def compare_args(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "compare", "--data", str(data), "--encodings", "fs", "--runs", "1", "--population",
        "6", "--evaluations", "12", "--seed-base", "1", "--out", str(out), "--cache-dir",
        str(cache), "--no-progress", *extra,
    ]  # fmt: skip


def _compare_user_files(ctx: Context) -> Outcome:
    out = ctx.fresh("compare_out_with_user_files") / "mine"
    out.mkdir()
    (out / "summary.csv").write_text("my table\n")
    (out / "table.md").write_text("# mine\n")
    return expect_error(
        ctx, "compare_out_with_user_files", compare_args(ctx.small, out, ctx.cache), guard=[out]
    )


def _compare_in_data(ctx: Context) -> Outcome:
    data = small_copy(ctx, "compare_out_inside_the_data")
    out = data / "results"
    return expect_error(
        ctx,
        "compare_out_inside_the_data",
        compare_args(data, out, ctx.cache),
        guard=[data],
        absent=[out],
    )


def _compare_in_csv_images(ctx: Context) -> Outcome:
    data = small_copy(ctx, "compare_out_inside_csv_images")
    csv_file = data.parent / "list.csv"
    rows = [f"{p},{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    csv_file.write_text("path,label\n" + "\n".join(rows) + "\n")
    out = data / "face" / "results"
    return expect_error(
        ctx,
        "compare_out_inside_csv_images",
        compare_args(csv_file, out, ctx.cache),
        guard=[data],
        absent=[out],
    )


def _compare_refused_run(ctx: Context) -> Outcome:
    """A run folder of other settings inside the comparison: refused before comparison.json
    is rewritten, and the message never advises --overwrite (compare rejects it)."""
    out = ctx.fresh("compare_refused_run_folder") / "cmp"
    proc = cli(*compare_args(ctx.small, out, ctx.cache))
    if proc.returncode != 0:
        return Outcome("compare_refused_run_folder", "bad_input", detail=proc.stderr[-400:])
    args = set_option(compare_args(ctx.small, out, ctx.cache), "--evaluations", "10")
    args = set_option(args, "--population", "5")
    (out / "comparison.json").write_bytes((out / "comparison.json").read_bytes())
    outcome = expect_error(ctx, "compare_refused_run_folder", args, guard=[out])
    if "--overwrite" in outcome.detail:
        outcome.handled = False
        outcome.detail += " (advises --overwrite, which compare rejects)"
    return outcome


def _compare_out_file(ctx: Context) -> Outcome:
    path = ctx.fresh("compare_out_is_a_file") / "notes.txt"
    path.write_text("mine\n")
    return expect_error(
        ctx, "compare_out_is_a_file", compare_args(ctx.small, path, ctx.cache), guard=[path.parent]
    )


def _compare_read_only(ctx: Context) -> Outcome:
    out = ctx.fresh("compare_out_read_only") / "cmp"
    patch = (
        "import evoprune.io as io\n"
        "def ro(*a, **k):\n"
        "    raise OSError(errno.EROFS, 'Read-only file system')\n"
        "io._replace = ro"
    )
    return expect_error(
        ctx,
        "compare_out_read_only",
        compare_args(ctx.small, out, ctx.cache),
        code=_INJECT.format(patch=patch),
    )


for _fn in (
    _compare_user_files,
    _compare_in_data,
    _compare_in_csv_images,
    _compare_refused_run,
    _compare_out_file,
    _compare_read_only,
):
    add_case(_fn.__name__.lstrip("_").replace("compare_", "compare_", 1), "bad_input", _fn)


# --- files of other commands, data and special files ------------------------------------------


def _predict_onto(target_name: str):
    def fn(ctx: Context) -> Outcome:
        name = f"predict_csv_onto_{target_name.replace('.', '_')}"
        out = _run_copy(ctx, name)
        args = [
            "predict", out, ctx.small / "face", "--csv", out / target_name, "--no-progress"
        ]  # fmt: skip
        return expect_error(ctx, name, args, guard=[out])

    return fn


for _target in ("result.json", "config.json", "history.csv", "head.safetensors"):
    add_case(f"predict_csv_onto_{_target.replace('.', '_')}", "bad_input", _predict_onto(_target))


def _export_onto(target_name: str):
    def fn(ctx: Context) -> Outcome:
        name = f"export_onto_{target_name.replace('.', '_')}"
        out = _run_copy(ctx, name)
        return expect_error(ctx, name, ["export", out, "--out", out / target_name], guard=[out])

    return fn


for _target in ("head.safetensors", "result.json", "reference_head.safetensors"):
    add_case(f"export_onto_{_target.replace('.', '_')}", "bad_input", _export_onto(_target))


def _predict_csv_in_data(ctx: Context) -> Outcome:
    """--csv inside the run's training images (a CSV beside the images being predicted, which
    are not a run's data, is the user's choice and allowed)."""
    target = ctx.faces / "face" / "predictions.csv"
    args = ["predict", ctx.ref, ctx.small / "face", "--csv", target, "--no-progress"]
    return expect_error(ctx, "predict_csv_inside_the_data", args, absent=[target])


def _export_in_data(ctx: Context) -> Outcome:
    out = _run_copy(ctx, "export_inside_the_data")
    target = ctx.faces / "face" / "model.onnx"
    return expect_error(
        ctx, "export_inside_the_data", ["export", out, "--out", target], absent=[target]
    )


def _csv_manifest_out(ctx: Context) -> Outcome:
    data = small_copy(ctx, "run_out_inside_csv_images")
    csv_file = data.parent / "list.csv"
    rows = [f"{p},{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    csv_file.write_text("path,label\n" + "\n".join(rows) + "\n")
    out = data / "face" / "results"
    return expect_error(
        ctx,
        "run_out_inside_csv_images",
        run_args(csv_file, out, ctx.cache),
        guard=[data],
        absent=[out],
    )


def _analyze_user_file(ctx: Context) -> Outcome:
    out = _run_copy(ctx, "analyze_with_a_user_file")
    (out / "analysis").mkdir()
    (out / "analysis" / "cka.csv").write_text("my own table\n")
    return expect_error(
        ctx, "analyze_with_a_user_file", ["analyze", out, "--no-progress"], guard=[out]
    )


def _ensemble_keeps_json(extra: tuple[str, ...], name: str):
    def fn(ctx: Context) -> Outcome:
        out = _run_copy(ctx, name, ctx.multi)
        first = cli("ensemble", out, "--members", "1", "--cache-dir", ctx.cache, "--no-progress")
        if first.returncode != 0:
            return Outcome(name, "bad_input", detail=first.stderr[-400:])
        (out.parent / "blocker").write_text("x")
        args = ["ensemble", out, "--cache-dir", ctx.cache, "--no-progress", *extra]
        args = [a.replace("BLOCKER", str(out.parent / "blocker")) for a in map(str, args)]
        return expect_error(ctx, name, args, guard=[out])

    return fn


add_case(
    "ensemble_hard_vote_export",
    "bad_input",
    _ensemble_keeps_json(("--vote", "hard", "--export", "x.onnx"), "ensemble_hard_vote_export"),
)
add_case(
    "ensemble_export_unwritable",
    "bad_input",
    _ensemble_keeps_json(("--export", "BLOCKER/e.onnx"), "ensemble_export_unwritable"),
)
for _fn in (_predict_csv_in_data, _export_in_data, _csv_manifest_out, _analyze_user_file):
    add_case(_fn.__name__.lstrip("_"), "bad_input", _fn)


# --- values checked on read ---------------------------------------------------------------------


def _history_value(field_name: str, value: str):
    def fn(ctx: Context) -> Outcome:
        name = f"history_{field_name}_{value.replace('.', '_').replace('-', 'minus')}"
        out = _run_copy(ctx, name)
        lines = (out / "history.csv").read_text().splitlines()
        header = lines[0].split(",")
        cells = lines[4].split(",")
        if field_name == "mask":
            cells[header.index("mask")] = cells[header.index("mask")][:-2]
        else:
            cells[header.index(field_name)] = value
        lines[4] = ",".join(cells)
        (out / "history.csv").write_text("\n".join(lines) + "\n")
        (out / "result.json").unlink()  # an interrupted run: resumed from the history
        return expect_error(ctx, name, run_args(ctx.faces, out, ctx.cache), guard=[out])

    return fn


for _f, _v in (
    ("fitness", "inf"),
    ("fitness", "nan"),
    ("fitness", "1.5"),
    ("fitness", "-0.1"),
    ("active_fraction", "2"),
    ("best_fitness", "nan"),
    ("mask", "short"),
):
    _n = f"history_{_f}_{_v.replace('.', '_').replace('-', 'minus')}"
    add_case(_n, "bad_input", _history_value(_f, _v))


def _analyze_history(what: str, data: bytes):
    def fn(ctx: Context) -> Outcome:
        name = f"analyze_history_{what}"
        out = _run_copy(ctx, name)
        (out / "history.csv").write_bytes(data)
        args = ["analyze", out, "--no-heatmaps", "--no-progress", "--cache-dir", ctx.cache]
        return expect_error(ctx, name, args)

    return fn


for _what, _data in (
    ("garbage", b"\x00\xff\xfe\x00 garbage"),
    ("cut_in_the_middle", b"index,iteration,fitness\n1,0\n2,0,0.5\n"),
    ("no_header", b""),
):
    add_case(f"analyze_history_{_what}", "bad_input", _analyze_history(_what, _data))


def _result_value(field_name: str, value, tag: str):
    def fn(ctx: Context) -> Outcome:
        name = f"result_{field_name}_{tag}"
        out = _run_copy(ctx, name, ctx.multi if field_name == "front" else None)
        _edit_json(out / "result.json", **{field_name: value})
        return expect_error(ctx, name, ["show", out], guard=[out])

    return fn


for _f, _v, _t in (
    ("front", [1, 2], "ints"),
    ("front", [{"rank": "first"}], "bad_entry"),
    ("per_class", "x", "text"),
    ("per_class", [{"class": "face"}], "missing_keys"),
    ("best_mask", [2, 3], "not_binary"),
    ("best_mask", "abc", "text"),
    ("test_accuracy", 1.5, "over_1"),
    ("fitness", -1, "negative"),
    ("timings", {"search": "slow"}, "text_inside"),
    ("confusion", [[1]], "wrong_size"),
    ("classes", [1, 2], "ints"),
):
    add_case(f"result_{_f}_{_t}", "bad_input", _result_value(_f, _v, _t))


def _result_infinity(ctx: Context) -> Outcome:
    out = _run_copy(ctx, "result_fitness_infinity")
    text = (out / "result.json").read_text()
    fitness = json.loads(text)["fitness"]
    (out / "result.json").write_text(
        text.replace(f'"fitness": {json.dumps(fitness)}', '"fitness": Infinity')
    )
    return expect_error(ctx, "result_fitness_infinity", ["show", out], guard=[out])


add_case("result_fitness_infinity", "bad_input", _result_infinity)


def _config_run_null(command: str):
    def fn(ctx: Context) -> Outcome:
        name = f"config_run_null_{command}"
        out = _run_copy(ctx, name)
        _edit_json(out / "config.json", run=None)
        extra = ["--no-progress"] if command in ("analyze", "ensemble") else []
        return expect_error(ctx, name, [command, out, *extra])

    return fn


for _command in ("show", "export", "analyze"):
    add_case(f"config_run_null_{_command}", "bad_input", _config_run_null(_command))


def _saved_config_value(key: str, value, trainer: bool = False):
    def fn(ctx: Context) -> Outcome:
        name = f"saved_config_{key}_{value}"
        out = _run_copy(ctx, name)
        doc = json.loads((out / "config.json").read_text())
        (doc["trainer_settings"] if trainer else doc["run"])[key] = value
        (out / "config.json").write_text(json.dumps(doc))
        args = ["analyze", out, "--no-progress", "--cache-dir", ctx.cache, "--remove-each-class"]
        return expect_error(ctx, name, args, timeout=180)

    return fn


for _k, _v, _tr in (
    ("population", 10**9, False),
    ("hidden_size", 10**8, False),
    ("evaluations", 10**12, False),
    ("max_epochs", 10**9, True),
    ("early_stop_patience", 10**9, True),
    ("lr", "fast", True),
):
    add_case(f"saved_config_{_k}_{_v}", "bad_input", _saved_config_value(_k, _v, _tr))


def _damaged_head(damage: str, command: str):
    def fn(ctx: Context) -> Outcome:
        from safetensors.torch import load_file, save_file

        name = f"head_{damage}_{command}"
        out = _run_copy(ctx, name)
        state = load_file(str(out / "head.safetensors"))
        w = state["layers.0.weight"]
        state["layers.0.weight"] = {
            "nan": lambda: w.fill_(float("nan")),
            "int": lambda: w.long(),
            "inf": lambda: w.fill_(float("inf")),
            "1d": lambda: w.flatten(),
        }[damage]()
        save_file(state, str(out / "head.safetensors"))
        target = out.parent / "m.onnx"
        args = (
            ["export", out, "--out", target]
            if command == "export"
            else ["predict", out, ctx.small / "face", "--no-progress"]
        )
        return expect_error(ctx, name, args, absent=[target])

    return fn


for _damage in ("nan", "int", "inf", "1d"):
    for _command in ("export", "predict"):
        add_case(f"head_{_damage}_{_command}", "bad_input", _damaged_head(_damage, _command))


# --- special files and leaks --------------------------------------------------------------------


def _special_in_class(kind: str, skip: bool):
    def fn(ctx: Context) -> Outcome:
        import socket

        name = f"{kind}_in_a_class_folder{'_skip_bad' if skip else ''}"
        data = small_copy(ctx, name)
        path = data / "face" / "zz.png"
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "socket":
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(str(path))
        else:
            path.symlink_to("/dev/zero")
        out = data.parent / "run"
        extra = ("--skip-bad-images",) if skip else ()
        proc = cli(
            *run_args(data, out, ctx.cache, *extra, evaluations=4, population=4), timeout=180
        )
        ok = proc.returncode == 0 and "zz.png" in proc.stderr
        return Outcome(
            name,
            "bad_input",
            handled=ok and "Traceback" not in proc.stderr,
            hang=proc.returncode == HUNG,
            traceback="Traceback" in proc.stderr,
            detail="skipped with a warning" if ok else proc.stderr[-400:],
        )

    return fn


for _kind in ("fifo", "socket", "device"):
    for _skip in (False, True):
        add_case(
            f"{_kind}_in_a_class_folder{'_skip_bad' if _skip else ''}",
            "bad_input",
            _special_in_class(_kind, _skip),
        )


def _fifo_to_predict(ctx: Context) -> Outcome:
    base = ctx.fresh("fifo_given_to_predict")
    fifo = base / "x.png"
    os.mkfifo(fifo)
    proc = cli("predict", ctx.ref, fifo, ctx.small / "face", "--no-progress", timeout=180)
    ok = proc.returncode == 0 and "not a regular file" in proc.stderr
    return Outcome(
        "fifo_given_to_predict",
        "bad_input",
        handled=ok and "Traceback" not in proc.stderr,
        hang=proc.returncode == HUNG,
        traceback="Traceback" in proc.stderr,
        detail="skipped with a warning" if ok else proc.stderr[-400:],
    )


def _predict_csv_fifo(ctx: Context) -> Outcome:
    base = ctx.fresh("predict_csv_is_a_fifo")
    fifo = base / "p.csv"
    os.mkfifo(fifo)
    args = ["predict", ctx.ref, ctx.small / "face", "--csv", fifo, "--no-progress"]
    return expect_error(ctx, "predict_csv_is_a_fifo", args, timeout=180)


add_case("fifo_given_to_predict", "bad_input", _fifo_to_predict)
add_case("predict_csv_is_a_fifo", "bad_input", _predict_csv_fifo)


def _leak(how: str):
    def fn(ctx: Context) -> Outcome:
        name = f"test_images_that_are_training_images_{how}"
        base = ctx.fresh(name)
        data = base / "data"
        shutil.copytree(ctx.small, data / "train")
        (data / "test").mkdir()
        for cls in ("face", "not_face"):
            (data / "test" / cls).mkdir()
            for p in sorted((data / "train" / cls).iterdir())[:3]:
                target = data / "test" / cls / p.name
                {"copy": shutil.copy, "symlink": os.symlink, "hardlink": os.link}[how](p, target)
        proc = cli(*run_args(data, base / "run", ctx.cache, evaluations=4, population=4))
        ok = proc.returncode == 0 and "6 held-out image(s) are identical" in proc.stderr
        return Outcome(
            name,
            "bad_input",
            handled=ok,
            silent_wrong=proc.returncode == 0 and not ok,
            traceback="Traceback" in proc.stderr,
            detail="reported" if ok else proc.stderr[-400:],
        )

    return fn


for _how in ("copy", "symlink", "hardlink"):
    add_case(f"test_images_that_are_training_images_{_how}", "bad_input", _leak(_how))


def _ood_overlap(ctx: Context) -> Outcome:
    base = ctx.fresh("ood_overlapping_the_data")
    ood = base / "ood"
    ood.mkdir()
    for p in sorted((ctx.small / "face").iterdir())[:6]:
        shutil.copy(p, ood / p.name)
    out = base / "run"
    args = run_args(ctx.small, out, ctx.cache, "--objectives", "accuracy,size,ood", "--ood", ood)
    return expect_error(ctx, "ood_overlapping_the_data", args, absent=[out], contains="--ood")


add_case("ood_overlapping_the_data", "bad_input", _ood_overlap)


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
    """The counts of issue 19: case kinds tried, handled cleanly, data loss, silently wrong
    (a refusal due but exit 0, or a wrong result), hangs, tracebacks, interrupts resumed
    identically."""
    intr = [o for o in outcomes if o.kind == "interrupt"]
    return {
        "cases": len(outcomes),
        "clean": sum(o.handled for o in outcomes),
        "data_loss": sum(o.data_loss for o in outcomes),
        "silent_wrong": sum(o.silent_wrong or o.wrong_result for o in outcomes),
        "hangs": sum(o.hang for o in outcomes),
        "tracebacks": sum(o.traceback for o in outcomes),
        "interrupts_tried": len(intr),
        "interrupts_identical": sum(o.handled for o in intr),
    }


def table(outcomes: list[Outcome]) -> str:
    rows = [("case", "kind", "ok", "loss", "wrong", "hang", "tb", "s")] + [
        (
            o.name,
            o.kind,
            "yes" if o.handled else "NO",
            "LOSS" if o.data_loss else "",
            "WRONG" if o.wrong_result or o.silent_wrong else "",
            "HANG" if o.hang else "",
            "TB" if o.traceback else "",
            f"{o.seconds:.0f}",
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    for o in outcomes:
        if not o.handled or o.data_loss or o.wrong_result or o.silent_wrong or o.hang:
            lines.append(f"\n{o.name}: {o.detail}")
    return "\n".join(lines)


def write_json(path: str, outcomes: list[Outcome], start: float, complete: bool) -> None:
    atomic_write_json(
        path,
        {
            **summarise(outcomes),
            "complete": complete,
            "targets": {"data_loss": 0, "silent_wrong": 0, "hangs": 0, "tracebacks": 0},
            "not_clean": [o.name for o in outcomes if not o.handled],
            "outcomes": [asdict(o) for o in outcomes],
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "threads_per_run": 1,
            },
            "seconds": round(time.perf_counter() - start, 1),
        },
    )


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
        for name, kind, fn in sorted(CASES, key=lambda c: c[0] not in ISSUE_19):
            if args.k not in name:
                continue
            t = time.perf_counter()
            try:
                outcome = fn(ctx)
            except Exception as exc:  # noqa: BLE001 - a broken case is reported, not fatal
                outcome = Outcome(name, kind, detail=f"the case itself failed: {exc!r}")
            if outcome.name != name:  # a case reports under its registered name
                outcome.name = name
            outcome.seconds = time.perf_counter() - t
            outcome.detail = outcome.detail.replace(tmp, "<tmp>")
            log.info("%-40s %s", name, "ok" if outcome.handled else "NOT HANDLED")
            outcomes.append(outcome)
            write_json(args.out, outcomes, start, complete=False)  # a stopped run keeps these
    summary = summarise(outcomes)
    sys.stdout.write(table(outcomes) + "\n\n" + json.dumps(summary, indent=2) + "\n")
    write_json(args.out, outcomes, start, complete=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
