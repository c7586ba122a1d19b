"""ui/_app and ui/_documents: the web view's JSON API over a real store, with Starlette's client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from helpers.programs import clean_env
from sessiontrace.ui import create_app
from sessiontrace.ui._pages import ASSETS

HOSTILE_ID = '<img src=x onerror=alert(1)><script>alert("x")</script>/x'  # a valid id
HOSTILE = HOSTILE_ID + "\u0007\u001b[31m"  # span text may also hold control characters


# A program as users write it, run as its own process: it writes the store the API reads.
PROGRAM = """
import sys
from opentelemetry import trace
import sessiontrace
from sessiontrace import SessionTracker, using_attributes, using_session

sessiontrace.configure(store_path=sys.argv[1], service_name="ui-tests")
tracer = trace.get_tracer("ui-tests")
with using_attributes(session_id="chat-1", user_id="ada"):
    for turn in range(2):
        question = {"input.value": f"question {turn}"}
        with tracer.start_as_current_span("turn", attributes=question) as span:
            span.set_attribute("output.value", f"answer {turn}")
            tracer.start_span("llm", attributes={"openinference.span.kind": "LLM",
                "llm.token_count.prompt": 3, "llm.token_count.total": 5}).end()
with using_session(sys.argv[2]):
    tracer.start_span(sys.argv[3], attributes={"input.value": sys.argv[3]}).end()
with SessionTracker("trip-1", name="trip") as tracker:
    with tracker.step("plan"):
        tracker.set_state("city", "Oslo")
        tracker.set_state("days", 3)
    with tracker.step("book"):
        tracker.set_state("days", 4)
    with tracker.child("flights", session_id="trip-1-flights") as child, child.step("search"):
        pass
