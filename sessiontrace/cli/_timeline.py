"""``sessiontrace timeline``: one session drawn as a self-contained HTML timeline.

One lane per step (per trace for a session without tracker steps), every span a bar on one
shared time axis, nested spans under their parents, the state keys each step changed, and
sub-sessions as lanes nested under the step that started them. The page is one file with
inline CSS and script: it loads nothing, so it can be mailed or attached to a bug report.
Every string from the store is escaped: control and bidi characters as ``\\x1b``-style text
(``_format.safe``), then for HTML; the tooltip script moves text with ``textContent`` only.
"""

from __future__ import annotations

import argparse
import json
import math
from html import escape as _escape_html
from pathlib import Path
from typing import Any, TextIO

from sessiontrace import _keys
from sessiontrace._usage import model_name
from sessiontrace._version import __version__
from sessiontrace.cli import _format
from sessiontrace.cli._errors import CommandError
from sessiontrace.cli._replay import MAX_DEPTH, Run, kind_of, load, span_tree
from sessiontrace.cli._show import _find
from sessiontrace.cli._timeline_assets import CSS, JS
from sessiontrace.store import SessionStore, StoredSpan, StoredStep

TOOLTIP_CHARS = 300
"""The longest an input or output preview in a tooltip may be."""

BESIDE_CHARS = 60
"""The longest an output preview written beside a span's bar may be."""

_STDOUT = "-"
_INDENT_PX = 18  # per sub-session level, in the label column
_SPAN_INDENT_PX = 14  # per span nesting level


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add the ``timeline`` command to the CLI's parser."""
    parser = subparsers.add_parser(
        "timeline",
        parents=parents,
        help="draw one session as a self-contained HTML timeline",
        description="Write one session as a single HTML file (no network, no external files): "
        "one lane per step, span bars to scale on a shared time axis, the state keys each "
        "step changed, tokens and duration per step, and sub-sessions nested under their "
        "step. Hover a bar for its name, duration, tokens, input and output.",
    )
    parser.add_argument(
        "session_id",
        metavar="SESSION_ID",
        help="as listed by `sessions`, or `latest` for the most recently active one",
    )
    parser.add_argument(
        "--html",
        required=True,
        metavar="FILE",
        help="the HTML file to write (replaced if it exists); '-' writes to standard output",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, store: SessionStore, out: TextIO) -> int:
    """Write the timeline of one session to ``args.html``; prints the path written."""
    page = render(load(store, _find(store, args.session_id).session_id))
    if args.html == _STDOUT:
        out.write(page)
        return 0
    path = Path(args.html).expanduser().absolute()
    try:
        path.write_text(_format.safe(page, newlines=True), encoding="utf-8")
    except OSError as exc:
        raise CommandError(
            f"could not write the timeline to {path}: {exc.strerror or exc}; pass --html with "
            "a file in a directory you can write",
            exit_code=2,
        ) from exc
    out.write(f"{path}\n")
    return 0


def render(run: Run) -> str:
    """The whole HTML page for one replayed session.

    Args:
        run: The session, as loaded by ``sessiontrace.cli._replay.load``.

    Returns:
        A complete, self-contained HTML document.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     html = render(load(store, "trip-1"))
    """
    axis = _Axis(*_extent(run))
    body = [
        _header(run),
        '<main class="timeline">',
        '<div class="grid">' + "".join(axis.grid()) + "</div>",
        '<div class="row axis"><div class="label">time since the session started</div>'
        '<div class="track">' + "".join(axis.labels()) + "</div></div>",
        *_lanes(run, axis, depth=0),
        "</main>",
        f"<footer>Written by sessiontrace {_h(__version__)} from the local store. Hover a "
        "bar or a row for its details; open a step's snapshot to see its whole state."
        "</footer>",
        '<div id="tip"></div>',
    ]
    title = f"sessiontrace timeline: {run.session.session_id}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_h(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{JS}</script>\n</body>\n</html>\n"
    )


# --- the time axis -----------------------------------------------------------------------


