"""Where the lines of a text file end: the one rule every reader of bertkit (corpus, word lists, embed.file, task
JSONL) follows, so that row N of an output is line N of its input.

    for n, line in enumerate(split_lines(path.read_text(encoding="utf-8")), 1):
        ...
"""

from __future__ import annotations

import re

# What a file ends lines with (the universal newlines of open()). Not the other breaks str.splitlines() knows
# (U+2028, U+2029, U+0085, \x0b, \x0c, \x1c-\x1e): text holds them inside a line, and splitting there would shift
# every later row against the file's lines.
_LINE_END = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """`text` cut at \\n, \\r\\n and \\r only; like str.splitlines(), a final line end gives no empty last line."""
    lines = _LINE_END.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines
