"""observe(): spans around the user's own functions and blocks, stamped like any other."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry.trace import StatusCode

from sessiontrace import observe, using_session


def test_decorated_function_records_input_output_kind_and_session(spans):
    @observe(kind="tool")
    def lookup_weather(city: str, units: str = "metric") -> dict[str, object]:
        return {"city": city, "temp": 21}

    with using_session("chat-1"):
        assert lookup_weather("Oslo") == {"city": "Oslo", "temp": 21}
    span = spans.named(
        "test_decorated_function_records_input_output_kind_and_session.<locals>.lookup_weather"
    )
    attributes = span.attributes
    assert attributes["openinference.span.kind"] == "TOOL"
    assert json.loads(attributes["input.value"]) == {"city": "Oslo"}
    assert attributes["input.mime_type"] == "application/json"
    assert json.loads(attributes["output.value"]) == {"city": "Oslo", "temp": 21}
    assert attributes["session.id"] == "chat-1"


def test_bare_decorator_and_str_output(spans):
    @observe
    def greet(name: str) -> str:
        return f"hello {name}"

    greet("ada")
    attributes = spans.all()[0].attributes
    assert attributes["openinference.span.kind"] == "CHAIN"
    assert attributes["output.value"] == "hello ada"
    assert attributes["output.mime_type"] == "text/plain"


def test_methods_leave_out_self_and_unencodable_values_fall_back_to_repr(spans):
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque>"

    class Agent:
        @observe("agent.plan")
        def plan(self, goal: str, hint: object) -> object:
            return Opaque()

    Agent().plan("book a flight", Opaque())
    attributes = spans.attributes("agent.plan")
    assert json.loads(attributes["input.value"]) == {"goal": "book a flight", "hint": "<Opaque>"}
    assert json.loads(attributes["output.value"]) == "<Opaque>"


def test_capture_can_be_turned_off(spans):
    @observe("secret", capture_input=False, capture_output=False)
    def secret(password: str) -> str:
        return password

    secret("hunter2")
    attributes = spans.attributes("secret")
    assert "input.value" not in attributes
    assert "output.value" not in attributes


def test_exception_is_recorded_and_reraised(spans):
    @observe("fails")
    def fails() -> None:
        raise ValueError("bad plan")

    with pytest.raises(ValueError, match="bad plan"):
        fails()
    span = spans.named("fails")
    assert span.status.status_code is StatusCode.ERROR
    assert "ValueError: bad plan" in span.status.description
    assert [event.name for event in span.events] == ["exception"]


def test_nested_observed_functions_form_a_tree(spans):
    @observe("inner")
    def inner() -> int:
        return 1

    @observe("outer")
    def outer() -> int:
        return inner() + 1

    assert outer() == 2
    assert spans.named("inner").parent.span_id == spans.named("outer").context.span_id


async def test_async_function(spans):
    @observe("async-step", kind="llm")
    async def step(prompt: str) -> str:
        await asyncio.sleep(0)
        return prompt.upper()

    with using_session("async-chat"):
        assert await step("hi") == "HI"
    attributes = spans.attributes("async-step")
    assert attributes["output.value"] == "HI"
    assert attributes["openinference.span.kind"] == "LLM"
    assert attributes["session.id"] == "async-chat"


def test_generator_span_covers_iteration_and_joins_str_items(spans, tracer):
    @observe("stream")
    def stream():
        for word in ("Hel", "lo"):
            with tracer.start_as_current_span("chunk"):
                yield word

    with using_session("streaming"):
        assert list(stream()) == ["Hel", "lo"]
    span = spans.named("stream")
    assert span.attributes["output.value"] == "Hello"
    chunks = [s for s in spans.all() if s.name == "chunk"]
    assert {c.parent.span_id for c in chunks} == {span.context.span_id}


def test_generator_closed_early_is_not_an_error(spans):
    @observe("early")
    def numbers():
        yield 1
        yield 2

    generator = numbers()
    next(generator)
    generator.close()
    span = spans.named("early")
    assert span.status.status_code is StatusCode.UNSET
    assert json.loads(span.attributes["output.value"]) == [1]


async def test_async_generator(spans):
    @observe("astream")
    async def stream():
        yield {"delta": "a"}
        yield {"delta": "b"}

    with using_session("s"):
        items = [item async for item in stream()]
    assert items == [{"delta": "a"}, {"delta": "b"}]
    attributes = spans.attributes("astream")
    assert json.loads(attributes["output.value"]) == items
    assert attributes["session.id"] == "s"


def test_context_manager_yields_the_span(spans, tracer):
    with using_session("block"), observe("retrieve", kind="retriever") as span:
        span.set_attribute("output.value", "3 documents")
        with tracer.start_as_current_span("db"):
            pass
    retrieve = spans.named("retrieve")
    assert retrieve.attributes["openinference.span.kind"] == "RETRIEVER"
    assert retrieve.attributes["session.id"] == "block"
    assert spans.named("db").parent.span_id == retrieve.context.span_id


async def test_async_and_generator_tools_and_agents_carry_the_genai_keys(spans):
    @observe(kind="tool")
    async def fetch_page(url: str) -> str:
        await asyncio.sleep(0)
        return "<html>"

    @observe("stream_rows", kind="tool")
    def stream_rows():
        yield "a"
        yield "b"

    @observe("researcher", kind="AGENT")  # kinds are case-insensitive
    async def research():
        async for _ in aresults():
            pass

    @observe("aresults", kind="chain")
    async def aresults():
        yield 1

    await fetch_page("https://example.org")
    assert list(stream_rows()) == ["a", "b"]
    await research()
    async with observe("critic", kind="agent"):
        pass
    name = fetch_page.__qualname__
    expected = {
        name: ("execute_tool", "gen_ai.tool.name", name),
        "stream_rows": ("execute_tool", "gen_ai.tool.name", "stream_rows"),
        "researcher": ("invoke_agent", "gen_ai.agent.name", "researcher"),
        "critic": ("invoke_agent", "gen_ai.agent.name", "critic"),
    }
    for span_name, (operation, key, value) in expected.items():
        attributes = spans.attributes(span_name)
        assert (attributes["gen_ai.operation.name"], attributes[key]) == (operation, value)
    assert "gen_ai.operation.name" not in spans.attributes("aresults")


async def test_async_context_manager_records_error(spans):
    with pytest.raises(RuntimeError):
        async with observe("async-block"):
            raise RuntimeError("x")
    assert spans.named("async-block").status.status_code is StatusCode.ERROR


def test_one_observe_object_entered_twice_nested(spans):
    block = observe("reused")
    with block, block:
        pass
    finished = [span for span in spans.all() if span.name == "reused"]
    assert len(finished) == 2
    assert finished[0].parent.span_id == finished[1].context.span_id


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="not an OpenInference span kind"):
        observe("x", kind="banana")
    with pytest.raises(TypeError, match="needs a name"):
        with observe():
            pass
    with pytest.raises(TypeError, match="non-empty str"):
        observe("")


def test_large_values_are_truncated(spans):
    @observe("big")
    def big() -> str:
        return "x" * 20_000

    big()
    value = spans.attributes("big")["output.value"]
    assert value.endswith("…(truncated)")
    assert len(value) < 17_000


async def test_one_observe_object_in_two_tasks_at_once(spans):
    block = observe("shared")
    inside = asyncio.Event()

    async def run(session_id):
        with using_session(session_id):
            async with block:
                inside.set() if session_id == "b" else await inside.wait()
                await asyncio.sleep(0)
            await asyncio.sleep(0)

    await asyncio.gather(run("a"), run("b"))
    finished = sorted(spans.all(), key=lambda span: span.attributes["session.id"])
    assert [span.attributes["session.id"] for span in finished] == ["a", "b"]
    first, second = finished
    assert first.parent == second.parent  # siblings: neither nested in the other


def test_leaving_a_block_never_entered_here_warns_and_ends_nothing(spans, caplog):
    block = observe("elsewhere")
    block.__exit__(None, None, None)
    assert "not entered in this context" in caplog.text
    assert spans.all() == []
