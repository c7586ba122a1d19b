"""A conversation turn by turn: each trace's user input and model output, as a chat shows it.

A turn is one trace. Its user input is the last user message of the trace's first LLM call,
read from whichever convention the instrumentation wrote (OpenInference's
``llm.input_messages.N``, the GenAI ``gen_ai.input.messages`` JSON, Traceloop's
``gen_ai.prompt.N``, or an OpenAI request body in ``input.value``); failing that, the call's
or the root span's ``input.value`` as it is. The model output is read the same way from the
trace's last LLM call. Tokens and cost are the LLM calls' own (a chain span that repeats its
calls' totals would count them twice), or every span's when the trace has no LLM call.

Example:
    >>> turn_document(trace)["user"]  # doctest: +SKIP
    'What is the weather like?'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sessiontrace import _keys
from sessiontrace._usage import is_llm_call, model_name, reported_cost
from sessiontrace.store import StoredSpan, StoredTrace

_MAX_MESSAGES = 256  # message indexes looked at per span (llm.input_messages.0 ... .255)


def turn_document(trace: StoredTrace) -> dict[str, Any]:
    """One trace as a chat turn: user input, model output, tokens, cost, duration, status."""
    spans = sorted(trace.spans, key=lambda span: span.start)
    calls = [span for span in spans if is_llm_call(span.attributes)]
    root = trace.roots[0] if trace.roots else (spans[0] if spans else None)
    user = _first(_user_text(span.attributes) for span in calls[:1])
    if user is None:
        user = _first(_value(span, _keys.OI_INPUT_VALUE) for span in (*calls[:1], root))
    output = _first(_output_text(span.attributes) for span in calls[-1:])
    if output is None:
        output = _first(_value(span, _keys.OI_OUTPUT_VALUE) for span in (*calls[-1:], root))
    # A call two spans report (an SDK's own span and an instrumentation's) counts once.
    counted = [span for span in (calls or spans) if not span.repeated_call]
    errors = [span for span in spans if span.status_code == "ERROR"]
    return {
        "trace_id": trace.trace_id,
        "name": root.name if root is not None else None,
        "start": trace.start.isoformat(),
        "duration_ms": trace.duration_ms,
        "user": user,
        "output": output,
        "models": sorted({name for span in calls if (name := model_name(span.attributes))}),
        "llm_calls": sum(not span.repeated_call for span in calls),
        "prompt_tokens": _sum(span.prompt_tokens for span in counted),
        "completion_tokens": _sum(span.completion_tokens for span in counted),
        "total_tokens": _sum(span.total_tokens for span in counted),
        "cost_usd": _sum(reported_cost(span.attributes) for span in counted),
        "status": "error" if errors else "ok",
        "error": next((span.status_message for span in errors if span.status_message), None),
    }


def _first(values: Iterable[str | None]) -> str | None:
    return next((value for value in values if value), None)


def _sum(values: Iterable[float | int | None]) -> Any:
    present = [value for value in values if value is not None]
    return sum(present) if present else None


def _value(span: StoredSpan | None, key: str) -> str | None:
    if span is None:
        return None
    value = span.attributes.get(key)
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _user_text(attributes: Mapping[str, Any]) -> str | None:
    """The last user message of a call, in any convention the instrumentation used."""
    for messages in _messages(attributes, "input"):
        users = [text for role, text in messages if role == "user" and text]
        if users:
            return users[-1]
    return None


def _output_text(attributes: Mapping[str, Any]) -> str | None:
    for messages in _messages(attributes, "output"):
        texts = [text for _, text in messages if text]
        if texts:
            return texts[0]
    return None


def _messages(attributes: Mapping[str, Any], side: str) -> Iterable[list[tuple[str, str]]]:
    """The call's messages as (role, text), in each convention it may have been written in."""
    prefix = "llm.input_messages." if side == "input" else "llm.output_messages."
    yield _flattened(attributes, prefix, ".message.role", ".message.content")
    legacy = "gen_ai.prompt." if side == "input" else "gen_ai.completion."
    yield _flattened(attributes, legacy, ".role", ".content")
    genai = attributes.get("gen_ai.input.messages" if side == "input" else "gen_ai.output.messages")
    yield _genai_messages(genai)
    yield _body_messages(attributes.get(_keys.OI_INPUT_VALUE if side == "input" else
                                        _keys.OI_OUTPUT_VALUE), side)  # fmt: skip


def _flattened(
    attributes: Mapping[str, Any], prefix: str, role_key: str, content_key: str
) -> list[tuple[str, str]]:
    found = []
    for index in range(_MAX_MESSAGES):
        content = attributes.get(f"{prefix}{index}{content_key}")
        role = attributes.get(f"{prefix}{index}{role_key}")
        if content is None and role is None:
            break
        found.append((str(role or ""), content if isinstance(content, str) else ""))
    return found


def _genai_messages(raw: object) -> list[tuple[str, str]]:
    # [{"role": "user", "parts": [{"type": "text", "content": "..."}]}]
    loaded = _loaded(raw)
    if not isinstance(loaded, list):
        return []
    found = []
    for message in loaded:
        if not isinstance(message, dict):
            continue
        parts = message.get("parts")
        texts = [
            content
            for part in (parts if isinstance(parts, list) else [])
            if isinstance(part, dict) and isinstance(content := part.get("content"), str)
        ]
        found.append((str(message.get("role") or ""), "\n".join(texts)))
    return found


def _body_messages(raw: object, side: str) -> list[tuple[str, str]]:
    # An OpenAI request ({"messages": [...]}) or response ({"choices": [{"message": ...}]}).
    loaded = _loaded(raw)
    if not isinstance(loaded, dict):
        return []
    if side == "input":
        listed = loaded.get("messages")
        messages = listed if isinstance(listed, list) else []
    else:
        choices = loaded.get("choices")
        messages = [
            choice.get("message")
            for choice in (choices if isinstance(choices, list) else [])
            if isinstance(choice, dict)
        ]
    return [
        (str(message.get("role") or ""), content)
        for message in messages
        if isinstance(message, dict) and isinstance(content := message.get("content"), str)
    ]


def _loaded(raw: object) -> object:
    if not isinstance(raw, str) or not raw.lstrip().startswith(("{", "[")):
        return raw if isinstance(raw, list | dict) else None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None
