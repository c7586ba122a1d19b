"""Reading a session from an incoming request: headers, W3C baggage, and a trust policy.

Values in a request come from the client, as bytes: a plain header (``X-Session-Id``) is
UTF-8, optionally percent-encoded; a baggage value is percent-encoded UTF-8 (W3C), properties
dropped. A value that is not a valid id (bad UTF-8 or escapes, control characters, oversize,
conflicting repeats) is ignored and logged once per reason with the fix, never an error
response, never stamped. A trust policy decides whether a request's values are taken at all.
Both middlewares share this one reading, so a request reads the same under ASGI and WSGI.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import quote, unquote_to_bytes

from opentelemetry import trace

from sessiontrace import _frames, _keys
from sessiontrace._context import current_entry, hold, release
from sessiontrace._guard import LogOnce, guarded
from sessiontrace._using import using_attributes
from sessiontrace._validate import MAX_ID_LENGTH, check_id

logger = logging.getLogger("sessiontrace")

Trust = Literal["all", "none"] | Callable[[Any], bool]
_once = LogOnce()  # each reason a value was ignored for, logged the first time
_log_once = _once.log


def check_trust(trust: object) -> Trust:
    """Validate a trust policy argument."""
    if trust in ("all", "none") or callable(trust):
        return trust  # type: ignore[return-value,unused-ignore]
    raise ValueError(
        f"trust must be 'all', 'none' or a function of the request returning bool, got {trust!r}"
    )


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header name (RFC 9110 token)


def check_header(name: object, argument: str) -> str:
    """Validate a header name argument; returns it lower-cased."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name.strip()):
        raise ValueError(
            f"{argument} must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~) "
            f"such as 'X-Session-Id', got {name!r}"
        )
    if name.strip().lower() == _BAGGAGE:
        raise ValueError(f"{argument} must not be 'baggage' (read_baggage reads it): got {name!r}")
    return name.strip().lower()


def is_trusted(trust: Trust, request: Any) -> bool:
    """Whether ``trust`` takes values from ``request``; a failing check counts as no."""
    if trust == "all":
        return True
    if trust == "none":
        return False
    try:
        return bool(trust(request))  # type: ignore[operator,unused-ignore]
    except Exception:
        _log_once(
            "trust",
            "sessiontrace: the trust check raised; the request's session is ignored (logged once)",
        )
        logger.debug("sessiontrace: trust check failure", exc_info=True)
        return False


def read_ids(
    headers: Iterable[tuple[object, object]],
    session_header: str,
    user_header: str,
    read_baggage: bool,
    baggage_source: str | None = None,
) -> dict[str, str]:
    """The valid session and user ids among a request's headers: plain headers, then baggage.

    ``headers`` are ``(name, value)`` pairs as the server gave them: bytes (ASGI) or PEP 3333
    strings (WSGI, Latin-1 decoded, so re-encoded here to the bytes that were sent); names
    compare case-insensitively. ``session_header`` and ``user_header`` are lower-case. A
    valid plain header wins over baggage; a value that is not valid is ignored and logged
    once per reason with the fix, as if it were absent. Never raises on any header value.

    Example:
        >>> sent = [(b"x-session-id", "café".encode()), (b"baggage", b"user.id=%C3%A5sa;p=1")]
        >>> read_ids(sent, "x-session-id", "x-user-id", read_baggage=True)
        {'session_id': 'café', 'user_id': 'åsa'}
    """
    wanted: dict[str, list[object]] = {session_header: [], user_header: [], _BAGGAGE: []}
    for name, value in headers:
        key = _lower_name(name)
        if key in wanted:
            wanted[key].append(value)
    carried = (
        _baggage_ids(wanted[_BAGGAGE], baggage_source or HEADER_BAGGAGE)
        if read_baggage and wanted[_BAGGAGE]
        else {}
    )
    found: dict[str, str] = {}
    for argument, header in (("session_id", session_header), ("user_id", user_header)):
        value = _plain_id(wanted[header], header, argument) if wanted[header] else None
        if value is None:
            value = carried.get(argument)
        if value is not None:
            found[argument] = value
    return found


def encode_id(value: str) -> str:
    """``value`` as an ``X-Session-Id`` header value: visible ASCII, percent-encoded UTF-8.

    Non-ASCII and control characters, space, ``%``, ``,``, ``"`` and ``\\`` are
    percent-encoded, so every server can send the header and :func:`read_ids` reads back
    the same id; ids of plain visible ASCII pass unchanged.

    Example:
        >>> encode_id("café-☃ 1")
        'caf%C3%A9-%E2%98%83%201'
    """
    return quote(value, safe=_ID_SAFE)


# --- reading, one header at a time ----------------------------------------------------------

