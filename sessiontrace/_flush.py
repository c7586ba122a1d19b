"""force_flush(): hand every span that has ended so far to its destinations, and wait.

For a script that ends with ``os._exit``, a serverless handler that returns before the batch
thread runs, or a test that reads the store right after a call. ``configure()``'s queues
write to the local store or send to the backend before this returns, within the timeout.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from sessiontrace._guard import guarded
from sessiontrace.export._senders import seconds


def force_flush(timeout: float = 30.0, *, tracer_provider: TracerProvider | None = None) -> bool:
    """Export the spans that have ended so far; ``True`` when all of them went in time.

    Args:
        timeout: seconds to wait at most, over all destinations (more than 0).
        tracer_provider: the provider to flush; default the global one. A provider that is
            not an SDK ``TracerProvider`` (the API's no-op default) holds nothing to flush.

    Returns:
        ``True`` if every destination took its spans within ``timeout``; ``False`` if one did
        not (what it holds is still sent later, or counted if it is dropped).

    Raises:
        TypeError: ``timeout`` is not a number, or ``tracer_provider`` not a TracerProvider.
        ValueError: ``timeout`` is not a finite number above 0.

    Example:
        >>> import sessiontrace
        >>> sessiontrace.force_flush(timeout=5.0)
        True
    """
    timeout = seconds("force_flush(timeout=...)", timeout)
    if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
        raise TypeError(
            "force_flush(tracer_provider=...) must be an SDK TracerProvider or None; got "
            f"{type(tracer_provider).__name__}"
        )
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return True
    with guarded("force_flush"):
        return bool(provider.force_flush(max(1, int(timeout * 1000))))
    return False
