"""Atomic file writes: a reader (or a crash) never sees a half-written result or cache file."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from evoprune.errors import ConfigError, EvoPruneError


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    Inside a folder this process holds (:meth:`OutputFolder.claim`) the file is first listed
    in the folder's manifest.
    """
    holder = holder_of(path)
    if holder is not None:
        holder.record(path)
        return _replace(path, write)
    folder = manifest_folder(path)
    if folder is not None:  # an evoprune folder written through the API: held for this write
        with OutputFolder(folder, "evoprune").claim(recheck=False) as held:
            held.record(path)
            return _replace(path, write)
    return _replace(path, write)


def manifest_folder(path: str | Path) -> Path | None:
    """The nearest folder above ``path`` that holds an evoprune manifest, else None."""
    for parent in Path(os.path.abspath(path)).parents:
        if (parent / MANIFEST_FILE).is_file():
            return parent
    return None


def _replace(path: str | Path, write: Callable[[Path], object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; results are ordinary files
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, data) -> Path:
    """Strict JSON (no NaN or Infinity, which strict parsers reject): a non-finite number is a
    ValueError naming the file before anything is written."""
    try:
        text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:
        raise ValueError(f"{path}: refusing to write a NaN or infinite number as JSON") from None
    return atomic_write_text(path, text + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> bytes:
    """The sha256 digest of a file's bytes, read in chunks (``hashlib.file_digest`` needs
    Python 3.11)."""
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read forever
        raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)", str(path))
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.digest()


# --- the folder guard ------------------------------------------------------------------------
#
# Every folder evoprune writes holds a manifest (MANIFEST_FILE) listing the files it wrote there
# and which command wrote each. A file that is not listed belongs to the user: a folder holding
# one is never written into, moved or cleaned. A command first checks the folder (no write),
# then claims it: creates it, takes an exclusive non-blocking lock (a second writer is refused)
# and checks it again under the lock. Every atomic write inside a claimed folder is listed in
# its manifest before the file is written, so even a killed write's temporary file is known.

#: The manifest of an evoprune folder: ``{"evoprune_manifest": 1, "files": {path: command}}``.
MANIFEST_FILE = ".evoprune-manifest.json"
MANIFEST_VERSION = 1
# mkstemp(prefix=".NAME.", suffix=".tmp") names: ".NAME." + 8 random characters + ".tmp"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")


def temporary_of(name: str) -> str | None:
    """The file name whose atomic write left the temporary file ``name``, else None."""
    match = _TEMPORARY.match(name)
    return match.group("name") if match else None


def read_manifest(folder: str | Path) -> dict[str, str] | None:
    """The files an evoprune folder lists as its own (relative POSIX path -> command), None
    when it has no manifest; EvoPruneError naming the file when the manifest is damaged."""
    path = Path(folder) / MANIFEST_FILE
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EvoPruneError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise EvoPruneError(
            f"{path} is not a regular file; the folder {folder} is damaged: give another folder"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvoPruneError(
            f"{path} (the list of files evoprune wrote there) is damaged ({exc}); the folder "
            f"cannot be written safely: give another folder"
        ) from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if (
        not isinstance(files, dict)
        or doc.get("evoprune_manifest") != MANIFEST_VERSION
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    ):
        raise EvoPruneError(
            f"{path}: 'files' is not a mapping of file names to commands; the folder cannot "
            f"be written safely: give another folder"
        )
    return dict(files)


def foreign_files(folder: str | Path) -> list[str]:
    """The entries under ``folder`` that evoprune did not write: not listed in the manifest of
    the folder (or of the nearest evoprune folder inside it), not a temporary file of a listed
    one, or not a regular file at all (links, FIFOs, devices). Sorted relative paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found: list[str] = []

    def walk(directory: Path, base: Path, listed: dict[str, str]) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            found.append(str(directory.relative_to(folder)) or ".")
            return
        for entry in entries:
            full = Path(entry.path)
            rel = full.relative_to(base).as_posix()
            shown = full.relative_to(folder).as_posix()
            if entry.is_dir(follow_symlinks=False):
                own = read_manifest(full)
                if own is not None:  # a nested evoprune folder (a comparison's runs)
                    walk(full, full, own)
                else:
                    walk(full, base, listed)
                continue
            if directory == base and entry.name == MANIFEST_FILE:
                continue
            if not entry.is_file(follow_symlinks=False):
                found.append(shown)  # a link, FIFO, socket or device
                continue
            if rel in listed:
                continue
            original = temporary_of(entry.name)
            if original is not None:
                parent = full.parent.relative_to(base).as_posix()
                target = original if parent == "." else f"{parent}/{original}"
                if target in listed or (directory == base and original == MANIFEST_FILE):
                    continue
            found.append(shown)

    walk(folder, folder, read_manifest(folder) or {})
    return found


def inside(path: str | Path, roots: Sequence[str | Path]) -> Path | None:
    """The first of ``roots`` that ``path`` is (or is inside), links resolved; else None."""
    resolved = Path(os.path.realpath(path))
    for root in roots:
        r = Path(os.path.realpath(root))
        if resolved == r or r in resolved.parents:
            return r
    return None


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


class FolderBusy(EvoPruneError):
    """Another process holds the folder's lock."""


class OutputFolder:
    """A folder that one command writes (``command``: "run", "compare", "analyze"...).

    :meth:`check` writes nothing; :meth:`claim` (a context manager) creates the folder, locks
    it and lists every atomic write inside it in its manifest.
    """

    def __init__(self, path: str | Path, command: str, option: str = "--out"):
        self.path = Path(path)
        self.command = command
        self.option = option
        self._fd: int | None = None
        self._moved_fds: list[int | None] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OutputFolder({str(self.path)!r}, {self.command!r})"

    def check(self, data_roots: Sequence[str | Path] = ()) -> None:
        """Refuse, before any work, a folder that cannot be written safely: a file, one under a
        file, inside the data, or holding files that evoprune did not write."""
        out, option = self.path, self.option
        if os.path.lexists(out) and not out.is_dir():
            raise ConfigError(f"{option} {out} is a file, not a folder; give {option} a new folder")
        for parent in out.parents:
            if os.path.lexists(parent) and not parent.is_dir():
                raise ConfigError(
                    f"{option} {out} cannot be made: {parent} is a file; give {option} a "
                    "path inside a folder"
                )
        root = inside(out, data_roots)
        if root is not None:
            raise ConfigError(
                f"{option} {out} is inside the data folder {root}; results there would "
                f"become images or classes of the next run: give {option} a folder outside the data"
            )
        foreign = foreign_files(out)
        if foreign:
            raise ConfigError(
                f"{option} {out} holds files that evoprune did not write ({_listing(foreign)}); "
                f"they are never overwritten or moved: give {option} a new or empty folder"
            )

    def listed(self) -> dict[str, str]:
        """The manifest's files (empty when the folder or its manifest does not exist)."""
        return (read_manifest(self.path) or {}) if self.path.is_dir() else {}

    @contextmanager
    def claim(self, recheck: bool = True) -> Iterator[OutputFolder]:
        """Create and lock the folder for this process; a second writer (this process or
        another) is refused with a message naming the folder. Re-entrant for a folder that this
        process already holds."""
        if self.path.is_dir():
            here = self.path.resolve()
            for held in _CLAIMS:
                if held.path.resolve() == here:
                    yield held
                    return
        with writing_folder(self.path, self.option):
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise FolderBusy(
                    f"{self.option} {self.path} is being written by another evoprune command "
                    "right now; wait for it to finish, or give "
                    f"{self.option} another folder"
                ) from None
            if recheck:  # the folder may have changed between the check and the lock
                foreign = foreign_files(self.path)
                if foreign:
                    raise ConfigError(
                        f"{self.option} {self.path} holds files that evoprune did not write "
                        f"({_listing(foreign)}); give {self.option} a new or empty folder"
                    )
            self._fd = fd
            _CLAIMS.append(self)
            try:
                yield self
            finally:
                _CLAIMS.remove(self)
                for other in [self._fd, *self._moved_fds]:
                    if other is not None and other != fd:
                        os.close(other)
                self._fd, self._moved_fds = None, []
        finally:
            os.close(fd)

    def move_aside(self) -> Path:
        """Rename the held folder to ``NAME.old-N`` (never deleting it) and hold a new, empty
        folder at its path; the lock never lapses in between."""
        out = self.path
        if inside(os.getcwd(), [out]) is not None:
            raise ConfigError(
                f"{self.option} {out} is the current folder (or holds it): --overwrite cannot "
                f"move it aside; give {self.option} another folder"
            )
        n = 1
        while os.path.lexists(target := out.with_name(f"{out.name}.old-{n}")):
            n += 1
        with writing_folder(out, self.option):
            out.rename(target)
            out.mkdir()
            fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise FolderBusy(
                f"{self.option} {out} is being written by another evoprune command right now; "
                f"wait for it to finish, or give {self.option} another folder"
            ) from None
        old, self._fd = self._fd, fd
        self._moved_fds.append(old)
        return target

    def record(self, path: str | Path) -> None:
        """List ``path`` (inside this folder) in the manifest of the nearest evoprune folder
        that holds it, before it is written."""
        path = Path(os.path.abspath(path))
        top = Path(os.path.abspath(self.path))
        manifest_dir = top
        for parent in path.parents:
            if parent == top or top not in parent.parents:
                break
            if (parent / MANIFEST_FILE).is_file():
                manifest_dir = parent
                break
        rel = path.relative_to(manifest_dir).as_posix()
        with self._lock:
            files = read_manifest(manifest_dir) or {}
            if files.get(rel) == self.command:
                return
            files[rel] = self.command
            doc = {"evoprune_manifest": MANIFEST_VERSION, "files": dict(sorted(files.items()))}
            text = json.dumps(doc, indent=1) + "\n"
            _replace(manifest_dir / MANIFEST_FILE, lambda tmp: tmp.write_text(text, "utf-8"))

    def forget(self, names: Sequence[str]) -> None:
        """Drop ``names`` (removed files) from the manifest."""
        with self._lock:
            files = read_manifest(self.path) or {}
            if not any(n in files for n in names):
                return
            for n in names:
                files.pop(n, None)
            doc = {"evoprune_manifest": MANIFEST_VERSION, "files": dict(sorted(files.items()))}
            text = json.dumps(doc, indent=1) + "\n"
            _replace(self.path / MANIFEST_FILE, lambda tmp: tmp.write_text(text, "utf-8"))


#: The errors of writing: no space, read-only, over quota, not permitted.
WRITE_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM)

#: The folders this process holds (innermost last).
_CLAIMS: list[OutputFolder] = []


def holder_of(path: str | Path) -> OutputFolder | None:
    """The innermost folder this process holds that contains ``path``."""
    target = Path(os.path.abspath(path))
    best: OutputFolder | None = None
    for held in _CLAIMS:
        top = Path(os.path.abspath(held.path))
        if top in target.parents and (
            best is None or len(top.parts) > len(Path(os.path.abspath(best.path)).parts)
        ):
            best = held
    return best


@contextmanager
def writing_folder(
    path: str | Path, option: str = "--out", only: Sequence[int] | None = None
) -> Iterator[None]:
    """An OSError while writing ``path`` (read-only, disk full...) as one message; with
    ``only``, just the errors of those numbers (others, such as reading an image, pass)."""
    try:
        yield
    except OSError as exc:
        if only is not None and exc.errno not in only:
            raise
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            reason = "the disk is full"
        elif exc.errno == errno.EROFS:
            reason = "the file system is read-only"
        raise EvoPruneError(
            f"cannot write the results folder {path}: {reason}; what was there before is kept: "
            f"give {option} a "
            "folder you can write to (or free space) and run the same command again"
        ) from None


def check_file_target(
    path: str | Path, command: str, option: str, data_roots: Sequence[str | Path] = ()
) -> Path:
    """Refuse, before any work, a file that ``command`` must not write: inside the data, not a
    regular file (a FIFO would block), or in an evoprune folder a file that another command
    wrote (``predict --csv RUN/result.json``) or that evoprune did not write."""
    path = Path(path)
    root = inside(path, data_roots)
    if root is not None:
        raise ConfigError(
            f"{option} {path} is inside the data folder {root}; nothing is written inside the "
            f"data: give {option} a file outside it"
        )
    if os.path.lexists(path) and not path.is_dir():
        if path.is_symlink() or not stat.S_ISREG(path.lstat().st_mode):
            raise ConfigError(
                f"{option} {path} exists and is not a regular file (a link, FIFO or device); "
                f"give {option} a new file name"
            )
    listed = read_manifest(path.parent)
    if listed is not None:
        owner = listed.get(path.name)
        if owner is not None and owner != command:
            raise ConfigError(
                f"{option} {path} is a file that 'evoprune {owner}' wrote into {path.parent}; "
                f"'evoprune {command}' never overwrites it: give {option} another file name"
            )
        if owner is None and os.path.lexists(path):
            raise ConfigError(
                f"{option} {path} is a file that evoprune did not write, in the evoprune "
                f"folder {path.parent}; it is never overwritten: give {option} another file name"
            )
    return path


@contextmanager
def claim_file(paths: Sequence[str | Path], command: str, option: str = "--out") -> Iterator[None]:
    """Write ``paths`` (files of one folder) for ``command``: inside an evoprune folder, that
    folder is locked and the files are listed in its manifest (checked again under the lock);
    elsewhere they are simply written."""
    parent = Path(paths[0]).parent
    if read_manifest(parent) is None:
        yield
        return
    with OutputFolder(parent, command, option).claim(recheck=False):
        for p in paths:
            check_file_target(p, command, option)
        yield


@contextmanager
def entry_lock(path: str | Path, what: str = "this cache entry") -> Iterator[None]:
    """An exclusive lock on a cache entry (the file ``.NAME.lock`` beside ``path``) while it
    is computed: a second process computing the same entry waits for the first (told so),
    then finds it written instead of computing it again."""
    path = Path(path)
    lock = path.parent / f".{path.name}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    except OSError:  # a read-only cache: nothing will be written there either
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            logging.getLogger("evoprune").warning(
                "another evoprune process is computing %s (%s); waiting for it", what, path.name
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        # removed while held: the cache keeps no lock files (a process that opened it just
        # before may then compute the entry once more; its write is atomic and identical)
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)
