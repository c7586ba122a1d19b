"""MCP: a session started in an MCP client goes on in the MCP server it calls.

:func:`instrument` wraps, with wrapt, the places of the ``mcp`` SDK (2.x) every message goes
through:

- **Out**, ``send_raw_request`` and ``notify`` of ``JSONRPCDispatcher`` and ``DirectDispatcher``
  (every request and notification a client or server session sends: ``tools/call``,
  ``resources/read``, ``prompts/get``, ``sampling/createMessage``, ...): ``params._meta`` gets
  ``traceparent`` / ``tracestate`` (W3C trace context of the current span) and ``baggage`` (W3C
  baggage with ``session.id`` and ``user.id`` of what is in force). Keys already in ``_meta``
  are kept; a ``baggage`` the caller set keeps its members and gets ours appended only for keys
  it lacks. While a request is sent, the context's OpenTelemetry baggage holds the session too,
  so whoever injects after us with the global propagator (the SDK itself,
  ``openinference-instrumentation-mcp``) writes the same ``baggage``, never one without it.
- **In**, the middleware chain ``ServerRunner`` runs each request and notification through, on
  every transport: the ``_meta`` values are read and validated as the HTTP middlewares read
  headers, through the trust policy; a valid session and user are in force for the whole chain
  (so the SDK's own ``tools/call`` server span is stamped too), and the client's span is the
  parent, unless an instrumentation already made the client's trace current.

Nothing from a request's ``_meta`` can break the request: a value that is not valid is ignored,
logged once per reason, and the handler runs without it.

Example:
    >>> from sessiontrace.integrations import mcp as mcp_sessions
    >>> mcp_sessions.instrument(trust="all")
    >>> mcp_sessions.is_instrumented()
    True
    >>> mcp_sessions.uninstrument()
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import wrapt
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sessiontrace import _keys
from sessiontrace._guard import LogOnce, guarded
from sessiontrace._late_binding import frame_in
from sessiontrace.integrations._inbound import (
    MAX_HEADER_BYTES,
    Trust,
    check_trust,
    is_trusted,
    read_ids,
    request_scope,
)

__all__ = ["BAGGAGE", "TRACEPARENT", "TRACESTATE", "instrument", "is_instrumented", "uninstrument"]

# The `_meta` keys: the W3C header names, unprefixed, as the MCP SDK (SEP-414) and
# openinference-instrumentation-mcp already write them.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
BAGGAGE = "baggage"
_META = "_meta"
_W3C_KEYS = (TRACEPARENT, TRACESTATE, BAGGAGE)
_MAX_TRACEPARENT = 128  # a W3C traceparent is 55 characters; future versions may add fields
_MAX_TRACESTATE = 512  # W3C: at most 512 characters

# (module, class, methods): what instrument() wraps and uninstrument() restores. Sending: a
# request (send_raw_request) or a notification (notify). Serving: the middleware chain that
# ServerRunner builds for each request and notification it serves, on every transport (stdio,
# streamable HTTP in both protocol eras, in-memory), around the SDK's own middleware.
_TARGETS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("mcp.shared.jsonrpc_dispatcher", "JSONRPCDispatcher", ("send_raw_request", "notify")),
    ("mcp.shared.direct_dispatcher", "DirectDispatcher", ("send_raw_request", "notify")),
    ("mcp.server.runner", "ServerRunner", ("_compose_server_middleware",)),
)
_lock = threading.Lock()
_wrapped: list[tuple[type[Any], str, Any]] = []  # (class, name, our FunctionWrapper)
_trust: Trust = "all"
_once = LogOnce()
_tracecontext = TraceContextTextMapPropagator()
_w3c_baggage = W3CBaggagePropagator()
# read_ids also reads plain headers (X-Session-Id, X-User-Id): a _meta carries none of them.
_NO_HEADER = (_keys.SESSION_HEADER.lower(), "x-user-id")


def instrument(*, trust: Trust | None = None) -> None:
    """Carry the session from MCP clients to MCP servers, in this process both ways.

    Idempotent: a second call wraps nothing again; with ``trust`` it changes the policy.

    Args:
        trust: whose ``_meta`` the server side takes values from: ``"all"`` (the default:
            session ids label telemetry, they grant nothing), ``"none"``, or a function that
            gets a copy of the request's ``_meta`` dict and returns whether to take its
            session, user and trace parent. A function that raises counts as no (logged
            once). ``None`` keeps the policy in force (``"all"`` at first).

    Raises:
        ValueError: ``trust`` is none of the above.
        ImportError: ``mcp`` 2.x is not installed (``pip install mcp``).

    Example:
        >>> from sessiontrace.integrations import mcp as mcp_sessions
        >>> mcp_sessions.instrument(trust=lambda meta: "baggage" in meta)
        >>> mcp_sessions.uninstrument()
    """
    global _trust
    policy = None if trust is None else check_trust(trust)
    classes = _classes()
    with _lock:
        if policy is not None:
            _trust = policy
        if _wrapped:
            return
        for (_, _, names), cls in zip(_TARGETS, classes, strict=True):
            for name in names:
                hook = _compose if name.startswith("_compose") else _send
                wrapper = wrapt.FunctionWrapper(cls.__dict__[name], hook)
                setattr(cls, name, wrapper)
                _wrapped.append((cls, name, wrapper))


def uninstrument() -> None:
    """Undo :func:`instrument`; requests carry no sessiontrace ``_meta`` after it.

    The trust policy goes back to ``"all"``.

    Example:
        >>> from sessiontrace.integrations import mcp as mcp_sessions
        >>> mcp_sessions.uninstrument()
        >>> mcp_sessions.is_instrumented()
        False
    """
    global _trust
    with _lock:
        for cls, name, wrapper in reversed(_wrapped):
            if cls.__dict__.get(name) is wrapper:
                setattr(cls, name, wrapper.__wrapped__)
            # else: someone wrapped over ours; ours passes through (is_instrumented() is False).
        _wrapped.clear()
        _trust = "all"


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect.

    Example:
        >>> from sessiontrace.integrations import mcp as mcp_sessions
        >>> isinstance(mcp_sessions.is_instrumented(), bool)
        True
    """
    return bool(_wrapped)


