"""Redaction for every span before any exporter sees it: the rule set, and its exporter wrapper.

``configure(redact=True)`` applies :class:`Redaction` to each span as it ends, in the one
processor between every instrumentation and every destination, so the local store and OTLP
get the same masked copy. :class:`Redactor` does the same in front of any ``SpanExporter``,
for pipelines built by hand. An ended span is read-only, so a span with something to mask is
sent as a copy (``_spans.copy_span``); one with nothing to mask is sent as it is.

What is masked, in each string attribute (each string of an array too), each event
attribute and the status description: the detectors of ``_redaction_text`` (on by default),
the user's own patterns, keys to drop or mask by glob, the content switches users already set
(``_redaction_env``), and a callable. sessiontrace's own keys (session, user, tags, step) are
never touched. The span records how many values were masked under
``sessiontrace.redaction.count``.

Example:
    >>> from opentelemetry.sdk.trace import ReadableSpan
    >>> span = ReadableSpan("chat", attributes={"input.value": "mail ada@example.com"})
    >>> dict(Redaction().redact(span).attributes)
    {'input.value': 'mail [email]', 'sessiontrace.redaction.count': 1}
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status
from opentelemetry.util.types import AttributeValue

from sessiontrace import _keys
from sessiontrace._guard import LogOnce
from sessiontrace._redaction_env import REDACTED_VALUE, hidden_key_rule
from sessiontrace._redaction_text import DEFAULT_DETECTORS, Detector, custom_detector, scrub
from sessiontrace._spans import attributes_of, copy_span

Custom = Callable[[str, AttributeValue], "AttributeValue | None"]

MASKED = "[masked]"
"""What the value of a key in ``mask_keys`` becomes."""

FAILED = "[redaction-failed]"
"""What a value becomes when the ``custom`` callable raised on it (masking fails closed)."""

_DROP, _MASK, _HIDE, _SCRUB, _KEEP = range(5)
_KEY_CACHE_SIZE = 4096
# Texts from 256 characters to 16 KB have their results cached, 64 at most (up to 2 MB held).
_CACHED_MIN, _CACHED_MAX, _CACHE_ENTRIES = 256, 16384, 64
_custom_failed = LogOnce()


class Redaction:
    """What to mask in every span, and how.

    Args:
        defaults: Mask e-mail addresses, API keys (OpenAI-style ``sk-...``, GitHub, Slack, AWS
            access key ids), bearer tokens and JSON Web Tokens, and card numbers that pass the
            Luhn check, as ``[email]``, ``[api-key]``, ``[token]``, ``[card]``.
        patterns: More to mask: ``{label: regular expression}``; a match becomes ``[label]``.
        drop_keys: Attribute keys to remove, as glob patterns (``"http.request.header.*"``).
        mask_keys: Attribute keys whose whole value becomes ``[masked]``
            (``"llm.input_messages.*"``).
        custom: Called as ``custom(key, value)`` for every attribute left after the rules
            above; returns the value to send, or ``None`` to drop the attribute. If it
            raises, the value becomes ``[redaction-failed]``.
        environment: Also honour ``OPENINFERENCE_HIDE_*`` and
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=false``, read now.

    Raises:
        ValueError, TypeError: an argument is not one of the above, naming it.

    Example:
        >>> rules = Redaction(patterns={"employee": r"EMP-\\d{6}"}, drop_keys=["db.statement"])
    """

    def __init__(
        self,
        *,
        defaults: bool = True,
        patterns: Mapping[str, str | re.Pattern[str]] | None = None,
        drop_keys: Iterable[str] = (),
        mask_keys: Iterable[str] = (),
        custom: Custom | None = None,
        environment: bool = True,
    ) -> None:
        for name, flag in (("defaults", defaults), ("environment", environment)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {type(flag).__name__}")
        if patterns is not None and not isinstance(patterns, Mapping):
            raise TypeError(
                "patterns must be a mapping of label to regular expression, such as "
                f"{{'employee': r'EMP-\\d{{6}}'}}, got {type(patterns).__name__}"
            )
        if custom is not None and not callable(custom):
            raise TypeError(f"custom must be callable as custom(key, value), got {custom!r:.60}")
        own = tuple(custom_detector(label, pattern) for label, pattern in (patterns or {}).items())
        self._detectors: tuple[Detector, ...] = (DEFAULT_DETECTORS if defaults else ()) + own
        self._drop = _globs("drop_keys", drop_keys)
        self._mask = _globs("mask_keys", mask_keys)
        self._hidden = hidden_key_rule() if environment else None
        self._custom = custom
        self._actions: dict[str, int] = {}
        self._cache: dict[str, tuple[str, int]] = {}

    @property
    def is_empty(self) -> bool:
        """Whether these rules can change nothing (no detector, key rule or callable)."""
        return not (self._detectors or self._drop or self._mask or self._hidden or self._custom)

    def redact(self, span: ReadableSpan) -> ReadableSpan:
        """``span``, or a copy of it with what the rules mask masked and the count recorded."""
        attributes, count = self.attributes(attributes_of(span))
        events: list[Event] | None = None
        for position, event in enumerate(span.events):
            masked, found = self.attributes(event.attributes)
            if masked is not None:
                if events is None:
                    events = list(span.events)
                events[position] = Event(event.name, masked, event.timestamp)
                count += found
        status = span.status
        if status.description and self._detectors:
            text, found = scrub(status.description, self._detectors)
            if found:
                status, count = Status(status.status_code, text), count + found
        if not count:
            return span
        changed = attributes_of(span) if attributes is None else attributes
        changed[_keys.REDACTION_COUNT] = count
        return copy_span(
            span,
            attributes=changed,
            events=span.events if events is None else events,
            status=status,
        )

    def attributes(
        self, attributes: Mapping[str, AttributeValue] | None
    ) -> tuple[dict[str, AttributeValue] | None, int]:
        """The attributes with the rules applied (``None``: unchanged), and how many values
        were masked (each match of a detector, each key dropped or masked)."""
        if not attributes:
            return None, 0
        if type(attributes) is BoundedAttributes:  # an event's: its own copy is C speed
            attributes = attributes.copy()
        changed: dict[str, AttributeValue] | None = None
        count = 0
        for key, value in attributes.items():
            action = self._action(key)
            if action == _KEEP:
                continue
            new: AttributeValue | None
            found = 1
            if action == _DROP:
                new = None
            elif action == _MASK:
                new = MASKED
            elif action == _HIDE:
                new = REDACTED_VALUE
            else:
                new, found = self._scrubbed(value)
            if self._custom is not None and new is not None:
                customized = self._customized(key, new)
                if customized is not new and not found:
                    found = 1
                new = customized
            if new is value:
                continue
            if changed is None:
                changed = dict(attributes)
            if new is None:
                del changed[key]
            else:
                changed[key] = new
            count += found
        return changed, count

    def _action(self, key: str) -> int:
        action = self._actions.get(key)
        if action is None:
            action = self._decide(key)
            if len(self._actions) < _KEY_CACHE_SIZE:
                self._actions[key] = action
        return action

    def _decide(self, key: str) -> int:
        if key in _keys.NEVER_REDACTED or key.startswith(_keys.SUMMARY_PREFIX):
            return _KEEP
        if self._drop is not None and self._drop.fullmatch(key):
            return _DROP
        if self._mask is not None and self._mask.fullmatch(key):
            return _MASK
        hidden = self._hidden(key) if self._hidden is not None else None
        if hidden is not None:
            return _DROP if hidden == "drop" else _HIDE
        return _SCRUB if self._detectors or self._custom else _KEEP

    def _scrubbed(self, value: AttributeValue) -> tuple[AttributeValue, int]:
        """The value with the detectors' matches masked, and how many there were."""
        detectors = self._detectors
        if not detectors:
            return value, 0
        if isinstance(value, str):
            text, found = self._scrub(value)
            return (text, found) if found else (value, 0)
        if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
            items = list(value)
            total = 0
            for position, item in enumerate(items):
                if isinstance(item, str):
                    text, found = self._scrub(item)
                    if found:
                        items[position], total = text, total + found
            return (tuple(items), total) if total else (value, 0)
        return value, 0

    def _scrub(self, text: str) -> tuple[str, int]:
        # The same long text comes again and again: OpenInference records a prompt twice
        # (input.value and the message), and a system prompt opens every call. Long texts'
        # results are kept in a small cache (a race between threads only computes twice).
        if not _CACHED_MIN <= len(text) <= _CACHED_MAX:
            return scrub(text, self._detectors)
        cache = self._cache
        done = cache.get(text)
        if done is None:
            done = scrub(text, self._detectors)
            if len(cache) >= _CACHE_ENTRIES:
                cache.clear()
            cache[text] = done
        return done

    def _customized(self, key: str, value: AttributeValue) -> AttributeValue | None:
        try:
            return self._custom(key, value)  # type: ignore[misc]
        except Exception as error:  # the user's code: fail closed, never raise into the span
            _custom_failed.log(
                type(error).__name__,
                "sessiontrace: the redaction callable raised %r on %s; the value was sent as "
                "%s. Fix the callable so it returns a value or None for every attribute",
                error,
                key,
                FAILED,
            )
            return FAILED


