"""sessiontrace's integrations as OpenTelemetry instrumentors, for ``opentelemetry-instrument``.

``opentelemetry-instrument`` turns on every ``opentelemetry_instrumentor`` entry point; these
four make it apply sessiontrace's LangChain, Celery, MCP and OpenAI Agents integrations too
(``configure(auto_instrument=True)`` applies the integrations directly). Each does nothing
when its library is not installed, and ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` names them
``sessiontrace_langchain``, ``sessiontrace_celery``, ``sessiontrace_mcp`` and
``sessiontrace_openai_agents``.

Example:
    >>> from sessiontrace.integrations._instrumentors import CeleryInstrumentor
    >>> CeleryInstrumentor().instrumentation_dependencies()
    ('celery >= 5.3',)
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined,unused-ignore]
    BaseInstrumentor,
)

logger = logging.getLogger("sessiontrace")


class _Integration(BaseInstrumentor):  # type: ignore[misc,unused-ignore]
    """One sessiontrace integration module, turned on and off as an instrumentor."""

    module = ""
    library = ""  # the import name that must be there
    requirement = ""

    def instrumentation_dependencies(self) -> Collection[str]:
        return (self.requirement,)

    def _integration(self) -> Any:
        if importlib.util.find_spec(self.library) is None:
            logger.debug("sessiontrace: %s is not installed; %s not applied", self.library, self)
            return None
        return importlib.import_module(self.module)

    def _instrument(self, **kwargs: Any) -> None:
        integration = self._integration()
        if integration is not None:
            integration.instrument()

    def _uninstrument(self, **kwargs: Any) -> None:
        integration = self._integration()
        if integration is not None:
            integration.uninstrument()


class LangChainInstrumentor(_Integration):
    """LangChain's ``thread_id`` (and session keys) become the session of each run."""

    module = "sessiontrace.integrations.langchain"
    library = "langchain_core"
    requirement = "langchain-core >= 0.3"


class CeleryInstrumentor(_Integration):
    """The session travels with each Celery task, from where it is sent to where it runs."""

    module = "sessiontrace.integrations.celery"
    library = "celery"
    requirement = "celery >= 5.3"


class MCPInstrumentor(_Integration):
    """The session travels in each MCP request's ``_meta``, from client to server."""

    module = "sessiontrace.integrations.mcp"
    library = "mcp"
    requirement = "mcp >= 1.0"


class OpenAIAgentsInstrumentor(_Integration):
    """An OpenAI Agents run's ``group_id`` becomes its session."""

    module = "sessiontrace.integrations.openai_agents"
    library = "agents"
    requirement = "openai-agents >= 0.1"
