"""The web view's API at scale: each endpoint timed on the store ``store_scale.py`` builds.

Run from the repository root (needs the ``ui`` extra: ``pip install -e '.[ui]'``)::

    python benchmarks/ui_api.py                      # 1M spans (10,000 sessions), ~5 minutes
    python benchmarks/ui_api.py --spans 100000       # 100k spans, well under a minute
    python benchmarks/ui_api.py --keep /tmp/stores   # reuse (or keep) the built store

The store is ``store_scale.py``'s: sessions of 10 traces of 10 spans with ~2 KB inputs, plus
one real ``SessionTracker`` run with steps, state snapshots and a sub-session. Each request
goes through Starlette's test client in this process (routing, the store read, JSON
encoding; no socket): one warm-up, then the median of 7. Targets (issue #11): the listing at
most 100 ms and a session at most 200 ms, at 10,000 sessions and 1,000,000 spans.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import store_scale
from starlette.testclient import TestClient

from sessiontrace.store import SessionStore
from sessiontrace.ui import create_app

TRACKED = "scale-run"


def timed(client: TestClient, url: str) -> float:
    """Median milliseconds of GET ``url`` after one warm-up; exits on an error answer."""
    warm = client.get(url)
    if warm.status_code != 200:
        raise SystemExit(f"{url} answered {warm.status_code}: {warm.text[:200]}")
    times = []
    for _ in range(7):
        started = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    path, spans = store_scale.store_for(__doc__.splitlines()[0], "ui-api-", TRACKED)
    with SessionStore(path) as store:
        plain = store.page(sort="first_start", limit=1).sessions[0].session_id
        sessions = store.page(limit=1).total
    client = TestClient(create_app(path))
    cases = [
        ("listing, newest 50", "/api/sessions", 100.0),
        ("listing, page 100 of 200", "/api/sessions?offset=4950", 100.0),
        ("listing, text filter", "/api/sessions?q=999", 100.0),
        ("listing, status filter", "/api/sessions?status=error", 100.0),
        ("listing, by tokens", "/api/sessions?sort=-tokens", 100.0),
        ("listing, tag of a third", "/api/sessions?tag=mobile", 100.0),
        ("listing, tag of one run", "/api/sessions?tag=agent", 100.0),
        ("listing, tag and status", "/api/sessions?tag=web&status=error", 100.0),
        ("a session of 100 spans", f"/api/sessions/{plain}", 200.0),
        ("the tracker run's session", f"/api/sessions/{TRACKED}", 200.0),
        ("the tracker run's timeline", f"/api/sessions/{TRACKED}/timeline", 200.0),
    ]
    print(f"sessiontrace ui API: {spans:,} spans, {sessions:,} sessions ({path})")
    print(f"  {'request':32s} {'ms':>8s} {'limit':>7s}")
    failed = 0
    for name, url, limit in cases:
        print(f"  {name:32s}", end="", flush=True)
        ms = timed(client, url)
        verdict = "PASS" if ms <= limit else "FAIL"
        failed += verdict == "FAIL"
        print(f" {ms:8.1f} {limit:7.0f}  {verdict}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
