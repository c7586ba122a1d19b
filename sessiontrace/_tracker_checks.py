"""SessionTracker's argument checks: each argument checked whole, at the call.

Example:
    >>> hex_id("4bf92f3577b34da6a3ce929d0e0e4736", "trace_id", 32) > 0
    True
"""

from __future__ import annotations

import string


def positive(value: int | None, argument: str, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    allowed = f"a positive int{' or None' if allow_none else ''}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be {allowed}, got {type(value).__name__} ({value!r:.60})")
    if value <= 0:
        raise ValueError(f"{argument} must be {allowed}, got {value!r}; pass 1 or more")
    return value


def flag(value: object, argument: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(
            f"{argument} must be True or False, got {type(value).__name__} ({value!r:.60})"
        )
    return value


def hex_id(value: str | int, argument: str, digits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(
            f"{argument} must be {digits} hex digits (str, as in a traceparent header) or a "
            f"non-zero int, got {type(value).__name__} ({value!r:.60})"
        )
    number = 0
    if isinstance(value, int):
        number = value
    elif len(value) == digits and all(c in string.hexdigits for c in value):
        number = int(value, 16)
    if not 0 < number < 16**digits:
        raise ValueError(
            f"{argument} must be {digits} hex digits (as in a traceparent header) or a "
            f"non-zero int below 16**{digits}, got {value!r:.60}"
        )
    return number
