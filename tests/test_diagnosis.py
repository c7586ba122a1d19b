"""What doctor reports in (store/_diagnosis.py): every cause has its evidence and its fix."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import get_args

from sessiontrace.store import Diagnosis, Problem, ProblemSpan
from sessiontrace.store._diagnosis import EVIDENCE, FIXES, KIND_ORDER, Cause, ProblemKind


def test_every_cause_has_evidence_and_a_fix_that_names_the_api():
    causes = set(get_args(Cause))
    assert set(FIXES) == causes == set(EVIDENCE)
    assert all("sessiontrace" in fix or "OTEL_" in fix for fix in FIXES.values())


def test_every_kind_of_problem_has_its_place_in_the_listing_order():
    assert sorted(KIND_ORDER) == sorted(get_args(ProblemKind))
    assert len(set(KIND_ORDER)) == len(KIND_ORDER)


def test_a_problem_names_its_spans_in_order_and_a_diagnosis_without_any_is_ok():
    spans = tuple(
        ProblemSpan(
            span_id=span_id,
            name=name,
            scope=None,
            parent_span_id=None,
            parent_name=None,
            start=datetime(2025, 1, 1, tzinfo=timezone.utc),
            session_keys={},
            missing_keys=(),
        )
        for span_id, name in (("01", "worker"), ("02", "tool"))
    )
    cause: Cause = "thread without context"
    problem = Problem(
        kind="unstamped_span",
        trace_id="0af7",
        cause=cause,
        description="2 spans without the session",
        evidence=EVIDENCE[cause],
        fix=FIXES[cause],
        spans=spans,
    )
    assert (problem.span_ids, problem.span_names) == (("01", "02"), ("worker", "tool"))
    found = Diagnosis(session_id="s", traces_checked=1, spans_checked=3, problems=(problem,))
    assert not found.ok
    assert Diagnosis(session_id="s", traces_checked=1, spans_checked=3, problems=()).ok
