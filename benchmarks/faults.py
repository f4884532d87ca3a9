"""Fault benchmark (issue 8): bad input, damaged caches and interrupts, tried as a user would.

    python benchmarks/faults.py            # every case, about 17 minutes on 2 cores
    python benchmarks/faults.py -k cache   # only the cases whose name contains "cache"
    python benchmarks/faults.py --cases limit_0,sigkill_during_search --out /tmp/f.json
    python benchmarks/faults.py --list     # the cases' names

Every case is a small function that sets up a situation in a temporary folder and runs the
``evoprune`` command line in a subprocess (the harness of ``evoprune.testing``, shared with
``tests/integration/test_kill.py``), so a traceback shows up on stderr as it would for a user;
most cases are rows of a table given to one such function. Data: scikit-image's 200 real face /
non-face crops as two class folders (the same as the tests), one feature cache shared by every
case that does not damage it, and three reference runs (the faces, the faces with --limit 60,
and a two-objective run) that no case modifies.

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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from evoprune import testing
from evoprune.io import atomic_write_json
from evoprune.testing import (
    HUNG,
    MAIN,
    Moment,
    at_rows,
    command,
    differences,
    extracting,
    history_rows,
    kill_when,
    leftovers,
    resuming,
    run_args,
    single_thread_env,
    writing,
)

log = logging.getLogger("benchmarks.faults")
HERE = Path(__file__).resolve().parent
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
    """The shared workspace: data folders, the feature cache and the reference runs, and the
    case that runs now (its name and kind name its folders and its outcome)."""

    root: Path
    faces: Path = field(init=False)
    small: Path = field(init=False)
    cache: Path = field(init=False)
    ref: Path = field(init=False)  # faces, 12 evaluations, seed 1
    ref60: Path = field(init=False)  # the same with --limit 60
    multi: Path = field(init=False)  # the same with --objectives accuracy,size
    case: str = ""
    kind: str = ""

    def __post_init__(self) -> None:
        self.faces, self.small = self.root / "faces", self.root / "small"
        self.cache = self.root / "cache"
        self.ref, self.ref60, self.multi = (
            self.root / "refs" / n / "run" for n in ("ref", "ref60", "multi")
        )
        self._n = 0

    def fresh(self, name: str = "") -> Path:
        """A new empty folder for one case (named after it by default); its ``run`` subfolder
        lies at the same depth as the reference runs, so the data path stored relative to a
        results folder is the same."""
        self._n += 1
        path = self.root / "cases" / f"{self._n:02d}-{name or self.case}"
        path.mkdir(parents=True)
        return path

    def outcome(self, **fields) -> Outcome:
        """The outcome of the case that runs now."""
        return Outcome(self.case, self.kind, **fields)


# --- running the command line ------------------------------------------------------------------

#: ``evoprune args`` to its end (``evoprune.testing.cli``), killed after TIMEOUT s by default
cli = partial(testing.cli, timeout=TIMEOUT)


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


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def run_copy(ctx: Context, src: Path | None = None) -> Path:
    """A copy of a reference run at the reference's depth (its data path still resolves)."""
    return copy_run(src or ctx.ref, ctx.fresh() / "run")


def small_copy(ctx: Context) -> Path:
    data = ctx.fresh() / "data"
    shutil.copytree(ctx.small, data)
    return data


def edit_json(path: Path, **changes) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


# --- the cases ------------------------------------------------------------------------------------

CASES: list[tuple[str, str, Callable[[Context], Outcome]]] = []
#: The cases of issue 19, run first (a run stopped early has measured them).
ISSUE_19: set[str] = set()


def add_case(
    name: str, kind: str, fn: Callable[[Context], Outcome], *, issue_19: bool = True
) -> None:
    """Register a case (most are rows of a table given to one function)."""
    CASES.append((name, kind, fn))
    if issue_19:
        ISSUE_19.add(name)


def case(kind: str, *, issue_19: bool = False):
    """Register a function as the case of its name (a leading underscore dropped)."""

    def register(fn: Callable[[Context], Outcome]):
        add_case(fn.__name__.lstrip("_"), kind, fn, issue_19=issue_19)
        return fn

    return register


