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
import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, NoReturn

# Langfuse drops session and user ids longer than 200 characters without a word.
MAX_ID_LENGTH = 200
MAX_TAG_LENGTH = 200
# JSON values: lists and dicts nested at most this deep, holding at most this many values.
MAX_DEPTH = 32
MAX_VALUES = 100_000

EMPTY_METADATA: Mapping[str, Any] = MappingProxyType({})

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
encode_json = _ENCODER.encode
_SCALARS = frozenset({str, int, float, bool, type(None)})
_SAFE_INT_BITS = 2000  # 2**2000 has 603 digits, fewer than the least int_max_str_digits
_CONTAINERS = (dict, list, tuple)
Container = dict[Any, Any] | list[Any] | tuple[Any, ...]
_SURROGATE = re.compile("[\ud800-\udfff]")
_ALLOWED_VALUES = "allowed values are str, int, float, bool, None and lists/dicts of those"


def _flat_encoder() -> Callable[[dict[str, Any]], str]:
    # json builds a new C encoder on every call, which is most of its cost for small dicts.
    # For a dict of scalars (no nesting, so no cycles to track) one C encoder is reused.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - Pythons without the C accelerator
        return encode_json
    # (markers, default, encoder, indent, separators, sort_keys, skipkeys, allow_nan)
    iterencode = make(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ": ", ", ", False, False,
        False,
    )  # fmt: skip
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
    if _SURROGATE.match(character):
        return _surrogate_problem(value)
    return (
        f"contains the non-printable character {character!r} (U+{ord(character):04X}) at "
        f"position {position}; it must be printable text (strip newlines and tabs)"
    )


def _surrogate_problem(value: str) -> str:
    """Where the first lone surrogate in ``value`` is, and how to get rid of it."""
    found = _SURROGATE.search(value)
    assert found is not None  # only called for text that has one
    return (
        f"contains the lone surrogate {found.group()!r} (U+{ord(found.group()):04X}) at "
        f"position {found.start()}; only valid Unicode text is allowed (a lone surrogate "
        "cannot be written as UTF-8): fix the text where it was decoded, for example "
        "with bytes.decode(errors='replace')"
    )


def _has_surrogate(text: str) -> bool:
    # isascii() is O(1) in CPython: ASCII text, the usual case, skips the rest. Encoding is
    # twice as fast as a regex search for short text, and fails exactly on lone surrogates.
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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
    if not value.isascii() and _has_surrogate(value):
        raise ValueError(f"{argument} {_surrogate_problem(value)}")
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
            if not item.isascii() and _has_surrogate(item):
                _explain(copy, argument, argument)
        elif kind is float:
            if item - item != 0.0:  # NaN or infinity, which JSON cannot carry
                _explain(copy, argument, argument)
        elif kind is int:
            # Python refuses to print ints of more than sys.get_int_max_str_digits() digits
            # (at least 640): a longer one is checked the slow way, by encoding it.
            if item.bit_length() > _SAFE_INT_BITS:
                scalars_only = False
        elif kind not in _SCALARS:
            scalars_only = False
    if scalars_only:
        return MappingProxyType(copy)
    _check_shape(copy, argument, argument, depth=0)
    try:
        text = encode_json(copy)
    except (TypeError, ValueError):
        _explain(copy, argument, argument)
    if not text.isascii() and _has_surrogate(text):
        _explain(copy, argument, argument)
    return MappingProxyType(json.loads(text))  # a deep copy of nested values


def encode_metadata(metadata: Mapping[str, Any]) -> str:
    """The JSON object text of metadata that :func:`check_metadata` returned.

    Example:
        >>> encode_metadata(check_metadata({"plan": "pro", "seats": 3}))
        '{"plan": "pro", "seats": 3}'
    """
    copy = dict(metadata)
    for item in copy.values():
        if type(item) not in _SCALARS:
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
    if type(value) not in _SCALARS:
        _check_shape(value, argument, root)
    try:
        text = encode_json(value)
    except (TypeError, ValueError):
        _explain(value, argument, root)
    if not text.isascii() and _has_surrogate(text):
        _explain(value, argument, root)
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


def _where(argument: str, root: str, path: list[Any]) -> str:
    """Name a place in a value: ``metadata['a'][0]`` or ``value (state['k'][0])``."""
    shown = path if len(path) <= 8 else [*path[:4], ..., *path[-2:]]
    place = root + "".join("[...]" if step is ... else f"[{step!r:.40}]" for step in shown)
    return place if root == argument else f"{argument} ({place})"


