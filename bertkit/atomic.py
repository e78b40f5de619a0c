"""Atomic writes, and the rule that bertkit replaces only what it wrote itself.

check_output(out_dir, "output_dir", overwrite)   # before any work: absent, empty, or an earlier bertkit output
                                                 # (and held by this run until release_outputs(): see claim)
check_apart({"export.output_dir": out_dir}, {"export.model_dir": model_dir})   # an output never holds an input
with atomic_dir(out_dir) as tmp:      # write everything into tmp …
    model.save_pretrained(tmp)        # … and it is renamed to out_dir on success, marked as bertkit's
write_text(path, json.dumps(report))  # a file, via a temporary sibling and os.replace

Every directory that atomic_dir publishes holds MARKER. A directory without it is the user's: bertkit never
replaces or deletes it, whatever `overwrite` says.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from bertkit.errors import BertkitError, DeferredSignals

try:
    import fcntl
except ImportError:  # Windows: no flock; outputs are not locked there
    fcntl = None

FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # EFBIG: a file size limit (`ulimit -f`)
MARKER = ".bertkit-output"


@functools.cache
def _umask() -> int:
    """The process' umask (reading it means setting it, so it is set back at once): the mode that ordinary
    files get, for the temporary files and dirs that tempfile creates private."""
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def is_full_disk(e: BaseException) -> bool:
    """ENOSPC/EFBIG as an OSError, or as the message of torch's or safetensors' own writers (torch.save reports
    a failed write as a RuntimeError that does not say why)."""
    text = str(e)
    return (
        (isinstance(e, OSError) and e.errno in FULL_DISK)
        or "No space left on device" in text
        or "os error 28" in text
        or "File too large" in text
        or "file write failed" in text
        or "unexpected pos" in text  # torch.save's zip writer, when a write came up short
    )


def _full_disk(path: Path) -> BertkitError:
    return BertkitError(
        f"{path}: no space left on device (or over the file size limit) while writing it; nothing was replaced "
        "(earlier outputs and checkpoints are intact); free space and run again (train.resume=auto continues "
        "pretraining)"
    )


def is_ours(path: Path) -> bool:
    """A directory that bertkit wrote (it holds MARKER)."""
    return (Path(path) / MARKER).is_file()


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and next(path.iterdir(), None) is None


_HELD: dict[Path, tuple[int, Path | None]] = {}  # output → its lock's descriptor and the first dir claim made


def _lock_file(path: Path) -> Path:
    # A name no user file is likely to have: claim truncates it and release removes it.
    return path.parent / f".{path.name}.bertkit-lock"


def claim(path: Path, key: str) -> None:
    """Hold `path` for this run until release_outputs() (or the process' end): a second run writing it refuses,
    naming this one. The lock is a flock on a hidden file beside `path` (`path` itself is replaced when an
    output publishes), which the kernel drops when the holder dies: a killed run's lock is taken over. Written
    here rather than with the `filelock` package because its lock file cannot tell who holds it (3.x truncates
    it on every attempt). Under torchrun/accelerate, rank 0 holds it for the whole job."""
    path = Path(path).resolve()  # one lock per dir, however it is named (runs/x, ./runs/x, runs/y/../x, links)
    if fcntl is None or path in _HELD or os.environ.get("RANK", "0") != "0":
        return
    lock = _lock_file(path)
    made = next((d for d in reversed(lock.parents) if not d.exists()), None)  # removed again if left empty
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "a process that has not said who it is"
            os.close(fd)
            raise BertkitError(
                f"{key}: {path} is being written by another bertkit run ({holder}); wait for it to end, or choose "
                f"another {key}"
            ) from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break  # else the holder unlinked it on release between our open and flock: lock the new one
        os.close(fd)
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}, since {since}: {' '.join(sys.argv)}".encode())
    _HELD[path] = (fd, made)


def release_outputs() -> None:
    """Give up what claim() holds: at the end of a command, however it ends."""
    for path, (fd, made) in _HELD.items():
        lock = _lock_file(path)
        with contextlib.suppress(OSError):  # unlinked while locked, so no waiter is left on an orphan
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                os.unlink(lock)
        os.close(fd)
        for d in [lock.parent, *lock.parent.parents] if made else []:  # the dirs claim made, if still empty
            with contextlib.suppress(OSError):
                d.rmdir()
            if d == made:
                break
    _HELD.clear()


def check_output(path: Path, key: str, overwrite: bool) -> None:
    """Before any work: `path` (set by recipe key `key`) may be written if it does not exist, is an empty dir,
    or is an earlier bertkit output and `overwrite` is set. Claims it for this run first (claim)."""
    path = Path(path)
    claim(path, key)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise BertkitError(f"{key}: {path} is a file or link, not a directory; choose another {key}")
    if not path.exists() or _is_empty_dir(path):
        return
    if not is_ours(path):
        raise BertkitError(
            f"{key}: {path} exists and was not written by bertkit (no {MARKER} in it); bertkit never replaces "
            f"it, even with overwrite=true; choose another {key}"
        )
    if not overwrite:
        raise BertkitError(
            f"{key}: {path} holds an earlier bertkit output; replace it with overwrite=true, or choose another {key}"
        )


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_apart(outputs: dict[str, Path | None], inputs: dict[str, Path | None]) -> None:
    """No output dir may equal, lie inside or contain an input (replacing it would delete the input), and no
    two outputs may overlap. Keys are the recipe keys named in the error."""
    outs = {k: Path(p).resolve() for k, p in outputs.items() if p is not None}
    ins = {k: Path(p).resolve() for k, p in inputs.items() if p is not None}
    items = list(outs.items())
    for i, (out_key, out) in enumerate(items):
        for other_key, other in [*items[i + 1 :], *ins.items()]:
            if _inside(out, other) or _inside(other, out):
                raise BertkitError(
                    f"{out_key}={out} overlaps {other_key}={other}; writing it would replace the other; "
                    f"choose another {out_key}"
                )


def remove_output(path: Path) -> None:
    """Delete a directory that bertkit wrote; anything else is refused."""
    path = Path(path)
    if not path.exists() or _is_empty_dir(path):
        return
    if path.is_symlink() or not is_ours(path):
        raise BertkitError(f"{path}: not written by bertkit (no {MARKER}); left as it is; remove it yourself")
    shutil.rmtree(path)


def mark_output(path: Path) -> None:
    """Create `path` if needed and mark it as bertkit's (for a dir written over time: pretraining's checkpoints)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("written by bertkit: it replaces this directory only when this file is here\n")


