"""Arize Phoenix, a real backend nobody on the project wrote, shows our sessions.

Starts ``phoenix serve`` on loopback (from the venv .ci/run makes for it: its path comes in
``PHOENIX_BIN``), runs two conversations of a chatbot through ``configure(endpoint=...)``, the
real ``openai`` client against the fake server and OpenInference's OpenAI instrumentation, then
asks Phoenix's own API for the sessions: one per conversation, the right number of traces, the
user id and the token counts.

Marked ``phoenix``: the default test run leaves it out (Phoenix is an 850 MB install); .ci/run
runs it in a step of its own with ``pytest -m phoenix``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider

import sessiontrace
from helpers.fake_openai import REPLY, FakeOpenAI, words

pytestmark = pytest.mark.phoenix

TURNS = {"alice": ["Hello!", "Where should I go in May?", "Thanks!"], "bob": ["Hi", "Bye"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str, payload: dict[str, object] | None = None) -> object:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def phoenix(tmp_path: Path):
    binary = os.environ.get("PHOENIX_BIN")
    if not binary:
        pytest.fail("PHOENIX_BIN is not set: run this through .ci/run, which installs Phoenix")
    port, grpc_port = free_port(), free_port()
    environment = {
        **os.environ,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_WORKING_DIR": str(tmp_path / "phoenix"),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    }
    log = (tmp_path / "phoenix.log").open("w")
    server = subprocess.Popen([binary, "serve"], env=environment, stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"Phoenix did not start: {(tmp_path / 'phoenix.log').read_text()}")
                time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_phoenix_sessions_view_shows_each_conversation(phoenix):
    from openinference.instrumentation.openai import OpenAIInstrumentor

    provider = sessiontrace.configure(
        endpoint=phoenix,
        tracer_provider=TracerProvider(shutdown_on_exit=False),
        batch=False,
        propagate=False,
    )
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    tracer = provider.get_tracer("chatbot")
    run = uuid.uuid4().hex[:8]  # session ids are unique across Phoenix projects
    session_ids = {user: f"{user}-{run}" for user in TURNS}
    try:
        with FakeOpenAI() as llm:
            client = openai.OpenAI(base_url=llm.base_url, api_key="offline")
            for user, turns in TURNS.items():
                with sessiontrace.using_attributes(session_id=session_ids[user], user_id=user):
                    for text in turns:
                        with tracer.start_as_current_span("turn"):  # one trace per turn
                            client.chat.completions.create(
                                model="fake-mini", messages=[{"role": "user", "content": text}]
                            )
    finally:
        instrumentor.uninstrument()
        provider.shutdown()

    query = (
        '{ getProjectByName(name: "default") { sessions(first: 100) { edges { node '
        "{ sessionId userId numTraces tokenUsage { prompt completion total } } } } } }"
    )
    found: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # ingestion is asynchronous
        answer = get_json(f"{phoenix}/graphql", {"query": query})
        edges = answer["data"]["getProjectByName"]["sessions"]["edges"]  # type: ignore[index]
        found = {e["node"]["sessionId"]: e["node"] for e in edges}
        if all(
            sid in found and found[sid]["numTraces"] == len(TURNS[user])
            for user, sid in session_ids.items()
        ):
            break
        time.sleep(1)
    for user, sid in session_ids.items():
        node = found[sid]
        assert node["userId"] == user
        assert node["numTraces"] == len(TURNS[user])
        prompt = sum(words(text) for text in TURNS[user])
        completion = len(TURNS[user]) * words(REPLY)
        assert node["tokenUsage"] == {
            "prompt": prompt,
            "completion": completion,
            "total": prompt + completion,
        }
    listed = get_json(f"{phoenix}/v1/projects/default/sessions")
    assert {s["session_id"] for s in listed["data"]} >= set(session_ids.values())  # type: ignore[index]
