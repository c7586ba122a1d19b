"""Masking personal data and secrets in text: e-mail addresses, API keys, tokens, card numbers.

Each detector has a cheap test of plain substring searches (C speed, a fraction of a
microsecond on 2 KB) that rules out most text before any regular expression runs, and each
expression starts with a literal where it can, so SQLite-sized inputs cost microseconds and
no input makes an expression backtrack for long (every quantifier is bounded). A match is
replaced by a label that says what was there (``[email]``). A run of digits counts as a card
number only when it could be one (13 to 19 digits starting with 2 to 6; unbroken, at most 16)
and passes the Luhn check, so order numbers and timestamps stay.

Example:
    >>> scrub("write to ada@example.com with key sk-proj-abcdefghijklmnopqrstuvwx")
    ('write to [email] with key [api-key]', 2)
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass

Spans = list[tuple[int, int]]


@dataclass(frozen=True)
class Detector:
    """One kind of value to mask: its label, a cheap test, and where it is in a text."""

    label: str
    might_match: Callable[[str], bool]
    find: Callable[[str], Spans]

    @property
    def mask(self) -> str:
        return f"[{self.label}]"


def _matches(pattern: re.Pattern[str], group: int = 0) -> Callable[[str], Spans]:
    return lambda text: [match.span(group) for match in pattern.finditer(text)]


# E-mail: find each "@", match the domain after it, walk the local part back from it.
_DOMAIN = re.compile(r"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b")
_LOCAL = frozenset(string.ascii_letters + string.digits + "._%+-")


def _emails(text: str) -> Spans:
    # Walked by hand: an expression for the local part would be tried at every character.
    found: Spans = []
    at = text.find("@")
    while at != -1:
        domain = _DOMAIN.match(text, at)
        start = at
        while domain is not None and start > 0 and at - start < 64 and text[start - 1] in _LOCAL:
            start -= 1
        if domain is not None and start < at:
            found.append((start, domain.end()))
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)
    return found


# Every expression starts with a literal, so the regular expression engine skips to each
# occurrence at C speed; what must not come before a match (a longer word, a longer id) is
# checked on the few matches, in Python, since a look-behind first would cost 30 times more.
_ALNUM = frozenset(string.ascii_letters + string.digits)
_UPPER_ALNUM = frozenset(string.ascii_uppercase + string.digits)


def _standalone(pattern: str, before: frozenset[str], group: int = 0) -> Callable[[str], Spans]:
    compiled = re.compile(pattern)

    def find(text: str) -> Spans:
        return [
            match.span(group)
            for match in compiled.finditer(text)
            if not match.start() or text[match.start() - 1] not in before
        ]

    return find


# OpenAI (sk-..., sk-proj-..., sk-svcacct-...), Anthropic (sk-ant-...) and other sk- keys.
_SK_KEYS = _standalone(r"sk-[A-Za-z0-9_-]{20,200}", _ALNUM)
_GITHUB = _standalone(r"gh[pousr]_[A-Za-z0-9]{30,100}", _ALNUM)
_SLACK = _standalone(r"xox[abposr]-[A-Za-z0-9-]{10,200}", _ALNUM)
# AWS access key ids: long-lived (AKIA) and temporary (ASIA); not inside a longer id.
_AWS = _standalone(r"A[KS]IA[A-Z0-9]{16}(?![A-Z0-9])", _UPPER_ALNUM)
_TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~+/=-]{8,4096}")


def _bearer_tokens(text: str) -> Spans:
    # "Bearer <token>", "bearer <token>", "BEARER <token>": the word stays, the token goes.
    found: Spans = []
    for word in ("earer ", "EARER "):
        at = text.find(word)
        while at != -1:
            if at and text[at - 1] in "Bb":
                token = _TOKEN_CHARACTERS.match(text, at + len(word))
                if token is not None:
                    found.append(token.span())
            at = text.find(word, at + 1)
    return sorted(found)


# A JSON Web Token: three base64url parts, the first two JSON objects ("eyJ").
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{8,4096}\.[A-Za-z0-9_-]{0,4096}")


def _keys(text: str) -> Spans:
    found: Spans = []
    if "-" in text:  # one-character tests first (memchr speed)
        found += _SK_KEYS(text) + _SLACK(text)
    if "_" in text:
        found += _GITHUB(text)
    if "A" in text:
        found += _AWS(text)
    return sorted(found)


# Cards are found on the text's "shape": one byte per character (so positions agree), "0"
# for a digit, "-" for a space or dash, "x" for anything else. Finding stretches of digits and
# counting them are then byte searches at C speed; the expression runs only on a stretch with
# 13 digits or more, which a date or a price never has.
_SHAPE = bytes(
    ord("0") if chr(code).isdigit() and code < 128 else ord("-") if chr(code) in " -" else ord("x")
    for code in range(256)
)
_CARD = re.compile(r"[2-6](?:[ -]?\d){12,18}(?!\d|\.\d)")


def _cards(text: str) -> Spans:
    shape = text.encode("ascii", "replace").translate(_SHAPE)
    found: Spans = []
    at = shape.find(b"0000")
    while at != -1:
        left = shape.rfind(b"x", 0, at) + 1
        right = shape.find(b"x", at)
        right = len(shape) if right == -1 else right
        if shape.count(b"0", left, right) >= 13:
            found.extend(_cards_in(text, left, right))
        at = shape.find(b"0000", right)
    return found


def _cards_in(text: str, left: int, right: int) -> Spans:
    found: Spans = []
    position = left
    while position < right:
        card = None
        if text[position] in "23456" and not (position and text[position - 1].isdigit()):
            card = _CARD.match(text, position, right)
            # the decimals of a number ("4.111...") are no card
            decimals = position >= 2 and text[position - 1] == "." and text[position - 2].isdigit()
            if card is not None and (decimals or not _is_card_number(card.group())):
                card = None
        if card is None:
            position += 1
        else:
            found.append(card.span())
            position = card.end()
    return found


def _is_card_number(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    if text.isdigit() and len(digits) > 16:  # a 17- to 19-digit run is far likelier an id
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


DEFAULT_DETECTORS: tuple[Detector, ...] = (
    Detector("email", lambda text: "@" in text, _emails),
    Detector("api-key", lambda text: True, _keys),
    Detector("token", lambda text: True, _bearer_tokens),
    Detector("token", lambda text: "J" in text, _matches(_JWT)),
    Detector("card", lambda text: len(text) >= 13, _cards),
)
"""What ``configure(redact=True)`` masks, in the order the detectors run."""


def custom_detector(label: str, pattern: str | re.Pattern[str]) -> Detector:
    """A detector for a user's own pattern, masked as ``[label]``.

    Raises:
        ValueError: the label is empty or holds a bracket, or the pattern does not compile or
            matches empty text.
    """
    if not isinstance(label, str) or not label or any(c in label for c in "[]\n"):
        raise ValueError(
            f"a pattern's label must be non-empty text without brackets or newlines, got "
            f"{label!r:.60}; it is shown as [label] where the pattern matched"
        )
    try:
        compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
    except (re.error, TypeError) as error:
        raise ValueError(f"the pattern for {label!r} does not compile: {error}") from None
    if compiled.search("") is not None:
        raise ValueError(
            f"the pattern for {label!r} matches empty text, so it would mask between every "
            "character; make it match at least one character"
        )
    return Detector(label, lambda text: True, _matches(compiled))


def scrub(text: str, detectors: tuple[Detector, ...] = DEFAULT_DETECTORS) -> tuple[str, int]:
    """``text`` with every match of ``detectors`` masked, and how many values were masked."""
    if len(text) < 6 and detectors is DEFAULT_DETECTORS:
        return text, 0  # shorter than the shortest address ("a@b.co"), key or card
    masked = 0
    for detector in detectors:
        if not detector.might_match(text):
            continue
        found = detector.find(text)
        if not found:
            continue
        pieces: list[str] = []
        last = 0
        for start, end in found:
            if start < last:  # overlaps what this detector already masked
                continue
            pieces += (text[last:start], detector.mask)
            last = end
            masked += 1
        pieces.append(text[last:])
        text = "".join(pieces)
    return text, masked
