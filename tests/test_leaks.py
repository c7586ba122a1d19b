"""Nothing stays behind: ended trackers are collected, and memory stays flat under load.

Each test fails on the code before issue #8: the open-span registry held trackers (and every
span id) for ever, the scope cache held up to 4,096 finished trackers with their state, and
every ``with observe(...)`` block left a context variable behind in its context.
"""

from __future__ import annotations

import contextvars
import gc
import threading
import tracemalloc
import weakref

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from sessiontrace import SessionTracker, observe, using_user
from sessiontrace._frames import open_observed

MIB = 1024 * 1024


# What this test's own thread allocated in sessiontrace and still holds: threads and export
# queues that other tests left running allocate too, and may still hold their spans.
OURS = (
    tracemalloc.Filter(True, "*/tests/test_leaks.py", all_frames=True),
    tracemalloc.Filter(True, "*/sessiontrace/*", all_frames=True),
    tracemalloc.Filter(False, "*/sessiontrace/export/*", all_frames=True),
    tracemalloc.Filter(False, "*/sessiontrace/store/*", all_frames=True),
)


def growth_of(run, *, warm_up=None) -> int:
    """Bytes allocated under ``run()`` by sessiontrace and still held after a full collection."""
    (warm_up or run)()
    gc.collect()
    tracemalloc.start(40)  # deep enough to see this test's frame from any allocation
    try:
        before = _ours(tracemalloc.take_snapshot())
        run()
        gc.collect()
        after = _ours(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def _ours(snapshot):
    # Filters of one call are or-ed by kind: apply each inclusion separately so that both hold.
    for keep in OURS:
        snapshot = snapshot.filter_traces((keep,))
    return snapshot


def test_an_ended_tracker_is_collected_despite_1000_spans_that_never_end(spans, tracer):
    tracker = SessionTracker("leak-1")
    never_ended = []
    with tracker, tracker.step("work"):
        tracker.set_state("notes", "n" * 1000)
        never_ended = [tracer.start_span(f"open {index}") for index in range(1000)]
    assert never_ended[0].attributes["session.id"] == "leak-1"  # they were under the tracker
    gone = weakref.ref(tracker)
    del tracker
    gc.collect()
    assert gone() is None, "an ended tracker is still referenced"
    assert not open_observed, f"{len(open_observed)} open spans of an ended tracker are kept"
    for span in never_ended:  # ending them late is harmless
        span.end()


def test_spans_never_ended_under_ended_trackers_cost_nothing(spans, tracer):
    def run(trackers=20):  # 20 trackers x 1,000 spans started and dropped without end()
        for number in range(trackers):
            with SessionTracker(f"never-{number}") as tracker, tracker.step():
                for _ in range(1000):
                    tracer.start_span("dropped")

    run()
    assert not open_observed, f"{len(open_observed)} never-ended spans are still registered"
    # tracemalloc is slow: bytes over 2,000 more of them. The registry's hash table may be
    # re-allocated once at the size 1,000 open spans gave it (36 KiB); nothing per span stays.
    grown = growth_of(lambda: run(2), warm_up=lambda: None)
    assert grown < 64 * 1024, f"{grown / 1024:.0f} KiB kept after 2,000 never-ended spans"


def test_finished_trackers_with_state_are_not_kept_by_the_scope_cache(spans):
    # The way trackers reached the cache: a cached using_user/using_session scope entered inside
    # a step remembered the frame it merged over, and that frame referred to the tracker.
    alive = weakref.WeakSet()

    def run(count=1000):
        for number in range(count):
            with SessionTracker(f"cached-{number}") as tracker, tracker.step():
                alive.add(tracker)
                tracker.set_state("blob", "x" * 9_900)  # 10 KB of state, as JSON
                with using_user(f"user-{number}"):
                    pass
            if number % 250 == 249:
                spans._exporter.clear()  # the step spans carry the state too
        spans._exporter.clear()

    run()
    gc.collect()
    assert len(alive) == 0, f"{len(alive)} finished trackers (10 KB of state each) are kept"
    grown = growth_of(lambda: run(200), warm_up=lambda: run(50))  # tracemalloc is slow
    # What is left is the cache's own scopes, about 150 bytes each, and in the full suite step
    # spans still queued by exporters that earlier tests attached (up to 200 KiB seen). The old
    # code kept 5,113 KiB here.
    assert grown < 1024 * 1024, f"{grown / 1024:.0f} KiB kept after 200 finished trackers"


def test_a_tracker_referenced_by_a_cached_scope_is_collected(spans):
    tracker = SessionTracker("cached-one")
    with tracker, tracker.step():
        tracker.set_state("blob", "x" * 9_900)
        with using_user("a-user-seen-inside-a-tracker"):
            pass
    gone = weakref.ref(tracker)
    del tracker
    gc.collect()
    assert gone() is None, "the scope cache keeps a finished tracker alive"


def test_observe_blocks_leave_nothing_in_their_context():
    # Under a parent that is not sampled the blocks' spans cost next to nothing, and the blocks
    # still run all of their own code: what is measured is observe() itself.
    unsampled = NonRecordingSpan(SpanContext(1, 1, is_remote=False, trace_flags=TraceFlags(0)))

    def run(count=50_000):
        with trace.use_span(unsampled):
            for _ in range(count):
                with observe("block"):
                    pass

    run(1000)
    variables = len(contextvars.copy_context())
    run()
    assert len(contextvars.copy_context()) == variables, "observe() leaves variables behind"
    grown = growth_of(lambda: run(2000))  # tracemalloc is slow: bytes over 2,000 blocks
    assert grown < 16 * 1024, f"{grown / 1024:.0f} KiB kept after 2,000 observe() blocks"


def test_spans_starting_in_other_threads_while_the_tracker_ends_are_not_kept(spans, tracer):
    tracker = SessionTracker("racing")
    started = threading.Barrier(5)

    def start_spans(context):
        started.wait()
        for _ in range(2000):
            context.run(tracer.start_span, "never-ended")

    tracker.start()
    step = tracker.step()
    step.__enter__()
    contexts = [contextvars.copy_context() for _ in range(4)]
    step.__exit__(None, None, None)
    threads = [threading.Thread(target=start_spans, args=(c,)) for c in contexts]
    for thread in threads:
        thread.start()
    started.wait()
    tracker.end()  # while the threads start spans under it
    for thread in threads:
        thread.join()
    assert not open_observed, f"{len(open_observed)} spans of an ended tracker are kept"
