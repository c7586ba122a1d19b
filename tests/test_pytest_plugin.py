"""The pytest plugin: ``sessiontrace_spans`` in a user's own suite, run by pytest in a subprocess.

Each suite below is a user's test files, run with ``pytester.runpytest_subprocess`` in a fresh
interpreter where the plugin loads from its entry point, as in a user's virtualenv; warnings
are errors there too. This process's global provider (tests/conftest.py's) is never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessiontrace import using_session
from sessiontrace.testing import capture_spans

pytest_plugins = ["pytester"]

INI = """\
[pytest]
filterwarnings = error
asyncio_default_fixture_loop_scope = function
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    """A user's project; its runs see none of this shell's OTEL_/SESSIONTRACE_ settings."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "SESSIONTRACE_", "PYTEST_")):
            monkeypatch.delenv(name)
    pytester.makefile(".ini", pytest=INI)
    return pytester


# Plugins of other packages in this virtualenv that the suites do not use; langsmith's and
# hypothesis's take seconds to import, in every run.
OTHER_PLUGINS = ("-p", "no:langsmith_plugin", "-p", "no:hypothesispytest", "-p", "no:anyio")


def run(suite, *args):
    return suite.runpytest_subprocess("-p", "no:cacheprovider", *OTHER_PLUGINS, *args, timeout=120)


GLOBAL_TRACER = """
import asyncio

import pytest
from opentelemetry import trace

from sessiontrace import ContextThreadPoolExecutor, observe, using_attributes, using_session
from sessiontrace.testing import capture_spans

tracer = trace.get_tracer("app")  # made at import, before any fixture: a proxy tracer


def answer(question):
    with using_attributes(session_id="chat-42", user_id="ada", tags=["beta"]):
        with tracer.start_as_current_span("answer"):
            with ContextThreadPoolExecutor() as pool:
                pool.submit(lambda: tracer.start_span("lookup").end()).result()
            return "42"


def test_spans_of_the_global_tracer_are_captured_with_the_session(sessiontrace_spans):
    assert answer("?") == "42"
    assert [span.name for span in sessiontrace_spans.spans()] == ["lookup", "answer"]
    attributes = sessiontrace_spans.attributes("answer")
    assert attributes["session.id"] == "chat-42"
    assert attributes["gen_ai.conversation.id"] == "chat-42"
    assert attributes["user.id"] == "ada"
    assert attributes["tag.tags"] == ("beta",)
    assert sessiontrace_spans.attributes("lookup")["session.id"] == "chat-42"
    assert list(sessiontrace_spans.sessions()) == ["chat-42"]
    assert len(sessiontrace_spans.exporter.get_finished_spans()) == 2
    sessiontrace_spans.clear()
    assert sessiontrace_spans.spans() == []


def test_spans_of_instrumentation_made_with_the_api_are_captured(sessiontrace_spans):
    @observe(name="tool")
    def tool(city):
        return city.upper()

    with using_session("chat-7"):
        tool("oslo")
    tool("bergen")
    sessions = sessiontrace_spans.sessions()
    assert {key: len(spans) for key, spans in sessions.items()} == {"chat-7": 1, None: 1}
    assert [span.name for span in sessiontrace_spans.by_name("tool")] == ["tool", "tool"]


@pytest.mark.asyncio
async def test_an_async_test_is_captured(sessiontrace_spans):
    async def turn(session):
        with using_session(session), tracer.start_as_current_span("turn"):
            await asyncio.sleep(0)

    await asyncio.gather(turn("a"), turn("b"))
    assert sorted(sessiontrace_spans.sessions()) == ["a", "b"]


def test_one_global_capture_at_a_time(sessiontrace_spans):
    with pytest.raises(RuntimeError, match="already capturing the global provider"):
        with capture_spans(global_provider=True):
            pass
    tracer.start_span("still-captured").end()
    assert [span.name for span in sessiontrace_spans.spans()] == ["still-captured"]
"""


def test_spans_of_the_global_tracer_are_captured_with_the_session(suite):
    suite.makepyfile(test_app=GLOBAL_TRACER)
    result = run(suite)
    result.assert_outcomes(passed=4)


IN_A_ROW = """
import threading

from opentelemetry import trace

from sessiontrace import current, set_session, using_attributes

tracer = trace.get_tracer("app")
started, release, workers = threading.Event(), threading.Event(), []


def _late():
    with tracer.start_as_current_span("late"):
        started.set()
        release.wait(10)


