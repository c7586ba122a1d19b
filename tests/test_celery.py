"""Celery: a real worker (embedded, memory broker) runs tasks with the sender's session."""

from __future__ import annotations

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from sessiontrace import current, current_session_id, using_attributes
from sessiontrace.integrations import celery as celery_sessions

app = Celery("sessiontrace-tests", broker="memory://", backend="cache+memory://")
app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")


@app.task
def describe() -> dict[str, object]:
    now = current()
    return {"session": now.session_id, "user": now.user_id, "tags": list(now.tags)}


@pytest.fixture(scope="module")
def worker():
    celery_sessions.instrument()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
            yield
    finally:
        celery_sessions.uninstrument()


def test_a_task_runs_with_the_senders_session(worker, spans):
    with using_attributes(session_id="celery-1", user_id="ada", tags=["batch"]):
        result = describe.delay()
    assert result.get(timeout=20) == {"session": "celery-1", "user": "ada", "tags": ["batch"]}


def test_a_task_sent_outside_a_session_has_none_and_nothing_stays(worker):
    assert describe.delay().get(timeout=20) == {"session": None, "user": None, "tags": []}
    with using_attributes(session_id="celery-2"):
        first = describe.delay()
    second = describe.delay()
    assert first.get(timeout=20)["session"] == "celery-2"
    assert second.get(timeout=20)["session"] is None  # the worker restored after the first
    assert current_session_id() is None
