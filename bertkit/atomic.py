"""Atomic writes: outputs appear complete or not at all.

with atomic_dir(out_dir) as tmp:      # write everything into tmp …
    model.save_pretrained(tmp)        # … and it is renamed to out_dir on success
write_text(path, json.dumps(report))  # a file, via a temporary sibling and os.replace
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from bertkit.errors import BertkitError

FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
_UMASK = os.umask(0o22)  # read once (the call sets it), then restored: temp files get the usual permissions
os.umask(_UMASK)


def is_full_disk(e: BaseException) -> bool:
    """ENOSPC as an OSError, or as the message of torch's or safetensors' own writers."""
    text = str(e)
    return (
        (isinstance(e, OSError) and e.errno in FULL_DISK)
        or "No space left on device" in text
        or ("os error 28" in text)
    )


def _full_disk(path: Path) -> BertkitError:
    return BertkitError(
        f"{path}: no space left on device while writing it; nothing was replaced (earlier outputs and "
        "checkpoints are intact); free space and run again (train.resume=auto continues pretraining)"
    )


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file via a temporary sibling and os.replace: readers see the old or the new file, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; the final file should not be
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_full_disk(e):
            raise _full_disk(path) from None
        raise


@contextlib.contextmanager
def atomic_dir(final: Path, keep: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; on success it replaces `final` (an existing dir is swapped out
    first, so a crash at any point leaves either the old or the new dir, plus at most a stray temp dir).
    Entries of the old dir named in `keep` (e.g. checkpoints/) are moved into the new one."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes it private; the final dir should not be
    try:
        yield tmp
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_full_disk(e):
            raise _full_disk(final) from None
        raise
    for name in keep:
        if (final / name).exists() and not (tmp / name).exists():
            os.replace(final / name, tmp / name)
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
