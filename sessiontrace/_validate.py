"""Checks for session ids, user ids, metadata, tags and state values, run at the call.

Every error names the argument, says what was wrong and what is allowed, so the user can fix
the call. Nothing here touches the context: callers validate first and apply after. Valid
input takes one fast path of C-level string checks; the reasons are worked out only on error.

Text must be valid Unicode: a lone surrogate (U+D800 to U+DFFF, what ``bytes.decode(...,
"surrogateescape")`` leaves behind) cannot be written as UTF-8, so it would fail later, far
from the call, in an exporter. JSON values (metadata, state) nest at most ``MAX_DEPTH`` lists
and dicts deep and hold at most ``MAX_VALUES`` values, and must not contain themselves, so
checking and encoding them is bounded and never hits Python's recursion limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from sessiontrace._json_values import (
    SCALARS,
    SURROGATE,
    check_shape,
    encode_flat_json,
    encode_json,
    explain,
    has_surrogate,
    surrogate_problem,
)

# Langfuse drops session and user ids longer than 200 characters without a word.
MAX_ID_LENGTH = 200
MAX_TAG_LENGTH = 200

EMPTY_METADATA: Mapping[str, Any] = MappingProxyType({})

_SAFE_INT_BITS = 2000  # 2**2000 has 603 digits, fewer than the least int_max_str_digits




def _is_clean_text(value: str, limit: int) -> bool:
    return 0 < len(value) <= limit and value.isprintable() and not value.isspace()


def _text_problem(value: str, limit: int) -> str:
    """Why ``value`` (a str) is not clean text, for an error message."""
    if not value or value.isspace():
        return f"must not be empty or only whitespace, got {value!r}"
    if len(value) > limit:
        return f"is {len(value)} characters long; the limit is {limit}: pass a shorter value"
    position, character = next((i, c) for i, c in enumerate(value) if not c.isprintable())
    if SURROGATE.match(character):
        return surrogate_problem(value)
    return (
        f"contains the non-printable character {character!r} (U+{ord(character):04X}) at "
        f"position {position}; it must be printable text (strip newlines and tabs)"
    )


def check_id(value: object, argument: str) -> str:
    """Return ``value`` if it is a usable session or user id, else raise.

    >>> check_id("chat-42", "session_id")
    'chat-42'
    """
    if isinstance(value, str):
        if _is_clean_text(value, MAX_ID_LENGTH):
            return value
        problem = _text_problem(value, MAX_ID_LENGTH)
        if len(value) > MAX_ID_LENGTH:
            problem += ", or a hash of it (Langfuse silently drops longer ids)"
        raise ValueError(f"{argument} {problem}")
    raise TypeError(
        f"{argument} must be a str, got {type(value).__name__} ({value!r:.60}); "
        f"pass str({argument}) if it is a number or a UUID"
    )


def check_span_name(value: object, argument: str) -> str:
    """Return ``value`` if it can name a span: non-empty text with no lone surrogate.

    Span names may hold any other character (OpenTelemetry puts no limit on them).

    Raises:
        TypeError: ``value`` is not a str, or is empty or only whitespace.
        ValueError: it holds a lone surrogate.

    Example:
        >>> check_span_name("plan trip", "name")
        'plan trip'
    """
    if not isinstance(value, str) or not value.strip():
        raise TypeError(
            f"{argument} must be a non-empty str, got {type(value).__name__} ({value!r:.60}); "
            "pass a short name for what the span times, e.g. 'plan'"
        )
    if not value.isascii() and has_surrogate(value):
        raise ValueError(f"{argument} {surrogate_problem(value)}")
    return value


def check_metadata(value: object, argument: str = "metadata") -> Mapping[str, Any]:
    """Return a frozen deep copy of ``value``, or raise.

    Keys must be non-empty printable str; values must be JSON-serialisable: str, int, float,
    bool, None, and lists and dicts of those, nested at most ``MAX_DEPTH`` (32) deep, with no
    NaN or infinity, no lone surrogates in any text and no cycles. ``argument`` is how the
    caller named ``value``, for error messages. A copy of scalars only is checked without
    being encoded (:func:`encode_metadata` does that when a span first needs the JSON).

    Raises:
        TypeError: ``value`` is not a mapping, a key is not a str, or a value is of a type
            JSON cannot carry.
        ValueError: a key is empty or not printable, text holds a lone surrogate, or a value
            is nested too deep, too large or contains itself.

    Example:
        >>> dict(check_metadata({"plan": "pro"}))
        {'plan': 'pro'}
    """
    if type(value) is dict:
        copy: dict[Any, Any] = value.copy()
    elif isinstance(value, Mapping):
        copy = dict(value)
    else:
        raise TypeError(
            f"{argument} must be a mapping of str keys to JSON-serialisable values, "
            f"got {type(value).__name__}"
        )
    scalars_only = True
    for key, item in copy.items():
        if type(key) is not str or not key or not key.isprintable():
            _raise_for_bad_key(key, argument)
        kind = type(item)
        if kind is str:
            if not item.isascii() and has_surrogate(item):
                explain(copy, argument, argument)
        elif kind is float:
            if item - item != 0.0:  # NaN or infinity, which JSON cannot carry
                explain(copy, argument, argument)
        elif kind is int:
            # Python refuses to print ints of more than sys.get_int_max_str_digits() digits
            # (at least 640): a longer one is checked the slow way, by encoding it.
            if item.bit_length() > _SAFE_INT_BITS:
                scalars_only = False
        elif kind not in SCALARS:
            scalars_only = False
    if scalars_only:
        return MappingProxyType(copy)
    check_shape(copy, argument, argument, depth=0)
    try:
        text = encode_json(copy)
    except (TypeError, ValueError):
        explain(copy, argument, argument)
    if not text.isascii() and has_surrogate(text):
        explain(copy, argument, argument)
    return MappingProxyType(json.loads(text))  # a deep copy of nested values


def encode_metadata(metadata: Mapping[str, Any]) -> str:
    """The JSON object text of metadata that :func:`check_metadata` returned.

    Example:
        >>> encode_metadata(check_metadata({"plan": "pro", "seats": 3}))
        '{"plan": "pro", "seats": 3}'
    """
    copy = dict(metadata)
    for item in copy.values():
        if type(item) not in SCALARS:
            return encode_json(copy)
    return encode_flat_json(copy)


def check_json_value(value: object, argument: str, root: str | None = None) -> str:
    """Return the JSON text of ``value`` if it is a JSON value sessiontrace accepts, else raise.

    The rules are those of metadata values (see :func:`check_metadata`). Errors name
    ``argument`` and the place in ``value``, starting from ``root`` (e.g. ``"state['goal']"``;
    the argument's name when not given).

    Raises:
        TypeError: ``value`` (or something in it) is of a type JSON cannot carry.
        ValueError: text in it holds a lone surrogate, or it is nested too deep, too large
            or contains itself.

    Example:
        >>> check_json_value({"goal": ["Oslo", 2]}, "value")
        '{"goal": ["Oslo", 2]}'
    """
    root = argument if root is None else root
    if type(value) not in SCALARS:
        check_shape(value, argument, root)
    try:
        text = encode_json(value)
    except (TypeError, ValueError):
        explain(value, argument, root)
    if not text.isascii() and has_surrogate(text):
        explain(value, argument, root)
    return text


def check_state(key: object, value: object) -> str:
    """Check the arguments of ``SessionTracker.set_state(key, value)``; return the value's JSON.

    ``key`` follows the rules of ids (see :func:`check_id`); ``value`` those of metadata
    values (see :func:`check_metadata`).

    Raises:
        TypeError: ``key`` is not a str, or ``value`` holds a type JSON cannot carry.
        ValueError: ``key`` is empty, too long or not printable, or ``value`` holds a lone
            surrogate, is nested too deep, too large or contains itself.

    Example:
        >>> check_state("goal", {"city": "Oslo"})
        '{"city": "Oslo"}'
    """
    checked = check_id(key, "key")
    return check_json_value(value, "value", f"state[{checked!r}]")


def _raise_for_bad_key(key: object, argument: str) -> None:
    if not isinstance(key, str):
        raise TypeError(f"{argument} keys must be str, got {type(key).__name__} key {key!r:.60}")
    if has_surrogate(key):
        raise ValueError(f"{argument} key {key!r:.60} {surrogate_problem(key)}")
    raise ValueError(
        f"{argument} key {key!r:.60} must be non-empty printable text "
        "(it becomes part of attribute names such as langfuse.trace.metadata.<key>)"
    )


def check_tags(value: object, argument: str = "tags") -> tuple[str, ...]:
    """Return ``value`` as a tuple of unique tags in first-seen order, or raise.

    >>> check_tags(["beta", "web", "beta"])
    ('beta', 'web')
    """
    if type(value) is not list and type(value) is not tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise TypeError(
                f"{argument} must be a list of str, got {type(value).__name__} "
                f"({value!r:.60}); for one tag write {argument}=[{value!r:.40}]"
            )
        value = list(value)
    for tag in value:
        if not (
            type(tag) is str
            and 0 < len(tag) <= MAX_TAG_LENGTH
            and tag.isprintable()
            and not tag.isspace()
        ):
            _raise_for_bad_tags(value, argument)
    tags = tuple(value)
    if len(tags) > 1 and len(set(tags)) != len(tags):  # a set is cheaper than always dedup
        tags = tuple(dict.fromkeys(tags))
    return tags


def _raise_for_bad_tags(tags: list[Any] | tuple[Any, ...], argument: str) -> None:
    for position, tag in enumerate(tags):
        if not isinstance(tag, str):
            raise TypeError(
                f"{argument}[{position}] must be a str, got {type(tag).__name__} ({tag!r:.60})"
            )
        if not _is_clean_text(tag, MAX_TAG_LENGTH):
            raise ValueError(f"{argument}[{position}] {_text_problem(tag, MAX_TAG_LENGTH)}")