def test_first_leaves_everything_in_force(sessiontrace_spans):
    set_session("first-session", user_id="ada")  # never restored
    using_attributes(metadata={"plan": "pro"}, tags=["beta"]).__enter__()  # never left
    span = tracer.start_span("left-open")
    trace.context_api.attach(trace.set_span_in_context(span))  # never detached
    with tracer.start_as_current_span("first"):
        pass
    worker = threading.Thread(target=_late)
    worker.start()
    started.wait(10)
    workers.append(worker)
    assert [span.name for span in sessiontrace_spans.spans()] == ["first"]
    assert list(sessiontrace_spans.sessions()) == ["first-session"]


def test_second_sees_none_of_it(sessiontrace_spans):
    assert current().session_id is None and current().user_id is None
    assert current().tags == () and dict(current().metadata) == {}
    assert not trace.get_current_span().get_span_context().is_valid
    with tracer.start_as_current_span("second"):
        pass
    release.set()  # the first test's thread ends its span now: it is not this test's
    workers[0].join(10)
    assert [span.name for span in sessiontrace_spans.spans()] == ["second"]
    assert list(sessiontrace_spans.sessions()) == [None]
    assert sessiontrace_spans.attributes("second").get("session.id") is None
    assert "tag.tags" not in sessiontrace_spans.attributes("second")


def test_third_without_the_fixture_starts_clean_too():
    assert current().session_id is None and current().tags == ()
"""


def test_tests_in_a_row_see_only_their_own_spans_and_sessions(suite):
    suite.makepyfile(test_row=IN_A_ROW)
    result = run(suite)
    result.assert_outcomes(passed=3)


UNUSED = """
import sys

import pytest
from opentelemetry import propagate, trace

import sessiontrace


@pytest.mark.parametrize("run", [1, 2])
def test_nothing_changed(run, request):
    plugin = request.config.pluginmanager.get_plugin("sessiontrace")
    assert plugin is not None and plugin.__name__ == "sessiontrace.pytest_plugin"
    assert type(trace.get_tracer_provider()) is trace.ProxyTracerProvider
    assert propagate.get_global_textmap().fields == {"traceparent", "tracestate", "baggage"}
    with sessiontrace.using_session("s"):
        assert sessiontrace.current_session_id() == "s"
    # The plugin imports what the fixture needs only when a test asks for it.
    assert "sessiontrace.testing" not in sys.modules
"""

UNUSED_CONFTEST = """
from opentelemetry import trace


def pytest_sessionfinish(session):
    print("provider at the end:", type(trace.get_tracer_provider()).__name__)
"""


def test_a_suite_not_using_the_fixture_is_untouched(suite):
    suite.makeconftest(UNUSED_CONFTEST)
    suite.makepyfile(test_plain=UNUSED)
    result = run(suite, "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*provider at the end: ProxyTracerProvider*"])
    listed = run(suite, "--fixtures")
    listed.stdout.fnmatch_lines(["sessiontrace_spans*", "*Every span the test makes*"])


APP_PROVIDER_CONFTEST = """
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

APP_EXPORTER = InMemorySpanExporter()
APP_PROVIDER = TracerProvider()
APP_PROVIDER.add_span_processor(SimpleSpanProcessor(APP_EXPORTER))
trace.set_tracer_provider(APP_PROVIDER)  # the application's own, set at import


@pytest.fixture
def app_exporter():
    APP_EXPORTER.clear()
    return APP_EXPORTER
"""

APP_PROVIDER_TESTS = """
import pytest
from opentelemetry import trace

from conftest import APP_PROVIDER
from sessiontrace import using_session


@pytest.mark.parametrize("session", ["one", "two"])
def test_the_apps_provider_is_kept_and_captured(session, sessiontrace_spans, app_exporter):
    with using_session(session):
        trace.get_tracer("app").start_span("work").end()
    assert trace.get_tracer_provider() is APP_PROVIDER
    (span,) = sessiontrace_spans.spans()  # once, though the fixture ran twice
    assert span.attributes["session.id"] == session
    assert [span.name for span in app_exporter.get_finished_spans()] == ["work"]
"""


def test_an_application_provider_gets_its_spans_captured_too(suite):
    suite.makeconftest(APP_PROVIDER_CONFTEST)
    suite.makepyfile(test_app=APP_PROVIDER_TESTS)
    run(suite).assert_outcomes(passed=2)


CONFIGURED_CONFTEST = """
import sessiontrace

sessiontrace.configure(store=False, dialects="langfuse")  # the application's setup
"""

CONFIGURED_TESTS = """
from opentelemetry import trace

from sessiontrace import using_session


def test_configure_s_provider_is_captured(sessiontrace_spans):
    with using_session("chat-9"):
        trace.get_tracer("app").start_span("work").end()
    attributes = sessiontrace_spans.attributes("work")
    assert attributes["langfuse.session.id"] == "chat-9"  # configure()'s dialect
    assert attributes["session.id"] == "chat-9"  # the fixture's own
