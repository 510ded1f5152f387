"""Text from outside (an edge's event, a camera's name, a client's request) made safe to show in a
terminal or a log line: control characters (C0, C1, DEL) and the Unicode controls that reorder or
hide text are shown escaped, so a zone name with a newline and terminal escapes cannot forge a line
of output or move the cursor. A leaf: imports nothing of the package."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the format controls that reorder or hide text (bidi overrides and
# isolates, zero-width joiners and marks, the line and paragraph separators)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def printable(value: object, *, limit: int = 200) -> str:
    """``value`` as one line of plain text: unsafe characters as ``\\xNN`` / ``\\uNNNN``, and at most
    ``limit`` characters (``...`` marks a cut)."""
    text = _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
