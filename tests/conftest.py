"""Shared fixtures: one global provider that stamps in every dialect and keeps spans in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sessiontrace import SessionSpanProcessor
from sessiontrace._context import current_frame
from sessiontrace.testing import strict_errors

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider(shutdown_on_exit=False)
_PROVIDER.add_span_processor(SessionSpanProcessor(dialects="all"))
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_PROVIDER)


class Spans:
    """The spans the global provider finished during one test."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def clear(self) -> None:
        self._exporter.clear()

    def all(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        found = [span for span in self.all() if span.name == name]
        assert len(found) == 1, f"expected one span named {name!r}, got {len(found)}"
        return found[0]

    def attributes(self, name: str) -> dict[str, object]:
        return dict(self.named(name).attributes or {})


@pytest.fixture
def spans() -> Iterator[Spans]:
    _EXPORTER.clear()
    yield Spans(_EXPORTER)
    _EXPORTER.clear()


@pytest.fixture
def tracer() -> trace.Tracer:
    return _PROVIDER.get_tracer("tests")


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads a store path from the environment it was started in."""
    monkeypatch.delenv("SESSIONTRACE_STORE_PATH", raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store file that does not exist yet, in the test's own directory."""
    return tmp_path / "sessions.db"


@pytest.fixture(autouse=True)
def _strict_and_clean() -> Iterator[None]:
    """Internal errors fail tests; nothing may stay in force after a test."""
    with strict_errors():
        yield
    leaked = current_frame()
    assert leaked is None, f"a session frame leaked out of the test: {leaked.snapshot()}"


_REPOSITORY_STORE = Path(__file__).resolve().parent.parent / ".sessiontrace"


@pytest.fixture(scope="session", autouse=True)
def _no_store_written_into_the_repository() -> Iterator[None]:
    """A test that calls configure() without a store path writes ./.sessiontrace: not here."""
    existed = _REPOSITORY_STORE.exists()
    yield
    if not existed and _REPOSITORY_STORE.exists():
        pytest.fail(
            f"a test wrote the default store {_REPOSITORY_STORE}: give configure() a "
            "store_path under tmp_path, or store=False"
        )
