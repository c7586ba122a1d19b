"""_json_values: bounded shapes, one shared encoder, and errors that name the bad part."""

from __future__ import annotations

import math

import pytest

from sessiontrace._json_values import (
    MAX_DEPTH,
    MAX_VALUES,
    check_shape,
    encode_flat_json,
    encode_json,
    explain,
    has_surrogate,
    where,
)


def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_the_flat_encoder_writes_what_json_writes():
    flat = {"s": "café", "i": 3, "f": 1.5, "b": True, "n": None}
    assert encode_flat_json(flat) == encode_json(flat) == (
        '{"s": "café", "i": 3, "f": 1.5, "b": true, "n": null}'
    )


def test_nan_is_refused_by_the_encoder():
    with pytest.raises(ValueError):
        encode_json({"k": math.nan})


def test_shapes_within_the_bounds_pass_and_beyond_them_name_the_place():
    check_shape({"k": nested(MAX_DEPTH - 1)}, "metadata", "metadata")
    with pytest.raises(ValueError, match=r"metadata\['k'\]"):
        check_shape({"k": nested(MAX_DEPTH + 1)}, "metadata", "metadata")
    shared = list(range(1000))
    with pytest.raises(ValueError, match=f"the limit is {MAX_VALUES:,}"):
        check_shape({"k": [shared] * (MAX_VALUES // 1000 + 1)}, "metadata", "metadata")
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError):
        check_shape({"k": loop}, "metadata", "metadata")


def test_explain_names_the_first_bad_part_with_its_path():
    with pytest.raises(TypeError, match=r"metadata\['a'\]\[1\] is not JSON-serialisable"):
        explain({"a": [1, object()]}, "metadata", "metadata")
    with pytest.raises(ValueError, match=r"value \(state\['k'\]\[0\]\) contains the lone"):
        explain(["\ud800"], "value", "state['k']")


def test_where_shortens_long_paths_and_surrogates_are_found():
    assert where("metadata", "metadata", ["a", 0]) == "metadata['a'][0]"
    assert "[...]" in where("metadata", "metadata", list(range(20)))
    assert has_surrogate("a\udc80") and not has_surrogate("café") and not has_surrogate("ascii")
