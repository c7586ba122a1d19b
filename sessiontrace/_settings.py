"""configure()'s settings, each declared once, and how a value is chosen for each.

A setting is read from configure()'s argument, else from its environment variable, else its
default. The table says, per setting, which variables, which default, how the text of a
variable is parsed, and how the argument is checked.

Example:
    >>> resolve({"queue_size": 100}, environ={"SESSIONTRACE_DURABLE": "yes"})["durable"]
    True
"""

from __future__ import annotations

import os
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sessiontrace._config_checks import (
    age_limit,
    check_plain_arguments,
    check_url,
    count,
    dialect_choice,
    flag,
    headers,
    instrumentation_choice,
    library_choice,
    path,
    protocol,
    redaction_choice,
    seconds,
    size_limit,
    text,
)
from sessiontrace._processor import normalize_dialects
from sessiontrace._units import parse_age, parse_size


@dataclass(frozen=True)
class Setting:
    """One configure() setting, declared once: its argument, environment variables (the
    first one set wins), default, how its text from the environment is parsed, and how the
    argument is checked (it returns the normalized value, None meaning not given)."""

    name: str
    env: tuple[str, ...]
    default: Any
    parse: Callable[[str], Any]
    check: Callable[[str, object], Any]


def _parse_headers(text: str) -> dict[str, str]:
    """Parse ``k1=v1,k2=v2`` (values URL-encoded) as in OTEL_EXPORTER_OTLP_HEADERS."""
    headers: dict[str, str] = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{pair.strip()!r} is not key=value")
        headers[urllib.parse.unquote(key.strip()).lower()] = urllib.parse.unquote(value.strip())
    return headers


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _parse_url(text: str) -> str:
    return check_url("endpoint", text.strip(), grpc=True)


def _parse_seconds(text: str) -> float:
    seconds = float(text)
    if not 0 < seconds <= 3600:
        raise ValueError(f"{text!r} is not a number of seconds between 0 and 3600")
    return seconds


def _parse_count(text: str) -> int:
    count = int(text)
    if not 1 <= count <= 10_000_000:
        raise ValueError(f"{text!r} is not a whole number between 1 and 10000000")
    return count


def _parse_libraries(text: str) -> bool | frozenset[str]:
    """``true``/``false``, or a comma-separated list of library names."""
    try:
        return _parse_bool(text)
    except ValueError:
        pass
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise ValueError(f"{text!r} is neither true, false nor a list of library names")
    return names


def _parse_choice(text: str) -> dict[str, str]:
    """``library=package,library=package``."""
    choice: dict[str, str] = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        library, sep, package = pair.partition("=")
        if not sep or not library.strip() or not package.strip():
            raise ValueError(f"{pair.strip()!r} is not library=package")
        choice[library.strip()] = package.strip()
    return choice


_OTLP = "OTEL_EXPORTER_OTLP_"
SETTINGS: tuple[Setting, ...] = (
    Setting("service_name", ("OTEL_SERVICE_NAME",), "unknown_service", str, text),
    Setting("traces_endpoint", (_OTLP + "TRACES_ENDPOINT",), None, _parse_url, text),
    Setting("endpoint", (_OTLP + "ENDPOINT",), None, _parse_url, text),
    Setting(
        "protocol", (_OTLP + "TRACES_PROTOCOL", _OTLP + "PROTOCOL"), "http/protobuf", str, protocol
    ),
    Setting(
        "headers", (_OTLP + "TRACES_HEADERS", _OTLP + "HEADERS"), None, _parse_headers, headers
    ),
    Setting("dialects", ("SESSIONTRACE_DIALECTS",), None, normalize_dialects, dialect_choice),
    Setting("store", ("SESSIONTRACE_STORE",), None, _parse_bool, flag),
    Setting("propagate", ("SESSIONTRACE_PROPAGATE",), True, _parse_bool, flag),
    Setting("store_path", ("SESSIONTRACE_STORE_PATH",), None, str, path),
    Setting("durable", ("SESSIONTRACE_DURABLE",), False, _parse_bool, flag),
    Setting("spool_path", ("SESSIONTRACE_SPOOL_PATH",), None, str, path),
    Setting("shutdown_timeout", ("SESSIONTRACE_SHUTDOWN_TIMEOUT",), 5.0, _parse_seconds, seconds),
    Setting("queue_size", ("SESSIONTRACE_QUEUE_SIZE",), 8192, _parse_count, count),
    Setting("store_max_age", ("SESSIONTRACE_STORE_MAX_AGE",), None, parse_age, age_limit),
    Setting("store_max_bytes", ("SESSIONTRACE_STORE_MAX_BYTES",), None, parse_size, size_limit),
    Setting("redact", ("SESSIONTRACE_REDACT",), False, _parse_bool, redaction_choice),
    Setting(
        "auto_instrument",
        ("SESSIONTRACE_AUTO_INSTRUMENT",),
        False,
        _parse_libraries,
        library_choice,
    ),
    Setting(
        "instrumentation_choice",
        ("SESSIONTRACE_INSTRUMENTATION_CHOICE",),
        None,
        _parse_choice,
        instrumentation_choice,
    ),
)
"""configure()'s settings; ``docs/reliability.md`` and configure()'s docstring list them."""


def check_arguments(given: Mapping[str, Any]) -> dict[str, Any]:
    """Check configure()'s arguments; returns the settings' values, normalized, for resolve().

    Arguments that are not settings (they have no environment variable) are checked too.
    """
    checked = {each.name: each.check(each.name, given[each.name]) for each in SETTINGS}
    grpc = checked["protocol"] == "grpc"
    for name in ("endpoint", "traces_endpoint"):
        if checked[name] is not None:
            checked[name] = check_url(name, checked[name], grpc=grpc)
    check_plain_arguments(given["exporters"], given["tracer_provider"], given["batch"])
    return checked


def resolve(
    arguments: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Each setting's value: the argument if given, else its environment variable, else default.

    An environment variable that does not parse is warned about and its default used.
    """
    environ = os.environ if environ is None else environ
    resolved: dict[str, Any] = {}
    for setting in SETTINGS:
        value = arguments.get(setting.name)
        if value is None:
            value = setting.default
            for variable in setting.env:
                text = environ.get(variable)
                if text is None or not text.strip():
                    continue
                try:
                    value = setting.parse(text)
                except (TypeError, ValueError) as error:
                    warnings.warn(
                        f"sessiontrace: ignoring {variable}={text!r} ({error}); using the "
                        f"default for {setting.name}. Fix or unset the variable.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                break
        resolved[setting.name] = value
    return resolved


