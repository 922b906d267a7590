"""Numbers read from text the same way everywhere (query values, event ids).

Apart from ``http.py`` so that the declared contracts (``schemas.py``), and the Python
client built on them, load without Flask.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]{1,19}")


def whole_number(raw: str) -> int | None:
    """A non-negative decimal integer that fits 64 bits, or None (no signs, no '_')."""
    text = raw.strip()
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value < 2**63 else None