"""


def test_a_provider_from_configure_gets_its_spans_captured_too(suite):
    suite.makeconftest(CONFIGURED_CONFTEST)
    suite.makepyfile(test_app=CONFIGURED_TESTS)
    run(suite).assert_outcomes(passed=1)


NOT_SDK_CONFTEST = """
from opentelemetry import trace

trace.set_tracer_provider(trace.NoOpTracerProvider())
"""

NOT_SDK_TESTS = """
def test_uses_the_fixture(sessiontrace_spans):
    pass
"""


def test_a_provider_that_is_not_the_sdks_fails_naming_the_fix(suite):
    suite.makeconftest(NOT_SDK_CONFTEST)
    suite.makepyfile(test_app=NOT_SDK_TESTS)
    result = run(suite)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*the global tracer provider is a opentelemetry.trace.NoOpTracerProvider, not an "
            "OpenTelemetry SDK TracerProvider*",
        ]
    )
    result.stdout.fnmatch_lines(["*trace.set_tracer_provider(opentelemetry.sdk.trace.Tracer*"])


def test_a_disabled_sdk_fails_instead_of_capturing_nothing(suite, monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    suite.makepyfile(test_app=NOT_SDK_TESTS)
    result = run(suite)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*makes no spans, as OTEL_SDK_DISABLED=true tells it*"])


LEFT_BEFORE = """
from sessiontrace import set_session


def test_without_the_fixture_leaves_a_session():
    set_session("left-over")


def test_with_the_fixture_is_told(sessiontrace_spans):
    pass
"""

KEPT_BLOCK = """
import pytest
from opentelemetry import trace

from sessiontrace import using_session


@pytest.fixture
def suite_session():
    with using_session("suite"):
        yield


def test_a_block_a_fixture_opened_first_is_kept(suite_session, sessiontrace_spans):
    trace.get_tracer("app").start_span("work").end()
    assert list(sessiontrace_spans.sessions()) == ["suite"]
"""


def test_a_session_left_in_force_before_the_fixture_fails_at_setup(suite):
    suite.makepyfile(test_a_left=LEFT_BEFORE, test_b_kept=KEPT_BLOCK)
    result = run(suite)
    # The leak came from a test without the fixture, so nothing undid it: every later test
    # with the fixture is told, the one with the block included.
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        ["*sessiontrace_spans: SessionContext(session_id='left-over'*still in force*"]
    )
    # Without the leak, the block a fixture opened on purpose is kept.
    run(suite, "test_b_kept.py").assert_outcomes(passed=1)


STRICT = """
import logging

from sessiontrace import observe


class Unprintable:
    def __repr__(self):
        raise RuntimeError("no repr for you")


@observe(name="tool")
def tool(value):
    return "done"


def test_an_internal_error(sessiontrace_spans, caplog):
    assert tool(Unprintable()) == "done"
    assert "input.value" not in sessiontrace_spans.attributes("tool")
    assert "internal error in observe input" in caplog.text
"""


def test_internal_errors_fail_the_test_unless_switched_off(suite):
    suite.makepyfile(test_strict=STRICT)
    strict = run(suite)
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*RuntimeError: no repr for you*"])
    lenient = run(suite, "-o", "sessiontrace_strict_errors=false")
    lenient.assert_outcomes(passed=1)


DIALECTS = """
from opentelemetry import trace

from sessiontrace import using_session


def test_stamped_in_the_chosen_dialect(sessiontrace_spans):
    with using_session("chat-3"):
        trace.get_tracer("app").start_span("work").end()
    attributes = sessiontrace_spans.attributes("work")
    assert attributes["langfuse.session.id"] == "chat-3"
    assert "session.id" not in attributes
    assert list(sessiontrace_spans.sessions()) == ["chat-3"]
