"""_redaction_text: what the default detectors mask, what they leave, and that any text is safe."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessiontrace._redaction_text import DEFAULT_DETECTORS, custom_detector, scrub

MASKED = [
    ("mail ada.lovelace+ai@example.co.uk now", "mail [email] now"),
    ("<ADA@EXAMPLE.COM>", "<[email]>"),
    ("key sk-abcdefghijklmnopqrstuvwxyz0123", "key [api-key]"),
    ("sk-proj-AbCdEfGhIjKlMnOpQrStUvWx_yz-0123456789", "[api-key]"),
    ("anthropic sk-ant-api03-abcdefghijklmnopqrstuv", "anthropic [api-key]"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "token [api-key]"),
    ("slack xoxb-123456789012-abcdefghij", "slack [api-key]"),
    ("aws AKIAIOSFODNN7EXAMPLE.", "aws [api-key]."),
    ("Authorization: Bearer abc.DEF-ghi_jkl~123=", "Authorization: Bearer [token]"),
    ("BEARER abcdefgh12345678", "BEARER [token]"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "jwt [token]"),
    ("visa 4111 1111 1111 1111 ok", "visa [card] ok"),
    ("mc 5555-5555-5555-4444", "mc [card]"),
    ("amex 378282246310005", "amex [card]"),
    ("discover 6011111111111117,", "discover [card],"),
]

KEPT = [
    "no secrets here at all",
    "user@localhost",  # no top-level domain
    "@handle and a@b",
    "task-abcdefghijklmnopqrstuvwxyz0123",  # sk- inside a word
    "sk-short",
    "AKIAIOSFODNN7EXAMPLEX",  # one character too long for an access key id
    "bearer short",
    "4111 1111 1111 1112",  # fails the Luhn check
    "1796154844447056135",  # a nanosecond timestamp
    "order 4111111111111111111",  # 19 digits unbroken: an id, not a card
    "1234567890123",  # starts with 1
    "version 4.111111111111111",  # a decimal
]


@pytest.mark.parametrize(("text", "expected"), MASKED)
def test_each_kind_is_masked_with_its_label(text, expected):
    assert scrub(text) == (expected, 1)


@pytest.mark.parametrize("text", KEPT)
def test_look_alikes_are_left_as_they_are(text):
    assert scrub(text) == (text, 0)


def test_every_match_counts_once_and_the_rest_of_the_text_stays():
    text = "a@example.com, b@example.org; cards 4111111111111111 and 5555555555554444."
    assert scrub(text) == ("[email], [email]; cards [card] and [card].", 4)


printable = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
secretish = st.sampled_from([text for text, _ in MASKED] + KEPT)


@settings(max_examples=300)
@given(st.lists(st.one_of(printable, secretish), max_size=8).map(" ".join))
def test_any_text_is_scrubbed_without_error_and_scrubbing_twice_changes_nothing(text):
    once, count = scrub(text)
    assert scrub(once) == (once, 0)
    assert count >= 0 and (count == 0) == (once == text)
    # Nothing the reference expressions call an address or a card survives.
    assert not re.search(
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z]{2,}\b", once.replace("[email]", "")
    )


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000 + "@",
        "@" * 100_000,
        "a@" * 50_000 + "b.c",
        "4" * 200_000,
        "sk-" * 60_000,
        "Bearer " * 30_000,
        "eyJ" * 60_000 + ".",
    ],
)
def test_hostile_text_finishes(text):
    # Each quantifier is bounded: these would take minutes with an unbounded expression.
    masked, _ = scrub(text)
    assert isinstance(masked, str)


def test_a_custom_pattern_masks_with_its_label_and_bad_ones_are_refused():
    detector = custom_detector("employee", r"EMP-\d{6}")
    assert scrub("ask EMP-123456", (detector,)) == ("ask [employee]", 1)
    for label, pattern, fragment in (
        ("", "x", "non-empty"),
        ("a]b", "x", "without brackets"),
        ("ok", "(", "does not compile"),
        ("ok", "x*", "matches empty text"),
    ):
        with pytest.raises(ValueError, match=fragment):
            custom_detector(label, pattern)


def test_the_defaults_are_the_documented_kinds():
    assert [d.label for d in DEFAULT_DETECTORS] == [
        "email", "api-key", "token", "token", "card"
    ]  # fmt: skip