_BAGGAGE = "baggage"
_BAGGAGE_KEYS = {_keys.BAGGAGE_SESSION_ID: "session_id", _keys.BAGGAGE_USER_ID: "user_id"}
# W3C baggage: a request's baggage may hold 8192 bytes; larger is ignored, as OpenTelemetry's
# W3CBaggagePropagator does. The same bound keeps a plain header from costing more than that.
MAX_HEADER_BYTES = 8192
_OWS = " \t"
# What encode_id leaves as it is: visible ASCII but for % , " \ (always-safe: A-Za-z0-9_.-~).
_ID_SAFE = "!#$&'()*+/:;<=>?@[]^`{|}"
# W3C baggage-octet: visible ASCII but for " , ; \ (and so no space, no control, no non-ASCII).
_BAGGAGE_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_PERCENT_FIX = "percent-encode the id as UTF-8, as SessionTracker.headers() does"


class _Ignored(Exception):
    """A header value that is ignored: ``reason`` keys the log-once, the message has the fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _lower_name(name: object) -> str | None:
    if isinstance(name, bytes):
        return name.decode("latin-1").lower()
    return name.lower() if isinstance(name, str) else None


def _wire_bytes(value: object) -> bytes | str:
    """The bytes that were sent: ASGI gives them; WSGI gives them Latin-1 decoded (PEP 3333).

    A str that is not Latin-1 comes from a server that decoded the header itself: it is
    taken as the text it already is.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            return value
    raise _Ignored("type", f"is a {type(value).__name__}, not bytes or str (a server bug)")


def _sized(occurrences: list[object], fix: str) -> list[bytes | str]:
    """The header's lines as sent, refused past ``MAX_HEADER_BYTES`` in all before decoding."""
    lines = [_wire_bytes(occurrence) for occurrence in occurrences]
    size = sum(len(line) for line in lines) + len(lines) - 1
    if size > MAX_HEADER_BYTES:
        raise _Ignored("oversize", f"is {size} bytes, over the {MAX_HEADER_BYTES} read: {fix}")
    return lines


