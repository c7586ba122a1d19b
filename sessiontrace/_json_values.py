"""JSON values sessiontrace accepts: their encoder, bounds on their shape, and the errors.

Metadata and state are JSON values that nest at most ``MAX_DEPTH`` lists and dicts deep, hold
at most ``MAX_VALUES`` values and never contain themselves, so checking and encoding them is
bounded and never hits Python's recursion limit. Text must be valid Unicode: a lone surrogate
cannot be written as UTF-8. The checks in ``_validate`` answer yes or no fast; the functions
here work out, only on no, which part of a value is wrong and name it.

Example:
    >>> encode_json({"plan": "pro"})
    '{"plan": "pro"}'
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NoReturn

# Lists and dicts nested at most this deep, holding at most this many values.
MAX_DEPTH = 32
MAX_VALUES = 100_000

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
encode_json = _ENCODER.encode
SCALARS = frozenset({str, int, float, bool, type(None)})
CONTAINERS = (dict, list, tuple)
Container = dict[Any, Any] | list[Any] | tuple[Any, ...]
SURROGATE = re.compile("[\ud800-\udfff]")
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


def surrogate_problem(value: str) -> str:
    """Where the first lone surrogate in ``value`` is, and how to get rid of it."""
    found = SURROGATE.search(value)
    assert found is not None  # only called for text that has one
    return (
        f"contains the lone surrogate {found.group()!r} (U+{ord(found.group()):04X}) at "
        f"position {found.start()}; only valid Unicode text is allowed (a lone surrogate "
        "cannot be written as UTF-8): fix the text where it was decoded, for example "
        "with bytes.decode(errors='replace')"
    )


def has_surrogate(text: str) -> bool:
    # isascii() is O(1) in CPython: ASCII text, the usual case, skips the rest. Encoding is
    # twice as fast as a regex search for short text, and fails exactly on lone surrogates.
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def where(argument: str, root: str, path: list[Any]) -> str:
    """Name a place in a value: ``metadata['a'][0]`` or ``value (state['k'][0])``."""
    shown = path if len(path) <= 8 else [*path[:4], ..., *path[-2:]]
    place = root + "".join("[...]" if step is ... else f"[{step!r:.40}]" for step in shown)
    return place if root == argument else f"{argument} ({place})"


def check_shape(value: object, argument: str, root: str, depth: int = 1) -> None:
    """Raise unless ``value`` nests lists and dicts at most MAX_DEPTH deep, with no cycle.

    Also bounds the work: more than MAX_VALUES values in all is an error, which keeps a value
    that shares one list many times over (a DAG) from costing exponential time. A fast pass
    answers yes or no; only on no does a second pass work out where and why.
    """
    if isinstance(value, CONTAINERS) and _bounded(value, depth, MAX_VALUES) < 0:
        explain_shape(value, argument, root, depth)


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
        if type(item) not in SCALARS and isinstance(item, CONTAINERS):
            budget = _bounded(item, depth + 1, budget)
            if budget < 0:
                return -1
    return budget


def explain_shape(value: Container, argument: str, root: str, depth: int) -> NoReturn:
    """Raise the error :func:`_bounded` found, naming the place."""
    path: list[Any] = []
    parents: list[int] = []  # ids of the containers on the way down to this one
    budget = [MAX_VALUES]

    def visit(container: Container, depth: int) -> None:
        if id(container) in parents:
            raise ValueError(
                f"{where(argument, root, path)} contains itself (a reference cycle), which "
                "JSON cannot carry: pass a copy without the reference back"
            )
        if depth > MAX_DEPTH:
            raise ValueError(
                f"{where(argument, root, path)} is nested more than {MAX_DEPTH} lists/dicts "
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
            if type(item) not in SCALARS and isinstance(item, CONTAINERS):
                path.append(step)
                visit(item, depth + 1)
                path.pop()
        parents.pop()

    visit(value, depth)
    raise AssertionError("explain_shape() found nothing wrong")  # pragma: no cover


def explain(value: object, argument: str, root: str) -> NoReturn:
    """Raise the error for the first part of ``value`` that JSON cannot carry, with its path.

    Only runs after a check failed, on a value whose shape is already known to be bounded.
    """
    path: list[Any] = []

    def visit(item: object) -> None:
        if isinstance(item, str):
            if has_surrogate(item):
                raise ValueError(f"{where(argument, root, path)} {surrogate_problem(item)}")
            return
        if isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and has_surrogate(key):
                    raise ValueError(
                        f"{where(argument, root, path)} key {key!r:.60} "
                        f"{surrogate_problem(key)}"
                    )
                if not isinstance(key, str):
                    try:
                        encode_json({key: None})
                    except (TypeError, ValueError):
                        raise TypeError(
                            f"{where(argument, root, path)} has the key {key!r:.60} of type "
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
                f"{where(argument, root, path)} is not JSON-serialisable ({error}); "
                f"{_ALLOWED_VALUES}: convert it first, for example with str() or .isoformat()"
            ) from None

    visit(value)
    raise TypeError(f"{argument} is not JSON-serialisable; {_ALLOWED_VALUES}")
