"""Ages and sizes as people write them: ``7d``, ``12h``, ``500MB``, ``1.5GiB``.

Used by ``sessiontrace prune`` and by ``configure(store_max_age=..., store_max_bytes=...)``
and their environment variables, so each accepts the same spellings everywhere.
"""

from __future__ import annotations

import math
import re

_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_AMOUNT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")

AGE_HELP = "a number and a unit: s, m, h, d or w (such as 90m, 12h, 7d, 2w)"
SIZE_HELP = "a number of bytes, or with a unit: KB, MB, GB, TB, KiB, MiB, GiB, TiB (such as 500MB)"


def parse_age(value: str | float, what: str = "age") -> float:
    """Seconds in ``value``: a number of seconds, or text such as ``"7d"``.

    Raises:
        TypeError: If ``value`` is neither a number nor text; the message names ``what``.
        ValueError: If ``value`` is not a positive age; the message names ``what``.

    Example:
        >>> parse_age("7d"), parse_age("90m"), parse_age(3600)
        (604800.0, 5400.0, 3600.0)
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"{what} must be seconds or text such as '7d', got {type(value).__name__}")
    if isinstance(value, str):
        match = _AMOUNT.fullmatch(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _AGE_UNITS:
            raise ValueError(f"{what} {_shown(value)} is not an age; write {AGE_HELP}")
        seconds = float(match.group(1)) * _AGE_UNITS[unit]
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an int past the largest float
            seconds = math.inf if value > 0 else -math.inf
    if math.isinf(seconds) and seconds > 0:
        raise ValueError(f"{what} {_shown(value)} is too long an age; write {AGE_HELP}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(
            f"{what} must be more than 0 seconds, got {_shown(value)}; write {AGE_HELP}"
        )
    return seconds


def parse_size(value: str | int, what: str = "size") -> int:
    """Bytes in ``value``: a whole number of bytes, or text such as ``"500MB"``.

    Raises:
        TypeError: If ``value`` is neither a whole number nor text; the message names ``what``.
        ValueError: If ``value`` is not a positive size; the message names ``what``.

    Example:
        >>> parse_size("500MB"), parse_size("1GiB"), parse_size(4096)
        (500000000, 1073741824, 4096)
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"{what} must be bytes or text such as '500MB', got {type(value).__name__}")
    if isinstance(value, str):
        match = _AMOUNT.fullmatch(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f"{what} {_shown(value)} is not a size; write {SIZE_HELP}")
        amount = match.group(1)
        try:
            # Whole numbers exactly; a fraction through float, which may be infinite.
            size = int(amount) * _SIZE_UNITS[unit] if "." not in amount else None
            if size is None:
                scaled = float(amount) * _SIZE_UNITS[unit]
                if not math.isfinite(scaled):
                    raise ValueError(amount)
                size = int(scaled)
        except ValueError:  # more digits than int() reads, or past the largest float
            raise ValueError(f"{what} {_shown(value)} is too large; write {SIZE_HELP}") from None
    else:
        size = value
    if size <= 0:
        raise ValueError(
            f"{what} must be more than 0 bytes, got {_shown(value)}; write {SIZE_HELP}"
        )
    return size


def _shown(value: object) -> str:
    # repr() of an int with more than 4300 digits raises; a long text is cut.
    if isinstance(value, int) and abs(value) >= 10**30:
        return "(a number past 10**30)" if value > 0 else "(a number below -10**30)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
