"""`sessiontrace timeline`: the HTML page, parsed back with the standard library's parser.

The sessions are the ones test_replay.py builds: a tracked agent run (four steps, a failing
step, a span between steps, a sub-session in step 2) and a plain session of two traces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from test_replay import AGENT, CHILD, PLAIN, SCRIPT_NAME, build_agent, build_plain, run

from sessiontrace.store import SessionStore, SQLiteSpanExporter, outside_steps, steps

# Elements that never have an end tag in HTML.
VOID = {"meta", "br", "img", "input", "link", "hr", "source", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None
    children: list[Element] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def all_text(self) -> str:
        return "".join(self.text) + "".join(child.all_text() for child in self.children)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, tag=None, cls=None, **attrs):
        return [
            element
            for element in self.walk()
            if (tag is None or element.tag == tag)
            and (cls is None or cls in element.classes)
            and all(element.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class Page(HTMLParser):
    """A small DOM: elements with their attributes, children and text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {}, None)
        self._open = self.root
        self.tags: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        element = Element(tag, {k: v or "" for k, v in attrs}, self._open)
        self._open.children.append(element)
        if tag not in VOID:
            self._open = element

    def handle_endtag(self, tag):
        node = self._open
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None and node.parent is not None, f"stray </{tag}>"
        self._open = node.parent

    def handle_data(self, data):
        self._open.text.append(data)


def name_of(row: Element) -> str:
    """A span row's span name: its label's own text, without the model beside it."""
    label = row.find(cls="label")[0]
    return "".join(label.text).strip()


def rows(page: Page, name: str) -> list[Element]:
    return [row for row in page.root.find(cls="span-row") if name_of(row) == name]


@pytest.fixture
def sessions(tmp_path):
    db = tmp_path / "sessions.db"
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    tracer = provider.get_tracer("timeline-tests")
    build_plain(tracer)
    build_agent(tracer)
    provider.shutdown()
    return db


def timeline(db, session_id, tmp_path) -> tuple[str, Page]:
    target = tmp_path / f"{session_id}.html"
    code, out, err = run("--store", str(db), "timeline", session_id, "--html", str(target))
    assert (code, err) == (0, "")
    assert out == f"{target}\n"
    text = target.read_text(encoding="utf-8")
    return text, Page(text)


def test_one_lane_per_step_and_a_bar_per_span(sessions, tmp_path):
    _, page = timeline(sessions, AGENT, tmp_path)
    lanes = page.root.find("section", cls="lane", data_session=AGENT)
    assert [lane.attrs.get("data-step") for lane in lanes] == ["0", "1", "2", "3", None]
    assert "outside" in lanes[-1].classes  # the span made between steps
    with SessionStore(sessions) as store:
        expected = {
            span.span_id
            for session_id in (AGENT, CHILD)
            for step in steps(store, session_id)
            for span in (step.span, *step.spans)
        } | {span.span_id for span in outside_steps(store, AGENT)}
    bars = [bar.attrs["data-span-id"] for bar in page.root.find(cls="bar")]
    assert sorted(bars) == sorted(expected)  # each stored span once; no summary spans
    # Span rows are nested under their parents: GET /flights is indented under its tool.
    search = lanes[1]
    labels = {
        name_of(row): row.find(cls="label")[0].attrs["style"] for row in search.find(cls="span-row")
    }
    indent = {
        name: int(re.search(r"padding-left:(\d+)px", style)[1]) for name, style in labels.items()
    }
    assert indent["GET /flights"] > indent["search_flights"] == indent["book"]