"""


def test_the_dialects_option(suite):
    suite.makepyfile(test_dialects=DIALECTS)
    run(suite, "-o", "sessiontrace_dialects=langfuse").assert_outcomes(passed=1)
    run(suite, "-o", "sessiontrace_dialects=langfuse, langfuse").assert_outcomes(passed=1)


def test_both_options_as_toml_values_in_pyproject(suite):
    (suite.path / "pytest.ini").unlink()
    suite.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        filterwarnings = ["error"]
        asyncio_default_fixture_loop_scope = "function"
        sessiontrace_dialects = ["langfuse"]
        sessiontrace_strict_errors = false
        """
    )
    suite.makepyfile(test_dialects=DIALECTS, test_strict=STRICT)
    run(suite).assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("sessiontrace_strict_errors=maybe", "option sessiontrace_strict_errors is not true"),
        ("sessiontrace_strict_errors=\x1b[31m", "invalid truth value '\\x1b[31m'"),
        ("sessiontrace_dialects=klingon", "sessiontrace_dialects has unknown dialect(s)"),
        ('sessiontrace_dialects="genai', "sessiontrace_dialects cannot be read (No closing"),
    ],
)
def test_a_bad_option_value_fails_the_test_saying_what_it_takes(suite, option, message):
    suite.makepyfile(test_dialects=DIALECTS)
    result = run(suite, "-o", option)
    result.assert_outcomes(errors=1)
    assert message in result.stdout.str()


# The example of docs/integrations.md, "Testing your code: the pytest fixture", as a user runs it.
DOC_EXAMPLE = """\
# test_answers.py: run it with `pytest test_answers.py`.
from opentelemetry import trace

from sessiontrace import set_session, using_session

tracer = trace.get_tracer("app")  # the application's global tracer, made at import


def answer(question: str) -> str:  # the code under test
    with tracer.start_as_current_span("answer"):
        with tracer.start_as_current_span("lookup"):
            return "42"


def test_the_turn_is_in_the_session(sessiontrace_spans):
    with using_session("chat-42"):
        answer("?")
    assert [span.name for span in sessiontrace_spans.spans()] == ["lookup", "answer"]
    assert sessiontrace_spans.attributes("answer")["session.id"] == "chat-42"
    assert list(sessiontrace_spans.sessions()) == ["chat-42"]


def test_a_session_set_and_never_restored(sessiontrace_spans):
    set_session("chat-7")  # as a request hook would; this test never restores it
    answer("?")
    assert list(sessiontrace_spans.sessions()) == ["chat-7"]


def test_the_next_test_starts_clean(sessiontrace_spans):
    answer("?")
    assert list(sessiontrace_spans.sessions()) == [None]  # nothing from the test before
"""
DOC_HEADING = "## Testing your code: the pytest fixture"
DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"


def test_the_documented_example_passes(suite):
    text = DOCUMENT.read_text(encoding="utf-8")
    if DOC_HEADING in text:  # the section is in the document: it shows this very file
        section = text.split(DOC_HEADING, 1)[1]
        assert section.split("```python\n", 1)[1].split("```", 1)[0] == DOC_EXAMPLE
    suite.makepyfile(test_answers=DOC_EXAMPLE)
    run(suite).assert_outcomes(passed=3)


# In this process: the capture's own provider only, never the global one.


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40).filter(
            str.isprintable
        ),
        min_size=1,
        max_size=6,
    )
)
def test_sessions_groups_any_session_ids_in_the_order_they_came(session_ids):
    with capture_spans() as captured:
        for session_id in session_ids:
            with using_session(session_id):
                captured.tracer.start_span(session_id).end()
    grouped = captured.sessions()
    assert list(grouped) == list(dict.fromkeys(session_ids))
    for session_id, spans in grouped.items():
        assert [span.name for span in spans] == [s for s in session_ids if s == session_id]


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=300))
def test_any_span_name_is_found_by_its_name_only(name):
    with capture_spans() as captured:
        captured.tracer.start_span(name).end()
        captured.tracer.start_span(name + "-other").end()
    assert [span.name for span in captured.by_name(name)] == [name]
    assert captured.attributes(name) == {}


def test_attributes_says_which_spans_there_are_when_the_name_is_not_one():
    with capture_spans() as captured:
        captured.tracer.start_span("retry").end()
        captured.tracer.start_span("retry").end()
    with pytest.raises(AssertionError, match=r"named 'retry', found 2.*\['retry', 'retry'\]"):
        captured.attributes("retry")
    with pytest.raises(AssertionError, match="named 'answer', found 0"):
        captured.attributes("answer")


@pytest.mark.parametrize("bad", [None, b"answer", 3, ["answer"]])
def test_a_name_that_is_not_a_str_raises_naming_the_method(bad):
    with capture_spans() as captured:
        with pytest.raises(TypeError, match=r"CapturedSpans.by_name\(\) takes a span name"):
            captured.by_name(bad)
        with pytest.raises(TypeError, match=r"CapturedSpans.attributes\(\) takes a span name"):
            captured.attributes(bad)


@pytest.mark.parametrize("argument", ["global_provider", "strict"])
@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_capture_spans_takes_only_bools(argument, bad):
    with pytest.raises(TypeError, match=f"capture_spans\\(\\) takes {argument}=True or False"):
        with capture_spans(**{argument: bad}):
            pass
