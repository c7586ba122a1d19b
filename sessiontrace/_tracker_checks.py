"""SessionTracker's argument checks: each argument checked whole, at the call.

Example:
    >>> hex_id("4bf92f3577b34da6a3ce929d0e0e4736", "trace_id", 32) > 0
    True
"""

from __future__ import annotations

import string
import uuid
from collections.abc import Mapping

from opentelemetry.util.types import AttributeValue

from sessiontrace._genai_agent import agent_attributes
from sessiontrace._json_values import SURROGATE, surrogate_problem
from sessiontrace._validate import check_id

# A free-form description (gen_ai.agent.description): one paragraph, not a document.
MAX_DESCRIPTION_LENGTH = 1000


def id_or_new(session_id: str | None, generate_id: bool) -> str:
    """``session_id``, or a new unique one (``uuid4().hex``) when it is None; or raise."""
    if session_id is not None:
        return session_id
    if not generate_id:
        raise ValueError(
            "session_id is None and generate_id=False: pass a session_id, or leave "
            "generate_id on to get a unique one"
        )
    return uuid.uuid4().hex


def end_args(status: object, error: object) -> None:
    """Raise unless ``end(status, error=)`` got a status it knows and an exception or None."""
    if status not in (None, "ok", "error"):
        raise ValueError(f"status must be 'ok', 'error' or None, got {status!r:.60}")
    if error is not None and not isinstance(error, BaseException):
        raise TypeError(
            f"error must be the exception that ended the run, or None; got "
            f"{type(error).__name__} ({error!r:.60})"
        )


def agent_keys(
    name: str | None, agent_name: object, agent_id: object, agent_description: object
) -> Mapping[str, AttributeValue]:
    """A tracker's ``invoke_agent`` keys, its agent arguments checked; the agent's name is
    ``agent_name``, else the run's ``name`` (already checked)."""
    return agent_attributes(
        name if agent_name is None else check_id(agent_name, "agent_name"),
        None if agent_id is None else check_id(agent_id, "agent_id"),
        None if agent_description is None else description(agent_description, "agent_description"),
    )


def description(value: object, argument: str) -> str:
    """Free-form text: non-blank, at most ``MAX_DESCRIPTION_LENGTH`` characters, printable
    but for newlines and tabs.

    >>> description("Books flights.\\nAsks before paying.", "agent_description")[:14]
    'Books flights.'
    """
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a str, got {type(value).__name__} ({value!r:.60})")
    if not value.strip():
        raise ValueError(f"{argument} must not be empty or only whitespace, got {value!r}")
    if len(value) > MAX_DESCRIPTION_LENGTH:
        raise ValueError(
            f"{argument} is {len(value)} characters long; the limit is "
            f"{MAX_DESCRIPTION_LENGTH}: pass a shorter description"
        )
    if not value.isprintable():
        for position, character in enumerate(value):
            if character.isprintable() or character in "\n\t":
                continue
            if SURROGATE.match(character):
                raise ValueError(f"{argument} {surrogate_problem(value)}")
            raise ValueError(
                f"{argument} contains the non-printable character {character!r} "
                f"(U+{ord(character):04X}) at position {position}; only printable text, "
                "newlines and tabs are allowed"
            )
    return value


def positive(value: int | None, argument: str, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    allowed = f"a positive int{' or None' if allow_none else ''}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be {allowed}, got {type(value).__name__} ({value!r:.60})")
    if value <= 0:
        raise ValueError(f"{argument} must be {allowed}, got {value!r}; pass 1 or more")
    return value


def flag(value: object, argument: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(
            f"{argument} must be True or False, got {type(value).__name__} ({value!r:.60})"
        )
    return value


def hex_id(value: str | int, argument: str, digits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(
            f"{argument} must be {digits} hex digits (str, as in a traceparent header) or a "
            f"non-zero int, got {type(value).__name__} ({value!r:.60})"
        )
    number = 0
    if isinstance(value, int):
        number = value
    elif len(value) == digits and all(c in string.hexdigits for c in value):
        number = int(value, 16)
    if not 0 < number < 16**digits:
        raise ValueError(
            f"{argument} must be {digits} hex digits (as in a traceparent header) or a "
            f"non-zero int below 16**{digits}, got {value!r:.60}"
        )
    return number
