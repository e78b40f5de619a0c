"""Progress bars: live on a terminal, a line every 30 s in a log file (CI, nohup, a cluster's job log).

for batch in progress(loader, desc="eval"):
    ...
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    """tqdm with bertkit's defaults; keyword arguments as tqdm's."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
