"""Every attribute name and context key sessiontrace uses, and the dialect tables.

No other module spells an attribute name as a literal: they import it from here.
See ``docs/attributes.md`` for the user-facing copy of these tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.context import create_key

# The OpenTelemetry context keys under which the entry in force is kept (see _context), and
# beside it the context that was current before it was pushed.
CONTEXT_KEY = create_key("sessiontrace.session")
RESTORE_KEY = create_key("sessiontrace.restore")

# --- OpenInference (Arize Phoenix) -------------------------------------------------------
OI_SESSION_ID = "session.id"
OI_USER_ID = "user.id"
OI_METADATA = "metadata"  # one JSON string
OI_TAGS = "tag.tags"  # list of str
OI_SPAN_KIND = "openinference.span.kind"
OI_INPUT_VALUE = "input.value"
OI_INPUT_MIME_TYPE = "input.mime_type"
OI_OUTPUT_VALUE = "output.value"
OI_OUTPUT_MIME_TYPE = "output.mime_type"
OI_MODEL_NAME = "llm.model_name"
OI_TOKENS_PROMPT = "llm.token_count.prompt"
OI_TOKENS_COMPLETION = "llm.token_count.completion"
OI_TOKENS_TOTAL = "llm.token_count.total"
OI_SPAN_KINDS = frozenset(
    {
        "CHAIN",
        "LLM",
        "TOOL",
        "AGENT",
        "RETRIEVER",
        "EMBEDDING",
        "RERANKER",
        "GUARDRAIL",
        "EVALUATOR",
        "PROMPT",
        "DECISION",
        "UNKNOWN",
    }
)

# --- OpenTelemetry GenAI semantic conventions --------------------------------------------
GENAI_CONVERSATION_ID = "gen_ai.conversation.id"
GENAI_USER_ID = "user.id"  # the general OpenTelemetry `user` namespace
GENAI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GENAI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GENAI_REQUEST_MODEL = "gen_ai.request.model"
GENAI_RESPONSE_MODEL = "gen_ai.response.model"

# --- Langfuse ----------------------------------------------------------------------------
LANGFUSE_SESSION_ID = "langfuse.session.id"
LANGFUSE_USER_ID = "langfuse.user.id"
LANGFUSE_METADATA_PREFIX = "langfuse.trace.metadata."
LANGFUSE_TAGS = "langfuse.trace.tags"

# --- Traceloop / OpenLLMetry -------------------------------------------------------------
TRACELOOP_PROPERTY_PREFIX = "traceloop.association.properties."
TRACELOOP_SESSION_ID = TRACELOOP_PROPERTY_PREFIX + "session_id"
TRACELOOP_USER_ID = TRACELOOP_PROPERTY_PREFIX + "user_id"
TRACELOOP_TOTAL_TOKENS = "llm.usage.total_tokens"
TRACELOOP_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"
TRACELOOP_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"

# --- sessiontrace's own concepts ----------------------------------------------------------
PREFIX = "sessiontrace."
# What kind of span sessiontrace itself made: "session", "step" or "summary".
SPAN_TYPE = PREFIX + "span.type"
SESSION_NAME = PREFIX + "session.name"
PARENT_SESSION_ID = PREFIX + "parent_session.id"
PARENT_TRACE_IDS = PREFIX + "parent_trace.ids"  # traces set_parent() named without a span
STEP_INDEX = PREFIX + "step.index"  # int, 0-based; on every span inside a step
STEP_NAME = PREFIX + "step.name"
STATE = PREFIX + "state"  # JSON object, once per step, on the step's span
SUMMARY_PREFIX = PREFIX + "summary."  # + steps, spans, llm_calls, prompt_tokens, ...
STATUS = PREFIX + "status"  # "ok" or "error", on the session and summary spans
# Propagated to other services (W3C baggage keys, and a plain header), by tracker.headers().
BAGGAGE_SESSION_ID = OI_SESSION_ID
BAGGAGE_USER_ID = OI_USER_ID
BAGGAGE_STEP_INDEX = STEP_INDEX
SESSION_HEADER = "X-Session-Id"
# Cost attributes instrumentation may provide, read for the tracker's totals (USD).
OI_COST_TOTAL = "llm.cost.total"
LANGFUSE_COST = "gen_ai.usage.cost"
GENAI_OPERATION = "gen_ai.operation.name"
# GenAI agent keys on sessiontrace's own spans (_genai_agent.py), and the operations they name.
GENAI_AGENT_NAME = "gen_ai.agent.name"
GENAI_AGENT_ID = "gen_ai.agent.id"
GENAI_AGENT_DESCRIPTION = "gen_ai.agent.description"
GENAI_TOOL_NAME = "gen_ai.tool.name"
GENAI_INVOKE_AGENT = "invoke_agent"
GENAI_EXECUTE_TOOL = "execute_tool"
# What tells two spans of one LLM call apart from two calls (_usage.CallLedger).
GENAI_RESPONSE_ID = "gen_ai.response.id"

# --- Dialects ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dialect:
    """Where one backend's conventions put each value: the table ``_frames`` builds spans from.

    A None key means the dialect has no place for that value. Metadata goes either into one
    attribute as a JSON object (``metadata``) or into one attribute per key (``metadata_prefix``
    + key), each value JSON-encoded, or with ``metadata_text`` a str value as it is.
    """

    name: str
    session_id: str | None
    user_id: str | None
    metadata: str | None = None
    metadata_prefix: str | None = None
    metadata_text: bool = False
    tags: str | None = None


OPENINFERENCE = "openinference"
GENAI = "genai"
LANGFUSE = "langfuse"
TRACELOOP = "traceloop"
DIALECTS: dict[str, Dialect] = {
    dialect.name: dialect
    for dialect in (
        Dialect(OPENINFERENCE, OI_SESSION_ID, OI_USER_ID, metadata=OI_METADATA, tags=OI_TAGS),
        Dialect(GENAI, GENAI_CONVERSATION_ID, GENAI_USER_ID),
        # As the Langfuse SDK writes metadata: every value JSON-encoded, str included.
        Dialect(
            LANGFUSE,
            LANGFUSE_SESSION_ID,
            LANGFUSE_USER_ID,
            metadata_prefix=LANGFUSE_METADATA_PREFIX,
            tags=LANGFUSE_TAGS,
        ),
        Dialect(
            TRACELOOP,
            TRACELOOP_SESSION_ID,
            TRACELOOP_USER_ID,
            metadata_prefix=TRACELOOP_PROPERTY_PREFIX,
            metadata_text=True,
        ),
    )
}
ALL_DIALECTS: tuple[str, ...] = tuple(DIALECTS)
# Phoenix reads the OpenInference keys; GenAI tools read gen_ai.conversation.id; Langfuse's
# OTLP ingestion reads session.id, user.id, gen_ai.conversation.id and tag.tags besides its own
# langfuse.* keys (its metadata needs the langfuse dialect: it does not map `metadata`).
DEFAULT_DIALECTS: tuple[str, ...] = (OPENINFERENCE, GENAI)

# Where a span's session id may be found, in the order readers (store, CLI) try them.
SESSION_ID_KEYS: tuple[str, ...] = (
    OI_SESSION_ID,
    GENAI_CONVERSATION_ID,
    LANGFUSE_SESSION_ID,
    TRACELOOP_SESSION_ID,
)
USER_ID_KEYS: tuple[str, ...] = (OI_USER_ID, LANGFUSE_USER_ID, TRACELOOP_USER_ID)

# Keys sessiontrace stamps: kept when a span overflows its attribute limit.
OWNED_KEYS = frozenset(
    key
    for dialect in DIALECTS.values()
    for key in (dialect.session_id, dialect.user_id, dialect.metadata, dialect.tags)
    if key is not None
)
OWNED_PREFIXES: tuple[str, ...] = (PREFIX, LANGFUSE_METADATA_PREFIX, TRACELOOP_PROPERTY_PREFIX)


def is_owned_key(key: str) -> bool:
    """Whether ``key`` is one that sessiontrace stamps (and so reserves on a full span)."""
    return key in OWNED_KEYS or key.startswith(OWNED_PREFIXES)

# Redaction (configure(redact=...)): how many values it masked or dropped on a span, and the
# keys it never touches, so that an id is never masked because it looks like an e-mail.
REDACTION_COUNT = PREFIX + "redaction.count"
NEVER_REDACTED = frozenset(
    (
        *SESSION_ID_KEYS,
        *USER_ID_KEYS,
        OI_TAGS,
        LANGFUSE_TAGS,
        SPAN_TYPE,
        SESSION_NAME,
        PARENT_SESSION_ID,
        PARENT_TRACE_IDS,
        STEP_INDEX,
        STEP_NAME,
        STATUS,
        REDACTION_COUNT,
        GENAI_AGENT_NAME,
        GENAI_AGENT_ID,
        GENAI_TOOL_NAME,
    )
)