def expect_error(
    ctx: Context,
    args: Sequence,
    guard: Sequence[Path] = (),
    *,
    absent: Sequence[Path] = (),
    contains: str = "",
    timeout: float = 240,
    code: str = MAIN,
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
    return ctx.outcome(
        handled=ok,
        data_loss=bool(gone),
        detail=detail,
        hang=proc.returncode == HUNG,
        traceback="Traceback" in proc.stderr,
        silent_wrong=proc.returncode == 0,
    )


def expect_finished(
    ctx: Context, proc: subprocess.CompletedProcess, ok: bool, detail: str, **fields
) -> Outcome:
    """A command that should finish (with a warning): handled when ``ok`` and no traceback;
    ``detail`` then, else the tail of stderr."""
    tb = "Traceback" in proc.stderr
    return ctx.outcome(
        handled=ok and not tb,
        hang=proc.returncode == HUNG,
        traceback=tb,
        detail=detail if ok else f"exit {proc.returncode}: {proc.stderr[-800:]}",
        **fields,
    )


def on_finished_run(ctx: Context, option: str, value: str) -> Outcome:
    """``option value`` given to the finished reference run's command: refused, and the run
    untouched."""
    out = run_copy(ctx)
    args = set_option(run_args(ctx.faces, out, ctx.cache), option, value)
    return expect_error(ctx, args, guard=[out])


for _name, (_option, _value) in {
    "finished_run_population_1": ("--population", "1"),
    "finished_run_evaluations_minus_5": ("--evaluations", "-5"),
    "finished_run_init_1_5": ("--init", "1.5"),
    "finished_run_mutation_prob_2": ("--mutation-prob", "2"),
    "another_configuration_same_out": ("--evaluations", "14"),
    "another_limit_same_out": ("--limit", "100"),
}.items():
    add_case(
        _name, "bad_input", partial(on_finished_run, option=_option, value=_value), issue_19=False
    )


def on_small_data(ctx: Context, option: str, value: str) -> Outcome:
    """``option value`` given to a run on the small data set: refused before any work."""
    out = ctx.fresh() / "run"
    return expect_error(ctx, set_option(run_args(ctx.small, out, ctx.cache), option, value))


for _name, (_option, _value) in {
    "seed_minus_1": ("--seed", "-1"),
    "seed_2_pow_64": ("--seed", str(2**64)),
    "evaluations_0": ("--evaluations", "0"),
    "limit_0": ("--limit", "0"),
    "fold_3_without_partitions": ("--fold", "3"),
    "data_empty_string": ("--data", ""),
    "unknown_objective": ("--objectives", "accuracy,speed"),
    "ood_objective_without_ood": ("--objectives", "accuracy,ood"),
    "select_on_a_single_objective_run": ("--select", "knee"),
}.items():
    add_case(
        _name, "bad_input", partial(on_small_data, option=_option, value=_value), issue_19=False
    )


@case("bad_input")
def out_is_a_file(ctx):
    path = ctx.fresh() / "results.txt"
    path.write_text("my notes\n")
    return expect_error(ctx, run_args(ctx.small, path, ctx.cache), guard=[path.parent])


@case("bad_input")
def out_inside_a_class_folder(ctx):
    data = small_copy(ctx)
    return expect_error(ctx, run_args(data, data / "face" / "results", ctx.cache), guard=[data])


@case("bad_input")
def out_is_a_folder_of_foreign_files(ctx):
    out = ctx.fresh() / "mine"
    out.mkdir()
    (out / "history.csv").write_text("my own history\n")
    (out / "thesis.tex").write_text("\\documentclass{article}\n")
    return expect_error(ctx, run_args(ctx.small, out, ctx.cache), guard=[out])


@case("bad_input")
def out_under_a_regular_file(ctx):
    """A results folder that cannot be created (as with a read-only parent: root ignores
    permission bits, a file in the path cannot be worked around)."""
    base = ctx.fresh()
    (base / "file").write_text("x")
    return expect_error(ctx, run_args(ctx.small, base / "file" / "run", ctx.cache), guard=[base])


def damaged_cache(ctx: Context, damage: Callable[[Path], None]) -> Outcome:
    """Damage the --limit 60 run's cache file, run it again: a WARNING and the right result."""
    base = ctx.fresh()
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
        return ctx.outcome(detail=f"exit {proc.returncode}: {proc.stderr[-800:]}")
    diff = differences(out, ctx.ref60)
    return ctx.outcome(
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


for _name, _damage in {
    "cache_flipped_bytes": _flip_bytes,
    "cache_nan_with_a_matching_checksum": partial(_rewrite_npz, change=_nan, fix_checksum=True),
    "cache_zeroed_rows": partial(_rewrite_npz, change=_zeros),
    "cache_permuted_rows": partial(_rewrite_npz, change=_permute),
    "cache_truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
}.items():
    add_case(_name, "bad_input", partial(damaged_cache, damage=_damage), issue_19=False)


def on_damaged_data(ctx: Context, damage: Callable[[Path], None]) -> Outcome:
    """A run on a copy of the small data set that ``damage`` changed: refused cleanly."""
    data = small_copy(ctx)
    damage(data)
    return expect_error(ctx, run_args(data, data.parent / "run", ctx.cache))


def _loop_class_folder(data: Path) -> None:
    (data / "loop").symlink_to(data / "loop", target_is_directory=True)


def _loop_files(data: Path) -> None:
    (data / "face" / "a.png").symlink_to(data / "face" / "b.png")
    (data / "face" / "b.png").symlink_to(data / "face" / "a.png")


def _huge_png(data: Path) -> None:
    from PIL import Image

    Image.new("L", (7746, 7746), 128).save(data / "face" / "huge.png")


def _only_train(data: Path) -> None:
    (data / "train").mkdir()
    for cls in ("face", "not_face"):
        (data / cls).rename(data / "train" / cls)


for _name, _damage in {
    "symlink_loop_class_folder": _loop_class_folder,  # a class folder linked to itself
    "symlink_loop_file": _loop_files,
    "a_60_megapixel_png": _huge_png,
    "train_without_test": _only_train,
}.items():
    add_case(_name, "bad_input", partial(on_damaged_data, damage=_damage), issue_19=False)


@case("bad_input")
def symlink_to_the_parent_inside_a_class_folder(ctx):
    """A link back up the tree inside a class folder: a clean error, or ignored (class folders
    are not searched recursively), never a traceback or an endless walk."""
    data = small_copy(ctx)
    (data / "face" / "up").symlink_to(data, target_is_directory=True)
    proc = cli(*run_args(data, data.parent / "run", ctx.cache, evaluations=4, population=4))
    if proc.returncode == 0 and "Traceback" not in proc.stderr:
        return ctx.outcome(handled=True, detail="ignored: the run finished")
    ok, detail = clean_error(proc)
    return ctx.outcome(handled=ok, detail=detail)


@case("bad_input")
def class_folders_differ_in_case(ctx):
    """face / Face / not_face: a WARNING naming them, and the run goes on."""
    data = small_copy(ctx)
    (data / "Face").mkdir()
    for p in sorted((data / "face").iterdir())[:6]:
        p.rename(data / "Face" / p.name)
    proc = cli(*run_args(data, data.parent / "run", ctx.cache, evaluations=6, population=4))
    warned = [
        line for line in proc.stderr.splitlines() if line.startswith("WARNING") and "case" in line
    ]
    ok = proc.returncode == 0 and bool(warned)
    return expect_finished(ctx, proc, ok, warned[0] if ok else "")


def target_under_a_file(ctx: Context, command: str, tail: str) -> Outcome:
    """``predict --csv`` or ``export --out`` of the reference run into a path whose parent is
    a regular file (``tail`` "": the path is a folder): refused, the run untouched."""
    base = ctx.fresh()
    if tail:
        (base / "file").write_text("x")
        target = base / "file" / tail
    else:
        target = base / "folder"
        target.mkdir()
    if command == "predict":
        args = ["predict", ctx.ref, ctx.small / "face", "--csv", target, "--no-progress"]
    else:
        args = ["export", ctx.ref, "--out", target]
    return expect_error(ctx, args, guard=[ctx.ref])


for _name, (_command, _tail) in {
    "predict_csv_is_a_folder": ("predict", ""),
    "predict_csv_under_a_file": ("predict", "p.csv"),
    "export_out_under_a_file": ("export", "model.onnx"),
}.items():
    add_case(
        _name,
        "bad_input",
        partial(target_under_a_file, command=_command, tail=_tail),
        issue_19=False,
    )


@case("bad_input")
def swapped_head_files_export(ctx):
    out = run_copy(ctx)
    head, ref = out / "head.safetensors", out / "reference_head.safetensors"
    tmp = out / "swap"
    head.rename(tmp)
    ref.rename(head)
    tmp.rename(ref)
    return expect_error(ctx, ["export", out, "--out", out.parent / "model.onnx"], guard=[out])


@case("bad_input")
def csv_unclosed_quote(ctx):
    base = ctx.fresh()
    (base / "manifest").mkdir()
    rows = ["path,label"]
    for cls in ("face", "not_face"):
        rows += [f"{p},{cls}" for p in sorted((ctx.small / cls).iterdir())]
    rows[7] = f'"{rows[7]}'  # line 8 opens a quote that never closes
    (base / "manifest" / "data.csv").write_text("\n".join(rows) + "\n")
    out = expect_error(ctx, run_args(base / "manifest" / "data.csv", base / "run", ctx.cache))
    if out.handled and "line 8" not in out.detail:
        out.handled = False
        out.detail = "names the wrong line (expected line 8): " + out.detail
    return out


@case("bad_input")
def ensemble_members_over_the_front(ctx):
    out = run_copy(ctx, ctx.multi)
    front = len(json.loads((out / "result.json").read_text())["front"])
    args = ["ensemble", out, "--members", str(front + 5), "--cache-dir", ctx.cache]
    return expect_error(ctx, [*args, "--no-progress"], guard=[out])


@case("bad_input")
def ensemble_on_a_single_objective_run(ctx):
    args = ["ensemble", ctx.ref, "--cache-dir", ctx.cache, "--no-progress"]
    return expect_error(ctx, args, guard=[ctx.ref])


# --- issue 19: every command guards its folder, values checked on read, no hangs -------------

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
        f"finished_run_{_name}", "bad_input", partial(on_finished_run, option=_option, value=_value)
    )


def late_check(ctx: Context, extra: tuple[str, ...], env_extra: dict | None = None) -> Outcome:
    """A check that used to come after config.json and history.csv were written: now no
    folder."""
    out = ctx.fresh() / "run"
    args = run_args(ctx.small, out, ctx.cache, *extra, evaluations=6, population=4)
    return expect_error(ctx, args, absent=[out], extra_env=env_extra)


for _name, _extra in {
    "cv_folds_50": ("--fitness-split", "cv", "--cv-folds", "50"),
    "test_fraction_0_99": ("--test-fraction", "0.99"),
    "limit_3": ("--limit", "3"),
    "final_check_folds_50": ("--final-check", "cv", "--final-check-folds", "50"),
    "ray_address_nowhere": ("--ray-address", "nowhere.invalid:1"),
}.items():
    add_case(f"late_{_name}", "bad_input", partial(late_check, extra=_extra))
add_case(
    "late_ray_address_env",
    "bad_input",
    partial(late_check, extra=("--workers", "2"), env_extra={"RAY_ADDRESS": "nowhere.invalid:1"}),
)


@case("bad_input", issue_19=True)
def late_class_of_2_images(ctx):
    data = small_copy(ctx)
    for p in sorted((data / "not_face").iterdir())[2:]:
        p.unlink()
    out = data.parent / "run"
    args = run_args(data, out, ctx.cache, evaluations=6, population=4)
    return expect_error(ctx, args, absent=[out], guard=[data])


def user_file_in_run(ctx: Context, rel: str, overwrite: bool) -> Outcome:
    """A user's file in a results folder, whatever its name: refused, never deleted or moved."""
    out = run_copy(ctx)
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    (out / rel).write_text("the user's own words\n")
    args = run_args(ctx.faces, out, ctx.cache, *(["--overwrite"] if overwrite else []))
    if overwrite:
        args = set_option(args, "--evaluations", "14")
    return expect_error(ctx, args, guard=[out], absent=[out.with_name("run.old-1")], contains=rel)


for _name, _rel in {
    "user_dot_tmp": ".thesis-draft.tmp",
    "user_model_json": "model-notes.json",
    "user_ensemble_onnx": "ensemble_ideas.onnx",
    "user_file_in_analysis": "analysis/notes.md",
    "user_file_in_front": "front/mine.txt",
    "user_confusion_copy": "confusion (1).png",
}.items():
    for _ow in (False, True):
        add_case(
            f"{_name}{'_overwrite' if _ow else ''}",
            "bad_input",
            partial(user_file_in_run, rel=_rel, overwrite=_ow),
        )


def damaged_config(ctx: Context, text: str | None) -> Outcome:
    """config.json deleted (None) or replaced by ``text``: refused, naming it."""
    out = run_copy(ctx)
    if text is None:
        (out / "config.json").unlink()
    else:
        (out / "config.json").write_text(text)
    args = set_option(run_args(ctx.faces, out, ctx.cache), "--evaluations", "14")
    return expect_error(ctx, args, guard=[out], contains="config.json")


for _what, _text in {
    "missing_other_settings": None,
    "cut": '{"run": {"data": ',
    "run_null": '{"run": null}',
    "a_list": "[1, 2]",
    "empty": "",
}.items():
    add_case(f"config_{_what}", "bad_input", partial(damaged_config, text=_text))


def damaged_manifest(ctx: Context, text: str | None) -> Outcome:
    """The folder's manifest deleted (None) or replaced by ``text``: --overwrite refused."""
    out = run_copy(ctx)
    manifest = out / ".evoprune-manifest.json"
    if text is None:
        manifest.unlink()
    else:
        manifest.write_text(text)
    args = run_args(ctx.faces, out, ctx.cache, "--overwrite")
    return expect_error(ctx, set_option(args, "--evaluations", "14"), guard=[out])


for _what, _text in {"missing": None, "damaged": "{not json", "wrong_type": '{"files": 3}'}.items():
    add_case(f"manifest_{_what}", "bad_input", partial(damaged_manifest, text=_text))


@case("bad_input", issue_19=True)
def overwrite_the_current_folder(ctx):
    out = run_copy(ctx)
    args = set_option(run_args(ctx.faces, ".", ctx.cache, "--overwrite"), "--evaluations", "14")
    args = set_option(args, "--data", os.path.relpath(ctx.faces, out))
    code = f"import os; os.chdir({str(out)!r}); " + MAIN
    return expect_error(ctx, args, guard=[out], code=code)


#: Python run in the subprocess before the command: an OSError injected where it happens.
_INJECT = (
    "import errno, os, pathlib, sys\n"
    "from evoprune.runs import store\n"
    "import evoprune.runs.store.history, evoprune.runs.store.writer\n"
    "{patch}\n" + MAIN.replace("; ", "\n")
)


@case("bad_input", issue_19=True)
def overwrite_read_only_parent(ctx):
    out = run_copy(ctx)
    patch = (
        "def ro(self, target):\n"
        "    raise OSError(errno.EROFS, 'Read-only file system')\n"
        "pathlib.Path.rename = ro"
    )
    args = set_option(run_args(ctx.faces, out, ctx.cache, "--overwrite"), "--evaluations", "14")
    return expect_error(
        ctx, args, guard=[out], code=_INJECT.format(patch=patch), contains="read-only"
    )


@case("bad_input", issue_19=True)
def disk_full_during_search(ctx):
    """ENOSPC after 5 history rows: one message, the rows kept, the rerun identical."""
    out = ctx.fresh() / "run"
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
    first = expect_error(ctx, args, code=_INJECT.format(patch=patch), contains="disk is full")
    rows = history_rows(out)
    proc = cli(*args)
    diff = differences(out, ctx.ref) if proc.returncode == 0 else ["rerun failed"]
    first.handled = first.handled and rows == 5 and not diff
    first.silent_wrong = first.silent_wrong or (proc.returncode == 0 and bool(diff))
    first.detail += f"; {rows} rows kept; rerun " + (", ".join(diff) or "identical")
    return first


@case("bad_input", issue_19=True)
def read_only_at_the_final_write(ctx):
    out = ctx.fresh() / "run"
    patch = (  # wherever the store's modules call it
        "def ro(*a, **k):\n"
        "    raise OSError(errno.EROFS, 'Read-only file system')\n"
        "store.history.write_history = store.writer.write_history = ro"
    )
    return expect_error(ctx, run_args(ctx.faces, out, ctx.cache), code=_INJECT.format(patch=patch))


@case("bad_input", issue_19=True)
def second_writer_at_once(ctx):
    """Another evoprune holds the folder (its lock): a second --overwrite run is refused."""
    out = run_copy(ctx)
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
            args,
            guard=[out],
            absent=[out.with_name("run.old-1")],
            contains="another evoprune command",
        )
    finally:
        holder.kill()
        holder.wait()


