"""cli/_ui: `sessiontrace ui` serves the API on a real port, warns off loopback, stops on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers.programs import clean_env, free_port
from helpers.stored import store_tracer
from sessiontrace.cli._ui import is_loopback


@pytest.fixture
def store(db: Path) -> Path:
    with store_tracer(db) as tracer:
        tracer.start_span("turn", attributes={"session.id": "chat-1"}).end()
    return db


def start(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sessiontrace", "ui", *argv],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def get_json(url: str, deadline: float) -> object:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


def test_it_serves_the_store_read_only_on_loopback_and_stops_with_one_line(store):
    port = free_port()
    mtime = store.stat().st_mtime_ns
    process = start("--store", str(store), "--port", str(port))
    try:
        listing = get_json(f"http://127.0.0.1:{port}/api/sessions", time.monotonic() + 60)
        assert [s["session_id"] for s in listing["sessions"]] == ["chat-1"]  # type: ignore[index]
        session = get_json(f"http://127.0.0.1:{port}/api/sessions/chat-1", time.monotonic() + 5)
        assert session["traces"][0]["spans"][0]["name"] == "turn"  # type: ignore[index]
    finally:
        code, out, err = stop(process)
    assert code == 0, err
    assert out.splitlines() == [
        f"sessiontrace ui: serving {store} read-only at "
        f"http://127.0.0.1:{port}/ (Ctrl-C stops)",
        "sessiontrace ui: stopped",
    ]
    assert err == ""
    assert store.stat().st_mtime_ns == mtime  # never written


def test_every_endpoint_and_error_answers_over_real_http(store):
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/sessions"
    process = start("--store", str(store), "--port", str(port))
    try:
        get_json(base, time.monotonic() + 60)
        timeline = get_json(base + "/chat-1/timeline", time.monotonic() + 5)
        assert timeline["session_id"] == "chat-1" and timeline["tracked"] is False  # type: ignore[index]
        for url, status, key in (
            (base + "/nope", 404, "session_id"),
            (base + "/nope/timeline", 404, "session_id"),
            (base + "?limit=0", 400, "parameter"),
        ):
            try:
                urllib.request.urlopen(url, timeout=5)
            except urllib.error.HTTPError as answer:
                assert answer.code == status
                assert answer.headers["content-type"] == "application/json"
                assert key in json.load(answer)
            else:
                raise AssertionError(f"{url} answered 200")
    finally:
        code, _, err = stop(process)
    assert code == 0, err


def test_another_host_is_served_only_with_a_warning(store):
    port = free_port()
    process = start("--store", str(store), "--host", "0.0.0.0", "--port", str(port))
    try:
        get_json(f"http://127.0.0.1:{port}/api/sessions", time.monotonic() + 60)
    finally:
        code, _, err = stop(process)
    assert code == 0
    assert "warning: serving on 0.0.0.0: anyone who can reach this address" in err


def test_a_missing_store_is_an_error_before_anything_listens(tmp_path):
    process = start("--store", str(tmp_path / "nothing.db"), "--port", str(free_port()))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert out == ""
    assert err.startswith("sessiontrace: error: ") and "nothing.db" in err


def test_without_the_ui_extra_it_says_what_to_install(store):
    blocked = (
        "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None; "
        "from sessiontrace.cli import main; "
        f"sys.exit(main(['ui', '--store', {str(store)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sessiontrace: error: the web view needs Starlette and uvicorn: pip install "
        "'sessiontrace[ui]' (in a checkout: pip install -e '.[ui]')"
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.9", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False)],
)  # fmt: skip
def test_only_loopback_addresses_count_as_this_machine(host, loopback):
    assert is_loopback(host) is loopback
