"""Faster matching of long case-insensitive alternations (labels, cue words) on lower-cased text.

Python's ``re`` tries every branch of an ``(?i:...)`` alternation at every position; the same
pattern without the flag, run on a lower-cased copy of the text, is several times faster. The copy
has the text's length, so match offsets are offsets into the original.
"""

from __future__ import annotations

import re

__all__ = ["compile_lower", "lowered"]


def lowered(text: str) -> str:
    """Return ``text`` lower-cased with its length kept (characters whose lower case is longer stay)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def compile_lower(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` for use on :func:`lowered` text: ``(?i:`` groups become plain groups.

    The pattern must not need upper-case letters outside such groups.
    """
    return re.compile(pattern.replace("(?i:", "(?:"))
