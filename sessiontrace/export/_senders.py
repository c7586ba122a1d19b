"""Send one encoded OTLP trace request to a backend, as the OTLP exporters would, and classify it.

A sender posts the bytes of one ``ExportTraceServiceRequest`` once (no retries: the spool
retries) and says what became of them: sent, worth retrying, or rejected for good. Settings
resolve the way the OpenTelemetry OTLP exporters resolve theirs (argument, then the
``OTEL_EXPORTER_OTLP_TRACES_*`` variable, then ``OTEL_EXPORTER_OTLP_*``, then the default), so
``durable=True`` reaches the same endpoint with the same headers, compression and timeout.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from opentelemetry.util.re import parse_env_headers

if TYPE_CHECKING:
    import requests

Compression = Literal["none", "gzip", "deflate"]
_COMPRESSIONS: tuple[Compression, ...] = ("none", "gzip", "deflate")

# The OTLP/HTTP exporter's retryable statuses (opentelemetry.exporter.otlp.common.http) and
# the gRPC exporter's retryable codes (opentelemetry.exporter.otlp.proto.grpc.exporter).
_RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
_RETRYABLE_GRPC = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "OUT_OF_RANGE",
     "UNAVAILABLE", "DATA_LOSS"}
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """What became of one send: ``sent``; else ``retry`` (with an optional delay) or rejected.

    ``reason`` is a short human phrase, e.g. ``"HTTP 503"`` or ``"connection refused"``.
    """

    sent: bool
    retry: bool
    reason: str
    retry_after_s: float | None = None


SENT = Outcome(sent=True, retry=False, reason="sent")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or os.environ.get(
        f"OTEL_EXPORTER_OTLP_{name}", default
    )


def _resolve_timeout(timeout: float | None) -> float:
    if timeout is None:
        raw = _env("TIMEOUT", "10") or "10"
        try:
            timeout = float(raw)
        except ValueError:
            timeout = 10.0  # as the exporters do: an unparseable value falls back
    return seconds("timeout", timeout)


def seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as seconds, or TypeError/ValueError naming ``name`` and what is allowed."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        allowed = "zero or more" if allow_zero else "greater than zero"
        raise ValueError(f"{name} must be a finite number of seconds, {allowed}; got {value!r}")
    return float(value)


def _resolve_compression(compression: object) -> Compression:
    if compression is None:
        compression = (_env("COMPRESSION", "none") or "none").strip().lower()
        if compression not in _COMPRESSIONS:
            compression = "none"  # as the exporters do: an unknown value falls back
    value = getattr(compression, "value", compression)  # the exporters' Compression enums
    if isinstance(value, str) and value.strip().lower() in _COMPRESSIONS:
        return value.strip().lower()  # type: ignore[return-value]
    raise ValueError(
        f"compression must be one of 'none', 'gzip', 'deflate' (or an OTLP Compression), "
        f"got {compression!r}"
    )


def _resolve_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    from_env = parse_env_headers(_env("HEADERS", "") or "", liberal=True)
    resolved = {key.lower(): value for key, value in from_env.items()}
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise TypeError(
                f"headers must be a mapping of str to str, got {type(headers).__name__}"
            )
        for key, value in headers.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(
                    f"headers must map str to str, got {key!r}: {value!r}; convert values to str"
                )
            resolved[key.lower()] = value
    return resolved


def _compress(body: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.compress(body)
    if compression == "deflate":
        return zlib.compress(body)  # zlib-wrapped, as the OTLP/HTTP exporter sends it
    return body


class HttpSender:
    """POSTs encoded requests to an OTLP/HTTP traces endpoint (``/v1/traces``).

    Args:
        endpoint: full traces URL; default ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``, else
            ``http://localhost:4318/v1/traces``.
        headers: extra headers (e.g. an API key), on top of ``OTEL_EXPORTER_OTLP_*HEADERS``.
        timeout: seconds per request (default ``OTEL_EXPORTER_OTLP_*TIMEOUT``, else 10).
        compression: ``"none"``, ``"gzip"`` or ``"deflate"``.
        certificate_file: CA bundle for TLS (default ``OTEL_EXPORTER_OTLP_*CERTIFICATE``).

    Example:
        >>> HttpSender("http://127.0.0.1:4318/v1/traces").destination
        'otlp http://127.0.0.1:4318/v1/traces'
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        compression: object = None,
        certificate_file: str | None = None,
    ) -> None:
        if endpoint is None:
            endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
                (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318/")
                .removesuffix("/")
                + "/v1/traces"
            )
        if not isinstance(endpoint, str) or urlparse(endpoint).scheme not in ("http", "https"):
            raise ValueError(
                f"endpoint must be an http:// or https:// URL such as "
                f"'http://localhost:4318/v1/traces', got {endpoint!r}"
            )
        self.endpoint = endpoint
        self.timeout = _resolve_timeout(timeout)
        self.compression = _resolve_compression(compression)
        from opentelemetry.exporter.otlp.proto.http.version import __version__

        self.headers = {
            "content-type": "application/x-protobuf",
            "user-agent": f"OTel-OTLP-Exporter-Python/{__version__}",
            **_resolve_headers(headers),
        }
        if self.compression != "none":
            self.headers.setdefault("content-encoding", self.compression)
        self._verify: bool | str = certificate_file or _env("CERTIFICATE") or True
        self._session: requests.Session | None = None

    @property
    def destination(self) -> str:
        """How losses name this backend, e.g. ``otlp http://127.0.0.1:4318/v1/traces``."""
        return f"otlp {self.endpoint}"

    def send(self, body: bytes, timeout: float) -> Outcome:
        """POST ``body`` once, waiting at most ``timeout`` seconds for each connect and read."""
        import requests

        if self._session is None:
            self._session = requests.Session()
        try:
            response = self._session.post(
                self.endpoint,
                data=_compress(body, self.compression),
                headers=self.headers,
                timeout=timeout,
                verify=self._verify,
                allow_redirects=False,
            )
        except requests.exceptions.Timeout:
            return Outcome(False, True, f"no answer within {timeout:g}s")
        except requests.exceptions.ConnectionError as exc:
            return Outcome(False, True, f"connection failed ({type(exc).__name__})")
        except requests.exceptions.RequestException as exc:  # invalid URL, TLS setup, ...
            return Outcome(False, True, f"request failed ({exc})")
        status = response.status_code
        if 200 <= status < 300:
            return SENT
        text = response.text[:200].strip()
        reason = f"HTTP {status}" + (f": {text}" if text else "")
        if status in _RETRYABLE_HTTP:
            return Outcome(False, True, reason, _retry_after(response.headers.get("retry-after")))
        return Outcome(False, False, reason)

    def close(self) -> None:
        """Close pooled connections."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def forget(self) -> None:
        """After fork: drop the parent's connections without touching their sockets."""
        self._session = None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP-date: rare from collectors; our own backoff applies
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class GrpcSender:
    """Calls ``TraceService/Export`` on an OTLP/gRPC endpoint with the request's bytes.

    Args:
        endpoint: ``host:port`` or a URL (default ``OTEL_EXPORTER_OTLP_*ENDPOINT``, else
            ``http://localhost:4317``); ``http://`` means plaintext, as in the gRPC exporter.
        insecure: plaintext instead of TLS (default: from the scheme, or
            ``OTEL_EXPORTER_OTLP_INSECURE``).
        headers, timeout, compression, certificate_file: as for :class:`HttpSender`.

    Example:
        >>> GrpcSender("http://127.0.0.1:4317").destination
        'otlp grpc 127.0.0.1:4317'
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        insecure: bool | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        compression: object = None,
        certificate_file: str | None = None,
    ) -> None:
        raw = endpoint or _env("ENDPOINT", "http://localhost:4317") or "http://localhost:4317"
        if not isinstance(raw, str):
            raise ValueError(f"endpoint must be a str such as 'localhost:4317', got {raw!r}")
        parsed = urlparse(raw if "://" in raw else f"//{raw}")
        if not parsed.netloc:
            raise ValueError(f"endpoint must name host:port such as 'localhost:4317', got {raw!r}")
        if insecure is None:
            env_insecure = _env("INSECURE")
            insecure = (
                env_insecure.strip().lower() == "true"
                if env_insecure is not None and parsed.scheme != "https"
                else parsed.scheme == "http"
            )
        self.target = parsed.netloc
        self.insecure = insecure
        self.timeout = _resolve_timeout(timeout)
        self.compression = _resolve_compression(compression)
        self.metadata = tuple(_resolve_headers(headers).items())
        self._certificate_file = certificate_file or _env("CERTIFICATE")
        self._channel: Any = None  # grpc ships no type stubs
        self._stub: Any = None

    @property
    def destination(self) -> str:
        """How losses name this backend, e.g. ``otlp grpc 127.0.0.1:4317``."""
        return f"otlp grpc {self.target}"

    def _connect(self) -> Any:
        import grpc  # type: ignore[import-untyped]
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
            TraceServiceStub,
        )

        compression = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}.get(
            self.compression, grpc.Compression.NoCompression
        )
        if self.insecure:
            channel = grpc.insecure_channel(self.target, compression=compression)
        else:
            root = None
            if self._certificate_file:
                with open(self._certificate_file, "rb") as handle:
                    root = handle.read()
            credentials = grpc.ssl_channel_credentials(root_certificates=root)
            channel = grpc.secure_channel(self.target, credentials, compression=compression)
        self._channel = channel
        self._stub = TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        return self._stub

    def send(self, body: bytes, timeout: float) -> Outcome:
        """Export ``body`` (parsed back into a request) once, with a ``timeout`` deadline."""
        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        try:
            stub = self._stub if self._stub is not None else self._connect()
        except OSError as exc:
            return Outcome(False, True, f"cannot read the certificate file ({exc})")
        from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

        try:
            request = ExportTraceServiceRequest.FromString(body)
        except DecodeError as exc:  # a damaged spool row: it can never be sent
            return Outcome(False, False, f"the spooled request does not decode ({exc})")
        try:
            stub.Export(request, metadata=self.metadata, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            name = code.name if code is not None else "UNKNOWN"
            details = exc.details() if isinstance(exc, grpc.Call) else None
            reason = f"gRPC {name}" + (f": {details}" if details else "")
            return Outcome(False, name in _RETRYABLE_GRPC, reason)
        return SENT

    def close(self) -> None:
        """Close the channel."""
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()

    def forget(self) -> None:
        """After fork: drop the parent's channel (gRPC channels must not cross a fork)."""
        self._channel = self._stub = None


Sender = HttpSender | GrpcSender