class _Axis:
    """Maps a time in nanoseconds to a left offset in percent of the track."""

    def __init__(self, start_ns: int, end_ns: int) -> None:
        self.start_ns = start_ns
        self.span_ns = max(end_ns - start_ns, 1)

    def x(self, ns: int) -> float:
        return min(max((ns - self.start_ns) / self.span_ns * 100, 0.0), 100.0)

    def place(self, start_ns: int, end_ns: int) -> str:
        left = self.x(start_ns)
        return f"left:{left:.3f}%;width:{max(self.x(end_ns) - left, 0):.3f}%"

    def after(self, start_ns: int, end_ns: int) -> str:
        """Where a label beside a bar goes: right of it, or left of it if more room is there.

        The label is clipped to the room it has, so it never runs off the page.
        """
        start, end = self.x(start_ns), self.x(end_ns)
        if 100 - end >= 18 or 100 - end >= start:
            return f"left:calc({end:.3f}% + 5px);right:0"
        return f"right:calc({100 - start:.3f}% + 5px);max-width:calc({start:.3f}% - 5px)"

    def _ticks(self) -> list[float]:
        total_ms = self.span_ns / 1e6
        raw = total_ms / 10
        magnitude = 10 ** math.floor(math.log10(raw))
        step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
        return [k * step for k in range(int(total_ms / step + 1e-9) + 1)]

    def grid(self) -> list[str]:
        return [
            f'<div class="tick" style="left:{self.x(self.start_ns + int(ms * 1e6)):.3f}%"></div>'
            for ms in self._ticks()
        ]

    def labels(self) -> list[str]:
        ticks = self._ticks()
        step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
        return [
            f'<span style="left:{self.x(self.start_ns + int(ms * 1e6)):.3f}%">'
            f"{_h(_tick_label(ms, step))}</span>"
            for ms in ticks
        ]


def _tick_label(ms: float, step: float) -> str:
    if step >= 1000:
        return f"{round(ms / 1000, 3):g} s"
    return f"{round(ms, 3):g} ms"


def _extent(run: Run) -> tuple[int, int]:
    starts: list[int] = []
    ends: list[int] = []

    def visit(current: Run) -> None:
        for step in current.steps:
            starts.append(step.start_ns)
            ends.append(max([step.end_ns, *(span.end_ns for span in step.spans)]))
        for span in current.outside:
            starts.append(span.start_ns)
            ends.append(span.end_ns)
        for child in current.sub.values():
            visit(child)

    visit(run)
    if not starts:
        first = int(run.session.first_start.timestamp() * 1e9)
        return first, first + 1_000_000
    return min(starts), max(ends)


# --- the page header ---------------------------------------------------------------------


def _header(run: Run) -> str:
    s = run.session
    status = _format.status_word(s.status)
    badge = f'<span class="badge {_badge_class(status)}">{_h(status)}</span>'
    if not run.tracked:
        badge += ' <span class="badge plain">plain session</span>'
    name = f'<span class="name">{_h(run.name)}</span>' if run.name else ""
    meta = [
        f"user {s.user_id}" if s.user_id else "no user",
        f"started {_format.local_time(s.first_start)}",
    ]
    if s.parent_session_id:
        meta.append(f"sub-session of {s.parent_session_id}")
    if not run.tracked:
        meta.append("no SessionTracker steps: one lane per trace")
    below = s.with_subsessions
    count = _format.subsession_count(s)
    label = _format.with_subsessions_label(count)

    def detail(value: str | None) -> str:
        return f"{label}: {value}" if below is not None and count and value else ""

    priced = run.tracker_cost()
    if s.cost_usd is not None or priced is None:
        cost_card = (
            "cost",
            _format.cost(s.cost_usd),
            detail(_format.cost(below.cost_usd) if below and below.cost_usd is not None else None),
        )
    else:  # no span reported a cost, but the tracker priced the run's LLM calls
        cost_card = ("cost", _format.cost(priced), run.priced_by)
    tokens = (s.prompt_tokens or 0, s.completion_tokens or 0, s.total_tokens or 0)
    cards = [
        ("steps" if run.tracked else "traces", f"{len(run.steps)}", ""),
        ("spans", f"{s.span_count:,}", detail(f"{below.span_count:,}" if below else None)),
        ("LLM calls", f"{s.llm_calls:,}", detail(f"{below.llm_calls:,}" if below else None)),
        (
            "tokens",
            f"{tokens[2]:,}",
            " · ".join(
                part
                for part in (
                    f"{tokens[0]:,} prompt / {tokens[1]:,} completion",
                    detail(f"{below.total_tokens or 0:,}" if below else None),
                )
                if part
            ),
        ),
        cost_card,
        ("duration", _format.duration(s.duration_seconds), ""),
        ("errors", f"{s.error_count:,}", detail(f"{below.error_count:,}" if below else None)),
    ]
    if below is not None and count:
        cards.append(("sub-sessions", f"{count:,}", "all levels"))
    card_html = "".join(
        f'<div class="card"><div class="v">{_h(value)}</div><div class="k">{_h(key)}'
        f"</div>" + (f'<div class="d">{_h(more)}</div>' if more else "") + "</div>"
        for key, value, more in cards
    )
    totals = "".join(f"<div>{_h(line)}</div>" for line in _format.totals_lines(s))
    note = run.tracker_note()
    if note is not None:
        totals += f'<div class="note">{_h("note: " + note)}</div>'
    swatches = [("llm", "LLM"), ("tool", "tool"), ("chain", "chain / agent"), ("other", "other")]
    if run.tracked:
        swatches.insert(0, ("step", "step"))
    legend = "".join(
        f'<span><i style="background:var(--{var})"></i>{label}</span>'
        for var, label in [*swatches, ("error", "error")]
    )
    if _has_state(run):
        legend += (
            '<span><span class="chip added">+key</span><span class="chip changed">~key</span>'
            '<span class="chip removed">key</span> state added / changed / gone</span>'
        )
    return (
        '<header class="top">'
        f'<div class="title"><h1>{_h(s.session_id)}</h1>{name}{badge}</div>'
        f'<div class="meta">{_h(" · ".join(meta))}</div>'
        f'<div class="totals">{totals}</div>'
        f'<div class="cards">{card_html}</div><div class="legend">{legend}</div></header>'
    )


