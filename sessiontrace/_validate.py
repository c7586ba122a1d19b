"""Checks for session ids, user ids, metadata and tags, run at the call that receives them.

Every error names the argument, says what was wrong and what is allowed, so the user can fix
the call. Nothing here touches the context: callers validate first and apply after. Valid
input takes one fast path of C-level string checks; the reasons are worked out only on error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

# Langfuse drops session and user ids longer than 200 characters without a word.
MAX_ID_LENGTH = 200
MAX_TAG_LENGTH = 200

EMPTY_METADATA: Mapping[str, Any] = MappingProxyType({})

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
encode_json = _ENCODER.encode
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _flat_encoder() -> Callable[[dict[str, Any]], str]:
    # json builds a new C encoder on every call, which is most of its cost for small dicts.
    # For a dict of scalars (no nesting, so no cycles to track) one C encoder is reused.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - Pythons without the C accelerator
        return encode_json
    iterencode = make(
        None,
        _ENCODER.default,
        json.encoder.encode_basestring,
        None,
        ": ",
        ", ",
        False,
        False,
        False,
    )
    return lambda flat: "".join(iterencode(flat, 0))


encode_flat_json = _flat_encoder()


def _is_clean_text(value: str, limit: int) -> bool:
    return 0 < len(value) <= limit and value.isprintable() and not value.isspace()


def _text_problem(value: str, limit: int) -> str:
    """Why ``value`` (a str) is not clean text, for an error message."""
    if not value or value.isspace():
        return f"must not be empty or only whitespace, got {value!r}"
    if len(value) > limit:
        return f"is {len(value)} characters long; the limit is {limit}: pass a shorter value"
    position, character = next((i, c) for i, c in enumerate(value) if not c.isprintable())
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


def check_metadata(value: object, argument: str = "metadata") -> tuple[Mapping[str, Any], str]:
    """Return a frozen deep copy of ``value`` and its JSON text, or raise.

    Keys must be non-empty str; values must be JSON-serialisable (str, int, float, bool,
    None, and lists and dicts of those).

    >>> check_metadata({"plan": "pro"})[1]
    '{"plan": "pro"}'
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
        if type(item) not in _SCALARS:
            scalars_only = False
    try:
        text = encode_flat_json(copy) if scalars_only else encode_json(copy)
    except (TypeError, ValueError):
        _raise_for_bad_value(copy, argument)
        raise
    if scalars_only:
        return MappingProxyType(copy), text
    return MappingProxyType(json.loads(text)), text  # a deep copy of nested values


def _raise_for_bad_key(key: object, argument: str) -> None:
    if not isinstance(key, str):
        raise TypeError(f"{argument} keys must be str, got {type(key).__name__} key {key!r:.60}")
    raise ValueError(
        f"{argument} key {key!r:.60} must be non-empty printable text "
        "(it becomes part of attribute names such as langfuse.trace.metadata.<key>)"
    )


def _raise_for_bad_value(metadata: dict[str, Any], argument: str) -> None:
    """Name the first value of ``metadata`` that JSON cannot carry, and why."""
    for key, item in metadata.items():
        try:
            encode_json(item)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{argument}[{key!r}] is not JSON-serialisable ({error}); allowed values are "
                "str, int, float, bool, None and lists/dicts of those: convert it first, "
                "for example with str() or .isoformat()"
            ) from None


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
    return tuple(dict.fromkeys(value))


def _raise_for_bad_tags(tags: list[Any] | tuple[Any, ...], argument: str) -> None:
    for position, tag in enumerate(tags):
        if not isinstance(tag, str):
            raise TypeError(
                f"{argument}[{position}] must be a str, got {type(tag).__name__} ({tag!r:.60})"
            )
        if not _is_clean_text(tag, MAX_TAG_LENGTH):
            raise ValueError(f"{argument}[{position}] {_text_problem(tag, MAX_TAG_LENGTH)}")
