"""configure()'s argument checks: every argument validated before anything global changes.

Each check names the argument, what was wrong and what is allowed, and returns the value in
the form ``resolve()`` expects (None meaning "not given": the environment or default then
applies).
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from sessiontrace._processor import normalize_dialects
from sessiontrace._units import parse_age, parse_size

PROTOCOLS = ("http/protobuf", "grpc")


def _type_error(argument: str, allowed: str, value: object) -> TypeError:
    return TypeError(f"configure({argument}=...) must be {allowed}, got {type(value).__name__}")


def _optional_text(argument: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _type_error(argument, "a str or None", value)
    if not value.strip():
        raise ValueError(f"configure({argument}=...) is empty; pass a value or leave it out")
    return value


def check_url(argument: str, value: str, *, grpc: bool = False) -> str:
    """An endpoint must be an http(s) URL with a host (gRPC also takes ``host:port``).

    >>> check_url("endpoint", "http://localhost:4318")
    'http://localhost:4318'
    """
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme in ("http", "https") and parsed.hostname:
        try:
            parsed.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            pass
        else:
            return value
    if grpc and "://" not in value and ":" in value:
        return value
    example = "localhost:4317 or http://localhost:4317" if grpc else "http://localhost:4318"
    raise ValueError(
        f"configure({argument}=...) must be an http:// or https:// URL with a host and a valid "
        f"port, such as {example}; got {value!r}"
    )


def _headers(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(
            "configure(headers=...) must be a mapping of header names to str values, such as "
            "{'x-api-key': '...'}; got "
            f"{type(value).__name__} (the 'k=v,k2=v2' form is for OTEL_EXPORTER_OTLP_HEADERS)"
        )
    checked: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(
                "configure(headers=...) must map str names to str values; got "
                f"{type(key).__name__}: {type(item).__name__} for {key!r}"
            )
        if not key.strip() or any(ord(c) < 33 or ord(c) > 126 or c == ":" for c in key):
            raise ValueError(f"configure(headers=...) has an invalid header name {key!r}")
        if any(c in item for c in "\r\n\x00"):
            raise ValueError(f"configure(headers=...) value of {key!r} has a line break or NUL")
        checked[key.lower()] = item
    return checked


def _flag(argument: str, value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _type_error(argument, "True, False or None", value)


def _path(argument: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise _type_error(argument, "a str or os.PathLike path", value)
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise ValueError(f"configure({argument}=...) must be a non-empty text path; got {value!r}")
    return text


def _seconds(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error("shutdown_timeout", "a number of seconds", value)
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise ValueError(
            f"configure(shutdown_timeout=...) must be more than 0 and at most 3600 seconds, "
            f"got {value!r}"
        )
    return float(value)


def _limit(argument: str, value: Any, parse: Callable[[Any, str], Any]) -> Any:
    """A retention limit: None, a number, or text such as '7d' / '500MB' (see store/_units)."""
    if value is None:
        return None
    return parse(value, f"configure({argument}=...)")


def _count(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error("queue_size", "an int", value)
    if not 1 <= value <= 10_000_000:
        raise ValueError(f"configure(queue_size=...) must be from 1 to 10000000, got {value}")
    return value


def check_arguments(**given: Any) -> dict[str, Any]:
    """Validate configure()'s arguments; returns those resolve() reads, normalized."""
    protocol = _optional_text("protocol", given["protocol"])
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(
            f"configure(protocol=...) {protocol!r} is not supported; choose from {list(PROTOCOLS)}"
        )
    grpc = protocol == "grpc"
    endpoints = {}
    for name in ("endpoint", "traces_endpoint"):
        text = _optional_text(name, given[name])
        endpoints[name] = None if text is None else check_url(name, text, grpc=grpc)
    exporters = given["exporters"]
    if isinstance(exporters, (str, bytes)) or not isinstance(exporters, Iterable):
        raise _type_error("exporters", "a sequence of SpanExporter", exporters)
    for exporter in exporters:
        if not isinstance(exporter, SpanExporter):
            raise _type_error("exporters", "a sequence of SpanExporter instances", exporter)
    provider = given["tracer_provider"]
    if provider is not None and not isinstance(provider, TracerProvider):
        raise _type_error(
            "tracer_provider", "an opentelemetry.sdk.trace.TracerProvider or None", provider
        )
    if not isinstance(given["batch"], bool):
        raise _type_error("batch", "True or False", given["batch"])
    dialects = given["dialects"]
    return {
        "service_name": _optional_text("service_name", given["service_name"]),
        **endpoints,
        "protocol": protocol,
        "headers": _headers(given["headers"]),
        "dialects": None if dialects is None else normalize_dialects(dialects),
        "store": _flag("store", given["store"]),
        "store_path": _path("store_path", given["store_path"]),
        "propagate": _flag("propagate", given["propagate"]),
        "durable": _flag("durable", given["durable"]),
        "spool_path": _path("spool_path", given["spool_path"]),
        "shutdown_timeout": _seconds(given["shutdown_timeout"]),
        "queue_size": _count(given["queue_size"]),
        "store_max_age": _limit("store_max_age", given["store_max_age"], parse_age),
        "store_max_bytes": _limit("store_max_bytes", given["store_max_bytes"], parse_size),
    }


def check_settings(settings: Mapping[str, Any]) -> None:
    """Checks of the settings after the environment is applied (a protocol from
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` is only known then)."""
    if settings["protocol"] not in PROTOCOLS:
        raise ValueError(
            f"protocol {settings['protocol']!r} is not supported; choose from {list(PROTOCOLS)}"
        )
