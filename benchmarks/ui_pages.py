"""The web view's pages in a real browser: how long each takes to show, and how soon a write
appears on an open page.

Run from the repository root (needs the ``ui`` and ``test`` extras and Debian's chromium:
``apt-get install chromium chromium-driver``)::

    python benchmarks/ui_pages.py                      # 1M spans (10,000 sessions)
    python benchmarks/ui_pages.py --spans 100000       # 100k spans, about a minute
    python benchmarks/ui_pages.py --keep /tmp/stores   # reuse (or keep) the built store

The store is ``store_scale.py``'s (as for ``ui_api.py``), served by the real ``sessiontrace
ui`` command and read by headless chromium. Each figure is the median of 5, from the moment
the browser is told to go (or the button is clicked) to the moment the page shows what was
asked for, polled every 5 ms: the request, the store read, JSON, and drawing the page. The
live figure is the time from a writer process's exit (its spans committed) to the new session
showing on an already open list, over 10 writes; the page asks for changes once a second.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import store_scale  # noqa: E402

from helpers.browser import chromium, ui_server  # noqa: E402
from helpers.programs import clean_env  # noqa: E402
from sessiontrace.store import SessionStore  # noqa: E402

TRACKED = "scale-run"
WRITER = """
import sys
from opentelemetry import trace
import sessiontrace
sessiontrace.configure(store_path=sys.argv[1], service_name="live")
with sessiontrace.using_session(sys.argv[2]):
    trace.get_tracer("live").start_span("turn").end()
assert sessiontrace.force_flush()
"""


def until(driver: Any, shown: Callable[[Any], bool], limit: float = 60.0) -> float:
    """Seconds until ``shown(driver)`` holds, asked every 5 ms (each asking is a round trip
    to the browser: for the live figures, where a second is the scale)."""
    started = time.perf_counter()
    while True:
        try:
            if shown(driver):
                return time.perf_counter() - started
        except Exception:  # the page is between renders
            pass
        if time.perf_counter() - started > limit:
            raise SystemExit("the page did not show what was asked within a minute")
        time.sleep(0.005)


def text(driver: Any, css: str) -> str:
    return str(driver.find_element("css selector", css).text)


# Inside the page: resolve with performance.now() (ms since the navigation began) as soon as
# the condition holds, checking after every change to the page and every 2 ms.
_SHOWN_AT = """
const [condition, done] = [new Function(arguments[0]), arguments[arguments.length - 1]];
const check = () => { if (condition()) { done(performance.now()); return true; } return false; };
if (!check()) {
  const watcher = new MutationObserver(() => { if (check()) watcher.disconnect(); });
  watcher.observe(document, { subtree: true, childList: true, characterData: true });
}
"""
_CLICKED = """
const [selector, index, condition, done] = [arguments[0], arguments[1],
  new Function(arguments[2]), arguments[arguments.length - 1]];
const started = performance.now();
const watcher = new MutationObserver(() => {
  if (condition()) { watcher.disconnect(); done(performance.now() - started); }
});
watcher.observe(document, { subtree: true, childList: true, characterData: true });
document.querySelectorAll(selector)[index].click();
"""


def load_ms(driver: Any, url: str, condition: str) -> float:
    """From the start of navigating to ``url`` until ``condition`` (JS) holds in the page."""
    driver.get("about:blank")
    driver.get(url)
    return float(driver.execute_async_script(_SHOWN_AT, condition))


def page_figures(driver: Any, base: str, session_id: str) -> list[tuple[str, str]]:
    driver.set_script_timeout(60)
    listed = "return (document.querySelector('#range') || {}).textContent"
    loaded = listed + " !== undefined"
    quoted = session_id.replace("/", "%2F")
    cases = [
        ("the sessions list (the newest 50)", "#/", loaded),
        ("a session of 100 spans (conversation)", f"#/s/{quoted}",
         "return document.querySelectorAll('.turn').length === 10"),
        ("the tracker run's timeline", f"#/s/{TRACKED}/timeline",
         "return document.querySelectorAll('.step').length > 0"),
    ]  # fmt: skip
    rows = []
    for name, fragment, condition in cases:
        runs = [load_ms(driver, base + fragment, condition) for _ in range(5)]
        rows.append((name, f"{statistics.median(runs):.0f}"))
    clicks = []
    for _ in range(5):
        load_ms(driver, base + "#/", loaded)
        clicks.append(
            float(
                driver.execute_async_script(
                    _CLICKED, ".pager button", 1, listed + ".startsWith('51')"
                )
            )
        )
    rows.insert(1, ("the next page (a click)", f"{statistics.median(clicks):.0f}"))
    return rows


def live_figures(driver: Any, directory: Path) -> tuple[str, str]:
    store = directory / "live.db"
    store.unlink(missing_ok=True)
    write(store, "live-0")
    delays = []
    with ui_server(store) as base:
        driver.get(base)
        until(driver, lambda d: "live-0" in text(d, "#app"))
        for n in range(1, 11):
            write(store, f"live-{n}")
            delays.append(until(driver, lambda d, n=n: f"live-{n}" in text(d, "#app")))
            print(f"  write {n}: shown {delays[-1]:.2f} s later", flush=True)
    return f"{statistics.median(delays):.2f}", f"{max(delays):.2f}"


def write(store: Path, session_id: str) -> None:
    subprocess.run(
        [sys.executable, "-c", WRITER, str(store), session_id], env=clean_env(), check=True
    )


def main() -> int:
    path, spans = store_scale.store_for(__doc__.splitlines()[0], "ui-pages-", TRACKED)
    with SessionStore(path) as store:
        busiest = next(
            s.session_id for s in store.page(sort="-spans", limit=5).sessions if s.span_count == 100
        )
    with chromium() as driver:
        with ui_server(path) as base:
            print(f"pages over {spans:,} spans (median of 5, ms):", flush=True)
            for name, figure in page_figures(driver, base, busiest):
                print(f"  {name:45} {figure:>6}", flush=True)
        print("live updates (10 writes to an open list):", flush=True)
        median, worst = live_figures(driver, path.parent)
        print(f"  median {median} s, worst {worst} s after the writer's commit", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
