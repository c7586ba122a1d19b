"""SessionTracker's argument checks and pricing: each argument checked whole, at the call.

Example:
    >>> check_prices({"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}})
    {'gpt-4o-mini': (0.15, 0.6)}
    >>> priced({"m": (1.0, 2.0)}, "m", 1_000_000, 500_000)
    2.0
"""

from __future__ import annotations

import string
from collections.abc import Mapping


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


_PRICES_FORM = (
    "prices must map model names (str) to {'prompt': usd, 'completion': usd} per million "
    "tokens, e.g. {'gpt-4o-mini': {'prompt': 0.15, 'completion': 0.6}}, or be None"
)


def check_prices(prices: object) -> dict[str, tuple[float, float]]:
    """Validate ``prices`` whole before anything is kept (nothing half-applied)."""
    if prices is None:
        return {}
    if not isinstance(prices, Mapping):
        raise TypeError(f"{_PRICES_FORM}; got {type(prices).__name__} ({prices!r:.60})")
    checked: dict[str, tuple[float, float]] = {}
    for model, rates in prices.items():
        if not isinstance(model, str) or not model:
            raise TypeError(f"{_PRICES_FORM}; got the model name {model!r:.60}")
        if not isinstance(rates, Mapping):
            raise TypeError(
                f"{_PRICES_FORM}; prices[{model!r}] is {type(rates).__name__} ({rates!r:.60})"
            )
        unknown = sorted(repr(key) for key in rates if key not in ("prompt", "completion"))
        if unknown:
            raise ValueError(
                f"prices[{model!r}] has unknown key(s) {', '.join(unknown)}; {_PRICES_FORM}"
            )
        pair: list[float] = []
        for key in ("prompt", "completion"):
            rate = rates.get(key, 0.0)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                raise TypeError(
                    f"prices[{model!r}][{key!r}] must be a number of USD per million tokens, "
                    f"got {type(rate).__name__} ({rate!r:.60})"
                )
            if not 0 <= rate < float("inf"):
                raise ValueError(
                    f"prices[{model!r}][{key!r}] must be a finite number >= 0 of USD per "
                    f"million tokens, got {rate!r}"
                )
            pair.append(float(rate))
        checked[model] = (pair[0], pair[1])
    return checked


def priced(
    prices: Mapping[str, tuple[float, float]],
    model: str | None,
    prompt: int | None,
    completion: int | None,
) -> float | None:
    if model is None or model not in prices or (prompt is None and completion is None):
        return None
    prompt_rate, completion_rate = prices[model]
    return ((prompt or 0) * prompt_rate + (completion or 0) * completion_rate) / 1_000_000


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
