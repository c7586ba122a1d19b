"""_redaction_env: the content switches users set, decided key by key as their libraries do.

Each OPENINFERENCE_HIDE_* switch is compared with openinference-instrumentation's own
``TraceConfig.mask`` over every key its rules name and the keys nested under them.
"""

from __future__ import annotations

import logging

import pytest
from openinference.instrumentation import TraceConfig

from sessiontrace._redaction_env import (
    GENAI_CONTENT_VARIABLE,
    OPENINFERENCE_VARIABLES,
    REDACTED_VALUE,
    hidden_key_rule,
)

KEYS = [
    "input.value", "input.mime_type", "output.value", "output.mime_type",
    "llm.invocation_parameters", "llm.tools.0.tool.json_schema", "llm.model_name",
    "llm.input_messages.0.message.role", "llm.input_messages.0.message.content",
    "llm.input_messages.1.message.contents.0.message_content.text",
    "llm.input_messages.1.message.contents.1.message_content.image.image.url",
    "llm.output_messages.0.message.content", "llm.output_messages.0.message.role",
    "llm.output_messages.0.message.contents.0.message_content.text",
    "llm.output_messages.0.message.contents.1.message_content.image.image.url",
    "llm.prompts.0.prompt.text", "llm.choices.0.completion.text",
    "input.images.0.image.url", "output.images.0.image.url",
    "reranker.query", "reranker.input_documents.0.document.content",
    "reranker.output_documents.0.document.content",
    "retrieval.documents.0.document.content", "retrieval.documents.0.document.metadata",
    "retrieval.documents.0.document.id",
    "embedding.embeddings.0.embedding.vector", "embedding.embeddings.0.embedding.text",
    "embedding.model_name", "session.id", "user.id", "metadata", "http.url",
]  # fmt: skip


def openinference_says(variable: str, key: str) -> str | None:
    field = variable.removeprefix("OPENINFERENCE_").lower()
    masked = TraceConfig(**{field: True}).mask(key, "value")
    return "drop" if masked is None else ("mask" if masked == REDACTED_VALUE else None)


@pytest.mark.parametrize("variable", OPENINFERENCE_VARIABLES)
def test_each_openinference_switch_decides_every_key_as_openinference_does(variable):
    rule = hidden_key_rule({variable: "true"})
    assert rule is not None
    assert {key: rule(key) for key in KEYS} == {
        key: openinference_says(variable, key) for key in KEYS
    }


def test_switches_off_or_unset_hide_nothing():
    assert hidden_key_rule({}) is None
    assert hidden_key_rule({variable: "false" for variable in OPENINFERENCE_VARIABLES}) is None
    assert hidden_key_rule({GENAI_CONTENT_VARIABLE: "true"}) is None


@pytest.mark.parametrize("value", ["false", "FALSE", "no_content", "EVENT_ONLY"])
def test_genai_content_capture_off_drops_message_content_in_every_convention(value):
    rule = hidden_key_rule({GENAI_CONTENT_VARIABLE: value})
    assert rule is not None
    for key in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
                "gen_ai.prompt.0.content", "gen_ai.completion.0.content",
                "gen_ai.tool.call.arguments"):  # fmt: skip
        assert rule(key) == "drop", key
    for key in ("gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.conversation.id"):
        assert rule(key) is None, key


def test_a_value_neither_true_nor_false_warns_and_is_ignored(caplog):
    with caplog.at_level(logging.WARNING, logger="sessiontrace"):
        assert hidden_key_rule({"OPENINFERENCE_HIDE_INPUTS": "yes"}) is None
    assert "OPENINFERENCE_HIDE_INPUTS='yes' is neither true nor false" in caplog.text
