"""LangChain runs naming a conversation in their config: every span of the run gets the session.

Real langchain-core runnables and langchain-openai's ChatOpenAI against the fake OpenAI server,
with OpenInference's OpenAI instrumentation on, and each LangChain instrumentation (or none).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import warnings

import pytest
from opentelemetry import context as otel_context

from helpers.fake_openai import REPLY, FakeOpenAI
from sessiontrace import current_session_id, using_attributes

with warnings.catch_warnings():
    # Third-party import-time deprecations (pydantic v1-style configs); not this test's business.
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    from sessiontrace.integrations import langchain as st_langchain

LANGCHAIN_INSTRUMENTATIONS = {
    "none": None,
    "openinference": ("openinference.instrumentation.langchain", "LangChainInstrumentor"),
    "traceloop": ("opentelemetry.instrumentation.langchain", "LangchainInstrumentor"),
}


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as running:
        yield running


@pytest.fixture(scope="module", autouse=True)
def openai_instrumented():
    from openinference.instrumentation.openai import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument()
    st_langchain.instrument()
    try:
        yield
    finally:
        st_langchain.uninstrument()
        instrumentor.uninstrument()


@pytest.fixture(autouse=True)
def _context_as_it_was():
    # Traceloop's LangChain instrumentation (opentelemetry-instrumentation-langchain) leaves
    # its "RunnableSequence.workflow" span current in the caller after a sequence's batch():
    # it attaches a context in a worker thread's callback and detaches it elsewhere. Put the
    # caller's context back, so the next module's tests start clean.
    token = otel_context.attach(otel_context.get_current())
    yield
    otel_context.detach(token)


@pytest.fixture(params=list(LANGCHAIN_INSTRUMENTATIONS))
def lc_instrumentation(request):
    found = LANGCHAIN_INSTRUMENTATIONS[request.param]
    if found is None:
        yield request.param
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module, name = found
        instrumentor = getattr(importlib.import_module(module), name)()
        instrumentor.instrument()
    try:
        yield request.param
    finally:
        instrumentor.uninstrument()


def make_chain(server, tracer):
    @tool
    def count_words(text: str) -> int:
        """Count the words of a text."""
        with tracer.start_as_current_span("tool-body"):
            return len(text.split())

    prompt = ChatPromptTemplate.from_messages([("user", "Where should I travel in {month}?")])
    llm = ChatOpenAI(model="fake-mini", base_url=server.base_url, api_key="test", max_retries=0)
    return prompt | llm | StrOutputParser() | count_words


def assert_all_stamped(spans, session_id, lc_instrumentation):
    found = spans.all()
    names = {span.name for span in found}
    assert "tool-body" in names
    assert any(
        span.instrumentation_scope.name.startswith("openinference.instrumentation.openai")
        for span in found
    )
    if lc_instrumentation != "none":
        assert len(found) > 2, names  # the LangChain instrumentation made its spans
    for span in found:
        attributes = span.attributes
        assert attributes.get("session.id") == session_id, (span.name, dict(attributes))
        assert attributes.get("gen_ai.conversation.id") == session_id, span.name
        assert attributes.get("traceloop.association.properties.session_id") == session_id


@pytest.mark.parametrize("key", ["thread_id", "session_id", "conversation_id"])
def test_metadata_names_the_session(server, tracer, spans, lc_instrumentation, key):
    chain = make_chain(server, tracer)
    result = chain.invoke({"month": "May"}, config={"metadata": {key: "chat-1"}})
    assert result == len(REPLY.split())
    assert current_session_id() is None
    assert_all_stamped(spans, "chat-1", lc_instrumentation)


def test_configurable_thread_id(server, tracer, spans, lc_instrumentation):
    chain = make_chain(server, tracer)
    chain.invoke({"month": "May"}, config={"configurable": {"thread_id": "chat-2"}})
    found = spans.all()
    # Without LangGraph, langchain-core does not copy configurable into callback metadata, so
    # openinference-langchain writes no session itself; sessiontrace stamps every span anyway.
    for span in found:
        assert span.attributes.get("gen_ai.conversation.id") == "chat-2", span.name


def test_explicit_session_wins(server, tracer, spans, lc_instrumentation):
    chain = make_chain(server, tracer)
    with using_attributes(session_id="explicit-9", metadata={"plan": "pro"}):
        chain.invoke({"month": "May"}, config={"metadata": {"thread_id": "from-config"}})
    assert_all_stamped(spans, "explicit-9", lc_instrumentation)
    for span in spans.all():
        # Ours is kept on every span; openinference-langchain's run metadata is merged in.
        assert json.loads(span.attributes["metadata"])["plan"] == "pro", span.name


def test_invalid_thread_id_is_ignored(server, tracer, spans, caplog):
    chain = make_chain(server, tracer)
    with caplog.at_level("WARNING", logger="sessiontrace"):
        chain.invoke({"month": "May"}, config={"metadata": {"thread_id": "bad\nid"}})
        chain.invoke({"month": "May"}, config={"metadata": {"thread_id": "bad\nid"}})
    assert len([r for r in caplog.records if "thread_id" in r.getMessage()]) <= 1
    for span in spans.all():
        assert "gen_ai.conversation.id" not in span.attributes


def test_batch_gives_each_run_its_own_session(server, tracer, spans, lc_instrumentation):
    chain = make_chain(server, tracer)
    chain.batch(
        [{"month": "May"}, {"month": "June"}],
        config=[{"metadata": {"thread_id": "chat-a"}}, {"metadata": {"thread_id": "chat-b"}}],
    )
    openai_spans = [
        span
        for span in spans.all()
        if span.instrumentation_scope.name.startswith("openinference.instrumentation.openai")
    ]
    assert sorted(span.attributes["session.id"] for span in openai_spans) == ["chat-a", "chat-b"]
    bodies = [span for span in spans.all() if span.name == "tool-body"]
    assert sorted(span.attributes["session.id"] for span in bodies) == ["chat-a", "chat-b"]
    # Every span of the batch, the LangChain instrumentation's own included (a sequence's
    # batch starts them in the caller's context), carries its own run's session.
    for span in spans.all():
        assert span.attributes.get("gen_ai.conversation.id") in ("chat-a", "chat-b"), span.name
    sessions = [s.attributes["gen_ai.conversation.id"] for s in spans.all()]
    assert sessions.count("chat-a") == sessions.count("chat-b")


def test_astream(server, tracer, spans, lc_instrumentation):
    chain = make_chain(server, tracer)

    async def run() -> list[object]:
        return [
            chunk
            async for chunk in chain.astream(
                {"month": "May"}, config={"metadata": {"thread_id": "chat-s"}}
            )
        ]

    assert asyncio.run(run()) == [len(REPLY.split())]
    assert current_session_id() is None
    assert_all_stamped(spans, "chat-s", lc_instrumentation)


def test_langgraph_configurable_thread_id(server, tracer, spans):
    import langgraph.graph as langgraph
    from langgraph.checkpoint.memory import InMemorySaver

    llm = ChatOpenAI(model="fake-mini", base_url=server.base_url, api_key="test", max_retries=0)

    def answer(state: dict) -> dict:
        with tracer.start_as_current_span("node-body"):
            return {"messages": [llm.invoke(state["messages"])]}

    builder = langgraph.StateGraph(langgraph.MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(langgraph.START, "answer")
    graph = builder.compile(checkpointer=InMemorySaver())
    graph.invoke(
        {"messages": [("user", "Where should I travel?")]},
        config={"configurable": {"thread_id": "graph-1"}},
    )
    found = spans.all()
    assert {"node-body"} <= {span.name for span in found}
    for span in found:
        assert span.attributes.get("session.id") == "graph-1", span.name