def _badge_class(status: str) -> str:
    """The badge's CSS class for a status word; anything unknown is drawn as ``running``."""
    return status if status in ("ok", "error", "running") else "running"


def _has_state(run: Run) -> bool:
    return any(step.state is not None for step in run.steps) or any(
        _has_state(child) for child in run.sub.values()
    )


def _count_children(run: Run) -> int:
    direct = len(run.loose) + sum(len(step.children) for step in run.steps)
    return direct + sum(_count_children(child) for child in run.sub.values())


# --- lanes -------------------------------------------------------------------------------


def _lanes(run: Run, axis: _Axis, depth: int) -> list[str]:
    parts: list[str] = []
    previous: dict[str, Any] | None = None
    for step in run.steps:
        parts.append(_lane(run, step, previous, axis, depth))
        if step.state is not None:
            previous = step.state
    if not run.steps:
        parts.append(_note("This run has no steps.", depth))
    if run.outside:
        parts.append(_outside_lane(run, axis, depth))
    for child in run.loose:
        parts.append(_sub(run, child, axis, depth, note="started outside any step"))
    return parts


def _lane(
    run: Run, step: StoredStep, previous: dict[str, Any] | None, axis: _Axis, depth: int
) -> str:
    pad = depth * _INDENT_PX
    classes = "lane sub-lane" if depth else "lane"
    rows = [_head_row(step, axis, pad)]
    if step.state is not None:
        rows.append(_state_row(step, previous, axis, pad))
    for span, level in span_tree(step):
        if span is step.span:
            continue
        indent = level - 1 if step.span is not None else level
        rows.append(_span_row(span, axis, pad + _SPAN_INDENT_PX * (indent + 1)))
    for child in step.children:
        rows.append(_sub(run, child, axis, depth))
    return (
        f'<section class="{classes}" data-session="{_h(run.session.session_id)}" '
        f'data-step="{step.index}" data-depth="{depth}">' + "".join(rows) + "</section>"
    )