def test_bars_are_to_scale_on_one_axis(sessions, tmp_path):
    _, page = timeline(sessions, AGENT, tmp_path)

    def place(name):
        row = rows(page, name)[0]
        (bar,) = row.find(cls="bar")
        left, width = re.findall(r"[\d.]+(?=%)", bar.attrs["style"])
        return float(left), float(width)

    # The axis runs from 0 ms (step 0 starts) to 850 ms (step 3 ends; summaries are not drawn).
    # Step 0's ChatCompletion, 10 ms to 90 ms.
    assert place("ChatCompletion") == pytest.approx((10 / 850 * 100, 80 / 850 * 100), abs=0.01)
    assert place("chat claude-haiku") == pytest.approx((270 / 850 * 100, 120 / 850 * 100), abs=0.01)
    kinds = {name_of(r): r.find(cls="bar")[0].classes for r in page.root.find(cls="span-row")}
    assert "tool" in kinds["search_flights"]
    assert "llm" in kinds["chat claude-haiku"]
    assert "error" in kinds["book"]
    assert "other" in kinds["GET /flights"]
    ticks = [span.all_text() for span in page.root.find(cls="axis")[0].find("span")]
    assert ticks == [f"{ms} ms" for ms in range(0, 801, 100)]


def test_state_changes_are_marked_per_step(sessions, tmp_path):
    _, page = timeline(sessions, AGENT, tmp_path)
    markers = {}
    for lane in page.root.find("section", cls="lane", data_session=AGENT):
        chips = [
            chip
            for chip in lane.find(cls="state-change")
            if all(a.attrs.get("data-session") in (None, AGENT) for a in chip.ancestors())
        ]
        markers[lane.attrs.get("data-step")] = [
            (sorted(chip.classes - {"chip", "state-change"})[0], chip.attrs["data-key"])
            for chip in chips
        ]
    assert markers == {
        "0": [("added", "goal"), ("added", "budget")],
        "1": [("changed", "budget"), ("added", "flights")],
        "2": [("removed", "budget"), ("removed", "flights")],
        "3": [],  # no snapshot: no markers
        None: [],
    }
    (changed,) = [c for c in page.root.find(cls="changed") if c.attrs.get("data-key") == "budget"]
    assert changed.attrs["title"] == "budget = 250"
    # The whole snapshot is one click away.
    snapshots = [pre.all_text() for pre in page.root.find("pre")]
    assert '"flights": 2' in snapshots[1]


def test_steps_show_tokens_and_duration_and_sub_sessions_nest(sessions, tmp_path):
    _, page = timeline(sessions, AGENT, tmp_path)
    lanes = page.root.find("section", cls="lane", data_session=AGENT)
    head = lanes[0].find(cls="head")[0].all_text()
    assert "100.0 ms" in head and "120 tokens" in head and "gpt-4o-mini" in head
    assert "error" in lanes[3].find(cls="head")[0].all_text()
    (nested,) = page.root.find("section", data_session=CHILD)
    assert nested.attrs["data-depth"] == "1" and "sub-lane" in nested.classes
    assert lanes[2] in list(nested.ancestors())  # drawn inside step 2's lane
    assert "researcher" in lanes[2].find(cls="subhead")[0].all_text()
    assert "10 tokens" in nested.all_text()


def test_hover_text_has_name_duration_tokens_and_io(sessions, tmp_path):
    _, page = timeline(sessions, AGENT, tmp_path)
    (row,) = rows(page, "chat claude-haiku")
    tip = row.attrs["title"]
    lines = tip.splitlines()
    assert lines[0] == "chat claude-haiku"
    assert lines[1] == "LLM · 120.0 ms · claude-haiku"
    assert lines[2].startswith("tokens 50/10/60")
    assert lines[3].startswith("in: Compare these flights carefully.") and lines[3].endswith("...")
    assert lines[4] == "out: SK 1234 is the best fit."
    (book,) = rows(page, "book")
    assert "error: TimeoutError: no answer" in book.attrs["title"]


