"""The timeline's HTML: one self-contained page drawn from a loaded :class:`Run`.

One lane per step (per trace for a session without tracker steps), every span a bar on one
shared time axis, nested spans under their parents, the state keys each step changed, and
sub-sessions as lanes nested under the step that started them. The page is one file with
inline CSS and script (``_timeline_assets.py``): it loads nothing, so it can be mailed or
attached to a bug report. Every string from the store is escaped: control and bidi characters
as ``\\x1b``-style text (``_format.safe``), then for HTML; the tooltip script moves text with
``textContent`` only.

Example:
    >>> with SessionStore() as store:  # doctest: +SKIP
    ...     html = render(load(store, "trip-1"))
"""

from __future__ import annotations

import json
from html import escape as _escape_html
from typing import Any

from sessiontrace import _keys
from sessiontrace._usage import model_name
from sessiontrace._version import __version__
from sessiontrace.cli import _format
from sessiontrace.cli._timeline_assets import CSS, JS
from sessiontrace.cli._timeline_model import (
    TOOLTIP_CHARS,
    Axis,
    badge_class,
    extent,
    has_state,
    kind_class,
    preview,
    span_tip,
    tokens_line,
)
from sessiontrace.cli._view import MAX_DEPTH, Run, span_tree
from sessiontrace.store import StoredSpan, StoredStep

BESIDE_CHARS = 60
"""The longest an output preview written beside a span's bar may be."""

_INDENT_PX = 18  # per sub-session level, in the label column
_SPAN_INDENT_PX = 14  # per span nesting level


def render(run: Run) -> str:
    """The whole HTML page for one replayed session.

    Args:
        run: The session, as loaded by ``sessiontrace.cli._view.load``.

    Returns:
        A complete, self-contained HTML document.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     html = render(load(store, "trip-1"))
    """
    axis = Axis(*extent(run))
    body = [
        _header(run),
        '<main class="timeline">',
        '<div class="grid">' + "".join(_grid(axis)) + "</div>",
        '<div class="row axis"><div class="label">time since the session started</div>'
        '<div class="track">' + "".join(_axis_labels(axis)) + "</div></div>",
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


def _grid(axis: Axis) -> list[str]:
    return [f'<div class="tick" style="left:{x:.3f}%"></div>' for x, _ in axis.ticks()]


def _axis_labels(axis: Axis) -> list[str]:
    return [f'<span style="left:{x:.3f}%">{_h(label)}</span>' for x, label in axis.ticks()]


# --- the page header ---------------------------------------------------------------------


def _header(run: Run) -> str:
    s = run.session
    status = _format.status_word(s.status)
    badge = f'<span class="badge {badge_class(status)}">{_h(status)}</span>'
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
    if has_state(run):
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


# --- lanes -------------------------------------------------------------------------------


def _lanes(run: Run, axis: Axis, depth: int) -> list[str]:
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
    run: Run, step: StoredStep, previous: dict[str, Any] | None, axis: Axis, depth: int
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


def _head_row(step: StoredStep, axis: Axis, pad: int) -> str:
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
        badge = f' <span class="badge {badge_class(status)}">{_h(status)}</span>'
    tip = [
        _format.safe(title),
        f"{_format.milliseconds(step.duration_ms)} · "
        + _format.status(step.status, step.status_message),
    ]
    if step.total_tokens is not None:
        tip.append(tokens_line(step.prompt_tokens, step.completion_tokens, step.total_tokens))
    if step.state is not None:
        tip.append("state: " + _format.preview(step.state, TOOLTIP_CHARS))
    if step.span is None:
        kind = "open"
    elif step.status == "error":
        kind = "error"
    else:
        kind = "step" if step.tracked else kind_class(step.span)
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


def _state_row(step: StoredStep, previous: dict[str, Any] | None, axis: Axis, pad: int) -> str:
    state = step.state or {}
    chips = []
    for marker, key in _format.state_changes(previous, state):
        kind = {"+": "added", "~": "changed", "-": "removed"}[marker]
        if marker == "-":
            tip = (
                f"{key}: no longer in this step's snapshot (was {preview((previous or {})[key])})"
            )
            label = key
        else:
            tip = f"{key} = {preview(state[key])}"
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


def _span_row(span: StoredSpan, axis: Axis, pad: int) -> str:
    kind = kind_class(span)
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
        f'<div class="row span-row" title="{_h(span_tip(span), lines=True)}">'
        f'<div class="label" style="padding-left:{pad}px">{label}</div>'
        f'<div class="track"><div class="bar {kind}" data-span-id="{_h(span.span_id)}" '
        f'style="{axis.place(span.start_ns, span.end_ns)}"></div>'
        f'<span class="dur" style="{axis.after(span.start_ns, span.end_ns)}">'
        f"{_h(beside)}{said}</span></div></div>"
    )


def _outside_lane(run: Run, axis: Axis, depth: int) -> str:
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


def _sub(run: Run, child_id: str, axis: Axis, depth: int, note: str = "") -> str:
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
    start, end = extent(child)
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
