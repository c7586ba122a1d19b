"""SessionSampler: keep or drop whole sessions, the same way in every process.

A trace-id ratio sampler decides each trace on its own, so it keeps some turns of a
conversation and drops others. :class:`SessionSampler` decides a root span by the session it
starts in instead: a stable hash of the session id (BLAKE2b, not Python's salted ``hash()``)
against the ratio, so every trace of a session, in every process and on every machine, gets
the same decision. Spans with a parent follow the parent's sampled flag (local or remote, as
``ParentBased`` does); root spans outside any session fall back to ``TraceIdRatioBased``.

It is also the ``sessiontrace`` entry point of the ``opentelemetry_traces_sampler`` group
(:func:`sampler_from_argument`), and :func:`env_sampler` gives configure() the sampler that
``OTEL_TRACES_SAMPLER=sessiontrace`` selects. See docs/sampling.md.
"""

from __future__ import annotations

import hashlib
import logging
import math
import numbers
import os
from collections.abc import Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.environment_variables import (
    OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from sessiontrace._context import entry_in, get_current
from sessiontrace._guard import LogOnce, internal_error
from sessiontrace._keys import SESSION_ID_KEYS

logger = logging.getLogger("sessiontrace")

ENTRY_POINT_NAME = "sessiontrace"
"""The name under ``opentelemetry_traces_sampler``: ``OTEL_TRACES_SAMPLER=sessiontrace``."""

_LIMIT = 1 << 64  # hashes and the low 64 bits of trace ids are below this, as in the SDK
_KEEP = SamplingResult(Decision.RECORD_AND_SAMPLE)
_DROP = SamplingResult(Decision.DROP)
_said = LogOnce()


def check_ratio(ratio: object) -> float:
    """Return ``ratio`` as a float if it is a number from 0 to 1, else raise.

    Raises:
        TypeError: ``ratio`` is not a real number (a bool is refused too).
        ValueError: it is not from 0 to 1 (NaN included).

    Example:
        >>> check_ratio(0.25)
        0.25
    """
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise TypeError(
            f"SessionSampler(ratio=...) must be a number from 0 to 1, the share of sessions to "
            f"keep (such as 0.25), got {type(ratio).__name__} ({ratio!r:.60})"
        )
    value = float(ratio)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"SessionSampler(ratio=...) must be from 0 to 1, the share of sessions to keep "
            f"(0 keeps none, 1 keeps all), got {ratio!r}"
        )
    return value


