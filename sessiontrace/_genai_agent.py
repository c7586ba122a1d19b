"""The one place that maps sessiontrace's runs, steps and observe() kinds to GenAI agent keys.

OpenTelemetry's GenAI agent conventions (``gen-ai-agent-spans``) describe an agent's work as
``invoke_agent`` spans (the agent doing a turn, with ``gen_ai.agent.name``) and
``execute_tool`` spans (``gen_ai.tool.name``). sessiontrace's own spans say which they are:

- a tracker's root span (the session span with ``steps_as_children=True``, else each step,
  which is then the root of its trace) is ``invoke_agent``, with the agent's name (the
  tracker's ``agent_name``, else its ``name``), and its id and description when given;
- ``observe(kind="tool")`` is ``execute_tool`` with the span's name as the tool's;
- ``observe(kind="agent")`` is ``invoke_agent`` with the span's name as the agent's;
- every other span (steps under a session span, ``observe`` of kind llm, chain, retriever,
  ...) gets no operation: it is not one the conventions name, or (llm, embedding) one that
  only the model call's own instrumentation can describe (provider, model, chat or not).

The keys are written when the span starts, as the conventions ask of them (samplers read
them): nothing is there to overwrite yet, and whatever is set later, by the user or by an
instrumentation, wins. Span names stay the user's and span kinds stay ``INTERNAL`` (what the
conventions give in-process agents and tools).

Example:
    >>> observe_attributes("TOOL", "lookup_weather")
    {'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'lookup_weather'}
    >>> observe_attributes("CHAIN", "plan")
    {}
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from opentelemetry.util.types import AttributeValue

from sessiontrace import _keys

# Attribute names and values as OpenTelemetry's GenAI conventions spell them (checked against
# opentelemetry-semantic-conventions' gen_ai_attributes, GenAiOperationNameValues).
OPERATION = _keys.GENAI_OPERATION  # "gen_ai.operation.name"
AGENT_NAME = _keys.GENAI_AGENT_NAME
AGENT_ID = _keys.GENAI_AGENT_ID
AGENT_DESCRIPTION = _keys.GENAI_AGENT_DESCRIPTION
TOOL_NAME = _keys.GENAI_TOOL_NAME
INVOKE_AGENT = _keys.GENAI_INVOKE_AGENT
EXECUTE_TOOL = _keys.GENAI_EXECUTE_TOOL

NO_ATTRIBUTES: Mapping[str, AttributeValue] = MappingProxyType({})


def agent_attributes(
    name: str | None, agent_id: str | None = None, description: str | None = None
) -> Mapping[str, AttributeValue]:
    """The keys of an ``invoke_agent`` span: the operation and what is known of the agent.

    The values were checked at the call that named them (``SessionTracker``); the result is
    read-only, built once per tracker.

    Example:
        >>> dict(agent_attributes("travel-agent"))
        {'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'travel-agent'}
    """
    attributes: dict[str, AttributeValue] = {OPERATION: INVOKE_AGENT}
    if name is not None:
        attributes[AGENT_NAME] = name
    if agent_id is not None:
        attributes[AGENT_ID] = agent_id
    if description is not None:
        attributes[AGENT_DESCRIPTION] = description
    return MappingProxyType(attributes)


def observe_attributes(kind: str, name: str) -> dict[str, AttributeValue]:
    """The GenAI keys of an ``observe()`` span of OpenInference ``kind`` (upper case) named
    ``name``: ``execute_tool`` for a tool, ``invoke_agent`` for an agent, else none."""
    if kind == "TOOL":
        return {OPERATION: EXECUTE_TOOL, TOOL_NAME: name}
    if kind == "AGENT":
        return {OPERATION: INVOKE_AGENT, AGENT_NAME: name}
    return {}