def _head_row(step: StoredStep, axis: _Axis, pad: int) -> str:
    title = f"Step {step.index}" + (f": {step.name}" if step.name else "")
    if not step.tracked:
        title = f"Trace {step.index}" + (f": {step.name}" if step.name else "")
    stats = [_format.milliseconds(step.duration_ms)]
    if step.total_tokens is not None:
        stats.append(f"{step.total_tokens:,} tokens")
    if step.models:
        stats.append(", ".join(step.models))
    if step.llm_calls:
        stats.append(f"{len(step.llm_calls)} LLM call{'s' if len(step.llm_calls) != 1 else ''}")
    if step.children:
        stats.append(f"{len(step.children)} sub-session{'s' if len(step.children) != 1 else ''}")
    status = _format.status_word(step.status)
    badge = ""
    if status != "ok":
        badge = f' <span class="badge {_badge_class(status)}">{_h(status)}</span>'
    tip = [
        _format.safe(title),
        f"{_format.milliseconds(step.duration_ms)} · "
        + _format.status(step.status, step.status_message),
    ]
    if step.total_tokens is not None:
        tip.append(_tokens_line(step.prompt_tokens, step.completion_tokens, step.total_tokens))
    if step.state is not None:
        tip.append("state: " + _format.preview(step.state, TOOLTIP_CHARS))
    if step.span is None:
        kind = "open"
    elif step.status == "error":
        kind = "error"
    else:
        kind = "step" if step.tracked else _kind_class(step.span)
    span_id = step.span.span_id if step.span else ""
    beside = _format.milliseconds(step.duration_ms)
    if step.total_tokens is not None:
        beside += f" · {step.total_tokens:,} tok"
    return (
        f'<div class="row head" title="{_h(chr(10).join(tip), lines=True)}">'
        f'<div class="label" style="padding-left:{pad}px"><span class="idx">{step.index}</span>'
        f"{_h(step.name or '(unnamed step)')}{badge}"
        f'<span class="stats">{_h(" · ".join(stats))}</span></div>'
        f'<div class="track"><div class="bar {kind}" data-span-id="{_h(span_id)}" '
        f'style="{axis.place(step.start_ns, step.end_ns)}"></div>'
        f'<span class="dur" style="{axis.after(step.start_ns, step.end_ns)}">'
        f"{_h(beside)}</span></div></div>"
    )


def _state_row(step: StoredStep, previous: dict[str, Any] | None, axis: _Axis, pad: int) -> str:
    state = step.state or {}
    chips = []
    for marker, key in _format.state_changes(previous, state):
        kind = {"+": "added", "~": "changed", "-": "removed"}[marker]
        if marker == "-":
            tip = (
                f"{key}: no longer in this step's snapshot (was {_preview((previous or {})[key])})"
            )
            label = key
        else:
            tip = f"{key} = {_preview(state[key])}"
            label = ("+" if marker == "+" else "~") + key
        chips.append(
            f'<span class="chip state-change {kind}" data-key="{_h(key)}" '
            f'title="{_h(tip)}">{_h(label)}</span>'
        )
    if not chips:
        chips.append('<span class="chip removed" style="text-decoration:none">unchanged</span>')
    pretty = json.dumps(state, indent=2, ensure_ascii=False, default=str)
    left = min(axis.x(step.start_ns), 75.0)
    return (
        '<div class="row state-row">'
        f'<div class="label" style="padding-left:{pad + _SPAN_INDENT_PX}px">'
        '<span class="t">state</span><details class="snapshot"><summary>snapshot</summary>'
        f"<pre>{_h(pretty, lines=True)}</pre></details></div>"
        f'<div class="track"><div style="position:absolute;left:{left:.3f}%;right:0">'
        + "".join(chips)
        + "</div></div></div>"
    )


def _span_row(span: StoredSpan, axis: _Axis, pad: int) -> str:
    kind = _kind_class(span)
    model = model_name(span.attributes)
    label = f'<i class="k {kind}"></i>{_h(span.name)}'
    if model:
        label += f'<span class="model">{_h(model)}</span>'
    beside = _format.milliseconds(span.duration_ms)
    if span.total_tokens is not None:
        beside += f" · {span.total_tokens:,} tok"
    output = span.attributes.get(_keys.OI_OUTPUT_VALUE)
    said = ""
    if output is not None:
        said = f'<span class="said">{_h(_format.preview(output, BESIDE_CHARS))}</span>'
    return (
        f'<div class="row span-row" title="{_h(_span_tip(span), lines=True)}">'
        f'<div class="label" style="padding-left:{pad}px">{label}</div>'
        f'<div class="track"><div class="bar {kind}" data-span-id="{_h(span.span_id)}" '
        f'style="{axis.place(span.start_ns, span.end_ns)}"></div>'
        f'<span class="dur" style="{axis.after(span.start_ns, span.end_ns)}">'
        f"{_h(beside)}{said}</span></div></div>"
    )