def session_hash(session_id: str) -> int:
    """The session's place in ``[0, 2**64)``: the first 8 bytes of its BLAKE2b digest.

    The digest is of the id's UTF-8 bytes (lone surrogates kept as ``surrogatepass`` encodes
    them), read as a big-endian unsigned integer: the same in every process, on every machine
    and in every language, unlike Python's ``hash()``, which is salted per process.

    Example:
        >>> session_hash("chat-42") == session_hash("chat-42")
        True
    """
    digest = hashlib.blake2b(session_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


def _attribute_session(attributes: Attributes) -> str | None:
    """The session a span's start attributes name, by the store's rule (``session_keys``):
    the first of ``SESSION_ID_KEYS`` holding non-empty text or a whole number."""
    if not attributes:
        return None
    for key in SESSION_ID_KEYS:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


class SessionSampler(Sampler):
    """Keep or drop whole sessions: every trace of a session gets the same decision.

    A root span (one with no valid parent) that starts in a session is kept when the
    session id's stable hash falls under ``ratio``; the session is the one sessiontrace has
    in force in the span's context, else the one the span's start attributes name
    (``session.id`` or another session key). A span with a parent, local or remote, follows
    the parent's sampled flag. A root span outside any session is sampled by its trace id,
    as ``TraceIdRatioBased(ratio)`` does. The sampler never raises into the application: on
    an internal error it decides by the trace id too.

    Args:
        ratio: the share of sessions to keep, from 0 (none) to 1 (all).

    Raises:
        TypeError: ``ratio`` is not a number (or is a bool).
        ValueError: ``ratio`` is not from 0 to 1.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> import sessiontrace
        >>> sampler = sessiontrace.SessionSampler(0.25)
        >>> sampler.get_description()
        'SessionSampler{0.25}'
        >>> provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
        >>> tracer = provider.get_tracer("example")
        >>> with sessiontrace.using_session("chat-42"):
        ...     kept = [tracer.start_span("turn").is_recording() for _ in range(3)]
        >>> kept == [sampler.keeps("chat-42")] * 3
        True
    """

    def __init__(self, ratio: float) -> None:
        self._ratio = check_ratio(ratio)
        # round() as TraceIdRatioBased.get_bound_for_rate: 1.0 keeps every hash, 0.0 none.
        self._bound = round(self._ratio * _LIMIT)
        # Root spans decided, kept and dropped. Plain counters, no lock on the hot path: under
        # free-threaded Python two increments at once may count as one.
        self._kept = 0
        self._dropped = 0

    @property
    def ratio(self) -> float:
        """The share of sessions kept, from 0 to 1."""
        return self._ratio

    def keeps(self, session_id: str) -> bool:
        """Whether this sampler keeps the session ``session_id`` (the same in any process).

        Example:
            >>> SessionSampler(1).keeps("chat-42"), SessionSampler(0).keeps("chat-42")
            (True, False)
        """
        return session_hash(session_id) < self._bound

    def counts(self) -> dict[str, int]:
        """Root spans decided so far: how many were kept and how many dropped.

        Children follow their root and are not counted. A dropped span is a decision, not a
        loss: it is not recorded with the losses ``sessiontrace doctor`` shows.

        Example:
            >>> SessionSampler(0.5).counts()
            {'kept': 0, 'dropped': 0}
        """
        return {"kept": self._kept, "dropped": self._dropped}

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Decide one span: by its parent, else its session, else its trace id."""
        try:
            parent = get_current_span(parent_context).get_span_context()
            if parent.is_valid:
                sampled = parent.trace_flags.sampled
                decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP
                return SamplingResult(decision, attributes if sampled else None, parent.trace_state)
            entry = entry_in(get_current() if parent_context is None else parent_context)
            session_id = None if entry is None else entry.frame.session_id
            if session_id is None:
                session_id = _attribute_session(attributes)
            if session_id is None:
                keep = trace_id & (_LIMIT - 1) < self._bound
            else:
                keep = session_hash(session_id) < self._bound
        except Exception:
            internal_error("SessionSampler.should_sample")
            keep = isinstance(trace_id, int) and trace_id & (_LIMIT - 1) < self._bound
        if keep:
            self._kept += 1
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes) if attributes else _KEEP
        self._dropped += 1
        return _DROP

    def get_description(self) -> str:
        """``SessionSampler{<ratio>}``, as the SDK's samplers describe themselves."""
        return f"SessionSampler{{{self._ratio}}}"

    def __repr__(self) -> str:
        return f"SessionSampler({self._ratio!r})"


def sampler_from_argument(argument: float | str | None) -> SessionSampler:
    """The ``opentelemetry_traces_sampler`` entry point: ``OTEL_TRACES_SAMPLER_ARG`` to a sampler.

    OpenTelemetry's configurator (``opentelemetry-instrument``) calls it with the variable's
    text, or None when it is unset. Unset or blank means ratio 1 (the specification's default
    for ratio samplers); text that is not a number from 0 to 1 is logged as a warning and
    ratio 1 used, as the SDK does for ``traceidratio``: nothing is dropped by mistake.

    Example:
        >>> sampler_from_argument("0.25")
        SessionSampler(0.25)
    """
    if argument is None or (isinstance(argument, str) and not argument.strip()):
        return SessionSampler(1.0)
    try:
        return SessionSampler(float(argument))
    except (TypeError, ValueError):
        logger.warning(
            "sessiontrace: %s=%r is not a number from 0 to 1; keeping every session (ratio "
            "1.0). Set it to the share of sessions to keep, such as 0.25.",
            OTEL_TRACES_SAMPLER_ARG,
            argument,
        )
        return SessionSampler(1.0)


def selected(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``OTEL_TRACES_SAMPLER`` names this sampler."""
    environ = os.environ if environ is None else environ
    return environ.get(OTEL_TRACES_SAMPLER, "").strip().lower() == ENTRY_POINT_NAME


def env_sampler(environ: Mapping[str, str] | None = None) -> SessionSampler | None:
    """The sampler ``OTEL_TRACES_SAMPLER=sessiontrace`` selects, for a provider configure() makes.

    None when the variable names another sampler: ``TracerProvider`` reads the SDK's own
    ones (``traceidratio`` and the rest) itself, but it does not load entry points.
    """
    environ = os.environ if environ is None else environ
    if not selected(environ):
        return None
    return sampler_from_argument(environ.get(OTEL_TRACES_SAMPLER_ARG))


def check_provider_sampler(provider: TracerProvider) -> None:
    """Warn once if the environment selects this sampler but ``provider`` was made without it.

    configure() never changes the sampler of a provider it was given or adopted.
    """
    if selected() and not isinstance(getattr(provider, "sampler", None), SessionSampler):
        _said.log(
            "provider-sampler",
            "sessiontrace: %s=%s is set, but the tracer provider configure() was given or found "
            "installed was made with another sampler, which stays; a TracerProvider does not "
            "load sampler entry points itself. Make it with "
            "TracerProvider(sampler=sessiontrace.SessionSampler(ratio)).",
            OTEL_TRACES_SAMPLER,
            ENTRY_POINT_NAME,
        )