@case("bad_input", issue_19=True)
def two_overwrite_runs_at_once(ctx):
    """Two --overwrite runs with other settings started together: at most one claims success,
    and the folder holds the run that did."""
    out = run_copy(ctx)
    procs = [
        subprocess.Popen(
            command(
                set_option(
                    run_args(ctx.faces, out, ctx.cache, "--overwrite"), "--evaluations", str(e)
                )
            ),
            env=single_thread_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
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
    return ctx.outcome(
        handled=handled,
        silent_wrong=len(ok_runs) > 1,
        traceback=tb,
        detail=f"exits {codes}; the folder holds the run of {evaluations} evaluations",
    )


# --- compare --out -------------------------------------------------------------------------------


def compare_args(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "compare", "--data", str(data), "--encodings", "fs", "--runs", "1", "--population",
        "6", "--evaluations", "12", "--seed-base", "1", "--out", str(out), "--cache-dir",
        str(cache), "--no-progress", *extra,
    ]  # fmt: skip


@case("bad_input", issue_19=True)
def compare_user_files(ctx):
    out = ctx.fresh() / "mine"
    out.mkdir()
    (out / "summary.csv").write_text("my table\n")
    (out / "table.md").write_text("# mine\n")
    return expect_error(ctx, compare_args(ctx.small, out, ctx.cache), guard=[out])


@case("bad_input", issue_19=True)
def compare_in_data(ctx):
    data = small_copy(ctx)
    out = data / "results"
    return expect_error(ctx, compare_args(data, out, ctx.cache), guard=[data], absent=[out])


def csv_of_images(data: Path) -> Path:
    """A CSV manifest beside ``data`` listing its images."""
    csv_file = data.parent / "list.csv"
    rows = [f"{p},{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    csv_file.write_text("path,label\n" + "\n".join(rows) + "\n")
    return csv_file


def out_inside_csv_images(ctx: Context, make_args: Callable[..., list[str]]) -> Outcome:
    """``--out`` among the images that a CSV manifest lists: refused, nothing written."""
    data = small_copy(ctx)
    out = data / "face" / "results"
    args = make_args(csv_of_images(data), out, ctx.cache)
    return expect_error(ctx, args, guard=[data], absent=[out])


add_case(
    "compare_in_csv_images", "bad_input", partial(out_inside_csv_images, make_args=compare_args)
)


@case("bad_input", issue_19=True)
def compare_refused_run(ctx):
    """A run folder of other settings inside the comparison: refused before comparison.json
    is rewritten, and the message never advises --overwrite (compare rejects it)."""
    out = ctx.fresh() / "cmp"
    proc = cli(*compare_args(ctx.small, out, ctx.cache))
    if proc.returncode != 0:
        return ctx.outcome(detail=proc.stderr[-400:])
    args = set_option(compare_args(ctx.small, out, ctx.cache), "--evaluations", "10")
    args = set_option(args, "--population", "5")
    (out / "comparison.json").write_bytes((out / "comparison.json").read_bytes())
    outcome = expect_error(ctx, args, guard=[out])
    if "--overwrite" in outcome.detail:
        outcome.handled = False
        outcome.detail += " (advises --overwrite, which compare rejects)"
    return outcome


@case("bad_input", issue_19=True)
def compare_out_file(ctx):
    path = ctx.fresh() / "notes.txt"
    path.write_text("mine\n")
    return expect_error(ctx, compare_args(ctx.small, path, ctx.cache), guard=[path.parent])


@case("bad_input", issue_19=True)
def compare_read_only(ctx):
    out = ctx.fresh() / "cmp"
    patch = (
        "import evoprune.io as io\n"
        "def ro(*a, **k):\n"
        "    raise OSError(errno.EROFS, 'Read-only file system')\n"
        "io._replace = ro"
    )
    args = compare_args(ctx.small, out, ctx.cache)
    return expect_error(ctx, args, code=_INJECT.format(patch=patch))


# --- files of other commands, data and special files ------------------------------------------


def onto_a_run_file(ctx: Context, command: str, target_name: str) -> Outcome:
    """``predict --csv`` or ``export --out`` aimed at a file of the run: refused, untouched."""
    out = run_copy(ctx)
    if command == "predict":
        args = ["predict", out, ctx.small / "face", "--csv", out / target_name, "--no-progress"]
    else:
        args = ["export", out, "--out", out / target_name]
    return expect_error(ctx, args, guard=[out])


for _target in ("result.json", "config.json", "history.csv", "head.safetensors"):
    add_case(
        f"predict_csv_onto_{_target.replace('.', '_')}",
        "bad_input",
        partial(onto_a_run_file, command="predict", target_name=_target),
    )
for _target in ("head.safetensors", "result.json", "reference_head.safetensors"):
    add_case(
        f"export_onto_{_target.replace('.', '_')}",
        "bad_input",
        partial(onto_a_run_file, command="export", target_name=_target),
    )


def ensemble_keeps_json(ctx: Context, extra: tuple[str, ...]) -> Outcome:
    """A second ensemble command that must fail leaves the first one's files as they were."""
    out = run_copy(ctx, ctx.multi)
    first = cli("ensemble", out, "--members", "1", "--cache-dir", ctx.cache, "--no-progress")
    if first.returncode != 0:
        return ctx.outcome(detail=first.stderr[-400:])
    (out.parent / "blocker").write_text("x")
    args = ["ensemble", out, "--cache-dir", ctx.cache, "--no-progress", *extra]
    args = [a.replace("BLOCKER", str(out.parent / "blocker")) for a in map(str, args)]
    return expect_error(ctx, args, guard=[out])


add_case(
    "ensemble_hard_vote_export",
    "bad_input",
    partial(ensemble_keeps_json, extra=("--vote", "hard", "--export", "x.onnx")),
)
add_case(
    "ensemble_export_unwritable",
    "bad_input",
    partial(ensemble_keeps_json, extra=("--export", "BLOCKER/e.onnx")),
)


@case("bad_input", issue_19=True)
def predict_csv_in_data(ctx):
    """--csv inside the run's training images (a CSV beside the images being predicted, which
    are not a run's data, is the user's choice and allowed)."""
    target = ctx.faces / "face" / "predictions.csv"
    args = ["predict", ctx.ref, ctx.small / "face", "--csv", target, "--no-progress"]
    return expect_error(ctx, args, absent=[target])


@case("bad_input", issue_19=True)
def export_in_data(ctx):
    out = run_copy(ctx)
    target = ctx.faces / "face" / "model.onnx"
    return expect_error(ctx, ["export", out, "--out", target], absent=[target])


add_case("csv_manifest_out", "bad_input", partial(out_inside_csv_images, make_args=run_args))


@case("bad_input", issue_19=True)
def analyze_user_file(ctx):
    out = run_copy(ctx)
    (out / "analysis").mkdir()
    (out / "analysis" / "cka.csv").write_text("my own table\n")
    return expect_error(ctx, ["analyze", out, "--no-progress"], guard=[out])


# --- values checked on read ---------------------------------------------------------------------


def history_value(ctx: Context, field_name: str, value: str) -> Outcome:
    """One cell of an interrupted run's history.csv changed: the resumed run refuses it."""
    out = run_copy(ctx)
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
    return expect_error(ctx, run_args(ctx.faces, out, ctx.cache), guard=[out])


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
    add_case(_n, "bad_input", partial(history_value, field_name=_f, value=_v))


def analyze_history(ctx: Context, data: bytes) -> Outcome:
    out = run_copy(ctx)
    (out / "history.csv").write_bytes(data)
    args = ["analyze", out, "--no-heatmaps", "--no-progress", "--cache-dir", ctx.cache]
    return expect_error(ctx, args)


for _what, _data in (
    ("garbage", b"\x00\xff\xfe\x00 garbage"),
    ("cut_in_the_middle", b"index,iteration,fitness\n1,0\n2,0,0.5\n"),
    ("no_header", b""),
):
    add_case(f"analyze_history_{_what}", "bad_input", partial(analyze_history, data=_data))


def result_value(ctx: Context, field_name: str, value) -> Outcome:
    """One field of result.json changed: ``show`` refuses it, the run untouched."""
    out = run_copy(ctx, ctx.multi if field_name == "front" else None)
    edit_json(out / "result.json", **{field_name: value})
    return expect_error(ctx, ["show", out], guard=[out])


add_case(
    "show_null_accuracy",
    "bad_input",
    partial(result_value, field_name="test_accuracy", value=None),
    issue_19=False,
)
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
    add_case(f"result_{_f}_{_t}", "bad_input", partial(result_value, field_name=_f, value=_v))


@case("bad_input", issue_19=True)
def result_fitness_infinity(ctx):
    out = run_copy(ctx)
    text = (out / "result.json").read_text()
    fitness = json.loads(text)["fitness"]
    (out / "result.json").write_text(
        text.replace(f'"fitness": {json.dumps(fitness)}', '"fitness": Infinity')
    )
    return expect_error(ctx, ["show", out], guard=[out])


def config_run_null(ctx: Context, command: str) -> Outcome:
    out = run_copy(ctx)
    edit_json(out / "config.json", run=None)
    extra = ["--no-progress"] if command in ("analyze", "ensemble") else []
    return expect_error(ctx, [command, out, *extra])


for _command in ("show", "export", "analyze"):
    add_case(f"config_run_null_{_command}", "bad_input", partial(config_run_null, command=_command))


def saved_config_value(ctx: Context, key: str, value, trainer: bool) -> Outcome:
    """A value of config.json that cannot fit memory or time: ``analyze`` refuses it."""
    out = run_copy(ctx)
    doc = json.loads((out / "config.json").read_text())
    (doc["trainer_settings"] if trainer else doc["run"])[key] = value
    (out / "config.json").write_text(json.dumps(doc))
    args = ["analyze", out, "--no-progress", "--cache-dir", ctx.cache, "--remove-each-class"]
    return expect_error(ctx, args, timeout=180)


for _k, _v, _tr in (
    ("population", 10**9, False),
    ("hidden_size", 10**8, False),
    ("evaluations", 10**12, False),
    ("max_epochs", 10**9, True),
    ("early_stop_patience", 10**9, True),
    ("lr", "fast", True),
):
    add_case(
        f"saved_config_{_k}_{_v}",
        "bad_input",
        partial(saved_config_value, key=_k, value=_v, trainer=_tr),
    )


def damaged_head(ctx: Context, damage: str, command: str) -> Outcome:
    """head.safetensors with NaN, integer, infinite or flattened weights: ``export`` and
    ``predict`` refuse it and write nothing."""
    from safetensors.torch import load_file, save_file

    out = run_copy(ctx)
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
    return expect_error(ctx, args, absent=[target])


for _damage in ("nan", "int", "inf", "1d"):
    for _command in ("export", "predict"):
        add_case(
            f"head_{_damage}_{_command}",
            "bad_input",
            partial(damaged_head, damage=_damage, command=_command),
        )


# --- special files and leaks --------------------------------------------------------------------


def special_in_class(ctx: Context, kind: str, skip: bool) -> Outcome:
    """A FIFO, a socket or a device among a class's images: skipped with a warning naming it."""
    import socket

    data = small_copy(ctx)
    path = data / "face" / "zz.png"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
    else:
        path.symlink_to("/dev/zero")
    extra = ("--skip-bad-images",) if skip else ()
    args = run_args(data, data.parent / "run", ctx.cache, *extra, evaluations=4, population=4)
    proc = cli(*args, timeout=180)
    ok = proc.returncode == 0 and "zz.png" in proc.stderr
    return expect_finished(ctx, proc, ok, "skipped with a warning")


for _kind in ("fifo", "socket", "device"):
    for _skip in (False, True):
        add_case(
            f"{_kind}_in_a_class_folder{'_skip_bad' if _skip else ''}",
            "bad_input",
            partial(special_in_class, kind=_kind, skip=_skip),
        )


@case("bad_input", issue_19=True)
def fifo_given_to_predict(ctx):
    fifo = ctx.fresh() / "x.png"
    os.mkfifo(fifo)
    proc = cli("predict", ctx.ref, fifo, ctx.small / "face", "--no-progress", timeout=180)
    ok = proc.returncode == 0 and "not a regular file" in proc.stderr
    return expect_finished(ctx, proc, ok, "skipped with a warning")


@case("bad_input", issue_19=True)
def predict_csv_is_a_fifo(ctx):
    fifo = ctx.fresh() / "p.csv"
    os.mkfifo(fifo)
    args = ["predict", ctx.ref, ctx.small / "face", "--csv", fifo, "--no-progress"]
    return expect_error(ctx, args, timeout=180)


def leak(ctx: Context, how: str) -> Outcome:
    """Held-out images that are copies of (or links to) training images: reported."""
    base = ctx.fresh()
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
    return expect_finished(ctx, proc, ok, "reported", silent_wrong=proc.returncode == 0 and not ok)


for _how in ("copy", "symlink", "hardlink"):
    add_case(f"test_images_that_are_training_images_{_how}", "bad_input", partial(leak, how=_how))


@case("bad_input", issue_19=True)
def ood_overlapping_the_data(ctx):
    base = ctx.fresh()
    ood = base / "ood"
    ood.mkdir()
    for p in sorted((ctx.small / "face").iterdir())[:6]:
        shutil.copy(p, ood / p.name)
    out = base / "run"
    args = run_args(ctx.small, out, ctx.cache, "--objectives", "accuracy,size,ood", "--ood", ood)
    return expect_error(ctx, args, absent=[out], contains="--ood")


# --- interrupts -----------------------------------------------------------------------------------


def interrupted(
    ctx: Context,
    moments: Sequence[tuple[Moment, int]],
    ref: Path | None = None,
    extra: tuple[str, ...] = (),
    cache: Path | None = None,
) -> Outcome:
    """Start the reference's command and interrupt it at each of ``moments`` in turn (each a
    rerun of the same command), then run it to completion and compare with ``ref``."""
    ref = ref or ctx.ref
    base = ctx.fresh()
    out = base / "run"
    args = run_args(ctx.faces, out, cache or ctx.cache, *extra)
    notes, rows_before, loss = [], 0, []
    for i, (moment, sig) in enumerate(moments):
        status = kill_when(args, out, moment, sig, base / f"try{i}.log", timeout=TIMEOUT)
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
        rerun = f"rerun exit {proc.returncode}: {proc.stderr[-600:]}"
        return ctx.outcome(data_loss=bool(loss), detail="; ".join([*notes, *loss, rerun]))
    diff, temps = differences(out, ref), leftovers(out)
    notes += [f"rerun differs: {', '.join(diff)}" if diff else "rerun identical"]
    if temps:
        notes.append(f"temporary files left: {', '.join(temps)}")
    return ctx.outcome(
        handled=not diff and not temps and not loss,
        data_loss=bool(loss),
        wrong_result=bool(diff),
        detail="; ".join(notes + loss),
    )


for _name, _moments in {
    "sigint_during_search": [(at_rows(5), signal.SIGINT)],
    "sigterm_during_search": [(at_rows(7), signal.SIGTERM)],
    "sigkill_during_search": [(at_rows(4), signal.SIGKILL)],
    "sigkill_during_final_writing": [(writing, signal.SIGKILL)],
    "sigint_during_a_resumed_replay": [(at_rows(8), signal.SIGKILL), (resuming, signal.SIGINT)],
    "sigkill_twice_in_the_search": [(at_rows(3), signal.SIGKILL), (at_rows(9), signal.SIGKILL)],
}.items():
    add_case(_name, "interrupt", partial(interrupted, moments=_moments), issue_19=False)


@case("interrupt")
def sigkill_during_feature_extraction(ctx):
    """A fresh cache, killed while the --limit 60 run extracts its features."""
    cache = ctx.fresh("empty_cache")
    moments = [(extracting(0.5), signal.SIGKILL)]
    return interrupted(ctx, moments, ref=ctx.ref60, extra=("--limit", "60"), cache=cache)


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


def selected(k: str, names: str) -> list[tuple[str, str, Callable[[Context], Outcome]]]:
    """The registered cases to run, those of issue 19 first: the names containing ``k``, and
    only those of ``names`` (comma-separated) when given."""
    chosen = [c for c in sorted(CASES, key=lambda c: c[0] not in ISSUE_19) if k in c[0]]
    if names:
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {c[0] for c in CASES})
        if unknown:
            raise SystemExit(f"unknown case(s) {', '.join(unknown)}: see --list")
        chosen = [c for c in chosen if c[0] in wanted]
    return chosen


def run_case(ctx: Context, name: str, kind: str, fn: Callable[[Context], Outcome]) -> Outcome:
    """One case's outcome (a case that fails itself is reported, not fatal), under its name."""
    ctx.case, ctx.kind = name, kind
    t = time.perf_counter()
    try:
        outcome = fn(ctx)
    except Exception as exc:  # noqa: BLE001 - a broken case is reported, not fatal
        outcome = Outcome(name, kind, detail=f"the case itself failed: {exc!r}")
    outcome.name = name
    outcome.seconds = time.perf_counter() - t
    outcome.detail = outcome.detail.replace(str(ctx.root), "<tmp>")
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only the cases whose name contains this")
    parser.add_argument("--cases", default="", help="only these cases (names, comma-separated)")
    parser.add_argument("--list", action="store_true", help="print the cases' names and stop")
    parser.add_argument("--out", default=str(HERE / "faults.json"), help="JSON file to write")
    args = parser.parse_args(argv)
    cases = selected(args.k, args.cases)
    if args.list:
        sys.stdout.write("".join(f"{name}  ({kind})\n" for name, kind, _ in cases))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="evoprune-faults-") as tmp:
        ctx = Context(Path(tmp))
        log.info("preparing the data, the feature cache and three reference runs")
        prepare(ctx)
        outcomes = []
        for name, kind, fn in cases:
            outcome = run_case(ctx, name, kind, fn)
            log.info("%-40s %s", name, "ok" if outcome.handled else "NOT HANDLED")
            outcomes.append(outcome)
            write_json(args.out, outcomes, start, complete=False)  # a stopped run keeps these
    summary = summarise(outcomes)
    sys.stdout.write(table(outcomes) + "\n\n" + json.dumps(summary, indent=2) + "\n")
    write_json(args.out, outcomes, start, complete=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