def _utf8(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Ignored(
            "utf-8", f"is not valid UTF-8 ({raw!r:.60}): send UTF-8, or {_PERCENT_FIX}"
        ) from None


def _unpercent(text: str, plus_is_space: bool) -> str:
    """Decode ``%XX`` escapes as UTF-8, refusing what the spec's decoder would have to mangle.

    W3C baggage asks a decoder to put U+FFFD in place of escapes that are not UTF-8: an id so
    changed is not the sender's id (and would merge unrelated sessions), so it is refused.
    """
    if plus_is_space:  # as OpenTelemetry's W3CBaggagePropagator reads (and writes) a space
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    if text.count("%") != len(_PERCENT.findall(text)):
        raise _Ignored(
            "percent",
            f"has a % not followed by two hex digits ({text!r:.60}): write % as %25, or "
            f"{_PERCENT_FIX}",
        )
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise _Ignored(
            "percent-utf-8",
            f"percent-encodes bytes that are not UTF-8 ({text!r:.60}): {_PERCENT_FIX}",
        ) from None


def _one_valid(values: list[str], argument: str) -> str:
    """The one id that repeated values agree on, checked like any id."""
    distinct = list(dict.fromkeys(values))
    if len(distinct) > 1:
        shown = ", ".join(repr(value)[:40] for value in distinct[:3])
        raise _Ignored(
            "conflict",
            f"has conflicting values ({shown}): send one value (repeats of the same value are "
            "fine; a comma in an id must be sent as %2C)",
        )
    try:
        return check_id(distinct[0], argument)
    except (TypeError, ValueError) as error:
        raise _Ignored("invalid", f"holds an invalid id: {error}") from None


HEADER_BAGGAGE = "the baggage header"
"""How the ignore messages name baggage read from an HTTP request (MCP and gRPC name theirs)."""


def _ignore(argument: str, source: str, problem: _Ignored) -> None:
    """Log once per reason that ``source`` (e.g. "the baggage header") held a bad value."""
    _log_once(
        f"invalid-{argument}-{problem.reason}",
        "sessiontrace: ignoring a request's %s: %s %s (logged once per reason)",
        argument,
        source,
        problem,
    )


def _plain_id(occurrences: list[object], header: str, argument: str) -> str | None:
    """The id in a plain header: percent-decoded UTF-8 text; repeats (as lines, or as a
    comma-separated list, which is how WSGI servers join repeated lines) must agree."""
    try:
        members: list[str] = []
        fix = f"send an id of at most {MAX_ID_LENGTH} characters (a hash of a longer one)"
        for line in _sized(occurrences, fix):
            for member in _utf8(line).split(","):
                member = member.strip(_OWS)
                if member:
                    members.append(_unpercent(member, plus_is_space=False))
        if not members:
            raise _Ignored("invalid", "is empty: send the id, or leave the header out")
        return _one_valid(members, argument)
    except _Ignored as problem:
        _ignore(argument, f"the {header} header", problem)
        return None


def _baggage_ids(occurrences: list[object], source: str = HEADER_BAGGAGE) -> dict[str, str]:
    """``session_id`` / ``user_id`` from W3C baggage (all lines, joined as one list).

    Each member is ``key=value;properties``: properties are dropped; the value must be
    baggage-octets (percent-encoded UTF-8). Members with other keys are not looked at.
    """
    try:
        lines = _sized(occurrences, "W3C baggage stops there; keep baggage small")
    except _Ignored as problem:
        _ignore("session_id", source, problem)
        return {}
    # Latin-1 maps each byte to one character; anything not ASCII fails the value check below.
    text = ",".join(line if isinstance(line, str) else line.decode("latin-1") for line in lines)
    values: dict[str, list[str]] = {}
    for member in text.split(","):
        key, _, value = member.split(";", 1)[0].partition("=")
        argument = _BAGGAGE_KEYS.get(key.strip(_OWS))
        if argument is None:
            continue
        value = value.strip(_OWS)
        try:
            if not _BAGGAGE_VALUE.fullmatch(value):
                raise _Ignored(
                    "baggage-octets",
                    f"has characters W3C baggage does not allow ({value!r:.60}): "
                    "percent-encode the value as UTF-8, as OpenTelemetry's propagator does",
                )
            decoded = _unpercent(value, plus_is_space=True)
            values.setdefault(argument, []).append(decoded)
        except _Ignored as problem:
            _ignore(argument, source, problem)
    found: dict[str, str] = {}
    for argument, candidates in values.items():
        try:
            found[argument] = _one_valid(candidates, argument)
        except _Ignored as problem:
            _ignore(argument, source, problem)
    return found


def enter_request(values: Mapping[str, str]) -> None:
    """Put a request's values in force for the rest of the current context (see below)."""
    scope = using_attributes(session_id=values.get("session_id"), user_id=values.get("user_id"))
    scope.__enter__()  # never left: in force until the context ends
    hold(current_entry())
    stamp_server_span()


@guarded("stamping the server span")
def stamp_server_span() -> None:
    """Stamp the span already open around the request (a server span that an outer
    OpenTelemetry middleware started before the session was known), never overwriting."""
    span = trace.get_current_span()
    entry = current_entry()
    if entry is None or not span.is_recording():
        return
    existing = getattr(span, "attributes", None) or {}
    attributes: dict[str, Any] = {}
    for dialects in _frames.live_dialect_sets():
        attributes.update(entry.frame.attributes_for(dialects))
    span.set_attributes({k: v for k, v in attributes.items() if k not in existing})


@contextmanager
def request_scope(values: Mapping[str, str]) -> Iterator[None]:
    """Put a request's values in force, in the OpenTelemetry context and beside it.

    The copy beside it (``request_entry``) survives instrumentation that attaches a freshly
    extracted context for the request, which would otherwise drop the session.
    """
    with using_attributes(session_id=values.get("session_id"), user_id=values.get("user_id")):
        token = hold(current_entry())
        stamp_server_span()
        try:
            yield
        finally:
            release(token)


class InboundMiddleware:
    """What the ASGI and WSGI middlewares share: their options, checked at construction."""

    def __init__(
        self,
        app: Any,
        *,
        session_header: str = _keys.SESSION_HEADER,
        user_header: str = "X-User-Id",
        read_baggage: bool = True,
        trust: Trust = "all",
        response_headers: bool = True,
    ) -> None:
        for argument, flag in (
            ("read_baggage", read_baggage),
            ("response_headers", response_headers),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{argument} must be True or False, got {flag!r:.60}")
        self.app = app
        self._session_header = check_header(session_header, "session_header")
        self._user_header = check_header(user_header, "user_header")
        self._read_baggage = read_baggage
        self._trust = check_trust(trust)
        self._response_headers = response_headers

    def _values(
        self, request: Any, headers: Callable[[], Iterable[tuple[object, object]]]
    ) -> dict[str, str]:
        """The valid session and user ids of a trusted request; nothing for another.

        Never raises into the request: a bug here is reported by the guard and the request
        goes on without a session.
        """
        with guarded("reading the request's session"):
            if not is_trusted(self._trust, request):
                return {}
            return read_ids(headers(), self._session_header, self._user_header, self._read_baggage)
        return {}

    def _wanted(self) -> tuple[str, ...]:
        """The lower-case names of the headers this middleware reads."""
        names = (self._session_header, self._user_header)
        return (*names, _BAGGAGE) if self._read_baggage else names
