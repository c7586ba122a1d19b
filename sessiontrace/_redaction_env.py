"""The content switches users already set, applied to every span whatever library made it.

OpenInference's ``OPENINFERENCE_HIDE_*`` variables and OpenTelemetry's
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` only reach the spans of the
instrumentation that reads them. :func:`hidden_key_rule` reads them once and returns what
they ask of a key, for any span: drop it, replace its value with OpenInference's
``__REDACTED__``, or keep it. The OpenInference rules follow ``TraceConfig.mask`` in
openinference-instrumentation, in its order (the tests compare the two key by key). A value
other than ``true`` or ``false`` warns once and counts as unset, as OpenInference does.

Example:
    >>> rule = hidden_key_rule({"OPENINFERENCE_HIDE_INPUTS": "true"})
    >>> rule("input.value"), rule("input.mime_type"), rule("output.value")
    ('mask', 'drop', None)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

_logger = logging.getLogger("sessiontrace")

REDACTED_VALUE = "__REDACTED__"
"""What a hidden value becomes: OpenInference's own marker, so Phoenix shows the same."""

Action = str  # "drop" or "mask"
KeyRule = Callable[[str], "Action | None"]

_SWITCHES = (
    "HIDE_LLM_INVOCATION_PARAMETERS",
    "HIDE_LLM_TOOLS",
    "HIDE_INPUTS",
    "HIDE_OUTPUTS",
    "HIDE_INPUT_MESSAGES",
    "HIDE_OUTPUT_MESSAGES",
    "HIDE_INPUT_IMAGES",
    "HIDE_INPUT_TEXT",
    "HIDE_OUTPUT_TEXT",
    "HIDE_EMBEDDING_VECTORS",
    "HIDE_EMBEDDINGS_VECTORS",
    "HIDE_EMBEDDINGS_TEXT",
    "HIDE_PROMPTS",
    "HIDE_CHOICES",
    "HIDE_RETRIEVAL_DOCUMENTS",
)
OPENINFERENCE_VARIABLES = tuple(f"OPENINFERENCE_{name}" for name in _SWITCHES)
GENAI_CONTENT_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# The values of the GenAI switch that keep message content off spans (util-genai's modes).
_GENAI_NO_CONTENT = {"false", "no_content", "event_only"}

# What the GenAI conventions and Traceloop put message content under.
_GENAI_CONTENT_KEYS = frozenset(
    (
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    )
)
_GENAI_CONTENT_PREFIXES = ("gen_ai.prompt.", "gen_ai.completion.")


def hidden_key_rule(environ: Mapping[str, str] | None = None) -> KeyRule | None:
    """The rule the switches in ``environ`` (the process's, by default) make, or ``None``
    when none is set."""
    environ = os.environ if environ is None else environ
    on = {name for name in _SWITCHES if _is_true(environ, f"OPENINFERENCE_{name}")}
    genai = environ.get(GENAI_CONTENT_VARIABLE, "").strip().lower() in _GENAI_NO_CONTENT
    if not on and not genai:
        return None

    def rule(key: str) -> Action | None:
        if genai and (key in _GENAI_CONTENT_KEYS or key.startswith(_GENAI_CONTENT_PREFIXES)):
            return "drop"
        return _openinference_rule(on, key) if on else None

    return rule


def _is_true(environ: Mapping[str, str], variable: str) -> bool:
    value = environ.get(variable)
    if value is None:
        return False
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    _logger.warning(
        "sessiontrace: %s=%r is neither true nor false; it is ignored (set it to true to hide)",
        variable,
        value,
    )
    return False


def _within(key: str, namespace: str) -> bool:
    return key == namespace or key.startswith(namespace + ".")


def _input_image(key: str) -> bool:
    return ("llm.input_messages" in key and "message_content.image" in key) or _within(
        key, "input.images"
    )


def _output_image(key: str) -> bool:
    return ("llm.output_messages" in key and "message_content.image" in key) or _within(
        key, "output.images"
    )


def _text_of(messages: str, key: str) -> bool:
    return messages in key and (
        ("message.content" in key and "message.contents" not in key)
        or "message_content.text" in key
    )


def _openinference_rule(on: set[str], key: str) -> Action | None:
    """``TraceConfig.mask``'s decision for ``key``, its branches in its order."""
    inputs, outputs = "HIDE_INPUTS" in on, "HIDE_OUTPUTS" in on
    if "HIDE_LLM_INVOCATION_PARAMETERS" in on and key == "llm.invocation_parameters":
        return "drop"
    if (inputs or "HIDE_LLM_TOOLS" in on) and "llm.tools" in key:
        return "drop"
    if inputs and key in ("input.value", "reranker.query"):
        return "mask"
    if inputs and (key == "input.mime_type" or _within(key, "reranker.input_documents")):
        return "drop"
    if outputs and key == "output.value":
        return "mask"
    if outputs and (key == "output.mime_type" or _within(key, "reranker.output_documents")):
        return "drop"
    if (
        ("HIDE_RETRIEVAL_DOCUMENTS" in on or outputs)
        and _within(key, "retrieval.documents")
        and key.endswith(("document.content", "document.metadata"))
    ):
        return "mask"
    if (inputs or "HIDE_INPUT_MESSAGES" in on) and "llm.input_messages" in key:
        return "drop"
    if (inputs or "HIDE_PROMPTS" in on) and "llm.prompts" in key:
        return "mask"
    if (outputs or "HIDE_OUTPUT_MESSAGES" in on) and "llm.output_messages" in key:
        return "drop"
    if (outputs or "HIDE_CHOICES" in on) and "llm.choices" in key:
        return "mask"
    if "HIDE_INPUT_TEXT" in on and _text_of("llm.input_messages", key):
        return "mask"
    if "HIDE_OUTPUT_TEXT" in on and _text_of("llm.output_messages", key):
        return "mask"
    if (inputs or "HIDE_INPUT_IMAGES" in on) and _input_image(key):
        return "drop"
    if outputs and _output_image(key):
        return "drop"
    embeddings = "embedding.embeddings" in key
    if (
        ("HIDE_EMBEDDING_VECTORS" in on or "HIDE_EMBEDDINGS_VECTORS" in on)
        and embeddings
        and "embedding.vector" in key
    ):
        return "mask"
    if "HIDE_EMBEDDINGS_TEXT" in on and embeddings and "embedding.text" in key:
        return "mask"
    return None
