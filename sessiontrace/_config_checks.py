"""configure()'s argument checks: every argument validated before anything global changes.

Each check takes the argument's name and value, names the argument, what was wrong and what
is allowed, and returns the value in the form ``_settings.resolve()`` expects (None meaning
"not given": the environment or default then applies). ``_settings.SETTINGS`` says which
check each setting uses.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from sessiontrace._processor import normalize_dialects
from sessiontrace._units import parse_age, parse_size

PROTOCOLS = ("http/protobuf", "grpc")


def _type_error(argument: str, allowed: str, value: object) -> TypeError:
    return TypeError(f"configure({argument}=...) must be {allowed}, got {type(value).__name__}")


def text(argument: str, value: object) -> str | None:
    """A non-empty str, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _type_error(argument, "a str or None", value)
    if not value.strip():
        raise ValueError(f"configure({argument}=...) is empty; pass a value or leave it out")
    return value


def protocol(argument: str, value: object) -> str | None:
    """One of ``PROTOCOLS``, or None."""
    checked = text(argument, value)
    if checked is not None and checked not in PROTOCOLS:
        raise ValueError(
            f"configure({argument}=...) {checked!r} is not supported; choose from "
            f"{list(PROTOCOLS)}"
        )
    return checked


def dialect_choice(argument: str, value: object) -> tuple[str, ...] | None:
    """A dialect choice as SessionSpanProcessor takes it, or None."""
    where = f"configure({argument}=...)"
    return None if value is None else normalize_dialects(value, where)  # type: ignore[arg-type]


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


def headers(argument: str, value: object) -> dict[str, str] | None:
    """A mapping of header names to str values, or None."""
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


def flag(argument: str, value: object) -> bool | None:
    """True, False or None."""
    if value is None or isinstance(value, bool):
        return value
    raise _type_error(argument, "True, False or None", value)


def redaction_choice(argument: str, value: object) -> object:
    """True, False, None or a ``sessiontrace.Redaction`` rule set."""
    from sessiontrace._redaction import Redaction

    if value is None or isinstance(value, (bool, Redaction)):
        return value
    raise _type_error(argument, "True, False, None or a sessiontrace.Redaction(...)", value)


def library_choice(argument: str, value: object) -> bool | frozenset[str] | None:
    """True (every installed library), False, None, or the library names to instrument."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise _type_error(argument, "True, False, None or a list of library names", value)
    names = list(value)
    for name in names:
        if not isinstance(name, str) or not name.strip() or "," in name:
            raise ValueError(
                f"configure({argument}=...) library names must be non-empty text without "
                f"commas, as the entry points name them (e.g. 'openai'); got {name!r}"
            )
    return frozenset(name.strip() for name in names)


def instrumentation_choice(argument: str, value: object) -> dict[str, str] | None:
    """A mapping of library name to the distribution that instruments it, or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _type_error(
            argument,
            "a dict of library name to package, e.g. "
            "{'openai': 'opentelemetry-instrumentation-openai-v2'}",
            value,
        )
    checked: dict[str, str] = {}
    for library, package in value.items():
        for what, item in (("library", library), ("package", package)):
            if not isinstance(item, str) or not item.strip() or any(c in item for c in ",="):
                raise ValueError(
                    f"configure({argument}=...) each {what} must be non-empty text without "
                    f"',' or '='; got {item!r}"
                )
        checked[library.strip()] = package.strip()
    return checked


def path(argument: str, value: object) -> str | None:
    """A non-empty text path (str or os.PathLike), or None."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise _type_error(argument, "a str or os.PathLike path", value)
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise ValueError(f"configure({argument}=...) must be a non-empty text path; got {value!r}")
    return text


def seconds(argument: str, value: object) -> float | None:
    """A number of seconds above 0 and at most 3600, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(argument, "a number of seconds", value)
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise ValueError(
            f"configure({argument}=...) must be more than 0 and at most 3600 seconds, "
            f"got {value!r}"
        )
    return float(value)


def age_limit(argument: str, value: Any) -> float | None:
    """A retention age: None, seconds, or text such as '7d' (see _units)."""
    return None if value is None else parse_age(value, f"configure({argument}=...)")


def size_limit(argument: str, value: Any) -> int | None:
    """A retention size: None, bytes, or text such as '500MB' (see _units)."""
    return None if value is None else parse_size(value, f"configure({argument}=...)")


def count(argument: str, value: object) -> int | None:
    """A whole number from 1 to 10,000,000, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(argument, "an int", value)
    if not 1 <= value <= 10_000_000:
        raise ValueError(f"configure({argument}=...) must be from 1 to 10000000, got {value}")
    return value


def check_plain_arguments(exporters: object, tracer_provider: object, batch: object) -> None:
    """Check the arguments that are not settings (they have no environment variable)."""
    if isinstance(exporters, (str, bytes)) or not isinstance(exporters, Iterable):
        raise _type_error("exporters", "a sequence of SpanExporter", exporters)
    for exporter in exporters:
        if not isinstance(exporter, SpanExporter):
            raise _type_error("exporters", "a sequence of SpanExporter instances", exporter)
    if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
        raise _type_error(
            "tracer_provider", "an opentelemetry.sdk.trace.TracerProvider or None", tracer_provider
        )
    if not isinstance(batch, bool):
        raise _type_error("batch", "True or False", batch)


def check_settings(settings: Mapping[str, Any]) -> None:
    """Checks of the settings after the environment is applied (a protocol from
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` is only known then)."""
    if settings["protocol"] not in PROTOCOLS:
        raise ValueError(
            f"protocol {settings['protocol']!r} is not supported; choose from {list(PROTOCOLS)}"
        )
