"""Checks for session ids, user ids, metadata and tags, run at the call that receives them.

Every error names the argument, says what was wrong and what is allowed, so the user can fix
the call. Nothing here touches the context: callers validate first and apply after.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

# Langfuse drops session and user ids longer than 200 characters without a word.
MAX_ID_LENGTH = 200
MAX_TAG_LENGTH = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

EMPTY_METADATA: Mapping[str, Any] = MappingProxyType({})


def check_id(value: object, argument: str) -> str:
    """Return ``value`` if it is a usable session or user id, else raise.

    >>> check_id("chat-42", "session_id")
    'chat-42'
    """
    if not isinstance(value, str):
        raise TypeError(
            f"{argument} must be a str, got {type(value).__name__} ({value!r:.60}); "
            f"pass str({argument}) if it is a number or a UUID"
        )
    if not value.strip():
        raise ValueError(f"{argument} must not be empty or only whitespace, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(
            f"{argument} is {len(value)} characters long; the limit is {MAX_ID_LENGTH} "
            "(Langfuse silently drops longer ids): pass a shorter id, or a hash of it"
        )
    match = _CONTROL.search(value)
    if match:
        raise ValueError(
            f"{argument} contains the control character {match.group()!r} at position "
            f"{match.start()}; ids must be printable text (strip newlines and tabs)"
        )
    return value


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
encode_json = _ENCODER.encode
_SCALARS = (str, int, float, bool, type(None))


def check_metadata(value: object, argument: str = "metadata") -> tuple[Mapping[str, Any], str]:
    """Return a frozen deep copy of ``value`` and its JSON text, or raise.

    Keys must be non-empty str; values must be JSON-serialisable (str, int, float, bool,
    None, and lists and dicts of those).

    >>> check_metadata({"plan": "pro"})[1]
    '{"plan": "pro"}'
    """
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{argument} must be a mapping of str keys to JSON-serialisable values, "
            f"got {type(value).__name__}"
        )
    copy = dict(value)
    for key in copy:
        if type(key) is not str:
            raise TypeError(
                f"{argument} keys must be str, got {type(key).__name__} key {key!r:.60}"
            )
        if not key or _CONTROL.search(key):
            raise ValueError(
                f"{argument} key {key!r:.60} must be non-empty printable text "
                "(it becomes part of attribute names such as langfuse.trace.metadata.<key>)"
            )
    try:
        text = encode_json(copy)
    except (TypeError, ValueError):
        _raise_for_bad_value(copy, argument)
        raise
    if all(isinstance(item, _SCALARS) for item in copy.values()):
        return MappingProxyType(copy), text
    return MappingProxyType(json.loads(text)), text


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
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            f"{argument} must be a list of str, got {type(value).__name__} ({value!r:.60}); "
            f"for one tag write {argument}=[{value!r:.40}]"
        )
    tags: dict[str, None] = {}
    for position, tag in enumerate(value):
        if not isinstance(tag, str):
            raise TypeError(
                f"{argument}[{position}] must be a str, got {type(tag).__name__} ({tag!r:.60})"
            )
        if not tag.strip() or _CONTROL.search(tag):
            raise ValueError(
                f"{argument}[{position}] must be non-empty printable text, got {tag!r:.60}"
            )
        if len(tag) > MAX_TAG_LENGTH:
            raise ValueError(
                f"{argument}[{position}] is {len(tag)} characters long; "
                f"the limit is {MAX_TAG_LENGTH}"
            )
        tags[tag] = None
    return tuple(tags)
