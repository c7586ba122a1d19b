"""configure(auto_instrument=...): turn on every installed instrumentation, one per library.

Instrumentations announce themselves through entry points: OpenInference's in
``openinference_instrumentor`` (what Phoenix's ``register(auto_instrument=True)`` reads) and
OpenTelemetry's in ``opentelemetry_instrumentor`` (what ``opentelemetry-instrument`` reads).
The entry point's name is the library it instruments (``openai``, ``langchain``, ...), so two
packages may offer the same library: OpenInference's, OpenTelemetry's own (from
opentelemetry-python-contrib) and Traceloop's all instrument ``openai``. Instrumenting a library
twice makes every call two spans, so one is chosen per library:

1. the one ``instrumentation_choice`` names for it (a distribution name), else
2. OpenInference's (sessiontrace's default dialect, and Phoenix's session view), else
3. OpenTelemetry's own (opentelemetry-python-contrib), else
4. the first of the others by distribution name.

A library whose instrumentation is already on (by any of them) is left alone.
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (a comma-separated list of entry point names, or
``*`` for all) is honoured, as ``opentelemetry-instrument`` honours it. sessiontrace's own
integrations (LangChain, Celery, MCP, OpenAI Agents) are applied too, after the span-making
ones, whenever their library is installed; the disabled list names them ``sessiontrace_langchain``
and so on.

Example:
    >>> from sessiontrace._auto_instrument import rank
    >>> rank("openinference-instrumentation-openai", ())
    0
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import TracerProvider

from sessiontrace._guard import LogOnce

if TYPE_CHECKING:
    from importlib.metadata import Distribution, EntryPoint

logger = logging.getLogger("sessiontrace")
_report = LogOnce()

GROUPS = ("openinference_instrumentor", "opentelemetry_instrumentor")
DISABLED_VARIABLE = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
_CONTRIB = "open-telemetry/opentelemetry-python-contrib"
OWN = {
    # entry point name: (the library's import name, sessiontrace's integration module)
    "sessiontrace_langchain": ("langchain_core", "sessiontrace.integrations.langchain"),
    "sessiontrace_celery": ("celery", "sessiontrace.integrations.celery"),
    "sessiontrace_mcp": ("mcp", "sessiontrace.integrations.mcp"),
    "sessiontrace_openai_agents": ("agents", "sessiontrace.integrations.openai_agents"),
}
"""sessiontrace's own integrations, as its ``opentelemetry_instrumentor`` entry points name them."""


@dataclass(frozen=True)
class Instrumentation:
    """What ``configure(auto_instrument=...)`` did about one library.

    ``status`` is ``"instrumented"``, ``"already instrumented"``, ``"not installed"`` (the
    library it instruments is missing), ``"disabled"`` (by
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``), ``"not chosen"`` (another package instruments
    the library) or ``"failed: <error>"``.
    """

    library: str
    distribution: str
    status: str


_lock = threading.Lock()
_results: dict[tuple[str, str], Instrumentation] = {}


def auto_instrumented() -> tuple[Instrumentation, ...]:
    """What ``configure(auto_instrument=...)`` found and did, one entry per package and library.

    Example:
        >>> import sessiontrace
        >>> isinstance(sessiontrace.auto_instrumented(), tuple)
        True
    """
    with _lock:
        return tuple(_results.values())


def rank(distribution: str, urls: Iterable[str]) -> int:
    """The order of preference among packages instrumenting one library (lowest first)."""
    if distribution.startswith("openinference-"):
        return 0
    if any(_CONTRIB in url for url in urls):
        return 1
    return 2