def _outside_lane(run: Run, axis: _Axis, depth: int) -> str:
    pad = depth * _INDENT_PX
    rows = [
        f'<div class="row head"><div class="label" style="padding-left:{pad}px">'
        '<span class="idx">-</span>outside any step<span class="stats">spans made between '
        'steps</span></div><div class="track"></div></div>'
    ]
    rows.extend(_span_row(span, axis, pad + _SPAN_INDENT_PX) for span in run.outside)
    return (
        f'<section class="lane outside" data-session="{_h(run.session.session_id)}" '
        f'data-depth="{depth}">' + "".join(rows) + "</section>"
    )


def _sub(run: Run, child_id: str, axis: _Axis, depth: int, note: str = "") -> str:
    pad = (depth + 1) * _INDENT_PX
    child = run.sub.get(child_id)
    if child is None:
        return _note(
            f"Sub-session {child_id} is more than {MAX_DEPTH} levels deep: "
            f"run `sessiontrace timeline {child_id} --html FILE` to draw it.",
            depth + 1,
        )
    s = child.session
    stats = [
        _format.plural(len(child.steps), "step"),
        _format.plural(s.total_tokens or 0, "token"),
        _format.status_word(s.status),
    ]
    count = _format.subsession_count(s)
    if s.with_subsessions is not None and count:
        tokens = _format.plural(s.with_subsessions.total_tokens or 0, "token")
        stats.append(f"{_format.with_subsessions_label(count)}: {tokens}")
    if note:
        stats.append(note)
    start, end = _extent(child)
    tip = "\n".join(["sub-session " + _format.safe(child_id), *_format.totals_lines(s)])
    head = (
        f'<div class="row subhead" title="{_h(tip, lines=True)}">'
        f'<div class="label" style="padding-left:{pad}px">&#8627; '
        f"{_h(child.name or child_id)}"
        f'<span class="stats">{_h(" · ".join(stats))}</span></div>'
        f'<div class="track"><div class="bracket" style="{axis.place(start, end)}"></div></div>'
        "</div>"
    )
    return (
        f'<div class="sub" data-session="{_h(child_id)}">'
        + head
        + "".join(_lanes(child, axis, depth + 1))
        + "</div>"
    )


def _h(text: object, *, lines: bool = False) -> str:
    """Store text made safe twice over: control and bidi characters escaped, then HTML.

    ``lines`` keeps the line breaks of text this module joined from parts already passed
    through ``_format.safe`` (tooltips, the state snapshot's JSON).
    """
    return _escape_html(_format.safe(text, newlines=lines))


def _note(text: str, depth: int) -> str:
    return (
        f'<div class="row"><div class="label note" style="padding-left:{depth * _INDENT_PX}px;'
        f'width:auto">{_h(text)}</div></div>'
    )


# --- text for tooltips -------------------------------------------------------------------


def _kind_class(span: StoredSpan) -> str:
    if span.status_code == "ERROR":
        return "error"
    kind = kind_of(span).upper()
    if kind == "LLM":
        return "llm"
    if kind == "TOOL":
        return "tool"
    if kind in ("CHAIN", "AGENT"):
        return "chain"
    return "other"


def _span_tip(span: StoredSpan) -> str:
    head = [_format.safe(kind_of(span)), _format.milliseconds(span.duration_ms)]
    model = model_name(span.attributes)
    if model:
        head.append(_format.safe(model))
    lines = [_format.safe(span.name), " · ".join(head)]
    if span.total_tokens is not None:
        lines.append(_tokens_line(span.prompt_tokens, span.completion_tokens, span.total_tokens))
    if _format.status_word(span.status_code) != "ok":
        message = _format.safe(span.status_message or "")
        lines.append(_format.status_word(span.status_code) + (f": {message}" if message else ""))
    for label, key in (("in", _keys.OI_INPUT_VALUE), ("out", _keys.OI_OUTPUT_VALUE)):
        value = span.attributes.get(key)
        if value is not None:
            lines.append(f"{label}: {_preview(value)}")
    return "\n".join(lines)


def _tokens_line(prompt: int | None, completion: int | None, total: int | None) -> str:
    return f"tokens {_format.tokens(prompt, completion, total)} (prompt/completion/total)"


def _preview(value: object) -> str:
    return _format.preview(value, TOOLTIP_CHARS)