assert sessiontrace.force_flush()
"""


@pytest.fixture
def store(db: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(db), HOSTILE_ID, HOSTILE],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return db


def client(store: Path) -> TestClient:
    return TestClient(create_app(store))


def test_the_listing_pages_filters_and_sorts(store):
    api = client(store)
    listing = api.get("/api/sessions").json()
    names = {"chat-1", HOSTILE_ID, "trip-1", "trip-1-flights"}
    assert listing["total"] == 4
    assert {s["session_id"] for s in listing["sessions"]} == names
    page = api.get("/api/sessions", params={"limit": 1, "offset": 1, "sort": "session_id"}).json()
    assert (page["total"], page["offset"], page["limit"]) == (4, 1, 1)
    assert [s["session_id"] for s in page["sessions"]] == ["chat-1"]  # after "<img ..."
    top = api.get("/api/sessions", params={"top_level": "true"}).json()
    assert top["total"] == 3
    by_user = api.get("/api/sessions", params={"user": "ada"}).json()
    assert [s["session_id"] for s in by_user["sessions"]] == ["chat-1"]
    by_text = api.get("/api/sessions", params={"q": "onerror"}).json()
    assert [s["session_id"] for s in by_text["sessions"]] == [HOSTILE_ID]
    by_tokens = api.get("/api/sessions", params={"sort": "-tokens", "limit": 1}).json()
    assert by_tokens["sessions"][0]["total_tokens"] == 10
    assert api.get("/api/sessions", params={"status": "error"}).json()["total"] == 0


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"status": "done"}, "status"),
        ({"sort": "-colour"}, "sort"),
        ({"top_level": "maybe"}, "top_level"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_parameter_is_400_naming_it_and_what_is_allowed(store, params, parameter):
    response = client(store).get("/api/sessions", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["parameter"] == parameter
    assert body["allowed"] and body["error"]


def test_a_session_is_its_traces_as_span_trees_with_input_and_output(store):
    document = client(store).get("/api/sessions/chat-1").json()
    assert document["session_id"] == "chat-1"
    assert document["summary"]["user_id"] == "ada"
    assert [t["span_count"] for t in document["traces"]] == [2, 2]
    root = document["traces"][0]["spans"][0]
    assert (root["name"], root["input"], root["output"]) == ("turn", "question 0", "answer 0")
    (child,) = root["children"]
    assert (child["name"], child["openinference_kind"], child["total_tokens"]) == ("llm", "LLM", 5)
    assert child["attributes"]["session.id"] == "chat-1"


def test_hostile_text_comes_back_exactly_as_json_and_ids_with_slashes_resolve(store):
    api = client(store)
    response = api.get("/api/sessions/" + quote(HOSTILE_ID, safe=""))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["session_id"] == HOSTILE_ID
    span = document["traces"][0]["spans"][0]
    assert (span["name"], span["input"]) == (HOSTILE, HOSTILE)  # the text, exactly
    # JSON escapes control characters; the wire carries no raw ones.
    assert r"\u0007" in response.text and "\x07" not in response.text
    timeline = api.get("/api/sessions/" + quote(HOSTILE_ID, safe="") + "/timeline")
    assert timeline.json()["session_id"] == HOSTILE_ID


def test_an_unknown_session_is_404_as_json(store):
    for path in ("/api/sessions/nope", "/api/sessions/nope/timeline", "/api/sessions/nope/doctor"):
        response = client(store).get(path)
        assert response.status_code == 404
        assert response.json() == {"error": "no session with this id in the store",
                                   "session_id": "nope"}  # fmt: skip


def test_a_tracker_runs_timeline_has_steps_state_changes_and_subsessions(store):
    document = client(store).get("/api/sessions/trip-1/timeline").json()
    assert document["tracked"] is True
    assert [s["name"] for s in document["steps"]] == ["plan", "book"]
    assert document["steps"][0]["state_change"] == {
        "set": {"city": "Oslo", "days": 3},
        "removed": [],
    }
    assert document["steps"][1]["state_change"] == {"set": {"days": 4}, "removed": []}
    assert [c["session_id"] for c in document["subsessions"]] == ["trip-1-flights"]
    assert document["subsessions"][0]["steps"][0]["name"] == "search"
    assert document["totals"]["steps"] == 2
    assert "spans" not in document["steps"][0] and document["steps"][0]["span_count"] == 0


def test_a_session_document_has_its_turns_as_a_chat_shows_them(store):
    turns = client(store).get("/api/sessions/chat-1").json()["turns"]
    assert [(t["user"], t["output"], t["llm_calls"]) for t in turns] == [
        ("question 0", "answer 0", 1),
        ("question 1", "answer 1", 1),
    ]
    assert turns[0]["total_tokens"] == 5 and turns[0]["status"] == "ok"


def test_doctor_findings_for_a_session(store):
    found = client(store).get("/api/sessions/chat-1/doctor").json()
    assert found["session_id"] == "chat-1"
    assert (found["traces_checked"], found["spans_checked"], found["problems"]) == (2, 4, [])


PAGE_FILES = {
    "/": "text/html; charset=utf-8",
    "/assets/app.js": "text/javascript; charset=utf-8",
    "/assets/app.css": "text/css; charset=utf-8",
    "/favicon.svg": "image/svg+xml",
}


def test_the_page_is_served_by_the_app_itself_under_a_strict_policy(store):
    api = client(store)
    for path, media_type in PAGE_FILES.items():
        response = api.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == media_type
    page = api.get("/").text
    # Nothing from another host: every address the page loads is its own.
    assert "//" not in page
    script = "".join(api.get(f"/assets/{name}").text for name in ASSETS)
    assert "import" in script and "from './" not in script  # the modules, all served
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    for path in (*PAGE_FILES, "/api/sessions", "/api/sessions/nope"):
        headers = api.get(path).headers
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert headers["x-content-type-options"] == "nosniff"
    info = api.get("/api/info").json()
    assert info["store"] == str(store) and info["read_only"] is True


def test_the_change_stamp_moves_when_a_program_writes_and_not_otherwise(store):
    api = client(store)
    before = api.get("/api/changes").json()["stamp"]
    assert api.get("/api/changes").json()["stamp"] == before
    subprocess.run([sys.executable, "-c", PROGRAM, str(store), "later", "later"], env=clean_env(),
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    assert api.get("/api/changes").json()["stamp"] != before
    assert client(store.parent / "none.db").get("/api/changes").json() == {"stamp": "missing"}