def disabled_names(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The entry point names ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` turns off."""
    text = (os.environ if environ is None else environ).get(DISABLED_VARIABLE, "")
    return frozenset(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True)
class _Candidate:
    library: str
    distribution: str
    entry_point: EntryPoint
    rank: int


def _candidates() -> dict[str, list[_Candidate]]:
    """Every instrumentation on offer, by library, best first; one per package and library."""
    from importlib.metadata import entry_points  # here: importing it costs every import 60 ms

    seen: set[tuple[str, str]] = set()
    by_library: dict[str, list[_Candidate]] = {}
    for group in GROUPS:
        for entry_point in entry_points(group=group):
            dist: Distribution | None = entry_point.dist
            name = dist.metadata["Name"] if dist is not None else entry_point.value
            if entry_point.name in OWN or (entry_point.name, name) in seen:
                continue
            seen.add((entry_point.name, name))
            urls = (dist.metadata.get_all("Project-URL") or []) if dist is not None else []
            candidate = _Candidate(entry_point.name, name, entry_point, rank(name, urls))
            by_library.setdefault(entry_point.name, []).append(candidate)
    for offers in by_library.values():
        offers.sort(key=lambda each: (each.rank, each.distribution))
    return by_library


def _chosen(offers: list[_Candidate], choice: Mapping[str, str]) -> _Candidate:
    wanted = choice.get(offers[0].library)
    for offer in offers:
        if offer.distribution == wanted:
            return offer
    if wanted is not None:
        _report.log(
            f"choice {offers[0].library}",
            "sessiontrace: instrumentation_choice names %r for %r, which is not installed; "
            "using %r. Installed: %s",
            wanted,
            offers[0].library,
            offers[0].distribution,
            ", ".join(offer.distribution for offer in offers),
        )
    return offers[0]


def _is_on(instrumentor: Any) -> bool:
    return bool(getattr(instrumentor, "is_instrumented_by_opentelemetry", False))


def _apply(candidate: _Candidate, provider: TracerProvider, others: list[Any]) -> str:
    """Instrument one library with ``candidate``; the status to report."""
    try:
        instrumentor = candidate.entry_point.load()()
    except ModuleNotFoundError:
        return "not installed"
    if _is_on(instrumentor) or any(_is_on(other) for other in others):
        return "already instrumented"
    conflict = _dependency_conflict(instrumentor)
    if conflict is not None:
        return conflict
    instrumentor.instrument(tracer_provider=provider)
    return "instrumented" if _is_on(instrumentor) else "not installed"


def _dependency_conflict(instrumentor: Any) -> str | None:
    """Why the library ``instrumentor`` needs is unusable here, or None."""
    try:
        from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
    except ImportError:  # not an OpenTelemetry instrumentation package: let it decide
        return None
    depends = getattr(instrumentor, "instrumentation_dependencies", None)
    conflict = get_dependency_conflicts(list(depends())) if callable(depends) else None
    if conflict is None:
        return None
    required = getattr(conflict, "required", None)
    found = getattr(conflict, "found", None)
    return "not installed" if found is None else f"not installed ({required} needed, {found})"


def _others(offers: list[_Candidate], chosen: _Candidate) -> list[Any]:
    """The other packages' instrumentors of the same library, loaded when they can be."""
    loaded = []
    for offer in offers:
        if offer is chosen:
            continue
        try:
            loaded.append(offer.entry_point.load()())
        except Exception:  # a package that cannot load is not instrumenting
            continue
    return loaded


def instrumented_twice() -> dict[str, list[str]]:
    """The libraries that several installed packages instrument now, with those packages.

    ``opentelemetry-instrument`` turns on every entry point, so with OpenInference's and
    OpenTelemetry's OpenAI instrumentations both installed each call makes two spans; the
    no-code start warns with this (``configure(auto_instrument=True)`` picks one instead).
    """
    twice: dict[str, list[str]] = {}
    for library, offers in sorted(_candidates().items()):
        if len(offers) < 2:
            continue
        on = []
        for offer in offers:
            try:
                if _is_on(offer.entry_point.load()()):
                    on.append(offer.distribution)
            except Exception:  # a package that cannot load is not instrumenting
                continue
        if len(on) > 1:
            twice[library] = on
    return twice


def instrument_installed(
    provider: TracerProvider,
    libraries: frozenset[str] | None,
    choice: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> tuple[Instrumentation, ...]:
    """Instrument each installed library (or only ``libraries``) once; see the module doc."""
    disabled = disabled_names(environ)
    done: list[Instrumentation] = []
    for library, offers in sorted(_candidates().items()):
        if libraries is not None and library not in libraries:
            continue
        chosen = _chosen(offers, choice)
        if "*" in disabled or library in disabled:
            status = "disabled"
        else:
            try:
                status = _apply(chosen, provider, _others(offers, chosen))
            except Exception as error:  # one bad package must not stop the rest
                status = f"failed: {type(error).__name__}: {error}"
                _report.log(
                    f"failed {library}",
                    "sessiontrace: instrumenting %r with %s failed (%s); the other "
                    "libraries are instrumented. Disable it with %s=%s",
                    library,
                    chosen.distribution,
                    status,
                    DISABLED_VARIABLE,
                    library,
                )
        done.append(Instrumentation(library, chosen.distribution, status))
        for offer in offers:
            if offer is not chosen:
                done.append(Instrumentation(library, offer.distribution, "not chosen"))
    done.extend(_instrument_own(libraries, disabled))
    with _lock:
        for each in done:
            key = (each.library, each.distribution)
            earlier = _results.get(key)
            if earlier is not None and earlier.status == "instrumented" and each.status in (
                "already instrumented",
                "instrumented",
            ):
                continue  # a second configure(): it is still this one that did it
            _results[key] = each
    for each in done:
        if each.status == "instrumented":
            logger.info("sessiontrace: instrumented %s with %s", each.library, each.distribution)
    return tuple(done)


def _instrument_own(libraries: frozenset[str] | None, disabled: frozenset[str]) -> list[Any]:
    done = []
    for name, (module_name, integration) in OWN.items():
        library = name.removeprefix("sessiontrace_")
        if libraries is not None and library not in libraries and name not in libraries:
            continue
        if "*" in disabled or name in disabled:
            status = "disabled"
        elif importlib.util.find_spec(module_name) is None:
            status = "not installed"
        else:
            try:
                importlib.import_module(integration).instrument()
                status = "instrumented"
            except Exception as error:  # reported; the others still apply
                status = f"failed: {type(error).__name__}: {error}"
        done.append(Instrumentation(name, "sessiontrace", status))
    return done