def _classes() -> list[type[Any]]:
    import importlib

    try:
        importlib.import_module("mcp")
    except ImportError as error:
        raise ImportError("sessiontrace.integrations.mcp needs mcp: pip install mcp") from error
    try:
        classes: list[type[Any]] = []
        for module, name, methods in _TARGETS:
            cls = getattr(importlib.import_module(module), name)
            for method in methods:
                if not callable(cls.__dict__.get(method)):
                    raise AttributeError(f"{name}.{method} is missing")
            classes.append(cls)
        return classes
    except (ImportError, AttributeError) as error:
        raise ImportError(
            "sessiontrace.integrations.mcp needs mcp 2 or later (the SDK with dispatchers and "
            f"ServerRunner; {error}): pip install --upgrade mcp"
        ) from error


# --- out: params._meta of every request sent ------------------------------------------------


async def _send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    args, kwargs, sending = _outgoing(args, kwargs)
    token = otel_context.attach(sending) if sending is not None else None
    try:
        return await wrapped(*args, **kwargs)
    finally:
        if token is not None:
            otel_context.detach(token)


def _outgoing(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], otel_context.Context | None]:
    """The call's arguments with ``params._meta`` filled in, and the context to send in."""
    with guarded("mcp: adding the session to a request's _meta"):
        if not is_instrumented():
            return args, kwargs, None
        # send_raw_request / notify (method, params, opts=None, ...): params by position or name.
        positional = len(args) > 1
        params = args[1] if positional else kwargs.get("params")
        filled = _filled(params)
        if filled is None:
            return args, kwargs, None
        new_params, sending = filled
        if positional:
            return (args[0], new_params, *args[2:]), kwargs, sending
        return args, {**kwargs, "params": new_params}, sending
    return args, kwargs, None


def _filled(params: object) -> tuple[dict[str, Any], otel_context.Context | None] | None:
    """``params`` (copied, never changed) with our ``_meta`` keys; None to send it as it is."""
    if params is not None and not isinstance(params, Mapping):
        return None
    meta = params.get(_META) if params is not None else None
    if meta is not None and not isinstance(meta, Mapping):
        return None  # the caller's own malformed _meta: theirs to fix, not ours to replace
    out: dict[str, Any] = dict(meta or {})
    context = otel_context.get_current()
    if TRACEPARENT not in out:
        carrier: dict[str, str] = {}
        _tracecontext.inject(carrier, context)
        if TRACEPARENT in carrier:
            out[TRACEPARENT] = carrier[TRACEPARENT]
            if TRACESTATE in carrier and TRACESTATE not in out:
                out[TRACESTATE] = carrier[TRACESTATE]
    sending = None
    members = _members()
    if members:
        if BAGGAGE not in out:
            sending = context
            for key, value in members.items():
                sending = baggage.set_baggage(key, value, sending)
            carrier = {}
            _w3c_baggage.inject(carrier, sending)
            if BAGGAGE in carrier:
                out[BAGGAGE] = carrier[BAGGAGE]
        elif isinstance(out[BAGGAGE], str):
            out[BAGGAGE] = _appended(out[BAGGAGE], members)
            if baggage.get_all(context):
                # The SDK writes the context's baggage over _meta's: make it the caller's too.
                sending = _w3c_baggage.extract({BAGGAGE: out[BAGGAGE]}, context)
    if not out and params is None:
        return None
    return {**(params or {}), _META: out}, sending


def _members() -> dict[str, str]:
    """``session.id`` / ``user.id`` of what is in force (the trace's binding included)."""
    frame = frame_in(otel_context.get_current())
    members: dict[str, str] = {}
    if frame is not None and frame.session_id is not None:
        members[_keys.BAGGAGE_SESSION_ID] = frame.session_id
    if frame is not None and frame.user_id is not None:
        members[_keys.BAGGAGE_USER_ID] = frame.user_id
    return members


