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


@contextlib.contextmanager
def reported(debug: bool = False) -> Iterator[None]:
    """Turn a BertkitError into one line on stderr and SystemExit(2)."""
    try:
        yield
    except BertkitError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
