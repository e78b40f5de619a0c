"""Progress bars: live on a terminal, a line every 30 s in a log file (CI, nohup, a cluster's job log).

for batch in progress(loader, desc="eval"):
    ...
"""

from __future__ import annotations

import sys
import threading

from tqdm.auto import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    """tqdm with bertkit's defaults; keyword arguments as tqdm's."""
    # Bars from the main thread only: `bertkit serve`'s model thread would draw one per request.
    if threading.current_thread() is not threading.main_thread():
        kwargs["disable"] = True
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