def _appended(existing: str, members: dict[str, str]) -> str:
    """A caller's baggage with our members added for the keys it does not have."""
    present = {member.split(";", 1)[0].partition("=")[0].strip() for member in existing.split(",")}
    missing = otel_context.Context()
    for key, value in members.items():
        if key not in present:
            missing = baggage.set_baggage(key, value, missing)
    carrier: dict[str, str] = {}
    _w3c_baggage.inject(carrier, missing)
    extra = carrier.get(BAGGAGE)
    if not extra:
        return existing
    joined = f"{existing},{extra}" if existing.strip() else extra
    if len(joined.encode("utf-8")) > MAX_HEADER_BYTES:
        _once.log(
            "baggage-full",
            "sessiontrace: an MCP request's _meta baggage has no room for session.id/user.id "
            "(W3C baggage stops at %s bytes); the request is sent without them: keep the "
            "baggage you set smaller (logged once)",
            MAX_HEADER_BYTES,
        )
        return existing
    return joined


# --- in: the session of every request served ------------------------------------------------


def _compose(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # ServerRunner._compose_server_middleware(inner) -> the chain one message runs through;
    # called for each message (so connections opened before instrument() are served too).
    chain = wrapped(*args, **kwargs)
    return functools.partial(_serve, chain) if is_instrumented() else chain


async def _serve(chain: Any, ctx: Any) -> Any:
    params = getattr(ctx, "params", None)
    values, parent = _incoming(params)
    with ExitStack() as stack:
        with guarded("mcp: putting the request's session in force"):
            ctx = _without_unusable(ctx)
            if parent is not None:
                stack.enter_context(_attached(parent))
            if values:
                stack.enter_context(request_scope(values))
        return await chain(ctx)


def _without_unusable(ctx: Any) -> Any:
    """``ctx`` with W3C keys that are not strings taken out of its ``meta``.

    mcp 2.3.0's own OpenTelemetryMiddleware extracts ``ctx.meta`` with the global propagator,
    and a ``baggage`` that is not a string makes OpenTelemetry's W3CBaggagePropagator raise an
    AttributeError that mcp does not catch: the request would fail. No one can read such a
    value as a W3C header anyway, so the chain sees the request without it.
    """
    meta = getattr(ctx, "meta", None)
    if not isinstance(meta, Mapping):
        return ctx
    unusable = [key for key in _W3C_KEYS if key in meta and not isinstance(meta[key], str)]
    if not unusable:
        return ctx
    return dataclasses.replace(ctx, meta={k: v for k, v in meta.items() if k not in unusable})


@contextmanager
def _attached(context: otel_context.Context) -> Iterator[None]:
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def _ignored(reason: str, what: str) -> None:
    _once.log(
        f"meta-{reason}",
        "sessiontrace: ignoring an MCP request's %s; the handler runs without it (logged once "
        "per reason)",
        what,
    )


def _incoming(params: object) -> tuple[dict[str, str], otel_context.Context | None]:
    """The valid session/user ids of a trusted request's ``_meta``, and its trace parent.

    Never raises on any ``params``: what is not valid is left out, logged once per reason.
    """
    with guarded("mcp: reading the request's _meta"):
        if not is_instrumented() or not isinstance(params, Mapping):
            return {}, None
        meta = params.get(_META)
        if meta is None:
            return {}, None
        if not isinstance(meta, Mapping):
            _ignored("type", f"_meta: it is a {type(meta).__name__}, not an object")
            return {}, None
        if not is_trusted(_trust, dict(meta)):
            return {}, None
        return _ids(meta.get(BAGGAGE)), _parent(meta.get(TRACEPARENT), meta.get(TRACESTATE))
    return {}, None


def _ids(carried: object) -> dict[str, str]:
    if carried is None:
        return {}
    if not isinstance(carried, str):
        _ignored("baggage-type", f"_meta baggage: it is a {type(carried).__name__}, not a string")
        return {}
    return read_ids(
        [(BAGGAGE, carried)], *_NO_HEADER, read_baggage=True, baggage_source="the _meta baggage"
    )


def _parent(traceparent: object, tracestate: object) -> otel_context.Context | None:
    """The current context with the client's span as parent; None if nothing to change."""
    if traceparent is None:
        return None
    if not isinstance(traceparent, str) or len(traceparent) > _MAX_TRACEPARENT:
        _ignored("traceparent", "_meta traceparent: it is not a W3C traceparent string")
        return None
    carrier = {TRACEPARENT: traceparent}
    if isinstance(tracestate, str) and len(tracestate) <= _MAX_TRACESTATE:
        carrier[TRACESTATE] = tracestate
    elif tracestate is not None:
        _ignored("tracestate", f"_meta tracestate: not a string of {_MAX_TRACESTATE} at most")
    remote = trace.get_current_span(_tracecontext.extract(carrier)).get_span_context()
    if not remote.is_valid:
        _ignored("traceparent-invalid", "_meta traceparent: it is not a valid W3C traceparent")
        return None
    here = trace.get_current_span().get_span_context()
    if here.is_valid and here.trace_id == remote.trace_id:
        return None  # an instrumentation (or an in-process caller) already put it in force
    return trace.set_span_in_context(trace.NonRecordingSpan(remote), otel_context.get_current())