def _globs(argument: str, patterns: Iterable[str]) -> re.Pattern[str] | None:
    if isinstance(patterns, str):
        raise TypeError(
            f"{argument} must be a list of glob patterns, not one string: [{patterns!r}]"
        )
    listed = list(patterns)
    for pattern in listed:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"{argument} holds {pattern!r:.60}; each must be a non-empty glob")
    if not listed:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in listed))


class Redactor(SpanExporter):
    """A ``SpanExporter`` that redacts each span (``Redaction``), then hands it to ``exporter``.

    For pipelines built by hand; ``configure(redact=...)`` needs none. A span the rules
    cannot be applied to (a bug) is not sent unmasked: it is dropped and counted.

    Example:
        >>> from opentelemetry.sdk.trace.export import BatchSpanProcessor
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        ...     InMemorySpanExporter)
        >>> processor = BatchSpanProcessor(Redactor(InMemorySpanExporter()))
    """

    def __init__(self, exporter: SpanExporter, redaction: Redaction | None = None) -> None:
        if not isinstance(exporter, SpanExporter):
            raise TypeError(f"exporter must be a SpanExporter, got {type(exporter).__name__}")
        if redaction is not None and not isinstance(redaction, Redaction):
            raise TypeError(
                f"redaction must be a sessiontrace.Redaction, got {type(redaction).__name__}"
            )
        self.exporter = exporter
        self.redaction = Redaction() if redaction is None else redaction

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        destination = type(self.exporter).__name__
        return self.exporter.export(redact_all(self.redaction, spans, destination))

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.exporter.force_flush(timeout_millis))


def redact_all(
    redaction: Redaction, spans: Sequence[ReadableSpan], destination: str
) -> list[ReadableSpan]:
    """Each span redacted; one the rules fail on is dropped and counted, never sent as is."""
    from sessiontrace.export._losses import record_loss  # the export package imports this one

    kept: list[ReadableSpan] = []
    failed = 0
    for span in spans:
        try:
            kept.append(redaction.redact(span))
        except Exception:
            failed += 1
    if failed:
        record_loss(
            "redaction-failed",
            destination,
            failed,
            "redaction raised on these spans, so they were dropped rather than sent unmasked; "
            "report it with the span's attributes' types",
        )
    return kept


def as_redaction(value: Any) -> Redaction | None:
    """``configure(redact=...)``'s value as rules: ``True`` the defaults, ``False`` none."""
    if value is True:
        return Redaction()
    if value is False or value is None:
        return None
    if isinstance(value, Redaction):
        return value
    raise TypeError(
        "redact must be True, False or a sessiontrace.Redaction(...) rule set, got "
        f"{type(value).__name__}"
    )