def _check_shape(value: object, argument: str, root: str, depth: int = 1) -> None:
    """Raise unless ``value`` nests lists and dicts at most MAX_DEPTH deep, with no cycle.

    Also bounds the work: more than MAX_VALUES values in all is an error, which keeps a value
    that shares one list many times over (a DAG) from costing exponential time. A fast pass
    answers yes or no; only on no does a second pass work out where and why.
    """
    if isinstance(value, _CONTAINERS) and _bounded(value, depth, MAX_VALUES) < 0:
        _explain_shape(value, argument, root, depth)


def _bounded(container: Container, depth: int, budget: int) -> int:
    """What is left of ``budget`` after counting ``container``'s values, or -1 on a problem.

    A cycle needs no check of its own here: it is found as nesting past MAX_DEPTH.
    """
    if depth > MAX_DEPTH:
        return -1
    budget -= len(container)
    if budget < 0:
        return -1
    for item in container.values() if isinstance(container, dict) else container:
        if type(item) not in _SCALARS and isinstance(item, _CONTAINERS):
            budget = _bounded(item, depth + 1, budget)
            if budget < 0:
                return -1
    return budget


def _explain_shape(value: Container, argument: str, root: str, depth: int) -> NoReturn:
    """Raise the error :func:`_bounded` found, naming the place."""
    path: list[Any] = []
    parents: list[int] = []  # ids of the containers on the way down to this one
    budget = [MAX_VALUES]

    def visit(container: Container, depth: int) -> None:
        if id(container) in parents:
            raise ValueError(
                f"{_where(argument, root, path)} contains itself (a reference cycle), which "
                "JSON cannot carry: pass a copy without the reference back"
            )
        if depth > MAX_DEPTH:
            raise ValueError(
                f"{_where(argument, root, path)} is nested more than {MAX_DEPTH} lists/dicts "
                f"deep; the limit is {MAX_DEPTH}: flatten it, or pass it as a JSON string"
            )
        budget[0] -= len(container)
        if budget[0] < 0:
            raise ValueError(
                f"{argument} holds more than {MAX_VALUES:,} values; the limit is "
                f"{MAX_VALUES:,}: pass a summary or a reference (an id, a URL) instead"
            )
        parents.append(id(container))
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for step, item in items:
            if type(item) not in _SCALARS and isinstance(item, _CONTAINERS):
                path.append(step)
                visit(item, depth + 1)
                path.pop()
        parents.pop()

    visit(value, depth)
    raise AssertionError("_explain_shape() found nothing wrong")  # pragma: no cover


def _explain(value: object, argument: str, root: str) -> NoReturn:
    """Raise the error for the first part of ``value`` that JSON cannot carry, with its path.

    Only runs after a check failed, on a value whose shape is already known to be bounded.
    """
    path: list[Any] = []

    def visit(item: object) -> None:
        if isinstance(item, str):
            if _has_surrogate(item):
                raise ValueError(f"{_where(argument, root, path)} {_surrogate_problem(item)}")
            return
        if isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and _has_surrogate(key):
                    raise ValueError(
                        f"{_where(argument, root, path)} key {key!r:.60} "
                        f"{_surrogate_problem(key)}"
                    )
                if not isinstance(key, str):
                    try:
                        encode_json({key: None})
                    except (TypeError, ValueError):
                        raise TypeError(
                            f"{_where(argument, root, path)} has the key {key!r:.60} of type "
                            f"{type(key).__name__}; keys must be str: convert it with str()"
                        ) from None
                path.append(key)
                visit(inner)
                path.pop()
            return
        if isinstance(item, (list, tuple)):
            for position, inner in enumerate(item):
                path.append(position)
                visit(inner)
                path.pop()
            return
        try:
            encode_json(item)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{_where(argument, root, path)} is not JSON-serialisable ({error}); "
                f"{_ALLOWED_VALUES}: convert it first, for example with str() or .isoformat()"
            ) from None

    visit(value)
    raise TypeError(f"{argument} is not JSON-serialisable; {_ALLOWED_VALUES}")


def _raise_for_bad_key(key: object, argument: str) -> None:
    if not isinstance(key, str):
        raise TypeError(f"{argument} keys must be str, got {type(key).__name__} key {key!r:.60}")
    if _has_surrogate(key):
        raise ValueError(f"{argument} key {key!r:.60} {_surrogate_problem(key)}")
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
    return tuple(dict.fromkeys(value))


def _raise_for_bad_tags(tags: list[Any] | tuple[Any, ...], argument: str) -> None:
    for position, tag in enumerate(tags):
        if not isinstance(tag, str):
            raise TypeError(
                f"{argument}[{position}] must be a str, got {type(tag).__name__} ({tag!r:.60})"
            )
        if not _is_clean_text(tag, MAX_TAG_LENGTH):
            raise ValueError(f"{argument}[{position}] {_text_problem(tag, MAX_TAG_LENGTH)}")