def _publishable(tmp: Path) -> None:
    """Mark the new dir as bertkit's and give its files the usual permissions (some writers create 0600)."""
    mark_output(tmp)
    for root, dirs, files in os.walk(tmp):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~_umask())
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~_umask())


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb", check: Callable[[], None] | None = None) -> Iterator[IO]:
    """A temporary sibling of `path`, open for writing (a stream may be written piece by piece); on success
    `check()` runs, then os.replace publishes it: readers see the old or the new file, never a part. On any error
    the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    signals, tmp = DeferredSignals(), None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the final file should not be
        with os.fdopen(fd, mode, **text) as f:
            signals.release()  # a signal noted while tmp was made is raised here, where its clean-up is armed
            yield f
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check()
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        signals.release()
        if is_full_disk(e):
            raise _full_disk(path) from None
        raise


@contextlib.contextmanager
def atomic_dir(final: Path, keep: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; on success it replaces `final` (an existing dir is swapped out
    first, so a crash at any point leaves either the old or the new dir, plus at most a stray temp dir).
    Entries of the old dir named in `keep` (e.g. checkpoints/) are moved into the new one. An existing `final`
    that bertkit did not write (no MARKER, not empty) is never replaced: that is an error, and nothing changes."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    signals, tmp = DeferredSignals(), None
    try:
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the final dir should not be
        signals.release()  # a signal noted while tmp was made is raised here, where its clean-up is armed
        yield tmp
        if final.is_symlink() or (final.exists() and not _is_empty_dir(final) and not is_ours(final)):
            raise BertkitError(f"{final}: exists and was not written by bertkit (no {MARKER}); nothing was replaced")
        _publishable(tmp)
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        signals.release()
        if is_full_disk(e):
            raise _full_disk(final) from None
        raise
    for name in keep:
        if (final / name).exists() and not (tmp / name).exists():
            os.replace(final / name, tmp / name)
    replace_dir(tmp, final)


def replace_dir(new: Path, final: Path) -> None:
    """Put the complete dir `new` (a sibling of `final`) in `final`'s place: the old one is swapped out first, so a
    crash at any point leaves the old or the new dir, plus at most a stray temporary dir."""
    # A fresh empty dir to swap the old one into: no fixed name that could already hold something.
    old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)