def test_the_page_is_self_contained_and_escapes_store_text(sessions, tmp_path):
    text, page = timeline(sessions, AGENT, tmp_path)
    assert "http://" not in text and "https://" not in text
    linked = [e.tag for e in page.root.walk() if {"src", "href", "srcset"} & set(e.attrs)]
    assert linked == []
    assert "@import" not in text and "url(" not in text
    assert page.tags.count("script") == 1  # ours, inline
    (script,) = page.root.find("script")
    assert "src" not in script.attrs
    assert len(page.root.find("style")) == 1
    # The span named <script>alert(1)</script> is text, not markup.
    assert SCRIPT_NAME not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert len(rows(page, SCRIPT_NAME)) == 1
    assert "<img" not in text
    assert page.tags.count("img") == 0


def test_a_plain_session_gets_one_lane_per_trace(sessions, tmp_path):
    _, page = timeline(sessions, PLAIN, tmp_path)
    lanes = page.root.find("section", cls="lane")
    assert [lane.attrs["data-step"] for lane in lanes] == ["0", "1"]
    assert len(page.root.find(cls="bar")) == 4
    assert page.root.find(cls="state-change") == []
    assert "one lane per trace" in page.root.find(cls="meta")[0].all_text()
    assert "chain" in lanes[0].find(cls="bar")[0].classes  # the root's own kind


def test_latest_and_writing_to_stdout(sessions):
    code, out, _ = run("--store", str(sessions), "timeline", "latest", "--html", "-")
    assert code == 0
    assert out.startswith("<!DOCTYPE html>")
    assert f"<h1>{AGENT}</h1>" in out


def test_timeline_errors(sessions, tmp_path):
    code, out, err = run("--store", str(sessions), "timeline", "nope", "--html", "x.html")
    assert (code, out) == (1, "")
    assert err == run("--store", str(sessions), "show", "nope")[2]
    assert not (tmp_path / "x.html").exists()
    code, _, err = run("--store", str(tmp_path / "missing.db"), "timeline", "x", "--html", "-")
    assert code == 2 and "no session store" in err
    unwritable = tmp_path / "no-such-dir" / "t.html"
    code, out, err = run("--store", str(sessions), "timeline", AGENT, "--html", str(unwritable))
    assert (code, out) == (2, "")
    assert str(unwritable) in err and "Traceback" not in err and err.count("\n") == 1
    code, _, err = run("--store", str(sessions), "timeline", AGENT)
    assert code == 2 and "--html" in err


def test_the_header_gives_the_totals_in_the_words_show_uses(sessions, tmp_path):
    _, page = timeline(sessions, AGENT, tmp_path)
    (header,) = page.root.find("header")
    (totals,) = header.find(cls="totals")
    lines = [div.all_text() for div in totals.find("div") if div is not totals]
    shown = run("--store", str(sessions), "show", AGENT)[1]
    block = shown[shown.index("  totals") : shown.index("\n\n")].splitlines()
    assert lines == [line.strip().removeprefix("totals").strip() for line in block]
    assert lines[1].startswith("with 1 sub-session: ")
    # The run's status as `sessions` and `replay` say it, never OpenTelemetry's codes.
    (badge,) = header.find(cls="badge")
    assert badge.all_text() == "error" and "error" in badge.classes
    cards = {
        card.find(cls="k")[0].all_text(): (
            card.find(cls="v")[0].all_text(),
            "".join(d.all_text() for d in card.find(cls="d")),
        )
        for card in header.find(cls="card")
    }
    assert cards["spans"] == ("12", "with 1 sub-session: 15")
    assert cards["tokens"] == ("180", "150 prompt / 30 completion · with 1 sub-session: 190")
    assert cards["cost"] == ("$0.001200", "priced by the tracker, with 1 sub-session")
    # The sub-session's lane head: its own stored tokens and status.
    (subhead,) = page.root.find(cls="subhead")
    assert subhead.find(cls="stats")[0].all_text() == "1 step · 10 tokens · ok"
    assert "UNSET" not in page.root.all_text() and "ERROR" not in page.root.all_text()
