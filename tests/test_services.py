"""Three real processes: a client calls FastAPI service A, which calls Flask service B.

Every span of all three, exported over OTLP/HTTP to a receiver this test runs, carries the
client's session id: carried in W3C baggage by the instrumented HTTP clients and taken from the
requests by the middlewares, beside OpenTelemetry's own server instrumentation.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.otlp_receiver import OTLPHttpReceiver

SERVICES = Path(__file__).resolve().parent / "helpers" / "services.py"


def start(*arguments: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, str(SERVICES), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        _, errors = process.communicate(timeout=10)
        pytest.fail(f"{arguments[0]} did not start: {line!r} {errors}")
    return process, int(line.split()[1])


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def test_one_session_across_three_processes():
    with OTLPHttpReceiver() as receiver:
        service_b, port_b = start("b", receiver.endpoint)
        try:
            service_a, port_a = start("a", receiver.endpoint, f"http://127.0.0.1:{port_b}")
            try:
                client = subprocess.run(
                    [
                        sys.executable,
                        str(SERVICES),
                        "client",
                        receiver.endpoint,
                        f"http://127.0.0.1:{port_a}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=True,
                )
            finally:
                stop(service_a)
        finally:
            stop(service_b)
        spans = receiver.spans()
    assert "ANSWER hello from B in conv-x" in client.stdout
    services = {span.resource_attributes["service.name"] for span in spans}
    assert services == {"client", "service-a", "service-b"}
    names = {span.name for span in spans}
    assert {"client turn", "a: plan answer", "b: call the model"} <= names
    assert len(spans) >= 7  # client span + client GET, A's server spans and GET, B's spans
    for span in spans:
        assert span.attributes.get("session.id") == "conv-x", (span.name, span.resource_attributes)
        assert span.attributes.get("user.id") == "ada", span.name
    assert len({span.trace_id for span in spans}) == 1  # and one trace, end to end
