"""What is in force: the immutable snapshot, the merge rules, and its place in the OTel context.

A *frame* is what one block (or one ``set_session`` call) puts in force: the merged values and,
precomputed once, the span attributes for every dialect set a processor asked for. Frames live
in the OpenTelemetry context under one key, so whatever carries that context (asyncio tasks,
the threading instrumentation, LangChain's executors) carries the session too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.util.types import AttributeValue

from sessiontrace import _keys
from sessiontrace._validate import EMPTY_METADATA

Attributes = dict[str, AttributeValue]


@dataclass(frozen=True)
class SessionContext:
    """An immutable snapshot of what sessiontrace has in force.

    Example:
        >>> from sessiontrace import current, using_session
        >>> with using_session("chat-42"):
        ...     current().session_id
        'chat-42'
    """

    session_id: str | None = None
    user_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: EMPTY_METADATA)
    tags: tuple[str, ...] = ()


EMPTY_CONTEXT = SessionContext()

# Dialect sets that live processors asked for; every new frame precomputes one dict for each.
_dialect_sets: list[tuple[str, ...]] = [_keys.DEFAULT_DIALECTS]


def register_dialects(dialects: tuple[str, ...]) -> None:
    """Ask every frame made from now on to precompute attributes for ``dialects``."""
    if dialects not in _dialect_sets:
        _dialect_sets.append(dialects)


class Frame:
    """Values in force for one block; internal, treated as immutable once attached.

    ``owner`` and ``token`` let a context manager find its own entry on exit without keeping
    a token on itself; ``outer`` is the nearest enclosing frame that has an owner.
    """

    __slots__ = (
        "attributes",
        "metadata",
        "metadata_json",
        "outer",
        "owner",
        "session_id",
        "tags",
        "token",
        "user_id",
    )

    def __init__(
        self,
        session_id: str | None,
        user_id: str | None,
        metadata: Mapping[str, Any],
        metadata_json: str,
        tags: tuple[str, ...],
        outer: Frame | None,
        owner: object = None,
    ) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.metadata = metadata
        self.metadata_json = metadata_json
        self.tags = tags
        self.outer = outer
        self.owner = owner
        self.token: Token[Context] | None = None
        self.attributes: dict[tuple[str, ...], Attributes] = {
            dialects: build_attributes(self, dialects) for dialects in _dialect_sets
        }

    def attributes_for(self, dialects: tuple[str, ...]) -> Attributes:
        """The span attributes for ``dialects``: precomputed, or built once and kept."""
        found = self.attributes.get(dialects)
        if found is None:
            found = self.attributes[dialects] = build_attributes(self, dialects)
        return found

    def snapshot(self) -> SessionContext:
        return SessionContext(self.session_id, self.user_id, self.metadata, self.tags)


def merge(
    outer: Frame | None,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    metadata_json: str = "",
    tags: tuple[str, ...] = (),
    clear: bool = False,
    owner: object = None,
) -> Frame:
    """A new frame: ``outer``'s values overlaid with the given ones (inner wins).

    Metadata merges key by key, tags are a union in order of first appearance. With ``clear``
    the new frame starts from nothing, whatever ``outer`` holds.
    """
    # Frames link only to the nearest block's frame (one with an owner), so that repeated
    # set_session() calls without restore() do not grow a chain of dead frames.
    link = outer if outer is None or outer.owner is not None else outer.outer
    if outer is None or clear:
        return Frame(
            session_id,
            user_id,
            metadata or EMPTY_METADATA,
            metadata_json if metadata else "",
            tags,
            link,
            owner,
        )
    if metadata:
        if outer.metadata:
            merged_metadata = {**outer.metadata, **metadata}
            metadata_json = json.dumps(merged_metadata, ensure_ascii=False)
            metadata = MappingProxyType(merged_metadata)
    else:
        metadata, metadata_json = outer.metadata, outer.metadata_json
    if tags and outer.tags:
        tags = outer.tags + tuple(tag for tag in tags if tag not in outer.tags)
    return Frame(
        session_id if session_id is not None else outer.session_id,
        user_id if user_id is not None else outer.user_id,
        metadata,
        metadata_json,
        tags or outer.tags,
        link,
        owner,
    )


def build_attributes(frame: Frame, dialects: tuple[str, ...]) -> Attributes:
    """The span attributes that carry ``frame`` in each of ``dialects``."""
    out: Attributes = {}
    session_id, user_id, metadata, tags = (
        frame.session_id,
        frame.user_id,
        frame.metadata,
        frame.tags,
    )
    for dialect in dialects:
        if dialect == _keys.OPENINFERENCE:
            if session_id is not None:
                out[_keys.OI_SESSION_ID] = session_id
            if user_id is not None:
                out[_keys.OI_USER_ID] = user_id
            if metadata:
                out[_keys.OI_METADATA] = frame.metadata_json
            if tags:
                out[_keys.OI_TAGS] = tags
        elif dialect == _keys.GENAI:
            if session_id is not None:
                out[_keys.GENAI_CONVERSATION_ID] = session_id
            if user_id is not None:
                out[_keys.GENAI_USER_ID] = user_id
        elif dialect == _keys.LANGFUSE:
            if session_id is not None:
                out[_keys.LANGFUSE_SESSION_ID] = session_id
            if user_id is not None:
                out[_keys.LANGFUSE_USER_ID] = user_id
            for key, value in metadata.items():
                # As the Langfuse SDK writes them: every value JSON-encoded, str included.
                out[_keys.LANGFUSE_METADATA_PREFIX + key] = json.dumps(value, ensure_ascii=False)
            if tags:
                out[_keys.LANGFUSE_TAGS] = tags
        elif dialect == _keys.TRACELOOP:
            if session_id is not None:
                out[_keys.TRACELOOP_SESSION_ID] = session_id
            if user_id is not None:
                out[_keys.TRACELOOP_USER_ID] = user_id
            for key, value in metadata.items():
                out[_keys.TRACELOOP_PROPERTY_PREFIX + key] = _as_text(value)
    return out


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def current_frame() -> Frame | None:
    """The frame in force in the current OpenTelemetry context, if any."""
    frame = otel_context.get_value(_keys.CONTEXT_KEY)
    return frame if isinstance(frame, Frame) else None


def attach(frame: Frame) -> Token[Context]:
    """Put ``frame`` in force; returns the OpenTelemetry token that undoes it."""
    return otel_context.attach(otel_context.set_value(_keys.CONTEXT_KEY, frame))
