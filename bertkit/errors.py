"""The one user-facing error type and how the CLI reports it.

    raise BertkitError(f"{path}: no such file; check data.files in the recipe")

The CLI prints such an error as one line on stderr and exits with code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
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


class Terminated(BaseException):
    """SIGTERM outside training: raised like KeyboardInterrupt, so that unfinished outputs are cleaned up."""


def _terminate(signum, frame) -> None:
    raise Terminated


class DeferredSignals:
    """SIGINT and SIGTERM noted instead of handled until release(), which raises the first one noted: for the few
    steps between making a temporary output and arming its clean-up (a signal there would leave it behind; seen
    when a SIGTERM came right after mkdtemp) and for forking workers (a signal during os.fork's hooks is lost).
    In the main thread only, where handlers can be set; elsewhere it changes nothing."""

    def __init__(self) -> None:
        self.noted: list[int] = []
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._note) for s in (signal.SIGINT, signal.SIGTERM)}

    def _note(self, signum, frame) -> None:
        self.noted.append(signum)

    def release(self) -> None:
        """Put the earlier handlers back (a second call does nothing) and raise a signal noted meanwhile."""
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if previous and self.noted:
            signal.raise_signal(self.noted[0])


@contextlib.contextmanager
def reported(debug: bool = False) -> Iterator[None]:
    """Turn a BertkitError, or an OSError naming a path (unwritable, read-only, a file where a dir belongs), into
    one line on stderr and SystemExit(2); SIGTERM and SIGINT into a short line and 128 + the signal."""
    main = threading.current_thread() is threading.main_thread()  # handlers can only be set there
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        yield
    except BertkitError as e:
        _close_progress_bars()
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except OSError as e:
        if e.filename is None:
            raise
        _close_progress_bars()
        if debug:
            traceback.print_exc()
        print(f"error: {e.filename}: {e.strerror}; check the path and its permissions", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except Interrupted as e:
        _close_progress_bars()
        print(f"stopped: {e}", file=sys.stderr)
        raise SystemExit(128 + e.signum) from None
    except (KeyboardInterrupt, Terminated) as e:
        _close_progress_bars()
        name = "SIGTERM" if isinstance(e, Terminated) else "SIGINT"
        print(f"stopped: {name}; unfinished outputs were discarded, earlier ones are intact", file=sys.stderr)
        raise SystemExit(143 if isinstance(e, Terminated) else 130) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _close_progress_bars() -> None:
    """End any open progress bar's line, so the message starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", [])):
        bar.close()
