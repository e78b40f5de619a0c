"""The one user-facing error type and how the CLI reports it.

    raise BertkitError(f"{path}: no such file; check data.files in the recipe")

The CLI prints such an error as one line on stderr and exits with code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator

EXIT_USER_ERROR = 2


class BertkitError(Exception):
    """A mistake the user can fix: the message says what is wrong, where, and how to fix it."""


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint; the exit code is 128 + the signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


@contextlib.contextmanager
def reported(debug: bool = False) -> Iterator[None]:
    """Turn a BertkitError into one line on stderr and SystemExit(2)."""
    try:
        yield
    except BertkitError as e:
        _close_progress_bars()
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except Interrupted as e:
        _close_progress_bars()
        print(f"stopped: {e}", file=sys.stderr)
        raise SystemExit(128 + e.signum) from None
    except KeyboardInterrupt:
        _close_progress_bars()
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def _close_progress_bars() -> None:
    """End any open progress bar's line, so the message starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", [])):
        bar.close()
