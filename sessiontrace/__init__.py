"""sessiontrace: group LLM traces into sessions, on every span, for every backend.

Example:
    >>> import sessiontrace
    >>> with sessiontrace.using_session("chat-42"):
    ...     sessiontrace.current_session_id()
    'chat-42'
"""

import inspect as _inspect

from sessiontrace._auto_instrument import Instrumentation, auto_instrumented
from sessiontrace._baggage import SessionBaggagePropagator
from sessiontrace._config import configure
from sessiontrace._flush import force_flush
from sessiontrace._frames import SessionContext
from sessiontrace._handles import SessionHandle, clear_session, set_session, set_user
from sessiontrace._late_binding import TraceBinding, update_current_trace
from sessiontrace._observe import Observe, observe
from sessiontrace._processor import SessionSpanProcessor
from sessiontrace._propagation import CarriedCall, carrier, carry, using_carrier
from sessiontrace._redaction import Redaction, Redactor
from sessiontrace._sampler import SessionSampler
from sessiontrace._suppress import suppress_tracing
from sessiontrace._threads import ContextThreadPoolExecutor, wrap
from sessiontrace._totals import TrackerSummary
from sessiontrace._tracker import SessionTracker
from sessiontrace._tracker_spans import StepLimitError
from sessiontrace._using import (
    SessionScope,
    current,
    current_session_id,
    current_user_id,
    using_attributes,
    using_metadata,
    using_session,
    using_tags,
    using_user,
    without_session,
)
from sessiontrace._version import __version__

__all__ = [
    "CarriedCall",
    "ContextThreadPoolExecutor",
    "Instrumentation",
    "Observe",
    "Redaction",
    "Redactor",
    "SessionBaggagePropagator",
    "SessionContext",
    "SessionHandle",
    "SessionSampler",
    "SessionScope",
    "SessionSpanProcessor",
    "SessionTracker",
    "StepLimitError",
    "TraceBinding",
    "TrackerSummary",
    "__version__",
    "auto_instrumented",
    "carrier",
    "carry",
    "clear_session",
    "configure",
    "current",
    "current_session_id",
    "current_user_id",
    "force_flush",
    "observe",
    "set_session",
    "set_user",
    "suppress_tracing",
    "update_current_trace",
    "using_attributes",
    "using_carrier",
    "using_metadata",
    "using_session",
    "using_tags",
    "using_user",
    "without_session",
    "wrap",
]


def _report_public_module() -> None:
    # Public classes and functions say they are sessiontrace's, wherever they are defined:
    # repr(), pickle and tracebacks show sessiontrace.CarriedCall, the name users import.
    # The functions of a class body too, so that doctest finds a method's example with its
    # class's, in this module.
    for name in __all__:
        member = globals()[name]
        if _inspect.isfunction(member):
            member.__module__ = __name__
        elif _inspect.isclass(member):
            defined_in = member.__module__
            for attribute in vars(member).values():
                function = getattr(attribute, "__func__", attribute)  # static and class methods
                if _inspect.isfunction(function) and function.__module__ == defined_in:
                    function.__module__ = __name__
            member.__module__ = __name__


_report_public_module()
